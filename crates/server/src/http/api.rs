//! `/api/*` handlers: RabbitMQ's management API paths and JSON field names for the overview,
//! vhosts, exchanges, queues, bindings, connections, channels, consumers, users, permissions,
//! health checks, message get/publish, purge, and Warren's `/api/alerts` and `…/move`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use warren_codec::{FieldTable, ShortStr};
use warren_core::Message;
use warren_core::queue::Return;
use warren_core::topology::{BindingInfo, ExchangeDeclare, ExchangeMeta, QueueDeclare, QueueMeta};

use super::authz::Caller;
use super::convert::{
    decode_payload, encode_payload, json_to_props, json_to_table, props_to_json, table_to_json,
};
use super::{ApiError, ApiResult, Shared, definitions, dlq, parse_body};
use crate::broker::{VHost, now_ms};
use crate::queue::Queue;
use crate::vhost::BindingRef;

type J = ApiResult<axum::Json<Value>>;

fn ok(v: Value) -> J {
    Ok(axum::Json(v))
}

/// The routes under `/api`.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/overview", get(overview))
        .route("/api/nodes", get(nodes))
        .route("/api/whoami", get(whoami))
        .route("/api/vhosts", get(vhosts))
        .route(
            "/api/vhosts/{name}",
            get(vhost_get).put(vhost_put).delete(vhost_delete),
        )
        .route("/api/exchanges", get(exchanges_all))
        .route("/api/exchanges/{vhost}", get(exchanges_vhost))
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(exchange_get).put(exchange_put).delete(exchange_delete),
        )
        .route("/api/exchanges/{vhost}/{name}/publish", post(exchange_publish))
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/source",
            get(exchange_bindings_source),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/destination",
            get(exchange_bindings_destination),
        )
        .route("/api/queues", get(queues_all))
        .route("/api/queues/{vhost}", get(queues_vhost))
        .route(
            "/api/queues/{vhost}/{name}",
            get(queue_get).put(queue_put).delete(queue_delete),
        )
        .route(
            "/api/queues/{vhost}/{name}/contents",
            axum::routing::delete(queue_purge),
        )
        .route("/api/queues/{vhost}/{name}/get", post(queue_get_messages))
        .route("/api/queues/{vhost}/{name}/move", post(queue_move))
        .route("/api/queues/{vhost}/{name}/bindings", get(queue_bindings))
        .route("/api/bindings", get(bindings_all))
        .route("/api/bindings/{vhost}", get(bindings_vhost))
        .route(
            "/api/bindings/{vhost}/e/{source}/q/{dest}",
            get(bindings_between_q).post(binding_create_q),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/q/{dest}/{props}",
            get(binding_get_q).delete(binding_delete_q),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/e/{dest}",
            get(bindings_between_e).post(binding_create_e),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/e/{dest}/{props}",
            get(binding_get_e).delete(binding_delete_e),
        )
        .route("/api/connections", get(connections))
        .route("/api/channels", get(channels))
        .route("/api/consumers", get(consumers_all))
        .route("/api/consumers/{vhost}", get(consumers_vhost))
        .route("/api/users", get(users))
        .route(
            "/api/users/{name}",
            get(user_get)
                .put(super::users::user_put)
                .delete(super::users::user_delete),
        )
        .route(
            "/api/users/{name}/permissions",
            get(super::users::user_permissions),
        )
        .route(
            "/api/vhosts/{name}/permissions",
            get(super::users::vhost_permissions),
        )
        .route("/api/permissions", get(permissions))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(super::users::permission_get)
                .put(super::users::permission_put)
                .delete(super::users::permission_delete),
        )
        .route(
            "/api/users/{name}/topic-permissions",
            get(super::users::user_topic_permissions),
        )
        .route(
            "/api/vhosts/{name}/topic-permissions",
            get(super::users::vhost_topic_permissions),
        )
        .route("/api/topic-permissions", get(super::users::topic_permissions_all))
        .route(
            "/api/topic-permissions/{vhost}/{user}",
            get(super::users::topic_permission_get)
                .put(super::users::topic_permission_put)
                .delete(super::users::topic_permission_delete),
        )
        .route(
            "/api/topic-permissions/{vhost}/{user}/{exchange}",
            axum::routing::delete(super::users::topic_permission_delete_one),
        )
        .route("/api/policies", get(super::policies::list_all))
        .route("/api/policies/{vhost}", get(super::policies::list_vhost))
        .route(
            "/api/policies/{vhost}/{name}",
            get(super::policies::get)
                .put(super::policies::put)
                .delete(super::policies::delete),
        )
        .route(
            "/api/definitions",
            get(definitions::export).post(definitions::import),
        )
        .route(
            "/api/definitions/{vhost}",
            get(definitions::export_vhost).post(definitions::import_vhost),
        )
        .route("/api/alerts", get(alerts))
        .route("/api/healthchecks/node", get(health_ok))
        .route("/api/healthchecks/alarms", get(health_alarms))
        .route("/api/healthchecks/port-listener/{port}", get(health_port))
        .route("/api/health/checks/alarms", get(health_alarms))
        .route("/api/health/checks/local-alarms", get(health_local_alarms))
        .route("/api/health/checks/virtual-hosts", get(health_ok))
        .route("/api/health/checks/node-is-quorum-critical", get(health_ok))
        .route("/api/health/checks/node-is-mirror-sync-critical", get(health_ok))
        .route("/api/health/checks/ready-to-serve-clients", get(health_ok))
        .route("/api/health/checks/port-listener/{port}", get(health_port))
        .route(
            "/api/health/checks/protocol-listener/{protocol}",
            get(health_protocol),
        )
        .route("/api/aliveness-test/{vhost}", get(aliveness))
}

/// `amq.default` is the default exchange's name in API paths.
pub fn exchange_name(n: &str) -> &str {
    if n == "amq.default" { "" } else { n }
}

fn vhost(st: &Shared, name: &str) -> ApiResult<Arc<VHost>> {
    st.broker.vhost(name).ok_or_else(ApiError::not_found)
}

fn sorted_vhosts(st: &Shared) -> Vec<Arc<VHost>> {
    let mut v = st.broker.vhosts();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// The vhosts whose objects `caller`'s listings include (see [`Caller::lists_vhost`]).
fn listed_vhosts(st: &Shared, caller: &Caller) -> Vec<Arc<VHost>> {
    let mut v = sorted_vhosts(st);
    v.retain(|v| caller.lists_vhost(&st.broker, &v.name));
    v
}

fn rate(r: f64) -> Value {
    json!({"rate": (r * 10.0).round() / 10.0})
}

fn query_flag(q: &Option<String>, name: &str) -> bool {
    q.as_deref()
        .unwrap_or("")
        .split('&')
        .any(|kv| kv == format!("{name}=true") || kv == name)
}

// ---------------------------------------------------------------- overview

async fn overview(State(st): State<Shared>) -> J {
    let m = &st.broker.metrics;
    let gr = st.sampler.lock().global_rates;
    let (mut ready, mut unacked, mut queues, mut exchanges, mut consumers) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for v in st.broker.vhosts() {
        exchanges += v.read_topology(|t| t.exchanges().count()) as u64;
        let handles = v.queue_handles();
        for q in handles {
            let c = q.counts();
            ready += c.ready as u64;
            unacked += c.unacked as u64;
            consumers += c.consumers as u64;
            queues += 1;
        }
    }
    let conns = st.broker.connections();
    let channels: usize = conns.iter().map(|c| c.info.lock().channels).sum();
    let dead: Vec<u64> = m
        .dead_lettered
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    let node = st.node();
    ok(json!({
        "management_version": super::MANAGEMENT_VERSION,
        "rabbitmq_version": super::MANAGEMENT_VERSION,
        "product_name": "Warren",
        "product_version": env!("CARGO_PKG_VERSION"),
        "erlang_version": "n/a",
        "erlang_full_version": "n/a",
        "rates_mode": "basic",
        "cluster_name": "warren",
        "node": node,
        "uptime": st.started.elapsed().as_millis() as u64,
        "exchange_types": [
            {"name": "direct", "description": "AMQP direct exchange", "enabled": true},
            {"name": "fanout", "description": "AMQP fanout exchange", "enabled": true},
            {"name": "headers", "description": "AMQP headers exchange", "enabled": true},
            {"name": "topic", "description": "AMQP topic exchange", "enabled": true},
        ],
        "message_stats": {
            "publish": m.published.load(Ordering::Relaxed), "publish_details": rate(gr[0]),
            "deliver_get": m.delivered.load(Ordering::Relaxed), "deliver_get_details": rate(gr[1]),
            "ack": m.acked.load(Ordering::Relaxed), "ack_details": rate(gr[2]),
            "redeliver": m.redelivered.load(Ordering::Relaxed),
            "drop_unroutable": m.unroutable.load(Ordering::Relaxed),
            "dead_lettered": {"rejected": dead[0], "expired": dead[1], "maxlen": dead[2], "delivery_limit": dead[3]},
        },
        "queue_totals": {
            "messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked,
        },
        "object_totals": {
            "connections": conns.len(), "channels": channels, "exchanges": exchanges,
            "queues": queues, "consumers": consumers,
        },
        "listeners": [
            {"node": node, "protocol": "amqp", "ip_address": st.amqp_addr.ip().to_string(), "port": st.amqp_addr.port()},
            {"node": node, "protocol": "http", "ip_address": st.http_addr.ip().to_string(), "port": st.http_addr.port()},
        ],
        "contexts": [{"node": node, "description": "RabbitMQ Management", "path": "/", "port": st.http_addr.port().to_string()}],
        "statistics_db_event_queue": 0,
    }))
}

async fn nodes(State(st): State<Shared>) -> J {
    let alarms = st.broker.alarms.current();
    ok(json!([{
        "name": st.node(), "type": "disc", "running": true,
        "uptime": st.started.elapsed().as_millis() as u64,
        "mem_used": super::metrics::resident_memory_bytes(),
        "mem_alarm": alarms.memory, "disk_free_alarm": alarms.disk,
        "mem_limit": st.broker.alarms.memory_limit(),
        "disk_free_limit": st.broker.alarms.disk_free_limit(),
        "store": store_json(&st.broker),
        "os_pid": std::process::id().to_string(), "processors": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "rates_mode": "basic", "being_drained": false, "enabled_plugins": ["rabbitmq_management", "rabbitmq_prometheus"],
        "rabbitmq_version": super::MANAGEMENT_VERSION, "erlang_version": "n/a",
        "applications": [{"name": "rabbit", "description": "Warren", "version": super::MANAGEMENT_VERSION}],
    }]))
}

async fn whoami(State(st): State<Shared>, headers: axum::http::HeaderMap) -> J {
    let user = super::basic_credentials(&headers)
        .map(|(u, _)| u)
        .unwrap_or_default();
    let tags = st.broker.users.get(&user).map(|u| u.tags).unwrap_or_default();
    ok(json!({"name": user, "tags": tags}))
}

// ---------------------------------------------------------------- vhosts

fn vhost_json(v: &VHost) -> Value {
    let handles = v.queue_handles();
    let (mut ready, mut unacked) = (0u64, 0u64);
    for q in handles {
        let c = q.counts();
        ready += c.ready as u64;
        unacked += c.unacked as u64;
    }
    json!({
        "name": v.name, "description": "", "tags": [], "default_queue_type": "classic",
        "metadata": {"description": "", "tags": [], "default_queue_type": "classic"},
        "tracing": false, "cluster_state": {},
        "messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked,
    })
}

async fn vhosts(State(st): State<Shared>, Extension(c): Extension<Caller>) -> J {
    ok(Value::Array(
        sorted_vhosts(&st)
            .iter()
            .filter(|v| c.sees_vhost(&st.broker, &v.name))
            .map(|v| vhost_json(v))
            .collect(),
    ))
}

async fn vhost_get(State(st): State<Shared>, Path(name): Path<String>) -> J {
    let v = vhost(&st, &name)?;
    ok(vhost_json(&v))
}

async fn vhost_put(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let _: Value = parse_body(&body)?;
    if !st.broker.create_vhost(&name) {
        return Ok(StatusCode::NO_CONTENT);
    }
    // RabbitMQ grants the administrator who creates a vhost full permissions on it.
    if st.broker.users.permission(&c.name, &name).is_none() {
        let _ = st
            .broker
            .set_permission(&c.name, &name, crate::auth::Permission::all());
    }
    Ok(StatusCode::CREATED)
}

async fn vhost_delete(State(st): State<Shared>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let v = st.broker.remove_vhost(&name).ok_or_else(ApiError::not_found)?;
    for c in st.broker.connections() {
        if c.info.lock().vhost == name {
            c.close(
                warren_codec::ReplyCode::ConnectionForced,
                "CONNECTION_FORCED - vhost deleted",
            );
        }
    }
    v.delete_contents();
    st.broker.forget_vhost(&name);
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- exchanges

pub fn exchange_json(vhost: &str, x: &ExchangeMeta) -> Value {
    json!({
        "name": x.name.to_string(), "vhost": vhost, "type": x.kind.name(), "durable": x.durable,
        "auto_delete": x.auto_delete, "internal": x.internal, "arguments": table_to_json(&x.arguments),
        "user_who_performed_action": "rmq-internal", "policy": null,
    })
}

/// The exchanges of `v` by name (a light snapshot, rendered by [`exchanges_reply`]).
fn exchanges_of(v: &Arc<VHost>) -> Vec<(Arc<VHost>, ShortStr)> {
    let mut names: Vec<ShortStr> = v.read_topology(|t| t.exchanges().map(|x| x.name.clone()).collect());
    names.sort();
    names.into_iter().map(|n| (v.clone(), n)).collect()
}

fn exchanges_reply(query: Option<String>, items: Vec<(Arc<VHost>, ShortStr)>) -> Response {
    super::listing::reply(
        query.as_deref(),
        true,
        items,
        |(_, n)| n,
        |(v, n)| v.read_topology(|t| t.exchange(n).map(|x| exchange_json(&v.name, x))),
    )
}

async fn exchanges_all(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    exchanges_reply(q, listed_vhosts(&st, &c).iter().flat_map(exchanges_of).collect())
}

async fn exchanges_vhost(
    State(st): State<Shared>,
    Path(vh): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let v = vhost(&st, &vh)?;
    Ok(exchanges_reply(q, exchanges_of(&v)))
}

async fn exchange_get(State(st): State<Shared>, Path((vh, name)): Path<(String, String)>) -> J {
    let v = vhost(&st, &vh)?;
    let x = v.read_topology(|t| {
        t.exchange(exchange_name(&name))
            .map(|x| exchange_json(&v.name, x))
    });
    ok(x.ok_or_else(ApiError::not_found)?)
}

/// `PUT /api/exchanges/{vhost}/{name}` body.
#[derive(Debug, Deserialize)]
pub struct ExchangeBody {
    /// Type name.
    #[serde(rename = "type", default = "direct")]
    pub kind: String,
    /// Durable.
    #[serde(default = "yes")]
    pub durable: bool,
    /// Auto-delete.
    #[serde(default)]
    pub auto_delete: bool,
    /// Internal.
    #[serde(default)]
    pub internal: bool,
    /// Arguments.
    #[serde(default)]
    pub arguments: Value,
}

fn direct() -> String {
    "direct".into()
}
fn yes() -> bool {
    true
}

/// Declares an exchange through the vhost's one declare path. Returns whether it was created.
pub fn declare_exchange(v: &VHost, name: &str, b: &ExchangeBody) -> ApiResult<bool> {
    let args = json_to_table(&b.arguments).map_err(ApiError::bad_request)?;
    Ok(v.declare_exchange(&ExchangeDeclare {
        name,
        kind: &b.kind,
        passive: false,
        durable: b.durable,
        auto_delete: b.auto_delete,
        internal: b.internal,
        arguments: &args,
    })?)
}

async fn exchange_put(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let v = vhost(&st, &vh)?;
    let b: ExchangeBody = parse_body(&body)?;
    let created = declare_exchange(&v, exchange_name(&name), &b)?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

async fn exchange_delete(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<StatusCode> {
    let v = vhost(&st, &vh)?;
    let name = exchange_name(&name);
    if !v.read_topology(|t| t.exchange(name).is_some()) {
        return Err(ApiError::not_found());
    }
    v.delete_exchange(name, query_flag(&q, "if-unused"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/exchanges/{vhost}/{name}/publish` body.
#[derive(Debug, Deserialize)]
struct PublishBody {
    #[serde(default)]
    properties: Value,
    #[serde(default)]
    routing_key: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    payload_encoding: String,
}

async fn exchange_publish(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    Path((vh, name)): Path<(String, String)>,
    body: Bytes,
) -> J {
    let v = vhost(&st, &vh)?;
    let b: PublishBody = parse_body(&body)?;
    let exchange = exchange_name(&name);
    if !exchange.is_empty() && !v.read_topology(|t| t.exchange(exchange).is_some()) {
        return Err(ApiError::not_found());
    }
    let properties = json_to_props(&b.properties).map_err(ApiError::bad_request)?;
    // What AMQP checks on basic.publish besides `write` (checked by the route's rule).
    c.check_user_id(properties.user_id.as_deref())
        .and_then(|()| c.check_topic_write(&st.broker, &vh, exchange, &b.routing_key))
        .map_err(|e| ApiError::amqp_failure(&e))?;
    let payload = decode_payload(&b.payload, &b.payload_encoding).map_err(ApiError::bad_request)?;
    if b.routing_key.len() > 255 {
        return Err(ApiError::bad_request("routing key too long"));
    }
    let msg = Arc::new(Message::new(exchange, &b.routing_key, properties, payload));
    let ttl = msg.expiration_ms().map_err(ApiError::bad_request)?;
    st.broker.metrics.published.fetch_add(1, Ordering::Relaxed);
    let o = v.publish(msg, ttl, now_ms())?;
    if o.enqueued + o.rejected + o.duplicates == 0 {
        st.broker.metrics.unroutable.fetch_add(1, Ordering::Relaxed);
    }
    ok(json!({"routed": o.enqueued + o.duplicates > 0}))
}

// ---------------------------------------------------------------- queues

/// A queue as RabbitMQ's `/api/queues` shows it, plus `dead_letter_queue` and `alerts`.
pub fn queue_json(st: &Shared, vhost: &str, meta: &QueueMeta, q: Option<&Arc<Queue>>, is_dlq: bool) -> Value {
    let c = q.map(|q| q.counts());
    let (ready, unacked, consumers, bytes) = c
        .map(|c| {
            (
                c.ready as u64,
                c.unacked as u64,
                c.consumers as u64,
                c.ready_bytes,
            )
        })
        .unwrap_or_default();
    let (ready_ram, paged_out) = q.map(|q| q.memory_counts()).unwrap_or_default();
    let counters = q
        .map(|q| {
            [
                q.stats.published.load(Ordering::Relaxed),
                q.stats.delivered.load(Ordering::Relaxed),
                q.stats.acked.load(Ordering::Relaxed),
            ]
        })
        .unwrap_or_default();
    let (rates, growth, alerts) = {
        let s = st.sampler.lock();
        let (r, g) = s.queue_rates(vhost, &meta.name);
        let alerts: Vec<Value> = s
            .alerts
            .values()
            .filter(|a| a.vhost == vhost && *a.queue == *meta.name)
            .map(|a| a.to_json())
            .collect();
        (r, g, alerts)
    };
    let qtype = if meta.args.quorum { "quorum" } else { "classic" };
    let policy = st.broker.vhost(vhost).and_then(|v| v.queue_policy(meta));
    let policy_definition = policy
        .as_ref()
        .map(|p| table_to_json(&p.definition))
        .unwrap_or_else(|| json!({}));
    json!({
        "name": meta.name.to_string(), "vhost": vhost, "durable": meta.durable,
        "auto_delete": meta.auto_delete, "exclusive": meta.exclusive_owner.is_some(),
        "arguments": table_to_json(&meta.arguments), "type": qtype, "state": "running",
        "node": st.node(), "policy": policy.map(|p| p.name), "operator_policy": null,
        "effective_policy_definition": policy_definition, "exclusive_consumer_tag": null,
        "messages": ready + unacked, "messages_details": rate(0.0),
        "messages_ready": ready, "messages_ready_details": rate(0.0),
        "messages_unacknowledged": unacked, "messages_unacknowledged_details": rate(0.0),
        "message_bytes": bytes, "message_bytes_ready": bytes,
        "memory": bytes + 1024,
        "messages_ready_ram": ready_ram, "messages_paged_out": paged_out,
        "consumers": consumers,
        "message_stats": {
            "publish": counters[0], "publish_details": rate(rates[0]),
            "deliver_get": counters[1], "deliver_get_details": rate(rates[1]),
            "ack": counters[2], "ack_details": rate(rates[2]),
        },
        "dead_letter_queue": is_dlq,
        "growth_per_minute": (growth * 10.0).round() / 10.0,
        "alerts": alerts,
    })
}

/// One queue of a listing: rendered from the live topology when its page is written.
struct QueueItem {
    vhost: Arc<VHost>,
    name: ShortStr,
    dlq: bool,
}

/// The queues of `v` by name: a light snapshot; [`super::listing`] renders them.
fn queues_of(v: &Arc<VHost>) -> Vec<QueueItem> {
    let dlqs = dlq::vhost_dead_letter_queues(v);
    let mut names: Vec<ShortStr> = v.read_topology(|t| t.queues().map(|m| m.name.clone()).collect());
    names.sort();
    names
        .into_iter()
        .map(|name| QueueItem {
            vhost: v.clone(),
            dlq: dlqs.contains(&*name),
            name,
        })
        .collect()
}

fn queues_reply(st: Shared, query: Option<String>, items: Vec<QueueItem>) -> Response {
    super::listing::reply(
        query.as_deref(),
        true,
        items,
        |i| &i.name,
        move |i| {
            let meta = i.vhost.read_topology(|t| t.queue(&i.name).cloned())?;
            let handle = i.vhost.queue_by_id(meta.id);
            Some(queue_json(&st, &i.vhost.name, &meta, handle.as_ref(), i.dlq))
        },
    )
}

async fn queues_all(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    let items = listed_vhosts(&st, &c).iter().flat_map(queues_of).collect();
    queues_reply(st, q, items)
}

async fn queues_vhost(
    State(st): State<Shared>,
    Path(vh): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let v = vhost(&st, &vh)?;
    Ok(queues_reply(st, q, queues_of(&v)))
}

fn find_queue(v: &VHost, name: &str) -> ApiResult<(QueueMeta, Arc<Queue>, bool)> {
    let meta = v
        .read_topology(|t| t.queue(name).cloned())
        .ok_or_else(ApiError::not_found)?;
    let is_dlq = dlq::vhost_dead_letter_queues(v).contains(name);
    let q = v.queue_by_id(meta.id).ok_or_else(ApiError::not_found)?;
    Ok((meta, q, is_dlq))
}

async fn queue_get(State(st): State<Shared>, Path((vh, name)): Path<(String, String)>) -> J {
    let v = vhost(&st, &vh)?;
    let (meta, q, is_dlq) = find_queue(&v, &name)?;
    ok(queue_json(&st, &v.name, &meta, Some(&q), is_dlq))
}

/// `PUT /api/queues/{vhost}/{name}` body.
#[derive(Debug, Deserialize)]
pub struct QueueBody {
    /// Durable.
    #[serde(default = "yes")]
    pub durable: bool,
    /// Auto-delete.
    #[serde(default)]
    pub auto_delete: bool,
    /// Arguments.
    #[serde(default)]
    pub arguments: Value,
}

/// Declares a queue through the vhost's one declare path (limits, definition record, handle).
/// Returns whether it was created.
pub fn declare_queue(v: &Arc<VHost>, name: &str, b: &QueueBody, limit: u32) -> ApiResult<bool> {
    if name.is_empty() || name.len() > 255 {
        return Err(ApiError::bad_request("invalid queue name"));
    }
    let args = json_to_table(&b.arguments).map_err(ApiError::bad_request)?;
    let (_, created) = v.declare_queue(
        &QueueDeclare {
            name,
            passive: false,
            durable: b.durable,
            exclusive: false,
            auto_delete: b.auto_delete,
            arguments: &args,
            owner: 0,
            server_named: false,
        },
        limit,
    )?;
    Ok(created)
}

async fn queue_put(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let v = vhost(&st, &vh)?;
    let b: QueueBody = parse_body(&body)?;
    let created = declare_queue(&v, &name, &b, st.broker.config.max_queues_per_vhost)?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

async fn queue_delete(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<StatusCode> {
    let v = vhost(&st, &vh)?;
    let (_, q, _) = find_queue(&v, &name)?;
    let c = q.counts();
    if query_flag(&query, "if-unused") && c.consumers > 0 {
        return Err(ApiError::bad_request(format!(
            "queue '{name}' in vhost '{vh}' in use"
        )));
    }
    if query_flag(&query, "if-empty") && c.ready > 0 {
        return Err(ApiError::bad_request(format!(
            "queue '{name}' in vhost '{vh}' is not empty"
        )));
    }
    v.delete_queue(&name);
    Ok(StatusCode::NO_CONTENT)
}

async fn queue_purge(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let v = vhost(&st, &vh)?;
    let (_, q, _) = find_queue(&v, &name)?;
    q.purge();
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/get` body.
#[derive(Debug, Deserialize)]
struct GetBody {
    #[serde(default = "one")]
    count: usize,
    #[serde(default = "requeue_true")]
    ackmode: String,
    #[serde(default = "auto")]
    encoding: String,
    truncate: Option<usize>,
}
fn one() -> usize {
    1
}
fn requeue_true() -> String {
    "ack_requeue_true".into()
}
fn auto() -> String {
    "auto".into()
}

async fn queue_get_messages(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
    body: Bytes,
) -> J {
    let v = vhost(&st, &vh)?;
    let b: GetBody = parse_body(&body)?;
    let settle: Option<Option<Return>> = match b.ackmode.as_str() {
        "ack_requeue_true" | "reject_requeue_true" => Some(Some(Return::Returned)),
        "ack_requeue_false" => None,
        "reject_requeue_false" => Some(None),
        other => return Err(ApiError::bad_request(format!("unknown ackmode {other}"))),
    };
    if !matches!(b.encoding.as_str(), "auto" | "base64") {
        return Err(ApiError::bad_request(format!("unknown encoding {}", b.encoding)));
    }
    let (_, q, _) = find_queue(&v, &name)?;
    let key = st.op_key();
    let mut out = Vec::new();
    let mut seqs = Vec::new();
    for _ in 0..b.count.min(10_000) {
        let Some((d, remaining)) = q.get(key, false) else {
            break;
        };
        st.broker.metrics.delivered.fetch_add(1, Ordering::Relaxed);
        seqs.push(d.seq);
        let m = &d.msg;
        let body = match b.truncate {
            Some(n) if n < m.body.len() => &m.body[..n],
            _ => &m.body[..],
        };
        let (payload, enc) = encode_payload(body, &b.encoding);
        out.push(json!({
            "payload_bytes": m.body.len(),
            "redelivered": d.redelivered,
            "exchange": m.exchange.to_string(),
            "routing_key": m.routing_key.to_string(),
            "message_count": remaining,
            "properties": props_to_json(&m.properties),
            "payload": payload,
            "payload_encoding": enc,
        }));
    }
    match settle {
        None => {
            q.ack(&seqs);
            st.broker
                .metrics
                .acked
                .fetch_add(seqs.len() as u64, Ordering::Relaxed);
        }
        Some(how) => q.reject(&seqs, how),
    }
    ok(Value::Array(out))
}

async fn queue_move(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    Path((vh, name)): Path<(String, String)>,
    body: Bytes,
) -> J {
    let v = vhost(&st, &vh)?;
    let req: dlq::MoveRequest = parse_body(&body)?;
    // `read` on the DLQ is the route's rule; `write` on where the messages go (the default
    // exchange unless a target names another).
    let dest = req.target.as_ref().map_or("", |t| exchange_name(&t.exchange));
    c.check(
        &st.broker,
        &vh,
        crate::access::Resource::Exchange,
        dest,
        crate::auth::Access::Write,
    )
    .map_err(|e| ApiError {
        status: StatusCode::UNAUTHORIZED,
        body: json!({"error": "not_authorised", "reason": e.reply_text()}),
    })?;
    let (_, q, _) = find_queue(&v, &name)?;
    let key = st.op_key();
    let report = dlq::move_messages(&v, &q, &req, key);
    if !req.dry_run {
        tracing::info!(vhost = %vh, queue = %name, moved = %report["moved"], failed = report["failed"].as_array().map_or(0, |a| a.len()), "dead-lettered messages moved");
    }
    ok(report)
}

// ---------------------------------------------------------------- bindings

/// RabbitMQ's `properties_key`: the routing key (`~` if empty), plus `~` and a hash of the
/// arguments when there are any.
pub fn props_key(b: &BindingInfo) -> String {
    let key = super::client::encode_segment(&b.routing_key);
    if b.arguments.is_empty() {
        return if key.is_empty() { "~".into() } else { key };
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    table_to_json(&b.arguments).to_string().hash(&mut h);
    format!("{key}~{:x}", h.finish())
}

fn binding_json(vhost: &str, b: &BindingInfo) -> Value {
    json!({
        "source": b.source.to_string(), "vhost": vhost, "destination": b.destination.to_string(),
        "destination_type": if b.destination_is_queue { "queue" } else { "exchange" },
        "routing_key": b.routing_key.to_string(), "arguments": table_to_json(&b.arguments),
        "properties_key": props_key(b),
    })
}

fn bindings_of(v: &VHost) -> Vec<BindingInfo> {
    let mut b = v.read_topology(|t| t.bindings());
    b.sort_by(|x, y| {
        (&x.source, &x.destination, &x.routing_key).cmp(&(&y.source, &y.destination, &y.routing_key))
    });
    b
}

/// Bindings are listed (streamed) but not paginated, as RabbitMQ.
fn bindings_reply(query: Option<String>, items: Vec<(Arc<VHost>, BindingInfo)>) -> Response {
    super::listing::reply(
        query.as_deref(),
        false,
        items,
        |(_, b)| &b.source,
        |(v, b)| Some(binding_json(&v.name, b)),
    )
}

async fn bindings_all(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    let mut items = Vec::new();
    for v in listed_vhosts(&st, &c) {
        items.extend(bindings_of(&v).into_iter().map(|b| (v.clone(), b)));
    }
    bindings_reply(q, items)
}

async fn bindings_vhost(
    State(st): State<Shared>,
    Path(vh): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let v = vhost(&st, &vh)?;
    Ok(bindings_reply(
        q,
        bindings_of(&v).into_iter().map(|b| (v.clone(), b)).collect(),
    ))
}

fn filtered(st: &Shared, vh: &str, f: impl Fn(&BindingInfo) -> bool) -> J {
    let v = vhost(st, vh)?;
    ok(Value::Array(
        bindings_of(&v)
            .iter()
            .filter(|b| f(b))
            .map(|b| binding_json(&v.name, b))
            .collect(),
    ))
}

async fn exchange_bindings_source(State(st): State<Shared>, Path((vh, name)): Path<(String, String)>) -> J {
    let name = exchange_name(&name).to_string();
    filtered(&st, &vh, |b| *b.source == *name)
}

async fn exchange_bindings_destination(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
) -> J {
    filtered(&st, &vh, |b| !b.destination_is_queue && *b.destination == *name)
}

async fn queue_bindings(State(st): State<Shared>, Path((vh, name)): Path<(String, String)>) -> J {
    let v = vhost(&st, &vh)?;
    find_queue(&v, &name)?;
    filtered(&st, &vh, |b| b.destination_is_queue && *b.destination == *name)
}

fn between(st: &Shared, vh: &str, source: &str, dest: &str, to_queue: bool) -> J {
    let v = vhost(st, vh)?;
    let exists = v.read_topology(|t| {
        let dest_exists = if to_queue {
            t.queue(dest).is_some()
        } else {
            t.exchange(dest).is_some()
        };
        dest_exists && t.exchange(exchange_name(source)).is_some()
    });
    if !exists {
        return Err(ApiError::not_found());
    }
    let src = exchange_name(source).to_string();
    filtered(st, vh, |b| {
        b.destination_is_queue == to_queue && *b.source == *src && *b.destination == *dest
    })
}

async fn bindings_between_q(State(st): State<Shared>, Path((vh, s, d)): Path<(String, String, String)>) -> J {
    between(&st, &vh, &s, &d, true)
}

async fn bindings_between_e(State(st): State<Shared>, Path((vh, s, d)): Path<(String, String, String)>) -> J {
    between(&st, &vh, &s, &d, false)
}

/// `POST /api/bindings/…` body.
#[derive(Debug, Deserialize, Default)]
pub struct BindingBody {
    /// Binding key.
    #[serde(default)]
    pub routing_key: String,
    /// Arguments.
    #[serde(default)]
    pub arguments: Value,
}

/// Creates a binding through the topology's bind rules.
pub fn bind(v: &VHost, source: &str, dest: &str, to_queue: bool, b: &BindingBody) -> ApiResult<BindingInfo> {
    let args: FieldTable = json_to_table(&b.arguments).map_err(ApiError::bad_request)?;
    v.bind(
        &BindingRef {
            source,
            destination: dest,
            to_queue,
            routing_key: &b.routing_key,
            arguments: &args,
        },
        None,
    )?;
    Ok(BindingInfo {
        source: ShortStr::from(source),
        destination: ShortStr::from(dest),
        destination_is_queue: to_queue,
        routing_key: ShortStr::from(b.routing_key.as_str()),
        arguments: args,
    })
}

fn create(
    st: &Shared,
    vh: &str,
    source: &str,
    dest: &str,
    to_queue: bool,
    body: &[u8],
) -> ApiResult<Response> {
    let v = vhost(st, vh)?;
    let b: BindingBody = parse_body(body)?;
    let source = exchange_name(source);
    if source.is_empty() {
        return Err(ApiError::bad_request(
            "operation not permitted on the default exchange",
        ));
    }
    let info = bind(&v, source, dest, to_queue, &b)?;
    let kind = if to_queue { "q" } else { "e" };
    let loc = format!(
        "/api/bindings/{}/e/{}/{kind}/{}/{}",
        super::client::encode_segment(vh),
        super::client::encode_segment(source),
        super::client::encode_segment(dest),
        props_key(&info)
    );
    Ok((StatusCode::CREATED, [(header::LOCATION, loc)]).into_response())
}

async fn binding_create_q(
    State(st): State<Shared>,
    Path((vh, s, d)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    create(&st, &vh, &s, &d, true, &body)
}

async fn binding_create_e(
    State(st): State<Shared>,
    Path((vh, s, d)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    create(&st, &vh, &s, &d, false, &body)
}

fn find_binding(
    st: &Shared,
    vh: &str,
    s: &str,
    d: &str,
    to_queue: bool,
    props: &str,
) -> ApiResult<BindingInfo> {
    let v = vhost(st, vh)?;
    let src = exchange_name(s);
    bindings_of(&v)
        .into_iter()
        .find(|b| {
            b.destination_is_queue == to_queue
                && *b.source == *src
                && *b.destination == *d
                && (props_key(b) == props || props_key(b) == super::client::encode_segment(props))
        })
        .ok_or_else(ApiError::not_found)
}

async fn binding_get_q(
    State(st): State<Shared>,
    Path((vh, s, d, p)): Path<(String, String, String, String)>,
) -> J {
    ok(binding_json(&vh, &find_binding(&st, &vh, &s, &d, true, &p)?))
}

async fn binding_get_e(
    State(st): State<Shared>,
    Path((vh, s, d, p)): Path<(String, String, String, String)>,
) -> J {
    ok(binding_json(&vh, &find_binding(&st, &vh, &s, &d, false, &p)?))
}

fn unbind(st: &Shared, vh: &str, s: &str, d: &str, to_queue: bool, p: &str) -> ApiResult<StatusCode> {
    let b = find_binding(st, vh, s, d, to_queue, p)?;
    if b.source.is_empty() {
        return Err(ApiError::bad_request(
            "operation not permitted on the default exchange",
        ));
    }
    let v = vhost(st, vh)?;
    v.unbind(
        &BindingRef {
            source: &b.source,
            destination: &b.destination,
            to_queue,
            routing_key: &b.routing_key,
            arguments: &b.arguments,
        },
        None,
    )?;
    Ok(StatusCode::NO_CONTENT)
}

async fn binding_delete_q(
    State(st): State<Shared>,
    Path((vh, s, d, p)): Path<(String, String, String, String)>,
) -> ApiResult<StatusCode> {
    unbind(&st, &vh, &s, &d, true, &p)
}

async fn binding_delete_e(
    State(st): State<Shared>,
    Path((vh, s, d, p)): Path<(String, String, String, String)>,
) -> ApiResult<StatusCode> {
    unbind(&st, &vh, &s, &d, false, &p)
}

// ---------------------------------------------------------------- connections, channels, consumers

fn conn_name(st: &Shared, info: &crate::connection::ConnInfo) -> String {
    match info.peer {
        Some(p) => format!("{p} -> {}", st.amqp_addr),
        None => format!("? -> {}", st.amqp_addr),
    }
}

async fn connections(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    let mut items: Vec<(String, Arc<crate::connection::ConnShared>)> = st
        .broker
        .connections()
        .into_iter()
        .filter(|c| caller.sees_connection(&c.info.lock().user))
        .map(|c| {
            let name = conn_name(&st, &c.info.lock());
            (name, c)
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    super::listing::reply(
        q.as_deref(),
        true,
        items,
        |(n, _)| n,
        move |(name, c)| {
            let info = c.info.lock().clone();
            let mut conn = json!({
                "name": name, "node": st.node(), "user": info.user, "vhost": info.vhost,
                "channels": info.channels, "state": "running", "protocol": "AMQP 0-9-1", "type": "network",
                "peer_host": info.peer.map(|p| p.ip().to_string()), "peer_port": info.peer.map(|p| p.port()),
                "host": st.amqp_addr.ip().to_string(), "port": st.amqp_addr.port(),
                "client_properties": table_to_json(&info.client_properties), "connected_at": info.connected_at,
            });
            // Present only when the client named the connection, as in RabbitMQ.
            if let Some(n) = &info.user_provided_name {
                conn["user_provided_name"] = json!(n);
            }
            Some(conn)
        },
    )
}

async fn channels(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    let mut items = Vec::new();
    for c in st.broker.connections() {
        let info = c.info.lock().clone();
        if !caller.sees_connection(&info.user) {
            continue;
        }
        let name = conn_name(&st, &info);
        for n in 1..=info.channels {
            items.push((format!("{name} ({n})"), n, info.clone()));
        }
    }
    super::listing::reply(
        q.as_deref(),
        true,
        items,
        |(n, _, _)| n,
        move |(cname, n, info)| {
            let name = conn_name(&st, info);
            Some(json!({
                "name": cname, "number": n, "node": st.node(), "user": info.user,
                "vhost": info.vhost, "state": "running",
                "connection_details": {"name": name, "peer_host": info.peer.map(|p| p.ip().to_string()),
                                       "peer_port": info.peer.map(|p| p.port())},
            }))
        },
    )
}

/// One consumer of a listing.
type ConsumerItem = (Arc<VHost>, Arc<Queue>, warren_core::queue::ConsumerSpec);

fn consumers_of(v: &Arc<VHost>) -> Vec<ConsumerItem> {
    let handles = v.queue_handles();
    let mut out = Vec::new();
    for q in handles {
        for c in q.consumer_specs() {
            out.push((v.clone(), q.clone(), c));
        }
    }
    out
}

/// Consumers are listed (streamed) but not paginated, as RabbitMQ.
fn consumers_reply(st: Shared, query: Option<String>, items: Vec<ConsumerItem>) -> Response {
    let conns: std::collections::HashMap<u64, crate::connection::ConnInfo> = st
        .broker
        .connections()
        .iter()
        .map(|c| (c.id, c.info.lock().clone()))
        .collect();
    super::listing::reply(
        query.as_deref(),
        false,
        items,
        |(_, _, c)| &c.tag,
        move |(v, q, c)| {
            let conn_id = c.channel >> 16;
            let number = c.channel & 0xffff;
            let info = conns.get(&conn_id).cloned().unwrap_or_default();
            let cname = conn_name(&st, &info);
            Some(json!({
                "consumer_tag": c.tag.to_string(),
                "queue": {"name": q.meta.name.to_string(), "vhost": v.name},
                "channel_details": {"name": format!("{cname} ({number})"), "number": number,
                                    "connection_name": cname, "node": st.node(), "user": info.user,
                                    "peer_host": info.peer.map(|p| p.ip().to_string()),
                                    "peer_port": info.peer.map(|p| p.port())},
                "ack_required": !c.no_ack, "exclusive": c.exclusive, "prefetch_count": c.prefetch,
                "priority": c.priority, "arguments": {}, "active": true, "activity_status": "up",
            }))
        },
    )
}

async fn consumers_all(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    let items = listed_vhosts(&st, &c).iter().flat_map(consumers_of).collect();
    consumers_reply(st, q, items)
}

async fn consumers_vhost(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    Path(vh): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let v = vhost(&st, &vh)?;
    if !c.lists_vhost(&st.broker, &vh) {
        return Ok(consumers_reply(st, q, Vec::new()));
    }
    Ok(consumers_reply(st, q, consumers_of(&v)))
}

// ---------------------------------------------------------------- users, permissions, policies

/// A user as `/api/users` and definitions show it.
pub fn user_json(u: &crate::auth::User) -> Value {
    json!({"name": u.name, "password_hash": u.password_hash,
           "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": u.tags, "limits": {}})
}

async fn users(State(st): State<Shared>) -> J {
    let mut us = st.broker.users.list();
    us.sort_by(|a, b| a.name.cmp(&b.name));
    ok(Value::Array(us.iter().map(user_json).collect()))
}

async fn user_get(State(st): State<Shared>, Path(name): Path<String>) -> J {
    let u = st.broker.users.get(&name).ok_or_else(ApiError::not_found)?;
    ok(user_json(&u))
}

/// Every user's permissions on every vhost, from the broker's store.
pub fn permissions_json(st: &Shared) -> Vec<Value> {
    super::users::permissions_json(st)
}

async fn permissions(State(st): State<Shared>) -> J {
    ok(Value::Array(permissions_json(&st)))
}

async fn alerts(State(st): State<Shared>, Extension(c): Extension<Caller>) -> J {
    let mut a: Vec<Value> = st
        .sampler
        .lock()
        .alerts
        .values()
        .filter(|a| c.lists_vhost(&st.broker, &a.vhost))
        .map(|a| a.to_json())
        .collect();
    a.sort_by_key(|x| x.to_string());
    ok(Value::Array(a))
}

// ---------------------------------------------------------------- health checks

async fn health_ok() -> J {
    ok(json!({"status": "ok"}))
}

fn unhealthy(body: Value) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

/// RabbitMQ's alarm checks: 200 `{"status":"ok"}`, or 503 with the alarms in effect.
fn alarm_check(st: &Shared, reason: &str) -> Response {
    let a = st.broker.alarms.current();
    if !a.any() {
        return axum::Json(json!({"status": "ok"})).into_response();
    }
    let node = st.node();
    let alarms: Vec<Value> = [(a.memory, "memory"), (a.disk, "disk")]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, resource)| {
            let mut a = json!({"node": node, "resource": resource});
            if resource == "disk" {
                a["store"] = store_json(&st.broker);
            }
            a
        })
        .collect();
    unhealthy(json!({"status": "failed", "reason": reason, "alarms": alarms}))
}

/// The message store's health: `{"status": "ok"}`, or why it refuses writes and whether only a
/// restart clears that.
fn store_json(broker: &crate::broker::Broker) -> Value {
    match crate::alarms::store_problem(broker) {
        None => json!({"status": "ok"}),
        Some(p) if p.restart_required => json!({
            "status": "failed", "error": p.error, "restart_required": true,
            "action": "an fsync failed: restart the broker (unconfirmed publishes were nacked)",
        }),
        Some(p) => json!({
            "status": "failed", "error": p.error, "restart_required": false,
            "action": "free disk space: the store resumes by itself",
        }),
    }
}

async fn health_alarms(State(st): State<Shared>) -> Response {
    alarm_check(&st, "There are alarms in effect in the cluster")
}

async fn health_local_alarms(State(st): State<Shared>) -> Response {
    alarm_check(&st, "There are alarms in effect on the node")
}

async fn health_port(State(st): State<Shared>, Path(port): Path<String>) -> Response {
    let ports = [st.amqp_addr.port(), st.http_addr.port()];
    match port.parse::<u16>() {
        Ok(p) if ports.contains(&p) => axum::Json(json!({"status": "ok", "port": p})).into_response(),
        Ok(p) => unhealthy(
            json!({"status": "failed", "reason": format!("No active listener on port {p}"),
                                  "missing": p, "ports": ports}),
        ),
        Err(_) => ApiError::bad_request(format!("invalid port {port}")).into_response(),
    }
}

async fn health_protocol(Path(proto): Path<String>) -> Response {
    let known = matches!(
        proto.as_str(),
        "amqp" | "amqp091" | "amqp0-9-1" | "http" | "management"
    );
    if known {
        axum::Json(json!({"status": "ok", "protocol": proto})).into_response()
    } else {
        unhealthy(
            json!({"status": "failed", "reason": format!("No active listener for protocol {proto}"),
                         "missing": proto, "protocols": ["amqp", "http"]}),
        )
    }
}

async fn aliveness(State(st): State<Shared>, Path(vh): Path<String>) -> J {
    vhost(&st, &vh)?;
    ok(json!({"status": "ok"}))
}
