//! `GET/POST /api/definitions`: export and import in RabbitMQ's definitions-file format
//! (`rabbit_version`, `users`, `vhosts`, `permissions`, `policies`, `queues`, `exchanges`,
//! `bindings`, …), so a file exported from RabbitMQ imports into Warren and back.
//!
//! Import goes through the same declare/bind rules as AMQP clients. What Warren cannot run is
//! skipped rather than failing the whole file, and the answer says so (issue 18): RabbitMQ's
//! `204 No Content` when everything was applied, otherwise `200` with an [`ImportReport`]:
//! `{"skipped": [...], "ignored": [...]}`, each item `{"kind", "vhost", "name", "reason"}`.
//! *Skipped* items were not applied: exchange types Warren lacks (`x-delayed-message`, …;
//! `x-consistent-hash` and `x-random` are supported), queue types other than classic/quorum
//! (`stream`), bindings of skipped exchanges and queues, runtime parameters (shovels,
//! federation upstreams; `vhost-limits` ones are applied, as users' `limits`), limits RabbitMQ
//! would refuse, global parameters other than `cluster_name` and, on a
//! single-vhost import, users, vhosts and permissions. *Ignored* items were applied, but part
//! of them has no effect: policy keys such as `ha-mode`, password hashes other than SHA-256
//! (the user exists but cannot log in until its password is reset), a vhost's default queue
//! type. Invalid input (a policy RabbitMQ would refuse, a
//! missing vhost, …) still answers `400` with RabbitMQ's `reason`, plus the lists.
//!
//! Users, vhosts, permissions, topic permissions and policies go to the broker's durable
//! stores and are enforced; policies are imported before queues, so imported queues start with
//! their policy applied. Every item is made as the management API makes it, through
//! [`crate::clustering::Change`]s: on a clustered node each is committed by a majority and
//! applied on every node (imported queues are homed on the importing node), and a cluster
//! without a majority answers `503`; on a single node they are applied directly.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use warren_core::topology::QueueMeta;

use crate::limits::Scope;

use super::api::bindings::{BindingBody, put_binding};
use super::api::exchanges::{ExchangeBody, exchange_json, put_exchange};
use super::api::limits::replace_limits;
use super::api::queues::{QueueBody, put_queue};
use super::api::users::{permissions_json, user_json};
use super::shared::{ApiError, ApiResult, Shared, parse_body};
use crate::clustering::{Change, Outcome};
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
        "users": users.iter().map(|u| user_json(st, u)).collect::<Vec<_>>(),
        "vhosts": vhosts.iter().map(|v| json!({"name": v.name, "limits": [],
            "metadata": {"description": "", "tags": []}})).collect::<Vec<_>>(),
        "permissions": permissions_json(st),
        "topic_permissions": super::users::topic_permissions_json(st),
        "parameters": crate::limits::vhost_parameters(&st.broker, None),
        "global_parameters": [{"name": "cluster_name", "value": st.broker.cluster_name()}],
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

/// One skipped or ignored item of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportItem {
    /// `user`, `vhost`, `permission`, `topic_permission`, `parameter`, `global_parameter`,
    /// `policy`, `exchange`, `queue` or `binding`.
    pub kind: &'static str,
    /// Its vhost (`null` for users and global parameters).
    pub vhost: Option<String>,
    /// Its name (`source -> destination` for a binding, the user for a permission).
    pub name: String,
    /// Why it was skipped, or what of it has no effect.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    /// Items not applied.
    pub skipped: Vec<ReportItem>,
    /// Items applied, in part without effect.
    pub ignored: Vec<ReportItem>,
    /// Things that failed (the answer is 400).
    #[serde(skip)]
    pub errors: Vec<String>,
}

impl ImportReport {
    fn item(kind: &'static str, vhost: Option<&str>, name: &str, reason: String) -> ReportItem {
        ReportItem {
            kind,
            vhost: vhost.map(str::to_string),
            name: name.to_string(),
            reason,
        }
    }

    /// Records an item that was not applied.
    fn skip(&mut self, kind: &'static str, vhost: Option<&str>, name: &str, reason: impl Into<String>) {
        self.skipped.push(Self::item(kind, vhost, name, reason.into()));
    }

    /// Records an item applied without (full) effect.
    fn ignore(&mut self, kind: &'static str, vhost: Option<&str>, name: &str, reason: impl Into<String>) {
        self.ignored.push(Self::item(kind, vhost, name, reason.into()));
    }

    /// The HTTP answer: 204 when everything was applied, 200 with the report when something
    /// was skipped or ignored, 400 (RabbitMQ's error shape plus the lists) on failures.
    pub fn into_response(self) -> Response {
        self.log();
        if !self.errors.is_empty() {
            let mut e = ApiError::bad_request(self.errors.join("; "));
            e.body["errors"] = json!(self.errors);
            e.body["skipped"] = json!(self.skipped);
            e.body["ignored"] = json!(self.ignored);
            return e.into_response();
        }
        if self.skipped.is_empty() && self.ignored.is_empty() {
            return StatusCode::NO_CONTENT.into_response();
        }
        (StatusCode::OK, axum::Json(self)).into_response()
    }

    /// Logs what was skipped, ignored or failed.
    fn log(&self) {
        for (what, items) in [("skipped", &self.skipped), ("ignored", &self.ignored)] {
            for i in items {
                let vhost = i.vhost.as_deref().unwrap_or("");
                tracing::warn!(kind = i.kind, vhost, name = %i.name, "definitions import {what}: {}", i.reason);
            }
        }
        for e in &self.errors {
            tracing::warn!("definitions import failed: {e}");
        }
    }
}

/// Why a runtime parameter of this component is skipped.
fn parameter_reason(component: &str) -> String {
    match component {
        "shovel" => "shovel: dynamic shovels (rabbitmq_shovel) are not supported".into(),
        "federation-upstream" | "federation-upstream-set" => {
            format!("{component}: federation (rabbitmq_federation) is not supported")
        }
        other => format!("{other}: runtime parameters of this component are not supported"),
    }
}

/// Policy keys of plugins Warren lacks: dropped from an imported policy (rather than failing
/// it as unrecognised) and reported.
const PLUGIN_POLICY_KEYS: [(&str, &str); 2] = [
    ("federation-upstream", "federation"),
    ("federation-upstream-set", "federation"),
];

/// Applies a vhost's or user's imported limits (replacing its own; through the cluster on a
/// clustered node); limits RabbitMQ would refuse are reported as skipped.
async fn import_limits(
    st: &Shared,
    r: &mut ImportReport,
    scope: Scope,
    owner: &str,
    value: &Value,
) -> ApiResult<()> {
    match crate::limits::parse_set(scope, value) {
        Ok(set) => {
            replace_limits(st, scope, owner, set).await?;
        }
        Err(e) => {
            let (kind, vhost) = match scope {
                Scope::Vhost => ("vhost_limits", Some(owner)),
                Scope::User => ("user_limits", None),
            };
            r.skip(kind, vhost, owner, e.0);
        }
    }
    Ok(())
}

/// An item's failure, to record in the report; `Err` (the import stops with it) when the
/// cluster could not commit the change (503).
fn recordable(e: ApiError) -> ApiResult<ApiError> {
    if e.status == StatusCode::SERVICE_UNAVAILABLE {
        Err(e)
    } else {
        Ok(e)
    }
}

/// Whether a `limits` value (an object or a list) sets anything.
fn sets_limits(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        _ => false,
    }
}

/// A document that is not a definitions document (nothing more is applied): 400.
fn malformed(reason: String) -> ApiError {
    ApiError::bad_request(reason)
}

/// Applies a definitions document, in dependency order (vhosts, users, permissions, limits,
/// policies, exchanges, queues, bindings), each item as the management API would make it:
/// through the cluster on a clustered node ([`crate::clustering::change`]: committed by a
/// majority, applied on every node; queues get this node as their home), directly on a single
/// node. `Err`: 400 for a document that is not one (what came before the bad item is
/// applied), 503 when the cluster could not commit a change (the import stops there; what was
/// committed before stays, on every node).
pub async fn import_value(st: &Shared, doc: &Value) -> ApiResult<ImportReport> {
    if !doc.is_object() {
        return Err(malformed("definitions must be a JSON object".into()));
    }
    let list = |key: &str| list(doc, key).map_err(malformed);
    let mut r = ImportReport::default();
    let mut skipped: Vec<(String, String, &'static str)> = Vec::new();
    for v in list("vhosts")? {
        let name = field(v, "name", "vhost").map_err(malformed)?;
        let c = Change::PutVhost {
            name: name.to_string(),
            grant: None,
        };
        ApiError::change(&st.broker, c).await?;
        if sets_limits(v.get("limits")) {
            import_limits(st, &mut r, Scope::Vhost, name, &v["limits"]).await?;
        }
        let dqt = v
            .get("default_queue_type")
            .or_else(|| v.get("metadata").and_then(|m| m.get("default_queue_type")))
            .and_then(Value::as_str);
        if let Some(t) = dqt.filter(|t| !matches!(*t, "classic" | "undefined" | "")) {
            r.ignore(
                "vhost",
                Some(name),
                name,
                format!(
                    "default queue type '{t}' has no effect: queues declared without x-queue-type are classic"
                ),
            );
        }
    }
    for u in list("users")? {
        let name = field(u, "name", "user").map_err(malformed)?;
        let hash = u.get("password_hash").and_then(Value::as_str).unwrap_or("");
        let algo = u
            .get("hashing_algorithm")
            .and_then(Value::as_str)
            .unwrap_or("rabbit_password_hashing_sha256");
        if algo != "rabbit_password_hashing_sha256" {
            r.ignore(
                "user",
                None,
                name,
                format!("password hashing algorithm {algo} is not supported: the user cannot log in until its password is reset"),
            );
        }
        let limits = u.get("limits").filter(|l| sets_limits(Some(l)));
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
        let c = Change::PutUser {
            name: name.to_string(),
            password_hash: Some(hash.to_string()),
            tags,
        };
        ApiError::change(&st.broker, c).await?;
        if let Some(l) = limits {
            import_limits(st, &mut r, Scope::User, name, l).await?;
        }
    }
    for p in list("permissions")? {
        let user = field(p, "user", "permission").map_err(malformed)?;
        let vhost = field(p, "vhost", "permission").map_err(malformed)?;
        let get = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        // A bad regex is refused before proposing: it never reaches the cluster's log.
        let refused = match crate::auth::Permission::new(&get("configure"), &get("write"), &get("read")) {
            Err(e) => Some(e.to_string()),
            Ok(_) => {
                let c = Change::SetPermission {
                    user: user.to_string(),
                    vhost: vhost.to_string(),
                    configure: get("configure"),
                    write: get("write"),
                    read: get("read"),
                };
                match ApiError::change(&st.broker, c).await? {
                    Outcome::Invalid(e) => Some(e),
                    _ => None,
                }
            }
        };
        if let Some(e) = refused {
            r.errors
                .push(format!("permissions of '{user}' on '{vhost}': {e}"));
        }
    }
    for p in list("topic_permissions")? {
        let user = field(p, "user", "topic permission").map_err(malformed)?;
        let vhost = field(p, "vhost", "topic permission").map_err(malformed)?;
        let exchange = field(p, "exchange", "topic permission").map_err(malformed)?;
        let get = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let c = Change::SetTopicPermission {
            user: user.to_string(),
            vhost: vhost.to_string(),
            exchange: exchange.to_string(),
            write: get("write"),
            read: get("read"),
        };
        if let Outcome::Invalid(e) = ApiError::change(&st.broker, c).await? {
            r.errors.push(format!(
                "topic permissions of '{user}' on exchange '{exchange}' in '{vhost}': {e}"
            ));
        }
    }
    for p in list("parameters")? {
        let name = field(p, "name", "parameter").map_err(malformed)?;
        let component = p.get("component").and_then(Value::as_str).unwrap_or("");
        let vh = p.get("vhost").and_then(Value::as_str);
        match (component, vh) {
            // As RabbitMQ: a vhost's limits are its `vhost-limits` parameter.
            ("vhost-limits", Some(vh)) if st.broker.vhost(vh).is_some() => {
                let value = p.get("value").unwrap_or(&Value::Null);
                import_limits(st, &mut r, Scope::Vhost, vh, value).await?;
            }
            ("vhost-limits", _) => r
                .errors
                .push(format!("vhost limits of missing vhost '{}'", vh.unwrap_or(""))),
            _ => r.skip("parameter", vh, name, parameter_reason(component)),
        }
    }
    for p in list("global_parameters")? {
        let name = field(p, "name", "global parameter").map_err(malformed)?;
        let reason: String = match (name, p.get("value")) {
            // As RabbitMQ: the import renames the cluster (durably, as PUT /api/cluster-name).
            ("cluster_name", Some(Value::String(v))) if !v.is_empty() => {
                if *v != st.broker.cluster_name() {
                    ApiError::change(&st.broker, Change::SetClusterName { name: v.clone() }).await?;
                }
                continue;
            }
            ("cluster_name", _) => "the cluster name must be a non-empty string".into(),
            ("internal_cluster_id", _) => "RabbitMQ's internal cluster identity; Warren has none".into(),
            _ => "global runtime parameters are not supported".into(),
        };
        r.skip("global_parameter", None, name, reason);
    }
    for p in list("policies")? {
        let name = field(p, "name", "policy").map_err(malformed)?;
        let vh = field(p, "vhost", "policy").map_err(malformed)?;
        let mut p = p.clone();
        let mut dropped = Vec::new();
        if let Some(def) = p.get_mut("definition").and_then(Value::as_object_mut) {
            for (key, plugin) in PLUGIN_POLICY_KEYS {
                if def.remove(key).is_some() {
                    dropped.push(format!("{key} (the {plugin} plugin)"));
                }
            }
            if !dropped.is_empty() && def.is_empty() {
                r.skip(
                    "policy",
                    Some(vh),
                    name,
                    format!("{} not supported", dropped.join(", ")),
                );
                continue;
            }
        }
        match crate::policies::policy_from_json(name, &p) {
            Ok(policy) => {
                let idle = policy.ineffective_keys();
                let notes = [
                    (!dropped.is_empty())
                        .then(|| format!("{} not supported; dropped from the policy", dropped.join(", "))),
                    (!idle.is_empty())
                        .then(|| format!("{} accepted without effect in Warren", idle.join(", "))),
                ];
                for note in notes.into_iter().flatten() {
                    r.ignore("policy", Some(vh), name, note);
                }
                let c = Change::PutPolicy {
                    vhost: vh.to_string(),
                    name: name.to_string(),
                    policy: p,
                };
                match ApiError::change(&st.broker, c).await? {
                    Outcome::NotFound => r.errors.push(format!("policy '{name}': no vhost '{vh}'")),
                    Outcome::Invalid(e) => r.errors.push(format!("policy '{name}' in vhost '{vh}': {e}")),
                    _ => {}
                }
            }
            Err(e) => r.errors.push(format!(
                "policy '{name}' in vhost '{vh}': {}",
                e.rabbit_text().trim_end()
            )),
        }
    }
    for x in list("exchanges")? {
        let name = field(x, "name", "exchange").map_err(malformed)?;
        let vh = field(x, "vhost", "exchange").map_err(malformed)?;
        let Some(v) = st.broker.vhost(vh) else {
            r.errors.push(format!("exchange '{name}': no vhost '{vh}'"));
            continue;
        };
        let b: ExchangeBody =
            serde_json::from_value(x.clone()).map_err(|e| malformed(format!("exchange '{name}': {e}")))?;
        if warren_core::topology::ExchangeKind::parse(&b.kind).is_none() {
            r.skip(
                "exchange",
                Some(vh),
                name,
                format!("exchange type '{}' is not supported", b.kind),
            );
            skipped.push((vh.to_string(), name.to_string(), "exchange"));
            continue;
        }
        if name.is_empty() || name.starts_with("amq.") {
            continue;
        }
        if let Err(e) = put_exchange(st, &v, name, &b).await {
            let e = recordable(e)?;
            r.errors
                .push(format!("exchange '{name}' in vhost '{vh}': {}", e.body["reason"]));
        }
    }
    for q in list("queues")? {
        let name = field(q, "name", "queue").map_err(malformed)?;
        let vh = field(q, "vhost", "queue").map_err(malformed)?;
        let Some(v) = st.broker.vhost(vh) else {
            r.errors.push(format!("queue '{name}': no vhost '{vh}'"));
            continue;
        };
        let b: QueueBody =
            serde_json::from_value(q.clone()).map_err(|e| malformed(format!("queue '{name}': {e}")))?;
        let qtype = b
            .arguments
            .get("x-queue-type")
            .and_then(Value::as_str)
            .or_else(|| q.get("type").and_then(Value::as_str))
            .unwrap_or("classic");
        if !matches!(qtype, "classic" | "quorum") {
            r.skip(
                "queue",
                Some(vh),
                name,
                format!("queue type '{qtype}' is not supported"),
            );
            skipped.push((vh.to_string(), name.to_string(), "queue"));
            continue;
        }
        if let Err(e) = put_queue(st, &v, name, &b).await {
            let e = recordable(e)?;
            r.errors
                .push(format!("queue '{name}' in vhost '{vh}': {}", e.body["reason"]));
        }
    }
    for b in list("bindings")? {
        let source = field(b, "source", "binding").map_err(malformed)?;
        let dest = field(b, "destination", "binding").map_err(malformed)?;
        let vh = field(b, "vhost", "binding").map_err(malformed)?;
        let to_queue = b.get("destination_type").and_then(Value::as_str) != Some("exchange");
        let Some(v) = st.broker.vhost(vh) else {
            r.errors
                .push(format!("binding {source} -> {dest}: no vhost '{vh}'"));
            continue;
        };
        if source.is_empty() {
            continue;
        }
        let dest_kind = if to_queue { "queue" } else { "exchange" };
        let gone = skipped.iter().find(|(v, n, k)| {
            v == vh && ((*k == "exchange" && n == source) || (*k == dest_kind && n == dest))
        });
        if let Some((_, n, k)) = gone {
            r.skip(
                "binding",
                Some(vh),
                &format!("{source} -> {dest}"),
                format!("its {k} '{n}' was skipped"),
            );
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
        if let Err(e) = put_binding(st, &v, source, dest, to_queue, &body).await {
            let e = recordable(e)?;
            let why = if e.status == StatusCode::NOT_FOUND {
                "source or destination does not exist".to_string()
            } else {
                e.body["reason"].to_string()
            };
            r.errors
                .push(format!("binding {source} -> {dest} in vhost '{vh}': {why}"));
        }
    }
    Ok(r)
}

/// `POST /api/definitions`: 204 when everything was applied, 200 with the report when
/// something was skipped or ignored, 400 with the failures ([`ImportReport::into_response`]);
/// 503 when a clustered node could not get a majority to commit a change.
pub async fn import(State(st): State<Shared>, body: Bytes) -> ApiResult<Response> {
    let doc: Value = parse_body(&body)?;
    let report = import_value(&st, &doc).await?;
    Ok(report.into_response())
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
/// `vhost` fields in it are overridden); the users, vhosts, permissions and global parameters
/// of a full export are not imported, and reported as skipped. Answers as [`import`].
pub async fn import_vhost(
    State(st): State<Shared>,
    axum::extract::Path(vh): axum::extract::Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
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
    let mut report = import_value(&st, &Value::Object(scoped)).await?;
    // (document key, report kind, the item's name field, its vhost field)
    let outside: [(&str, &'static str, &str, Option<&str>); 5] = [
        ("users", "user", "name", None),
        ("vhosts", "vhost", "name", Some("name")),
        ("permissions", "permission", "user", Some("vhost")),
        ("topic_permissions", "topic_permission", "user", Some("vhost")),
        ("global_parameters", "global_parameter", "name", None),
    ];
    for (key, kind, name_field, vhost_field) in outside {
        for item in list(&doc, key).map_err(ApiError::bad_request)? {
            let text = |f: &str| item.get(f).and_then(Value::as_str).unwrap_or("");
            let vhost = vhost_field.map(text);
            report.skip(
                kind,
                vhost,
                text(name_field),
                format!("not imported into vhost '{vh}': a single-vhost import takes only its queues, exchanges, bindings, policies and parameters"),
            );
        }
    }
    Ok(report.into_response())
}
