//! Policies, applied: each vhost keeps its [`Policy`] list (validation, matching and the
//! merge with declared arguments are `warren_core::policy`); this module stores, persists and
//! applies them.
//!
//! - **Declare**: `VHost::add_queue` builds the queue from its effective arguments (declared
//!   `x-arguments` merged with the matching policy) while holding the policies' read lock, so
//!   no change slips between the two.
//! - **Change**: [`Broker::put_policy`] / [`Broker::delete_policy`] hold the write lock, log
//!   the change and re-apply the vhost's policies to every live queue
//!   (`Queue::apply_effective_args`: a queue whose effective arguments changed is reconfigured
//!   live, as RabbitMQ does). The queue's declared arguments — what redeclare equivalence and
//!   `GET /api/queues` `arguments` show — never change.
//! - **Durability**: policies are definitions-log records beside the access records
//!   (`0x00 0xA5 JSON`, see [`crate::persist::encode_access`]) with `op` `policy` (the whole
//!   policy, RabbitMQ's JSON field names) or `policy-delete`; they are replayed at start
//!   before any queue is built and rewritten by the start-up compaction.

use bytes::Bytes;
use serde_json::{Value, json};
use warren_core::policy::{ApplyTo, Policy, PolicyError};

use crate::broker::Broker;
use crate::convert::{json_to_table, table_to_json};

/// A policy as RabbitMQ's `/api/policies` shows it.
pub fn policy_json(vhost: &str, p: &Policy) -> Value {
    json!({"vhost": vhost, "name": p.name, "pattern": p.pattern, "apply-to": p.apply_to.name(),
           "definition": table_to_json(&p.definition), "priority": p.priority})
}

/// Parses and validates a policy from RabbitMQ's JSON (`PUT /api/policies/{vhost}/{name}`
/// body, a definitions-file entry or a log record): `pattern` and `definition` are
/// mandatory, `apply-to` defaults to `all` and `priority` to 0.
pub fn policy_from_json(name: &str, body: &Value) -> Result<Policy, PolicyError> {
    let missing = |k: &str| PolicyError(format!("Key \"{k}\" not found in {name}"));
    let pattern = match body.get("pattern") {
        None | Some(Value::Null) => return Err(missing("pattern")),
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(PolicyError(format!("{other} is not a valid regex"))),
    };
    let apply_to = match body.get("apply-to") {
        None | Some(Value::Null) => ApplyTo::All,
        Some(Value::String(s)) => ApplyTo::parse(s)?,
        Some(other) => return Err(PolicyError(format!("apply-to {other} unrecognised"))),
    };
    let priority = match body.get("priority") {
        None | Some(Value::Null) => Some(0),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    }
    .ok_or_else(|| PolicyError(format!("{} priority must be a number", body["priority"])))?;
    let definition = match body.get("definition") {
        None | Some(Value::Null) => return Err(missing("definition")),
        Some(d @ Value::Object(_)) => json_to_table(d).map_err(PolicyError)?,
        Some(other) => return Err(PolicyError(format!("definition must be a dictionary: {other}"))),
    };
    Policy::new(name, pattern, apply_to, priority, definition)
}

fn policy_record(vhost: &str, p: &Policy) -> Value {
    let mut rec = policy_json(vhost, p);
    rec["op"] = json!("policy");
    rec
}

/// Whether a replayed access record is a policy record.
pub fn is_policy_record(rec: &Value) -> bool {
    matches!(
        rec.get("op").and_then(Value::as_str),
        Some("policy" | "policy-delete")
    )
}

/// Applies one replayed policy record; `false` if `rec` is not a policy record. Runs before
/// any queue is built, so nothing is re-applied here.
pub fn apply_record(broker: &Broker, rec: &Value) -> bool {
    if !is_policy_record(rec) {
        return false;
    }
    let s = |k: &str| rec.get(k).and_then(Value::as_str).unwrap_or("");
    let Some(v) = broker.vhost(s("vhost")) else {
        tracing::warn!(
            vhost = s("vhost"),
            policy = s("name"),
            "persisted policy of a missing vhost skipped"
        );
        return true;
    };
    let p = if s("op") == "policy" {
        match policy_from_json(s("name"), rec) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(policy = s("name"), "persisted policy skipped: {e}");
                None
            }
        }
    } else {
        None
    };
    v.restore_policy(s("name"), p);
    true
}

/// Every vhost's policies as records for a compacted definitions log.
pub fn snapshot_records(broker: &Broker) -> Vec<Bytes> {
    let mut vhosts = broker.vhosts();
    vhosts.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for v in vhosts {
        let mut ps = v.policies();
        ps.sort_by(|a, b| a.name.cmp(&b.name));
        for p in &ps {
            out.push(crate::persist::encode_access(&policy_record(&v.name, p)));
        }
    }
    out
}

/// Every policy of every vhost as `/api/policies` lists them: by vhost, then highest priority
/// first (as RabbitMQ sorts them), then name.
pub fn list_json(broker: &Broker, vhost: Option<&str>) -> Vec<Value> {
    let mut vhosts = broker.vhosts();
    vhosts.retain(|v| vhost.is_none_or(|n| n == v.name));
    vhosts.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for v in vhosts {
        let mut ps = v.policies();
        ps.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));
        out.extend(ps.iter().map(|p| policy_json(&v.name, p)));
    }
    out
}

impl Broker {
    fn record_policy(&self, rec: &Value) {
        if let Some(p) = &self.persistence {
            // Logged inside; kept in memory only until a restart (docs/compatibility.md, full disk).
            let _ = p.record_raw(&crate::persist::encode_access(rec));
        }
    }

    /// Creates or replaces a policy in `vhost` (durably) and applies it to the vhost's live
    /// queues. `None` if the vhost does not exist, else whether the policy is new.
    pub fn put_policy(&self, vhost: &str, p: Policy) -> Option<bool> {
        let v = self.vhost(vhost)?;
        let rec = policy_record(vhost, &p);
        Some(v.put_policy(p, || self.record_policy(&rec)))
    }

    /// [`Broker::put_policy`] of a policy in RabbitMQ's JSON (`Err`: it does not parse).
    pub fn put_policy_json(&self, vhost: &str, name: &str, policy: &Value) -> Result<Option<bool>, String> {
        let p = policy_from_json(name, policy).map_err(|e| e.to_string())?;
        Ok(self.put_policy(vhost, p))
    }

    /// A vhost's policies by name, each in RabbitMQ's JSON, sorted by name.
    pub fn policies_json(&self, vhost: &str) -> Vec<(String, Value)> {
        let Some(v) = self.vhost(vhost) else {
            return Vec::new();
        };
        let mut ps = v.policies();
        ps.sort_by(|a, b| a.name.cmp(&b.name));
        ps.iter()
            .map(|p| (p.name.clone(), policy_json(vhost, p)))
            .collect()
    }

    /// Deletes a policy (durably); the queues it applied to fall back to their declared
    /// arguments or to the next matching policy. `false` if there was no such policy.
    pub fn delete_policy(&self, vhost: &str, name: &str) -> bool {
        let Some(v) = self.vhost(vhost) else { return false };
        v.delete_policy(name, || {
            self.record_policy(&json!({"op": "policy-delete", "vhost": vhost, "name": name}))
        })
    }
}
