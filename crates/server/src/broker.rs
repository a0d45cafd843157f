//! The broker's shared state: configuration, users, vhosts (each a topology plus its queue
//! handles), live connections, counters, and the publish path (route, enqueue, dead-letter).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use warren_codec::ShortStr;
use warren_core::{AmqpError, MessageRef};

use crate::auth::Users;
use crate::config::Config;
use crate::connection::ConnShared;
use crate::persist::Persistence;

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
    /// Times a connection parked on a queue's credit (credit flow).
    pub flow_entered: AtomicU64,
    /// The rest feed the Prometheus families of [`crate::http::prometheus`] (RabbitMQ's
    /// connection churn and global counters). Connections accepted.
    pub connections_opened: AtomicU64,
    /// Connections ended.
    pub connections_closed: AtomicU64,
    /// Channels opened.
    pub channels_opened: AtomicU64,
    /// Channels closed.
    pub channels_closed: AtomicU64,
    /// Successful queue.declare (passive and existing queues included), created, deleted.
    pub queues_declared: AtomicU64,
    /// Queues created.
    pub queues_created: AtomicU64,
    /// Queues deleted (any reason).
    pub queues_deleted: AtomicU64,
    /// Messages received on channels in confirm mode.
    pub received_confirm: AtomicU64,
    /// Messages routed to at least one queue.
    pub routed: AtomicU64,
    /// Enqueues (one per queue a message reached).
    pub enqueued: AtomicU64,
    /// Unroutable mandatory messages returned.
    pub unroutable_returned: AtomicU64,
    /// Publisher confirms (basic.ack) sent, one per message.
    pub confirmed: AtomicU64,
    /// Deliveries by basic.consume with manual, automatic ack; by basic.get manual, automatic.
    pub delivered_by: [AtomicU64; 4],
    /// basic.get that found the queue empty.
    pub get_empty: AtomicU64,
    /// Channels that have published (a gauge).
    pub publishers: AtomicU64,
}

/// Indexes of [`Metrics::delivered_by`].
pub const CONSUME_MANUAL: usize = 0;
/// basic.consume with no_ack.
pub const CONSUME_AUTO: usize = 1;
/// basic.get with manual ack.
pub const GET_MANUAL: usize = 2;
/// basic.get with no_ack.
pub const GET_AUTO: usize = 3;

pub use crate::vhost::{PublishOutcome, VHost};

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
            for q in v.open_recovered_queues() {
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
                v.read_topology(|t| {
                    t.queues()
                        .map(|q| crate::persist::queue_dir(&v.name, &q.name))
                        .collect::<Vec<_>>()
                })
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
        self.metrics.connections_opened.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets a closed connection.
    pub fn unregister(&self, id: u64) {
        if self.connections.lock().remove(&id).is_some() {
            self.metrics.connections_closed.fetch_add(1, Ordering::Relaxed);
        }
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
