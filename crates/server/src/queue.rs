//! A live queue: `core::QueueState` behind one narrow mutex (never held across `.await`),
//! the delivery route of each consuming channel, and the queue's timer (TTL, delayed retries).
//!
//! Whoever changes the queue — a publisher's connection, an acking consumer's connection, the
//! timer — runs `dispatch` under the same lock, so deliveries to each consumer leave in queue
//! order. Deliveries go to the consumer's connection mailbox; a consumer whose connection's
//! buffers are full is skipped and the queue registers itself to be woken when they drain.
//!
//! A backlog beyond the in-memory budget stays in the queue's log and is paged back in without
//! the lock: the read is planned under it, runs on a blocking thread while the queue serves
//! what it holds, and its batch is taken back under the lock only if the queue still reads from
//! where it was planned ([`Queue::page_in`], docs/architecture.md "Paging a backlog in").
//!
//! A quorum queue on a clustered node is served by the node of its Raft group's leader
//! ([`crate::quorum`]): its handle there has a [`Replicator`] instead of a log. Publishes go to
//! the replicator first and are enqueued only once committed ([`Queue::enqueue_replicated`],
//! store position = the message's id in the group); acks and returns are handed to it as the
//! store effects a log would have recorded. Deliveries are not sent at dispatch: they go to the
//! replicator with their `Deliver` record and leave for their consumers only once the group
//! committed that they are out (RabbitMQ's Ra model: a leader cut off from its majority
//! delivers nothing, and a message that went out is recorded as out, so a new leader flags it
//! redelivered).

use foldhash::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use warren_core::AmqpResult;
use warren_core::MessageRef;
use warren_core::deadletter::DeadReason;
use warren_core::flow::{Credit, Take};
use warren_core::queue::{
    ChannelKey, ConsumerKey, ConsumerSpec, Delivery, Effects, Entry, Paged, Published, QueueState, Return,
    StorePos,
};
use warren_core::topology::QueueMeta;

use warren_store::{MsgPos, QueueLog, ReadPlan, Recovered, StoreError};

use crate::mailbox::{ChannelShared, ConnShared};
use crate::persist::{pack, unpack};
use crate::util::now_ms;
use crate::vhost::VHost;

/// Ready messages a durable queue keeps in memory; a longer backlog stays in its log and is
/// paged back in, in order, as consumers drain the queue (see `QueueState`'s paging).
pub const READY_IN_MEMORY: usize = 2048;
/// Same, in body bytes (per queue: 200 queues with backlogs hold at most 400 MB).
pub const READY_BYTES_IN_MEMORY: u64 = 2 << 20;
/// How much of a recovered or adopted backlog a queue holds in memory before the rest is
/// counted as paged: [`READY_IN_MEMORY`] and [`READY_BYTES_IN_MEMORY`], or all of it for a
/// queue that does not page ([`QueueState::pages`]: a priority queue).
fn ready_budget(state: &QueueState) -> (usize, u64) {
    if state.pages() {
        (READY_IN_MEMORY, READY_BYTES_IN_MEMORY)
    } else {
        (usize::MAX, u64::MAX)
    }
}

/// After a page-in read failed, the queue tries again this much later (not on every operation).
const PAGE_IN_RETRY_MS: u64 = 1000;

/// A publisher's verdict for a replicated message: called once, `true` when committed.
pub type VerdictFn = Box<dyn FnOnce(bool) + Send>;

/// Where a quorum queue's changes go to be replicated (its Raft group's proposer on the
/// leader's node, [`crate::quorum`]). Never blocks: both queue work for a background task.
pub trait Replicator: Send + Sync + std::fmt::Debug {
    /// Replicates a published message; once committed the proposer enqueues it here
    /// ([`Queue::enqueue_replicated`]) and calls `done` with the verdict.
    fn publish(&self, msg: MessageRef, ttl: Option<u64>, done: Option<VerdictFn>);
    /// Replicates a change of message state (settled, returned).
    fn command(&self, cmd: warren_core::quorum::Command);
    /// Replicates that messages `ids` are out with consumers; once committed the proposer
    /// sends `out` (in order) to their consumers ([`Queue::send_committed`]). Called under the
    /// queue's lock: must not take it.
    fn deliver(&self, ids: Vec<u64>, out: Vec<(Sink, Delivery)>);
    /// Whether the group may still commit (false once another node leads it: the queue stops
    /// dispatching until its handle is ceded).
    fn serving(&self) -> bool;
}

/// Messages read from a quorum queue's replica for its serving handle: entries (seq and store
/// position = id, no expiry yet) with their enqueue times, the ids of records that could not
/// be read back or decoded, and the id to read on from.
#[derive(Debug, Default)]
pub struct ReplicaPage {
    /// The messages, in queue order, each with its enqueue time.
    pub entries: Vec<(Entry, Option<u64>)>,
    /// Records that could not be read back or decoded (logged; they are skipped).
    pub undecodable: Vec<u64>,
    /// The id after the last one read.
    pub next: u64,
}

/// This node's replica of a quorum queue it serves, as the handle reads it: where its paged
/// messages come from (the replica of [`crate::quorum`]). Reads may do file IO.
pub trait ReplicaReader: Send + Sync + std::fmt::Debug {
    /// The first messages as entries, while fewer than `max_msgs` and `max_bytes` of bodies;
    /// the rest counted as paged; and the highest id.
    fn head(&self, max_msgs: usize, max_bytes: u64) -> (ReplicaPage, Paged, u64);
    /// Up to `count` ready messages from id `from` on (about `max_bytes` of bodies, at least
    /// one), skipping those the handle refused.
    fn page(&self, from: u64, count: usize, max_bytes: u64) -> ReplicaPage;
    /// The ids of up to `count` ready messages from `from` on, skipping refused ones.
    fn paged_ids(&self, from: u64, count: u64) -> Vec<u64>;
    /// The handle did not take committed message `id` (its `Settle` follows).
    fn refuse(&self, id: u64);
}

/// Gives back the connection and prefetch slots that quorum queue deliveries reserved and
/// will never use (their `Deliver` record cannot commit: another node leads the group).
pub fn release_unsent(out: Vec<(Sink, Delivery)>) {
    for (s, d) in out {
        s.conn.took_delivery();
        if !d.no_ack {
            s.channel.release(1);
        }
    }
}

/// Whether a published message was written to the queue's durable log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Not a persistent message for a durable queue (or a duplicate): nothing to write.
    NotNeeded,
    /// Appended; its confirm waits for the group commit.
    Written,
    /// The append failed (full disk, poisoned store): the queue did not take the message.
    Failed,
}

/// Where a channel's deliveries go: its connection and its shared counters. The queue keeps
/// one per channel that consumes from it; the consumers themselves are recorded once, in the
/// queue state (`ConsumerSpec`, whose `channel` finds the route).
#[derive(Debug, Clone)]
pub struct Sink {
    /// The channel's connection.
    pub conn: Arc<ConnShared>,
    /// Its channel's shared counters (channel-wide prefetch).
    pub channel: Arc<ChannelShared>,
}

#[derive(Debug)]
struct Inner {
    state: QueueState,
    /// The delivery route of each channel with consumers here (looked up once per delivery:
    /// foldhash, not SipHash).
    sinks: HashMap<ChannelKey, Sink>,
    /// An empty vector with room, lent to each dispatch pass for its deliveries, so a publish
    /// that delivers at once allocates no vector of its own.
    spare_deliveries: Vec<Delivery>,
    /// The durable log of a durable queue.
    log: Option<QueueLog>,
    /// A non-durable queue's scratch log (its name in `Persistence::scratch`), opened when its
    /// backlog first outgrew the in-memory budget.
    scratch: Option<String>,
    /// Delivered records wait in the log's buffers (see `flush_marks`).
    marks_pending: bool,
    /// Ingest credit for the connections publishing here ([`warren_core::flow`]).
    credit: Credit,
    /// Connections parked on this queue's credit, woken when it has half a window again.
    flow_waiters: Vec<Weak<ConnShared>>,
    /// A page-in read runs on a blocking thread ([`Queue::page_in`]).
    page_in_flight: bool,
    /// After a failed page-in read: when to try again (ms, 0 = at once).
    page_in_retry_at: u64,
    /// A quorum queue served on this node: where its changes are replicated.
    replicator: Option<Arc<dyn Replicator>>,
    /// A quorum queue served on this node: this node's replica, where its paged messages are
    /// read from.
    replica: Option<Arc<dyn ReplicaReader>>,
    /// A quorum queue's deliveries of the current operation, handed to the replicator with
    /// their `Deliver` record (see the module doc).
    outgoing: Vec<(Sink, Delivery)>,
}

impl Inner {
    /// Registers `conn` to be woken when this queue has credit again.
    fn park(&mut self, conn: &Arc<ConnShared>) {
        let me = Arc::downgrade(conn);
        if !self.flow_waiters.iter().any(|w| w.ptr_eq(&me)) {
            self.flow_waiters.push(me);
        }
    }

    /// Wakes the connections parked on this queue's credit.
    fn wake_publishers(&mut self) {
        for c in self.flow_waiters.drain(..).filter_map(|w| w.upgrade()) {
            c.flow_resume();
        }
    }

    /// When the timer must run next: the state's next deadline, or the retry of a failed
    /// page-in read if that comes first.
    fn next_wakeup(&self) -> Option<u64> {
        let retry = (self.page_in_retry_at != 0 && self.state.page_request().is_some())
            .then_some(self.page_in_retry_at);
        match (self.state.next_deadline(), retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The queue's credit back to a full window (no consumers left, purged, deleted).
    fn refill_credit(&mut self) {
        if self.credit.refill() || !self.flow_waiters.is_empty() {
            self.wake_publishers();
        }
    }

    /// Pages messages back in from the log while the queue wants them, reading under the lock:
    /// the path when no runtime runs (see [`Queue::page_in`]). Returns whether any came in.
    fn refill(&mut self, fx: &mut Effects) -> bool {
        let mut any = false;
        while let Some((from, plan)) = self.plan_page_in() {
            if !self.finish_page_in(from, plan.read(), fx) {
                return any;
            }
            any = true;
        }
        any
    }

    /// Plans the next page-in read if the queue wants one (and the last failure's pause is
    /// over): where it reads from and the plan, whose file IO runs without this lock.
    fn plan_page_in(&mut self) -> Option<(StorePos, PageRead)> {
        let req = self.state.page_request()?;
        if self.page_in_retry_at != 0 && now_ms() < self.page_in_retry_at {
            return None;
        }
        if let Some(replica) = &self.replica {
            // No more than the handle counts as paged: the replica may already hold messages
            // committed after them that the handle has not taken yet.
            let count = usize::try_from(self.state.paged().count).unwrap_or(usize::MAX);
            let plan = PageRead::Replica {
                replica: replica.clone(),
                from: req.from.0,
                count: count.min(req.max_msgs),
                max_bytes: req.max_bytes,
                done: None,
            };
            return Some((req.from, plan));
        }
        let log = self.log.as_mut()?;
        match log.plan_read(
            unpack(req.from),
            req.max_msgs,
            req.max_bytes.min(usize::MAX as u64) as usize,
        ) {
            Ok(plan) => Some((req.from, PageRead::Log(plan))),
            Err(e) => {
                tracing::error!(queue = self.state.name(), "cannot page messages in: {e}");
                self.page_in_retry_at = now_ms() + PAGE_IN_RETRY_MS;
                None
            }
        }
    }

    /// Takes a read planned at `from` back, if the queue still reads from there: another
    /// read (a `basic.get`'s), a purge or a length limit may have moved the position while
    /// the file IO ran, and then the read is dropped (its records are the log's again).
    /// Returns whether messages came in.
    fn finish_page_in(&mut self, from: StorePos, done: PageRead, fx: &mut Effects) -> bool {
        let paged = self.state.paged();
        if paged.count == 0 || paged.from != from {
            return false;
        }
        match done {
            PageRead::Log(done) => {
                let Some(log) = &mut self.log else { return false };
                let read = log.finish_read(done);
                self.take_page(from, read, fx)
            }
            PageRead::Replica { done: Some(page), .. } => self.take_replica_page(from, page, fx),
            PageRead::Replica { done: None, .. } => false,
        }
    }

    /// Puts the messages read from a quorum queue's replica (from `from`) in the queue; records
    /// that could not be read or decoded are settled. Returns whether messages came in.
    fn take_replica_page(&mut self, from: StorePos, page: ReplicaPage, fx: &mut Effects) -> bool {
        let ReplicaPage {
            entries,
            undecodable,
            next,
        } = page;
        if entries.is_empty() && undecodable.is_empty() {
            tracing::error!(
                queue = self.state.name(),
                "messages counted as paged were not found in the quorum queue's replica"
            );
            self.state.skip_paged(u64::MAX, StorePos::default());
            return false;
        }
        let entries = with_expiry(&self.state, entries);
        self.state.skip_paged(undecodable.len() as u64, from);
        if !undecodable.is_empty()
            && let Some(r) = &self.replicator
        {
            r.command(warren_core::quorum::Command::Settle(undecodable));
        }
        self.state.page_in(entries, StorePos(next), fx);
        self.apply_store();
        true
    }

    /// Puts the messages of a finished read (from `from`) in the queue. Returns whether any
    /// came in.
    fn take_page(
        &mut self,
        from: StorePos,
        read: Result<(Vec<Recovered>, MsgPos), StoreError>,
        fx: &mut Effects,
    ) -> bool {
        let (batch, next) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(queue = self.state.name(), "cannot page messages in: {e}");
                self.page_in_retry_at = now_ms() + PAGE_IN_RETRY_MS;
                return false;
            }
        };
        self.page_in_retry_at = 0;
        if batch.is_empty() {
            tracing::error!(
                queue = self.state.name(),
                "messages counted on disk were not found in the log"
            );
            self.state.skip_paged(u64::MAX, StorePos::default());
            return false;
        }
        let Some(log) = &mut self.log else { return false };
        // Undecodable records (reported by stored_entry) leave the log and the count.
        let state = &self.state;
        let mut undecodable = 0u64;
        let entries: Vec<Entry> = batch
            .iter()
            .filter_map(|r| {
                let e =
                    crate::persist::stored_entry(r, r.delivered, |t, ttl| state.expiry(t, ttl), state.name());
                if e.is_none() {
                    let _ = log.ack(r.pos);
                    undecodable += 1;
                }
                e
            })
            .collect();
        self.state.skip_paged(undecodable, from);
        self.state.page_in(entries, crate::persist::pack(next), fx);
        self.apply_store();
        true
    }

    /// A delivery whose channel's connection task is gone without releasing it (it failed):
    /// it goes back on the state, and the channel's consumers and what it holds are released,
    /// so dispatch never picks them again.
    fn undeliverable(&mut self, d: Delivery, now: u64, fx: &mut Effects) {
        let state = &mut self.state;
        state.unsend(d.seq, d.consumer, d.channel);
        if self.sinks.remove(&d.channel).is_some() {
            let gone: Vec<ConsumerKey> = state
                .consumers()
                .filter(|c| c.channel == d.channel)
                .map(|c| c.key)
                .collect();
            for key in gone {
                state.remove_consumer(key);
            }
        }
        state.release_channel(d.channel, Return::Failed, now, fx);
    }

    /// Pushes delivered records to the OS (one write), so that a crash after the deliveries
    /// went out still flags them redelivered. Runs at the end of every operation that can
    /// deliver, except a publish whose connection flushes the log anyway at the end of its
    /// batch (`Queue::flush_log`).
    fn flush_marks(&mut self) {
        if !std::mem::take(&mut self.marks_pending) {
            return;
        }
        if let Some(log) = &mut self.log
            && let Err(e) = log.flush()
        {
            tracing::warn!(queue = self.state.name(), "store flush failed: {e}");
        }
    }

    /// Carries out the store work the last state change left: ack records for messages that
    /// left the queue, counter records for returned ones.
    fn apply_store(&mut self) {
        if !self.state.has_store_effects() && self.outgoing.is_empty() {
            return;
        }
        let (removed, counts) = self.state.take_store_effects();
        let purged = self.state.take_purged_paged();
        let delivered = self.state.take_delivered();
        if let Some(r) = &self.replicator {
            use warren_core::quorum::Command;
            let ids = |v: Vec<StorePos>| v.into_iter().map(|p| p.0).collect::<Vec<u64>>();
            let out = std::mem::take(&mut self.outgoing);
            if !delivered.is_empty() || !out.is_empty() {
                r.deliver(ids(delivered), out);
            }
            if !removed.is_empty() {
                r.command(Command::Settle(ids(removed)));
            }
            if let Some(p) = purged
                && let Some(replica) = &self.replica
            {
                let gone = replica.paged_ids(p.from.0, p.count);
                if !gone.is_empty() {
                    r.command(Command::Settle(gone));
                }
            }
            if !counts.is_empty() {
                r.command(Command::Return(counts.into_iter().map(|(p, _, _)| p.0).collect()));
            }
            return;
        }
        let Some(log) = &mut self.log else { return };
        self.marks_pending |= !delivered.is_empty();
        for p in delivered {
            if let Err(e) = log.mark_delivered(unpack(p)) {
                tracing::warn!(queue = self.state.name(), "store delivery record failed: {e}");
            }
        }
        if let Some(p) = purged
            && let Err(e) = log.ack_from(unpack(p.from))
        {
            tracing::warn!(queue = self.state.name(), "store purge failed: {e}");
        }
        for p in removed {
            if let Err(e) = log.ack(unpack(p)) {
                tracing::warn!(queue = self.state.name(), "store ack failed: {e}");
            }
        }
        for (p, d, a) in counts {
            if let Err(e) = log.set_counts(unpack(p), d, a) {
                tracing::warn!(queue = self.state.name(), "store counter update failed: {e}");
            }
        }
    }
}

/// A page-in read, planned under the queue's lock and run without it: from the queue's log, or
/// from the replica of a quorum queue served here (its records in memory or in its scratch
/// log).
enum PageRead {
    Log(ReadPlan),
    Replica {
        replica: Arc<dyn ReplicaReader>,
        from: u64,
        count: usize,
        max_bytes: u64,
        done: Option<ReplicaPage>,
    },
}

impl PageRead {
    /// Runs the read (file IO).
    fn read(self) -> PageRead {
        match self {
            PageRead::Log(plan) => PageRead::Log(plan.read()),
            PageRead::Replica {
                replica,
                from,
                count,
                max_bytes,
                ..
            } => {
                let page = replica.page(from, count, max_bytes);
                PageRead::Replica {
                    replica,
                    from,
                    count,
                    max_bytes,
                    done: Some(page),
                }
            }
        }
    }
}

/// Entries read from a quorum queue's replica, their expiry set from their enqueue times
/// (TTL counts from the publish, across failovers).
fn with_expiry(state: &QueueState, entries: Vec<(Entry, Option<u64>)>) -> Vec<Entry> {
    entries
        .into_iter()
        .map(|(mut e, enqueued_at)| {
            e.expires_at = enqueued_at.and_then(|t| state.expiry(t, e.msg.expiration_ms().ok().flatten()));
            e
        })
        .collect()
}

/// Runs a page-in read on this thread; on a multi-threaded runtime's worker it is a blocking
/// section ([`tokio::task::block_in_place`]), so the worker's other tasks go on elsewhere.
fn read_blocking(plan: PageRead) -> PageRead {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| plan.read())
        }
        _ => plan.read(),
    }
}

/// A queue handle, shared by every connection that uses the queue.
#[derive(Debug)]
pub struct Queue {
    /// Declared properties.
    pub meta: QueueMeta,
    vhost: Weak<VHost>,
    inner: Mutex<Inner>,
    deleted: AtomicBool,
    had_consumer: AtomicBool,
    /// When the timer task is due (ms, 0 = none scheduled).
    timer_at: AtomicU64,
    /// Last use (consume, get, redeclare, last consumer gone), for `x-expires`.
    last_used: AtomicU64,
    /// Has a durable log.
    durable: AtomicBool,
    /// The `x-expires` timer task: (generation, its TTL); a task exits once the generation
    /// moves on (a policy changed the queue's effective `x-expires`).
    expiry: Mutex<(u64, Option<u64>)>,
    /// Counters for the management API.
    pub stats: QueueStats,
}

/// Per-queue message counters.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Messages enqueued.
    pub published: AtomicU64,
    /// Deliveries (consume and get).
    pub delivered: AtomicU64,
    /// Acks.
    pub acked: AtomicU64,
    /// Publishes dropped as duplicates (`x-deduplication-window`).
    pub duplicates_dropped: AtomicU64,
}

/// A snapshot of a queue's counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueCounts {
    /// Ready messages.
    pub ready: u32,
    /// Unacknowledged deliveries.
    pub unacked: u32,
    /// Consumers.
    pub consumers: u32,
    /// Ready bytes.
    pub ready_bytes: u64,
}

/// The ingest credit window of every queue: `WARREN_CREDIT_FLOW_WINDOW` messages if set (an
/// advanced setting, like RabbitMQ's `credit_flow_default_credit`; `0` turns credit flow off,
/// for measuring what it costs), else [`warren_core::flow::DEFAULT_WINDOW`].
fn credit_window() -> u32 {
    static WINDOW: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *WINDOW.get_or_init(|| {
        match std::env::var("WARREN_CREDIT_FLOW_WINDOW")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            Some(0) => u32::MAX,
            Some(n) => n,
            None => warren_core::flow::DEFAULT_WINDOW,
        }
    })
}

/// The period over which a quorum queue's consumers are judged slow (the classic queue's is
/// [`warren_core::flow::SLOW_CONSUMER_GRACE_MS`]): deliveries leave once their `Deliver`
/// record committed and prefetch slots come back once the acks did, so under load a 20 ms
/// period can fall between two commits, see no delivery, and let the backlog grow by a window.
const QUORUM_GRACE_MS: u64 = 100;

/// A quorum queue's ingest window: a quarter of [`credit_window`]. Its deliveries and acks
/// commit through its group, so its consumers take fewer messages per judging period than a
/// classic queue's; with the classic window they would look slow (client-bound) to the
/// slow-consumer grace, which would let the backlog, and the latency, grow without bound.
fn quorum_credit_window() -> u32 {
    match credit_window() {
        u32::MAX => u32::MAX,
        w => (w / 4).max(1),
    }
}

impl Queue {
    /// Its vhost's name (`None` once the vhost is gone).
    pub fn vhost_name(&self) -> Option<String> {
        self.vhost.upgrade().map(|v| v.name.clone())
    }

    /// A new queue handle.
    pub fn new(meta: QueueMeta, vhost: Weak<VHost>) -> Arc<Queue> {
        let mut state = QueueState::new(&meta.name, meta.args.clone());
        // Every quorum queue (a single node's too, whose store serves it: the same rules
        // wherever it runs).
        let meta_quorum = meta.args.quorum;
        // Only messages with a log position page; a queue without a log keeps everything.
        state.set_paging(READY_IN_MEMORY, READY_BYTES_IN_MEMORY);
        Arc::new(Queue {
            meta,
            vhost,
            inner: Mutex::new(Inner {
                state,
                sinks: HashMap::default(),
                spare_deliveries: Vec::new(),
                log: None,
                scratch: None,
                marks_pending: false,
                credit: if meta_quorum {
                    Credit::with_grace(quorum_credit_window(), QUORUM_GRACE_MS)
                } else {
                    Credit::new(credit_window())
                },
                flow_waiters: Vec::new(),
                page_in_flight: false,
                page_in_retry_at: 0,
                replicator: None,
                replica: None,
                outgoing: Vec::new(),
            }),
            deleted: AtomicBool::new(false),
            had_consumer: AtomicBool::new(false),
            timer_at: AtomicU64::new(0),
            last_used: AtomicU64::new(now_ms()),
            durable: AtomicBool::new(false),
            expiry: Mutex::new((0, None)),
            stats: QueueStats::default(),
        })
    }

    /// Opens (recovering) a durable queue's log in `store`: the first recovered messages, up to
    /// the in-memory budget, come back in memory; the rest stay on disk and are paged in as
    /// consumers drain the queue. Transient messages found in the log (written while the queue
    /// paged) are dropped, as a restart drops every transient message.
    pub fn open_log(&self, store: &warren_store::Store, dir: &str) {
        let name = &*self.meta.name;
        let mut entries = Vec::new();
        let mut bytes = 0u64;
        let mut paged = Paged::default();
        let mut max_seq = 0u64;
        let mut drop_pos = Vec::new();
        let opened = {
            let i = self.inner.lock();
            let state = &i.state;
            let (max_msgs, max_bytes) = ready_budget(state);
            store.open_queue_with(dir, &mut |r| {
                max_seq = max_seq.max(r.seq);
                let payload = bytes::Bytes::copy_from_slice(r.payload);
                let Some((msg, enqueued_at)) = crate::persist::decode_message(&payload) else {
                    tracing::warn!(queue = name, seq = r.seq, "undecodable message record dropped");
                    drop_pos.push(r.pos);
                    return;
                };
                if !msg.is_persistent() {
                    drop_pos.push(r.pos);
                    return;
                }
                let size = msg.size();
                if paged.count == 0 && entries.len() < max_msgs && bytes < max_bytes {
                    bytes += size;
                    let ttl = msg.expiration_ms().ok().flatten();
                    entries.push(Entry {
                        seq: r.seq,
                        msg: Arc::new(msg),
                        // Delivered before the restart (recorded in the log).
                        redelivered: r.delivered || r.acquired_count > 0,
                        delivery_count: r.delivery_count,
                        acquired_count: r.acquired_count,
                        expires_at: enqueued_at.and_then(|t| state.expiry(t, ttl)),
                        pos: Some(pack(r.pos)),
                    });
                } else {
                    if paged.count == 0 {
                        paged.from = pack(r.pos);
                    }
                    paged.count += 1;
                    paged.bytes += size;
                }
            })
        };
        match opened {
            Ok(mut log) => {
                for w in &log.recovery_report().warnings {
                    tracing::warn!(queue = name, "store recovery: {w:?}");
                }
                for p in drop_pos {
                    let _ = log.ack(p);
                }
                let n = entries.len() as u64 + paged.count;
                if n > 0 {
                    tracing::info!(queue = name, messages = n, on_disk = paged.count, "recovered");
                }
                self.attach_log(log, entries, paged, max_seq);
            }
            Err(e) => tracing::error!(queue = name, "cannot open queue log: {e}"),
        }
    }

    /// Gives a durable queue its log and the messages recovered from it.
    /// `paged` messages (after `entries`, up to seq `max_seq`) stay on disk until needed.
    pub fn attach_log(&self, log: QueueLog, entries: Vec<Entry>, paged: Paged, max_seq: u64) {
        let mut i = self.inner.lock();
        i.state.restore(entries);
        i.state.restore_paged(paged, max_seq);
        i.state.set_paging(READY_IN_MEMORY, READY_BYTES_IN_MEMORY);
        i.state.set_dead_letter_at_least_once(true);
        // The recovered messages' ids start a fresh deduplication window.
        i.state.rebuild_dedup(now_ms());
        i.log = Some(log);
        self.durable.store(true, Ordering::Release);
    }

    /// A quorum queue in a cluster: its messages go through its Raft group, not its log.
    pub fn is_replicated(&self) -> bool {
        self.meta.args.quorum && self.vhost.upgrade().is_some_and(|v| v.is_clustered())
    }

    /// This node serves the quorum queue now (it leads the queue's group): its messages are
    /// the replicated ones, `entries` (in id order, seq and store position = id), and its
    /// changes go to `replicator`. Whatever the handle held before is dropped (a local log,
    /// messages never replicated); its consumers stay.
    pub fn adopt_replica(self: &Arc<Self>, replica: Arc<dyn ReplicaReader>, replicator: Arc<dyn Replicator>) {
        let now = now_ms();
        let mut fx = Effects::default();
        let deadline = {
            let mut i = self.inner.lock();
            if let Some(log) = i.log.take() {
                let _ = log.close();
            }
            self.durable.store(false, Ordering::Release);
            i.state.purge();
            let _ = i.state.take_store_effects();
            let _ = i.state.take_purged_paged();
            let _ = i.state.take_delivered();
            // The first messages in memory, the rest paged in from the replica as the queue
            // drains (the serving handle holds no more of a backlog than any other queue).
            let (max_msgs, max_bytes) = ready_budget(&i.state);
            let (head, paged, max_seq) = replica.head(max_msgs, max_bytes);
            if !head.undecodable.is_empty() {
                replicator.command(warren_core::quorum::Command::Settle(head.undecodable));
            }
            let entries = with_expiry(&i.state, head.entries);
            i.state.restore(entries);
            i.state.restore_paged(paged, max_seq);
            i.state.set_paging(READY_IN_MEMORY, READY_BYTES_IN_MEMORY);
            // The held messages' ids start a fresh deduplication window, as after a restart.
            i.state.rebuild_dedup(now);
            i.replicator = Some(replicator);
            i.replica = Some(replica);
            self.dispatch_locked(&mut i, now, &mut fx);
            i.next_wakeup()
        };
        self.finish(fx, deadline, now);
    }

    /// This node no longer serves the quorum queue: changes are no longer replicated from here.
    pub fn drop_replicator(&self) {
        let mut i = self.inner.lock();
        i.replicator = None;
        i.replica = None;
    }

    /// The replicator of a quorum queue this node serves.
    pub fn replicator(&self) -> Option<Arc<dyn Replicator>> {
        self.inner.lock().replicator.clone()
    }

    /// Enqueues a replicated message (committed as id `id` of the queue's group) and
    /// dispatches. Dead letters it causes are routed.
    pub fn enqueue_replicated(self: &Arc<Self>, msg: MessageRef, ttl: Option<u64>, id: u64) -> Published {
        let now = now_ms();
        let mut fx = Effects::default();
        let (p, deadline) = {
            let mut i = self.inner.lock();
            // Its credit was taken when it was handed to the replicator ([`Queue::take_credit`]).
            let p = i.state.publish_at(msg, now, ttl, Some(StorePos(id)), &mut fx);
            if p != Published::Enqueued
                && let Some(r) = &i.replica
            {
                // Its `Settle` follows; until then page-ins must not take it.
                r.refuse(id);
            }
            self.dispatch_locked(&mut i, now, &mut fx);
            (p, i.next_wakeup())
        };
        if p == Published::Enqueued {
            self.stats.published.fetch_add(1, Ordering::Relaxed);
        }
        let dead = std::mem::take(&mut fx.dead_letters);
        if !dead.is_empty()
            && let Some(v) = self.vhost.upgrade()
        {
            v.dead_letter(self, dead, Vec::new(), now);
        }
        self.finish(fx, deadline, now);
        p
    }

    /// Whether persistent messages sent here are written to disk.
    pub fn is_durable(&self) -> bool {
        self.durable.load(Ordering::Acquire)
    }

    fn store_poisoned(&self) -> bool {
        self.vhost
            .upgrade()
            .and_then(|v| v.persistence.clone())
            .is_some_and(|p| p.store.is_poisoned())
    }

    /// Pushes buffered log writes to the OS (before a group-commit sync).
    /// Returns `false` if it failed: records appended before are not on disk, so their
    /// confirms must be nacks.
    pub fn flush_log(&self) -> bool {
        let mut i = self.inner.lock();
        i.marks_pending = false;
        if let Some(log) = &mut i.log
            && let Err(e) = log.flush()
        {
            tracing::warn!(queue = %self.meta.name, "store flush failed: {e}");
            return false;
        }
        true
    }

    /// Marks the queue used now (resets the `x-expires` clock).
    pub fn touch(&self) {
        self.last_used.store(now_ms(), Ordering::Release);
    }

    /// For queues with an (effective) `x-expires`: deletes the queue once it has had no
    /// consumers and no `basic.get` or redeclare for that long. Called again after a policy
    /// change: a changed TTL replaces the running timer, an unchanged one keeps it.
    pub fn start_expiry(self: &Arc<Self>) {
        let ttl = self.inner.lock().state.args().expires;
        let generation = {
            let mut e = self.expiry.lock();
            if e.1 == ttl {
                return;
            }
            *e = (e.0 + 1, ttl);
            e.0
        };
        let Some(ttl) = ttl else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let me = Arc::downgrade(self);
        let current = move |q: &Queue| !q.is_deleted() && q.expiry.lock().0 == generation;
        rt.spawn(async move {
            loop {
                let due = match me.upgrade() {
                    Some(q) if current(&q) => q.last_used.load(Ordering::Acquire) + ttl,
                    _ => return,
                };
                tokio::time::sleep(std::time::Duration::from_millis(due.saturating_sub(now_ms()))).await;
                let Some(q) = me.upgrade() else { return };
                if !current(&q) {
                    return;
                }
                let idle = now_ms().saturating_sub(q.last_used.load(Ordering::Acquire)) >= ttl;
                if idle && q.counts().consumers == 0 {
                    if let Some(v) = q.vhost.upgrade() {
                        tracing::debug!(queue = %q.meta.name, "queue expired (x-expires)");
                        v.delete_queue(&q.meta.name);
                    }
                    return;
                }
            }
        });
    }

    /// Whether the queue was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Counts for declare-ok and the management API.
    pub fn counts(&self) -> QueueCounts {
        let i = self.inner.lock();
        QueueCounts {
            ready: i.state.message_count(),
            unacked: i.state.unacked_count(),
            consumers: i.state.consumer_count(),
            ready_bytes: i.state.ready_bytes(),
        }
    }

    /// Ready messages held in memory and ready messages kept only on disk (RabbitMQ's
    /// `messages_ready_ram` and `messages_paged_out`).
    pub fn memory_counts(&self) -> (u64, u64) {
        let i = self.inner.lock();
        (i.state.in_memory_ready() as u64, i.state.paged().count)
    }

    /// The consumers' registrations (for the management API's listings).
    pub fn consumer_specs(&self) -> Vec<ConsumerSpec> {
        self.inner.lock().state.consumers().cloned().collect()
    }

    /// Runs dispatch and sends the deliveries, under the lock.
    fn dispatch_locked(self: &Arc<Self>, inner: &mut Inner, now: u64, fx: &mut Effects) {
        loop {
            // Again at once when a gone consumer's messages were just returned.
            if self.dispatch_once(inner, now, fx) {
                continue;
            }
            // A short in-memory list with a backlog on disk: page in (off the lock: the
            // read's completion dispatches again).
            if !self.page_in(inner, fx) {
                break;
            }
        }
    }

    /// Starts the next page-in read on a blocking thread, if the queue wants one and none is
    /// running, and returns false: the queue goes on serving what it has in memory, and the
    /// read's completion ([`page_in_done`](Self::page_in_done)) takes the messages and
    /// dispatches. Without a runtime (offline tools) it reads here, under the lock, and
    /// returns whether messages came in.
    fn page_in(self: &Arc<Self>, inner: &mut Inner, fx: &mut Effects) -> bool {
        if inner.page_in_flight {
            return false;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return inner.refill(fx);
        };
        let Some((from, plan)) = inner.plan_page_in() else {
            return false;
        };
        inner.page_in_flight = true;
        let me = self.clone();
        rt.spawn(async move {
            let done = tokio::task::spawn_blocking(move || plan.read()).await.ok();
            me.page_in_done(from, done);
        });
        false
    }

    /// A page-in read finished (`None`: its thread failed): takes its messages if the queue
    /// still wants them, and dispatches (which plans the next read if the backlog goes on).
    fn page_in_done(self: &Arc<Self>, from: StorePos, done: Option<PageRead>) {
        let now = now_ms();
        let mut fx = Effects::default();
        let deadline = {
            let mut i = self.inner.lock();
            i.page_in_flight = false;
            if self.is_deleted() {
                return;
            }
            if let Some(done) = done {
                i.finish_page_in(from, done, &mut fx);
            }
            self.dispatch_locked(&mut i, now, &mut fx);
            i.flush_marks();
            i.next_wakeup()
        };
        self.finish(fx, deadline, now);
    }

    /// One dispatch pass; true if consumers found gone were dropped (dispatch again).
    fn dispatch_once(self: &Arc<Self>, inner: &mut Inner, now: u64, fx: &mut Effects) -> bool {
        if inner.replicator.as_ref().is_some_and(|r| !r.serving()) {
            return false;
        }
        let replicated = inner.replicator.is_some();
        if fx.deliveries.capacity() == 0 {
            fx.deliveries = std::mem::take(&mut inner.spare_deliveries);
        }
        let Inner {
            state,
            sinks,
            outgoing,
            ..
        } = inner;
        let me = Arc::downgrade(self);
        state.dispatch(
            now,
            |spec: &ConsumerSpec| {
                let Some(s) = sinks.get(&spec.channel) else {
                    return false;
                };
                if !s.conn.has_room() {
                    s.conn.wait_for_room(me.clone());
                    return false;
                }
                if !spec.no_ack && !s.channel.try_reserve() {
                    s.channel.wait_for_room(me.clone());
                    return false;
                }
                s.conn.reserve();
                true
            },
            fx,
        );
        let mut undeliverable = Vec::new();
        let mut again = false;
        let sent = fx.deliveries.len() as u32;
        for d in fx.deliveries.drain(..) {
            if replicated && let Some(s) = sinks.get(&d.channel) {
                // Sent once its Deliver record committed (apply_store hands it over).
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                outgoing.push((s.clone(), d));
                continue;
            }
            if let Err(d) = self.send(sinks, d) {
                undeliverable.push(d);
            }
        }
        if inner.spare_deliveries.capacity() == 0 {
            inner.spare_deliveries = std::mem::take(&mut fx.deliveries);
        }
        for d in undeliverable {
            inner.undeliverable(d, now, fx);
            again = true;
        }
        if inner.credit.delivered(sent) {
            inner.wake_publishers();
        }
        inner.apply_store();
        again
    }

    /// Sends one delivery to its consumer's connection; hands it back if that connection is
    /// gone.
    fn send(self: &Arc<Self>, sinks: &HashMap<ChannelKey, Sink>, d: Delivery) -> Result<(), Delivery> {
        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
        if d.consumer.is_none() {
            return Ok(());
        }
        match sinks.get(&d.channel) {
            Some(s) => s.conn.deliver(self.clone(), d),
            None => Ok(()),
        }
    }

    /// Handles dead letters and timers after an operation, outside the lock.
    fn finish(self: &Arc<Self>, fx: Effects, deadline: Option<u64>, now: u64) {
        if fx.dropped_by_limit > 0 {
            tracing::warn!(queue = %self.meta.name, n = fx.dropped_by_limit,
                "messages exceeded x-delivery-limit and the queue has no dead-letter exchange; dropped");
            if let Some(v) = self.vhost.upgrade() {
                v.metrics
                    .delivery_limit_dropped
                    .fetch_add(fx.dropped_by_limit, Ordering::Relaxed);
            }
        }
        if !fx.dead_letters.is_empty() || !fx.dead_letter_positions.is_empty() {
            match self.vhost.upgrade() {
                Some(v) => v.dead_letter(self, fx.dead_letters, fx.dead_letter_positions, now),
                None => self.ack_positions(&fx.dead_letter_positions),
            }
        }
        if let Some(at) = deadline {
            self.schedule(at);
        }
    }

    /// Arms the timer for `at` unless an earlier one is armed.
    fn schedule(self: &Arc<Self>, at: u64) {
        let cur = self.timer_at.load(Ordering::Acquire);
        if cur != 0 && cur <= at {
            return;
        }
        if self
            .timer_at
            .compare_exchange(cur, at, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let me = Arc::downgrade(self);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let wait = at.saturating_sub(now_ms());
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            if let Some(q) = me.upgrade() {
                let _ = q
                    .timer_at
                    .compare_exchange(at, 0, Ordering::AcqRel, Ordering::Acquire);
                q.tick();
            }
        });
    }

    /// Timer work: due retries back to ready, expiries, then dispatch.
    pub fn tick(self: &Arc<Self>) {
        if self.is_deleted() {
            return;
        }
        let now = now_ms();
        let mut fx = Effects::default();
        let deadline = {
            let mut i = self.inner.lock();
            i.state.tick(now, &mut fx);
            self.dispatch_locked(&mut i, now, &mut fx);
            i.flush_marks();
            i.next_wakeup()
        };
        self.finish(fx, deadline, now);
    }

    /// Enqueues a message and dispatches. `payload` is the encoded message when it is
    /// persistent: a durable queue writes it to its log. Returns whether it was written (if
    /// that failed the queue did not take the message) and whether the publisher took the
    /// queue's last ingest credit.
    pub fn publish(
        self: &Arc<Self>,
        msg: MessageRef,
        ttl: Option<u64>,
        now: u64,
        payload: Option<&[u8]>,
    ) -> (Published, Stored, bool) {
        let (p, persisted, out_of_credit, dead, positions) = self.publish_collect(msg, ttl, now, payload);
        if !dead.is_empty() || !positions.is_empty() {
            match self.vhost.upgrade() {
                Some(v) => v.dead_letter(self, dead, positions, now),
                None => self.ack_positions(&positions),
            }
        }
        (p, persisted, out_of_credit)
    }

    /// Takes one ingest credit for a message handed to a quorum queue's replicator (it is
    /// enqueued once committed): true if that was the last one, and the publisher should park
    /// ([`Queue::flow_park`]) as for a classic queue. Taken at hand-over, not at commit, so the
    /// messages proposed but not yet committed count against the window too.
    pub fn take_credit(&self, now: u64) -> bool {
        let mut i = self.inner.lock();
        let has_consumers = i.state.consumer_count() > 0;
        i.credit.take(has_consumers, now) == Take::Exhausted && !i.credit.has_credit()
    }

    /// Credit flow across a cluster link: the answer to a forwarded batch that took this
    /// queue's last credit waits here ([`crate::forward`]). Unlike [`Queue::flow_park`], which
    /// a connection calls right after its read batch, it is called once the batch's messages
    /// are stored or committed, when deliveries meanwhile may have given a little credit back;
    /// so it waits for half a window, as a parked connection is woken, or for one judging
    /// period of the slow-consumer grace. Returns None when the answer may go, else registers
    /// `conn` to be woken and returns when to look again (ms).
    pub fn link_park(&self, conn: &Arc<ConnShared>, now: u64) -> Option<u64> {
        let mut i = self.inner.lock();
        if self.is_deleted() || i.state.consumer_count() == 0 {
            i.refill_credit();
            return None;
        }
        let half = (i.credit.window() / 2).max(1);
        if i.credit.available() >= half || i.credit.grace(now) {
            return None;
        }
        let at = i.credit.grace_at().unwrap_or(now + i.credit.grace_ms());
        if i.credit.has_credit() && now >= at {
            return None;
        }
        i.park(conn);
        Some(at)
    }

    /// Credit flow: a publisher that took this queue's last credit parks here. Returns None if
    /// the queue has credit (again, or by its slow-consumer grace), else registers `conn` to be
    /// woken ([`ConnShared::flow_resume`]) and returns when the grace would grant anyway (ms).
    pub fn flow_park(&self, conn: &Arc<ConnShared>, now: u64) -> Option<u64> {
        let mut i = self.inner.lock();
        if self.is_deleted() || i.state.consumer_count() == 0 {
            i.refill_credit();
            return None;
        }
        if i.credit.has_credit() || i.credit.grace(now) {
            return None;
        }
        i.park(conn);
        i.credit.grace_at()
    }

    /// Gives a non-durable queue whose backlog outgrew memory a scratch log, so the rest of the
    /// backlog waits on disk (transient messages: written, never synced, wiped at restart).
    fn open_scratch(&self, i: &mut Inner) {
        let Some(v) = self.vhost.upgrade() else { return };
        let Some(p) = &v.persistence else { return };
        let name = format!(
            "{}-{}",
            crate::persist::queue_dir(&v.name, &self.meta.name),
            self.meta.id.0
        );
        match p.scratch.open_queue(&name) {
            Ok((log, _)) => {
                tracing::info!(queue = %self.meta.name, "backlog beyond the in-memory budget: paging to disk");
                i.log = Some(log);
                i.scratch = Some(name);
            }
            Err(e) => tracing::warn!(queue = %self.meta.name, "cannot open a scratch log: {e}"),
        }
    }

    /// Removes dead-lettered messages from the log once their targets hold them (at-least-once
    /// dead-lettering; see `VHost::dead_letter`).
    pub fn ack_positions(&self, positions: &[StorePos]) {
        if positions.is_empty() {
            return;
        }
        if let Some(log) = &mut self.inner.lock().log {
            for p in positions {
                if let Err(e) = log.ack(unpack(*p)) {
                    tracing::warn!(queue = %self.meta.name, "store ack failed: {e}");
                }
            }
            // To the OS now (not synced): a restart after a crash redelivers fewer of them.
            if let Err(e) = log.flush() {
                tracing::warn!(queue = %self.meta.name, "store flush failed: {e}");
            }
        }
    }

    /// Enqueues and dispatches, returning whether that took the queue's last ingest credit
    /// (the publisher should park: [`Queue::flow_park`]), and dead letters (and, for an
    /// at-least-once queue, their store positions) for the caller to route.
    pub fn publish_collect(
        self: &Arc<Self>,
        msg: MessageRef,
        ttl: Option<u64>,
        now: u64,
        payload: Option<&[u8]>,
    ) -> (
        Published,
        Stored,
        bool,
        Vec<(MessageRef, DeadReason)>,
        Vec<StorePos>,
    ) {
        if self.is_deleted() {
            return (
                Published::Enqueued,
                Stored::NotNeeded,
                false,
                Vec::new(),
                Vec::new(),
            );
        }
        if self.is_replicated() {
            // Unconfirmed (a dead letter, a management publish): replicated, then enqueued.
            return match self.replicator() {
                Some(r) => {
                    r.publish(msg, ttl, None);
                    (
                        Published::Enqueued,
                        Stored::NotNeeded,
                        false,
                        Vec::new(),
                        Vec::new(),
                    )
                }
                None => (
                    Published::Rejected,
                    Stored::NotNeeded,
                    false,
                    Vec::new(),
                    Vec::new(),
                ),
            };
        }
        let mut fx = Effects::default();
        let (p, persisted, out_of_credit, deadline) = {
            let mut i = self.inner.lock();
            let seq = i.state.next_seq();
            // A duplicate (x-deduplication-window) is not written to disk.
            let dup = i.state.is_duplicate(&msg, now);
            if i.log.is_none() && !dup && i.state.is_paging() {
                self.open_scratch(&mut i);
            }
            // While the queue pages, a transient message goes to the log too (behind the
            // backlog, in order); recovery drops it.
            let transient;
            let durable_copy = payload.is_some();
            let payload = match payload {
                None if !dup && i.log.is_some() && i.state.is_paging() => {
                    transient = crate::persist::encode_message(&msg, now);
                    Some(&transient[..])
                }
                p => p,
            };
            let pos = match (&mut i.log, payload) {
                (Some(log), Some(bytes)) if !dup => match log.append(seq, bytes) {
                    Ok(pos) => Some(pack(pos)),
                    // A persistent message the log cannot hold is not taken: accepting it
                    // in memory only would lose it at the next restart (and its publisher
                    // would have been told it is safe). The caller nacks it.
                    Err(e) if durable_copy => {
                        tracing::warn!(queue = %self.meta.name, "persistent message refused: store append failed: {e}");
                        return (Published::Rejected, Stored::Failed, false, Vec::new(), Vec::new());
                    }
                    Err(e) => {
                        tracing::warn!(queue = %self.meta.name, "store append failed (transient message kept in memory): {e}");
                        None
                    }
                },
                _ => None,
            };
            let p = i.state.publish_at(msg, now, ttl, pos, &mut fx);
            if p != Published::Enqueued
                && let (Some(log), Some(pos)) = (&mut i.log, pos)
            {
                let _ = log.ack(unpack(pos));
            }
            let has_consumers = i.state.consumer_count() > 0;
            let out_of_credit =
                p == Published::Enqueued && i.credit.take(has_consumers, now) == Take::Exhausted;
            self.dispatch_locked(&mut i, now, &mut fx);
            let stored = if durable_copy && pos.is_some() && p == Published::Enqueued {
                Stored::Written
            } else {
                // No log flush follows at the end of the publisher's batch.
                i.flush_marks();
                Stored::NotNeeded
            };
            (
                p,
                stored,
                out_of_credit && !i.credit.has_credit(),
                i.next_wakeup(),
            )
        };
        if p == Published::Enqueued {
            self.stats.published.fetch_add(1, Ordering::Relaxed);
        }
        if p == Published::Duplicate {
            self.stats.duplicates_dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(v) = self.vhost.upgrade() {
                v.metrics.duplicates_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        let dead = std::mem::take(&mut fx.dead_letters);
        let positions = std::mem::take(&mut fx.dead_letter_positions);
        self.finish(fx, deadline, now);
        (p, persisted, out_of_credit, dead, positions)
    }

    /// Runs dispatch (after room appeared on a connection or channel).
    pub fn dispatch(self: &Arc<Self>) {
        let now = now_ms();
        let mut fx = Effects::default();
        let deadline = {
            let mut i = self.inner.lock();
            self.dispatch_locked(&mut i, now, &mut fx);
            i.flush_marks();
            i.next_wakeup()
        };
        self.finish(fx, deadline, now);
    }

    /// basic.consume: registers (with `sink`, its channel's delivery route) and dispatches.
    pub fn add_consumer(self: &Arc<Self>, spec: ConsumerSpec, sink: Sink, vhost: &str) -> AmqpResult<()> {
        let now = now_ms();
        let mut fx = Effects::default();
        let deadline = {
            let mut i = self.inner.lock();
            let channel = spec.channel;
            i.state.add_consumer(spec, vhost)?;
            i.sinks.insert(channel, sink);
            self.touch();
            self.had_consumer.store(true, Ordering::Release);
            self.dispatch_locked(&mut i, now, &mut fx);
            i.flush_marks();
            i.next_wakeup()
        };
        self.finish(fx, deadline, now);
        Ok(())
    }

    /// basic.cancel / channel close: removes a consumer. Returns whether the queue is now an
    /// auto-delete queue that lost its last consumer (the caller deletes it).
    pub fn remove_consumer(self: &Arc<Self>, key: ConsumerKey) -> bool {
        self.remove_consumer_inner(key, true)
    }

    /// Removes a consumer without dispatching: its channel is closing and is about to requeue
    /// its unacked messages, which must reach the next consumer (single active consumer,
    /// message groups) before the messages behind them. The caller dispatches afterwards
    /// (`release_channel` or `dispatch`).
    pub fn detach_consumer(self: &Arc<Self>, key: ConsumerKey) -> bool {
        self.remove_consumer_inner(key, false)
    }

    fn remove_consumer_inner(self: &Arc<Self>, key: ConsumerKey, dispatch: bool) -> bool {
        let now = now_ms();
        let mut fx = Effects::default();
        let (left, deadline) = {
            let mut i = self.inner.lock();
            if let Some(spec) = i.state.remove_consumer(key)
                && !i.state.consumers().any(|c| c.channel == spec.channel)
            {
                i.sinks.remove(&spec.channel);
            }
            // Single active consumer: the next one may take over.
            if dispatch {
                self.dispatch_locked(&mut i, now, &mut fx);
                i.flush_marks();
            }
            if i.state.consumer_count() == 0 {
                // Nobody to pace the publishers by: the queue absorbs again.
                i.refill_credit();
            }
            (i.state.consumer_count(), i.next_wakeup())
        };
        self.touch();
        self.finish(fx, deadline, now);
        self.meta.auto_delete && left == 0 && self.had_consumer.load(Ordering::Acquire)
    }

    /// basic.get. When the in-memory part of a backlog is empty, the next page is read for
    /// this get without the queue's lock, on this thread (a blocking section for the runtime:
    /// its other tasks move to other workers); a read that lost the race to another one (a
    /// consumer's read-ahead) is dropped and the get tries again, a few times at most.
    pub fn get(self: &Arc<Self>, channel: ChannelKey, no_ack: bool) -> Option<(Delivery, u32)> {
        let now = now_ms();
        self.touch();
        let mut fx = Effects::default();
        let mut reads = 0;
        let (r, deadline) = loop {
            let mut i = self.inner.lock();
            let r = i.state.get(channel, no_ack, now, &mut fx);
            i.apply_store();
            if r.is_none()
                && reads < 3
                && let Some((from, plan)) = i.plan_page_in()
            {
                drop(i);
                reads += 1;
                let done = read_blocking(plan);
                self.inner.lock().finish_page_in(from, done, &mut fx);
                continue;
            }
            if r.is_some() && i.credit.delivered(1) {
                i.wake_publishers();
            }
            // Consumers take what a read brought in beyond this get; a backlog reads ahead.
            self.dispatch_locked(&mut i, now, &mut fx);
            i.flush_marks();
            break (r, i.next_wakeup());
        };
        if r.is_some() {
            self.stats.delivered.fetch_add(1, Ordering::Relaxed);
        }
        self.finish(fx, deadline, now);
        r
    }

    /// Acks several messages and dispatches once.
    pub fn ack(self: &Arc<Self>, seqs: &[u64]) {
        let now = now_ms();
        let mut fx = Effects::default();
        let deadline = {
            let mut i = self.inner.lock();
            for s in seqs {
                if i.state.ack(*s) {
                    self.stats.acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.dispatch_locked(&mut i, now, &mut fx);
            i.flush_marks();
            i.next_wakeup()
        };
        self.finish(fx, deadline, now);
    }

    /// Rejects several messages (requeue or dead-letter) and dispatches once.
    pub fn reject(self: &Arc<Self>, seqs: &[u64], requeue: Option<Return>) {
        let now = now_ms();
        let mut fx = Effects::default();
        let deadline = {
            let mut i = self.inner.lock();
            for s in seqs {
                i.state.reject(*s, requeue, now, &mut fx);
            }
            self.dispatch_locked(&mut i, now, &mut fx);
            i.flush_marks();
            i.next_wakeup()
        };
        self.finish(fx, deadline, now);
    }

    /// Returns a delivery that never reached the client (unless its channel's release has
    /// returned it already).
    pub fn unsend(self: &Arc<Self>, d: &Delivery) {
        let now = now_ms();
        let mut fx = Effects::default();
        let deadline = {
            let mut i = self.inner.lock();
            i.state.unsend(d.seq, d.consumer, d.channel);
            self.dispatch_locked(&mut i, now, &mut fx);
            i.flush_marks();
            i.next_wakeup()
        };
        self.finish(fx, deadline, now);
    }

    /// Sends a quorum queue's deliveries whose `Deliver` record committed, in order; those
    /// whose connection is gone go back to the queue as [`Inner::undeliverable`].
    pub fn send_committed(self: &Arc<Self>, out: Vec<(Sink, Delivery)>) {
        let gone: Vec<Delivery> = out
            .into_iter()
            .filter_map(|(s, d)| s.conn.deliver(self.clone(), d).err())
            .collect();
        if gone.is_empty() {
            return;
        }
        let now = now_ms();
        let mut fx = Effects::default();
        let deadline = {
            let mut i = self.inner.lock();
            for d in gone {
                i.undeliverable(d, now, &mut fx);
            }
            self.dispatch_locked(&mut i, now, &mut fx);
            i.next_wakeup()
        };
        self.finish(fx, deadline, now);
    }

    /// Requeues everything a channel holds unacked.
    pub fn release_channel(self: &Arc<Self>, channel: ChannelKey, how: Return) {
        let now = now_ms();
        let mut fx = Effects::default();
        let deadline = {
            let mut i = self.inner.lock();
            i.state.release_channel(channel, how, now, &mut fx);
            self.dispatch_locked(&mut i, now, &mut fx);
            i.flush_marks();
            i.next_wakeup()
        };
        self.finish(fx, deadline, now);
    }

    /// queue.purge.
    pub fn purge(&self) -> u32 {
        let mut i = self.inner.lock();
        let n = i.state.purge();
        i.refill_credit();
        i.apply_store();
        // The segment being written goes too if the purge emptied it: on a full disk that is
        // the space that lets the store recover.
        if let Some(log) = &mut i.log {
            match log.release_empty_writer() {
                Ok(_) if log.buffered_bytes() > 0 && self.store_poisoned() => tracing::warn!(
                    queue = %self.meta.name,
                    purged = n,
                    "purged while the store cannot write: emptied segments are removed; the other acks wait in memory until it recovers (a restart before that redelivers those messages)"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(queue = %self.meta.name, "cannot remove the purged segment: {e}"),
            }
        }
        n
    }

    /// Marks the queue deleted and cancels its consumers. Returns the ready count.
    pub fn mark_deleted(self: &Arc<Self>) -> u32 {
        self.deleted.store(true, Ordering::Release);
        let (count, sinks) = {
            let mut i = self.inner.lock();
            let count = i.state.message_count();
            let consumers: Vec<(ConsumerKey, ConsumerSpec)> =
                i.state.consumers().map(|c| (c.key, c.clone())).collect();
            for (k, _) in &consumers {
                i.state.remove_consumer(*k);
            }
            let sinks: Vec<(ConsumerSpec, Sink)> = consumers
                .into_iter()
                .filter_map(|(_, spec)| i.sinks.get(&spec.channel).map(|s| (spec, s.clone())))
                .collect();
            i.sinks.clear();
            i.state.purge();
            i.refill_credit();
            let _ = i.state.take_store_effects();
            if let Some(log) = i.log.take() {
                let _ = log.close();
            }
            if let Some(name) = i.scratch.take()
                && let Some(v) = self.vhost.upgrade()
                && let Some(p) = &v.persistence
                && let Err(e) = p.scratch.delete_queue(&name)
            {
                tracing::warn!(queue = %self.meta.name, "cannot delete scratch log: {e}");
            }
            (count, sinks)
        };
        for (spec, sink) in sinks {
            sink.conn
                .consumer_cancelled(spec.channel, spec.tag.clone(), spec.key);
        }
        count
    }

    /// Policies: makes `args` (the declared arguments merged with the queue's policy) the
    /// queue's effective arguments, live. New length limits trim the queue at once (dead
    /// letters are routed), a new `x-expires` re-arms the expiry timer, and the rest applies
    /// from the next message concerned (see `QueueState::reconfigure`). `meta` keeps the
    /// declared arguments (redeclare equivalence, listings). Nothing happens if `args` are
    /// the current ones.
    pub fn apply_effective_args(self: &Arc<Self>, args: warren_core::args::QueueArgs) {
        if self.is_deleted() {
            return;
        }
        let now = now_ms();
        let mut fx = Effects::default();
        let deadline = {
            let mut i = self.inner.lock();
            if *i.state.args() == args {
                return;
            }
            i.state.reconfigure(args, now, &mut fx);
            self.dispatch_locked(&mut i, now, &mut fx);
            i.flush_marks();
            i.next_wakeup()
        };
        self.finish(fx, deadline, now);
        self.start_expiry();
    }

    /// The effective dead-letter exchange and routing key (declared or from a policy).
    pub fn dead_letter_target(&self) -> Option<(warren_codec::ShortStr, Option<warren_codec::ShortStr>)> {
        let i = self.inner.lock();
        let a = i.state.args();
        let x = a.dead_letter_exchange.clone()?;
        Some((x, a.dead_letter_routing_key.clone()))
    }
}

#[cfg(test)]
mod tests {
    //! Paging a backlog in from the log without the queue's lock.
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use warren_codec::{BasicProperties, FieldTable, ShortStr};
    use warren_core::Message;
    use warren_core::args::QueueArgs;
    use warren_core::ids::ConnId;
    use warren_core::topology::{QueueId, QueueMeta};
    use warren_store::{FaultyFs, StdFs, Store, StoreOptions};

    use super::*;

    /// A durable queue on a store whose reads can be held, with `n` persistent messages
    /// published (bodies "0", "1", …): the first `READY_IN_MEMORY` in memory, the rest on disk.
    fn backlog(n: u64) -> (Arc<Queue>, FaultyFs, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("warren-pagein-{}-{n}-{}", std::process::id(), now_ms()));
        let fs = FaultyFs::new(Arc::new(StdFs));
        let store = Store::open(
            &dir,
            StoreOptions {
                fs: Arc::new(fs.clone()),
                fsync: false,
                ..StoreOptions::default()
            },
        )
        .unwrap();
        let (log, recovered) = store.open_queue("q").unwrap();
        assert!(recovered.is_empty());
        let meta = QueueMeta {
            id: QueueId(1),
            name: ShortStr::from("q"),
            durable: true,
            exclusive_owner: None,
            auto_delete: false,
            arguments: FieldTable::default(),
            args: QueueArgs::default(),
        };
        let q = Queue::new(meta, Weak::new());
        q.attach_log(log, Vec::new(), Paged::default(), 0);
        let props = BasicProperties {
            delivery_mode: Some(2),
            ..BasicProperties::default()
        };
        for k in 0..n {
            let msg = Arc::new(Message::new("", "q", props.clone(), Bytes::from(k.to_string())));
            let payload = crate::persist::encode_message(&msg, 0);
            let (p, stored, _) = q.publish(msg, None, 0, Some(&payload));
            assert_eq!((p, stored), (Published::Enqueued, Stored::Written));
        }
        assert_eq!(
            q.memory_counts(),
            (READY_IN_MEMORY as u64, n - READY_IN_MEMORY as u64)
        );
        (q, fs, dir)
    }

    /// Releases held reads when a test ends, passed or failed (a read left blocked would keep
    /// the runtime's shutdown waiting for its thread).
    struct Released(FaultyFs);

    impl Drop for Released {
        fn drop(&mut self) {
            self.0.release_reads();
        }
    }

    fn get_body(q: &Arc<Queue>) -> Option<u64> {
        let (d, _) = q.get(ChannelKey::new(ConnId(1), 1), true)?;
        Some(std::str::from_utf8(&d.msg.body).unwrap().parse().unwrap())
    }

    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// While a page-in read is held in the filesystem, the queue keeps serving what it has in
    /// memory (the read does not hold the queue's lock); once released, the backlog comes in
    /// behind, in order, each message once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queue_serves_from_memory_while_its_backlog_is_read() {
        let n = READY_IN_MEMORY as u64 * 3;
        let (q, fs, dir) = backlog(n);
        let _release = Released(fs.clone());
        fs.hold_reads();
        let mut got = Vec::new();
        // Down to half the budget: the read-ahead starts and blocks in the filesystem.
        while !q.inner.lock().page_in_flight {
            got.push(get_body(&q).expect("in memory"));
            assert!(got.len() <= READY_IN_MEMORY / 2 + 1, "no read-ahead was started");
        }
        wait_until("the read-ahead to reach the filesystem", || {
            fs.reads_waiting() == 1
        });
        // The rest of what is in memory is served while the read waits.
        while q.memory_counts().0 > 0 {
            got.push(get_body(&q).expect("in memory"));
        }
        assert_eq!(got.len(), READY_IN_MEMORY);
        assert_eq!(fs.reads_waiting(), 1);
        fs.release_reads();
        wait_until("the read-ahead to land", || q.memory_counts().0 > 0);
        while let Some(b) = get_body(&q) {
            got.push(b);
        }
        assert_eq!(got, (0..n).collect::<Vec<_>>());
        assert_eq!(q.memory_counts(), (0, 0));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A get that finds memory empty reads the next page itself; the read-ahead that was
    /// running from the same position lands afterwards and is dropped, not taken twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_that_lost_the_race_is_dropped() {
        let n = READY_IN_MEMORY as u64 * 2;
        let (q, fs, dir) = backlog(n);
        let _release = Released(fs.clone());
        fs.hold_reads();
        let mut got = Vec::new();
        while q.memory_counts().0 > 0 {
            got.push(get_body(&q).expect("in memory"));
        }
        wait_until("the read-ahead", || fs.reads_waiting() == 1);
        // This get plans its own read from the same position; both wait in the filesystem.
        let getter = {
            let q = q.clone();
            std::thread::spawn(move || get_body(&q))
        };
        wait_until("the get's own read", || fs.reads_waiting() == 2);
        fs.release_reads();
        got.push(getter.join().unwrap().expect("read by the get"));
        wait_until("the read-ahead to finish", || !q.inner.lock().page_in_flight);
        while let Some(b) = get_body(&q) {
            got.push(b);
        }
        assert_eq!(got, (0..n).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A priority queue (which never pages) reopened with more messages than the in-memory
    /// budget holds them all: every one is served after the restart, highest priority first,
    /// in publish order within a priority.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_priority_queue_recovers_a_backlog_larger_than_the_paging_budget() {
        let dir = std::env::temp_dir().join(format!("warren-prio-{}-{}", std::process::id(), now_ms()));
        let n = READY_IN_MEMORY as u64 + 500;
        let args = QueueArgs {
            max_priority: Some(5),
            ..QueueArgs::default()
        };
        let meta = QueueMeta {
            id: QueueId(1),
            name: ShortStr::from("pq"),
            durable: true,
            exclusive_owner: None,
            auto_delete: false,
            arguments: FieldTable::default(),
            args,
        };
        let opts = || StoreOptions {
            fsync: false,
            ..StoreOptions::default()
        };
        {
            let store = Store::open(&dir, opts()).unwrap();
            let q = Queue::new(meta.clone(), Weak::new());
            q.open_log(&store, "pq");
            for k in 0..n {
                let props = BasicProperties {
                    delivery_mode: Some(2),
                    priority: Some((k % 2) as u8 * 5),
                    ..BasicProperties::default()
                };
                let msg = Arc::new(Message::new("", "pq", props, Bytes::from(k.to_string())));
                let payload = crate::persist::encode_message(&msg, 0);
                let (p, stored, _) = q.publish(msg, None, 0, Some(&payload));
                assert_eq!((p, stored), (Published::Enqueued, Stored::Written));
            }
            assert_eq!(q.memory_counts(), (n, 0), "a priority queue holds its backlog");
        }
        let store = Store::open(&dir, opts()).unwrap();
        let q = Queue::new(meta, Weak::new());
        q.open_log(&store, "pq");
        let mut got = Vec::new();
        while let Some(b) = get_body(&q) {
            got.push(b);
        }
        assert_eq!(got.len() as u64, n, "every message is served after the restart");
        let high = (0..n).filter(|k| k % 2 == 1);
        let low = (0..n).filter(|k| k % 2 == 0);
        assert_eq!(got, high.chain(low).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(dir);
    }
}
