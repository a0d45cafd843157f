//! Channels: the per-channel state a connection task owns (content assembly, delivery tags,
//! the unacked deque sorted by tag, consumers, prefetch, publisher confirms, transactions) and
//! every channel-level method: exchange.*, queue.*, basic.*, confirm.select, tx.*.
//!
//! Soft errors close the channel with `channel.close`; the channel then ignores everything but
//! `channel.close` / `channel.close-ok`, as the spec says.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use warren_codec::methods::*;
use warren_codec::{
    Assembled, BasicProperties, Command, ContentAssembler, FieldValue, Frame, Method, ReplyCode, ShortStr,
    encode_basic_header, encode_body,
};
use warren_core::queue::{ChannelKey, ConsumerKey, ConsumerSpec, Delivery, Return};
use warren_core::topology::{ExchangeDeclare as ExchangeDecl, QueueDeclare as QueueDecl};
use warren_core::{AmqpError, AmqpResult, Message, MessageRef};

use crate::access::Resource;
use crate::auth::Access;
use crate::broker::{REPLY_TO_QUEUE, ReplyTarget, VHost, now_ms, random_name};
use crate::connection::{ChannelShared, Connection};
use crate::queue::{Queue, Sink};
use crate::vhost::BindingRef;

#[derive(Debug)]
struct Unacked {
    tag: u64,
    queue: Arc<Queue>,
    seq: u64,
    /// When it was delivered (consumer timeout; the deque is in delivery order).
    at: std::time::Instant,
}

#[derive(Debug)]
struct ConsumerRec {
    key: ConsumerKey,
    queue: Arc<Queue>,
}

/// A publisher confirm not yet sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirm {
    Ack,
    Nack,
    /// Waits for the group-commit sync with this batch id.
    Sync(u64),
}

/// Publisher confirms of a channel in confirm mode. Confirms leave in publish order: a
/// transient message's ack waits behind an earlier persistent one still being synced, so a
/// `multiple` ack never covers an unsynced message.
#[derive(Debug, Default)]
struct Confirms {
    next: u64,
    pending: VecDeque<(u64, Confirm)>,
}

#[derive(Debug)]
enum TxOp {
    Publish {
        msg: MessageRef,
        ttl: Option<u64>,
        mandatory: bool,
    },
    Ack {
        tag: u64,
        multiple: bool,
    },
    Reject {
        tag: u64,
        multiple: bool,
        requeue: Option<Return>,
    },
}

/// One channel's state.
#[derive(Debug)]
pub struct Channel {
    id: u16,
    key: ChannelKey,
    closing: bool,
    assembler: ContentAssembler,
    next_tag: u64,
    unacked: VecDeque<Unacked>,
    consumers: HashMap<ShortStr, ConsumerRec>,
    prefetch: u32,
    shared: Arc<ChannelShared>,
    confirms: Option<Confirms>,
    tx: Option<Vec<TxOp>>,
    /// Direct reply-to consumer: (consumer tag, `amq.rabbitmq.reply-to.…` name).
    reply_consumer: Option<(ShortStr, String)>,
    /// Has published (counted in `Metrics::publishers` until released).
    published: bool,
}

impl Channel {
    /// A newly opened channel.
    pub fn new(id: u16, key: ChannelKey) -> Channel {
        Channel {
            id,
            key,
            closing: false,
            assembler: ContentAssembler::new(),
            next_tag: 1,
            unacked: VecDeque::new(),
            consumers: HashMap::new(),
            prefetch: 0,
            shared: Arc::new(ChannelShared::default()),
            confirms: None,
            tx: None,
            reply_consumer: None,
            published: false,
        }
    }

    /// The channel number.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Open (not closing).
    pub fn is_open(&self) -> bool {
        !self.closing
    }

    /// Drops a consumer the broker cancelled. True if it was registered.
    pub fn forget_consumer(&mut self, tag: &ShortStr, key: ConsumerKey) -> bool {
        if self.consumers.get(tag).is_some_and(|c| c.key == key) {
            self.consumers.remove(tag);
            true
        } else {
            false
        }
    }

    fn tag_for(&self, key: ConsumerKey) -> Option<&ShortStr> {
        self.consumers.iter().find(|(_, c)| c.key == key).map(|(t, _)| t)
    }

    /// Removes the unacked entries an ack/nack/reject names; 406 for an unknown tag.
    fn take_unacked(&mut self, tag: u64, multiple: bool) -> AmqpResult<Vec<Unacked>> {
        if multiple && tag == 0 {
            return Ok(self.unacked.drain(..).collect());
        }
        let pos = self.unacked.binary_search_by_key(&tag, |u| u.tag);
        match (pos, multiple) {
            (Ok(i), false) => Ok(self.unacked.remove(i).into_iter().collect()),
            (Ok(i), true) => Ok(self.unacked.drain(..=i).collect()),
            (Err(_), _) => Err(AmqpError::precondition(format!("unknown delivery tag {tag}"))),
        }
    }
}

/// Groups unacked entries by queue, keeping order within each queue.
fn by_queue(entries: Vec<Unacked>) -> Vec<(Arc<Queue>, Vec<u64>)> {
    let mut groups: Vec<(Arc<Queue>, Vec<u64>)> = Vec::new();
    for u in entries {
        match groups.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &u.queue)) {
            Some((_, seqs)) => seqs.push(u.seq),
            None => groups.push((u.queue, vec![u.seq])),
        }
    }
    groups
}

impl Connection {
    fn vhost(&self) -> AmqpResult<Arc<VHost>> {
        self.vhost
            .clone()
            .ok_or_else(|| AmqpError::channel_error("connection not open"))
    }

    /// One frame for an open channel.
    pub(crate) fn channel_input(&mut self, ch: u16, frame: Frame) -> AmqpResult<()> {
        let max = self.broker.config.max_message_size;
        let c = self.channels.get_mut(&ch).expect("caller checked");
        if c.closing {
            if let Frame::Method { method, .. } = frame {
                match method {
                    Method::ChannelCloseOk(_) => {
                        self.channels.remove(&ch);
                    }
                    Method::ChannelClose(_) => {
                        self.channels.remove(&ch);
                        self.send_method(ch, ChannelCloseOk {});
                    }
                    _ => {}
                }
                self.shared.info.lock().channels = self.channels.len();
            }
            return Ok(());
        }
        if let Frame::Header { header, .. } = &frame
            && header.body_size > max
        {
            let e = AmqpError::precondition(format!(
                "message size {} is larger than configured max size {max}",
                header.body_size
            ))
            .with_method(60, 40);
            self.channel_error(ch, e);
            return Ok(());
        }
        let cmd = match c.assembler.handle(frame)? {
            Assembled::Pending => return Ok(()),
            Assembled::Command(cmd) => cmd,
        };
        let (cid, mid) = (cmd.method.class_id(), cmd.method.method_id());
        match self.channel_command(ch, cmd) {
            Ok(()) => Ok(()),
            Err(e) if e.is_hard() => Err(e.with_method(cid, mid)),
            Err(e) => {
                self.channel_error(ch, e.with_method(cid, mid));
                Ok(())
            }
        }
    }

    /// Closes a channel with a soft error.
    fn channel_error(&mut self, ch: u16, e: AmqpError) {
        tracing::debug!(channel = ch, "channel error: {}", e.reply_text());
        let Some(mut c) = self.channels.remove(&ch) else {
            return;
        };
        self.release_channel(&mut c);
        c.closing = true;
        self.channels.insert(ch, c);
        self.send_method(
            ch,
            ChannelClose {
                reply_code: e.code.code(),
                reply_text: ShortStr::from(e.reply_text()),
                class_id: e.class_id,
                method_id: e.method_id,
            },
        );
    }

    /// Cancels a channel's consumers and requeues its unacked messages.
    pub(crate) fn release_channel(&mut self, c: &mut Channel) {
        crate::http::prometheus::channel_released(
            &self.broker.metrics,
            c.closing,
            std::mem::take(&mut c.published),
        );
        if let Some((_, name)) = c.reply_consumer.take() {
            self.broker.remove_reply_consumer(&name);
        }
        let vhost = self.vhost.clone();
        // Consumers go first without dispatching, then the unacked messages are requeued (which
        // dispatches): the next consumer (single active consumer, message groups) receives the
        // requeued messages in their original order, before the ones behind them.
        let mut detached: Vec<Arc<Queue>> = Vec::new();
        for (_, rec) in c.consumers.drain() {
            if rec.queue.detach_consumer(rec.key) {
                if let Some(v) = &vhost {
                    v.delete_queue(&rec.queue.meta.name);
                }
            } else if !detached.iter().any(|q| Arc::ptr_eq(q, &rec.queue)) {
                detached.push(rec.queue);
            }
        }
        let n = c.unacked.len() as u32;
        let mut queues: Vec<Arc<Queue>> = Vec::new();
        for u in c.unacked.drain(..) {
            if !queues.iter().any(|q| Arc::ptr_eq(q, &u.queue)) {
                queues.push(u.queue);
            }
        }
        for q in &queues {
            q.release_channel(c.key, Return::Failed);
        }
        // A consumer's queue with nothing recorded unacked may still hold a delivery in flight
        // to this channel (a connection task that failed mid-delivery): release it too.
        for q in detached {
            if !queues.iter().any(|r| Arc::ptr_eq(r, &q)) {
                q.release_channel(c.key, Return::Failed);
            }
        }
        c.shared.release(n);
        c.tx = None;
    }

    /// Closes, with RabbitMQ's 406, every channel whose oldest unacked delivery is older than
    /// `timeout` (`consumer_timeout`). Only each channel's oldest delivery is looked at.
    pub(crate) fn check_consumer_timeouts(&mut self, now: std::time::Instant, timeout: std::time::Duration) {
        let late: Vec<u16> = self
            .channels
            .iter()
            .filter(|(_, c)| {
                !c.closing
                    && c.unacked
                        .front()
                        .is_some_and(|u| now.saturating_duration_since(u.at) > timeout)
            })
            .map(|(id, _)| *id)
            .collect();
        for ch in late {
            tracing::warn!(channel = ch, "consumer timeout; closing the channel");
            self.channel_error(
                ch,
                AmqpError::precondition(format!(
                    "delivery acknowledgement on channel {ch} timed out. Timeout value used: {} ms. \
                     This timeout value can be configured, see consumers doc guide to learn more",
                    timeout.as_millis()
                )),
            );
        }
    }

    /// Encodes a delivery from a queue, or puts it back if its consumer is gone.
    pub(crate) fn deliver(&mut self, queue: Arc<Queue>, d: Delivery) {
        let ch = (d.channel & 0xffff) as u16;
        let frame_max = self.frame_max;
        let Some(c) = self.channels.get_mut(&ch) else {
            queue.unsend(&d);
            return;
        };
        let tag = match d.consumer.and_then(|k| c.tag_for(k)) {
            Some(t) if !c.closing => t.clone(),
            _ => {
                if !d.no_ack {
                    c.shared.release(1);
                    queue.unsend(&d);
                }
                return;
            }
        };
        #[cfg(feature = "fault-injection")]
        if &*tag == "warren.test.panic-on-deliver" {
            panic!("injected fault: panic on delivery");
        }
        let delivery_tag = c.next_tag;
        c.next_tag += 1;
        if !d.no_ack {
            c.unacked.push_back(Unacked {
                tag: delivery_tag,
                queue,
                seq: d.seq,
                at: std::time::Instant::now(),
            });
        }
        self.broker.metrics.delivered.fetch_add(1, Ordering::Relaxed);
        self.broker.metrics.delivered_by[usize::from(d.no_ack)].fetch_add(1, Ordering::Relaxed);
        if d.redelivered {
            self.broker.metrics.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        let method: Method = BasicDeliver {
            consumer_tag: tag,
            delivery_tag,
            redelivered: d.redelivered,
            exchange: d.msg.exchange.clone(),
            routing_key: d.msg.routing_key.clone(),
        }
        .into();
        warren_codec::encode_method(&mut self.out, ch, &method);
        write_content(&mut self.out, ch, &d, frame_max);
    }

    fn channel_command(&mut self, ch: u16, cmd: Command) -> AmqpResult<()> {
        let Command { method, content } = cmd;
        match method {
            Method::ChannelOpen(_) => Err(AmqpError::channel_error("second 'channel.open' seen")),
            Method::ChannelClose(_) => {
                if let Some(mut c) = self.channels.remove(&ch) {
                    self.release_channel(&mut c);
                }
                self.shared.info.lock().channels = self.channels.len();
                self.send_method(ch, ChannelCloseOk {});
                Ok(())
            }
            Method::ChannelCloseOk(_) | Method::ChannelFlowOk(_) => Ok(()),
            Method::ChannelFlow(m) => {
                if !m.active {
                    return Err(AmqpError::not_implemented("active=false"));
                }
                self.send_method(ch, ChannelFlowOk { active: true });
                Ok(())
            }
            Method::AccessRequest(_) => {
                self.send_method(ch, AccessRequestOk { ticket: 1 });
                Ok(())
            }
            Method::ExchangeDeclare(m) => self.exchange_declare(ch, m),
            Method::ExchangeDelete(m) => {
                let v = self.vhost()?;
                self.check_access(Resource::Exchange, &m.exchange, Access::Configure)?;
                v.delete_exchange(&m.exchange, m.if_unused)?;
                if !m.nowait {
                    self.send_method(ch, ExchangeDeleteOk {});
                }
                Ok(())
            }
            Method::ExchangeBind(m) => {
                let v = self.vhost()?;
                self.check_access(Resource::Exchange, &m.destination, Access::Write)?;
                self.check_access(Resource::Exchange, &m.source, Access::Read)?;
                self.check_topic_bind(&m.source, &m.routing_key)?;
                v.bind(
                    &BindingRef {
                        source: &m.source,
                        destination: &m.destination,
                        to_queue: false,
                        routing_key: &m.routing_key,
                        arguments: &m.arguments,
                    },
                    None,
                )?;
                if !m.nowait {
                    self.send_method(ch, ExchangeBindOk {});
                }
                Ok(())
            }
            Method::ExchangeUnbind(m) => {
                let v = self.vhost()?;
                self.check_access(Resource::Exchange, &m.destination, Access::Write)?;
                self.check_access(Resource::Exchange, &m.source, Access::Read)?;
                self.check_topic_bind(&m.source, &m.routing_key)?;
                v.unbind(
                    &BindingRef {
                        source: &m.source,
                        destination: &m.destination,
                        to_queue: false,
                        routing_key: &m.routing_key,
                        arguments: &m.arguments,
                    },
                    None,
                )?;
                if !m.nowait {
                    self.send_method(ch, ExchangeUnbindOk {});
                }
                Ok(())
            }
            Method::QueueDeclare(m) => self.queue_declare(ch, m),
            Method::QueueBind(m) => {
                let v = self.vhost()?;
                self.check_access(Resource::Queue, &m.queue, Access::Write)?;
                self.check_access(Resource::Exchange, &m.exchange, Access::Read)?;
                self.check_topic_bind(&m.exchange, &m.routing_key)?;
                v.bind(
                    &BindingRef {
                        source: &m.exchange,
                        destination: &m.queue,
                        to_queue: true,
                        routing_key: &m.routing_key,
                        arguments: &m.arguments,
                    },
                    Some(self.shared.id),
                )?;
                if !m.nowait {
                    self.send_method(ch, QueueBindOk {});
                }
                Ok(())
            }
            Method::QueueUnbind(m) => {
                let v = self.vhost()?;
                self.check_access(Resource::Queue, &m.queue, Access::Write)?;
                self.check_access(Resource::Exchange, &m.exchange, Access::Read)?;
                self.check_topic_bind(&m.exchange, &m.routing_key)?;
                // A missing queue is fine (unbind is idempotent); another connection's
                // exclusive queue is not.
                v.unbind(
                    &BindingRef {
                        source: &m.exchange,
                        destination: &m.queue,
                        to_queue: true,
                        routing_key: &m.routing_key,
                        arguments: &m.arguments,
                    },
                    Some(self.shared.id),
                )?;
                self.send_method(ch, QueueUnbindOk {});
                Ok(())
            }
            Method::QueuePurge(m) => {
                self.check_access(Resource::Queue, &m.queue, Access::Read)?;
                let q = self.queue_for_use(&m.queue)?;
                let n = q.purge();
                if !m.nowait {
                    self.send_method(ch, QueuePurgeOk { message_count: n });
                }
                Ok(())
            }
            Method::QueueDelete(m) => self.queue_delete(ch, m),
            Method::BasicQos(m) => {
                if m.prefetch_size != 0 {
                    return Err(AmqpError::not_implemented(format!(
                        "prefetch_size!=0 ({})",
                        m.prefetch_size
                    )));
                }
                let c = self.channels.get_mut(&ch).expect("open");
                if m.global {
                    c.shared.limit.store(m.prefetch_count as u32, Ordering::Release);
                    c.shared.release(0);
                } else {
                    c.prefetch = m.prefetch_count as u32;
                }
                self.send_method(ch, BasicQosOk {});
                Ok(())
            }
            Method::BasicConsume(m) => self.basic_consume(ch, m),
            Method::BasicCancel(m) => {
                let c = self.channels.get_mut(&ch).expect("open");
                if c.reply_consumer
                    .as_ref()
                    .is_some_and(|(t, _)| *t == m.consumer_tag)
                    && let Some((_, name)) = c.reply_consumer.take()
                {
                    self.broker.remove_reply_consumer(&name);
                }
                if let Some(rec) = c.consumers.remove(&m.consumer_tag)
                    && rec.queue.remove_consumer(rec.key)
                {
                    self.vhost()?.delete_queue(&rec.queue.meta.name);
                }
                if !m.nowait {
                    self.send_method(
                        ch,
                        BasicCancelOk {
                            consumer_tag: m.consumer_tag,
                        },
                    );
                }
                Ok(())
            }
            Method::BasicPublish(m) => {
                let (header, body) = content.ok_or_else(|| AmqpError::internal("publish without content"))?;
                self.basic_publish(ch, m, header.properties, body)
            }
            Method::BasicGet(m) => self.basic_get(ch, m),
            Method::BasicAck(m) => {
                if let Some(tx) = self.channels.get_mut(&ch).and_then(|c| c.tx.as_mut()) {
                    tx.push(TxOp::Ack {
                        tag: m.delivery_tag,
                        multiple: m.multiple,
                    });
                    return Ok(());
                }
                self.ack(ch, m.delivery_tag, m.multiple)
            }
            Method::BasicReject(m) => {
                let requeue = m.requeue.then_some(Return::Failed);
                self.reject_or_buffer(ch, m.delivery_tag, false, requeue)
            }
            Method::BasicNack(m) => {
                let requeue = m.requeue.then_some(Return::Returned);
                self.reject_or_buffer(ch, m.delivery_tag, m.multiple, requeue)
            }
            Method::BasicRecover(_) | Method::BasicRecoverAsync(_) => {
                let sync = matches!(method, Method::BasicRecover(_));
                let requeue = match &method {
                    Method::BasicRecover(m) => m.requeue,
                    Method::BasicRecoverAsync(m) => m.requeue,
                    _ => true,
                };
                if !requeue {
                    // As RabbitMQ: only requeue=true is implemented (hard error 540).
                    return Err(AmqpError::not_implemented("requeue=false"));
                }
                let c = self.channels.get_mut(&ch).expect("open");
                let all: Vec<Unacked> = c.unacked.drain(..).collect();
                let n = all.len() as u32;
                let shared = c.shared.clone();
                for (q, seqs) in by_queue(all) {
                    q.reject(&seqs, Some(Return::Returned));
                }
                shared.release(n);
                if sync {
                    self.send_method(ch, BasicRecoverOk {});
                }
                Ok(())
            }
            Method::ConfirmSelect(m) => {
                let c = self.channels.get_mut(&ch).expect("open");
                if c.tx.is_some() {
                    return Err(AmqpError::precondition("cannot switch from tx to confirm mode"));
                }
                if c.confirms.is_none() {
                    c.confirms = Some(Confirms {
                        next: 1,
                        pending: VecDeque::new(),
                    });
                }
                if !m.nowait {
                    self.send_method(ch, ConfirmSelectOk {});
                }
                Ok(())
            }
            Method::TxSelect(_) => {
                let c = self.channels.get_mut(&ch).expect("open");
                if c.confirms.is_some() {
                    return Err(AmqpError::precondition("cannot switch from confirm to tx mode"));
                }
                if c.tx.is_none() {
                    c.tx = Some(Vec::new());
                }
                self.send_method(ch, TxSelectOk {});
                Ok(())
            }
            Method::TxCommit(_) => {
                let c = self.channels.get_mut(&ch).expect("open");
                let Some(tx) = c.tx.as_mut() else {
                    return Err(AmqpError::precondition("channel is not transactional"));
                };
                let ops = std::mem::take(tx);
                for op in ops {
                    match op {
                        TxOp::Publish { msg, ttl, mandatory } => {
                            self.route_publish(ch, msg, ttl, mandatory)?
                        }
                        TxOp::Ack { tag, multiple } => self.ack(ch, tag, multiple)?,
                        TxOp::Reject {
                            tag,
                            multiple,
                            requeue,
                        } => self.reject(ch, tag, multiple, requeue)?,
                    }
                }
                self.send_method(ch, TxCommitOk {});
                Ok(())
            }
            Method::TxRollback(_) => {
                let c = self.channels.get_mut(&ch).expect("open");
                let Some(tx) = c.tx.as_mut() else {
                    return Err(AmqpError::precondition("channel is not transactional"));
                };
                tx.clear();
                self.send_method(ch, TxRollbackOk {});
                Ok(())
            }
            other => Err(AmqpError::command_invalid(format!(
                "unexpected method from client: {}",
                other.name()
            ))),
        }
    }

    fn exchange_declare(&mut self, ch: u16, m: ExchangeDeclare) -> AmqpResult<()> {
        let v = self.vhost()?;
        if !m.passive && !m.exchange.is_empty() {
            self.check_access(Resource::Exchange, &m.exchange, Access::Configure)?;
        }
        v.declare_exchange(&ExchangeDecl {
            name: &m.exchange,
            kind: &m.kind,
            passive: m.passive,
            durable: m.durable,
            auto_delete: m.auto_delete,
            internal: m.internal,
            arguments: &m.arguments,
        })?;
        if !m.nowait {
            self.send_method(ch, ExchangeDeclareOk {});
        }
        Ok(())
    }

    fn queue_declare(&mut self, ch: u16, m: QueueDeclare) -> AmqpResult<()> {
        let v = self.vhost()?;
        if &*m.queue == REPLY_TO_QUEUE {
            // The direct reply-to pseudo-queue always exists, empty.
            if !m.nowait {
                self.send_method(
                    ch,
                    QueueDeclareOk {
                        queue: m.queue,
                        message_count: 0,
                        consumer_count: 0,
                    },
                );
            }
            return Ok(());
        }
        let name = if m.queue.is_empty() {
            random_name("amq.gen-")
        } else {
            m.queue.clone()
        };
        if !m.passive {
            self.check_access(Resource::Queue, &name, Access::Configure)?;
            // As RabbitMQ: a dead-letter exchange needs write on it and read on the queue.
            if let Some(dlx) = m.arguments.get("x-dead-letter-exchange").and_then(|x| x.as_str()) {
                self.check_access(Resource::Queue, &name, Access::Read)?;
                self.check_access(Resource::Exchange, dlx, Access::Write)?;
            }
        }
        let (q, _) = v.declare_queue(
            &QueueDecl {
                name: &name,
                passive: m.passive,
                durable: m.durable,
                exclusive: m.exclusive,
                auto_delete: m.auto_delete,
                arguments: &m.arguments,
                owner: self.shared.id,
                server_named: m.queue.is_empty(),
            },
            self.broker.config.max_queues_per_vhost,
        )?;
        q.touch();
        if !m.nowait {
            let counts = q.counts();
            self.send_method(
                ch,
                QueueDeclareOk {
                    queue: name,
                    message_count: counts.ready,
                    consumer_count: counts.consumers,
                },
            );
        }
        Ok(())
    }

    /// A queue the connection may use (exists, not another connection's exclusive queue).
    fn queue_for_use(&self, name: &str) -> AmqpResult<Arc<Queue>> {
        self.vhost()?.queue_for_use(name, self.shared.id)
    }

    fn queue_delete(&mut self, ch: u16, m: QueueDelete) -> AmqpResult<()> {
        let v = self.vhost()?;
        self.check_access(Resource::Queue, &m.queue, Access::Configure)?;
        let count = match self.queue_for_use(&m.queue) {
            Ok(q) => {
                let counts = q.counts();
                if m.if_unused && counts.consumers > 0 {
                    return Err(AmqpError::precondition(format!(
                        "queue '{}' in vhost '{}' in use",
                        m.queue, v.name
                    )));
                }
                if m.if_empty && counts.ready > 0 {
                    return Err(AmqpError::precondition(format!(
                        "queue '{}' in vhost '{}' is not empty",
                        m.queue, v.name
                    )));
                }
                v.delete_queue(&m.queue).unwrap_or(0)
            }
            Err(e) if e.code == warren_codec::ReplyCode::NotFound => 0,
            Err(e) => return Err(e),
        };
        if !m.nowait {
            self.send_method(ch, QueueDeleteOk { message_count: count });
        }
        Ok(())
    }

    fn basic_consume(&mut self, ch: u16, m: BasicConsume) -> AmqpResult<()> {
        if &*m.queue == REPLY_TO_QUEUE {
            return self.reply_consume(ch, m);
        }
        let v = self.vhost()?;
        self.check_access(Resource::Queue, &m.queue, Access::Read)?;
        let q = self.queue_for_use(&m.queue)?;
        let c = self.channels.get_mut(&ch).expect("open");
        let tag = if m.consumer_tag.is_empty() {
            random_name("amq.ctag-")
        } else {
            m.consumer_tag.clone()
        };
        if c.consumers.contains_key(&tag) {
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
        let key = self.broker.next_id();
        let spec = ConsumerSpec {
            key,
            channel: c.key,
            tag: tag.clone(),
            no_ack: m.no_ack,
            prefetch: c.prefetch,
            exclusive: m.exclusive,
            priority,
        };
        let sink = Sink {
            conn: self.shared.clone(),
            channel: c.shared.clone(),
        };
        c.consumers.insert(
            tag.clone(),
            ConsumerRec {
                key,
                queue: q.clone(),
            },
        );
        if let Err(e) = q.add_consumer(spec, sink, &v.name) {
            if let Some(c) = self.channels.get_mut(&ch) {
                c.consumers.remove(&tag);
            }
            return Err(e);
        }
        // Deliveries reach this task through its mailbox, so consume-ok still goes out first.
        if !m.nowait {
            self.send_method(ch, BasicConsumeOk { consumer_tag: tag });
        }
        Ok(())
    }

    /// basic.consume on `amq.rabbitmq.reply-to` (direct reply-to; no-ack only).
    fn reply_consume(&mut self, ch: u16, m: BasicConsume) -> AmqpResult<()> {
        if !m.no_ack {
            return Err(AmqpError::precondition("reply consumer cannot acknowledge"));
        }
        let c = self.channels.get_mut(&ch).expect("open");
        if c.reply_consumer.is_some() {
            return Err(AmqpError::precondition("reply consumer already set"));
        }
        let tag = if m.consumer_tag.is_empty() {
            random_name("amq.ctag-")
        } else {
            m.consumer_tag.clone()
        };
        let name = format!("{REPLY_TO_QUEUE}.{}", random_name(""));
        c.reply_consumer = Some((tag.clone(), name.clone()));
        self.broker.add_reply_consumer(
            name,
            ReplyTarget {
                conn: self.shared.clone(),
                channel: ch,
                tag: tag.clone(),
            },
        );
        if !m.nowait {
            self.send_method(ch, BasicConsumeOk { consumer_tag: tag });
        }
        Ok(())
    }

    /// Sends a direct reply-to message to this connection's reply consumer.
    pub(crate) fn deliver_reply(&mut self, ch: u16, tag: ShortStr, msg: MessageRef) {
        let frame_max = self.frame_max;
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        if c.closing || !c.reply_consumer.as_ref().is_some_and(|(t, _)| *t == tag) {
            return;
        }
        let delivery_tag = c.next_tag;
        c.next_tag += 1;
        let method: Method = BasicDeliver {
            consumer_tag: tag,
            delivery_tag,
            redelivered: false,
            exchange: msg.exchange.clone(),
            routing_key: msg.routing_key.clone(),
        }
        .into();
        warren_codec::encode_method(&mut self.out, ch, &method);
        encode_basic_header(&mut self.out, ch, msg.body.len() as u64, &msg.properties);
        encode_body(&mut self.out, ch, &msg.body, frame_max);
    }

    fn basic_get(&mut self, ch: u16, m: BasicGet) -> AmqpResult<()> {
        self.check_access(Resource::Queue, &m.queue, Access::Read)?;
        let q = self.queue_for_use(&m.queue)?;
        let frame_max = self.frame_max;
        let c = self.channels.get_mut(&ch).expect("open");
        if !m.no_ack {
            // basic.get ignores prefetch, but its delivery counts in the channel's window.
            c.shared.unacked.fetch_add(1, Ordering::AcqRel);
        }
        match q.get(c.key, m.no_ack) {
            None => {
                self.broker.metrics.get_empty.fetch_add(1, Ordering::Relaxed);
                if !m.no_ack {
                    c.shared.release(1);
                }
                self.send_method(
                    ch,
                    BasicGetEmpty {
                        cluster_id: ShortStr::from(""),
                    },
                );
            }
            Some((d, left)) => {
                let tag = c.next_tag;
                c.next_tag += 1;
                if !m.no_ack {
                    c.unacked.push_back(Unacked {
                        tag,
                        queue: q.clone(),
                        seq: d.seq,
                        at: std::time::Instant::now(),
                    });
                }
                self.broker.metrics.delivered.fetch_add(1, Ordering::Relaxed);
                self.broker.metrics.delivered_by[2 + usize::from(m.no_ack)].fetch_add(1, Ordering::Relaxed);
                if d.redelivered {
                    self.broker.metrics.redelivered.fetch_add(1, Ordering::Relaxed);
                }
                let method: Method = BasicGetOk {
                    delivery_tag: tag,
                    redelivered: d.redelivered,
                    exchange: d.msg.exchange.clone(),
                    routing_key: d.msg.routing_key.clone(),
                    message_count: left,
                }
                .into();
                warren_codec::encode_method(&mut self.out, ch, &method);
                write_content(&mut self.out, ch, &d, frame_max);
            }
        }
        Ok(())
    }

    fn ack(&mut self, ch: u16, tag: u64, multiple: bool) -> AmqpResult<()> {
        let c = self.channels.get_mut(&ch).expect("open");
        let taken = c.take_unacked(tag, multiple)?;
        let n = taken.len() as u32;
        let shared = c.shared.clone();
        for (q, seqs) in by_queue(taken) {
            q.ack(&seqs);
        }
        self.broker.metrics.acked.fetch_add(n as u64, Ordering::Relaxed);
        shared.release(n);
        Ok(())
    }

    fn reject_or_buffer(
        &mut self,
        ch: u16,
        tag: u64,
        multiple: bool,
        requeue: Option<Return>,
    ) -> AmqpResult<()> {
        if let Some(tx) = self.channels.get_mut(&ch).and_then(|c| c.tx.as_mut()) {
            tx.push(TxOp::Reject {
                tag,
                multiple,
                requeue,
            });
            return Ok(());
        }
        self.reject(ch, tag, multiple, requeue)
    }

    fn reject(&mut self, ch: u16, tag: u64, multiple: bool, requeue: Option<Return>) -> AmqpResult<()> {
        let c = self.channels.get_mut(&ch).expect("open");
        let taken = c.take_unacked(tag, multiple)?;
        let n = taken.len() as u32;
        let shared = c.shared.clone();
        for (q, seqs) in by_queue(taken) {
            q.reject(&seqs, requeue);
        }
        shared.release(n);
        Ok(())
    }

    fn basic_publish(
        &mut self,
        ch: u16,
        m: BasicPublish,
        properties: BasicProperties,
        body: Bytes,
    ) -> AmqpResult<()> {
        if m.immediate {
            return Err(AmqpError::not_implemented("immediate=true"));
        }
        self.check_publish(&m.exchange)?;
        self.check_user_id(properties.user_id.as_deref())?;
        self.broker.metrics.published.fetch_add(1, Ordering::Relaxed);
        self.publisher = true;
        if let Some(c) = self.channels.get_mut(&ch).filter(|c| !c.published) {
            c.published = true;
            self.broker.metrics.publishers.fetch_add(1, Ordering::Relaxed);
        }
        let mut properties = properties;
        if properties.reply_to.as_deref() == Some(REPLY_TO_QUEUE) {
            let c = self.channels.get(&ch).expect("open");
            let Some((_, name)) = &c.reply_consumer else {
                return Err(AmqpError::precondition("fast reply consumer does not exist"));
            };
            properties.reply_to = Some(ShortStr::from(name.as_str()));
        }
        let msg = Arc::new(Message {
            exchange: m.exchange,
            routing_key: m.routing_key,
            properties,
            body,
            dead_lettered: false,
        });
        self.check_topic_publish(&msg)?;
        let ttl = msg.expiration_ms().map_err(AmqpError::precondition)?;
        if let Some(tx) = self.channels.get_mut(&ch).and_then(|c| c.tx.as_mut()) {
            // Check the exchange now, as RabbitMQ does, and apply at commit.
            let v = self
                .vhost
                .clone()
                .ok_or_else(|| AmqpError::channel_error("connection not open"))?;
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
        self.route_publish(ch, msg, ttl, m.mandatory)
    }

    /// As RabbitMQ: a `user_id` property must name the connection's user, unless that user has
    /// the `impersonator` tag (406 PRECONDITION_FAILED, channel closed).
    fn check_user_id(&self, user_id: Option<&str>) -> AmqpResult<()> {
        match user_id {
            Some(u)
                if u != self.user
                    && !self
                        .broker
                        .users
                        .get(&self.user)
                        .is_some_and(|x| x.tags.iter().any(|t| t == "impersonator")) =>
            {
                Err(AmqpError::precondition(format!(
                    "user_id property set to '{u}' but authenticated user was '{}'",
                    self.user
                )))
            }
            _ => Ok(()),
        }
    }

    fn route_publish(
        &mut self,
        ch: u16,
        msg: MessageRef,
        ttl: Option<u64>,
        mandatory: bool,
    ) -> AmqpResult<()> {
        let v = self.vhost()?;
        let seq = self
            .channels
            .get_mut(&ch)
            .and_then(|c| c.confirms.as_mut())
            .map(|cf| {
                let s = cf.next;
                cf.next += 1;
                s
            });
        let outcome = if msg.exchange.is_empty() && msg.routing_key.starts_with(REPLY_TO_QUEUE) {
            let delivered = self.broker.deliver_reply(&msg.routing_key, msg.clone());
            crate::broker::PublishOutcome {
                enqueued: delivered as usize,
                ..Default::default()
            }
        } else {
            v.publish(msg.clone(), ttl, now_ms())?
        };
        crate::http::prometheus::routed(&self.broker.metrics, seq.is_some(), outcome.enqueued);
        if outcome.enqueued + outcome.rejected + outcome.duplicates == 0 {
            self.broker.metrics.unroutable.fetch_add(1, Ordering::Relaxed);
            if mandatory {
                self.broker
                    .metrics
                    .unroutable_returned
                    .fetch_add(1, Ordering::Relaxed);
                let method: Method = BasicReturn {
                    reply_code: 312,
                    reply_text: ShortStr::from("NO_ROUTE"),
                    exchange: msg.exchange.clone(),
                    routing_key: msg.routing_key.clone(),
                }
                .into();
                warren_codec::encode_method(&mut self.out, ch, &method);
                encode_basic_header(&mut self.out, ch, msg.body.len() as u64, &msg.properties);
                encode_body(&mut self.out, ch, &msg.body, self.frame_max);
            }
        }
        let needs_sync = !outcome.persisted.is_empty();
        for q in outcome.persisted {
            self.mark_dirty(q);
        }
        if !outcome.out_of_credit.is_empty() {
            self.enter_flow(outcome.out_of_credit);
        }
        if outcome.store_failed > 0 {
            // Publishers are blocked now, not at the next disk sample.
            self.broker
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
            let state = if outcome.rejected > 0 || outcome.store_failed > 0 {
                Confirm::Nack
            } else if needs_sync && self.broker.persistence.is_some() {
                self.sync_wanted = true;
                Confirm::Sync(self.sync_batch)
            } else {
                Confirm::Ack
            };
            if let Some(cf) = self.channels.get_mut(&ch).and_then(|c| c.confirms.as_mut()) {
                cf.pending.push_back((seq, state));
            }
        }
        Ok(())
    }

    /// A group-commit sync finished: confirms waiting for batches up to `batch` can go.
    pub(crate) fn synced(&mut self, batch: u64, ok: bool) {
        for c in self.channels.values_mut() {
            if let Some(cf) = c.confirms.as_mut() {
                for (_, st) in cf.pending.iter_mut() {
                    if let Confirm::Sync(b) = *st
                        && b <= batch
                    {
                        *st = if ok { Confirm::Ack } else { Confirm::Nack };
                    }
                }
            }
        }
    }

    /// Sends the coalesced publisher-confirm ack of a channel, if any.
    pub(crate) fn flush_confirms(&mut self, ch: u16) {
        let Some(cf) = self.channels.get_mut(&ch).and_then(|c| c.confirms.as_mut()) else {
            return;
        };
        // Every seq before the front was already confirmed, so a run of acks a..=b is one
        // `basic.ack(b, multiple = b > a)`.
        let mut frames: Vec<Method> = Vec::new();
        let mut run: Option<(u64, u64)> = None;
        while let Some(&(seq, st)) = cf.pending.front() {
            match st {
                Confirm::Sync(_) => break,
                Confirm::Ack => {
                    self.broker.metrics.confirmed.fetch_add(1, Ordering::Relaxed);
                    run = Some(match run {
                        Some((a, _)) => (a, seq),
                        None => (seq, seq),
                    });
                }
                Confirm::Nack => {
                    if let Some((a, b)) = run.take() {
                        frames.push(
                            BasicAck {
                                delivery_tag: b,
                                multiple: b > a,
                            }
                            .into(),
                        );
                    }
                    frames.push(
                        BasicNack {
                            delivery_tag: seq,
                            multiple: false,
                            requeue: false,
                        }
                        .into(),
                    );
                }
            }
            cf.pending.pop_front();
        }
        if let Some((a, b)) = run {
            frames.push(
                BasicAck {
                    delivery_tag: b,
                    multiple: b > a,
                }
                .into(),
            );
        }
        for f in frames {
            self.send_method(ch, f);
        }
    }

    /// Sends every channel's pending confirms (end of a read batch).
    pub(crate) fn flush_all_confirms(&mut self) {
        let chans: Vec<u16> = self
            .channels
            .iter()
            .filter(|(_, c)| {
                c.confirms.as_ref().is_some_and(|cf| {
                    cf.pending
                        .front()
                        .is_some_and(|(_, st)| !matches!(st, Confirm::Sync(_)))
                })
            })
            .map(|(id, _)| *id)
            .collect();
        for ch in chans {
            self.flush_confirms(ch);
        }
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
