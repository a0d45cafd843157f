//! What other tasks may touch of a connection: its mailbox ([`ConnEvent`]: deliveries from
//! queues, consumer cancellations, direct replies, group-commit outcomes, close requests),
//! the counters that bound how much is buffered for its client (queues skip a connection
//! whose mailbox or write backlog is full and are woken when it drains), credit-flow
//! notification, its listing facts, and a channel's channel-wide prefetch counter.
//!
//! Queues hold these ([`crate::queue::Sink`]); the connection task
//! ([`crate::connection`]) is the only reader of the mailbox.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use warren_codec::{FieldTable, ReplyCode, ShortStr};
use warren_core::ids::ConnId;
use warren_core::queue::{ChannelKey, ConsumerKey, Delivery};

use crate::queue::Queue;

/// Deliveries a connection may have queued but not yet encoded before queues skip it.
pub(crate) const MAX_PENDING_DELIVERIES: usize = 2048;
/// Bytes handed to the writer but not yet written before queues skip this connection.
pub(crate) const MAX_WRITE_BACKLOG: usize = 4 << 20;
/// Bytes handed to the writer but not yet written before the connection stops reading its
/// client (so replies, confirms and heartbeats cannot pile up either); a client that leaves
/// it there longer than `Config::write_stall_timeout` is disconnected.
pub const HARD_WRITE_BACKLOG: usize = 16 << 20;

/// How long a connection that left flow still shows `state: flow` (RabbitMQ: one second).
pub(crate) const FLOW_STATE_MS: u64 = 1000;

/// Messages to a connection task.
#[derive(Debug)]
pub enum ConnEvent {
    /// A delivery from a queue.
    Deliver {
        /// The queue.
        queue: Arc<Queue>,
        /// The delivery.
        delivery: Delivery,
    },
    /// A delivery from a queue of another cluster node ([`crate::forward`]).
    RemoteDeliver {
        /// The remote queue (its proxy consumer): a `crate::forward::RemoteQueue`, opaque
        /// here so that this module does not name the forwarding layer (which names it).
        queue: Arc<dyn std::any::Any + Send + Sync>,
        /// The delivery.
        delivery: Delivery,
    },
    /// A basic.get answered by a queue of another cluster node ([`crate::forward`]).
    RemoteGot {
        /// The remote queue (opaque, as in `RemoteDeliver`).
        queue: Arc<dyn std::any::Any + Send + Sync>,
        /// The delivery.
        delivery: Delivery,
        /// Messages left in the queue.
        left: u32,
    },
    /// The broker cancelled a consumer (its queue was deleted).
    ConsumerCancelled {
        /// Channel.
        channel: ChannelKey,
        /// Consumer tag.
        tag: ShortStr,
        /// Consumer key.
        key: ConsumerKey,
    },
    /// A reply for this connection's direct reply-to consumer (auto-ack).
    DirectReply {
        /// Channel number.
        channel: u16,
        /// Consumer tag.
        tag: ShortStr,
        /// The reply.
        msg: warren_core::MessageRef,
    },
    /// A group-commit sync requested by this connection finished.
    Synced {
        /// Batch id.
        batch: u64,
        /// Whether the data is durable (false: the store is poisoned).
        ok: bool,
    },
    /// The verdict on a message forwarded to another cluster node for a channel in confirm
    /// mode ([`crate::forward`]).
    Forwarded {
        /// Channel number.
        channel: u16,
        /// The publish sequence number.
        seq: u64,
        /// Every queue of that node took it.
        ok: bool,
    },
    /// Close the connection (admin or shutdown).
    Close {
        /// Reply code.
        code: ReplyCode,
        /// Reply text.
        text: String,
    },
}

/// What other tasks may read or touch of one channel: the channel-wide prefetch
/// (`basic.qos` global=true), the one counter shared by queues, and the modes the management
/// API lists.
#[derive(Debug, Default)]
pub struct ChannelShared {
    /// Limit (0 = none).
    pub limit: AtomicU32,
    /// Unacked deliveries on the channel.
    pub unacked: AtomicU32,
    pub(crate) waiting: Mutex<Vec<Weak<Queue>>>,
    /// In confirm mode (`confirm.select`).
    pub confirm: AtomicBool,
    /// Transactional (`tx.select`).
    pub transactional: AtomicBool,
    /// Publishes not yet confirmed (confirm mode; RabbitMQ's `messages_unconfirmed`), as of
    /// the connection's last read batch.
    pub unconfirmed: AtomicU32,
    /// Publishes waiting for tx.commit (RabbitMQ's `messages_uncommitted`), as of the
    /// connection's last read batch.
    pub uncommitted: AtomicU32,
    /// Deliveries acked inside an open transaction (RabbitMQ's `acks_uncommitted`), as of the
    /// connection's last read batch.
    pub acks_uncommitted: AtomicU32,
    /// Deliveries an open transaction's acks and rejects took from the unacked ones; they still
    /// hold their prefetch slots until the commit, but RabbitMQ no longer counts them in
    /// `messages_unacknowledged`.
    pub held_by_tx: AtomicU32,
}

impl ChannelShared {
    /// Reserves one unacked slot if the channel-wide limit allows it.
    pub fn try_reserve(&self) -> bool {
        let limit = self.limit.load(Ordering::Acquire);
        if limit == 0 {
            self.unacked.fetch_add(1, Ordering::AcqRel);
            return true;
        }
        self.unacked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    /// Registers a queue to dispatch again when slots free up.
    pub fn wait_for_room(&self, q: Weak<Queue>) {
        let mut w = self.waiting.lock();
        if !w.iter().any(|x| x.ptr_eq(&q)) {
            w.push(q);
        }
    }

    /// Frees `n` slots and wakes waiting queues.
    pub fn release(&self, n: u32) {
        if n == 0 {
            return;
        }
        let _ = self
            .unacked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |x| Some(x.saturating_sub(n)));
        let waiting = std::mem::take(&mut *self.waiting.lock());
        for q in waiting.into_iter().filter_map(|w| w.upgrade()) {
            q.dispatch();
        }
    }
}

/// Connection facts for listings.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// Peer address.
    pub peer: Option<SocketAddr>,
    /// Authenticated user.
    pub user: String,
    /// Open vhost.
    pub vhost: String,
    /// The client's `client_properties` from connection.start-ok, whole (product, version,
    /// platform, capabilities, `connection_name`, …).
    pub client_properties: FieldTable,
    /// The client-provided connection name (`client_properties.connection_name`).
    pub user_provided_name: Option<String>,
    /// When the TCP connection was accepted, in milliseconds since the Unix epoch.
    pub connected_at: u64,
}

/// The part of a connection other tasks may touch.
#[derive(Debug)]
pub struct ConnShared {
    /// Connection id.
    pub id: ConnId,
    pub(crate) tx: mpsc::UnboundedSender<ConnEvent>,
    pub(crate) pending: AtomicUsize,
    pub(crate) backlog: AtomicUsize,
    pub(crate) waiting: Mutex<Vec<Weak<Queue>>>,
    /// Listing facts.
    pub info: Mutex<ConnInfo>,
    /// The client asked for `basic.cancel` notifications.
    pub cancel_notify: AtomicBool,
    /// The writer brought the backlog back under [`HARD_WRITE_BACKLOG`].
    pub(crate) drained: tokio::sync::Notify,
    /// A queue this connection parked on (credit flow) has credit again.
    pub(crate) flow_notify: tokio::sync::Notify,
    /// Parked on a queue's credit now.
    pub(crate) in_flow: AtomicBool,
    /// When it last entered or left flow (ms since the epoch; 0: never).
    pub(crate) flow_at_ms: AtomicU64,
    /// Bytes received and sent (Prometheus `connection_coarse_metrics`).
    pub octets: [AtomicU64; 2],
    /// The open channels by number (the management API's channel listings).
    pub channels: Mutex<std::collections::BTreeMap<u16, Arc<ChannelShared>>>,
}

impl ConnShared {
    /// Number of open channels.
    pub fn channel_count(&self) -> usize {
        self.channels.lock().len()
    }

    /// The shared half of a new connection (`peer`: its client's address) and the receiving
    /// end of its mailbox.
    pub fn new(
        id: ConnId,
        peer: Option<SocketAddr>,
    ) -> (Arc<ConnShared>, mpsc::UnboundedReceiver<ConnEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(ConnShared {
            id,
            tx,
            pending: AtomicUsize::new(0),
            backlog: AtomicUsize::new(0),
            waiting: Mutex::new(Vec::new()),
            channels: Mutex::new(std::collections::BTreeMap::new()),
            info: Mutex::new(ConnInfo {
                peer,
                connected_at: crate::util::now_ms(),
                ..Default::default()
            }),
            cancel_notify: AtomicBool::new(false),
            drained: tokio::sync::Notify::new(),
            flow_notify: tokio::sync::Notify::new(),
            in_flow: AtomicBool::new(false),
            flow_at_ms: AtomicU64::new(0),
            octets: Default::default(),
        });
        (shared, rx)
    }

    /// A delivery left the mailbox (it counts against [`MAX_PENDING_DELIVERIES`] until then).
    pub fn took_delivery(&self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether queues may deliver more to this connection now.
    pub fn has_room(&self) -> bool {
        self.pending.load(Ordering::Acquire) < MAX_PENDING_DELIVERIES
            && self.backlog.load(Ordering::Acquire) < MAX_WRITE_BACKLOG
    }

    /// Counts one delivery about to be sent.
    pub fn reserve(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// Registers a queue to dispatch again once this connection drains.
    pub fn wait_for_room(&self, q: Weak<Queue>) {
        let mut w = self.waiting.lock();
        if !w.iter().any(|x| x.ptr_eq(&q)) {
            w.push(q);
        }
    }

    /// Hands a delivery to the connection task. Called by a queue under its lock, so a
    /// delivery the connection can no longer take (its task is gone) is handed back to the
    /// caller, which returns it to the queue state it already holds — never through the queue's
    /// lock again.
    pub fn deliver(&self, queue: Arc<Queue>, delivery: Delivery) -> Result<(), Delivery> {
        let Err(mpsc::error::SendError(event)) = self.tx.send(ConnEvent::Deliver { queue, delivery }) else {
            return Ok(());
        };
        self.pending.fetch_sub(1, Ordering::AcqRel);
        match event {
            ConnEvent::Deliver { delivery, .. } => Err(delivery),
            _ => Ok(()),
        }
    }

    /// Hands a direct reply-to message to the connection. False if the connection is gone.
    pub fn direct_reply(&self, channel: u16, tag: ShortStr, msg: warren_core::MessageRef) -> bool {
        self.tx.send(ConnEvent::DirectReply { channel, tag, msg }).is_ok()
    }

    /// Tells the connection its consumer was cancelled by the broker.
    pub fn consumer_cancelled(&self, channel: ChannelKey, tag: ShortStr, key: ConsumerKey) {
        let _ = self.tx.send(ConnEvent::ConsumerCancelled { channel, tag, key });
    }

    /// Asks the connection to close.
    pub fn close(&self, code: ReplyCode, text: impl Into<String>) {
        let _ = self.tx.send(ConnEvent::Close {
            code,
            text: text.into(),
        });
    }

    /// A queue this connection parked on has credit again ([`Queue::flow_park`]).
    pub fn flow_resume(&self) {
        self.flow_notify.notify_one();
    }

    /// RabbitMQ's connection state: `flow` while parked on credit and for a second after
    /// (as its `credit_flow:state/0`), else `running`.
    pub fn state(&self, now_ms: u64) -> &'static str {
        if self.in_flow.load(Ordering::Acquire)
            || now_ms.saturating_sub(self.flow_at_ms.load(Ordering::Acquire)) < FLOW_STATE_MS
        {
            "flow"
        } else {
            "running"
        }
    }

    pub(crate) fn wake(&self) {
        if !self.has_room() {
            return;
        }
        let waiting = std::mem::take(&mut *self.waiting.lock());
        for q in waiting.into_iter().filter_map(|w| w.upgrade()) {
            q.dispatch();
        }
    }
}
