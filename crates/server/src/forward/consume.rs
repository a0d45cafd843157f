//! Consuming from a queue of another node: the channel's node (the *origin*) registers a
//! proxy consumer on the queue's home node, whose deliveries stream back over the cluster link,
//! and whose acks, rejects, cancel and channel close go the other way.
//!
//! - Origin: a [`RemoteQueue`] stands for the remote queue in the channel's consumer and
//!   unacked records ([`QueueRef`]); what the channel does to it becomes an [`Op`] on the
//!   node's op link. Deliveries arrive as [`Op::Deliver`] and reach the connection as
//!   `ConnEvent::RemoteDeliver`, so the channel numbers and writes them as local ones.
//! - Home: one [`HomeChan`] per remote channel, with a connection mailbox of its own that the
//!   queue delivers to as to any channel (per-consumer prefetch, redelivery, requeue on release
//!   all stay the queue's); its pump task forwards what arrives there to the origin.
//! - Liveness: each side pings the nodes it has remote consumers with (origin) or for (home)
//!   every [`PING_EVERY`]; a failed ping or delivery cancels the origin's consumers
//!   (`basic.cancel` to clients that asked for it) or releases the home's channel (unacked
//!   messages requeued, redelivered), as RabbitMQ does when a node goes down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use warren_codec::ShortStr;
use warren_core::queue::{ChannelKey, ConsumerKey, ConsumerSpec, Delivery, Return};
use warren_core::topology::ConnId;
use warren_core::{AmqpError, MessageRef};

use super::{Host, OpReply};
use crate::mailbox::{ChannelShared, ConnEvent, ConnShared};
use crate::queue::{Queue, Sink};

/// How often a node pings the nodes its remote consumers involve.
pub const PING_EVERY: Duration = Duration::from_millis(500);

/// A channel's id across the cluster: its key's connection and number.
pub fn chan_id(k: ChannelKey) -> u64 {
    (k.connection().0 << 16) | u64::from(k.number())
}

fn chan_key(id: u64) -> ChannelKey {
    ChannelKey::new(ConnId(id >> 16), id as u16)
}

/// Control traffic between nodes, in order per node pair.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    /// Origin → home: register consumer `key` of channel `chan` of node `origin`.
    Consume {
        origin: String,
        chan: u64,
        key: u64,
        vhost: String,
        queue: String,
        tag: String,
        no_ack: bool,
        prefetch: u32,
        exclusive: bool,
        priority: i32,
    },
    /// Origin → home: settle deliveries of a remote channel.
    Settle {
        origin: String,
        chan: u64,
        vhost: String,
        queue: String,
        seqs: Vec<u64>,
        /// `None`: acked; else rejected, requeued (true: as `Return::Returned`, false:
        /// `Return::Failed`) or not (dropped or dead-lettered).
        reject: Option<Option<bool>>,
    },
    /// Origin → home: basic.get for channel `chan`.
    Get {
        origin: String,
        chan: u64,
        vhost: String,
        queue: String,
        no_ack: bool,
    },
    /// Origin → home: queue.declare (passive or equivalent) of a remote queue: its counts.
    Counts { vhost: String, queue: String },
    /// Origin → home: queue.purge of a remote queue: the messages it dropped.
    Purge { vhost: String, queue: String },
    /// Origin → home: basic.cancel of consumer `key`.
    Cancel { origin: String, chan: u64, key: u64 },
    /// Origin → home: the channel closed: its consumers go, its unacked are requeued.
    Release { origin: String, chan: u64 },
    /// Either way: are you there?
    Ping,
    /// Home → origin: a delivery to consumer `key` of channel `chan`.
    Deliver {
        chan: u64,
        key: u64,
        seq: u64,
        redelivered: bool,
        delivery_count: u32,
        acquired_count: u32,
        no_ack: bool,
        msg: Vec<u8>,
    },
    /// Home → origin: the queue cancelled consumer `key` (deleted).
    Cancelled { chan: u64, key: u64 },
}

impl Op {
    /// The (vhost, queue) this op is about, if it names one.
    pub(crate) fn queue(&self) -> Option<(&str, &str)> {
        match self {
            Op::Consume { vhost, queue, .. }
            | Op::Settle { vhost, queue, .. }
            | Op::Get { vhost, queue, .. }
            | Op::Counts { vhost, queue }
            | Op::Purge { vhost, queue } => Some((vhost, queue)),
            _ => None,
        }
    }
}

/// The answer to one [`Op`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Verdict {
    /// Done.
    Ok,
    /// Refused with this AMQP error (code, text).
    Error(u16, String),
    /// The channel or consumer it names is unknown there.
    Unknown,
    /// A basic.get's message ([`Op::Get`]), with the count of those left behind it.
    Got {
        seq: u64,
        redelivered: bool,
        delivery_count: u32,
        acquired_count: u32,
        left: u32,
        msg: Vec<u8>,
    },
    /// A basic.get found the queue empty.
    Empty,
    /// A queue's ready messages and consumers ([`Op::Counts`]).
    Counts { ready: u32, consumers: u32 },
    /// The messages a purge dropped ([`Op::Purge`]).
    Purged(u32),
    /// No answer: the node could not be reached.
    Unreachable,
}

/// Origin side: a consumer of this node on a queue of another.
#[derive(Debug)]
pub struct RemoteQueue {
    /// Home node.
    pub node: String,
    /// Vhost.
    pub vhost: String,
    /// Queue name.
    pub name: ShortStr,
    /// The consumer's key and tag, and its channel.
    pub key: ConsumerKey,
    tag: ShortStr,
    channel: ChannelKey,
    conn: Arc<ConnShared>,
    host: std::sync::Weak<dyn Host>,
    /// Deliveries that came before the consumer's `basic.consume-ok` went out (`None` once it
    /// did).
    early: parking_lot::Mutex<Option<Vec<Delivery>>>,
}

/// A queue as a channel's consumer and unacked records hold it: local, or of another node.
#[derive(Debug, Clone)]
pub enum QueueRef {
    /// A queue of this node.
    Local(Arc<Queue>),
    /// A queue of another node, through a proxy consumer there.
    Remote(Arc<RemoteQueue>),
}

impl QueueRef {
    /// The same queue handle.
    pub fn same(&self, o: &QueueRef) -> bool {
        match (self, o) {
            (QueueRef::Local(a), QueueRef::Local(b)) => Arc::ptr_eq(a, b),
            (QueueRef::Remote(a), QueueRef::Remote(b)) => {
                a.node == b.node && a.channel == b.channel && a.vhost == b.vhost && a.name == b.name
            }
            _ => false,
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &ShortStr {
        match self {
            QueueRef::Local(q) => &q.meta.name,
            QueueRef::Remote(r) => &r.name,
        }
    }

    /// basic.cancel; whether an auto-delete queue lost its last consumer (local only).
    pub fn remove_consumer(&self, key: ConsumerKey) -> bool {
        match self {
            QueueRef::Local(q) => q.remove_consumer(key),
            QueueRef::Remote(r) => {
                r.cancel();
                false
            }
        }
    }

    /// The consumer leaves with its channel (which then releases its unacked ones).
    pub fn detach_consumer(&self, key: ConsumerKey) -> bool {
        match self {
            QueueRef::Local(q) => q.detach_consumer(key),
            QueueRef::Remote(r) => {
                r.cancel();
                false
            }
        }
    }

    /// Acks deliveries.
    pub fn ack(&self, seqs: &[u64]) {
        match self {
            QueueRef::Local(q) => q.ack(seqs),
            QueueRef::Remote(r) => r.settle(seqs.to_vec(), None),
        }
    }

    /// Rejects deliveries (requeued as `requeue` says, else dropped or dead-lettered).
    pub fn reject(&self, seqs: &[u64], requeue: Option<Return>) {
        match self {
            QueueRef::Local(q) => q.reject(seqs, requeue),
            QueueRef::Remote(r) => r.settle(seqs.to_vec(), Some(requeue.map(|h| h == Return::Returned))),
        }
    }

    /// Requeues what channel `channel` holds unacked of this queue.
    pub fn release_channel(&self, channel: ChannelKey, how: Return) {
        match self {
            QueueRef::Local(q) => q.release_channel(channel, how),
            QueueRef::Remote(r) => r.op(Op::Release {
                origin: r.origin(),
                chan: chan_id(r.channel),
            }),
        }
    }

    /// Puts back a delivery the channel could not take.
    pub fn unsend(&self, d: &Delivery) {
        match self {
            QueueRef::Local(q) => q.unsend(d),
            QueueRef::Remote(r) => r.settle(vec![d.seq], Some(Some(false))),
        }
    }
}

impl RemoteQueue {
    fn origin(&self) -> String {
        self.host
            .upgrade()
            .and_then(|h| h.cluster().map(|c| c.node_name().to_string()))
            .unwrap_or_default()
    }

    fn op(&self, op: Op) {
        if let Some(h) = self.host.upgrade()
            && let Some(f) = h.forwarder()
        {
            f.op(&self.node, op, OpReply::None);
        }
    }

    fn settle(&self, seqs: Vec<u64>, reject: Option<Option<bool>>) {
        self.op(Op::Settle {
            origin: self.origin(),
            chan: chan_id(self.channel),
            vhost: self.vhost.clone(),
            queue: self.name.to_string(),
            seqs,
            reject,
        });
    }

    fn cancel(&self) {
        if let Some(h) = self.host.upgrade()
            && let Some(f) = h.forwarder()
        {
            f.remote
                .lock()
                .consumers
                .remove(&(chan_id(self.channel), self.key.0));
        }
        self.op(Op::Cancel {
            origin: self.origin(),
            chan: chan_id(self.channel),
            key: self.key.0,
        });
    }

    /// The consumer's `basic.consume-ok` went out: deliveries go straight to the connection
    /// from now on, and those that came early follow it.
    pub fn started(self: &Arc<Self>) {
        // Sent under the lock: a delivery arriving meanwhile must queue behind them (the
        // connection's mailbox is unbounded, sending does not block).
        let mut early = self.early.lock();
        for d in early.take().unwrap_or_default() {
            let _ = self.conn.tx.send(ConnEvent::RemoteDeliver {
                queue: self.clone(),
                delivery: d,
            });
        }
    }

    fn deliver(self: &Arc<Self>, d: Delivery) {
        let mut early = self.early.lock();
        match early.as_mut() {
            Some(buf) => buf.push(d),
            None => {
                let _ = self.conn.tx.send(ConnEvent::RemoteDeliver {
                    queue: self.clone(),
                    delivery: d,
                });
            }
        }
    }

    /// The home node is gone: the consumer is cancelled as if its queue were deleted.
    fn lost(&self) {
        let _ = self.conn.tx.send(ConnEvent::ConsumerCancelled {
            channel: self.channel,
            tag: self.tag.clone(),
            key: self.key,
        });
    }
}

/// What a channel asks for when it consumes from a remote queue.
#[derive(Debug)]
pub struct ConsumeRequest {
    /// The home node.
    pub node: String,
    /// The vhost.
    pub vhost: String,
    /// The queue.
    pub queue: ShortStr,
    /// The consumer as the channel registers it.
    pub spec: ConsumerSpec,
    /// The channel's connection.
    pub conn: Arc<ConnShared>,
}

/// Both sides' registries.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// Origin: this node's consumers on other nodes, by (channel id, consumer key).
    pub consumers: HashMap<(u64, u64), Arc<RemoteQueue>>,
    /// Home: other nodes' channels consuming here, by (origin node, channel id).
    pub chans: HashMap<(String, u64), Arc<HomeChan>>,
}

/// Home side: one remote channel's stand-in.
#[derive(Debug)]
pub(crate) struct HomeChan {
    key: ChannelKey,
    conn: Arc<ConnShared>,
    shared: Arc<ChannelShared>,
    /// (origin consumer key, local consumer key, queue).
    consumers: parking_lot::Mutex<Vec<(u64, ConsumerKey, Arc<Queue>)>>,
    /// Queues it consumed from (to requeue from when released).
    queues: parking_lot::Mutex<Vec<Arc<Queue>>>,
    pump: parking_lot::Mutex<Option<tokio::task::AbortHandle>>,
}

impl super::Forwarder {
    /// Registers a consumer on a remote queue (origin side) and asks its home to start it;
    /// the answer is the home's verdict.
    pub fn consume(
        &self,
        req: ConsumeRequest,
    ) -> (
        Arc<RemoteQueue>,
        impl std::future::Future<Output = Verdict> + Send + 'static,
    ) {
        let ConsumeRequest {
            node,
            vhost,
            queue,
            spec,
            conn,
        } = req;
        let origin = self
            .broker
            .upgrade()
            .and_then(|h| h.cluster().map(|c| c.node_name().to_string()))
            .unwrap_or_default();
        let rq = Arc::new(RemoteQueue {
            node: node.clone(),
            vhost: vhost.clone(),
            name: queue.clone(),
            key: spec.key,
            tag: spec.tag.clone(),
            channel: spec.channel,
            conn,
            host: self.broker.clone(),
            early: parking_lot::Mutex::new(Some(Vec::new())),
        });
        self.remote
            .lock()
            .consumers
            .insert((chan_id(spec.channel), spec.key.0), rq.clone());
        self.watch(&node);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.op(
            &node,
            Op::Consume {
                origin,
                chan: chan_id(spec.channel),
                key: spec.key.0,
                vhost,
                queue: queue.to_string(),
                tag: spec.tag.to_string(),
                no_ack: spec.no_ack,
                prefetch: spec.prefetch,
                exclusive: spec.exclusive,
                priority: spec.priority,
            },
            OpReply::Once(tx),
        );
        (rq, async move { rx.await.unwrap_or(Verdict::Unreachable) })
    }

    /// Asks remote queue `queue` of `node` for a message (basic.get on channel `channel`):
    /// the queue handle to settle it through, and the answer (`Ok(None)`: empty).
    #[allow(clippy::type_complexity)]
    pub fn get(
        &self,
        node: &str,
        vhost: &str,
        queue: ShortStr,
        channel: ChannelKey,
        no_ack: bool,
        conn: Arc<ConnShared>,
    ) -> (
        Arc<RemoteQueue>,
        impl std::future::Future<Output = Result<Option<(Delivery, u32)>, Verdict>> + Send + 'static,
    ) {
        let rq = Arc::new(RemoteQueue {
            node: node.to_string(),
            vhost: vhost.to_string(),
            name: queue.clone(),
            key: ConsumerKey(0),
            tag: ShortStr::from(""),
            channel,
            conn,
            host: self.broker.clone(),
            early: parking_lot::Mutex::new(None),
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.op(
            node,
            Op::Get {
                origin: rq.origin(),
                chan: chan_id(channel),
                vhost: vhost.to_string(),
                queue: queue.to_string(),
                no_ack,
            },
            OpReply::Once(tx),
        );
        (rq, async move {
            match rx.await.unwrap_or(Verdict::Unreachable) {
                Verdict::Empty => Ok(None),
                Verdict::Got {
                    seq,
                    redelivered,
                    delivery_count,
                    acquired_count,
                    left,
                    msg,
                } => {
                    let (m, _) = crate::persist::decode_message(&Bytes::from(msg))
                        .ok_or_else(|| Verdict::Error(501, "undecodable message".into()))?;
                    let d = Delivery {
                        consumer: None,
                        channel,
                        seq,
                        msg: Arc::new(m),
                        redelivered,
                        delivery_count,
                        acquired_count,
                        no_ack,
                    };
                    Ok(Some((d, left)))
                }
                other => Err(other),
            }
        })
    }

    /// The ready messages and consumers of remote queue `queue` of `node`, asked of it.
    pub fn counts(
        &self,
        node: &str,
        vhost: &str,
        queue: &str,
    ) -> impl std::future::Future<Output = Result<(u32, u32), Verdict>> + Send + 'static {
        let op = Op::Counts {
            vhost: vhost.to_string(),
            queue: queue.to_string(),
        };
        self.ask(node, op, |v| match v {
            Verdict::Counts { ready, consumers } => Ok((ready, consumers)),
            other => Err(other),
        })
    }

    /// Purges remote queue `queue` of `node` there: the count of messages it dropped.
    pub fn purge(
        &self,
        node: &str,
        vhost: &str,
        queue: &str,
    ) -> impl std::future::Future<Output = Result<u32, Verdict>> + Send + 'static {
        let op = Op::Purge {
            vhost: vhost.to_string(),
            queue: queue.to_string(),
        };
        self.ask(node, op, |v| match v {
            Verdict::Purged(n) => Ok(n),
            other => Err(other),
        })
    }

    /// Sends `op` to `node`; its verdict (unreachable if none came) read by `pick`.
    fn ask<T>(
        &self,
        node: &str,
        op: Op,
        pick: fn(Verdict) -> Result<T, Verdict>,
    ) -> impl std::future::Future<Output = Result<T, Verdict>> + Send + 'static
    where
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.op(node, op, OpReply::Once(tx));
        async move { pick(rx.await.unwrap_or(Verdict::Unreachable)) }
    }

    /// Pings `node` while this node has consumers or remote channels involving it; when it
    /// does not answer, cancels those consumers and releases those channels.
    pub(crate) fn watch(&self, node: &str) {
        if !self.watched.lock().insert(node.to_string()) {
            return;
        }
        let host = self.broker.clone();
        let node = node.to_string();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PING_EVERY).await;
                let Some(h) = host.upgrade() else { return };
                let Some(f) = h.forwarder() else { return };
                let involved = {
                    let r = f.remote.lock();
                    r.consumers.values().any(|q| q.node == node) || r.chans.keys().any(|(o, _)| *o == node)
                };
                if !involved {
                    f.watched.lock().remove(&node);
                    return;
                }
                let (tx, rx) = tokio::sync::oneshot::channel();
                f.op(&node, Op::Ping, OpReply::Once(tx));
                drop(h);
                if rx.await.unwrap_or(Verdict::Unreachable) == Verdict::Unreachable {
                    let Some(h) = host.upgrade() else { return };
                    let Some(f) = h.forwarder() else { return };
                    tracing::warn!(%node, "cluster node unreachable: its remote consumers are cancelled");
                    f.node_lost(&node);
                }
            }
        });
    }

    /// `node` does not answer: this node's consumers on it are cancelled, its channels here
    /// released.
    pub(crate) fn node_lost(&self, node: &str) {
        let (lost, chans): (Vec<Arc<RemoteQueue>>, Vec<u64>) = {
            let r = self.remote.lock();
            (
                r.consumers.values().filter(|q| q.node == node).cloned().collect(),
                r.chans
                    .keys()
                    .filter(|(o, _)| o == node)
                    .map(|(_, c)| *c)
                    .collect(),
            )
        };
        {
            let mut r = self.remote.lock();
            r.consumers.retain(|_, q| q.node != node);
        }
        for q in lost {
            q.lost();
        }
        for c in chans {
            self.release_home(node, c);
        }
    }

    /// Home side: releases remote channel `chan` of `origin`: its consumers removed, its
    /// unacked messages requeued (redelivered).
    pub(crate) fn release_home(&self, origin: &str, chan: u64) {
        let Some(hc) = self.remote.lock().chans.remove(&(origin.to_string(), chan)) else {
            return;
        };
        if let Some(p) = hc.pump.lock().take() {
            p.abort();
        }
        let consumers = std::mem::take(&mut *hc.consumers.lock());
        for (_, key, q) in consumers {
            // An auto-delete queue's last consumer leaving deletes it everywhere.
            if q.detach_consumer(key)
                && let (Some(h), Some(vh)) = (self.broker.upgrade(), q.vhost_name())
            {
                h.auto_delete(&vh, &q.meta.name);
            }
        }
        let queues = std::mem::take(&mut *hc.queues.lock());
        for q in queues {
            q.release_channel(hc.key, Return::Failed);
        }
        hc.shared
            .release(hc.shared.unacked.load(std::sync::atomic::Ordering::Acquire));
    }

    /// Home side: a delivery the origin did not take goes back to its queue.
    pub(crate) fn delivery_refused(
        &self,
        origin: &str,
        chan: u64,
        queue: &Arc<Queue>,
        seq: u64,
        verdict: &Verdict,
    ) {
        match verdict {
            Verdict::Ok => {}
            Verdict::Unreachable => self.release_home(origin, chan),
            _ => queue.reject(&[seq], Some(Return::Failed)),
        }
    }

    /// Serves one op from node `from`'s link.
    pub(crate) fn serve_op(&self, host: &Arc<dyn Host>, op: Op) -> Verdict {
        match op {
            Op::Ping => Verdict::Ok,
            Op::Counts { vhost, queue } => match home_queue_only(host, &vhost, &queue) {
                Ok(q) => {
                    let c = q.counts();
                    Verdict::Counts {
                        ready: c.ready,
                        consumers: c.consumers,
                    }
                }
                Err(v) => v,
            },
            Op::Purge { vhost, queue } => match home_queue_only(host, &vhost, &queue) {
                Ok(q) => Verdict::Purged(q.purge()),
                Err(v) => v,
            },
            Op::Consume {
                origin,
                chan,
                key,
                vhost,
                queue,
                tag,
                no_ack,
                prefetch,
                exclusive,
                priority,
            } => {
                let (v, q, hc) = match self.home_queue(host, &origin, chan, &vhost, &queue) {
                    Ok(found) => found,
                    Err(verdict) => return verdict,
                };
                let local = ConsumerKey(host.next_id());
                let spec = ConsumerSpec {
                    key: local,
                    channel: hc.key,
                    tag: ShortStr::from(tag.as_str()),
                    no_ack,
                    prefetch,
                    exclusive,
                    priority,
                };
                let sink = Sink {
                    conn: hc.conn.clone(),
                    channel: hc.shared.clone(),
                };
                hc.consumers.lock().push((key, local, q.clone()));
                if let Err(e) = q.add_consumer(spec, sink, &v.name) {
                    hc.consumers.lock().retain(|(k, _, _)| *k != key);
                    return Verdict::Error(e.code.code(), e.text.clone());
                }
                self.watch(&origin);
                Verdict::Ok
            }
            Op::Get {
                origin,
                chan,
                vhost,
                queue,
                no_ack,
            } => {
                let (_, q, hc) = match self.home_queue(host, &origin, chan, &vhost, &queue) {
                    Ok(found) => found,
                    Err(verdict) => return verdict,
                };
                self.watch(&origin);
                match q.get(hc.key, no_ack) {
                    None => Verdict::Empty,
                    Some((d, left)) => Verdict::Got {
                        seq: d.seq,
                        redelivered: d.redelivered,
                        delivery_count: d.delivery_count,
                        acquired_count: d.acquired_count,
                        left,
                        msg: crate::persist::encode_message(&d.msg, 0).to_vec(),
                    },
                }
            }
            Op::Settle {
                origin,
                chan,
                vhost,
                queue,
                seqs,
                reject,
            } => {
                let Some(hc) = self.remote.lock().chans.get(&(origin, chan)).cloned() else {
                    return Verdict::Unknown;
                };
                let Some(q) = host
                    .vhost(&vhost)
                    .and_then(|v| v.queue_for_use(&queue, ConnId(0)).ok())
                else {
                    return Verdict::Unknown;
                };
                let n = seqs.len() as u32;
                match reject {
                    None => q.ack(&seqs),
                    Some(requeue) => q.reject(
                        &seqs,
                        requeue.map(|r| if r { Return::Returned } else { Return::Failed }),
                    ),
                }
                hc.shared.release(n);
                Verdict::Ok
            }
            Op::Cancel { origin, chan, key } => {
                let Some(hc) = self.remote.lock().chans.get(&(origin, chan)).cloned() else {
                    return Verdict::Unknown;
                };
                let gone: Vec<(u64, ConsumerKey, Arc<Queue>)> = {
                    let mut cs = hc.consumers.lock();
                    let (gone, keep) = cs.drain(..).partition(|(k, _, _)| *k == key);
                    *cs = keep;
                    gone
                };
                for (_, local, q) in gone {
                    // An auto-delete queue's last consumer leaving deletes it everywhere.
                    if q.remove_consumer(local)
                        && let Some(vh) = q.vhost_name()
                    {
                        host.clone().auto_delete(&vh, &q.meta.name);
                    }
                }
                Verdict::Ok
            }
            Op::Release { origin, chan } => {
                self.release_home(&origin, chan);
                Verdict::Ok
            }
            Op::Deliver {
                chan,
                key,
                seq,
                redelivered,
                delivery_count,
                acquired_count,
                no_ack,
                msg,
            } => {
                let Some(rq) = self.remote.lock().consumers.get(&(chan, key)).cloned() else {
                    return Verdict::Unknown;
                };
                let Some((m, _)) = crate::persist::decode_message(&Bytes::from(msg)) else {
                    return Verdict::Error(501, "undecodable delivery".into());
                };
                let msg: MessageRef = Arc::new(m);
                rq.deliver(Delivery {
                    consumer: Some(rq.key),
                    channel: chan_key(chan),
                    seq,
                    msg,
                    redelivered,
                    delivery_count,
                    acquired_count,
                    no_ack,
                });
                Verdict::Ok
            }
            Op::Cancelled { chan, key } => {
                let Some(rq) = self.remote.lock().consumers.remove(&(chan, key)) else {
                    return Verdict::Unknown;
                };
                rq.lost();
                Verdict::Ok
            }
        }
    }

    /// Queue `queue` of vhost `vhost` and the stand-in of remote channel `chan` of `origin`
    /// using it (the queue recorded there, to requeue from on release); or the verdict why not.
    #[allow(clippy::type_complexity)]
    fn home_queue(
        &self,
        host: &Arc<dyn Host>,
        origin: &str,
        chan: u64,
        vhost: &str,
        queue: &str,
    ) -> Result<(Arc<crate::vhost::VHost>, Arc<Queue>, Arc<HomeChan>), Verdict> {
        let v = host
            .vhost(vhost)
            .ok_or_else(|| Verdict::Error(404, format!("no vhost '{vhost}'")))?;
        let q = home_queue_only(host, vhost, queue)?;
        let hc = self.home_chan(host, origin, chan);
        {
            let mut qs = hc.queues.lock();
            if !qs.iter().any(|x| Arc::ptr_eq(x, &q)) {
                qs.push(q.clone());
            }
        }
        Ok((v, q, hc))
    }

    /// The stand-in of remote channel `chan` of `origin`, created (with its pump) on first use.
    fn home_chan(&self, host: &Arc<dyn Host>, origin: &str, chan: u64) -> Arc<HomeChan> {
        let mut r = self.remote.lock();
        if let Some(hc) = r.chans.get(&(origin.to_string(), chan)) {
            return hc.clone();
        }
        let (conn, rx) = ConnShared::new(ConnId(host.next_id()), None);
        let hc = Arc::new(HomeChan {
            key: ChannelKey::new(conn.id, 1),
            conn,
            shared: Arc::new(ChannelShared::default()),
            consumers: Default::default(),
            queues: Default::default(),
            pump: Default::default(),
        });
        let task = tokio::spawn(pump(
            self.broker.clone(),
            origin.to_string(),
            chan,
            hc.clone(),
            rx,
        ));
        *hc.pump.lock() = Some(task.abort_handle());
        r.chans.insert((origin.to_string(), chan), hc.clone());
        hc
    }
}

/// Queue `queue` of vhost `vhost` of this node, or the verdict why not.
fn home_queue_only(host: &Arc<dyn Host>, vhost: &str, queue: &str) -> Result<Arc<Queue>, Verdict> {
    let v = host
        .vhost(vhost)
        .ok_or_else(|| Verdict::Error(404, format!("no vhost '{vhost}'")))?;
    v.queue_for_use(queue, ConnId(0))
        .map_err(|e| Verdict::Error(e.code.code(), e.text.clone()))
}

/// Home side: forwards what the queues deliver to a remote channel's stand-in to its origin.
async fn pump(
    host: std::sync::Weak<dyn Host>,
    origin: String,
    chan: u64,
    hc: Arc<HomeChan>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<ConnEvent>,
) {
    while let Some(ev) = rx.recv().await {
        let Some(h) = host.upgrade() else { return };
        let Some(f) = h.forwarder() else { return };
        match ev {
            ConnEvent::Deliver { queue, delivery } => {
                // Its pending slot is given back with its verdict ([`OpReply::Delivery`]).
                let found = delivery.consumer.and_then(|k| {
                    hc.consumers
                        .lock()
                        .iter()
                        .find(|(_, l, _)| *l == k)
                        .map(|(o, _, _)| *o)
                });
                let Some(key) = found else {
                    queue.unsend(&delivery);
                    hc.conn.took_delivery();
                    hc.conn.wake();
                    continue;
                };
                let seq = delivery.seq;
                let op = Op::Deliver {
                    chan,
                    key,
                    seq,
                    redelivered: delivery.redelivered,
                    delivery_count: delivery.delivery_count,
                    acquired_count: delivery.acquired_count,
                    no_ack: delivery.no_ack,
                    msg: crate::persist::encode_message(&delivery.msg, 0).to_vec(),
                };
                f.op(
                    &origin,
                    op,
                    OpReply::Delivery {
                        origin: origin.clone(),
                        chan,
                        queue,
                        seq,
                        conn: hc.conn.clone(),
                    },
                );
            }
            ConnEvent::ConsumerCancelled { key, .. } => {
                let found = {
                    let mut cs = hc.consumers.lock();
                    let i = cs.iter().position(|(_, l, _)| *l == key);
                    i.map(|i| cs.remove(i).0)
                };
                if let Some(k) = found {
                    f.op(&origin, Op::Cancelled { chan, key: k }, OpReply::None);
                }
            }
            _ => {}
        }
    }
}

/// The 404 for a consume refused because the home node did not answer.
pub fn unreachable(queue: &str, vhost: &str, node: &str) -> AmqpError {
    AmqpError::not_found(format!(
        "home node '{node}' of durable queue '{queue}' in vhost '{vhost}' is down or inaccessible"
    ))
}

impl Verdict {
    /// The AMQP error a channel answers for a verdict that is not the success it waited for:
    /// the home's own refusal as it sent it, anything else as the home being unreachable.
    pub fn into_error(self, queue: &str, vhost: &str, node: &str) -> AmqpError {
        match self {
            Verdict::Error(code, text) => AmqpError::new(
                warren_codec::ReplyCode::from_code(code).unwrap_or(warren_codec::ReplyCode::InternalError),
                text,
            ),
            _ => unreachable(queue, vhost, node),
        }
    }
}
