//! Access control (issue 11): RabbitMQ's permission model enforced on AMQP operations, and
//! the durable management of users, vhosts and permissions.
//!
//! - Each user has, per vhost, three regexes ([`Permission`]): `configure` (declare/delete),
//!   `write` (publish to an exchange, bind to a queue or destination exchange) and `read`
//!   (consume/get/purge a queue, bind from an exchange). The checks sit exactly where
//!   RabbitMQ's `rabbit_channel` makes them and fail with 403 ACCESS_REFUSED and RabbitMQ's
//!   text; the default exchange is checked under the name `amq.default`, as RabbitMQ does.
//! - Topic permissions ([`TopicPermission`]): per user, vhost and exchange, `write` and `read`
//!   regexes on the routing keys published to, and the binding keys bound from, a topic
//!   exchange. A connection whose user has none on its vhost pays one `is_empty` per publish.
//! - The checks on AMQP operations and their per-connection cache live on
//!   [`crate::session::Session`].
//! - Users, permissions and vhosts changed through the management API are appended to the
//!   definitions log as small JSON records behind a tag byte ([`crate::persist::encode_access`])
//!   and replayed at start; once any such record exists the log, not the configured default
//!   user, defines who may log in.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use warren_core::AmqpError;

use crate::auth::{Permission, TopicPermission, User};
use crate::broker::Broker;

/// The kind of resource a permission check is about (for the error text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// A queue.
    Queue,
    /// An exchange.
    Exchange,
}

impl Resource {
    fn name(self) -> &'static str {
        match self {
            Resource::Queue => "queue",
            Resource::Exchange => "exchange",
        }
    }
}

/// RabbitMQ's text for a refused resource access.
pub fn refused(kind: Resource, name: &str, vhost: &str, user: &str) -> AmqpError {
    AmqpError::access_refused(format!(
        "access to {} '{name}' in vhost '{vhost}' refused for user '{user}'",
        kind.name()
    ))
}

/// The name a permission regex is matched against: the default exchange is `amq.default`.
pub fn resource_name(kind: Resource, name: &str) -> &str {
    if kind == Resource::Exchange && name.is_empty() {
        "amq.default"
    } else {
        name
    }
}

/// Why a management operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessError {
    /// No such user.
    NoUser(String),
    /// No such vhost.
    NoVhost(String),
    /// A regex that does not compile.
    BadRegex(String),
}

impl std::fmt::Display for AccessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessError::NoUser(u) => write!(f, "no_such_user: {u}"),
            AccessError::NoVhost(v) => write!(f, "no_such_vhost: {v}"),
            AccessError::BadRegex(e) => write!(f, "{e}"),
        }
    }
}

fn user_record(u: &User) -> Value {
    json!({"op": "user", "name": u.name, "password_hash": u.password_hash, "tags": u.tags})
}

fn permission_record(user: &str, vhost: &str, p: &Permission) -> Value {
    json!({"op": "permission", "user": user, "vhost": vhost,
           "configure": p.configure, "write": p.write, "read": p.read})
}

fn topic_permission_record(user: &str, vhost: &str, p: &TopicPermission) -> Value {
    json!({"op": "topic-permission", "user": user, "vhost": vhost,
           "exchange": p.exchange, "write": p.write, "read": p.read})
}

impl Broker {
    fn record_access(&self, rec: &Value) {
        if let Some(p) = &self.persistence {
            // Logged inside; kept in memory only until a restart (docs/compatibility.md, full disk).
            let _ = p.record_raw(&crate::persist::encode_access(rec));
        }
    }

    /// Creates or replaces a user (durably).
    pub fn put_user(&self, user: User) {
        self.record_access(&user_record(&user));
        self.users.put(user);
    }

    /// Deletes a user and its permissions (durably). False if it did not exist.
    pub fn delete_user(&self, name: &str) -> bool {
        if self.users.get(name).is_none() {
            return false;
        }
        self.record_access(&json!({"op": "user-delete", "name": name}));
        self.forget_limits(crate::limits::Scope::User, name);
        self.users.delete(name)
    }

    /// Sets a user's permissions on a vhost (durably).
    pub fn set_permission(&self, user: &str, vhost: &str, p: Permission) -> Result<(), AccessError> {
        if self.users.get(user).is_none() {
            return Err(AccessError::NoUser(user.to_string()));
        }
        if self.vhost(vhost).is_none() {
            return Err(AccessError::NoVhost(vhost.to_string()));
        }
        self.record_access(&permission_record(user, vhost, &p));
        self.users.set_permission(user, vhost, p);
        Ok(())
    }

    /// Clears a user's permissions on a vhost (durably). False if there were none.
    pub fn clear_permission(&self, user: &str, vhost: &str) -> bool {
        if self.users.permission(user, vhost).is_none() {
            return false;
        }
        self.record_access(&json!({"op": "permission-delete", "user": user, "vhost": vhost}));
        self.users.clear_permission(user, vhost)
    }

    /// Sets a user's topic permission on one exchange of a vhost (durably). `Ok(true)` if the
    /// user had no topic permission on the vhost before.
    pub fn set_topic_permission(
        &self,
        user: &str,
        vhost: &str,
        exchange: &str,
        write: &str,
        read: &str,
    ) -> Result<bool, AccessError> {
        if self.users.get(user).is_none() {
            return Err(AccessError::NoUser(user.to_string()));
        }
        if self.vhost(vhost).is_none() {
            return Err(AccessError::NoVhost(vhost.to_string()));
        }
        let p = TopicPermission::new(user, vhost, exchange, write, read).map_err(AccessError::BadRegex)?;
        let first = self.users.topic_permissions_of(user, vhost).is_empty();
        self.record_access(&topic_permission_record(user, vhost, &p));
        self.users.set_topic_permission(user, vhost, p);
        Ok(first)
    }

    /// Clears a user's topic permissions on a vhost, all or one exchange's (durably). False if
    /// there was nothing to clear.
    pub fn clear_topic_permissions(&self, user: &str, vhost: &str, exchange: Option<&str>) -> bool {
        let had = self
            .users
            .topic_permissions_of(user, vhost)
            .iter()
            .any(|p| exchange.is_none_or(|x| p.exchange == x));
        if !had {
            return false;
        }
        self.record_access(
            &json!({"op": "topic-permission-delete", "user": user, "vhost": vhost,
                                   "exchange": exchange}),
        );
        self.users.clear_topic_permissions(user, vhost, exchange)
    }

    /// Creates a vhost (durably). False if it existed already.
    pub fn create_vhost(&self, name: &str) -> bool {
        if self.vhost(name).is_some() {
            return false;
        }
        self.record_access(&json!({"op": "vhost", "name": name}));
        self.add_vhost(name);
        true
    }

    /// Records a vhost's deletion and drops every permission on it (the caller removed the
    /// vhost and its queues first, so the queues' delete records come before this one).
    pub fn forget_vhost(&self, name: &str) {
        self.record_access(&json!({"op": "vhost-delete", "name": name}));
        self.forget_limits(crate::limits::Scope::Vhost, name);
        self.users.clear_vhost(name);
    }
}

/// Applies one replayed access record.
pub fn apply_record(broker: &Broker, rec: &Value) {
    let s = |k: &str| rec.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    match rec.get("op").and_then(Value::as_str) {
        Some("user") => broker.users.put(User {
            name: s("name"),
            password_hash: s("password_hash"),
            tags: rec
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default(),
        }),
        Some("user-delete") => {
            broker.users.delete(&s("name"));
        }
        Some("permission") => match Permission::new(&s("configure"), &s("write"), &s("read")) {
            Ok(p) => broker.users.set_permission(&s("user"), &s("vhost"), p),
            Err(e) => tracing::warn!("persisted permission skipped: {e}"),
        },
        Some("permission-delete") => {
            broker.users.clear_permission(&s("user"), &s("vhost"));
        }
        Some("topic-permission") => {
            let (user, vhost) = (s("user"), s("vhost"));
            match TopicPermission::new(&user, &vhost, &s("exchange"), &s("write"), &s("read")) {
                Ok(p) => broker.users.set_topic_permission(&user, &vhost, p),
                Err(e) => tracing::warn!("persisted topic permission skipped: {e}"),
            }
        }
        Some("topic-permission-delete") => {
            let exchange = rec.get("exchange").and_then(Value::as_str);
            broker
                .users
                .clear_topic_permissions(&s("user"), &s("vhost"), exchange);
        }
        Some("vhost") => {
            broker.add_vhost(&s("name"));
        }
        Some("vhost-delete") => {
            broker.remove_vhost(&s("name"));
            broker.users.clear_vhost(&s("name"));
        }
        other => tracing::warn!("unknown access record {other:?} skipped"),
    }
}

/// Vhosts, users and permissions as records for a compacted definitions log.
pub fn snapshot_records(broker: &Broker) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut vhosts: Vec<String> = broker.vhosts().iter().map(|v| v.name.clone()).collect();
    vhosts.sort();
    for v in vhosts {
        out.push(crate::persist::encode_access(&json!({"op": "vhost", "name": v})));
    }
    let mut users = broker.users.list();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    for u in &users {
        out.push(crate::persist::encode_access(&user_record(u)));
    }
    for (u, v, p) in broker.users.permissions() {
        out.push(crate::persist::encode_access(&permission_record(&u, &v, &p)));
    }
    for (u, v, p) in broker.users.topic_permissions() {
        out.push(crate::persist::encode_access(&topic_permission_record(
            &u, &v, &p,
        )));
    }
    out
}

/// The refusal of a vhost a user has no permissions on (530 at connection.open).
pub fn vhost_refused(vhost: &str, user: &str) -> AmqpError {
    AmqpError::not_allowed(format!("access to vhost '{vhost}' refused for user '{user}'"))
}

/// Shared handle type used by the management API.
pub type BrokerRef = Arc<Broker>;
