//! The broker's shared state: configuration, users, vhosts (each a topology plus its queue
//! handles), live connections, counters, and the publish path (route, enqueue, dead-letter).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use warren_codec::ShortStr;
use warren_core::MessageRef;
use warren_core::ids::ConnId;

use crate::auth::Users;
use crate::config::Config;
use crate::mailbox::ConnShared;
use crate::persist::Persistence;

use crate::stats::Metrics;
use crate::vhost::VHost;

/// The broker.
#[derive(Debug)]
pub struct Broker {
    /// Effective configuration.
    pub config: Config,
    /// Users and their credentials.
    pub users: Users,
    /// Per-vhost and per-user limits.
    pub limits: crate::limits::Limits,
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    connections: Mutex<HashMap<ConnId, Arc<ConnShared>>>,
    reply_to: Mutex<HashMap<String, ReplyTarget>>,
    next_id: AtomicU64,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The durable store (None for an in-memory broker).
    pub persistence: Option<Arc<Persistence>>,
    /// Memory and disk alarms.
    pub alarms: crate::alarms::Alarms,
    /// The cluster name (`/api/cluster-name`, the AMQP `cluster_name` server property).
    cluster_name: RwLock<String>,
    /// The cluster layer, when this node is clustered ([`crate::clustering`]).
    cluster: crate::clustering::Slot,
    /// Cross-node forwarding, when this node is clustered ([`crate::forward`]).
    forwarder: std::sync::OnceLock<crate::forward::Forwarder>,
    /// The vhosts' way to forward dead letters ([`crate::vhost::RemoteSink`]), set with the
    /// forwarder.
    remote_sink: Arc<std::sync::OnceLock<crate::vhost::RemoteSink>>,
    /// This node's replicas of quorum queues ([`crate::quorum`]).
    pub quorum: crate::quorum::Registry,
}

/// The cluster name until one is set.
pub const DEFAULT_CLUSTER_NAME: &str = "warren";

impl Broker {
    /// A broker with the default vhost `/` and the default user.
    pub fn new(config: Config) -> Arc<Broker> {
        Broker::build(config, None)
    }

    pub(crate) fn build(config: Config, persistence: Option<Arc<Persistence>>) -> Arc<Broker> {
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
            limits: Default::default(),
            vhosts: RwLock::new(HashMap::new()),
            connections: Mutex::new(HashMap::new()),
            reply_to: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            metrics,
            quorum: crate::quorum::Registry::new(persistence.clone()),
            persistence,
            alarms,
            cluster_name: RwLock::new(DEFAULT_CLUSTER_NAME.to_string()),
            cluster: Default::default(),
            forwarder: Default::default(),
            remote_sink: Default::default(),
        };
        b.add_vhost("/");
        Arc::new(b)
    }

    /// The cluster layer of a clustered node (`None`: clustering is off).
    pub fn cluster(&self) -> Option<&warren_cluster::Cluster> {
        self.cluster.get()
    }

    /// Deletes queue `name` of `v`, an auto-delete queue whose last consumer left: on a
    /// clustered node a replicated queue (durable, not exclusive) is deleted through the
    /// metadata group, so that every node drops its definition (in the background: the
    /// consumer's cancel does not wait for it); any other queue here at once.
    pub fn auto_delete_queue(self: &Arc<Self>, v: &crate::vhost::VHost, name: &str) {
        let replicated = self.cluster().is_some()
            && v.read_topology(|t| {
                t.queue(name)
                    .is_some_and(|q| q.durable && q.exclusive_owner.is_none())
            });
        if !replicated {
            v.delete_queue(name);
            return;
        }
        let m = warren_codec::methods::QueueDelete {
            queue: ShortStr::from(name),
            ..Default::default()
        };
        let change = crate::clustering::Change::define(&v.name, &self.config.node_name, m);
        let what = format!("delete queue '{name}'");
        let b = self.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::clustering::define(b, change, what).await {
                tracing::warn!("auto-delete of a queue not replicated: {}", e.text);
            }
        });
    }

    /// The cross-node forwarding layer of a clustered node.
    pub fn forwarder(&self) -> Option<&crate::forward::Forwarder> {
        self.forwarder.get()
    }

    /// Hands the started cluster layer to the broker (once, at start-up).
    /// Its peers' forwarded traffic is served from now on ([`crate::forward`]).
    pub(crate) fn set_cluster(self: &Arc<Self>, c: warren_cluster::Cluster) {
        c.set_app_handler(Arc::new(crate::forward::Handler::new(
            Arc::downgrade(self) as std::sync::Weak<dyn crate::forward::Host>
        )));
        let me = Arc::downgrade(self);
        let _ = self.remote_sink.set(crate::vhost::RemoteSink(Box::new(
            move |node, vhost, queues, msg, confirmed| {
                if let Some(f) = me.upgrade().as_ref().and_then(|b| b.forwarder()) {
                    match confirmed {
                        Some(c) => f.dead_letter(node, vhost, queues, msg, c),
                        None => {
                            f.publish(node, vhost, queues, msg, None, None);
                        }
                    }
                }
            },
        )));
        let _ = self.forwarder.set(crate::forward::Forwarder::new(
            Arc::downgrade(self) as std::sync::Weak<dyn crate::forward::Host>
        ));
        if let Some(f) = self.forwarder.get() {
            f.set_member_handler(crate::quorum_membership::handler());
        }
        self.cluster.set(c);
    }

    /// The cluster name.
    pub fn cluster_name(&self) -> String {
        self.cluster_name.read().clone()
    }

    /// Renames the cluster (durably: a definitions-log record, kept in memory only until a
    /// restart if the log cannot be written, as policies).
    pub fn set_cluster_name(&self, name: &str) {
        let mut n = self.cluster_name.write();
        if let Some(p) = &self.persistence {
            let _ = p.record_raw(&crate::persist::encode_access(&cluster_name_record(name)));
        }
        *n = name.to_string();
    }

    /// Applies a replayed cluster-name record; `false` if `rec` is not one.
    pub(crate) fn apply_cluster_name_record(&self, rec: &serde_json::Value) -> bool {
        if !is_cluster_name_record(rec) {
            return false;
        }
        if let Some(name) = rec.get("name").and_then(serde_json::Value::as_str) {
            *self.cluster_name.write() = name.to_string();
        }
        true
    }

    /// The cluster name as a record for a compacted definitions log (none while it is the
    /// default).
    pub(crate) fn cluster_name_snapshot(&self) -> Option<Bytes> {
        let n = self.cluster_name.read();
        (*n != DEFAULT_CLUSTER_NAME).then(|| crate::persist::encode_access(&cluster_name_record(&n)))
    }

    /// Creates a vhost if missing.
    pub fn add_vhost(&self, name: &str) -> Arc<VHost> {
        self.vhosts
            .write()
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(VHost::new(
                    name,
                    self.metrics.clone(),
                    self.persistence.clone(),
                    self.remote_sink.clone(),
                ))
            })
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

    /// Pushes every queue's buffered log writes (appends, acks, delivery records) to the OS.
    pub fn flush_queue_logs(&self) {
        for v in self.vhosts() {
            for q in v.queue_handles() {
                q.flush_log();
            }
        }
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
    pub fn unregister(&self, id: ConnId) {
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

/// A cluster-name definitions record (an access record, `op` `cluster-name`).
fn cluster_name_record(name: &str) -> serde_json::Value {
    serde_json::json!({"op": "cluster-name", "name": name})
}

/// Whether a replayed access record is a cluster-name record.
pub(crate) fn is_cluster_name_record(rec: &serde_json::Value) -> bool {
    rec.get("op").and_then(serde_json::Value::as_str) == Some("cluster-name")
}

impl crate::forward::Host for Broker {
    fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        Broker::vhost(self, name)
    }

    fn cluster(&self) -> Option<&warren_cluster::Cluster> {
        Broker::cluster(self)
    }

    fn forward_timeout(&self) -> std::time::Duration {
        self.config.cluster_timeouts.propose
    }

    fn syncer(&self) -> Option<&warren_store::SyncHandle> {
        self.persistence.as_ref().map(|p| &p.syncer)
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn next_id(&self) -> u64 {
        Broker::next_id(self)
    }

    fn forwarder(&self) -> Option<&crate::forward::Forwarder> {
        Broker::forwarder(self)
    }

    fn quorum(&self) -> &crate::quorum::Registry {
        &self.quorum
    }

    fn auto_delete(self: Arc<Self>, vhost: &str, queue: &str) {
        if let Some(v) = self.vhost(vhost) {
            self.auto_delete_queue(&v, queue);
        }
    }
}
