//! The server's side of clustering: it owns the node's [`warren_cluster::Cluster`] handle
//! (started from the `--cluster-*` settings, Raft state in `<data-dir>/cluster`), the
//! replicated definitions commands ([`Change`]: vhosts, users, permissions, topic permissions,
//! exchanges, durable queues (with their home node), bindings, policies, limits and the cluster
//! name, encoded as JSON in the Raft log) and their one applier ([`Definitions`], the [`warren_cluster::Apply`] the
//! cluster calls on every node, in log order). Management handlers call [`change`]: on a
//! clustered node it proposes the command and waits for a majority to commit it; on a single
//! node it applies the command directly, exactly as before clustering existed. Both paths run
//! [`apply_local`], the same broker methods (the vhost service, the durable access stores),
//! so a definition is changed the same way whether or not Raft carried it. AMQP channels
//! propose topology changes through [`define`] (see `crate::connection` for how a channel waits
//! for the commit without holding a lock).

use std::sync::{Arc, Weak};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use warren_cluster::{Apply, Cluster, ClusterConfig, ClusterError};

use crate::auth::{Permission, User};
use crate::broker::Broker;
use crate::config::Config;

/// A change to the replicated definitions, as proposed to the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// Create a vhost (no-op if it exists); `grant`: the creating user, given full
    /// permissions on it if it has none (RabbitMQ's behaviour for the creating administrator).
    PutVhost {
        /// Vhost name.
        name: String,
        /// Who created it.
        grant: Option<String>,
    },
    /// Delete a vhost, its queues and exchanges; close its connections on every node.
    DeleteVhost {
        /// Vhost name.
        name: String,
    },
    /// Create or update a user; `password_hash: None` keeps an existing user's hash (a new
    /// user then has none: passwordless).
    PutUser {
        /// User name.
        name: String,
        /// RabbitMQ SHA-256 hash (hashed by the proposer: one salt on every node).
        password_hash: Option<String>,
        /// Tags.
        tags: Vec<String>,
    },
    /// Delete a user.
    DeleteUser {
        /// User name.
        name: String,
    },
    /// Set a user's permissions on a vhost.
    SetPermission {
        /// User.
        user: String,
        /// Vhost.
        vhost: String,
        /// Configure regex.
        configure: String,
        /// Write regex.
        write: String,
        /// Read regex.
        read: String,
    },
    /// Clear a user's permissions on a vhost.
    ClearPermission {
        /// User.
        user: String,
        /// Vhost.
        vhost: String,
    },
    /// A topology change in a vhost: `method` is the AMQP method (exchange.declare/delete,
    /// queue.declare/delete, queue.bind/unbind, exchange.bind/unbind) encoded as the
    /// definitions log encodes it; `node`: the proposing node, the home of a declared queue.
    Define {
        /// Vhost.
        vhost: String,
        /// Proposing node.
        node: String,
        /// The encoded method.
        method: Vec<u8>,
    },
    /// Create or replace a policy (`definition`: the policy as `/api/policies` takes it).
    PutPolicy {
        /// Vhost.
        vhost: String,
        /// Policy name.
        name: String,
        /// Pattern, apply-to, priority, definition.
        policy: Value,
    },
    /// Delete a policy.
    DeletePolicy {
        /// Vhost.
        vhost: String,
        /// Policy name.
        name: String,
    },
    /// Replace a vhost's or user's limits (an empty set clears them).
    SetLimits {
        /// `vhost` or `user`.
        scope: String,
        /// The vhost or user.
        owner: String,
        /// Limit name to value.
        limits: std::collections::BTreeMap<String, i64>,
    },
    /// Set a user's topic permission on one exchange of a vhost.
    SetTopicPermission {
        /// User.
        user: String,
        /// Vhost.
        vhost: String,
        /// Exchange.
        exchange: String,
        /// Write regex.
        write: String,
        /// Read regex.
        read: String,
    },
    /// Clear a user's topic permissions on a vhost (all, or one exchange's).
    ClearTopicPermissions {
        /// User.
        user: String,
        /// Vhost.
        vhost: String,
        /// Only this exchange's.
        exchange: Option<String>,
    },
    /// Set the cluster name (the `cluster_name` global parameter).
    SetClusterName {
        /// The name.
        name: String,
    },
}

impl Change {
    /// A [`Change::Define`] of `method` in `vhost`, proposed by `node`.
    pub fn define(vhost: &str, node: &str, method: impl Into<warren_codec::Method>) -> Change {
        let mut out = bytes::BytesMut::new();
        method.into().encode(&mut out);
        Change::Define {
            vhost: vhost.to_string(),
            node: node.to_string(),
            method: out.to_vec(),
        }
    }
}

/// What applying a [`Change`] did (the same answer on every node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A new object.
    Created,
    /// An existing object changed (or left as it was).
    Updated,
    /// Deleted.
    Deleted,
    /// The object to delete does not exist.
    NotFound,
    /// Refused (bad regex, unknown user …), with RabbitMQ's reason.
    Invalid(String),
    /// A topology change refused with an AMQP error (code, text without the `NAME - ` prefix).
    Refused(u16, String),
}

impl Outcome {
    /// The AMQP error of a refused topology change (`None`: it was made).
    pub fn amqp_error(&self) -> Option<warren_core::AmqpError> {
        match self {
            Outcome::Refused(code, text) => Some(warren_core::AmqpError::new(
                warren_codec::ReplyCode::from_code(*code).unwrap_or(warren_codec::ReplyCode::InternalError),
                text.clone(),
            )),
            Outcome::Invalid(text) => Some(warren_core::AmqpError::precondition(text.clone())),
            _ => None,
        }
    }

    fn of<T>(r: warren_core::AmqpResult<T>, ok: impl FnOnce(T) -> Outcome) -> Outcome {
        match r {
            Ok(t) => ok(t),
            Err(e) => Outcome::Refused(e.code.code(), e.text),
        }
    }
}

/// Why a change could not be made on a clustered node.
#[derive(Debug, Clone)]
pub struct Unavailable(pub String);

/// Makes `c`: through the cluster when this node is clustered (committed by a majority, then
/// applied on every node), else directly.
pub async fn change(broker: &Broker, c: Change) -> Result<Outcome, Unavailable> {
    let Some(cluster) = broker.cluster() else {
        return Ok(apply_local(broker, &c));
    };
    let bytes = serde_json::to_vec(&c).expect("a Change encodes");
    match cluster.propose(bytes).await {
        Ok(answer) => serde_json::from_slice(&answer)
            .map_err(|e| Unavailable(format!("undecodable answer from the cluster: {e}"))),
        Err(ClusterError::NoQuorum) => Err(Unavailable(
            "no quorum: the cluster has no reachable majority, so the definition was not \
             changed (retry once a majority of nodes is up)"
                .into(),
        )),
        Err(e) => Err(Unavailable(format!("cluster unavailable: {e}"))),
    }
}

/// Makes a topology change through the cluster (committed by a majority, applied on every
/// node) and answers with the AMQP error the channel closes with, if it was refused or could
/// not be committed: RabbitMQ 4's (Khepri's) `541 INTERNAL_ERROR - Could not <what> in vhost
/// 'V' on node 'N' because the metadata store operation timed out`, a connection error.
/// `what`: e.g. `declare queue 'q'`.
pub async fn define(broker: Arc<Broker>, c: Change, what: String) -> warren_core::AmqpResult<Outcome> {
    let vhost = match &c {
        Change::Define { vhost, .. } => vhost.clone(),
        _ => String::new(),
    };
    let declared_queue = match &c {
        Change::Define { method, .. } => {
            match warren_codec::Method::decode(&bytes::Bytes::copy_from_slice(method)) {
                Ok(warren_codec::Method::QueueDeclare(q)) => Some(q.queue.to_string()),
                _ => None,
            }
        }
        _ => None,
    };
    match change(&broker, c).await {
        Ok(o) => match o.amqp_error() {
            Some(e) => Err(e),
            None => {
                if let (Outcome::Created, Some(q)) = (&o, declared_queue) {
                    quorum_ready(&broker, &vhost, &q).await;
                }
                Ok(o)
            }
        },
        Err(Unavailable(reason)) => {
            tracing::warn!(vhost, what, "topology change not committed: {reason}");
            Err(warren_core::AmqpError::internal(format!(
                "Could not {what} in vhost '{vhost}' on node '{}' because the metadata store \
                 operation timed out",
                broker.config.node_name
            )))
        }
    }
}

/// After this node declared queue `name`: if it is a quorum queue, waits (at most the cluster
/// operation timeout) until this node can take publishes for it — it serves the queue (its
/// member was elected the group's leader and holds the replica) or forwards to the leader's
/// node — so that a publish right after `declare-ok` is not refused for want of a leader.
/// RabbitMQ likewise answers `declare-ok` once the queue's Ra cluster has started.
async fn quorum_ready(broker: &Broker, vhost: &str, name: &str) {
    if broker.cluster().is_none() {
        return; // a single node's quorum queue is served by its store
    }
    let deadline = tokio::time::Instant::now() + broker.config.cluster_timeouts.propose;
    crate::quorum::wait_until(deadline, || {
        broker.vhost(vhost).is_none_or(|v| {
            let quorum = v.read_topology(|t| t.queue(name).is_some_and(|m| m.args.quorum));
            !quorum || v.queue(name).is_none_or(|q| q.replicator().is_some())
        })
    })
    .await;
}

/// Applies a [`Change::Define`] through the vhost service.
fn apply_define(broker: &Broker, vhost: &str, node: &str, method: &[u8]) -> Outcome {
    use warren_codec::Method;
    use warren_core::topology::ExchangeDeclare;

    let Some(v) = broker.vhost(vhost) else {
        return Outcome::Refused(
            warren_codec::ReplyCode::NotFound.code(),
            format!("no vhost '{vhost}'"),
        );
    };
    let m = match Method::decode(&bytes::Bytes::copy_from_slice(method)) {
        Ok(m) => m,
        Err(e) => return Outcome::Invalid(format!("undecodable method: {e}")),
    };
    let binding = |source: &str, destination: &str, to_queue, routing_key: &str, arguments, bind| {
        let b = crate::vhost::BindingRef {
            source,
            destination,
            to_queue,
            routing_key,
            arguments,
        };
        let r = if bind {
            v.bind(&b, None)
        } else {
            v.unbind(&b, None)
        };
        Outcome::of(r, |_| if bind { Outcome::Created } else { Outcome::Deleted })
    };
    let created = |c: bool| if c { Outcome::Created } else { Outcome::Updated };
    match &m {
        Method::ExchangeDeclare(x) => Outcome::of(
            v.declare_exchange(&ExchangeDeclare {
                name: &x.exchange,
                kind: &x.kind,
                passive: false,
                durable: x.durable,
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments: &x.arguments,
            }),
            created,
        ),
        Method::ExchangeDelete(x) => {
            if !v.read_topology(|t| t.exchange(&x.exchange).is_some()) {
                return Outcome::NotFound;
            }
            Outcome::of(v.delete_exchange(&x.exchange, x.if_unused), |_| Outcome::Deleted)
        }
        Method::QueueDeclare(q) => {
            let d = crate::vhost::recorded_queue(q);
            let limit = broker.queue_limit(vhost);
            let outcome = if node == broker.config.node_name {
                Outcome::of(v.declare_queue(&d, limit), |(_, c)| created(c))
            } else {
                Outcome::of(v.declare_remote_queue(&d, node, limit), created)
            };
            let meta = v
                .read_topology(|t| t.queue(&q.queue).cloned())
                .filter(|m| m.args.quorum);
            if let (Outcome::Created, Some(meta), Some(c)) = (&outcome, meta, broker.cluster()) {
                let size = q
                    .arguments
                    .get("x-quorum-initial-group-size")
                    .and_then(|f| warren_core::args::integer(f).ok())
                    .and_then(|i| u64::try_from(i).ok());
                let host = broker.forwarder().map(|f| f.host()).unwrap_or_else(|| {
                    std::sync::Weak::<crate::broker::Broker>::new()
                        as std::sync::Weak<dyn crate::forward::Host>
                });
                // RabbitMQ's `balanced` (and its older names): the leader on the member
                // leading the fewest queues, not on the declaring client's node. The argument
                // wins over a policy's `queue-leader-locator` (`rabbit_queue_location`).
                let policy = v.queue_policy(&meta);
                let effective = warren_core::policy::effective_arguments(policy.as_ref(), &q.arguments);
                let balanced = matches!(
                    effective.get("x-queue-leader-locator").and_then(|f| f.as_str()),
                    Some("balanced" | "least-leaders" | "random")
                );
                crate::quorum::declared(host, c, vhost, &q.queue, (node, size, balanced));
            }
            outcome
        }
        Method::QueueDelete(q) => match v.delete_queue(&q.queue) {
            Some(_) => {
                if let Some(c) = broker.cluster() {
                    crate::quorum::deleted(&broker.quorum, c, vhost, &q.queue);
                }
                Outcome::Deleted
            }
            None => Outcome::NotFound,
        },
        Method::QueueBind(b) => binding(&b.exchange, &b.queue, true, &b.routing_key, &b.arguments, true),
        Method::QueueUnbind(b) => binding(&b.exchange, &b.queue, true, &b.routing_key, &b.arguments, false),
        Method::ExchangeBind(b) => binding(
            &b.source,
            &b.destination,
            false,
            &b.routing_key,
            &b.arguments,
            true,
        ),
        Method::ExchangeUnbind(b) => binding(
            &b.source,
            &b.destination,
            false,
            &b.routing_key,
            &b.arguments,
            false,
        ),
        other => Outcome::Invalid(format!("not a topology change: {}", other.name())),
    }
}

/// Applies `c` to this node's broker: the code path of a single node and of every cluster
/// member applying a committed command.
pub fn apply_local(broker: &Broker, c: &Change) -> Outcome {
    match c {
        Change::Define { vhost, node, method } => apply_define(broker, vhost, node, method),
        Change::PutPolicy { vhost, name, policy } => match broker.put_policy_json(vhost, name, policy) {
            Err(e) => Outcome::Invalid(e),
            Ok(None) => Outcome::NotFound,
            Ok(Some(true)) => Outcome::Created,
            Ok(Some(false)) => Outcome::Updated,
        },
        Change::DeletePolicy { vhost, name } => {
            if broker.delete_policy(vhost, name) {
                Outcome::Deleted
            } else {
                Outcome::NotFound
            }
        }
        Change::SetLimits { scope, owner, limits } => {
            match broker.replace_limits_in(scope, owner, limits.clone()) {
                None => Outcome::Invalid(format!("unknown limits scope '{scope}'")),
                Some(true) => Outcome::Updated,
                Some(false) => Outcome::Created,
            }
        }
        Change::SetTopicPermission {
            user,
            vhost,
            exchange,
            write,
            read,
        } => match broker.set_topic_permission(user, vhost, exchange, write, read) {
            Ok(true) => Outcome::Created,
            Ok(false) => Outcome::Updated,
            Err(e) => Outcome::Invalid(e.to_string()),
        },
        Change::ClearTopicPermissions {
            user,
            vhost,
            exchange,
        } => {
            if broker.clear_topic_permissions(user, vhost, exchange.as_deref()) {
                Outcome::Deleted
            } else {
                Outcome::NotFound
            }
        }
        Change::SetClusterName { name } => {
            if *name == broker.cluster_name() {
                return Outcome::Updated;
            }
            broker.set_cluster_name(name);
            Outcome::Updated
        }
        Change::PutVhost { name, grant } => {
            if !broker.create_vhost(name) {
                return Outcome::Updated;
            }
            if let Some(user) = grant
                && broker.users.permission(user, name).is_none()
            {
                let _ = broker.set_permission(user, name, Permission::all());
            }
            Outcome::Created
        }
        Change::DeleteVhost { name } => {
            let Some(v) = broker.remove_vhost(name) else {
                return Outcome::NotFound;
            };
            for conn in broker.connections() {
                if conn.info.lock().vhost == *name {
                    // RabbitMQ's text: `CONNECTION_FORCED - vhost 'NAME' is deleted`.
                    conn.close(
                        warren_codec::ReplyCode::ConnectionForced,
                        format!("vhost '{name}' is deleted"),
                    );
                }
            }
            v.delete_contents();
            broker.forget_vhost(name);
            Outcome::Deleted
        }
        Change::PutUser {
            name,
            password_hash,
            tags,
        } => {
            let existed = broker.users.get(name);
            let password_hash = match password_hash {
                Some(h) => h.clone(),
                None => existed
                    .as_ref()
                    .map(|u| u.password_hash.clone())
                    .unwrap_or_default(),
            };
            broker.put_user(User {
                name: name.clone(),
                password_hash,
                tags: tags.clone(),
            });
            if existed.is_some() {
                Outcome::Updated
            } else {
                Outcome::Created
            }
        }
        Change::DeleteUser { name } => {
            if broker.delete_user(name) {
                Outcome::Deleted
            } else {
                Outcome::NotFound
            }
        }
        Change::SetPermission {
            user,
            vhost,
            configure,
            write,
            read,
        } => {
            let p = match Permission::new(configure, write, read) {
                Ok(p) => p,
                Err(e) => return Outcome::Invalid(e.to_string()),
            };
            let existed = broker.users.permission(user, vhost).is_some();
            match broker.set_permission(user, vhost, p) {
                Err(e) => Outcome::Invalid(e.to_string()),
                Ok(()) if existed => Outcome::Updated,
                Ok(()) => Outcome::Created,
            }
        }
        Change::ClearPermission { user, vhost } => {
            if broker.clear_permission(user, vhost) {
                Outcome::Deleted
            } else {
                Outcome::NotFound
            }
        }
    }
}

/// The replicated state machine's applier: decodes each committed [`Change`] and applies it
/// to the broker ([`apply_local`]); snapshots are the replicated definitions as JSON.
///
/// The cluster layer rebuilds its applier at every start (the latest snapshot, then every
/// committed entry after it), but the broker's definitions are durable on their own. So the
/// applier records the last log index it applied (`<data-dir>/cluster/applied`, replaced
/// atomically after each apply) and skips what the broker already holds: entries at or below
/// that index, and snapshots no newer than it. Replaying an old `delete_vhost` would otherwise
/// delete a vhost re-created since, with the queues declared in it meanwhile. A crash between
/// an apply and its record re-applies that one entry, which every [`Change`] tolerates.
pub struct Definitions {
    broker: Weak<Broker>,
    /// The `applied` file.
    file: std::path::PathBuf,
    /// The last applied index (as recorded in `file`).
    applied: std::sync::atomic::AtomicU64,
}

/// The name of the applier's last-applied-index file in `<data-dir>/cluster`.
pub const APPLIED_FILE: &str = "applied";

impl Definitions {
    /// The applier of `broker`, with its last applied index read from `dir/applied` (0 when
    /// missing or unreadable: everything is applied again, which is safe, only slower).
    pub fn open(broker: &Arc<Broker>, dir: &std::path::Path) -> Definitions {
        let file = dir.join(APPLIED_FILE);
        let applied = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        Definitions {
            broker: Arc::downgrade(broker),
            file,
            applied: std::sync::atomic::AtomicU64::new(applied),
        }
    }

    fn applied(&self) -> u64 {
        self.applied.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records `index` as applied: in memory, and durably (temp file, fsync, rename).
    fn record(&self, index: u64) {
        self.applied.store(index, std::sync::atomic::Ordering::Release);
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = self.file.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, index.to_string().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.file)?;
            if let Some(dir) = self.file.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!(index, error = %e, "cannot record the applied cluster index; entries after the last recorded one are applied again at the next start");
        }
    }
}

impl Apply for Definitions {
    fn apply(&self, index: u64, cmd: &[u8]) -> Vec<u8> {
        if index <= self.applied() {
            // Already in the broker's own durable definitions (a replay at start).
            let outcome = match serde_json::from_slice::<Change>(cmd) {
                Ok(_) => Outcome::Updated,
                Err(e) => Outcome::Invalid(format!("undecodable command: {e}")),
            };
            return serde_json::to_vec(&outcome).expect("an Outcome encodes");
        }
        let outcome = match (self.broker.upgrade(), serde_json::from_slice::<Change>(cmd)) {
            (Some(b), Ok(c)) => apply_local(&b, &c),
            (None, _) => Outcome::Invalid("the broker is shutting down".into()),
            (_, Err(e)) => {
                tracing::error!(index, error = %e, "undecodable cluster command skipped");
                Outcome::Invalid(format!("undecodable command: {e}"))
            }
        };
        self.record(index);
        serde_json::to_vec(&outcome).expect("an Outcome encodes")
    }

    fn snapshot(&self) -> Vec<u8> {
        let Some(b) = self.broker.upgrade() else {
            return b"{}".to_vec();
        };
        let mut vhosts: Vec<String> = b.vhosts().iter().map(|v| v.name.to_string()).collect();
        vhosts.sort();
        let users: Vec<Value> = b
            .users
            .list()
            .iter()
            .map(|u| json!({"name": u.name, "password_hash": u.password_hash, "tags": u.tags}))
            .collect();
        let permissions: Vec<Value> = b
            .users
            .permissions()
            .iter()
            .map(|(u, v, p)| {
                json!({"user": u, "vhost": v, "configure": p.configure, "write": p.write, "read": p.read})
            })
            .collect();
        serde_json::to_vec(&json!({
            "applied": self.applied(),
            "vhosts": vhosts, "users": users, "permissions": permissions,
            "changes": replicated_changes(&b),
        }))
        .expect("JSON encodes")
    }

    /// Adds and updates what the snapshot holds; users and permissions it does not hold are
    /// removed. Vhosts it does not hold are kept (their queues may hold messages). A snapshot
    /// no newer than what the broker already applied is skipped.
    fn restore(&self, snap: &[u8]) {
        let Some(b) = self.broker.upgrade() else {
            return;
        };
        let Ok(doc) = serde_json::from_slice::<Value>(snap) else {
            tracing::error!("undecodable cluster snapshot ignored");
            return;
        };
        let index = doc["applied"].as_u64().unwrap_or(0);
        if index != 0 && index <= self.applied() {
            return;
        }
        let strs = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
        for v in doc["vhosts"].as_array().into_iter().flatten() {
            if let Some(name) = v.as_str() {
                b.create_vhost(name);
            }
        }
        let mut users = std::collections::HashSet::new();
        for u in doc["users"].as_array().into_iter().flatten() {
            let tags: Vec<String> = u["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            users.insert(strs(u, "name"));
            apply_local(
                &b,
                &Change::PutUser {
                    name: strs(u, "name"),
                    password_hash: Some(strs(u, "password_hash")),
                    tags,
                },
            );
        }
        for u in b.users.list() {
            if !users.contains(&u.name) {
                b.delete_user(&u.name);
            }
        }
        let mut perms = std::collections::HashSet::new();
        for p in doc["permissions"].as_array().into_iter().flatten() {
            perms.insert((strs(p, "user"), strs(p, "vhost")));
            apply_local(
                &b,
                &Change::SetPermission {
                    user: strs(p, "user"),
                    vhost: strs(p, "vhost"),
                    configure: strs(p, "configure"),
                    write: strs(p, "write"),
                    read: strs(p, "read"),
                },
            );
        }
        for (u, v, _) in b.users.permissions() {
            if !perms.contains(&(u.clone(), v.clone())) {
                b.clear_permission(&u, &v);
            }
        }
        // Topology, policies, limits, topic permissions, cluster name: added or updated
        // (nothing a snapshot does not hold is removed: a node restoring one never accepted a
        // change the cluster did not commit).
        for c in doc["changes"].as_array().into_iter().flatten() {
            match serde_json::from_value::<Change>(c.clone()) {
                Ok(c) => {
                    apply_local(&b, &c);
                }
                Err(e) => tracing::error!(error = %e, "undecodable change in a cluster snapshot skipped"),
            }
        }
        if index != 0 {
            self.record(index);
        }
    }
}

/// The replicated definitions beyond vhosts, users and permissions, as the changes that make
/// them (a snapshot's `changes`): durable exchanges, durable queues with their home node,
/// durable bindings, policies, limits, topic permissions and the cluster name.
pub fn replicated_changes(b: &Broker) -> Vec<Value> {
    use warren_codec::ShortStr;
    use warren_codec::methods as wm;
    let me = b.config.node_name.clone();
    let mut out: Vec<Change> = Vec::new();
    let mut vhosts = b.vhosts();
    vhosts.sort_by(|a, b| a.name.cmp(&b.name));
    for v in &vhosts {
        let (exchanges, queues, bindings) = v.read_topology(|t| {
            let exchanges: Vec<wm::ExchangeDeclare> = t
                .exchanges()
                .filter(|x| x.durable && !x.name.is_empty() && !x.name.starts_with("amq."))
                .map(|x| wm::ExchangeDeclare {
                    exchange: x.name.clone(),
                    kind: ShortStr::from(x.kind.name()),
                    durable: true,
                    auto_delete: x.auto_delete,
                    internal: x.internal,
                    arguments: x.arguments.clone(),
                    ..Default::default()
                })
                .collect();
            let queues: Vec<(warren_core::topology::QueueId, wm::QueueDeclare)> = t
                .queues()
                .filter(|q| q.durable && q.exclusive_owner.is_none())
                .map(|q| {
                    let m = wm::QueueDeclare {
                        queue: q.name.clone(),
                        durable: true,
                        auto_delete: q.auto_delete,
                        arguments: q.arguments.clone(),
                        ..Default::default()
                    };
                    (q.id, m)
                })
                .collect();
            let bindings: Vec<warren_codec::Method> = t
                .bindings()
                .into_iter()
                .filter(|x| {
                    !x.source.is_empty()
                        && t.is_durable_binding(&x.source, &x.destination, x.destination_is_queue)
                })
                .map(|x| {
                    if x.destination_is_queue {
                        wm::QueueBind {
                            queue: x.destination,
                            exchange: x.source,
                            routing_key: x.routing_key,
                            arguments: x.arguments,
                            ..Default::default()
                        }
                        .into()
                    } else {
                        wm::ExchangeBind {
                            destination: x.destination,
                            source: x.source,
                            routing_key: x.routing_key,
                            arguments: x.arguments,
                            ..Default::default()
                        }
                        .into()
                    }
                })
                .collect();
            (exchanges, queues, bindings)
        });
        out.extend(exchanges.into_iter().map(|m| Change::define(&v.name, &me, m)));
        for (id, m) in queues {
            let home = v.home_node(id).unwrap_or_else(|| me.clone());
            out.push(Change::define(&v.name, &home, m));
        }
        out.extend(bindings.into_iter().map(|m| Change::define(&v.name, &me, m)));
        for (name, policy) in b.policies_json(&v.name) {
            out.push(Change::PutPolicy {
                vhost: v.name.clone(),
                name,
                policy,
            });
        }
    }
    for (scope, owner, limits) in b.all_limits() {
        out.push(Change::SetLimits {
            scope: scope.into(),
            owner,
            limits,
        });
    }
    for (user, vhost, p) in b.users.topic_permissions() {
        out.push(Change::SetTopicPermission {
            user,
            vhost,
            exchange: p.exchange.clone(),
            write: p.write.clone(),
            read: p.read.clone(),
        });
    }
    out.push(Change::SetClusterName {
        name: b.cluster_name(),
    });
    out.iter()
        .map(|c| serde_json::to_value(c).expect("a Change encodes"))
        .collect()
}

/// The cluster configuration of a clustered node's settings (`None`: clustering is off).
pub fn cluster_config(config: &Config) -> Option<ClusterConfig> {
    let listen = config.cluster_listen.as_ref()?;
    let secret = config.cluster_secret.as_deref().unwrap_or_default();
    let mut c = ClusterConfig::new(
        &config.node_name,
        listen,
        secret.as_bytes(),
        config.data_dir.join("cluster"),
    );
    c.seeds = config.cluster_seeds.clone();
    c.timeouts = config.cluster_timeouts.clone();
    c.dial_via = config.cluster_dial_via.iter().cloned().collect();
    // A wildcard listener is dialled at the node name's host (RabbitMQ's `name@host`).
    if let Some((host, port)) = listen.rsplit_once(':')
        && matches!(host, "0.0.0.0" | "[::]" | "::" | "")
    {
        let node_host = config.node_name.split_once('@').map_or("localhost", |(_, h)| h);
        c.advertise = Some(format!("{node_host}:{port}"));
    }
    Some(c)
}

/// Starts the cluster layer of a clustered node and hands it to the broker; nothing when
/// clustering is off.
pub async fn start(broker: &Arc<Broker>) -> std::io::Result<()> {
    broker.config.check_cluster().map_err(std::io::Error::other)?;
    let Some(mut config) = cluster_config(&broker.config) else {
        return Ok(());
    };
    config.tls = crate::pki::cluster_tls(&broker.config).map_err(std::io::Error::other)?;
    let applier = Arc::new(Definitions::open(broker, &config.data_dir));
    let listen = config.listen.clone();
    let cluster = Cluster::start(config, applier)
        .await
        .map_err(|e| std::io::Error::other(format!("cluster listener {listen}: {e}")))?;
    tracing::info!(
        "listening on {} (cluster, node {})",
        cluster.addr(),
        cluster.node_name()
    );
    let mut quorum_queues = Vec::new();
    for v in broker.vhosts() {
        v.read_topology(|t| {
            for q in t.queues().filter(|q| q.args.quorum) {
                quorum_queues.push((v.name.clone(), q.name.to_string()));
            }
        });
    }
    let host = Arc::downgrade(broker) as std::sync::Weak<dyn crate::forward::Host>;
    crate::quorum::resume_all(host, &cluster, quorum_queues);
    broker.set_cluster(cluster);
    Ok(())
}

/// An [`Option<Cluster>`] slot for the broker (`Cluster` is not `Debug`).
#[derive(Default)]
pub struct Slot(std::sync::OnceLock<Cluster>);

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.get() {
            Some(c) => write!(f, "Cluster({})", c.node_name()),
            None => write!(f, "NotClustered"),
        }
    }
}

impl Slot {
    /// The cluster handle, if set.
    pub fn get(&self) -> Option<&Cluster> {
        self.0.get()
    }

    /// Sets the handle (once).
    pub fn set(&self, c: Cluster) {
        let _ = self.0.set(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip_and_apply_the_same_as_the_handlers() {
        let b = Broker::new(Config::default());
        let c = Change::PutVhost {
            name: "v1".into(),
            grant: Some("guest".into()),
        };
        let bytes = serde_json::to_vec(&c).unwrap();
        assert_eq!(serde_json::from_slice::<Change>(&bytes).unwrap(), c);
        assert_eq!(apply_local(&b, &c), Outcome::Created);
        assert_eq!(apply_local(&b, &c), Outcome::Updated);
        assert!(b.users.permission("guest", "v1").is_some());
        let bad = Change::SetPermission {
            user: "guest".into(),
            vhost: "v1".into(),
            configure: "(".into(),
            write: ".*".into(),
            read: ".*".into(),
        };
        assert!(matches!(apply_local(&b, &bad), Outcome::Invalid(_)));
        // A snapshot restored on another broker carries vhosts, users and permissions.
        let dir = std::env::temp_dir().join(format!("warren-clustering-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d1 = Definitions::open(&b, &dir.join("1"));
        d1.record(7);
        let b2 = Broker::new(Config::default());
        let d2 = Definitions::open(&b2, &dir.join("2"));
        d2.restore(&d1.snapshot());
        assert!(b2.vhost("v1").is_some());
        assert!(b2.users.permission("guest", "v1").is_some());
        // The restored index is recorded (and survives a reopen); entries up to it, and
        // snapshots no newer, are skipped: the broker holds them already.
        assert_eq!(Definitions::open(&b2, &dir.join("2")).applied(), 7);
        let again = serde_json::to_vec(&Change::DeleteVhost { name: "v1".into() }).unwrap();
        d2.apply(7, &again);
        assert!(b2.vhost("v1").is_some());
        d2.apply(8, &again);
        assert!(b2.vhost("v1").is_none());
        d2.restore(&d1.snapshot());
        assert!(b2.vhost("v1").is_none());
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            apply_local(&b, &Change::DeleteVhost { name: "v1".into() }),
            Outcome::Deleted
        );
        assert_eq!(
            apply_local(&b, &Change::DeleteVhost { name: "v1".into() }),
            Outcome::NotFound
        );
    }

    #[test]
    fn snapshots_carry_topology_policies_limits_and_topic_permissions() {
        use warren_codec::methods as wm;
        let b = Broker::new(Config::default());
        let me = b.config.node_name.clone();
        let define = |node: &str, m: warren_codec::Method| apply_local(&b, &Change::define("/", node, m));
        let x = wm::ExchangeDeclare {
            exchange: "x".into(),
            kind: "topic".into(),
            durable: true,
            ..Default::default()
        };
        assert_eq!(define(&me, x.into()), Outcome::Created);
        let q = |name: &str| wm::QueueDeclare {
            queue: name.into(),
            durable: true,
            ..Default::default()
        };
        assert_eq!(define(&me, q("local").into()), Outcome::Created);
        assert_eq!(define("other@host", q("remote").into()), Outcome::Created);
        let bind = wm::QueueBind {
            queue: "remote".into(),
            exchange: "x".into(),
            routing_key: "k.#".into(),
            ..Default::default()
        };
        assert_eq!(define(&me, bind.into()), Outcome::Created);
        // A binding to a missing queue is refused with the AMQP error, the same on every node.
        let bad = wm::QueueBind {
            queue: "nope".into(),
            exchange: "x".into(),
            ..Default::default()
        };
        assert!(matches!(define(&me, bad.into()), Outcome::Refused(404, _)));
        let policy = json!({"pattern": "^local$", "definition": {"max-length": 3}});
        let put = Change::PutPolicy {
            vhost: "/".into(),
            name: "p".into(),
            policy,
        };
        assert_eq!(apply_local(&b, &put), Outcome::Created);
        let limits = Change::SetLimits {
            scope: "vhost".into(),
            owner: "/".into(),
            limits: [("max-queues".to_string(), 10)].into_iter().collect(),
        };
        assert_eq!(apply_local(&b, &limits), Outcome::Created);
        let topic = Change::SetTopicPermission {
            user: "guest".into(),
            vhost: "/".into(),
            exchange: "x".into(),
            write: "^a".into(),
            read: ".*".into(),
        };
        assert_eq!(apply_local(&b, &topic), Outcome::Created);
        // The remote queue has no handle here: using it names its home.
        let v = b.vhost("/").unwrap();
        assert!(v.queue("local").is_some());
        let e = v
            .queue_for_use("remote", warren_core::topology::ConnId(0))
            .unwrap_err();
        assert!(e.text.contains("other@host"), "{}", e.text);

        let dir = std::env::temp_dir().join(format!("warren-clustering-snap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d1 = Definitions::open(&b, &dir.join("1"));
        d1.record(3);
        let b2 = Broker::new(Config {
            node_name: "other@host".into(),
            ..Config::default()
        });
        Definitions::open(&b2, &dir.join("2")).restore(&d1.snapshot());
        let _ = std::fs::remove_dir_all(&dir);
        let v2 = b2.vhost("/").unwrap();
        assert!(v2.read_topology(|t| t.exchange("x").is_some_and(|x| x.durable)));
        // Homes are kept: "remote" is this node's own queue now, "local" the other's.
        assert!(v2.queue("remote").is_some());
        let id = v2.read_topology(|t| t.queue("local").unwrap().id);
        assert_eq!(v2.home_node(id).as_deref(), Some(me.as_str()));
        assert!(v2.read_topology(|t| t.bindings().iter().any(|b| &*b.destination == "remote")));
        assert!(v2.policy("p").is_some());
        assert_eq!(b2.queue_limit("/"), Some(10));
        assert_eq!(b2.users.topic_permissions_of("guest", "/").len(), 1);
    }
}
