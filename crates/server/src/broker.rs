//! The broker's shared state: configuration, users, vhosts (each a topology plus its queue
//! handles), live connections, counters, and the publish path (route, enqueue, dead-letter).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use warren_codec::ShortStr;
use warren_core::deadletter::{DeadLetterTarget, DeadReason, dead_letter, is_cycle};
use warren_core::queue::Published;
use warren_core::topology::{QueueId, QueueMeta, Topology};
use warren_core::{AmqpError, AmqpResult, MessageRef};

use crate::auth::Users;
use crate::config::Config;
use crate::connection::ConnShared;
use crate::persist::Persistence;
use crate::queue::{Queue, Stored};

/// Milliseconds since the epoch (the `now` passed to core).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Broker-wide message counters (RabbitMQ's global counters).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Messages received from publishers.
    pub published: AtomicU64,
    /// Messages that reached no queue.
    pub unroutable: AtomicU64,
    /// Deliveries to consumers and basic.get.
    pub delivered: AtomicU64,
    /// Acknowledgements.
    pub acked: AtomicU64,
    /// Redeliveries.
    pub redelivered: AtomicU64,
    /// Dead-lettered messages by reason (rejected, expired, maxlen, delivery_limit).
    pub dead_lettered: [AtomicU64; 4],
    /// Messages dropped because their dead-letter exchange does not exist.
    pub dead_letter_dropped: AtomicU64,
    /// Messages dropped by a delivery limit with no dead-letter exchange.
    pub delivery_limit_dropped: AtomicU64,
    /// Publishes dropped as duplicates by a queue's or exchange's `x-deduplication-window`.
    pub duplicates_dropped: AtomicU64,
}

/// One vhost: its topology and the handles of its queues.
#[derive(Debug)]
pub struct VHost {
    /// Name.
    pub name: String,
    /// Exchanges, queues' metadata, bindings.
    pub topology: Mutex<Topology>,
    /// Live queue handles by id.
    pub queues: RwLock<HashMap<QueueId, Arc<Queue>>>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The durable store, when the broker runs with one.
    pub persistence: Option<Arc<Persistence>>,
    /// Policies (see [`crate::policies`]); a change holds the write lock while it re-applies
    /// them to every queue, a new queue holds the read lock until it is registered.
    pub policies: RwLock<Vec<warren_core::policy::Policy>>,
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
}

impl VHost {
    fn new(name: &str, metrics: Arc<Metrics>, persistence: Option<Arc<Persistence>>) -> VHost {
        VHost {
            name: name.to_string(),
            topology: Mutex::new(Topology::new(name)),
            queues: RwLock::new(HashMap::new()),
            metrics,
            persistence,
            policies: RwLock::new(Vec::new()),
        }
    }

    /// Appends a definitions record if the broker is durable.
    pub fn record(&self, m: impl Into<warren_codec::Method>) {
        if let Some(p) = &self.persistence {
            p.record(&self.name, &m.into());
        }
    }

    /// A queue handle by name.
    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        let id = self.topology.lock().queue(name)?.id;
        self.queues.read().get(&id).cloned()
    }

    /// Registers the handle of a newly declared queue.
    pub fn add_queue(self: &Arc<Self>, meta: QueueMeta) -> Arc<Queue> {
        let durable = meta.durable && meta.exclusive_owner.is_none();
        // No policy change between applying the policies and registering the queue.
        let policies = self.policies.read();
        let q = Queue::new(meta, Arc::downgrade(self));
        q.apply_effective_args(crate::policies::effective_args(&policies, &self.name, &q.meta));
        if durable && let Some(p) = &self.persistence {
            let dir = crate::persist::queue_dir(&self.name, &q.meta.name);
            q.open_log(&p.store, &dir);
            let meta = crate::persist::queue_record(&self.name, &q.meta);
            if let Err(e) = p.store.write_queue_meta(&dir, &meta) {
                tracing::warn!(queue = %q.meta.name, "cannot keep the queue's definition in its directory: {e}");
            }
        }
        self.queues.write().insert(q.meta.id, q.clone());
        drop(policies);
        q.start_expiry();
        q
    }

    /// Declares a queue (or checks an existing one): the one path for AMQP `queue.declare`, the
    /// HTTP API and definitions import. The vhost's queue limit (`limit`, 0 for none; passive
    /// declares and existing queues are never refused) is checked under the same topology lock
    /// as the declare, so concurrent declares cannot overshoot it. A new durable queue's
    /// definition is recorded (as a `queue.declare`) and its handle registered. Returns the
    /// handle and whether the queue was created.
    pub fn declare_queue(
        self: &Arc<Self>,
        d: &warren_core::topology::QueueDeclare<'_>,
        limit: u32,
    ) -> AmqpResult<(Arc<Queue>, bool)> {
        let (meta, created) = {
            let mut t = self.topology.lock();
            if limit > 0 && !d.passive && t.queue(d.name).is_none() && t.queues().count() >= limit as usize {
                return Err(AmqpError::precondition(format!(
                    "cannot declare queue '{}': queue limit in vhost '{}' ({limit}) is reached",
                    d.name, self.name
                )));
            }
            t.declare_queue(d)?
        };
        if !created {
            let q = self.queues.read().get(&meta.id).cloned();
            return q
                .map(|q| (q, false))
                .ok_or_else(|| queue_gone(d.name, &self.name));
        }
        if meta.durable && meta.exclusive_owner.is_none() {
            self.record(warren_codec::methods::QueueDeclare {
                queue: meta.name.clone(),
                durable: true,
                auto_delete: meta.auto_delete,
                arguments: d.arguments.clone(),
                ..Default::default()
            });
        }
        Ok((self.add_queue(meta), true))
    }

    /// Deletes a queue: topology entry, bindings, consumers (cancelled), handle.
    pub fn delete_queue(&self, name: &str) -> Option<u32> {
        let (meta, deleted) = self.topology.lock().delete_queue(name)?;
        let q = self.queues.write().remove(&meta.id)?;
        let count = q.mark_deleted();
        if meta.durable && meta.exclusive_owner.is_none() {
            self.record(warren_codec::methods::QueueDelete {
                queue: meta.name.clone(),
                ..Default::default()
            });
            if let Some(p) = &self.persistence
                && let Err(e) = p.store.delete_queue(&crate::persist::queue_dir(&self.name, name))
            {
                tracing::warn!(queue = name, "cannot delete queue log: {e}");
            }
        }
        for x in deleted.exchanges {
            self.record(warren_codec::methods::ExchangeDelete {
                exchange: x,
                ..Default::default()
            });
        }
        Some(count)
    }

    /// Routes and enqueues a message published to its exchange.
    pub fn publish(&self, msg: MessageRef, ttl: Option<u64>, now: u64) -> AmqpResult<PublishOutcome> {
        // The common case, no CC/BCC headers, routes by the one key without allocating.
        let single = [&*msg.routing_key];
        let all_keys: Vec<ShortStr>;
        let many: Vec<&str>;
        let key_refs: &[&str] = if msg.header("CC").is_some() || msg.header("BCC").is_some() {
            all_keys = msg.routing_keys();
            many = all_keys.iter().map(|k| &**k).collect();
            &many
        } else {
            &single
        };
        let routed = {
            let mut t = self.topology.lock();
            if t.exchange(&msg.exchange).is_some_and(|x| x.internal) {
                return Err(AmqpError::access_refused(format!(
                    "cannot publish to internal exchange '{}' in vhost '{}'",
                    &*msg.exchange, self.name
                )));
            }
            t.route_message(&msg.exchange, &key_refs, &msg.properties, now)?
        };
        let mut out = PublishOutcome::default();
        if routed.duplicate {
            self.metrics.duplicates_dropped.fetch_add(1, Ordering::Relaxed);
            out.duplicates += 1;
        }
        if routed.queues.is_empty() {
            return Ok(out);
        }
        let queues: Vec<Arc<Queue>> = {
            let map = self.queues.read();
            routed
                .queues
                .iter()
                .filter_map(|id| map.get(id).cloned())
                .collect()
        };
        let payload = (msg.is_persistent() && queues.iter().any(|q| q.is_durable()))
            .then(|| crate::persist::encode_message(&msg, now));
        for q in queues {
            let (p, stored) = q.publish(msg.clone(), ttl, now, payload.as_deref());
            match stored {
                Stored::Failed => {
                    out.store_failed += 1;
                    continue;
                }
                Stored::Written => out.persisted.push(q),
                Stored::NotNeeded => {}
            }
            match p {
                Published::Enqueued => out.enqueued += 1,
                Published::Rejected => out.rejected += 1,
                Published::Duplicate => out.duplicates += 1,
            }
        }
        Ok(out)
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
        positions: Vec<u64>,
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
        let mut release: Vec<(Arc<Queue>, Vec<u64>)> = Vec::new();
        if !positions.is_empty() {
            release.push((me.clone(), positions));
        }
        let mut synced_targets = false;
        // A durable target could not write its copy: the sources keep theirs.
        let mut target_failed = false;
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
                .lock()
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
            for t in targets {
                if is_cycle(&dl, &t.meta.name) {
                    continue;
                }
                let payload =
                    (dl.is_persistent() && t.is_durable()).then(|| crate::persist::encode_message(&dl, now));
                let (_, stored, more, more_positions) =
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
        if target_failed {
            tracing::error!(
                "a dead-letter target could not store its copy; the messages stay in their source queues' logs (redelivered after a restart)"
            );
            return;
        }
        self.release_dead_lettered(release, synced_targets);
    }

    /// Acks dead-lettered messages in their source logs: after a group commit when a durable
    /// target took a copy, at once otherwise.
    fn release_dead_lettered(&self, release: Vec<(Arc<Queue>, Vec<u64>)>, after_sync: bool) {
        if release.is_empty() {
            return;
        }
        let ack_all = move |release: Vec<(Arc<Queue>, Vec<u64>)>| {
            for (q, positions) in release {
                q.ack_positions(&positions);
            }
        };
        let Some(p) = self.persistence.as_ref().filter(|_| after_sync) else {
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

/// The broker.
#[derive(Debug)]
pub struct Broker {
    /// Effective configuration.
    pub config: Config,
    /// Users and their credentials.
    pub users: Users,
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    connections: Mutex<HashMap<u64, Arc<ConnShared>>>,
    reply_to: Mutex<HashMap<String, ReplyTarget>>,
    next_id: AtomicU64,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The durable store (None for an in-memory broker).
    pub persistence: Option<Arc<Persistence>>,
    /// Memory and disk alarms.
    pub alarms: crate::alarms::Alarms,
}

impl Broker {
    /// Opens the durable store under `config.data_dir`, replays definitions, recovers every
    /// durable queue's messages and compacts the definitions log.
    pub fn open(config: Config) -> Result<Arc<Broker>, String> {
        let (p, records) = Persistence::open(&config.data_dir, config.store_fs.clone())
            .map_err(|e| format!("cannot open store in {}: {e}", config.data_dir.display()))?;
        let broker = Broker::build(config, Some(Arc::new(p)));
        let n = records.len();
        broker.replay_definitions(records);
        let mut recovered = 0;
        for v in broker.vhosts() {
            let metas: Vec<QueueMeta> = v.topology.lock().queues().cloned().collect();
            for meta in metas {
                let q = v.add_queue(meta);
                recovered += q.counts().ready as u64;
            }
        }
        let snapshot = crate::persist::snapshot(&broker);
        if let Some(p) = &broker.persistence {
            p.rewrite(&snapshot);
            let live = broker.durable_queue_dirs();
            // Never deleted: a directory no definition names (a damaged or lost definitions
            // log) is moved to quarantine/, where it can be re-attached.
            crate::persist::quarantine_unknown(p, &live);
            crate::persist::log_recovery_summary(p);
        }
        tracing::info!(
            definitions = n,
            compacted = snapshot.len(),
            messages = recovered,
            "store opened"
        );
        Ok(broker)
    }

    /// Applies definitions-log records (access records, then topology methods) in order.
    pub fn replay_definitions(&self, records: Vec<bytes::Bytes>) {
        // Once the log holds the user database, it (not the configured default user) decides
        // who may log in: a broker creates its default user on its first start only.
        if records
            .iter()
            .filter_map(crate::persist::decode_access)
            .any(|a| !crate::policies::is_policy_record(&a))
        {
            self.users.clear();
        }
        for rec in records {
            if let Some(a) = crate::persist::decode_access(&rec) {
                if !crate::policies::apply_record(self, &a) {
                    crate::access::apply_record(self, &a);
                }
                continue;
            }
            match crate::persist::decode_definition(&rec) {
                Some((vhost, m)) => crate::persist::replay(self, &vhost, m),
                None => tracing::warn!("undecodable definitions record skipped"),
            }
        }
    }

    /// The queue-log directory names of every queue the definitions name.
    pub fn durable_queue_dirs(&self) -> std::collections::HashSet<String> {
        self.vhosts()
            .iter()
            .flat_map(|v| {
                v.topology
                    .lock()
                    .queues()
                    .map(|q| crate::persist::queue_dir(&v.name, &q.name))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// A broker with the default vhost `/` and the default user.
    pub fn new(config: Config) -> Arc<Broker> {
        Broker::build(config, None)
    }

    fn build(config: Config, persistence: Option<Arc<Persistence>>) -> Arc<Broker> {
        let metrics = Arc::new(Metrics::default());
        let users = Users::new(&config.default_user, &config.default_pass);
        let memory_limit = config.memory_limit.unwrap_or_else(|| {
            crate::alarms::total_memory()
                .map(|t| (t as f64 * config.memory_high_watermark) as u64)
                .unwrap_or(0)
        });
        let alarms = crate::alarms::Alarms::new(memory_limit, config.disk_free_limit);
        let b = Broker {
            config,
            users,
            vhosts: RwLock::new(HashMap::new()),
            connections: Mutex::new(HashMap::new()),
            reply_to: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            metrics,
            persistence,
            alarms,
        };
        b.add_vhost("/");
        Arc::new(b)
    }

    /// Creates a vhost if missing.
    pub fn add_vhost(&self, name: &str) -> Arc<VHost> {
        self.vhosts
            .write()
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(VHost::new(name, self.metrics.clone(), self.persistence.clone())))
            .clone()
    }

    /// Removes a vhost (the management API's DELETE /api/vhosts); the caller deletes its
    /// queues and closes its connections.
    pub fn remove_vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.write().remove(name)
    }

    /// A vhost by name.
    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().get(name).cloned()
    }

    /// Every vhost.
    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        self.vhosts.read().values().cloned().collect()
    }

    /// A fresh id for connections and consumers.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a live connection.
    pub fn register(&self, c: Arc<ConnShared>) {
        self.connections.lock().insert(c.id, c);
    }

    /// Forgets a closed connection.
    pub fn unregister(&self, id: u64) {
        self.connections.lock().remove(&id);
    }

    /// Live connections.
    pub fn connections(&self) -> Vec<Arc<ConnShared>> {
        self.connections.lock().values().cloned().collect()
    }

    /// Registers a direct reply-to consumer under its `amq.rabbitmq.reply-to.…` name.
    pub fn add_reply_consumer(&self, name: String, target: ReplyTarget) {
        self.reply_to.lock().insert(name, target);
    }

    /// Forgets a direct reply-to consumer.
    pub fn remove_reply_consumer(&self, name: &str) {
        self.reply_to.lock().remove(name);
    }

    /// Delivers a reply published to `amq.rabbitmq.reply-to.…`. False if nobody waits for it.
    pub fn deliver_reply(&self, name: &str, msg: MessageRef) -> bool {
        let target = self.reply_to.lock().get(name).cloned();
        match target {
            Some(t) => t.conn.direct_reply(t.channel, t.tag, msg),
            None => false,
        }
    }
}

/// The pseudo-queue RPC clients consume replies from.
pub const REPLY_TO_QUEUE: &str = "amq.rabbitmq.reply-to";

/// Where replies to one direct reply-to consumer go.
#[derive(Debug, Clone)]
pub struct ReplyTarget {
    /// The consumer's connection.
    pub conn: Arc<ConnShared>,
    /// Its channel number.
    pub channel: u16,
    /// Its consumer tag.
    pub tag: ShortStr,
}

/// Random suffix in RabbitMQ's style for `amq.gen-…` and `amq.ctag-…` names.
pub fn random_name(prefix: &str) -> ShortStr {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    let suffix: String = (0..22)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    ShortStr::from(format!("{prefix}{suffix}"))
}

/// The error for an operation on a queue that was deleted meanwhile.
pub fn queue_gone(name: &str, vhost: &str) -> AmqpError {
    AmqpError::not_found(format!("no queue '{name}' in vhost '{vhost}'"))
}
