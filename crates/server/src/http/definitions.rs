//! `GET/POST /api/definitions`: export and import in RabbitMQ's definitions-file format
//! (`rabbit_version`, `users`, `vhosts`, `permissions`, `policies`, `queues`, `exchanges`,
//! `bindings`, …), so a file exported from RabbitMQ imports into Warren and back.
//!
//! Import goes through the same declare/bind rules as AMQP clients. What Warren cannot run is
//! skipped with a warning rather than failing the whole file: exchange types it lacks
//! (`x-consistent-hash`, …), queue types other than classic/quorum, password hashes other than
//! SHA-256 (the user is created but cannot log in). Users, vhosts, permissions, topic
//! permissions and policies go to the broker's durable stores and are enforced; policies are
//! imported before queues, so imported queues start with their policy applied, and an invalid
//! policy fails the import with RabbitMQ's validation text.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use warren_core::topology::QueueMeta;

use super::api::bindings::{BindingBody, bind};
use super::api::exchanges::{ExchangeBody, declare_exchange, exchange_json};
use super::api::queues::{QueueBody, declare_queue};
use super::api::users::{permissions_json, user_json};
use super::shared::{ApiError, ApiResult, Shared, parse_body};
use crate::auth::User;
use crate::convert::table_to_json;

/// Builds the definitions document.
pub fn export_value(st: &Shared) -> Value {
    let mut vhosts = st.broker.vhosts();
    vhosts.sort_by(|a, b| a.name.cmp(&b.name));
    let mut users = st.broker.users.list();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    let (mut queues, mut exchanges, mut bindings) = (Vec::new(), Vec::new(), Vec::new());
    for v in &vhosts {
        v.read_topology(|t| {
            let mut qs: Vec<&QueueMeta> = t.queues().filter(|q| q.exclusive_owner.is_none()).collect();
            qs.sort_by(|a, b| a.name.cmp(&b.name));
            for q in qs {
                queues.push(
                    json!({"name": q.name.to_string(), "vhost": v.name, "durable": q.durable,
                                   "auto_delete": q.auto_delete, "arguments": table_to_json(&q.arguments)}),
                );
            }
            let mut xs: Vec<_> = t
                .exchanges()
                .filter(|x| !x.name.is_empty() && !x.name.starts_with("amq."))
                .collect();
            xs.sort_by(|a, b| a.name.cmp(&b.name));
            for x in xs {
                let mut j = exchange_json(&v.name, x);
                if let Some(o) = j.as_object_mut() {
                    o.remove("user_who_performed_action");
                    o.remove("policy");
                }
                exchanges.push(j);
            }
            let exclusive: Vec<String> = t
                .queues()
                .filter(|q| q.exclusive_owner.is_some())
                .map(|q| q.name.to_string())
                .collect();
            let mut bs = t.bindings();
            bs.sort_by(|x, y| {
                (&x.source, &x.destination, &x.routing_key).cmp(&(&y.source, &y.destination, &y.routing_key))
            });
            for b in bs {
                if b.source.is_empty()
                    || (b.destination_is_queue && exclusive.iter().any(|e| **e == *b.destination))
                {
                    continue;
                }
                bindings.push(json!({
                    "source": b.source.to_string(), "vhost": v.name, "destination": b.destination.to_string(),
                    "destination_type": if b.destination_is_queue { "queue" } else { "exchange" },
                    "routing_key": b.routing_key.to_string(), "arguments": table_to_json(&b.arguments),
                }));
            }
        });
    }
    json!({
        "rabbit_version": super::shared::MANAGEMENT_VERSION,
        "rabbitmq_version": super::shared::MANAGEMENT_VERSION,
        "product_name": "Warren",
        "product_version": env!("CARGO_PKG_VERSION"),
        "users": users.iter().map(|u| {
            let mut j = user_json(u);
            if let Some(o) = j.as_object_mut() { o.remove("limits"); o.insert("limits".into(), json!({})); }
            j
        }).collect::<Vec<_>>(),
        "vhosts": vhosts.iter().map(|v| json!({"name": v.name, "limits": [],
            "metadata": {"description": "", "tags": []}})).collect::<Vec<_>>(),
        "permissions": permissions_json(st),
        "topic_permissions": super::users::topic_permissions_json(st),
        "parameters": [],
        "global_parameters": [{"name": "cluster_name", "value": *st.cluster_name.lock()}],
        "policies": crate::policies::list_json(&st.broker, None),
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    })
}

/// `GET /api/definitions`.
pub async fn export(State(st): State<Shared>) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(export_value(&st)))
}

fn field<'a>(o: &'a Value, key: &str, what: &str) -> Result<&'a str, String> {
    o.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what} without a '{key}' string: {o}"))
}

fn list<'a>(doc: &'a Value, key: &str) -> Result<&'a [Value], String> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(format!("'{key}' must be an array, got {other}")),
    }
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Things skipped, with reasons (logged as warnings).
    pub warnings: Vec<String>,
    /// Things that failed.
    pub errors: Vec<String>,
}

/// Applies a definitions document.
pub fn import_value(st: &Shared, doc: &Value) -> Result<ImportReport, String> {
    if !doc.is_object() {
        return Err("definitions must be a JSON object".into());
    }
    let mut r = ImportReport::default();
    let mut skipped: Vec<(String, String)> = Vec::new();
    for v in list(doc, "vhosts")? {
        st.broker.create_vhost(field(v, "name", "vhost")?);
    }
    for u in list(doc, "users")? {
        let name = field(u, "name", "user")?;
        let hash = u.get("password_hash").and_then(Value::as_str).unwrap_or("");
        let algo = u
            .get("hashing_algorithm")
            .and_then(Value::as_str)
            .unwrap_or("rabbit_password_hashing_sha256");
        if algo != "rabbit_password_hashing_sha256" {
            r.warnings.push(format!(
                "user '{name}': hashing algorithm {algo} is not supported; the user cannot log in until its password is reset"
            ));
        }
        let tags: Vec<String> = match u.get("tags") {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        st.broker.put_user(User {
            name: name.to_string(),
            password_hash: hash.to_string(),
            tags,
        });
    }
    for p in list(doc, "permissions")? {
        let user = field(p, "user", "permission")?;
        let vhost = field(p, "vhost", "permission")?;
        let get = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
        match crate::auth::Permission::new(get("configure"), get("write"), get("read")) {
            Ok(perm) => {
                if let Err(e) = st.broker.set_permission(user, vhost, perm) {
                    r.errors
                        .push(format!("permissions of '{user}' on '{vhost}': {e}"));
                }
            }
            Err(e) => r
                .errors
                .push(format!("permissions of '{user}' on '{vhost}': {e}")),
        }
    }
    for p in list(doc, "topic_permissions")? {
        let user = field(p, "user", "topic permission")?;
        let vhost = field(p, "vhost", "topic permission")?;
        let exchange = field(p, "exchange", "topic permission")?;
        let get = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
        if let Err(e) = st
            .broker
            .set_topic_permission(user, vhost, exchange, get("write"), get("read"))
        {
            r.errors.push(format!(
                "topic permissions of '{user}' on exchange '{exchange}' in '{vhost}': {e}"
            ));
        }
    }
    for p in list(doc, "policies")? {
        let name = field(p, "name", "policy")?;
        let vh = field(p, "vhost", "policy")?;
        match crate::policies::policy_from_json(name, p) {
            Ok(policy) => {
                let idle = policy.ineffective_keys();
                if !idle.is_empty() {
                    r.warnings.push(format!(
                        "policy '{name}' in vhost '{vh}': {} accepted but without effect in Warren",
                        idle.join(", ")
                    ));
                }
                if st.broker.put_policy(vh, policy).is_none() {
                    r.errors.push(format!("policy '{name}': no vhost '{vh}'"));
                }
            }
            Err(e) => r.errors.push(format!(
                "policy '{name}' in vhost '{vh}': {}",
                e.rabbit_text().trim_end()
            )),
        }
    }
    for x in list(doc, "exchanges")? {
        let name = field(x, "name", "exchange")?;
        let vh = field(x, "vhost", "exchange")?;
        let Some(v) = st.broker.vhost(vh) else {
            r.errors.push(format!("exchange '{name}': no vhost '{vh}'"));
            continue;
        };
        let b: ExchangeBody =
            serde_json::from_value(x.clone()).map_err(|e| format!("exchange '{name}': {e}"))?;
        if warren_core::topology::ExchangeKind::parse(&b.kind).is_none() {
            r.warnings.push(format!(
                "exchange '{name}' in vhost '{vh}': type '{}' is not supported; skipped",
                b.kind
            ));
            skipped.push((vh.to_string(), name.to_string()));
            continue;
        }
        if name.is_empty() || name.starts_with("amq.") {
            continue;
        }
        if let Err(e) = declare_exchange(&v, name, &b) {
            r.errors
                .push(format!("exchange '{name}' in vhost '{vh}': {}", e.body["reason"]));
        }
    }
    for q in list(doc, "queues")? {
        let name = field(q, "name", "queue")?;
        let vh = field(q, "vhost", "queue")?;
        let Some(v) = st.broker.vhost(vh) else {
            r.errors.push(format!("queue '{name}': no vhost '{vh}'"));
            continue;
        };
        let b: QueueBody = serde_json::from_value(q.clone()).map_err(|e| format!("queue '{name}': {e}"))?;
        let qtype = b
            .arguments
            .get("x-queue-type")
            .and_then(Value::as_str)
            .or_else(|| q.get("type").and_then(Value::as_str))
            .unwrap_or("classic");
        if !matches!(qtype, "classic" | "quorum") {
            r.warnings.push(format!(
                "queue '{name}' in vhost '{vh}': queue type '{qtype}' is not supported; skipped"
            ));
            skipped.push((vh.to_string(), name.to_string()));
            continue;
        }
        if let Err(e) = declare_queue(&v, name, &b, st.broker.config.max_queues_per_vhost) {
            r.errors
                .push(format!("queue '{name}' in vhost '{vh}': {}", e.body["reason"]));
        }
    }
    for b in list(doc, "bindings")? {
        let source = field(b, "source", "binding")?;
        let dest = field(b, "destination", "binding")?;
        let vh = field(b, "vhost", "binding")?;
        let to_queue = b.get("destination_type").and_then(Value::as_str) != Some("exchange");
        let Some(v) = st.broker.vhost(vh) else {
            r.errors
                .push(format!("binding {source} -> {dest}: no vhost '{vh}'"));
            continue;
        };
        if source.is_empty() {
            continue;
        }
        if skipped.iter().any(|(v, n)| v == vh && (n == source || n == dest)) {
            r.warnings.push(format!(
                "binding {source} -> {dest} in vhost '{vh}' skipped with its source or destination"
            ));
            continue;
        }
        let body = BindingBody {
            routing_key: b
                .get("routing_key")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            arguments: b.get("arguments").cloned().unwrap_or(Value::Null),
        };
        if let Err(e) = bind(&v, source, dest, to_queue, &body) {
            let why = if e.status == StatusCode::NOT_FOUND {
                "source or destination does not exist".to_string()
            } else {
                e.body["reason"].to_string()
            };
            r.errors
                .push(format!("binding {source} -> {dest} in vhost '{vh}': {why}"));
        }
    }
    for w in &r.warnings {
        tracing::warn!("definitions import: {w}");
    }
    for e in &r.errors {
        tracing::warn!("definitions import failed: {e}");
    }
    Ok(r)
}

/// `POST /api/definitions`: 204 on success, 400 with the failures otherwise.
pub async fn import(State(st): State<Shared>, body: Bytes) -> ApiResult<StatusCode> {
    let doc: Value = parse_body(&body)?;
    let report = import_value(&st, &doc).map_err(ApiError::bad_request)?;
    if report.errors.is_empty() {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::bad_request(report.errors.join("; ")))
    }
}

/// The keys of a single-vhost definitions document (`GET /api/definitions/{vhost}`).
const VHOST_KEYS: [&str; 5] = ["parameters", "policies", "queues", "exchanges", "bindings"];

/// `GET /api/definitions/{vhost}`: that vhost's queues, exchanges, bindings and policies,
/// without `vhost` fields (RabbitMQ's single-vhost export, importable into any vhost).
pub async fn export_vhost(
    State(st): State<Shared>,
    axum::extract::Path(vh): axum::extract::Path<String>,
) -> ApiResult<axum::Json<Value>> {
    if st.broker.vhost(&vh).is_none() {
        return Err(ApiError::not_found());
    }
    let all = export_value(&st);
    let mut out = serde_json::Map::new();
    for k in [
        "rabbit_version",
        "rabbitmq_version",
        "product_name",
        "product_version",
    ] {
        out.insert(k.into(), all[k].clone());
    }
    for k in VHOST_KEYS {
        let items: Vec<Value> = all[k]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["vhost"] == vh.as_str())
            .map(|o| {
                let mut o = o.clone();
                if let Some(m) = o.as_object_mut() {
                    m.remove("vhost");
                }
                o
            })
            .collect();
        out.insert(k.into(), Value::Array(items));
    }
    Ok(axum::Json(Value::Object(out)))
}

/// `POST /api/definitions/{vhost}`: imports a single-vhost document into that vhost (any
/// `vhost` fields in it are overridden; users, vhosts and permissions are ignored).
pub async fn import_vhost(
    State(st): State<Shared>,
    axum::extract::Path(vh): axum::extract::Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    if st.broker.vhost(&vh).is_none() {
        return Err(ApiError::not_found());
    }
    let doc: Value = parse_body(&body)?;
    if !doc.is_object() {
        return Err(ApiError::bad_request("definitions must be a JSON object"));
    }
    let mut scoped = serde_json::Map::new();
    for k in VHOST_KEYS {
        let items: Vec<Value> = list(&doc, k)
            .map_err(ApiError::bad_request)?
            .iter()
            .map(|o| {
                let mut o = o.clone();
                if let Some(m) = o.as_object_mut() {
                    m.insert("vhost".into(), Value::String(vh.clone()));
                }
                o
            })
            .collect();
        scoped.insert(k.into(), Value::Array(items));
    }
    let report = import_value(&st, &Value::Object(scoped)).map_err(ApiError::bad_request)?;
    if report.errors.is_empty() {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::bad_request(report.errors.join("; ")))
    }
}
