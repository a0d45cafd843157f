//! The `basic` class: basic.qos (per-consumer and channel-wide prefetch), basic.consume
//! (consumer priorities, direct reply-to), basic.cancel, basic.publish (permissions,
//! `user_id`, mandatory returns, confirms, credit flow), basic.get, basic.ack, basic.reject,
//! basic.nack and basic.recover, plus the deliveries queues push to this channel's consumers.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use warren_codec::methods::*;
use warren_codec::{
    ContentHeader, FieldValue, Method, ReplyCode, ShortStr, encode_basic_header, encode_body,
};
use warren_core::queue::{ConsumerKey, ConsumerSpec, Delivery, Return};
use warren_core::{AmqpError, AmqpResult, Message, MessageRef};

use super::confirm::Confirm;
use super::tx::TxOp;
use super::{Channel, ConsumerRec, Session, Unacked, by_queue};
use crate::access::Resource;
use crate::auth::Access;
use crate::broker::{REPLY_TO_QUEUE, ReplyTarget};
use crate::forward::QueueRef;
use crate::queue::Sink;
use crate::util::random_name;

impl Channel {
    pub(super) fn basic_qos(&mut self, s: &mut Session, m: BasicQos) -> AmqpResult<()> {
        if m.prefetch_size != 0 {
            return Err(AmqpError::not_implemented(format!(
                "prefetch_size!=0 ({})",
                m.prefetch_size
            )));
        }
        if m.global {
            self.shared
                .limit
                .store(m.prefetch_count as u32, Ordering::Release);
            self.shared.release(0);
        } else {
            self.prefetch = m.prefetch_count as u32;
        }
        s.send_method(self.id, BasicQosOk {});
        Ok(())
    }

    pub(super) fn basic_consume(&mut self, s: &mut Session, m: BasicConsume) -> AmqpResult<()> {
        if &*m.queue == REPLY_TO_QUEUE {
            return self.reply_consume(s, m);
        }
        let v = s.vhost()?;
        s.check_access(Resource::Queue, &m.queue, Access::Read)?;
        let q = match s.queue_for_use(&m.queue) {
            Ok(q) => q,
            Err(e) => match v.remote_home(&m.queue) {
                Some(node) if s.broker.forwarder().is_some() => return self.remote_consume(s, m, node),
                _ => return Err(e),
            },
        };
        let spec = self.consumer_spec(s, &m)?;
        let (key, tag) = (spec.key, spec.tag.clone());
        let sink = Sink {
            conn: s.shared.clone(),
            channel: self.shared.clone(),
        };
        self.consumers.insert(
            tag.clone(),
            ConsumerRec {
                key,
                queue: QueueRef::Local(q.clone()),
            },
        );
        if let Err(e) = q.add_consumer(spec, sink, &v.name) {
            self.consumers.remove(&tag);
            return Err(e);
        }
        // Deliveries reach the connection through its mailbox, so consume-ok still goes out
        // first.
        if !m.nowait {
            s.send_method(self.id, BasicConsumeOk { consumer_tag: tag });
        }
        Ok(())
    }

    /// The consumer a basic.consume asks for: its tag (generated if empty; 530 if in use on
    /// this channel), `x-priority` (406 if not an integer), a fresh key.
    fn consumer_spec(&self, s: &Session, m: &BasicConsume) -> AmqpResult<ConsumerSpec> {
        let tag = if m.consumer_tag.is_empty() {
            random_name("amq.ctag-")
        } else {
            m.consumer_tag.clone()
        };
        if self.consumers.contains_key(&tag) {
            return Err(AmqpError::not_allowed(format!(
                "attempt to reuse consumer tag '{tag}'"
            )));
        }
        let priority = match m.arguments.get("x-priority").map(warren_core::args::integer) {
            None => 0,
            Some(Ok(p)) => p.clamp(i32::MIN.into(), i32::MAX.into()) as i32,
            Some(Err(why)) => {
                return Err(AmqpError::precondition(format!(
                    "invalid arg 'x-priority' for consumer '{tag}': {why}"
                )));
            }
        };
        let key = ConsumerKey(s.broker.next_id());
        let spec = ConsumerSpec {
            key,
            channel: self.key,
            tag: tag.clone(),
            no_ack: m.no_ack,
            prefetch: self.prefetch,
            exclusive: m.exclusive,
            priority,
        };
        Ok(spec)
    }

    /// basic.consume on a queue of another node: a proxy consumer there
    /// ([`crate::forward`]); `basic.consume-ok` once the home node has registered it.
    fn remote_consume(&mut self, s: &mut Session, m: BasicConsume, node: String) -> AmqpResult<()> {
        let v = s.vhost()?;
        let spec = self.consumer_spec(s, &m)?;
        let (key, tag) = (spec.key, spec.tag.clone());
        let f = s.broker.forwarder().expect("checked by the caller");
        let (rq, answer) = f.consume(crate::forward::ConsumeRequest {
            node: node.clone(),
            vhost: v.name.clone(),
            queue: m.queue.clone(),
            spec,
            conn: s.shared.clone(),
        });
        self.consumers.insert(
            tag.clone(),
            ConsumerRec {
                key,
                queue: QueueRef::Remote(rq.clone()),
            },
        );
        let (queue, vhost, ch, nowait) = (m.queue.to_string(), v.name.clone(), self.id, m.nowait);
        s.pending = Some(crate::session::Pending {
            channel: self.id,
            ids: (0, 0),
            work: Box::pin(async move {
                match answer.await {
                    crate::forward::Verdict::Ok => Ok(crate::clustering::Outcome::Created),
                    other => Err(other.into_error(&queue, &vhost, &node)),
                }
            }),
            done: Box::new(move |s, _| {
                if !nowait {
                    s.send_method(ch, BasicConsumeOk { consumer_tag: tag });
                }
                rq.started();
            }),
        });
        Ok(())
    }

    /// basic.consume on `amq.rabbitmq.reply-to` (direct reply-to; no-ack only).
    fn reply_consume(&mut self, s: &mut Session, m: BasicConsume) -> AmqpResult<()> {
        if !m.no_ack {
            return Err(AmqpError::precondition("reply consumer cannot acknowledge"));
        }
        if self.reply_consumer.is_some() {
            return Err(AmqpError::precondition("reply consumer already set"));
        }
        let tag = if m.consumer_tag.is_empty() {
            random_name("amq.ctag-")
        } else {
            m.consumer_tag.clone()
        };
        let name = format!("{REPLY_TO_QUEUE}.{}", random_name(""));
        self.reply_consumer = Some((tag.clone(), name.clone()));
        s.broker.add_reply_consumer(
            name,
            ReplyTarget {
                conn: s.shared.clone(),
                channel: self.id,
                tag: tag.clone(),
            },
        );
        if !m.nowait {
            s.send_method(self.id, BasicConsumeOk { consumer_tag: tag });
        }
        Ok(())
    }

    pub(super) fn basic_cancel(&mut self, s: &mut Session, m: BasicCancel) -> AmqpResult<()> {
        if self
            .reply_consumer
            .as_ref()
            .is_some_and(|(t, _)| *t == m.consumer_tag)
            && let Some((_, name)) = self.reply_consumer.take()
        {
            s.broker.remove_reply_consumer(&name);
        }
        if let Some(rec) = self.consumers.remove(&m.consumer_tag)
            && rec.queue.remove_consumer(rec.key)
        {
            let v = s.vhost()?;
            s.broker.auto_delete_queue(&v, rec.queue.name());
        }
        if !m.nowait {
            s.send_method(
                self.id,
                BasicCancelOk {
                    consumer_tag: m.consumer_tag,
                },
            );
        }
        Ok(())
    }

    /// A delivery from a queue to one of this channel's consumers: encoded, or handed back to
    /// the queue if the consumer is gone or the channel is closing.
    pub fn deliver(&mut self, s: &mut Session, queue: QueueRef, d: Delivery) {
        let tag = match d.consumer.and_then(|k| self.tag_for(k)) {
            Some(t) if !self.closing => t.clone(),
            _ => {
                if !d.no_ack {
                    self.shared.release(1);
                    queue.unsend(&d);
                }
                return;
            }
        };
        #[cfg(feature = "fault-injection")]
        if &*tag == "warren.test.panic-on-deliver" {
            panic!("injected fault: panic on delivery");
        }
        let delivery_tag = self.next_tag;
        self.next_tag += 1;
        if !d.no_ack {
            self.unacked.push_back(Unacked {
                tag: delivery_tag,
                queue,
                seq: d.seq,
                at: std::time::Instant::now(),
            });
        }
        s.broker.metrics.delivered.fetch_add(1, Ordering::Relaxed);
        s.broker.metrics.delivered_by[usize::from(d.no_ack)].fetch_add(1, Ordering::Relaxed);
        if d.redelivered {
            s.broker.metrics.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        let method = BasicDeliver {
            consumer_tag: tag,
            delivery_tag,
            redelivered: d.redelivered,
            exchange: d.msg.exchange.clone(),
            routing_key: d.msg.routing_key.clone(),
        };
        warren_codec::encode_method(&mut s.out, self.id, &method);
        write_content(&mut s.out, self.id, &d, s.frame_max);
    }

    /// A direct reply-to message for this channel's reply consumer (auto-ack).
    pub fn deliver_reply(&mut self, s: &mut Session, tag: ShortStr, msg: MessageRef) {
        if self.closing || !self.reply_consumer.as_ref().is_some_and(|(t, _)| *t == tag) {
            return;
        }
        let delivery_tag = self.next_tag;
        self.next_tag += 1;
        let method = BasicDeliver {
            consumer_tag: tag,
            delivery_tag,
            redelivered: false,
            exchange: msg.exchange.clone(),
            routing_key: msg.routing_key.clone(),
        };
        s.send_content(self.id, method, &msg);
    }

    pub(super) fn basic_get(&mut self, s: &mut Session, m: BasicGet) -> AmqpResult<()> {
        s.check_access(Resource::Queue, &m.queue, Access::Read)?;
        let q = match s.queue_for_use(&m.queue) {
            Ok(q) => q,
            Err(e) => match s.vhost()?.remote_home(&m.queue) {
                Some(node) if s.broker.forwarder().is_some() => return self.remote_get(s, m, node),
                _ => return Err(e),
            },
        };
        if !m.no_ack {
            // basic.get ignores prefetch, but its delivery counts in the channel's window.
            self.shared.unacked.fetch_add(1, Ordering::AcqRel);
        }
        match q.get(self.key, m.no_ack) {
            None => {
                s.broker.metrics.get_empty.fetch_add(1, Ordering::Relaxed);
                if !m.no_ack {
                    self.shared.release(1);
                }
                s.send_method(
                    self.id,
                    BasicGetEmpty {
                        cluster_id: ShortStr::from(""),
                    },
                );
            }
            Some((d, left)) => self.get_ok(s, QueueRef::Local(q), d, left),
        }
        Ok(())
    }

    /// basic.get-ok for delivery `d` of `queue` (`left` messages behind it).
    pub fn get_ok(&mut self, s: &mut Session, queue: QueueRef, d: Delivery, left: u32) {
        let tag = self.next_tag;
        self.next_tag += 1;
        if !d.no_ack {
            self.unacked.push_back(Unacked {
                tag,
                queue,
                seq: d.seq,
                at: std::time::Instant::now(),
            });
        }
        s.broker.metrics.delivered.fetch_add(1, Ordering::Relaxed);
        s.broker.metrics.delivered_by[2 + usize::from(d.no_ack)].fetch_add(1, Ordering::Relaxed);
        if d.redelivered {
            s.broker.metrics.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        let method: Method = BasicGetOk {
            delivery_tag: tag,
            redelivered: d.redelivered,
            exchange: d.msg.exchange.clone(),
            routing_key: d.msg.routing_key.clone(),
            message_count: left,
        }
        .into();
        warren_codec::encode_method(&mut s.out, self.id, &method);
        write_content(&mut s.out, self.id, &d, s.frame_max);
    }

    /// basic.get on a queue of another node: asked of its home node; the answer comes back as
    /// `ConnEvent::RemoteGot` (or `basic.get-empty`) while the connection waits.
    fn remote_get(&mut self, s: &mut Session, m: BasicGet, node: String) -> AmqpResult<()> {
        let v = s.vhost()?;
        let f = s.broker.forwarder().expect("checked by the caller");
        let (rq, answer) = f.get(
            &node,
            &v.name,
            m.queue.clone(),
            self.key,
            m.no_ack,
            s.shared.clone(),
        );
        let slot = Arc::new(parking_lot::Mutex::new(None));
        let got = slot.clone();
        let (queue, vhost, ch) = (m.queue.to_string(), v.name.clone(), self.id);
        s.pending = Some(crate::session::Pending {
            channel: self.id,
            ids: (0, 0),
            work: Box::pin(async move {
                match answer.await {
                    Ok(d) => {
                        *got.lock() = d;
                        Ok(crate::clustering::Outcome::Created)
                    }
                    Err(v) => Err(v.into_error(&queue, &vhost, &node)),
                }
            }),
            done: Box::new(move |s, _| match slot.lock().take() {
                Some((d, left)) => {
                    let _ = s.shared.tx.send(crate::mailbox::ConnEvent::RemoteGot {
                        queue: rq,
                        delivery: d,
                        left,
                    });
                }
                None => {
                    s.broker.metrics.get_empty.fetch_add(1, Ordering::Relaxed);
                    s.send_method(
                        ch,
                        BasicGetEmpty {
                            cluster_id: ShortStr::from(""),
                        },
                    );
                }
            }),
        });
        Ok(())
    }

    /// basic.ack: applied now, or buffered in a transaction.
    pub(super) fn basic_ack(&mut self, s: &mut Session, tag: u64, multiple: bool) -> AmqpResult<()> {
        let taken = self.take_unacked(tag, multiple)?;
        match self.tx.as_mut() {
            Some(tx) => tx.push(TxOp::Ack(taken)),
            None => self.ack_taken(s, taken),
        }
        Ok(())
    }

    /// Acknowledges deliveries already taken out of the unacked ones.
    pub(super) fn ack_taken(&mut self, s: &mut Session, taken: Vec<Unacked>) {
        let n = taken.len() as u32;
        for (q, seqs) in by_queue(taken) {
            q.ack(&seqs);
        }
        s.broker.metrics.acked.fetch_add(n as u64, Ordering::Relaxed);
        self.shared.release(n);
    }

    /// basic.reject / basic.nack: applied now, or buffered in a transaction.
    pub(super) fn reject_or_buffer(
        &mut self,
        tag: u64,
        multiple: bool,
        requeue: Option<Return>,
    ) -> AmqpResult<()> {
        let taken = self.take_unacked(tag, multiple)?;
        match self.tx.as_mut() {
            Some(tx) => tx.push(TxOp::Reject { taken, requeue }),
            None => self.reject_taken(taken, requeue),
        }
        Ok(())
    }

    /// Rejects deliveries already taken out of the unacked ones.
    pub(super) fn reject_taken(&mut self, taken: Vec<Unacked>, requeue: Option<Return>) {
        let n = taken.len() as u32;
        for (q, seqs) in by_queue(taken) {
            q.reject(&seqs, requeue);
        }
        self.shared.release(n);
    }

    /// basic.recover / basic.recover-async: every unacked message is requeued (redelivered).
    pub(super) fn basic_recover(&mut self, s: &mut Session, requeue: bool, sync: bool) -> AmqpResult<()> {
        if !requeue {
            // As RabbitMQ: only requeue=true is implemented (hard error 540).
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        let all: Vec<Unacked> = self.unacked.drain(..).collect();
        let n = all.len() as u32;
        for (q, seqs) in by_queue(all) {
            q.reject(&seqs, Some(Return::Returned));
        }
        self.shared.release(n);
        if sync {
            s.send_method(self.id, BasicRecoverOk {});
        }
        Ok(())
    }

    pub(super) fn basic_publish(
        &mut self,
        s: &mut Session,
        m: BasicPublish,
        mut header: Box<ContentHeader>,
        body: Bytes,
    ) -> AmqpResult<()> {
        if m.immediate {
            return Err(AmqpError::not_implemented("immediate=true"));
        }
        s.check_publish(&m.exchange)?;
        s.check_user_id(header.properties.user_id.as_deref())?;
        s.broker.metrics.published.fetch_add(1, Ordering::Relaxed);
        s.publisher = true;
        if !self.published {
            self.published = true;
            s.broker.metrics.publishers.fetch_add(1, Ordering::Relaxed);
        }
        if header.properties.reply_to.as_deref() == Some(REPLY_TO_QUEUE) {
            let Some((_, name)) = &self.reply_consumer else {
                return Err(AmqpError::precondition("fast reply consumer does not exist"));
            };
            header.properties.reply_to = Some(ShortStr::from(name.as_str()));
        }
        // The properties move once, from the decoder's box into the shared message.
        let msg = Arc::new(Message {
            exchange: m.exchange,
            routing_key: m.routing_key,
            properties: header.properties,
            body,
            dead_lettered: false,
        });
        s.check_topic_publish(&msg)?;
        let ttl = msg.expiration_ms().map_err(AmqpError::precondition)?;
        if let Some(tx) = self.tx.as_mut() {
            // Check the exchange now, as RabbitMQ does, and apply at commit.
            let v = s.vhost()?;
            if !msg.exchange.is_empty() && !v.read_topology(|t| t.exchange(&msg.exchange).is_some()) {
                return Err(AmqpError::not_found(format!(
                    "no exchange '{}' in vhost '{}'",
                    &*msg.exchange, v.name
                )));
            }
            tx.push(TxOp::Publish {
                msg,
                ttl,
                mandatory: m.mandatory,
            });
            return Ok(());
        }
        self.route_publish(s, msg, ttl, m.mandatory)
    }

    /// Routes and enqueues one message: mandatory return when nothing took it, the durable
    /// queues written marked for the batch's sync, credit taken, the confirm recorded.
    pub(super) fn route_publish(
        &mut self,
        s: &mut Session,
        msg: MessageRef,
        ttl: Option<u64>,
        mandatory: bool,
    ) -> AmqpResult<()> {
        let v = s.vhost()?;
        let seq = self.confirms.as_mut().map(|cf| cf.next_seq());
        let mut outcome = if msg.exchange.is_empty() && msg.routing_key.starts_with(REPLY_TO_QUEUE) {
            let delivered = s.broker.deliver_reply(&msg.routing_key, msg.clone());
            crate::vhost::PublishOutcome {
                enqueued: delivered as usize,
                ..Default::default()
            }
        } else {
            v.publish_cached(msg.clone(), ttl, s.clock_ms, Some(&mut self.route_cache))?
        };
        s.broker.metrics.count_routed(seq.is_some(), outcome.enqueued);
        let mut nodes = outcome.remote.len() as u32;
        if nodes > 0 {
            self.forward(s, &v.name, std::mem::take(&mut outcome.remote), &msg, ttl, seq)?;
        }
        // Quorum queues: confirmed once the queue's group committed it (a nack if it cannot).
        nodes += outcome.replicate(&msg, ttl, || {
            let r = crate::forward::Reply {
                conn: s.shared.clone(),
                channel: self.id,
                seq: seq?,
            };
            Some(Box::new(move |ok| crate::forward::send_verdict(r, ok)) as crate::queue::VerdictFn)
        }) as u32;
        if outcome.enqueued + outcome.rejected + outcome.duplicates + nodes as usize == 0 {
            s.broker.metrics.unroutable.fetch_add(1, Ordering::Relaxed);
            if mandatory {
                s.broker
                    .metrics
                    .unroutable_returned
                    .fetch_add(1, Ordering::Relaxed);
                let method = BasicReturn {
                    reply_code: 312,
                    reply_text: ShortStr::from("NO_ROUTE"),
                    exchange: msg.exchange.clone(),
                    routing_key: msg.routing_key.clone(),
                };
                s.send_content(self.id, method, &msg);
            }
        }
        let needs_sync = !outcome.persisted.is_empty();
        for q in outcome.persisted {
            s.mark_dirty(q);
        }
        for q in outcome.out_of_credit {
            if !s.out_of_credit.iter().any(|f| Arc::ptr_eq(f, &q)) {
                s.out_of_credit.push(q);
            }
        }
        if outcome.store_failed > 0 {
            // Publishers are blocked now, not at the next disk sample.
            s.broker
                .alarms
                .raise_disk("a persistent message could not be written to the store");
            if seq.is_none() {
                // No confirm to nack it with: never let it vanish silently.
                return Err(AmqpError::new(
                    ReplyCode::ResourceError,
                    "persistent message not stored: the message store cannot write (disk full?); \
                     publishers are blocked until it recovers (see /api/health/checks/alarms)",
                ));
            }
        }
        if let Some(seq) = seq {
            let sync = (needs_sync && s.broker.persistence.is_some()).then(|| {
                s.sync_wanted = true;
                s.sync_batch
            });
            let state = match sync {
                _ if outcome.rejected > 0 || outcome.store_failed > 0 => Confirm::Nack,
                _ if nodes > 0 => Confirm::Remote {
                    nodes,
                    failed: false,
                    sync,
                },
                Some(b) => Confirm::Sync(b),
                None => Confirm::Ack,
            };
            if let Some(cf) = self.confirms.as_mut() {
                cf.push(seq, state);
            }
        }
        Ok(())
    }
}

impl Channel {
    /// Hands a message routed to queues of other cluster nodes to the forwarding layer, one
    /// copy per node; with confirms, each node's verdict comes back as `ConnEvent::Forwarded`.
    fn forward(
        &mut self,
        s: &mut Session,
        vhost: &str,
        remote: Vec<(String, Vec<ShortStr>)>,
        msg: &MessageRef,
        ttl: Option<u64>,
        seq: Option<u64>,
    ) -> AmqpResult<()> {
        let Some(f) = s.broker.forwarder() else {
            let (node, queues) = &remote[0];
            return Err(crate::vhost::remote_queue(&queues[0], vhost, node));
        };
        for (node, queues) in remote {
            let reply = seq.map(|seq| crate::forward::Reply {
                conn: s.shared.clone(),
                channel: self.id,
                seq,
            });
            if let Some(credit) = f.publish(&node, vhost, queues, msg.clone(), ttl, reply)
                && !s.out_of_link_credit.iter().any(|c| Arc::ptr_eq(c, &credit))
            {
                s.out_of_link_credit.push(credit);
            }
        }
        Ok(())
    }
}

/// Encodes a delivery's content header (adding the delivery counters on redeliveries) and body.
fn write_content(out: &mut bytes::BytesMut, ch: u16, d: &Delivery, frame_max: u32) {
    let body = &d.msg.body;
    if d.acquired_count > 0 {
        let mut props = d.msg.properties.clone();
        let headers = props.headers.get_or_insert_with(Default::default);
        headers.insert("x-delivery-count", FieldValue::I64(d.delivery_count as i64));
        headers.insert("x-acquired-count", FieldValue::I64(d.acquired_count as i64));
        encode_basic_header(out, ch, body.len() as u64, &props);
    } else {
        encode_basic_header(out, ch, body.len() as u64, &d.msg.properties);
    }
    encode_body(out, ch, body, frame_max);
}
