//! Quorum queues (issue 20): declaring a quorum queue in a cluster starts one Raft group for
//! it ([`warren_cluster::groups`]) on the members chosen from the declaration, each member
//! holding a [`Replica`] of the queue's replicated state ([`warren_core::quorum::QuorumState`]);
//! deleting the queue stops the group and deletes its files. The management API shows the
//! group's `leader` and `members` (and on the leader's node `online` and `member_lag`).
//!
//! # Who serves the queue
//!
//! The node of the group's current leader is the queue's home: it holds the queue's handle,
//! and publishes and consumers on other nodes are forwarded to it ([`crate::forward`]). Each
//! member watches its group's leader ([`watch`]): the new leader's node commits a
//! [`Command::ReleaseAll`] (so it has applied everything committed before, and messages that
//! were out with consumers of the old leader's node are ready again, flagged redelivered),
//! rebuilds the handle from its replica ([`crate::queue::Queue::adopt_replica`]) and serves;
//! every other member drops its handle and forwards to the leader's node
//! ([`crate::vhost::VHost::cede_queue`]). Before acting on a change the watcher stops the old
//! handle's proposer ([`Gate`]); a proposer whose batch failed makes the watcher take over again
//! from the replica, so a handle never misses what its group committed.
//!
//! # What goes through the group
//!
//! On the serving node a [`Proposer`] task takes the queue's work in order — publishes,
//! deliveries, settlements, returns — and commits what waited meanwhile as one
//! [`Command::Batch`] log entry (one Raft round, each member fsyncs it before acknowledging),
//! with a few batches in flight at once (pipelined: answered and acted on in log order). A published message is enqueued only once committed, and its publisher
//! confirmed then (nacked if the group cannot commit within the cluster operation timeout).
//! A delivery goes out only once its `Deliver` record committed, so a leader cut off from its
//! majority delivers nothing; state changes that did not commit are proposed again until they
//! do or another node leads (the proposer is then deposed and the queue stops dispatching).
//!
//! # Membership changes
//!
//! A node added to a group later ([`join`], `rabbitmq-queues add_member` / `grow`) starts an
//! empty member, replica and watcher, then the leader adds it ([`crate::quorum_membership`]);
//! a removed one ([`leave`]) stops its member, deletes its files and forwards to the leader.
//!
//! # Paging
//!
//! A serving handle pages like any queue, reading its paged messages back from this node's
//! replica ([`Replica::page`]); each replica keeps records beyond a budget on disk
//! ([`crate::quorum_bodies`]). See docs/clustering.md, "Paging a quorum queue's backlog".
//!
//! Nodes outside a group (a cluster larger than the group) learn of a new leader only when
//! forwarding to the old one fails ([`crate::forward`]'s `follow` module).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use warren_cluster::{Apply, Cluster, ClusterError};
use warren_core::MessageRef;
use warren_core::queue::{Delivery, Entry, Paged, Published, StorePos};
use warren_core::quorum::{Bodies, Command, QuorumState};

use crate::forward::Host;
use crate::queue::{Queue, ReplicaPage, ReplicaReader, Replicator, Sink, VerdictFn};
use crate::quorum_bodies::ReplicaBodies;
use crate::util::now_ms;

/// RabbitMQ's default quorum queue group size.
pub const DEFAULT_GROUP_SIZE: usize = 3;

/// The id of the Raft group of quorum queue `name` in `vhost` (lengths first: both names may
/// hold any character).
pub fn group_id(vhost: &str, name: &str) -> String {
    format!("qq:{}:{}:{vhost}{name}", vhost.len(), name.len())
}

/// Polls `ready` every 2 ms until it holds or `deadline` passes: how a request waits for a
/// quorum queue's member on this node to become servable (elected and holding the replica).
/// Group elections have no completion event to await, and the wait lasts a few milliseconds.
pub async fn wait_until(deadline: tokio::time::Instant, mut ready: impl FnMut() -> bool) {
    while !ready() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The members of a new queue's group: `size` nodes (at least one, at most all), starting with
/// the declaring node and then the next ones by name, wrapping around. Every node computes it
/// from the same committed declaration and membership, so all agree.
pub fn choose_members(declaring: &str, mut nodes: Vec<String>, size: usize) -> Vec<String> {
    if !nodes.iter().any(|n| n == declaring) {
        nodes.push(declaring.to_string());
    }
    nodes.sort();
    nodes.dedup();
    let start = nodes.iter().position(|n| n == declaring).unwrap_or(0);
    let size = size.clamp(1, nodes.len());
    let mut members: Vec<String> = (0..size)
        .map(|i| nodes[(start + i) % nodes.len()].clone())
        .collect();
    members.sort();
    members
}

/// The `balanced` leader locator's choice among a new group's `members`, given how many
/// groups each node leads (`led`, as this node sees them): the member leading the fewest,
/// the declaring node on a tie, then by name (RabbitMQ 3.10 picks the node with the fewest
/// leaders below 1,000 queues, a random one above). Each member computes it from its own view
/// and initialises the group at once if it is the choice: if two views differ both do (openraft
/// accepts the same initial membership from each) and one wins the election; if none picks
/// itself, a member initialises after an election timeout.
pub fn least_leaders(led: &HashMap<String, usize>, members: &[String], declaring: &str) -> String {
    members
        .iter()
        .min_by_key(|m| (led.get(*m).copied().unwrap_or(0), *m != declaring, *m))
        .cloned()
        .unwrap_or_else(|| declaring.to_string())
}

/// One member's copy of a quorum queue's replicated state: the group's applier. Its records
/// are kept by [`ReplicaBodies`] (in memory, then on disk).
#[derive(Debug, Default)]
pub struct Replica {
    inner: Mutex<ReplicaState>,
}

#[derive(Debug, Default)]
struct ReplicaState {
    state: QuorumState,
    bodies: ReplicaBodies,
    /// Committed messages the serving handle did not take (overflow, duplicates), until their
    /// `Settle` commits: page-ins skip them.
    refused: HashSet<u64>,
}

impl ReplicaState {
    /// Message `id` as a queue entry, with its enqueue time; `None` if its record cannot be
    /// read back or decoded (logged).
    fn entry(&mut self, id: u64) -> Option<(Entry, Option<u64>)> {
        let m = self.state.messages_from(id).next().filter(|(i, _)| *i == id)?.1;
        let (redelivered, delivery_count) = (m.redelivered, m.delivery_count);
        let Some(bytes) = self.bodies.read(id, &m.record) else {
            tracing::error!(id, "unreadable replicated message skipped");
            return None;
        };
        let Some((msg, enqueued_at)) = crate::persist::decode_message(&bytes) else {
            tracing::error!(id, "undecodable replicated message skipped");
            return None;
        };
        let e = Entry {
            seq: id,
            msg: Arc::new(msg),
            redelivered,
            delivery_count,
            acquired_count: delivery_count,
            expires_at: None,
            pos: Some(StorePos(id)),
        };
        Some((e, enqueued_at))
    }
}

impl Replica {
    /// An empty replica whose records `bodies` keeps.
    pub fn new(bodies: ReplicaBodies) -> Replica {
        Replica {
            inner: Mutex::new(ReplicaState {
                bodies,
                ..ReplicaState::default()
            }),
        }
    }

    /// Messages in this replica (ready and unacked).
    pub fn len(&self) -> usize {
        self.inner.lock().state.len()
    }

    /// No messages.
    pub fn is_empty(&self) -> bool {
        self.inner.lock().state.is_empty()
    }

    /// Record bytes held in memory, and records kept on disk.
    pub fn usage(&self) -> (u64, u64) {
        self.inner.lock().bodies.usage()
    }

    /// Records read back from the group's log or snapshot because this node's scratch copy
    /// failed.
    pub fn recovered(&self) -> u64 {
        self.inner.lock().bodies.recovered()
    }
}

impl ReplicaReader for Replica {
    /// What a new serving handle starts from: the first messages as entries, while fewer
    /// than `max_msgs` and `max_bytes` of bodies; the rest counted as paged (their bytes
    /// estimated by record length), read later with [`page`](Self::page); and the highest id.
    fn head(&self, max_msgs: usize, max_bytes: u64) -> (ReplicaPage, Paged, u64) {
        let mut r = self.inner.lock();
        let max_id = r.state.messages().last().map_or(0, |(id, _)| id);
        let ids: Vec<u64> = r.state.messages().map(|(id, _)| id).collect();
        let mut page = ReplicaPage::default();
        let (mut bytes, mut paged) = (0u64, Paged::default());
        for id in ids {
            if page.entries.len() < max_msgs && bytes < max_bytes {
                match r.entry(id) {
                    Some(e) => {
                        bytes += e.0.msg.size();
                        page.entries.push(e);
                    }
                    None => page.undecodable.push(id),
                }
                continue;
            }
            let len = r
                .state
                .messages_from(id)
                .next()
                .map_or(0, |(_, m)| m.record.len());
            if paged.count == 0 {
                paged.from = StorePos(id);
            }
            paged.count += 1;
            paged.bytes += len;
        }
        page.next = paged.from.0;
        (page, paged, max_id)
    }

    /// Up to `count` ready messages from id `from` on (about `max_bytes` of bodies, at least
    /// one), skipping those the serving handle refused: a handle's page-in.
    fn page(&self, from: u64, count: usize, max_bytes: u64) -> ReplicaPage {
        let mut r = self.inner.lock();
        let ids: Vec<u64> = r
            .state
            .messages_from(from)
            .filter(|(id, m)| !m.unacked && !r.refused.contains(id))
            .map(|(id, _)| id)
            .take(count)
            .collect();
        let mut page = ReplicaPage {
            next: from,
            ..ReplicaPage::default()
        };
        let mut bytes = 0u64;
        for id in ids {
            if bytes >= max_bytes && !page.entries.is_empty() {
                break;
            }
            match r.entry(id) {
                Some(e) => {
                    bytes += e.0.msg.size();
                    page.entries.push(e);
                }
                None => page.undecodable.push(id),
            }
            page.next = id + 1;
        }
        page
    }

    /// The ids of up to `count` ready messages from `from` on that the serving handle holds
    /// as paged (skipping refused ones): what a purge of the paged messages settles.
    fn paged_ids(&self, from: u64, count: u64) -> Vec<u64> {
        let r = self.inner.lock();
        r.state
            .messages_from(from)
            .filter(|(id, m)| !m.unacked && !r.refused.contains(id))
            .map(|(id, _)| id)
            .take(usize::try_from(count).unwrap_or(usize::MAX))
            .collect()
    }

    /// The serving handle did not take committed message `id` (its `Settle` follows).
    fn refuse(&self, id: u64) {
        let mut r = self.inner.lock();
        if r.state.contains(id) {
            r.refused.insert(id);
        }
    }
}

/// Most commands in one proposal.
const MAX_BATCH: usize = 512;

/// Most proposals of one queue in flight at once: a delivery's `Deliver` record waits for at
/// most one round of the group behind the batches before it, not for each of them in turn.
const MAX_IN_FLIGHT: usize = 4;

/// The wait for a proposal's answer ([`Cluster::group_submit`]).
type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, ClusterError>> + Send>>;

/// A proposed batch not yet answered: the answer, the publishes it carries (in order) and the
/// rest of its work.
struct InFlight {
    answer: Answer,
    publishes: Vec<Work>,
    pending: Pending,
}

/// One piece of a served quorum queue's work.
enum Work {
    Publish(MessageRef, Option<u64>, Option<VerdictFn>),
    Command(Command),
    /// A `Deliver` record and the deliveries that leave once it committed.
    Deliver(Vec<u64>, Vec<(Sink, Delivery)>),
}

/// The serving node's side of a quorum queue's group: a FIFO of work and the task that commits
/// it in batches ([`Proposer::run`]).
#[derive(Debug)]
pub struct Proposer {
    tx: mpsc::UnboundedSender<Work>,
    /// Another node leads the group: nothing this proposer proposes can commit.
    deposed: Arc<AtomicBool>,
}

/// Ends a [`Proposer`]'s term of service. Its handle serves only what was committed up to the
/// replica snapshot it was built from plus what its own proposals committed; a proposal of an
/// old proposer committing after a new handle was built from the replica would reach neither
/// (its publish confirmed into a handle no longer served: lost until the next takeover). So
/// the leader watcher closes the old proposer's gate — waiting out its proposals in flight —
/// before it acts on a leader change. A batch that failed (it may still commit later, unseen by
/// the handle) closes the gate too and marks it `failed`: the watcher then takes over again,
/// rebuilding the handle from the replica behind a new `ReleaseAll`.
#[derive(Debug)]
struct Gate {
    closed: AtomicBool,
    failed: AtomicBool,
    busy: watch::Sender<bool>,
}

impl Gate {
    fn new() -> Gate {
        Gate {
            closed: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            busy: watch::channel(false).0,
        }
    }

    /// Before a proposal: false if closed (then the caller leaves unless proposals of its own
    /// are still in flight).
    fn enter(&self) -> bool {
        self.busy.send_replace(true);
        !self.closed.load(Ordering::SeqCst)
    }

    /// Once no proposal is in flight and the effects of those answered are on the handle.
    fn leave(&self) {
        self.busy.send_replace(false);
    }

    /// Closes the gate and waits until no proposal is in flight.
    async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let mut busy = self.busy.subscribe();
        let _ = busy.wait_for(|b| !*b).await;
    }
}

impl Replicator for Proposer {
    fn publish(&self, msg: MessageRef, ttl: Option<u64>, done: Option<VerdictFn>) {
        if let Err(mpsc::error::SendError(Work::Publish(_, _, Some(done)))) =
            self.tx.send(Work::Publish(msg, ttl, done))
        {
            done(false);
        }
    }

    fn command(&self, cmd: Command) {
        let _ = self.tx.send(Work::Command(cmd));
    }

    fn deliver(&self, ids: Vec<u64>, out: Vec<(Sink, Delivery)>) {
        if let Err(mpsc::error::SendError(Work::Deliver(_, out))) = self.tx.send(Work::Deliver(ids, out))
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            // Not here: the caller holds the queue's lock, which freeing a prefetch slot may
            // take (it dispatches the queues waiting for one).
            rt.spawn(async move { crate::queue::release_unsent(out) });
        }
    }

    fn serving(&self) -> bool {
        !self.deposed.load(Ordering::Acquire)
    }
}

/// What one batch carries besides its publishes: the state changes to commit, in order, and
/// the deliveries waiting for them.
#[derive(Default)]
struct Pending {
    cmds: Vec<Command>,
    out: Vec<(Sink, Delivery)>,
}

impl Pending {
    fn add(&mut self, w: Work) -> Option<Work> {
        match w {
            Work::Command(c) => self.cmds.push(c),
            Work::Deliver(ids, out) => {
                self.cmds.push(Command::Deliver(ids));
                self.out.extend(out);
            }
            publish => return Some(publish),
        }
        None
    }
}

impl Proposer {
    /// Starts the proposer of `group` for the queue `queue` served here.
    fn start(
        cluster: Cluster,
        group: String,
        queue: Weak<Queue>,
        timeout: Duration,
        gate: Arc<Gate>,
    ) -> Proposer {
        let (tx, rx) = mpsc::unbounded_channel();
        let deposed = Arc::new(AtomicBool::new(false));
        tokio::spawn(Self::run(
            cluster,
            group,
            queue,
            rx,
            (timeout, gate),
            deposed.clone(),
        ));
        Proposer { tx, deposed }
    }

    /// Commits the work batch by batch until every sender is gone (the handle was dropped or
    /// ceded), with up to [`MAX_IN_FLIGHT`] batches proposed and not yet committed (they take
    /// log positions in order and are settled in that order): publishes are enqueued once
    /// committed, in order, and their verdicts sent; deliveries go out once their `Deliver`
    /// record committed. A batch the group could not commit in time (no majority) nacks its
    /// publishes and those of the batches after it; their state changes are proposed again,
    /// with those queued meanwhile (publishes queued meanwhile are nacked), until they commit
    /// or another node leads (then the deliveries never go out, and the proposer is deposed).
    async fn run(
        cluster: Cluster,
        group: String,
        queue: Weak<Queue>,
        mut rx: mpsc::UnboundedReceiver<Work>,
        (timeout, gate): (Duration, Arc<Gate>),
        deposed: Arc<AtomicBool>,
    ) {
        let mut flight: VecDeque<InFlight> = VecDeque::new();
        let mut open = true;
        loop {
            let first = if flight.is_empty() {
                match rx.recv().await {
                    Some(w) => w,
                    None => break,
                }
            } else {
                let room = open && flight.len() < MAX_IN_FLIGHT;
                let front = &mut flight.front_mut().expect("not empty").answer;
                let next = tokio::select! {
                    biased;
                    r = front => Err(r),
                    w = rx.recv(), if room => Ok(w),
                };
                match next {
                    Err(committed) => {
                        let done = flight.pop_front().expect("not empty");
                        let ctx = (&cluster, group.as_str(), &queue, timeout);
                        Self::settle(ctx, &gate, &deposed, (done, committed), &mut flight, &mut rx).await;
                        if flight.is_empty() {
                            gate.leave();
                        }
                        continue;
                    }
                    Ok(Some(w)) => w,
                    Ok(None) => {
                        open = false;
                        continue;
                    }
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(w) => batch.push(w),
                    Err(_) => break,
                }
            }
            if !gate.enter() {
                if flight.is_empty() {
                    gate.leave();
                }
                // No longer this handle's to propose (see [`Gate`]): refused, not committed;
                // deliveries never go out (their prefetch slots are given back).
                for w in batch {
                    match w {
                        Work::Publish(_, _, Some(done)) => done(false),
                        Work::Deliver(_, out) => crate::queue::release_unsent(out),
                        _ => {}
                    }
                }
                continue;
            }
            let now = now_ms();
            let mut pending = Pending::default();
            let mut publishes = Vec::new();
            let mut cmds = Vec::with_capacity(batch.len());
            for w in batch {
                if let Work::Publish(m, _, _) = &w {
                    cmds.push(Command::Enqueue(crate::persist::encode_message(m, now).to_vec()));
                } else if let Work::Command(c) = &w {
                    cmds.push(c.clone());
                } else if let Work::Deliver(ids, _) = &w {
                    cmds.push(Command::Deliver(ids.clone()));
                }
                if let Some(p) = pending.add(w) {
                    publishes.push(p);
                }
            }
            let answer: Answer = if deposed.load(Ordering::Acquire) {
                Box::pin(std::future::ready(Err(ClusterError::NotLeader { leader: None })))
            } else {
                match cluster
                    .group_submit(&group, Command::Batch(cmds).encode(), timeout)
                    .await
                {
                    Ok(answer) => Box::pin(answer),
                    Err(e) => Box::pin(std::future::ready(Err(e))),
                }
            };
            flight.push_back(InFlight {
                answer,
                publishes,
                pending,
            });
        }
    }

    /// Acts on the answer to the oldest batch in flight, `done` (see [`Proposer::run`]).
    async fn settle(
        (cluster, group, queue, timeout): (&Cluster, &str, &Weak<Queue>, Duration),
        gate: &Gate,
        deposed: &AtomicBool,
        (done, committed): (InFlight, Result<Vec<u8>, ClusterError>),
        flight: &mut VecDeque<InFlight>,
        rx: &mut mpsc::UnboundedReceiver<Work>,
    ) {
        let InFlight {
            mut publishes,
            mut pending,
            ..
        } = done;
        let mut next = match &committed {
            Ok(b) => b.clone().try_into().ok().map(u64::from_le_bytes),
            Err(e) => {
                tracing::warn!(%group, error = %e, "quorum queue batch not committed");
                gate.failed.store(true, Ordering::SeqCst);
                gate.closed.store(true, Ordering::SeqCst);
                None
            }
        };
        let q = queue.upgrade();
        let mut committed = committed.map(|_| ());
        if matches!(committed, Err(ClusterError::NoQuorum)) {
            // The publishes are nacked now, with those of the batches after it (which cannot
            // commit before it); all their state changes go on being proposed, in order.
            nack(publishes);
            publishes = Vec::new();
            for later in flight.drain(..) {
                nack(later.publishes);
                pending.cmds.extend(later.pending.cmds);
                pending.out.extend(later.pending.out);
            }
            committed = Self::retry(cluster, group, queue, rx, &mut pending, timeout).await;
        }
        match (&committed, &q) {
            (Ok(()), Some(q)) => q.send_committed(std::mem::take(&mut pending.out)),
            (Err(ClusterError::NoQuorum), _) | (_, None) => {}
            (Err(_), _) => deposed.store(true, Ordering::Release),
        }
        crate::queue::release_unsent(pending.out);
        let mut refused = Vec::new();
        for w in publishes {
            let Work::Publish(msg, ttl, done) = w else {
                continue;
            };
            let ok = match (next, &q) {
                (Some(id), Some(q)) => {
                    next = Some(id + 1);
                    match q.enqueue_replicated(msg, ttl, id) {
                        Published::Enqueued => true,
                        Published::Duplicate => {
                            refused.push(id);
                            true
                        }
                        Published::Rejected => {
                            refused.push(id);
                            false
                        }
                    }
                }
                _ => false,
            };
            if let Some(done) = done {
                done(ok);
            }
        }
        if !refused.is_empty() {
            // Committed, but the queue did not take them (overflow, duplicates).
            let settle = Command::Settle(refused).encode();
            if let Err(e) = cluster.group_write(group, settle, timeout).await {
                tracing::warn!(%group, error = %e, "quorum queue settlement not committed");
            }
        }
    }

    /// Proposes `pending`'s state changes again (with the work queued meanwhile: state changes
    /// join them, publishes are nacked) until they commit, another node leads, or the queue's
    /// handle is gone (`Err(NoQuorum)` then).
    async fn retry(
        cluster: &Cluster,
        group: &str,
        queue: &Weak<Queue>,
        rx: &mut mpsc::UnboundedReceiver<Work>,
        pending: &mut Pending,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        loop {
            if queue.strong_count() == 0 {
                return Err(ClusterError::NoQuorum);
            }
            let mut nacks = Vec::new();
            while let Ok(w) = rx.try_recv() {
                nacks.extend(pending.add(w));
            }
            nack(nacks);
            if pending.cmds.is_empty() {
                return Ok(());
            }
            let cmds = Command::Batch(pending.cmds.clone()).encode();
            match cluster.group_write(group, cmds, timeout).await {
                Err(ClusterError::NoQuorum) => {
                    tracing::warn!(%group, "quorum queue state changes not committed yet (no majority)");
                }
                r => return r.map(|_| ()),
            }
        }
    }
}

/// Nacks publishes that were not committed.
fn nack(publishes: Vec<Work>) {
    for w in publishes {
        if let Work::Publish(_, _, Some(done)) = w {
            done(false);
        }
    }
}

/// This node's replicas of quorum queues by group id, each with whether its leader is watched.
#[derive(Default)]
pub struct Registry {
    replicas: Mutex<HashMap<String, (Arc<Replica>, bool)>>,
    /// Where replicas keep records beyond memory (`None`: no data directory, all in memory).
    scratch: Option<Arc<crate::persist::Persistence>>,
    /// Numbers the replicas' scratch logs (the scratch store is wiped at every start).
    next_log: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("replicas", &self.replicas)
            .field("paging", &self.scratch.is_some())
            .finish()
    }
}

impl Registry {
    /// The registry of a broker whose replicas page records into `scratch`'s scratch store.
    pub fn new(scratch: Option<Arc<crate::persist::Persistence>>) -> Registry {
        Registry {
            scratch,
            ..Registry::default()
        }
    }

    /// The replica of `group` (a new one if there is none).
    fn replica(&self, group: &str) -> Arc<Replica> {
        self.replicas
            .lock()
            .entry(group.to_string())
            .or_insert_with(|| {
                let bodies = match &self.scratch {
                    Some(p) => {
                        let n = self.next_log.fetch_add(1, Ordering::Relaxed);
                        ReplicaBodies::paging(Arc::downgrade(p), format!("quorum-replica-{n}"))
                    }
                    None => ReplicaBodies::in_memory(),
                };
                (Arc::new(Replica::new(bodies)), false)
            })
            .0
            .clone()
    }

    /// Whether the caller is the first to watch `group` (whose replica is `r`).
    fn first_watcher(&self, group: &str, r: &Arc<Replica>) -> bool {
        match self.replicas.lock().get_mut(group) {
            Some((mine, watched)) if Arc::ptr_eq(mine, r) && !*watched => {
                *watched = true;
                true
            }
            _ => false,
        }
    }

    /// Forgets `group`'s replica if it is `r` (`None`: whichever it is).
    fn forget(&self, group: &str, r: Option<&Arc<Replica>>) {
        let mut m = self.replicas.lock();
        if m.get(group)
            .is_some_and(|(mine, _)| r.is_none_or(|r| Arc::ptr_eq(mine, r)))
        {
            m.remove(group);
        }
    }

    /// This node's replica of quorum queue `name` of `vhost`, if its member runs here.
    pub fn get(&self, vhost: &str, name: &str) -> Option<Arc<Replica>> {
        self.replicas
            .lock()
            .get(&group_id(vhost, name))
            .map(|(r, _)| r.clone())
    }
}

/// Watches `group`'s leader on this node (once per group) for as long as the group runs here:
/// when this node becomes the leader it serves the queue, when another does this node forwards
/// to it (see the module doc).
fn watch(host: Weak<dyn Host>, cluster: Cluster, vhost: String, name: String, replica: Arc<Replica>) {
    let group = group_id(&vhost, &name);
    if !host
        .upgrade()
        .is_some_and(|h| h.quorum().first_watcher(&group, &replica))
    {
        return;
    }
    tokio::spawn(async move {
        let me = cluster.node_name().to_string();
        // The leader last acted on, and the term this node took over in.
        let (mut seen, mut serving): (Option<String>, Option<(String, u64)>) = (None, None);
        // The gate of the proposer this node serves with, if it does.
        let mut gate: Option<Arc<Gate>> = None;
        // Since when no leader is known, and when this node last asked whether it still is a member.
        let (mut leaderless, mut asked): (Option<Instant>, Option<Instant>) = (None, None);
        while cluster.group_status(&group).is_some() {
            let leader = cluster
                .group_leader_change(&group, seen.as_deref(), Duration::from_secs(1))
                .await;
            seen = leader.clone();
            let Some(leader) = leader else {
                let now = Instant::now();
                let since = *leaderless.get_or_insert(now);
                if now - since < STALE_CHECK || asked.is_some_and(|a| now - a < STALE_CHECK) {
                    continue;
                }
                asked = Some(now);
                let Some(h) = host.upgrade() else { break };
                if let Some(l) = removed_while_away(&h, &cluster, (&vhost, &name)).await {
                    tracing::warn!(%group, leader = %l, "this node's member was removed from the group while the node was away: leaving it");
                    leave(&*h, &cluster, &vhost, &name, Some(&l)).await;
                    break;
                }
                continue;
            };
            leaderless = None;
            let Some(term) = cluster.group_status(&group).map(|s| s.term) else {
                break;
            };
            // A leader that lost and won again in between serves from its replica again.
            // A proposer whose batch failed: its handle may miss what that batch committed.
            let failed = gate.as_ref().is_some_and(|g| g.failed.load(Ordering::SeqCst));
            let acted = !failed
                && serving
                    .as_ref()
                    .is_some_and(|(l, t)| *l == leader && (leader != me || *t == term));
            if acted {
                continue;
            }
            let Some(host) = host.upgrade() else { break };
            let Some(v) = host.vhost(&vhost) else { break };
            // Kept (closed) until acted on: a failed takeover is retried.
            if let Some(g) = &gate {
                g.close().await;
            }
            if leader == me {
                let timeout = host.forward_timeout();
                // Commits behind everything committed before: the replica is complete.
                if let Err(e) = cluster
                    .group_write(&group, Command::ReleaseAll.encode(), timeout)
                    .await
                {
                    tracing::warn!(%group, error = %e, "cannot take over the quorum queue yet");
                    seen = None;
                    continue;
                }
                if serving.as_ref().is_some_and(|(l, _)| *l == me) {
                    // The handle's state may have missed another leader's changes: a new one.
                    v.cede_queue(&name, &me);
                }
                gate = None;
                if let Some(q) = v.adopt_queue(&name) {
                    let g = Arc::new(Gate::new());
                    let p = Proposer::start(
                        cluster.clone(),
                        group.clone(),
                        Arc::downgrade(&q),
                        timeout,
                        g.clone(),
                    );
                    gate = Some(g);
                    q.adopt_replica(replica.clone(), Arc::new(p));
                    tracing::info!(%group, messages = replica.len(), "serving the quorum queue (group leader)");
                }
            } else {
                gate = None;
                v.cede_queue(&name, &leader);
            }
            serving = Some((leader, term));
        }
        if let Some(h) = host.upgrade() {
            h.quorum().forget(&group, Some(&replica));
        }
    });
}

/// How long a member sees no leader before it asks the cluster whether it still is a member
/// (and again as long as it sees none).
const STALE_CHECK: Duration = Duration::from_secs(5);

/// Whether this node's member of the queue's group was removed while the node was away (a
/// `delete_member` or `forget_cluster_node` while it was down): the other nodes are asked for
/// the group's leader, and the leader for its members. The leader if they leave this node
/// out; `None` if they include it or no leader answers.
async fn removed_while_away(host: &Arc<dyn Host>, cluster: &Cluster, queue: (&str, &str)) -> Option<String> {
    use crate::forward::{MemberAction, MemberOutcome};
    let f = host.forwarder()?;
    let me = cluster.node_name();
    let l = f
        .ask_leader(queue, &cluster.peer_names(), |l| l != me, None)
        .await?;
    match f
        .quorum_member(&l, queue, MemberAction::Members, Duration::from_millis(500))
        .await
    {
        MemberOutcome::Members(m) => (!m.iter().any(|n| n == me)).then_some(l),
        _ => None,
    }
}

impl Apply for Replica {
    fn apply(&self, index: u64, cmd: &[u8]) -> Vec<u8> {
        match Command::decode(cmd) {
            Some(c) => {
                let mut r = self.inner.lock();
                let ReplicaState {
                    state,
                    bodies,
                    refused,
                } = &mut *r;
                bodies.at(index);
                let id = state.apply(c, bodies);
                bodies.flush();
                if !refused.is_empty() {
                    refused.retain(|id| state.contains(*id));
                }
                id.to_le_bytes().to_vec()
            }
            None => {
                tracing::error!(index, "undecodable quorum queue command skipped");
                Vec::new()
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut r = self.inner.lock();
        let ReplicaState { state, bodies, .. } = &mut *r;
        let (bytes, unreadable) = state.encode(bodies);
        if !unreadable.is_empty() {
            tracing::error!(
                messages = unreadable.len(),
                "quorum queue snapshot: records that could not be read back are written empty"
            );
        }
        bytes
    }

    fn attach(&self, durable: warren_cluster::Durable) {
        self.inner.lock().bodies.attach(durable);
    }

    fn size(&self) -> u64 {
        let r = self.inner.lock();
        // Records, plus each message's id, flags, count and length in the snapshot.
        r.bodies.bytes() + 21 * r.state.len() as u64
    }

    fn restore(&self, snap: &[u8]) {
        let mut r = self.inner.lock();
        let ReplicaState {
            state,
            bodies,
            refused,
        } = &mut *r;
        bodies.at(0);
        match QuorumState::decode(snap, bodies) {
            Some(s) => {
                std::mem::replace(state, s).release_all(bodies);
                refused.clear();
                bodies.flush();
            }
            None => tracing::error!("undecodable quorum queue snapshot ignored"),
        }
    }
}

/// After a quorum queue's declaration by `declaring` was applied: starts this node's member
/// of its group, if this node is among the chosen members (in the background: Raft start-up
/// does disk IO), and watches its leader. The member that initialises the group and campaigns
/// first is the declaring node's (RabbitMQ's default `client-local` leader locator), or with
/// `balanced` the one [`least_leaders`] picks.
pub fn declared(
    host: Weak<dyn Host>,
    cluster: &Cluster,
    vhost: &str,
    name: &str,
    (declaring, size, balanced): (&str, Option<u64>, bool),
) {
    let mut nodes = cluster.peer_names();
    nodes.push(cluster.node_name().to_string());
    let size = size.map_or(DEFAULT_GROUP_SIZE, |s| s.min(usize::MAX as u64) as usize);
    let members = choose_members(declaring, nodes, size);
    if !members.iter().any(|m| m == cluster.node_name()) {
        return;
    }
    let first = if balanced {
        let mut led: HashMap<String, usize> = HashMap::new();
        for g in cluster.group_ids() {
            if let Some(l) = cluster.group_status(&g).and_then(|s| s.leader) {
                *led.entry(l).or_default() += 1;
            }
        }
        least_leaders(&led, &members, declaring) == cluster.node_name()
    } else {
        declaring == cluster.node_name()
    };
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let (cluster, group) = (cluster.clone(), group_id(vhost, name));
    let (vhost, name) = (vhost.to_string(), name.to_string());
    let Some(replica) = host.upgrade().map(|h| h.quorum().replica(&group)) else {
        return;
    };
    rt.spawn(async move {
        match cluster
            .start_group(&group, &members, replica.clone(), first)
            .await
        {
            Ok(()) => watch(host, cluster, vhost, name, replica),
            Err(e) => tracing::error!(%group, error = %e, "cannot start the quorum queue's raft group"),
        }
    });
}

/// At a clustered node's start: resumes this node's member of every quorum queue's group it
/// has files of (in the background), and watches its leader. `queues` names them as
/// (vhost, queue).
pub fn resume_all(host: Weak<dyn Host>, cluster: &Cluster, queues: Vec<(String, String)>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let cluster = cluster.clone();
    rt.spawn(async move {
        for (vhost, name) in queues {
            let group = group_id(&vhost, &name);
            let Some(replica) = host.upgrade().map(|h| h.quorum().replica(&group)) else {
                return;
            };
            match cluster.resume_group(&group, replica.clone()).await {
                Ok(true) => watch(host.clone(), cluster.clone(), vhost, name, replica),
                Ok(false) => {}
                Err(e) => tracing::error!(%group, error = %e, "cannot resume the quorum queue's raft group"),
            }
        }
    });
}

/// Starts this node's member of quorum queue `name`'s group as an empty one that the group's
/// leader adds next ([`Cluster::join_group`]: it learns the log and membership from the
/// leader), with its replica and leader watcher — what [`declared`] starts on a chosen
/// member. A no-op if it runs already.
pub async fn join(host: Weak<dyn Host>, cluster: &Cluster, vhost: &str, name: &str) -> Result<(), String> {
    let h = host.upgrade().ok_or("shutting down")?;
    let quorum = h
        .vhost(vhost)
        .is_some_and(|v| v.read_topology(|t| t.queue(name).is_some_and(|m| m.args.quorum)));
    if !quorum {
        return Err(format!(
            "no quorum queue '{name}' in vhost '{vhost}' on this node"
        ));
    }
    let group = group_id(vhost, name);
    let replica = h.quorum().replica(&group);
    drop(h);
    cluster
        .join_group(&group, replica.clone())
        .await
        .map_err(|e| e.to_string())?;
    watch(
        host,
        cluster.clone(),
        vhost.to_string(),
        name.to_string(),
        replica,
    );
    Ok(())
}

/// This node's member of quorum queue `name`'s group was removed from the group: stops it,
/// deletes its files and forgets its replica; the queue's work goes to `leader` (the group's
/// leader, or a remaining member) from now on, as on any node that is not a member.
pub async fn leave(host: &dyn Host, cluster: &Cluster, vhost: &str, name: &str, leader: Option<&str>) {
    let group = group_id(vhost, name);
    cluster.stop_group(&group, true).await;
    host.quorum().forget(&group, None);
    if let (Some(v), Some(leader)) = (host.vhost(vhost), leader) {
        v.cede_queue(name, leader);
    }
    tracing::info!(%group, ?leader, "quorum queue member removed from this node");
}

/// After a quorum queue was deleted: stops this node's member of its group and deletes its
/// files; its replica is forgotten (a new queue of the same name starts empty).
pub fn deleted(registry: &Registry, cluster: &Cluster, vhost: &str, name: &str) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let (cluster, group) = (cluster.clone(), group_id(vhost, name));
    registry.forget(&group, None);
    rt.spawn(async move { cluster.stop_group(&group, true).await });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_start_at_the_declaring_node_and_every_node_agrees() {
        let all = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let nodes = all(&["c", "a", "e", "b", "d"]);
        assert_eq!(choose_members("d", nodes.clone(), 3), all(&["a", "d", "e"]));
        assert_eq!(choose_members("b", nodes.clone(), 3), all(&["b", "c", "d"]));
        // The order nodes are listed in does not matter.
        let mut reversed = nodes.clone();
        reversed.reverse();
        assert_eq!(choose_members("d", reversed, 3), all(&["a", "d", "e"]));
        // Clamped to the cluster's size, and at least the declaring node.
        assert_eq!(choose_members("a", all(&["a", "b"]), 3), all(&["a", "b"]));
        assert_eq!(choose_members("a", all(&["a", "b"]), 0), all(&["a"]));
        assert_eq!(group_id("/", "q"), "qq:1:1:/q");
    }

    #[test]
    fn balanced_picks_the_member_leading_fewest_then_the_declaring_node_then_by_name() {
        let members: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let led = |v: &[(&str, usize)]| v.iter().map(|(n, c)| (n.to_string(), *c)).collect();
        assert_eq!(
            least_leaders(&led(&[]), &members, "b"),
            "b",
            "a tie: the declaring node"
        );
        assert_eq!(least_leaders(&led(&[("b", 1)]), &members, "b"), "a");
        assert_eq!(
            least_leaders(&led(&[("a", 2), ("b", 1), ("c", 1)]), &members, "a"),
            "b"
        );
        assert_eq!(
            least_leaders(&led(&[("c", 0), ("x", 0)]), &members, "x"),
            "a",
            "only members; ties by name"
        );
    }
}
