//! Per-vhost and per-user limits, as RabbitMQ's (`/api/vhost-limits/{vhost}/{name}`,
//! `/api/user-limits/{user}/{name}`, `rabbitmqadmin declare vhost_limit|user_limit`):
//! a vhost's `max-queues` and `max-connections`, a user's `max-connections` and
//! `max-channels`. A negative value means no limit, 0 refuses everything (RabbitMQ's
//! meanings). A vhost or user without its own limit falls back to the broker-wide setting
//! (`--max-queues-per-vhost`, `--max-connections-per-user`; 0 there means none).
//!
//! Limits are durable: each change writes the owner's whole set as one definitions-log
//! record (`{"op": "limits", "scope", "name", "value"}`), replayed at start and kept by
//! compaction. Deleting a vhost or user drops its limits, as RabbitMQ does.

use std::collections::BTreeMap;

use bytes::Bytes;
use parking_lot::RwLock;
use serde_json::{Value, json};

use crate::broker::Broker;

/// Whose limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Vhost,
    User,
}

impl Scope {
    /// The limit names RabbitMQ accepts for this scope.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Scope::Vhost => &["max-connections", "max-queues"],
            Scope::User => &["max-channels", "max-connections"],
        }
    }

    fn key(self) -> &'static str {
        match self {
            Scope::Vhost => "vhost",
            Scope::User => "user",
        }
    }
}

/// One owner's limits, by name.
pub type LimitSet = BTreeMap<String, i64>;

/// Every vhost's and user's own limits.
#[derive(Debug, Default)]
pub struct Limits {
    vhosts: RwLock<BTreeMap<String, LimitSet>>,
    users: RwLock<BTreeMap<String, LimitSet>>,
}

impl Limits {
    fn map(&self, scope: Scope) -> &RwLock<BTreeMap<String, LimitSet>> {
        match scope {
            Scope::Vhost => &self.vhosts,
            Scope::User => &self.users,
        }
    }

    /// `owner`'s own limit `name`, if set.
    pub fn get(&self, scope: Scope, owner: &str, name: &str) -> Option<i64> {
        self.map(scope).read().get(owner)?.get(name).copied()
    }

    /// `owner`'s own limits (empty: none).
    pub fn own(&self, scope: Scope, owner: &str) -> LimitSet {
        self.map(scope).read().get(owner).cloned().unwrap_or_default()
    }

    /// Every owner's own limits, by owner name.
    pub fn all(&self, scope: Scope) -> BTreeMap<String, LimitSet> {
        self.map(scope).read().clone()
    }

    /// Replaces `owner`'s set (an empty one removes it).
    fn put(&self, scope: Scope, owner: &str, set: LimitSet) {
        let mut m = self.map(scope).write();
        if set.is_empty() {
            m.remove(owner);
        } else {
            m.insert(owner.to_string(), set);
        }
    }
}

/// Why a limit was refused: RabbitMQ's 400 reason.
#[derive(Debug)]
pub struct LimitError(pub String);

/// Checks a limit as RabbitMQ's `PUT` does: a known name and an integer value (RabbitMQ's
/// texts: "Validation failed" around a vhost limit's, a user limit's bare).
pub fn validate(scope: Scope, name: &str, value: &Value) -> Result<i64, LimitError> {
    // Erlang's rendering of the value: a binary for a string.
    let shown = match value {
        Value::String(s) => format!("<<\"{s}\">>"),
        v => v.to_string(),
    };
    let reason = if !scope.names().contains(&name) {
        let what = match scope {
            Scope::Vhost => "limits",
            Scope::User => "user-limits",
        };
        format!("Unrecognised terms [{{<<\"{name}\">>,{shown}}}] in {what}")
    } else if let Some(n) = value.as_i64() {
        return Ok(n);
    } else {
        format!("{name} should be a number, actually was {shown}")
    };
    Err(LimitError(match scope {
        Scope::Vhost => format!("Validation failed\n\n{reason}\n"),
        Scope::User => reason,
    }))
}

/// A whole set of limits as RabbitMQ's `vhost-limits` runtime parameter and a user's `limits`
/// carry it (`{"max-queues": 10, …}`), each checked as [`validate`].
pub fn parse_set(scope: Scope, value: &Value) -> Result<LimitSet, LimitError> {
    let Some(m) = value.as_object() else {
        return Err(LimitError(format!(
            "Validation failed\n\nlimits must be a dictionary, actually was {value}\n"
        )));
    };
    m.iter()
        .map(|(k, v)| Ok((k.clone(), validate(scope, k, v)?)))
        .collect()
}

/// Every vhost's own limits as RabbitMQ lists them among runtime parameters (`/api/parameters`,
/// definitions): `{"value", "vhost", "component": "vhost-limits", "name": "limits"}`, by vhost.
pub fn vhost_parameters(broker: &Broker, only: Option<&str>) -> Vec<Value> {
    broker
        .limits
        .all(Scope::Vhost)
        .into_iter()
        .filter(|(v, _)| only.is_none_or(|o| o == v))
        .map(|(v, set)| json!({"value": set, "vhost": v, "component": "vhost-limits", "name": "limits"}))
        .collect()
}

fn record(scope: Scope, owner: &str, set: &LimitSet) -> Value {
    json!({"op": "limits", "scope": scope.key(), "name": owner, "value": set})
}

/// Whether a replayed access record is a limits record.
pub fn is_record(rec: &Value) -> bool {
    rec.get("op").and_then(Value::as_str) == Some("limits")
}

/// Applies one replayed limits record; `false` if `rec` is not one.
pub fn apply_record(broker: &Broker, rec: &Value) -> bool {
    if !is_record(rec) {
        return false;
    }
    let scope = match rec.get("scope").and_then(Value::as_str) {
        Some("vhost") => Scope::Vhost,
        Some("user") => Scope::User,
        other => {
            tracing::warn!(scope = ?other, "persisted limits of an unknown scope skipped");
            return true;
        }
    };
    let owner = rec.get("name").and_then(Value::as_str).unwrap_or("");
    let set = rec
        .get("value")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_i64()?)))
                .collect()
        })
        .unwrap_or_default();
    broker.limits.put(scope, owner, set);
    true
}

/// Every owner's limits as records for a compacted definitions log.
pub fn snapshot_records(broker: &Broker) -> Vec<Bytes> {
    [Scope::Vhost, Scope::User]
        .into_iter()
        .flat_map(|scope| {
            broker
                .limits
                .all(scope)
                .into_iter()
                .map(move |(owner, set)| crate::persist::encode_access(&record(scope, &owner, &set)))
        })
        .collect()
}

impl Broker {
    /// Sets (`Some`) or clears (`None`) `owner`'s limit `name`, durably (kept in memory only
    /// until a restart if the log cannot be written, as policies).
    pub fn set_limit(&self, scope: Scope, owner: &str, name: &str, value: Option<i64>) {
        self.update_limits(scope, owner, |set| match value {
            Some(v) => {
                set.insert(name.to_string(), v);
            }
            None => {
                set.remove(name);
            }
        });
    }

    /// Replaces all of `owner`'s limits (an empty set clears them), durably. Returns whether
    /// it had any before.
    pub fn replace_limits(&self, scope: Scope, owner: &str, new: LimitSet) -> bool {
        let mut had = false;
        self.update_limits(scope, owner, |set| {
            had = !set.is_empty();
            *set = new;
        });
        had
    }

    /// Changes `owner`'s set under the scope's lock (concurrent changes never lose each
    /// other), recording it if it changed.
    fn update_limits(&self, scope: Scope, owner: &str, f: impl FnOnce(&mut LimitSet)) {
        let mut m = self.limits.map(scope).write();
        let set = m.entry(owner.to_string()).or_default();
        let before = set.clone();
        f(set);
        if *set != before {
            self.record_limits(scope, owner, set);
        }
        if set.is_empty() {
            m.remove(owner);
        }
    }

    /// [`Broker::replace_limits`] in the scope named `scope` (`vhost`, `user`; `None` for
    /// another name).
    pub fn replace_limits_in(&self, scope: &str, owner: &str, new: LimitSet) -> Option<bool> {
        let scope = [Scope::Vhost, Scope::User]
            .into_iter()
            .find(|s| s.key() == scope)?;
        Some(self.replace_limits(scope, owner, new))
    }

    /// Every owner's own limits: (scope name, owner, limits).
    pub fn all_limits(&self) -> Vec<(&'static str, String, LimitSet)> {
        [Scope::Vhost, Scope::User]
            .into_iter()
            .flat_map(|scope| {
                self.limits
                    .all(scope)
                    .into_iter()
                    .map(move |(owner, set)| (scope.key(), owner, set))
            })
            .collect()
    }

    /// Drops every limit of a deleted vhost or user.
    pub fn forget_limits(&self, scope: Scope, owner: &str) {
        if self.limits.map(scope).write().remove(owner).is_some() {
            self.record_limits(scope, owner, &LimitSet::new());
        }
    }

    fn record_limits(&self, scope: Scope, owner: &str, set: &LimitSet) {
        if let Some(p) = &self.persistence {
            let _ = p.record_raw(&crate::persist::encode_access(&record(scope, owner, set)));
        }
    }

    /// The effective limit `name` of `owner`: its own, else the broker-wide `default` (0 there
    /// means none). `None`: no limit.
    fn effective_limit(&self, scope: Scope, owner: &str, name: &str, default: u32) -> Option<u32> {
        match self.limits.get(scope, owner, name) {
            Some(n) if n < 0 => None,
            Some(n) => Some(n.min(u32::MAX as i64) as u32),
            None => (default > 0).then_some(default),
        }
    }

    /// How many queues `vhost` may hold (`None`: no limit).
    pub fn queue_limit(&self, vhost: &str) -> Option<u32> {
        let default = self.config.max_queues_per_vhost;
        self.effective_limit(Scope::Vhost, vhost, "max-queues", default)
    }

    /// How many connections `vhost` may have open (`None`: no limit).
    pub fn vhost_connection_limit(&self, vhost: &str) -> Option<u32> {
        self.effective_limit(Scope::Vhost, vhost, "max-connections", 0)
    }

    /// How many connections `user` may have open (`None`: no limit).
    pub fn user_connection_limit(&self, user: &str) -> Option<u32> {
        let default = self.config.max_connections_per_user;
        self.effective_limit(Scope::User, user, "max-connections", default)
    }

    /// How many channels `user` may have open over all its connections (`None`: no limit).
    pub fn user_channel_limit(&self, user: &str) -> Option<u32> {
        self.effective_limit(Scope::User, user, "max-channels", 0)
    }

    /// The limits `/api/vhost-limits` or `/api/user-limits` shows for `owner`: its own over the
    /// broker-wide setting (`--max-queues-per-vhost` as `max-queues`,
    /// `--max-connections-per-user` as `max-connections`).
    pub fn shown_limits(&self, scope: Scope, owner: &str) -> LimitSet {
        let mut set = LimitSet::new();
        let (name, default) = match scope {
            Scope::Vhost => ("max-queues", self.config.max_queues_per_vhost),
            Scope::User => ("max-connections", self.config.max_connections_per_user),
        };
        if default > 0 {
            set.insert(name.to_string(), default as i64);
        }
        if let Some(own) = self.limits.map(scope).read().get(owner) {
            set.extend(own.iter().map(|(k, v)| (k.clone(), *v)));
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_follows_rabbitmq() {
        assert_eq!(validate(Scope::Vhost, "max-queues", &json!(3)).unwrap(), 3);
        assert_eq!(validate(Scope::User, "max-channels", &json!(-1)).unwrap(), -1);
        let e = validate(Scope::Vhost, "max-foo", &json!(2)).unwrap_err();
        assert_eq!(
            e.0,
            "Validation failed\n\nUnrecognised terms [{<<\"max-foo\">>,2}] in limits\n"
        );
        assert!(validate(Scope::User, "max-queues", &json!(2)).is_err());
        let e = validate(Scope::Vhost, "max-queues", &json!(1.5)).unwrap_err();
        assert_eq!(
            e.0,
            "Validation failed\n\nmax-queues should be a number, actually was 1.5\n"
        );
        let e = validate(Scope::User, "max-channels", &json!("x")).unwrap_err();
        assert_eq!(e.0, "max-channels should be a number, actually was <<\"x\">>");
    }
}
