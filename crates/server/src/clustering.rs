//! The server's side of clustering: it owns the node's [`warren_cluster::Cluster`] handle
//! (started from the `--cluster-*` settings, Raft state in `<data-dir>/cluster`), the
//! replicated definitions commands ([`Change`]: vhosts, users, permissions, encoded as JSON in
//! the Raft log) and their one applier ([`Definitions`], the [`warren_cluster::Apply`] the
//! cluster calls on every node, in log order). Management handlers call [`change`]: on a
//! clustered node it proposes the command and waits for a majority to commit it; on a single
//! node it applies the command directly, exactly as before clustering existed. Both paths run
//! [`apply_local`], the same broker methods (the vhost service, the durable access stores),
//! so a definition is changed the same way whether or not Raft carried it.

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

/// Applies `c` to this node's broker: the code path of a single node and of every cluster
/// member applying a committed command.
pub fn apply_local(broker: &Broker, c: &Change) -> Outcome {
    match c {
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
        if index != 0 {
            self.record(index);
        }
    }
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
    let Some(config) = cluster_config(&broker.config) else {
        return Ok(());
    };
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
}
