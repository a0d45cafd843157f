//! One AMQP channel's state machine: methods in, frames (into the [`Session`]'s buffer) and
//! broker calls out. A channel owns its delivery tags, the unacked deque sorted by tag, its
//! consumers, its prefetch, publisher confirms and its transaction; the connection
//! ([`crate::connection`]) owns the channel map, the socket and the channel lifecycle
//! (`channel.open`, `channel.close`, closing a channel on a soft error).
//!
//! The methods are split by AMQP class, in the files an operator would look for:
//! [`exchange`] (exchange.declare/delete/bind/unbind), [`queue`] (queue.declare/bind/unbind/
//! purge/delete), [`basic`] (qos, consume, cancel, publish, get, ack, reject, nack, recover and
//! the deliveries queues push), [`confirm`] (confirm.select and the confirms' order) and [`tx`]
//! (tx.select/commit/rollback). The unit tests at the bottom drive a channel with a
//! [`Session`] and no socket.

mod basic;
mod confirm;
mod exchange;
mod queue;
mod tx;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use warren_codec::methods::*;
use warren_codec::{Command, ContentAssembler, Method, ShortStr};
use warren_core::queue::{ChannelKey, ConsumerKey, Return};
use warren_core::{AmqpError, AmqpResult};

use crate::forward::QueueRef;
use crate::mailbox::ChannelShared;
pub use crate::session::Session;

use confirm::Confirms;
use tx::Tx;

/// A delivery the client has not acknowledged yet.
#[derive(Debug)]
struct Unacked {
    tag: u64,
    queue: QueueRef,
    seq: u64,
    /// When it was delivered (consumer timeout; the deque is in delivery order).
    at: std::time::Instant,
}

/// A consumer of this channel: its broker-wide key and its queue.
#[derive(Debug)]
struct ConsumerRec {
    key: ConsumerKey,
    queue: QueueRef,
}

/// One channel's state.
#[derive(Debug)]
pub struct Channel {
    id: u16,
    key: ChannelKey,
    closing: bool,
    assembler: ContentAssembler,
    /// The last publish's route, reused while the topology is unchanged.
    route_cache: crate::vhost::RouteCache,
    next_tag: u64,
    unacked: VecDeque<Unacked>,
    consumers: HashMap<ShortStr, ConsumerRec>,
    prefetch: u32,
    shared: Arc<ChannelShared>,
    confirms: Option<Confirms>,
    tx: Option<Tx>,
    /// Direct reply-to consumer: (consumer tag, `amq.rabbitmq.reply-to.…` name).
    reply_consumer: Option<(ShortStr, String)>,
    /// Has published (counted in `Metrics::publishers` until released).
    published: bool,
}

impl Channel {
    /// What other tasks see of this channel (prefetch counter, modes).
    pub(crate) fn shared(&self) -> &Arc<ChannelShared> {
        &self.shared
    }

    /// A newly opened channel.
    pub fn new(id: u16, key: ChannelKey) -> Channel {
        Channel {
            id,
            key,
            closing: false,
            assembler: ContentAssembler::new(),
            route_cache: Default::default(),
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

    /// Closed by an error: waits for `channel.close-ok`, ignoring everything else.
    pub fn set_closing(&mut self) {
        self.closing = true;
    }

    /// The frame assembler (method, header and body frames into commands).
    pub fn assembler(&mut self) -> &mut ContentAssembler {
        &mut self.assembler
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

    /// Whether the oldest unacked delivery is older than `timeout` (`consumer_timeout`).
    pub fn timed_out(&self, now: std::time::Instant, timeout: std::time::Duration) -> bool {
        !self.closing
            && self
                .unacked
                .front()
                .is_some_and(|u| now.saturating_duration_since(u.at) > timeout)
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

    /// Puts deliveries a transaction's acks or rejects had taken back among the unacked ones
    /// (tx.rollback, or the channel closing with a transaction open), in tag order.
    fn restore_unacked(&mut self, held: impl Iterator<Item = Unacked>) {
        let before = self.unacked.len();
        self.unacked.extend(held);
        if self.unacked.len() != before {
            self.unacked.make_contiguous().sort_by_key(|u| u.tag);
        }
    }

    /// One complete command of this open channel (not `channel.open`/`channel.close`, which
    /// the connection handles). An error is the caller's to turn into a channel or
    /// connection close.
    pub fn handle(&mut self, s: &mut Session, cmd: Command) -> AmqpResult<()> {
        let Command { method, content } = cmd;
        let ch = self.id;
        match method {
            Method::ChannelOpen(_) => Err(AmqpError::channel_error("second 'channel.open' seen")),
            Method::ChannelCloseOk(_) | Method::ChannelFlowOk(_) => Ok(()),
            Method::ChannelFlow(m) => {
                if !m.active {
                    return Err(AmqpError::not_implemented("active=false"));
                }
                s.send_method(ch, ChannelFlowOk { active: true });
                Ok(())
            }
            Method::AccessRequest(_) => {
                s.send_method(ch, AccessRequestOk { ticket: 1 });
                Ok(())
            }
            Method::ExchangeDeclare(m) => self.exchange_declare(s, *m),
            Method::ExchangeDelete(m) => self.exchange_delete(s, m),
            Method::ExchangeBind(m) => self.exchange_bind(s, *m),
            Method::ExchangeUnbind(m) => self.exchange_unbind(s, *m),
            Method::QueueDeclare(m) => self.queue_declare(s, m),
            Method::QueueBind(m) => self.queue_bind(s, *m),
            Method::QueueUnbind(m) => self.queue_unbind(s, *m),
            Method::QueuePurge(m) => self.queue_purge(s, m),
            Method::QueueDelete(m) => self.queue_delete(s, m),
            Method::BasicQos(m) => self.basic_qos(s, m),
            Method::BasicConsume(m) => self.basic_consume(s, *m),
            Method::BasicCancel(m) => self.basic_cancel(s, m),
            Method::BasicPublish(m) => {
                let (header, body) = content.ok_or_else(|| AmqpError::internal("publish without content"))?;
                self.basic_publish(s, m, header, body)
            }
            Method::BasicGet(m) => self.basic_get(s, m),
            Method::BasicAck(m) => self.basic_ack(s, m.delivery_tag, m.multiple),
            Method::BasicReject(m) => {
                let requeue = m.requeue.then_some(Return::Failed);
                self.reject_or_buffer(m.delivery_tag, false, requeue)
            }
            Method::BasicNack(m) => {
                let requeue = m.requeue.then_some(Return::Returned);
                self.reject_or_buffer(m.delivery_tag, m.multiple, requeue)
            }
            Method::BasicRecover(m) => self.basic_recover(s, m.requeue, true),
            Method::BasicRecoverAsync(m) => self.basic_recover(s, m.requeue, false),
            Method::ConfirmSelect(m) => self.confirm_select(s, m),
            Method::TxSelect(_) => self.tx_select(s),
            Method::TxCommit(_) => self.tx_commit(s),
            Method::TxRollback(_) => self.tx_rollback(s),
            other => Err(AmqpError::command_invalid(format!(
                "unexpected method from client: {}",
                other.name()
            ))),
        }
    }

    /// Cancels the channel's consumers and requeues its unacked messages (channel closed,
    /// by either side, or its connection gone).
    pub fn release(&mut self, s: &mut Session) {
        s.broker
            .metrics
            .channel_released(self.closing, std::mem::take(&mut self.published));
        if let Some((_, name)) = self.reply_consumer.take() {
            s.broker.remove_reply_consumer(&name);
        }
        let vhost = s.vhost.clone();
        // Consumers go first without dispatching, then the unacked messages are requeued (which
        // dispatches): the next consumer (single active consumer, message groups) receives the
        // requeued messages in their original order, before the ones behind them.
        let mut detached: Vec<QueueRef> = Vec::new();
        for (_, rec) in self.consumers.drain() {
            if rec.queue.detach_consumer(rec.key) {
                if let Some(v) = &vhost {
                    s.broker.auto_delete_queue(v, rec.queue.name());
                }
            } else if !detached.iter().any(|q| q.same(&rec.queue)) {
                detached.push(rec.queue);
            }
        }
        // Deliveries an open transaction acked or rejected go back with the others.
        if let Some(tx) = self.tx.take() {
            self.restore_unacked(tx.into_held());
        }
        let n = self.unacked.len() as u32;
        let mut queues: Vec<QueueRef> = Vec::new();
        for u in self.unacked.drain(..) {
            if !queues.iter().any(|q| q.same(&u.queue)) {
                queues.push(u.queue);
            }
        }
        for q in &queues {
            q.release_channel(self.key, Return::Failed);
        }
        // A consumer's queue with nothing recorded unacked may still hold a delivery in flight
        // to this channel (a connection task that failed mid-delivery): release it too.
        for q in detached {
            if !queues.iter().any(|r| r.same(&q)) {
                q.release_channel(self.key, Return::Failed);
            }
        }
        self.shared.release(n);
        self.tx = None;
    }
}

impl Channel {
    /// Proposes `method`, a topology change in vhost `vhost`, to the cluster (a clustered
    /// node only): the connection waits for the commit ([`crate::session::Pending`]) and
    /// `done` answers the client then; `what` names the change in the error if it cannot be
    /// committed (`declare queue 'q'`).
    fn propose(
        &self,
        s: &mut Session,
        vhost: &str,
        method: impl Into<Method>,
        what: String,
        done: impl FnOnce(&mut Session, crate::clustering::Outcome) + Send + 'static,
    ) {
        let change = crate::clustering::Change::define(vhost, &s.broker.config.node_name, method);
        s.pending = Some(crate::session::Pending {
            channel: self.id,
            ids: (0, 0),
            work: Box::pin(crate::clustering::define(s.broker.clone(), change, what)),
            done: Box::new(done),
        });
    }

    /// [`Channel::propose`] answering `ok` (if any: none for nowait) once committed.
    fn propose_ok(
        &self,
        s: &mut Session,
        vhost: &str,
        method: impl Into<Method>,
        what: String,
        ok: Option<Method>,
    ) {
        let ch = self.id;
        self.propose(s, vhost, method, what, move |s, _| {
            if let Some(ok) = ok {
                s.send_method(ch, ok);
            }
        });
    }
}

/// Groups unacked entries by queue, keeping order within each queue.
fn by_queue(entries: Vec<Unacked>) -> Vec<(QueueRef, Vec<u64>)> {
    let mut groups: Vec<(QueueRef, Vec<u64>)> = Vec::new();
    for u in entries {
        match groups.iter_mut().find(|(q, _)| q.same(&u.queue)) {
            Some((_, seqs)) => seqs.push(u.seq),
            None => groups.push((u.queue, vec![u.seq])),
        }
    }
    groups
}

#[cfg(test)]
mod tests;
