//! One vhost as a service: its topology (exchanges, queues' metadata, bindings), the handles of
//! its queues, and its policies, private to this module. Every change goes through one of its
//! operations — declare/delete an exchange or a queue, bind/unbind, publish (route + enqueue),
//! dead-letter — which enforce limits, record definitions and register queue handles in one
//! place, for the AMQP channels, the HTTP API, definitions import and recovery alike. Readers
//! see the topology through [`VHost::read_topology`] (a short shared read lock, never across `.await`).
//!
//! In a cluster, a durable queue declared on another node is a *remote* queue here: its
//! definition is in the topology (bindings, listings) with its home node, but this node holds
//! no handle and no messages for it. A publish routed to one reports it in
//! [`PublishOutcome::remote`] for the caller to forward ([`crate::forward`]);
//! consuming goes through a proxy consumer on the home node ([`crate::forward`]); getting or
//! purging one fails with [`remote_queue`]'s 404.

use foldhash::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use warren_codec::FieldTable;
use warren_codec::ShortStr;
use warren_codec::methods as wm;
use warren_core::deadletter::{DeadLetterTarget, DeadReason, dead_letter, is_cycle};
use warren_core::policy::Policy;
use warren_core::queue::{Published, StorePos};
use warren_core::topology::{ConnId, ExchangeDeclare as ExchangeDecl, QueueId, QueueMeta, Topology};
use warren_core::{AmqpError, AmqpResult, MessageRef};

use crate::persist::Persistence;
use crate::queue::{Queue, Stored};
use crate::stats::Metrics;

/// A binding as the bind and unbind operations name it.
#[derive(Debug, Clone, Copy)]
pub struct BindingRef<'a> {
    /// Source exchange.
    pub source: &'a str,
    /// Destination queue or exchange.
    pub destination: &'a str,
    /// Whether the destination is a queue.
    pub to_queue: bool,
    /// Binding key.
    pub routing_key: &'a str,
    /// Binding arguments.
    pub arguments: &'a FieldTable,
}

impl BindingRef<'_> {
    /// This binding as the definitions record of its bind (`bind`) or unbind.
    pub(crate) fn record(&self, bind: bool) -> warren_codec::Method {
        let (d, s, k) = (
            ShortStr::from(self.destination),
            ShortStr::from(self.source),
            ShortStr::from(self.routing_key),
        );
        let a = self.arguments.clone();
        match (self.to_queue, bind) {
            (true, true) => wm::QueueBind {
                queue: d,
                exchange: s,
                routing_key: k,
                arguments: a,
                ..Default::default()
            }
            .into(),
            (true, false) => wm::QueueUnbind {
                queue: d,
                exchange: s,
                routing_key: k,
                arguments: a,
                ..Default::default()
            }
            .into(),
            (false, true) => wm::ExchangeBind {
                destination: d,
                source: s,
                routing_key: k,
                arguments: a,
                ..Default::default()
            }
            .into(),
            (false, false) => wm::ExchangeUnbind {
                destination: d,
                source: s,
                routing_key: k,
                arguments: a,
                ..Default::default()
            }
            .into(),
        }
    }
}

/// The argument under which a remote queue's definitions record carries its home node (a
/// cluster member's name). It never reaches the topology: replay strips it.
pub const HOME_NODE_ARG: &str = "x-warren-home-node";

/// The error for getting from or purging a queue whose home is another cluster node (not
/// forwarded yet): 404 NOT_FOUND, as RabbitMQ answers for a queue whose home node is
/// unreachable, with the home node named.
pub fn remote_queue(name: &str, vhost: &str, node: &str) -> AmqpError {
    AmqpError::not_found(format!(
        "queue '{name}' in vhost '{vhost}' is hosted on node '{node}'; this node does not \
         forward to queues of other nodes: connect to '{node}' to use it"
    ))
}

/// The declare of a durable queue from its definitions record (replay, re-attach).
pub(crate) fn recorded_queue(q: &wm::QueueDeclare) -> warren_core::topology::QueueDeclare<'_> {
    warren_core::topology::QueueDeclare {
        name: &q.queue,
        passive: false,
        durable: true,
        exclusive: false,
        auto_delete: q.auto_delete,
        arguments: &q.arguments,
        owner: ConnId(0),
        server_named: false,
    }
}

/// One vhost: its topology and the handles of its queues.
#[derive(Debug)]
pub struct VHost {
    /// Name.
    pub name: String,
    /// Exchanges, queues' metadata, bindings: private, changed only by this module's
    /// operations, read through [`VHost::read_topology`].
    topology: Tracked<Topology>,
    /// Live queue handles by id: private, see [`VHost::queue_handles`].
    queues: Tracked<HashMap<QueueId, Arc<Queue>>>,
    /// Remote queues (declared on another cluster node, no handle here) by id: their home
    /// node's name.
    remote: Tracked<HashMap<QueueId, String>>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The durable store, when the broker runs with one.
    pub persistence: Option<Arc<Persistence>>,
    /// Policies (see [`crate::policies`]); a change holds the write lock while it re-applies
    /// them to every queue, a new queue holds the read lock until it is registered.
    policies: Tracked<Vec<warren_core::policy::Policy>>,
    /// Bumped by every write of the four locks above: what a [`RouteCache`] entry was
    /// computed under.
    generation: AtomicU64,
    /// Where dead letters routed to remote queues go (the forwarding layer, once the node is
    /// clustered; shared by the broker's vhosts).
    remote_sink: Arc<std::sync::OnceLock<RemoteSink>>,
}

/// Hands a dead letter to the queues `queues` of cluster node `node` in vhost `vhost`: the
/// forwarding layer, without naming it here. With a [`Confirmed`], the copy is retried until
/// the node took it, then that is called (at-least-once); without, it is sent once,
/// unconfirmed.
#[allow(clippy::type_complexity)]
pub struct RemoteSink(
    pub Box<dyn Fn(&str, &str, Vec<ShortStr>, MessageRef, Option<Confirmed>) + Send + Sync>,
);

/// Called once a dead letter's home node took it.
pub type Confirmed = Box<dyn FnOnce() + Send + Sync>;

impl std::fmt::Debug for RemoteSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteSink")
    }
}

/// A lock of the vhost's routing state: every write bumps the vhost's generation (while it
/// holds the lock, so a reader that read the generation before locking never tags a newer
/// state with an older generation).
#[derive(Debug)]
struct Tracked<T>(RwLock<T>);

impl<T> Tracked<T> {
    fn new(v: T) -> Self {
        Tracked(RwLock::new(v))
    }

    fn read(&self) -> parking_lot::RwLockReadGuard<'_, T> {
        self.0.read()
    }

    fn write(&self, generation: &AtomicU64) -> parking_lot::RwLockWriteGuard<'_, T> {
        let guard = self.0.write();
        generation.fetch_add(1, Ordering::AcqRel);
        guard
    }
}

/// A channel's last route: the queues its last publish reached, reused by the next publish to
/// the same exchange and routing key while the vhost's generation is unchanged (no
/// declaration, deletion, binding or policy change in between), skipping the topology lookups
/// and both read locks. Only routes that depend on nothing but the exchange and the key are
/// kept ([`warren_core::topology::Routed::key_only`]), and only when every queue is local. The
/// queues are held weakly: a cache never keeps a deleted queue alive.
#[derive(Debug, Default)]
pub struct RouteCache {
    /// The vhost it was computed in (its address), its generation then, exchange and key.
    vhost: usize,
    generation: u64,
    exchange: ShortStr,
    routing_key: ShortStr,
    queues: Vec<std::sync::Weak<Queue>>,
    valid: bool,
    /// The handles of one publish, kept for its allocation.
    scratch: Vec<Arc<Queue>>,
}

impl RouteCache {
    /// The handles for `msg` if the entry is for it and still current and every queue lives.
    fn hit(&mut self, vhost: usize, generation: u64, msg: &MessageRef) -> Option<Vec<Arc<Queue>>> {
        if !self.valid
            || self.vhost != vhost
            || self.generation != generation
            || self.exchange != msg.exchange
            || self.routing_key != msg.routing_key
        {
            return None;
        }
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        for w in &self.queues {
            out.push(w.upgrade()?);
        }
        Some(out)
    }

    fn fill(&mut self, vhost: usize, generation: u64, msg: &MessageRef, queues: &[Arc<Queue>]) {
        self.vhost = vhost;
        self.generation = generation;
        self.exchange = msg.exchange.clone();
        self.routing_key = msg.routing_key.clone();
        self.queues.clear();
        self.queues.extend(queues.iter().map(Arc::downgrade));
        self.valid = true;
    }

    /// Takes back a publish's handles (dropped now) for their allocation.
    fn give_back(&mut self, mut queues: Vec<Arc<Queue>>) {
        queues.clear();
        self.scratch = queues;
    }
}

/// Result of publishing one message.
#[derive(Debug, Default, Clone)]
pub struct PublishOutcome {
    /// Queues that accepted it.
    pub enqueued: usize,
    /// Queues that refused it (x-overflow reject-publish).
    pub rejected: usize,
    /// Durable queues that wrote it to their log (its confirm waits for their fsync).
    pub persisted: Vec<Arc<Queue>>,
    /// Queues (or an exchange) that dropped it as a duplicate (`x-deduplication-window`):
    /// routed, and confirmed with basic.ack.
    pub duplicates: usize,
    /// Durable queues that could not write it to their log (full disk, poisoned store): they
    /// did not take it, and the publisher is told (basic.nack, or the channel is closed).
    pub store_failed: usize,
    /// Queues whose last ingest credit this publish took: the publisher parks on them
    /// (credit flow, [`Queue::flow_park`]).
    pub out_of_credit: Vec<Arc<Queue>>,
    /// Queues of other cluster nodes it was routed to, by home node: the caller forwards it
    /// there ([`crate::forward`]). Empty (no allocation) on a single node.
    pub remote: Vec<(String, Vec<ShortStr>)>,
    /// Quorum queues this node serves that it was routed to: not enqueued yet, the caller
    /// hands it to their replicators ([`crate::queue::Replicator::publish`]), with its confirm
    /// if it has one, or [`PublishOutcome::replicate_unconfirmed`].
    pub quorum: Vec<Arc<Queue>>,
}

impl PublishOutcome {
    /// Hands the message to the quorum queues it was routed to, without a confirm.
    pub fn replicate_unconfirmed(&mut self, msg: &MessageRef, ttl: Option<u64>) {
        self.enqueued += self.replicate(msg, ttl, || None);
    }

    /// Hands the message to the quorum queues it was routed to; `verdict` makes each copy's
    /// confirm callback (`None`: unconfirmed), called once the queue's group committed it, or
    /// at once with `false` when the queue has no group to take it. Returns how many copies
    /// were handed over or answered that way; a copy without a callback that no group took
    /// counts as rejected.
    pub fn replicate(
        &mut self,
        msg: &MessageRef,
        ttl: Option<u64>,
        mut verdict: impl FnMut() -> Option<crate::queue::VerdictFn>,
    ) -> usize {
        if self.quorum.is_empty() {
            return 0;
        }
        let mut handed = 0;
        let now = crate::util::now_ms();
        for q in std::mem::take(&mut self.quorum) {
            let done = verdict();
            match (q.replicator(), done) {
                (Some(r), done) => {
                    r.publish(msg.clone(), ttl, done);
                    handed += 1;
                    if q.take_credit(now) {
                        self.out_of_credit.push(q);
                    }
                }
                (None, Some(done)) => {
                    done(false);
                    handed += 1;
                }
                (None, None) => self.rejected += 1,
            }
        }
        handed
    }
}

impl VHost {
    pub(crate) fn new(
        name: &str,
        metrics: Arc<Metrics>,
        persistence: Option<Arc<Persistence>>,
        remote_sink: Arc<std::sync::OnceLock<RemoteSink>>,
    ) -> VHost {
        VHost {
            name: name.to_string(),
            topology: Tracked::new(Topology::new(name)),
            queues: Tracked::new(HashMap::default()),
            remote: Tracked::new(HashMap::default()),
            metrics,
            persistence,
            policies: Tracked::new(Vec::new()),
            generation: AtomicU64::new(0),
            remote_sink,
        }
    }

    /// Appends a definitions record if the broker is durable. A record that cannot be written
    /// (full disk, I/O error; the log then refuses every later append until a restart) is 506
    /// RESOURCE_ERROR: the caller undoes what it declared, so nothing the client was told is
    /// durable is missing after a restart.
    fn record(&self, m: impl Into<warren_codec::Method>) -> AmqpResult<()> {
        let Some(p) = &self.persistence else { return Ok(()) };
        let m = m.into();
        p.record(&self.name, &m).map_err(|e| {
            AmqpError::new(
                warren_codec::ReplyCode::ResourceError,
                format!(
                    "cannot record {} in vhost '{}': the definitions log cannot be written ({e}); \
                     durable declarations are refused until the broker is restarted with a writable disk",
                    m.name(),
                    self.name
                ),
            )
        })
    }

    /// The vhost's policies (a copy, in no particular order).
    pub fn policies(&self) -> Vec<Policy> {
        self.policies.read().clone()
    }

    /// The policy that applies to a queue, if any.
    pub fn queue_policy(&self, meta: &QueueMeta) -> Option<Policy> {
        warren_core::policy::queue_policy(&self.policies.read(), &meta.name, &meta.arguments).cloned()
    }

    /// A policy by name.
    pub fn policy(&self, name: &str) -> Option<Policy> {
        self.policies.read().iter().find(|p| p.name == name).cloned()
    }

    /// Creates or replaces policy `p`: `log` records the change (durably) under the policies'
    /// write lock, then every live queue whose effective arguments change is reconfigured.
    /// Whether the policy is new.
    pub fn put_policy(&self, p: Policy, log: impl FnOnce()) -> bool {
        let mut ps = self.policies.write(&self.generation);
        log();
        let created = match ps.iter_mut().find(|x| x.name == p.name) {
            Some(x) => {
                *x = p;
                false
            }
            None => {
                ps.push(p);
                true
            }
        };
        self.reapply_policies(&ps);
        created
    }

    /// Deletes policy `name` (`log` records it first, under the write lock); the queues it
    /// applied to fall back to their declared arguments or the next matching policy. `false`
    /// if there was no such policy.
    pub fn delete_policy(&self, name: &str, log: impl FnOnce()) -> bool {
        let mut ps = self.policies.write(&self.generation);
        let Some(pos) = ps.iter().position(|p| p.name == name) else {
            return false;
        };
        log();
        ps.remove(pos);
        self.reapply_policies(&ps);
        true
    }

    /// A replayed policy record at start-up (`Some`: set, `None`: deleted), before any queue
    /// exists, so nothing is re-applied.
    pub fn restore_policy(&self, name: &str, p: Option<Policy>) {
        let mut ps = self.policies.write(&self.generation);
        ps.retain(|x| x.name != name);
        ps.extend(p);
    }

    /// Re-applies `policies` to every live queue; only queues whose effective arguments
    /// change are touched.
    fn reapply_policies(&self, policies: &[Policy]) {
        for q in self.queue_handles() {
            q.apply_effective_args(effective_args(policies, &self.name, &q.meta));
        }
    }

    /// A queue handle by name.
    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        let id = self.topology.read().queue(name)?.id;
        self.queues.read().get(&id).cloned()
    }

    /// Registers the handle of a newly declared queue.
    pub fn add_queue(self: &Arc<Self>, meta: QueueMeta) -> Arc<Queue> {
        // A clustered quorum queue keeps its messages in its Raft group, not a log.
        let durable =
            meta.durable && meta.exclusive_owner.is_none() && !(meta.args.quorum && self.is_clustered());
        // No policy change between applying the policies and registering the queue.
        let policies = self.policies.read();
        let q = Queue::new(meta, Arc::downgrade(self));
        q.apply_effective_args(effective_args(&policies, &self.name, &q.meta));
        if durable && let Some(p) = &self.persistence {
            let dir = crate::persist::queue_dir(&self.name, &q.meta.name);
            crate::persist::blocking(|| {
                q.open_log(&p.store, &dir);
                let meta = crate::persist::queue_record(&self.name, &q.meta);
                if let Err(e) = p.store.write_queue_meta(&dir, &meta) {
                    tracing::warn!(queue = %q.meta.name, "cannot keep the queue's definition in its directory: {e}");
                }
            });
        }
        self.queues.write(&self.generation).insert(q.meta.id, q.clone());
        drop(policies);
        q.start_expiry();
        q
    }

    /// Reads the topology under its lock (keep `f` short; it must not block).
    pub fn read_topology<R>(&self, f: impl FnOnce(&Topology) -> R) -> R {
        f(&self.topology.read())
    }

    /// Every queue handle (a snapshot).
    pub fn queue_handles(&self) -> Vec<Arc<Queue>> {
        self.queues.read().values().cloned().collect()
    }

    /// A queue handle by id.
    pub fn queue_by_id(&self, id: QueueId) -> Option<Arc<Queue>> {
        self.queues.read().get(&id).cloned()
    }

    /// A queue connection `owner` may use: it exists and is not another connection's exclusive
    /// queue (405 RESOURCE_LOCKED, 404 NOT_FOUND otherwise).
    pub fn queue_for_use(&self, name: &str, owner: ConnId) -> AmqpResult<Arc<Queue>> {
        let id = self.topology.read().check_queue_access(name, owner)?.id;
        self.queue_by_id(id).ok_or_else(|| match self.home_node(id) {
            Some(node) => remote_queue(name, &self.name, &node),
            None => queue_gone(name, &self.name),
        })
    }

    /// The remote queues among `ids`, by home node.
    fn remote_destinations(&self, ids: &[QueueId]) -> Vec<(String, Vec<ShortStr>)> {
        // One lock at a time.
        let homes: Vec<(QueueId, String)> = {
            let remote = self.remote.read();
            ids.iter()
                .filter_map(|id| Some((*id, remote.get(id)?.clone())))
                .collect()
        };
        let t = self.topology.read();
        let mut out: Vec<(String, Vec<ShortStr>)> = Vec::new();
        for (id, node) in homes {
            let Some(q) = t.queue_by_id(id) else {
                continue;
            };
            match out.iter_mut().find(|(n, _)| *n == node) {
                Some((_, names)) => names.push(q.name.clone()),
                None => out.push((node, vec![q.name.clone()])),
            }
        }
        out
    }

    /// The home node of remote queue `name` (`None`: a local queue, or none).
    pub fn remote_home(&self, name: &str) -> Option<String> {
        let id = self.topology.read().queue(name)?.id;
        self.home_node(id)
    }

    /// Whether this node is a cluster member (quorum queues are replicated).
    pub fn is_clustered(&self) -> bool {
        self.remote_sink.get().is_some()
    }

    /// Makes this node the home of queue `name` (a quorum queue whose group this node leads
    /// now): its handle, created if it had none (no log, no messages yet), and no longer
    /// remote. `None` if there is no such queue.
    pub fn adopt_queue(self: &Arc<Self>, name: &str) -> Option<Arc<Queue>> {
        let meta = self.topology.read().queue(name)?.clone();
        let fresh = self.queue_by_id(meta.id).is_none().then(|| {
            let policies = self.policies.read();
            let q = Queue::new(meta.clone(), Arc::downgrade(self));
            q.apply_effective_args(effective_args(&policies, &self.name, &q.meta));
            q
        });
        let q = {
            let mut queues = self.queues.write(&self.generation);
            match (queues.get(&meta.id), fresh) {
                (Some(q), _) => q.clone(),
                (None, Some(q)) => queues.entry(meta.id).or_insert(q).clone(),
                (None, None) => return None,
            }
        };
        self.remote.write(&self.generation).remove(&meta.id);
        Some(q)
    }

    /// Makes `node` the home of queue `name` (a quorum queue whose group another node leads
    /// now): this node's handle, if any, is dropped (its consumers cancelled) and the queue
    /// is remote.
    pub fn cede_queue(&self, name: &str, node: &str) {
        let Some(id) = self.topology.read().queue(name).map(|m| m.id) else {
            return;
        };
        let handle = self.queues.write(&self.generation).remove(&id);
        self.remote.write(&self.generation).insert(id, node.to_string());
        if let Some(q) = handle {
            q.drop_replicator();
            q.mark_deleted();
        }
    }

    /// The home node of a remote queue (`None`: a local queue, or none).
    pub fn home_node(&self, id: QueueId) -> Option<String> {
        self.remote.read().get(&id).cloned()
    }

    /// Checks a declaration of an existing remote queue against its definition (equivalence,
    /// as for a local queue).
    pub fn redeclare_remote_queue(&self, d: &warren_core::topology::QueueDeclare<'_>) -> AmqpResult<()> {
        self.topology.write(&self.generation).declare_queue(d).map(|_| ())
    }

    /// Records the definition of a durable queue declared on cluster node `node` (not this
    /// one): in the topology and the definitions log (with its home node), no handle, no
    /// messages. The queue limit is checked as for [`VHost::declare_queue`]. Whether it was
    /// created.
    pub fn declare_remote_queue(
        &self,
        d: &warren_core::topology::QueueDeclare<'_>,
        node: &str,
        limit: Option<u32>,
    ) -> AmqpResult<bool> {
        let (meta, created) = self.declare_in_topology(d, limit)?;
        if !created {
            return Ok(false);
        }
        let mut arguments = d.arguments.clone();
        arguments.insert(HOME_NODE_ARG, warren_codec::FieldValue::str(node));
        let recorded = self.record(wm::QueueDeclare {
            queue: meta.name.clone(),
            durable: true,
            auto_delete: meta.auto_delete,
            arguments,
            ..Default::default()
        });
        if let Err(e) = recorded {
            self.topology.write(&self.generation).delete_queue(&meta.name);
            return Err(e);
        }
        self.remote
            .write(&self.generation)
            .insert(meta.id, node.to_string());
        Ok(true)
    }

    /// The exclusive queues connection `owner` holds.
    pub fn exclusive_queues(&self, owner: ConnId) -> Vec<ShortStr> {
        self.topology.read().exclusive_queues(owner)
    }

    /// Empties a vhost that is being deleted: every queue deleted (consumers cancelled, logs
    /// removed) and the deletion of its durable exchanges (with their bindings) recorded.
    pub fn delete_contents(&self) {
        let names: Vec<ShortStr> = self.read_topology(|t| t.queues().map(|q| q.name.clone()).collect());
        for n in names {
            self.delete_queue(&n);
        }
        let exchanges: Vec<ShortStr> = self.read_topology(|t| {
            t.exchanges()
                .filter(|x| x.durable && !x.name.is_empty() && !x.name.starts_with("amq."))
                .map(|x| x.name.clone())
                .collect()
        });
        self.record_deleted_exchanges(exchanges);
    }

    /// Registers a handle (opening its log) for every queue the replayed definitions declared:
    /// the last step of start-up recovery.
    pub(crate) fn open_recovered_queues(self: &Arc<Self>) -> Vec<Arc<Queue>> {
        let metas: Vec<QueueMeta> = self.read_topology(|t| t.queues().cloned().collect());
        let remote = self.remote.read().clone();
        metas
            .into_iter()
            .filter(|m| !remote.contains_key(&m.id))
            .map(|m| self.add_queue(m))
            .collect()
    }

    /// Applies one definitions record read back at start-up to the topology (no record is
    /// written, no queue handle registered: recovery opens the queues afterwards).
    pub(crate) fn replay_definition(&self, m: &warren_codec::Method) -> AmqpResult<()> {
        use warren_codec::Method;
        let mut t = self.topology.write(&self.generation);
        match m {
            Method::ExchangeDeclare(x) => t.declare_exchange(&ExchangeDecl {
                name: &x.exchange,
                kind: &x.kind,
                passive: false,
                durable: true,
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments: &x.arguments,
            }),
            Method::ExchangeDelete(x) => t.delete_exchange(&x.exchange, false).map(|_| ()),
            Method::QueueDeclare(q) => {
                let mut q = q.clone();
                let home = q.arguments.remove(HOME_NODE_ARG);
                let (meta, _) = t.declare_queue(&recorded_queue(&q))?;
                let mut remote = self.remote.write(&self.generation);
                match home.as_ref().and_then(|h| h.as_str()) {
                    Some(node) => remote.insert(meta.id, node.to_string()),
                    None => remote.remove(&meta.id),
                };
                Ok(())
            }
            Method::QueueDelete(q) => {
                if let Some((meta, _)) = t.delete_queue(&q.queue) {
                    self.remote.write(&self.generation).remove(&meta.id);
                }
                Ok(())
            }
            Method::QueueBind(b) => t
                .bind_queue(&b.queue, &b.exchange, &b.routing_key, &b.arguments)
                .map(|_| ()),
            Method::QueueUnbind(b) => t
                .unbind_queue(&b.queue, &b.exchange, &b.routing_key, &b.arguments)
                .map(|_| ()),
            Method::ExchangeBind(b) => t
                .bind_exchange(&b.destination, &b.source, &b.routing_key, &b.arguments)
                .map(|_| ()),
            Method::ExchangeUnbind(b) => t
                .unbind_exchange(&b.destination, &b.source, &b.routing_key, &b.arguments)
                .map(|_| ()),
            other => {
                tracing::warn!("unexpected definitions record {}", other.name());
                Ok(())
            }
        }
    }

    /// Names of this vhost's dead-letter queues: every queue its queues' effective dead-letter
    /// targets (declared or set by a policy) can reach.
    pub fn dead_letter_queues(&self) -> std::collections::HashSet<String> {
        let handles = self.queue_handles();
        let targets: Vec<(String, Option<String>)> = handles
            .iter()
            .filter_map(|q| q.dead_letter_target())
            .map(|(x, k)| (x.to_string(), k.map(|k| k.to_string())))
            .collect();
        reachable_queues(&self.topology.read(), targets)
    }

    /// Declares an exchange (or checks it, passive): the one path for AMQP `exchange.declare`,
    /// the HTTP API and definitions import. A durable declare is recorded as an
    /// `exchange.declare`. Returns whether the exchange was created.
    pub fn declare_exchange(&self, d: &ExchangeDecl<'_>) -> AmqpResult<bool> {
        let created = {
            let mut t = self.topology.write(&self.generation);
            let existed = t.exchange(d.name).is_some();
            t.declare_exchange(d)?;
            !existed
        };
        if d.durable && !d.passive && created {
            let recorded = self.record(wm::ExchangeDeclare {
                exchange: ShortStr::from(d.name),
                kind: ShortStr::from(d.kind),
                durable: true,
                auto_delete: d.auto_delete,
                internal: d.internal,
                arguments: d.arguments.clone(),
                ..Default::default()
            });
            if let Err(e) = recorded {
                let _ = self
                    .topology
                    .write(&self.generation)
                    .delete_exchange(d.name, false);
                return Err(e);
            }
        }
        Ok(created)
    }

    /// Deletes an exchange (and the exchanges auto-deleted with it), recording each deletion.
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> AmqpResult<()> {
        let deleted = self
            .topology
            .write(&self.generation)
            .delete_exchange(name, if_unused)?;
        self.record_deleted_exchanges(deleted.exchanges);
        Ok(())
    }

    fn record_deleted_exchanges(&self, names: Vec<ShortStr>) {
        for exchange in names {
            // A deletion is done whatever the log says (logged there; after a restart the
            // exchange would come back).
            let _ = self.record(wm::ExchangeDelete {
                exchange,
                ..Default::default()
            });
        }
    }

    /// Adds a binding; `owner` (an AMQP connection) may not bind another connection's
    /// exclusive queue. A durable binding is recorded as a `queue.bind` / `exchange.bind`.
    pub fn bind(&self, b: &BindingRef<'_>, owner: Option<ConnId>) -> AmqpResult<()> {
        let (added, durable) = {
            let mut t = self.topology.write(&self.generation);
            let added = if b.to_queue {
                if let Some(owner) = owner {
                    t.check_queue_access(b.destination, owner)?;
                }
                t.bind_queue(b.destination, b.source, b.routing_key, b.arguments)?
            } else {
                t.bind_exchange(b.destination, b.source, b.routing_key, b.arguments)?
            };
            (added, t.is_durable_binding(b.source, b.destination, b.to_queue))
        };
        if durable && let Err(e) = self.record(b.record(true)) {
            if added {
                let mut t = self.topology.write(&self.generation);
                let _ = if b.to_queue {
                    t.unbind_queue(b.destination, b.source, b.routing_key, b.arguments)
                } else {
                    t.unbind_exchange(b.destination, b.source, b.routing_key, b.arguments)
                };
            }
            return Err(e);
        }
        Ok(())
    }

    /// Removes a binding (idempotent: a missing binding or queue is fine, as in RabbitMQ);
    /// `owner` may not unbind another connection's exclusive queue. Recorded when the queue is
    /// durable (queue bindings) or always (exchange bindings), with every exchange auto-deleted
    /// because its last binding went.
    pub fn unbind(&self, b: &BindingRef<'_>, owner: Option<ConnId>) -> AmqpResult<()> {
        let (deleted, record) = {
            let mut t = self.topology.write(&self.generation);
            if b.to_queue {
                if let Some(owner) = owner
                    && t.queue(b.destination).is_some()
                {
                    t.check_queue_access(b.destination, owner)?;
                }
                let d = t.unbind_queue(b.destination, b.source, b.routing_key, b.arguments)?;
                (d, t.queue(b.destination).is_some_and(|q| q.durable))
            } else {
                let d = t.unbind_exchange(b.destination, b.source, b.routing_key, b.arguments)?;
                (d, true)
            }
        };
        if record {
            let _ = self.record(b.record(false));
        }
        self.record_deleted_exchanges(deleted.exchanges);
        Ok(())
    }

    /// Declares a queue (or checks an existing one): the one path for AMQP `queue.declare`, the
    /// HTTP API and definitions import. The vhost's queue limit (`limit`, `None` for none; passive
    /// declares and existing queues are never refused) is checked under the same topology lock
    /// as the declare, so concurrent declares cannot overshoot it. A new durable queue's
    /// definition is recorded (as a `queue.declare`) and its handle registered. Returns the
    /// handle and whether the queue was created.
    pub fn declare_queue(
        self: &Arc<Self>,
        d: &warren_core::topology::QueueDeclare<'_>,
        limit: Option<u32>,
    ) -> AmqpResult<(Arc<Queue>, bool)> {
        let (meta, created) = self.declare_in_topology(d, limit)?;
        self.metrics.queues_declared.fetch_add(1, Ordering::Relaxed);
        if !created {
            let q = self.queues.read().get(&meta.id).cloned();
            return q
                .map(|q| (q, false))
                .ok_or_else(|| queue_gone(d.name, &self.name));
        }
        if meta.durable && meta.exclusive_owner.is_none() {
            let recorded = self.record(warren_codec::methods::QueueDeclare {
                queue: meta.name.clone(),
                durable: true,
                auto_delete: meta.auto_delete,
                arguments: d.arguments.clone(),
                ..Default::default()
            });
            if let Err(e) = recorded {
                self.topology.write(&self.generation).delete_queue(&meta.name);
                return Err(e);
            }
        }
        self.metrics.queues_created.fetch_add(1, Ordering::Relaxed);
        Ok((self.add_queue(meta), true))
    }

    /// Declares a queue in the topology (or checks an existing one), refusing a new queue
    /// beyond the vhost's queue limit under the same lock (passive declares and existing queues
    /// are never refused).
    fn declare_in_topology(
        &self,
        d: &warren_core::topology::QueueDeclare<'_>,
        limit: Option<u32>,
    ) -> AmqpResult<(QueueMeta, bool)> {
        let mut t = self.topology.write(&self.generation);
        if let Some(limit) = limit
            && !d.passive
            && t.queue(d.name).is_none()
            && t.queues().count() >= limit as usize
        {
            return Err(AmqpError::precondition(format!(
                "cannot declare queue '{}': queue limit in vhost '{}' ({limit}) is reached",
                d.name, self.name
            )));
        }
        t.declare_queue(d)
    }

    /// Deletes a queue: topology entry, bindings, consumers (cancelled), handle.
    /// A remote queue's definition is deleted the same way (it has no handle, no log: 0).
    pub fn delete_queue(&self, name: &str) -> Option<u32> {
        let (meta, deleted) = self.topology.write(&self.generation).delete_queue(name)?;
        let handle = self.queues.write(&self.generation).remove(&meta.id);
        let count = match handle {
            Some(q) => q.mark_deleted(),
            None => {
                self.remote.write(&self.generation).remove(&meta.id)?;
                let _ = self.record(warren_codec::methods::QueueDelete {
                    queue: meta.name.clone(),
                    ..Default::default()
                });
                self.record_deleted_exchanges(deleted.exchanges);
                return Some(0);
            }
        };
        self.metrics.queues_deleted.fetch_add(1, Ordering::Relaxed);
        if meta.durable && meta.exclusive_owner.is_none() {
            let _ = self.record(warren_codec::methods::QueueDelete {
                queue: meta.name.clone(),
                ..Default::default()
            });
            if let Some(p) = &self.persistence
                && let Err(e) = p.store.delete_queue(&crate::persist::queue_dir(&self.name, name))
            {
                tracing::warn!(queue = name, "cannot delete queue log: {e}");
            }
        }
        self.record_deleted_exchanges(deleted.exchanges);
        Some(count)
    }

    /// Routes and enqueues a message published to its exchange.
    pub fn publish(&self, msg: MessageRef, ttl: Option<u64>, now: u64) -> AmqpResult<PublishOutcome> {
        self.publish_cached(msg, ttl, now, None)
    }

    /// [`VHost::publish`], reusing (and refreshing) a channel's [`RouteCache`].
    pub fn publish_cached(
        &self,
        msg: MessageRef,
        ttl: Option<u64>,
        now: u64,
        mut cache: Option<&mut RouteCache>,
    ) -> AmqpResult<PublishOutcome> {
        let multi_key = msg.header("CC").is_some() || msg.header("BCC").is_some();
        let me = self as *const VHost as usize;
        // Read before the locks: a change after this makes the entry filled below stale.
        let generation = self.generation.load(Ordering::Acquire);
        let mut out = PublishOutcome::default();
        let hit = match cache.as_deref_mut() {
            Some(c) if !multi_key => c.hit(me, generation, &msg),
            _ => None,
        };
        let queues = match hit {
            Some(queues) => queues,
            None => {
                let (routed, handles) = self.route(&msg, multi_key, now)?;
                if routed.duplicate {
                    self.metrics.duplicates_dropped.fetch_add(1, Ordering::Relaxed);
                    out.duplicates += 1;
                }
                if handles.len() < routed.queues.len() {
                    // A queue without a handle: one deleted meanwhile (skipped, as always), or a
                    // remote queue, which the caller forwards to its home node.
                    out.remote = self.remote_destinations(&routed.queues);
                } else if routed.key_only
                    && !multi_key
                    && let Some(c) = cache.as_deref_mut()
                {
                    c.fill(me, generation, &msg, &handles);
                }
                handles
            }
        };
        if !queues.is_empty() {
            let payload = (msg.is_persistent() && queues.iter().any(|q| q.is_durable()))
                .then(|| crate::persist::encode_message(&msg, now));
            for q in &queues {
                if q.is_replicated() {
                    out.quorum.push(q.clone());
                    continue;
                }
                let (p, stored, out_of_credit) = q.publish(msg.clone(), ttl, now, payload.as_deref());
                if out_of_credit {
                    out.out_of_credit.push(q.clone());
                }
                match stored {
                    Stored::Failed => {
                        out.store_failed += 1;
                        continue;
                    }
                    Stored::Written => out.persisted.push(q.clone()),
                    Stored::NotNeeded => {}
                }
                match p {
                    Published::Enqueued => out.enqueued += 1,
                    Published::Rejected => out.rejected += 1,
                    Published::Duplicate => out.duplicates += 1,
                }
            }
        }
        if let Some(c) = cache {
            c.give_back(queues);
        }
        Ok(out)
    }

    /// Routes a published message on the topology (internal exchanges refused) and looks up
    /// the local handles of the queues it reaches.
    fn route(
        &self,
        msg: &MessageRef,
        multi_key: bool,
        now: u64,
    ) -> AmqpResult<(warren_core::topology::Routed, Vec<Arc<Queue>>)> {
        // The common case, no CC/BCC headers, routes by the one key without allocating.
        let single = [&*msg.routing_key];
        let all_keys: Vec<ShortStr>;
        let many: Vec<&str>;
        let key_refs: &[&str] = if multi_key {
            all_keys = msg.routing_keys();
            many = all_keys.iter().map(|k| &**k).collect();
            &many
        } else {
            &single
        };
        // A shared read lock: publishes on many connections route at once; only declarations
        // (which change the topology) take it exclusively.
        let routed = {
            let t = self.topology.read();
            if t.exchange(&msg.exchange).is_some_and(|x| x.internal) {
                return Err(AmqpError::access_refused(format!(
                    "cannot publish to internal exchange '{}' in vhost '{}'",
                    &*msg.exchange, self.name
                )));
            }
            t.route_message(&msg.exchange, key_refs, &msg.properties, now)?
        };
        if routed.queues.is_empty() {
            return Ok((routed, Vec::new()));
        }
        let handles = {
            let map = self.queues.read();
            routed
                .queues
                .iter()
                .filter_map(|id| map.get(id).cloned())
                .collect()
        };
        Ok((routed, handles))
    }

    /// Routes messages dead-lettered by `from` to its dead-letter exchange. Works through a
    /// worklist so that dead-letters caused by dead-letters (a full DLQ) are handled too.
    ///
    /// At-least-once (durable queues, unless `x-dead-letter-strategy: at-most-once`):
    /// `positions` are the dead-lettered messages' places in the source queue's log. They are
    /// acked there only after every durable target's copy is written and fsync'd (one group
    /// commit for the whole batch), so a crash in between leaves the message in the source
    /// (recovered, redelivered) rather than nowhere.
    pub fn dead_letter(
        &self,
        from: &Queue,
        letters: Vec<(MessageRef, DeadReason)>,
        positions: Vec<StorePos>,
        now: u64,
    ) {
        // FIFO, so dead letters arrive in the order they left (e.g. a trimmed backlog).
        let mut work: std::collections::VecDeque<(Arc<Queue>, MessageRef, DeadReason)> =
            std::collections::VecDeque::new();
        let Some(me) = self.queues.read().get(&from.meta.id).cloned() else {
            self.metrics
                .dead_letter_dropped
                .fetch_add(letters.len() as u64, Ordering::Relaxed);
            from.ack_positions(&positions);
            return;
        };
        // Source positions to release once the targets' copies are durable.
        let mut release: Vec<(Arc<Queue>, Vec<StorePos>)> = Vec::new();
        if !positions.is_empty() {
            release.push((me.clone(), positions));
        }
        let mut synced_targets = false;
        // A durable target could not write its copy: the sources keep theirs.
        let mut target_failed = false;
        // Copies for queues of other cluster nodes: (node, its queues, the dead letter).
        let mut remote: Vec<(String, Vec<ShortStr>, MessageRef)> = Vec::new();
        work.extend(letters.into_iter().map(|(m, r)| (me.clone(), m, r)));
        while let Some((q, msg, reason)) = work.pop_front() {
            // The effective target: declared, or set by a policy.
            let Some((dlx, dlrk)) = q.dead_letter_target() else {
                continue;
            };
            let dlx = &*dlx;
            let target = DeadLetterTarget {
                exchange: dlx,
                routing_key: dlrk.as_deref(),
            };
            let (dl, keys) = dead_letter(&msg, reason, &q.meta.name, now / 1000, &target);
            let key_refs: Vec<&str> = keys.iter().map(|k| &**k).collect();
            let routed = self
                .topology
                .read()
                .route_message(dlx, &key_refs, &dl.properties, now);
            let routed = match routed {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(queue = %q.meta.name, dlx, "dead-letter exchange does not exist; message dropped");
                    self.metrics.dead_letter_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            self.metrics.dead_lettered[reason_index(reason)].fetch_add(1, Ordering::Relaxed);
            let targets: Vec<Arc<Queue>> = {
                let map = self.queues.read();
                routed
                    .queues
                    .iter()
                    .filter_map(|id| map.get(id).cloned())
                    .collect()
            };
            if targets.len() < routed.queues.len() {
                // Remote queues (clustering) get their copies forwarded (below).
                for (node, mut queues) in self.remote_destinations(&routed.queues) {
                    queues.retain(|n| !is_cycle(&dl, n));
                    match self.remote_sink.get() {
                        Some(_) if !queues.is_empty() => remote.push((node, queues, dl.clone())),
                        Some(_) => {}
                        None => {
                            tracing::warn!(queue = %q.meta.name, dlx, %node, "dead letter routed to queues of another cluster node, which this node cannot reach; dropped");
                            self.metrics
                                .dead_letter_dropped
                                .fetch_add(queues.len() as u64, Ordering::Relaxed);
                        }
                    }
                }
            }
            for t in targets {
                if is_cycle(&dl, &t.meta.name) {
                    continue;
                }
                let payload =
                    (dl.is_persistent() && t.is_durable()).then(|| crate::persist::encode_message(&dl, now));
                let (_, stored, _, more, more_positions) =
                    t.publish_collect(dl.clone(), None, now, payload.as_deref());
                if payload.is_some() {
                    target_failed |= !t.flush_log();
                }
                synced_targets |= stored == Stored::Written;
                target_failed |= stored == Stored::Failed;
                if !more_positions.is_empty() {
                    release.push((t.clone(), more_positions));
                }
                work.extend(more.into_iter().map(|(m, r)| (t.clone(), m, r)));
            }
        }
        let sink = self.remote_sink.get();
        if target_failed {
            tracing::error!(
                "a dead-letter target could not store its copy; the messages stay in their source queues' logs (redelivered after a restart)"
            );
            release.clear();
        }
        let persistence = self.persistence.clone();
        let Some(sink) = sink.filter(|_| !remote.is_empty() && !release.is_empty()) else {
            // At-most-once (or nothing remote): remote copies are sent once, unconfirmed.
            for (node, queues, m) in remote {
                if let Some(sink) = sink {
                    (sink.0)(&node, &self.name, queues, m, None);
                }
            }
            release_dead_lettered(persistence, release, synced_targets);
            return;
        };
        // At-least-once: the sources keep their messages until every remote home took its
        // copy (retried while a home is unreachable), as for a local target's fsync.
        let left = Arc::new(std::sync::atomic::AtomicUsize::new(remote.len()));
        let then = Arc::new(parking_lot::Mutex::new(Some((persistence, release))));
        for (node, queues, m) in remote {
            let (left, then) = (left.clone(), then.clone());
            let confirmed: Confirmed = Box::new(move || {
                if left.fetch_sub(1, Ordering::AcqRel) == 1
                    && let Some((p, release)) = then.lock().take()
                {
                    release_dead_lettered(p, release, synced_targets);
                }
            });
            (sink.0)(&node, &self.name, queues, m, Some(confirmed));
        }
    }
}

/// Acks dead-lettered messages in their source logs: after a group commit when a durable
/// target took a copy, at once otherwise.
fn release_dead_lettered(
    persistence: Option<Arc<Persistence>>,
    release: Vec<(Arc<Queue>, Vec<StorePos>)>,
    after_sync: bool,
) {
    if release.is_empty() {
        return;
    }
    {
        let ack_all = move |release: Vec<(Arc<Queue>, Vec<StorePos>)>| {
            for (q, positions) in release {
                q.ack_positions(&positions);
            }
        };
        let Some(p) = persistence.as_ref().filter(|_| after_sync) else {
            ack_all(release);
            return;
        };
        let rt = tokio::runtime::Handle::try_current().ok();
        p.syncer.request(Box::new(move |r| match r {
            // The syncer thread only hands the work over (queue locks are taken elsewhere).
            Ok(()) => match rt {
                Some(rt) => {
                    rt.spawn(async move { ack_all(release) });
                }
                None => ack_all(release),
            },
            Err(e) => tracing::error!(
                "dead-letter targets could not be synced ({e}); the messages stay in their source queues' logs"
            ),
        }));
    }
}

fn reason_index(r: DeadReason) -> usize {
    DeadReason::ALL.iter().position(|x| *x == r).unwrap_or(0)
}

/// The queues dead letters sent to `targets` (exchange, routing key) can reach.
fn reachable_queues(
    t: &Topology,
    targets: Vec<(String, Option<String>)>,
) -> std::collections::HashSet<String> {
    use std::collections::HashSet;
    let mut out = HashSet::new();
    if targets.is_empty() {
        return out;
    }
    let bindings = t.bindings();
    for (dlx, key) in targets {
        if let Some(k) = &key
            && let Ok(r) = t.route(&dlx, &[k.as_str()], None)
            && !r.queues.is_empty()
        {
            for id in r.queues {
                if let Some(q) = t.queue_by_id(id) {
                    out.insert(q.name.to_string());
                }
            }
            continue;
        }
        if dlx.is_empty() {
            continue;
        }
        // Everything reachable from the DLX through bindings.
        let mut seen = HashSet::new();
        let mut todo = vec![dlx];
        while let Some(x) = todo.pop() {
            if !seen.insert(x.clone()) {
                continue;
            }
            for b in bindings.iter().filter(|b| *b.source == *x) {
                if b.destination_is_queue {
                    out.insert(b.destination.to_string());
                } else {
                    todo.push(b.destination.to_string());
                }
            }
        }
    }
    out
}

/// The error for an operation on a queue that was deleted meanwhile.
pub fn queue_gone(name: &str, vhost: &str) -> AmqpError {
    AmqpError::not_found(format!("no queue '{name}' in vhost '{vhost}'"))
}

/// The effective arguments of queue `meta` in vhost `vhost` under `policies`. Should the merge
/// not parse (it cannot with validated policies), the declared arguments stand.
pub fn effective_args(
    policies: &[warren_core::policy::Policy],
    vhost: &str,
    meta: &QueueMeta,
) -> warren_core::args::QueueArgs {
    if policies.is_empty() {
        return meta.args.clone();
    }
    match warren_core::policy::effective_queue_args(policies, &meta.name, vhost, &meta.arguments) {
        (_, Ok(args)) => args,
        (p, Err(e)) => {
            tracing::warn!(queue = %meta.name, vhost, policy = ?p.map(|p| &p.name),
                "policy not applied: {}", e.reply_text());
            meta.args.clone()
        }
    }
}
