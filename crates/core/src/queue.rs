//! `QueueState`: one queue's messages and consumers as a pure state machine.
//!
//! Inputs are `publish`, `add_consumer` / `remove_consumer`, `dispatch`, `get`, `ack`,
//! `reject` (requeue or discard), `release_channel`, `purge` and `tick` (timers); the caller
//! passes `now` in milliseconds. Outputs go into [`Effects`]: deliveries to send and messages
//! to dead-letter (with their reason). Every message is in exactly one place: ready (in
//! publish order, per priority level), delayed (waiting for its retry delay), or unacked by
//! exactly one channel.
//!
//! ## Message groups (`x-message-group-header`)
//!
//! A queue with a group header delivers each group (messages with the same header value)
//! strictly in order with at most one message of the group in flight: `busy` counts, per
//! group, the messages unacked or waiting in `delayed` (a delayed retry keeps its group
//! blocked while other groups flow). Messages without the header are ungrouped (plain FIFO).
//! Dispatch takes the first ready message, within the first [`GROUP_SCAN_WINDOW`] entries of
//! each priority level, whose group is not busy; busy groups' messages stay in place, so a
//! requeued head goes back before the rest of its group. Cost: O(1) when the head's group is
//! free (the common case with many groups), at most O(`GROUP_SCAN_WINDOW`) header lookups per
//! delivery otherwise. A group beyond the window waits until the head of the queue moves on
//! (bounded head-of-line blocking instead of an unbounded scan).
//!
//! ## Paging (messages kept only on disk)
//!
//! With [`set_paging`](QueueState::set_paging) (a queue with a durable log), ready messages
//! beyond an in-memory budget are not held at all: a persisted message published while the
//! in-memory ready list is at its budget — or while older messages are already paged — is only
//! counted ([`Paged`]: count, body bytes, the store position of the first one). Paged messages
//! always follow every in-memory message in publish order, so FIFO holds. The caller asks
//! [`page_request`](QueueState::page_request) after each operation and, when the in-memory
//! list has fallen below half its budget, reads the next batch from its log and hands it to
//! [`page_in`](QueueState::page_in). Priority queues never page.
//!
//! ## Deduplication (`x-deduplication-window`)
//!
//! A message whose id (the `message-id` property, or the `x-deduplication-header` header) was
//! accepted less than the window ago is not enqueued: `publish` returns
//! [`Published::Duplicate`] (the publisher is still confirmed) and `duplicates_dropped`
//! counts it. See [`DedupWindow`](crate::dedup::DedupWindow).

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;
use warren_codec::ShortStr;

use crate::args::{LimitCounts, Overflow, QueueArgs, RetryType};
use crate::deadletter::DeadReason;
use crate::dedup::{DedupWindow, header_key};
use crate::error::{AmqpError, AmqpResult};
use crate::message::MessageRef;

pub use crate::ids::{ChannelKey, ConsumerKey, StorePos};

/// A message in the queue with its delivery history.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Position in publish order.
    pub seq: u64,
    /// The message.
    pub msg: MessageRef,
    /// Has been delivered before.
    pub redelivered: bool,
    /// Failed deliveries (`x-delivery-count`).
    pub delivery_count: u32,
    /// Returns of any kind (`x-acquired-count`).
    pub acquired_count: u32,
    /// Absolute expiry time (ms), from queue or message TTL.
    pub expires_at: Option<u64>,
    /// Where the message is stored on disk (an opaque store position), if persisted.
    pub pos: Option<StorePos>,
}

/// A consumer's registration.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Unique key.
    pub key: ConsumerKey,
    /// Channel it belongs to.
    pub channel: ChannelKey,
    /// Consumer tag.
    pub tag: ShortStr,
    /// Auto-ack.
    pub no_ack: bool,
    /// Per-consumer prefetch (0 = unlimited).
    pub prefetch: u32,
    /// Exclusive consumer.
    pub exclusive: bool,
    /// `x-priority`.
    pub priority: i32,
}

#[derive(Debug, Clone)]
struct Consumer {
    spec: ConsumerSpec,
    unacked: u32,
}

/// A message handed to a consumer (or to basic.get).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The consumer, or `None` for basic.get.
    pub consumer: Option<ConsumerKey>,
    /// The channel.
    pub channel: ChannelKey,
    /// Queue-local sequence number, to ack by.
    pub seq: u64,
    /// The message.
    pub msg: MessageRef,
    /// The redelivered flag.
    pub redelivered: bool,
    /// `x-delivery-count` to add (with `x-acquired-count`) when the message was returned.
    pub delivery_count: u32,
    /// `x-acquired-count`.
    pub acquired_count: u32,
    /// Whether the message is settled already (no-ack).
    pub no_ack: bool,
}

/// Effects of an input, for the caller to carry out.
#[derive(Debug, Default)]
pub struct Effects {
    /// Deliveries to send, in order.
    pub deliveries: Vec<Delivery>,
    /// Messages to dead-letter (the queue has a DLX) with their reason.
    pub dead_letters: Vec<(MessageRef, DeadReason)>,
    /// Messages dropped by the delivery limit with no DLX configured.
    pub dropped_by_limit: u64,
    /// Store positions of dead-lettered messages of an at-least-once queue
    /// ([`QueueState::set_dead_letter_at_least_once`]): the caller removes them from the store
    /// only once the dead-letter targets hold the messages durably.
    pub dead_letter_positions: Vec<StorePos>,
}

/// How a message comes back to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    /// A failed delivery: basic.reject with requeue, channel or connection lost.
    Failed,
    /// Not a failure: basic.nack with requeue, basic.recover.
    Returned,
}

/// Result of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Enqueued.
    Enqueued,
    /// Refused by `x-overflow: reject-publish(-dlx)`.
    Rejected,
    /// Dropped as a duplicate (`x-deduplication-window`); the publisher is confirmed anyway.
    Duplicate,
}

/// How many ready entries per priority level dispatch looks at to find one whose message
/// group is free.
pub const GROUP_SCAN_WINDOW: usize = 1024;

/// The group of a message: the value of header `header` (see [`header_key`]).
fn group_key(header: Option<&str>, msg: &crate::message::Message) -> Option<Bytes> {
    header_key(msg.header(header?)?)
}

#[derive(Debug)]
struct Unacked {
    entry: Entry,
    consumer: Option<ConsumerKey>,
    channel: ChannelKey,
}

/// Ready messages, one FIFO per priority level, each ordered by seq.
#[derive(Debug, Default)]
struct Ready {
    levels: Vec<VecDeque<Entry>>,
    len: usize,
    bytes: u64,
}

impl Ready {
    fn new(max_priority: Option<u8>) -> Ready {
        let n = max_priority.map(|p| p as usize + 1).unwrap_or(1);
        Ready {
            levels: (0..n).map(|_| VecDeque::new()).collect(),
            len: 0,
            bytes: 0,
        }
    }

    fn level(&self, e: &Entry) -> usize {
        (e.msg.properties.priority.unwrap_or(0) as usize).min(self.levels.len() - 1)
    }

    fn push_back(&mut self, e: Entry) {
        let l = self.level(&e);
        self.len += 1;
        self.bytes += e.msg.size();
        self.levels[l].push_back(e);
    }

    /// Puts a returned message back at its publish-order position.
    fn insert_sorted(&mut self, e: Entry) {
        let l = self.level(&e);
        self.len += 1;
        self.bytes += e.msg.size();
        let q = &mut self.levels[l];
        let pos = q.partition_point(|x| x.seq < e.seq);
        q.insert(pos, e);
    }

    /// Removes the first entry `ok` accepts among the first `window` of each level, highest
    /// priority first.
    fn pop_next(&mut self, window: usize, mut ok: impl FnMut(&Entry) -> bool) -> Option<Entry> {
        for l in (0..self.levels.len()).rev() {
            let Some(i) = self.levels[l].iter().take(window).position(&mut ok) else {
                continue;
            };
            let e = self.levels[l].remove(i)?;
            self.len -= 1;
            self.bytes -= e.msg.size();
            return Some(e);
        }
        None
    }

    fn pop_front(&mut self) -> Option<Entry> {
        let q = self.levels.iter_mut().rev().find(|q| !q.is_empty())?;
        let e = q.pop_front()?;
        self.len -= 1;
        self.bytes -= e.msg.size();
        Some(e)
    }

    /// Removes the oldest message (for drop-head), lowest priority first as RabbitMQ.
    fn pop_oldest(&mut self) -> Option<Entry> {
        let q = self.levels.iter_mut().find(|q| !q.is_empty())?;
        let e = q.pop_front()?;
        self.len -= 1;
        self.bytes -= e.msg.size();
        Some(e)
    }

    fn front_expiry(&self) -> Option<u64> {
        self.levels
            .iter()
            .filter_map(|q| q.front())
            .filter_map(|e| e.expires_at)
            .min()
    }

    fn clear(&mut self) -> usize {
        let n = self.len;
        for q in &mut self.levels {
            q.clear();
        }
        self.len = 0;
        self.bytes = 0;
        n
    }
}

/// Ready messages kept only on disk: they follow every in-memory ready message.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Paged {
    /// How many.
    pub count: u64,
    /// Their body bytes.
    pub bytes: u64,
    /// Store position to read the first of them from (opaque, the caller's).
    pub from: StorePos,
}

/// What to read from the log next: see [`QueueState::page_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Store position of the first paged message.
    pub from: StorePos,
    /// At most this many messages.
    pub max_msgs: usize,
    /// About this many body bytes.
    pub max_bytes: u64,
}

/// In-memory budget for ready messages of a paging queue.
#[derive(Debug, Clone, Copy)]
struct PageLimits {
    max_msgs: usize,
    max_bytes: u64,
}

/// One queue's state.
#[derive(Debug)]
pub struct QueueState {
    name: ShortStr,
    args: QueueArgs,
    ready: Ready,
    paging: Option<PageLimits>,
    paged: Paged,
    /// Dead-lettered messages leave the store only when the caller says so.
    dl_at_least_once: bool,
    /// queue.purge dropped the paged messages (these): the caller acks them in its log.
    purged_paged: Option<Paged>,
    delayed: BTreeMap<(u64, u64), Entry>,
    unacked: HashMap<u64, Unacked>,
    consumers: Vec<Consumer>,
    cursor: usize,
    next_seq: u64,
    has_dlx: bool,
    removed: Vec<StorePos>,
    count_updates: Vec<(StorePos, u32, u32)>,
    /// Message groups: messages in flight (unacked or delayed) per group.
    busy: HashMap<Bytes, u32>,
    /// `x-deduplication-window`.
    dedup: Option<DedupWindow>,
    duplicates_dropped: u64,
    /// Single active consumer: the consumer holding the queue's unacked deliveries and how
    /// many (see [`active_consumer`](QueueState::active_consumer)).
    sac_holder: Option<(ConsumerKey, u32)>,
    /// Store positions of persisted messages delivered (ack required) since the last
    /// [`take_delivered`](QueueState::take_delivered): the caller records the deliveries so
    /// that only these come back `redelivered` after a restart.
    delivered: Vec<StorePos>,
}

/// The 403 text RabbitMQ sends for exclusive-consumer conflicts.
fn exclusive_use(queue: &str, vhost: &str) -> AmqpError {
    AmqpError::access_refused(format!("queue '{queue}' in vhost '{vhost}' in exclusive use"))
}

impl QueueState {
    /// A new, empty queue.
    pub fn new(name: &str, args: QueueArgs) -> QueueState {
        QueueState {
            name: name.into(),
            ready: Ready::new(args.max_priority),
            paging: None,
            paged: Paged::default(),
            dl_at_least_once: false,
            purged_paged: None,
            has_dlx: args.dead_letter_exchange.is_some(),
            delayed: BTreeMap::new(),
            unacked: HashMap::new(),
            consumers: Vec::new(),
            cursor: 0,
            next_seq: 1,
            removed: Vec::new(),
            count_updates: Vec::new(),
            busy: HashMap::new(),
            dedup: args
                .deduplication
                .clone()
                .map(|(w, src)| DedupWindow::new(w, src)),
            duplicates_dropped: 0,
            sac_holder: None,
            delivered: Vec::new(),
            args,
        }
    }

    /// Keeps at most `max_msgs` ready messages and `max_bytes` of their bodies in memory; the
    /// rest of a backlog of persisted messages stays on disk (see the module doc). No effect on
    /// priority queues.
    pub fn set_paging(&mut self, max_msgs: usize, max_bytes: u64) {
        if self.pages() {
            self.paging = Some(PageLimits {
                max_msgs: max_msgs.max(2),
                max_bytes: max_bytes.max(2),
            });
        }
    }

    /// Whether a backlog beyond the in-memory budget may stay on disk: not for a priority
    /// queue, whose next message may be the newest one (it holds its whole backlog).
    pub fn pages(&self) -> bool {
        self.args.max_priority.is_none()
    }

    /// At-least-once dead-lettering (a queue with a durable log; `x-dead-letter-strategy:
    /// at-most-once` still opts out): a dead-lettered message's store position goes to
    /// [`Effects::dead_letter_positions`] instead of being removed with the message.
    pub fn set_dead_letter_at_least_once(&mut self, on: bool) {
        self.dl_at_least_once = on;
    }

    /// Whether messages published now would be paged (so the caller must persist even a
    /// transient one to keep FIFO order).
    pub fn is_paging(&self) -> bool {
        self.paged.count > 0
            || self
                .paging
                .is_some_and(|l| self.ready.len >= l.max_msgs || self.ready.bytes >= l.max_bytes)
    }

    /// The messages kept only on disk.
    pub fn paged(&self) -> Paged {
        self.paged
    }

    /// Ready messages held in memory.
    pub fn in_memory_ready(&self) -> usize {
        self.ready.len
    }

    /// Recovery: `count` messages (`bytes` of bodies) from store position `from` on stay on
    /// disk, after the restored in-memory ones.
    pub fn restore_paged(&mut self, paged: Paged, max_seq: u64) {
        self.paged = paged;
        self.next_seq = self.next_seq.max(max_seq + 1);
    }

    /// What to page in, if the in-memory ready list has fallen below half its budget and
    /// messages wait on disk.
    pub fn page_request(&self) -> Option<PageRequest> {
        let l = self.paging?;
        if self.paged.count == 0 || self.ready.len >= l.max_msgs / 2 || self.ready.bytes >= l.max_bytes / 2 {
            return None;
        }
        Some(PageRequest {
            from: self.paged.from,
            max_msgs: (l.max_msgs - self.ready.len.min(l.max_msgs)).max(1),
            max_bytes: l.max_bytes.saturating_sub(self.ready.bytes).max(1),
        })
    }

    /// Takes back messages read from the log (in publish order, the oldest paged ones) and
    /// where to read the next ones from. (A log that has none of the messages still counted
    /// as paged lost them: the caller drops the count with [`skip_paged`](Self::skip_paged).)
    pub fn page_in(&mut self, entries: Vec<Entry>, next_from: StorePos, fx: &mut Effects) {
        for e in entries {
            self.paged.count = self.paged.count.saturating_sub(1);
            self.paged.bytes = self.paged.bytes.saturating_sub(e.msg.size());
            self.next_seq = self.next_seq.max(e.seq + 1);
            self.ready.insert_sorted(e);
        }
        self.paged.from = next_from;
        if self.paged.count == 0 {
            self.paged = Paged::default();
        }
        self.enforce_limits(fx);
    }

    /// Drops `n` paged messages that could not be read back (undecodable records) and moves
    /// the read position on to `next_from`.
    pub fn skip_paged(&mut self, n: u64, next_from: StorePos) {
        self.paged.count = self.paged.count.saturating_sub(n);
        self.paged.from = next_from;
        if self.paged.count == 0 {
            self.paged = Paged::default();
        }
    }

    /// A message's absolute expiry: enqueued at `enqueued_at`, with its own TTL `msg_ttl`.
    pub fn expiry(&self, enqueued_at: u64, msg_ttl: Option<u64>) -> Option<u64> {
        let ttl = match (self.args.message_ttl, msg_ttl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        ttl.map(|t| enqueued_at.saturating_add(t))
    }

    /// After queue.purge: the paged messages it dropped (every one from `from` on).
    pub fn take_purged_paged(&mut self) -> Option<Paged> {
        self.purged_paged.take()
    }

    /// Messages dropped as duplicates since the queue started.
    pub fn duplicates_dropped(&self) -> u64 {
        self.duplicates_dropped
    }

    /// Whether `msg` would be dropped as a duplicate at `now` (to skip writing it to disk).
    pub fn is_duplicate(&self, msg: &crate::message::Message, now: u64) -> bool {
        self.dedup
            .as_ref()
            .is_some_and(|w| w.is_duplicate(&msg.properties, now))
    }

    /// Rebuilds the deduplication window from the messages held (after recovery): their ids
    /// count as seen at `now`. Ids of messages consumed before a restart are forgotten.
    pub fn rebuild_dedup(&mut self, now: u64) {
        let Some(w) = &mut self.dedup else { return };
        let held = self
            .ready
            .levels
            .iter()
            .flatten()
            .chain(self.delayed.values())
            .chain(self.unacked.values().map(|u| &u.entry));
        for e in held {
            w.record(&e.msg.properties, now);
        }
    }

    /// Groups with a message in flight (unacked or waiting for a retry delay).
    pub fn busy_groups(&self) -> usize {
        self.busy.len()
    }

    fn group_inc(&mut self, msg: &crate::message::Message) {
        if let Some(g) = group_key(self.args.message_group_header.as_deref(), msg) {
            *self.busy.entry(g).or_insert(0) += 1;
        }
    }

    fn group_dec(&mut self, msg: &crate::message::Message) {
        if let Some(g) = group_key(self.args.message_group_header.as_deref(), msg)
            && let Some(n) = self.busy.get_mut(&g)
        {
            *n -= 1;
            if *n == 0 {
                self.busy.remove(&g);
            }
        }
    }

    /// The next ready message to hand out: the head, or with message groups the first one
    /// whose group is free.
    fn take_next(&mut self) -> Option<Entry> {
        match self.args.message_group_header.as_deref() {
            None => self.ready.pop_front(),
            Some(h) => {
                let busy = &self.busy;
                self.ready.pop_next(GROUP_SCAN_WINDOW, |e| {
                    group_key(Some(h), &e.msg).is_none_or(|g| !busy.contains_key(&g))
                })
            }
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queue's parsed arguments.
    pub fn args(&self) -> &QueueArgs {
        &self.args
    }

    /// Ready messages (including those waiting for a retry delay), as declare-ok reports.
    pub fn message_count(&self) -> u32 {
        (self.ready.len as u64 + self.paged.count + self.delayed.len() as u64).min(u32::MAX as u64) as u32
    }

    /// Messages delivered and not yet settled.
    pub fn unacked_count(&self) -> u32 {
        self.unacked.len() as u32
    }

    /// Body bytes of ready messages.
    pub fn ready_bytes(&self) -> u64 {
        self.ready.bytes + self.paged.bytes
    }

    /// Number of consumers.
    pub fn consumer_count(&self) -> u32 {
        self.consumers.len() as u32
    }

    /// Whether the queue holds nothing at all (ready, delayed or unacked).
    pub fn is_empty(&self) -> bool {
        self.ready.len == 0 && self.paged.count == 0 && self.delayed.is_empty() && self.unacked.is_empty()
    }

    /// Enqueues a published message (or a dead-lettered one arriving here).
    pub fn publish(
        &mut self,
        msg: MessageRef,
        now: u64,
        msg_ttl: Option<u64>,
        fx: &mut Effects,
    ) -> Published {
        self.publish_at(msg, now, msg_ttl, None, fx)
    }

    /// The seq the next published message will get (to persist it under that seq first).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Enqueues a message already persisted at store position `pos`. If the result is
    /// `Rejected` the queue did not take it: the caller removes it from the store.
    pub fn publish_at(
        &mut self,
        msg: MessageRef,
        now: u64,
        msg_ttl: Option<u64>,
        pos: Option<StorePos>,
        fx: &mut Effects,
    ) -> Published {
        let expires_at = self.expiry(now, msg_ttl);
        if let Some(w) = &mut self.dedup {
            w.prune(now);
            if w.is_duplicate(&msg.properties, now) {
                self.duplicates_dropped += 1;
                return Published::Duplicate;
            }
        }
        if self.would_overflow(msg.size()) {
            match self.args.overflow {
                Overflow::DropHead => {}
                Overflow::RejectPublish => return Published::Rejected,
                Overflow::RejectPublishDlx => {
                    if self.has_dlx {
                        fx.dead_letters.push((msg, DeadReason::Maxlen));
                    }
                    return Published::Rejected;
                }
            }
        }
        if let Some(w) = &mut self.dedup {
            w.record(&msg.properties, now);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(p) = pos
            && self.is_paging()
        {
            // Kept only on disk, behind everything in memory.
            if self.paged.count == 0 {
                self.paged.from = p;
            }
            self.paged.count += 1;
            self.paged.bytes += msg.size();
            self.enforce_limits(fx);
            return Published::Enqueued;
        }
        self.ready.push_back(Entry {
            seq,
            msg,
            redelivered: false,
            delivery_count: 0,
            acquired_count: 0,
            expires_at,
            pos,
        });
        self.enforce_limits(fx);
        Published::Enqueued
    }

    fn would_overflow(&self, size: u64) -> bool {
        self.args
            .max_length
            .is_some_and(|m| self.ready.len as u64 + self.paged.count >= m)
            || self
                .args
                .max_length_bytes
                .is_some_and(|m| self.ready.bytes + self.paged.bytes + size > m)
    }

    fn enforce_limits(&mut self, fx: &mut Effects) {
        loop {
            let over_len = self
                .args
                .max_length
                .is_some_and(|m| self.ready.len as u64 + self.paged.count > m);
            let over_bytes = self
                .args
                .max_length_bytes
                .is_some_and(|m| self.ready.bytes + self.paged.bytes > m);
            if !(over_len || over_bytes) {
                break;
            }
            match self.ready.pop_oldest() {
                Some(e) => self.dead_entry(e, DeadReason::Maxlen, fx),
                None => break,
            }
        }
    }

    /// An entry leaves the queue for good: its stored copy is removed.
    fn gone(&mut self, e: &Entry) {
        if let Some(p) = e.pos {
            self.removed.push(p);
        }
    }

    fn dead_entry(&mut self, e: Entry, reason: DeadReason, fx: &mut Effects) {
        match e.pos {
            Some(p) if self.dl_at_least_once && self.has_dlx && !self.args.dead_letter_at_most_once => {
                fx.dead_letter_positions.push(p)
            }
            _ => self.gone(&e),
        }
        self.dead(e.msg, reason, fx);
    }

    /// Store work the caller must carry out: positions of persisted messages that left the
    /// queue, and (position, delivery count, acquired count) of persisted messages returned.
    pub fn take_store_effects(&mut self) -> (Vec<StorePos>, Vec<(StorePos, u32, u32)>) {
        (
            std::mem::take(&mut self.removed),
            std::mem::take(&mut self.count_updates),
        )
    }

    /// Whether there is store work pending.
    pub fn has_store_effects(&self) -> bool {
        !self.removed.is_empty()
            || !self.count_updates.is_empty()
            || self.purged_paged.is_some()
            || !self.delivered.is_empty()
    }

    /// Store positions of persisted messages delivered since the last call, for the caller to
    /// record (a restart flags only recorded deliveries `redelivered`).
    pub fn take_delivered(&mut self) -> Vec<StorePos> {
        std::mem::take(&mut self.delivered)
    }

    /// Puts recovered messages back (at start-up), in seq order.
    pub fn restore(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for e in entries {
            self.next_seq = self.next_seq.max(e.seq + 1);
            self.ready.insert_sorted(e);
        }
    }

    fn dead(&mut self, msg: MessageRef, reason: DeadReason, fx: &mut Effects) {
        if self.has_dlx {
            fx.dead_letters.push((msg, reason));
        } else if reason == DeadReason::DeliveryLimit {
            fx.dropped_by_limit += 1;
        }
    }

    /// Registers a consumer. Exclusive-consumer conflicts are 403 as in RabbitMQ.
    pub fn add_consumer(&mut self, spec: ConsumerSpec, vhost: &str) -> AmqpResult<()> {
        if self.consumers.iter().any(|c| c.spec.exclusive) || (spec.exclusive && !self.consumers.is_empty()) {
            return Err(exclusive_use(&self.name, vhost));
        }
        // Keep consumers ordered by priority (highest first), stable by registration.
        let pos = self
            .consumers
            .partition_point(|c| c.spec.priority >= spec.priority);
        self.consumers.insert(pos, Consumer { spec, unacked: 0 });
        Ok(())
    }

    /// Removes a consumer. Its unacked messages stay with its channel, as in RabbitMQ.
    pub fn remove_consumer(&mut self, key: ConsumerKey) -> Option<ConsumerSpec> {
        let pos = self.consumers.iter().position(|c| c.spec.key == key)?;
        if pos < self.cursor {
            self.cursor -= 1;
        }
        Some(self.consumers.remove(pos).spec)
    }

    /// Consumers' specs, in priority order.
    pub fn consumers(&self) -> impl Iterator<Item = &ConsumerSpec> {
        self.consumers.iter().map(|c| &c.spec)
    }

    /// The single active consumer, if the queue has `x-single-active-consumer`.
    ///
    /// The rule (RabbitMQ quorum queues'): the consumer that received the queue's unacked
    /// deliveries stays the only one served until it holds none — acked, rejected, or returned
    /// by its channel's close — even once it is cancelled (then no consumer is active) or a
    /// consumer of higher priority waits. As soon as it holds none, the first registered
    /// consumer (by `x-priority`, then registration order) is active and is served by the
    /// next `dispatch`, which every settling input is followed by. Returned messages go back
    /// to their original positions, so the next consumer receives them first, in order.
    pub fn active_consumer(&self) -> Option<ConsumerKey> {
        if !self.args.single_active_consumer {
            return None;
        }
        match self.sac_holder {
            Some((k, _)) => self.consumers.iter().any(|c| c.spec.key == k).then_some(k),
            None => self.consumers.first().map(|c| c.spec.key),
        }
    }

    /// Picks the next consumer with room: the highest priority group that has one, round-robin
    /// within the group.
    fn pick(&mut self, reserve: &mut impl FnMut(&ConsumerSpec) -> bool) -> Option<usize> {
        let n = self.consumers.len();
        let has_room = |c: &Consumer| c.spec.prefetch == 0 || c.unacked < c.spec.prefetch;
        if self.args.single_active_consumer {
            let c = self.consumers.first()?;
            if self.sac_holder.is_some_and(|(k, _)| k != c.spec.key) {
                // The previous active consumer still holds messages: nobody is served.
                return None;
            }
            return (has_room(c) && reserve(&c.spec)).then_some(0);
        }
        let mut i = 0;
        while i < n {
            let prio = self.consumers[i].spec.priority;
            let len = self.consumers[i..]
                .iter()
                .take_while(|c| c.spec.priority == prio)
                .count();
            let start = if (i..i + len).contains(&self.cursor) {
                self.cursor - i
            } else {
                0
            };
            for k in 0..len {
                let idx = i + (start + k) % len;
                let c = &self.consumers[idx];
                if has_room(c) && reserve(&c.spec) {
                    self.cursor = idx + 1;
                    return Some(idx);
                }
            }
            i += len;
        }
        None
    }

    /// Hands ready messages to consumers with room. `reserve` is asked before each delivery
    /// to a consumer (channel-wide prefetch, connection buffer) and must reserve the slot if it
    /// says yes.
    pub fn dispatch(&mut self, now: u64, mut reserve: impl FnMut(&ConsumerSpec) -> bool, fx: &mut Effects) {
        if self.consumers.is_empty() {
            return;
        }
        while self.ready.len > 0 {
            // Drop expired messages at the head before choosing a consumer. A message is still
            // deliverable in the millisecond it expires, so TTL 0 reaches a waiting consumer
            // (RabbitMQ: "expired upon reaching a queue unless delivered immediately").
            let Some(e) = self.take_next() else { break };
            if e.expires_at.is_some_and(|t| t < now) {
                self.dead_entry(e, DeadReason::Expired, fx);
                continue;
            }
            let Some(idx) = self.pick(&mut reserve) else {
                self.ready.insert_sorted(e);
                break;
            };
            let c = &mut self.consumers[idx];
            let d = Delivery {
                consumer: Some(c.spec.key),
                channel: c.spec.channel,
                seq: e.seq,
                msg: e.msg.clone(),
                redelivered: e.redelivered,
                delivery_count: e.delivery_count,
                acquired_count: e.acquired_count,
                no_ack: c.spec.no_ack,
            };
            if c.spec.no_ack {
                if let Some(p) = e.pos {
                    self.removed.push(p);
                }
            } else {
                c.unacked += 1;
                let (key, channel) = (c.spec.key, c.spec.channel);
                if self.args.single_active_consumer {
                    let held = self.sac_holder.map_or(0, |(_, n)| n);
                    self.sac_holder = Some((key, held + 1));
                }
                if let Some(p) = e.pos {
                    self.delivered.push(p);
                }
                self.group_inc(&e.msg);
                self.unacked.insert(
                    e.seq,
                    Unacked {
                        entry: e,
                        consumer: Some(key),
                        channel,
                    },
                );
            }
            fx.deliveries.push(d);
        }
    }

    /// basic.get: the next ready message, if any, with the count of messages left.
    pub fn get(
        &mut self,
        channel: ChannelKey,
        no_ack: bool,
        now: u64,
        fx: &mut Effects,
    ) -> Option<(Delivery, u32)> {
        loop {
            let e = self.take_next()?;
            if e.expires_at.is_some_and(|t| t <= now) {
                self.dead_entry(e, DeadReason::Expired, fx);
                continue;
            }
            let d = Delivery {
                consumer: None,
                channel,
                seq: e.seq,
                msg: e.msg.clone(),
                redelivered: e.redelivered,
                delivery_count: e.delivery_count,
                acquired_count: e.acquired_count,
                no_ack,
            };
            if no_ack {
                self.gone(&e);
            } else {
                if let Some(p) = e.pos {
                    self.delivered.push(p);
                }
                self.group_inc(&e.msg);
                self.unacked.insert(
                    e.seq,
                    Unacked {
                        entry: e,
                        consumer: None,
                        channel,
                    },
                );
            }
            return Some((d, self.message_count()));
        }
    }

    fn settle(&mut self, seq: u64) -> Option<Unacked> {
        let u = self.unacked.remove(&seq)?;
        self.group_dec(&u.entry.msg);
        if let Some(k) = u.consumer {
            if let Some(c) = self.consumers.iter_mut().find(|c| c.spec.key == k) {
                c.unacked = c.unacked.saturating_sub(1);
            }
            if let Some((h, n)) = &mut self.sac_holder
                && *h == k
            {
                *n -= 1;
                if *n == 0 {
                    self.sac_holder = None;
                }
            }
        }
        Some(u)
    }

    /// basic.ack of one message. `false` if it was not unacked here.
    pub fn ack(&mut self, seq: u64) -> bool {
        match self.settle(seq) {
            Some(u) => {
                self.gone(&u.entry);
                true
            }
            None => false,
        }
    }

    /// basic.reject / basic.nack: requeue (counting the return) or discard (dead-letter
    /// `rejected`). `false` if the message was not unacked here.
    pub fn reject(&mut self, seq: u64, requeue: Option<Return>, now: u64, fx: &mut Effects) -> bool {
        let Some(u) = self.settle(seq) else { return false };
        match requeue {
            None => self.dead_entry(u.entry, DeadReason::Rejected, fx),
            Some(how) => self.requeue(u.entry, how, now, fx),
        }
        true
    }

    fn requeue(&mut self, mut e: Entry, how: Return, now: u64, fx: &mut Effects) {
        e.redelivered = true;
        e.acquired_count += 1;
        if how == Return::Failed {
            e.delivery_count += 1;
        }
        if let Some(p) = e.pos {
            self.count_updates.push((p, e.delivery_count, e.acquired_count));
        }
        if let Some(limit) = self.args.delivery_limit {
            let counted = match self.args.limit_counts {
                LimitCounts::Failed => e.delivery_count,
                LimitCounts::All => e.acquired_count,
            };
            if counted > limit {
                self.dead_entry(e, DeadReason::DeliveryLimit, fx);
                return;
            }
        }
        if let Some(r) = self.args.delayed_retry {
            let count = match (r.kind, how) {
                (RetryType::All, Return::Failed) | (RetryType::Failed, Return::Failed) => {
                    Some(e.delivery_count)
                }
                (RetryType::All, Return::Returned) | (RetryType::Returned, Return::Returned) => {
                    Some(e.acquired_count)
                }
                _ => None,
            };
            if let Some(n) = count {
                let at = now.saturating_add(r.delay_ms(n));
                // A delayed group head keeps its group blocked until it is ready again.
                self.group_inc(&e.msg);
                self.delayed.insert((at, e.seq), e);
                return;
            }
        }
        self.ready.insert_sorted(e);
    }

    /// Returns every message unacked on `channel` (channel or connection closed: a failed
    /// delivery), in publish order.
    pub fn release_channel(&mut self, channel: ChannelKey, how: Return, now: u64, fx: &mut Effects) {
        let mut seqs: Vec<u64> = self
            .unacked
            .iter()
            .filter(|(_, u)| u.channel == channel)
            .map(|(s, _)| *s)
            .collect();
        seqs.sort_unstable();
        for s in seqs {
            if let Some(u) = self.settle(s) {
                self.requeue(u.entry, how, now, fx);
            }
        }
    }

    /// Puts back a delivery that was never sent (the consumer went away before its channel
    /// wrote it): not a redelivery, no count. Only while `seq` is still unacked by `consumer`
    /// on `channel`: once the channel's release has returned it, it may be out again with
    /// another consumer, and a late unsend must not take it back.
    pub fn unsend(&mut self, seq: u64, consumer: Option<ConsumerKey>, channel: ChannelKey) -> bool {
        if !self
            .unacked
            .get(&seq)
            .is_some_and(|u| u.consumer == consumer && u.channel == channel)
        {
            return false;
        }
        let Some(u) = self.settle(seq) else { return false };
        self.ready.insert_sorted(u.entry);
        true
    }

    /// queue.purge: drops every ready message; returns how many.
    pub fn purge(&mut self) -> u32 {
        let mut removed = std::mem::take(&mut self.removed);
        for q in &self.ready.levels {
            removed.extend(q.iter().filter_map(|e| e.pos));
        }
        removed.extend(self.delayed.values().filter_map(|e| e.pos));
        self.removed = removed;
        let paged = self.paged.count as usize;
        if paged > 0 {
            self.purged_paged = Some(self.paged);
            self.paged = Paged::default();
        }
        let n = self.ready.clear() + self.delayed.len() + paged;
        for e in std::mem::take(&mut self.delayed).into_values() {
            self.group_dec(&e.msg);
        }
        n as u32
    }

    /// Moves due delayed retries back to ready and expires TTL'd messages at the heads.
    pub fn tick(&mut self, now: u64, fx: &mut Effects) {
        while let Some((&(at, _), _)) = self.delayed.first_key_value() {
            if at > now {
                break;
            }
            if let Some((_, e)) = self.delayed.pop_first() {
                self.group_dec(&e.msg);
                self.ready.insert_sorted(e);
            }
        }
        loop {
            let due = self
                .ready
                .levels
                .iter()
                .position(|q| q.front().is_some_and(|e| e.expires_at.is_some_and(|t| t <= now)));
            let Some(l) = due else { break };
            if let Some(e) = self.ready.levels[l].pop_front() {
                self.ready.len -= 1;
                self.ready.bytes -= e.msg.size();
                self.dead_entry(e, DeadReason::Expired, fx);
            }
        }
    }

    /// When `tick` next has work: the earliest delayed retry or head expiry.
    pub fn next_deadline(&self) -> Option<u64> {
        let d = self.delayed.first_key_value().map(|(&(at, _), _)| at);
        match (d, self.ready.front_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Every message still held (ready, delayed and unacked), for shutdown or deletion counts.
    pub fn total_count(&self) -> u32 {
        self.message_count() + self.unacked_count()
    }

    /// Replaces the queue's effective arguments (a policy was set, changed or cleared), as
    /// RabbitMQ re-initialises a live queue: new length limits are enforced at once (with
    /// `drop-head` the oldest ready messages are dead-lettered with reason `maxlen`; with
    /// `reject-publish(-dlx)` they stay and new publishes are refused, as RabbitMQ's
    /// `init_max_length`); a new dead-letter exchange, delivery limit, delayed retry and
    /// overflow mode apply from the next message they concern; a new `x-message-ttl` applies
    /// to messages enqueued from now on (held messages keep the expiry they got when enqueued,
    /// as in RabbitMQ) and expired heads are dropped on the next check. What a policy cannot
    /// change (`x-max-priority`, message groups, deduplication, single active consumer, queue
    /// type) keeps its declared value.
    pub fn reconfigure(&mut self, mut args: QueueArgs, now: u64, fx: &mut Effects) {
        args.max_priority = self.args.max_priority;
        args.message_group_header = self.args.message_group_header.clone();
        args.deduplication = self.args.deduplication.clone();
        args.single_active_consumer = self.args.single_active_consumer;
        args.quorum = self.args.quorum;
        self.has_dlx = args.dead_letter_exchange.is_some();
        self.args = args;
        if self.args.overflow == Overflow::DropHead {
            self.enforce_limits(fx);
        }
        self.tick(now, fx);
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod groups_tests;

#[cfg(test)]
mod paging_tests;

#[cfg(test)]
mod failover_tests;
