//! The overview, nodes and whoami (`/api/overview`, `/api/nodes`, `/api/whoami`).

use super::common::*;
use super::health::store_json;

/// This node's own totals (its queues, their messages and consumers, its connections and
/// channels), as `/api/overview` adds them up over the cluster.
pub(super) fn local_totals(st: &Shared) -> Value {
    let (mut ready, mut unacked, mut queues, mut consumers) = (0u64, 0u64, 0u64, 0u64);
    for v in st.broker.vhosts() {
        for q in v.queue_handles() {
            let c = q.counts();
            ready += c.ready as u64;
            unacked += c.unacked as u64;
            consumers += c.consumers as u64;
            queues += 1;
        }
    }
    let conns = st.broker.connections();
    let channels: usize = conns.iter().map(|c| c.channel_count()).sum();
    json!({"messages_ready": ready, "messages_unacknowledged": unacked, "queues": queues,
           "consumers": consumers, "connections": conns.len(), "channels": channels})
}

pub(super) async fn overview(State(st): State<Shared>) -> J {
    let m = &st.broker.metrics;
    let gr = st.sampler.lock().global_rates;
    let exchanges: usize = st
        .broker
        .vhosts()
        .iter()
        .map(|v| v.read_topology(|t| t.exchanges().count()))
        .sum();
    // This node's totals and those of every member that answers in time.
    let mut totals = local_totals(&st);
    for (_, t) in super::remote::gather(&st, crate::forward::Listing::Totals).await {
        let Some(Value::Object(t)) = t else { continue };
        for (k, n) in t {
            totals[&k] = json!(totals[&k].as_u64().unwrap_or(0) + n.as_u64().unwrap_or(0));
        }
    }
    let n = |k: &str| totals[k].as_u64().unwrap_or(0);
    let (ready, unacked) = (n("messages_ready"), n("messages_unacknowledged"));
    let dead: Vec<u64> = m
        .dead_lettered
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    let node = st.node();
    ok(json!({
        "management_version": crate::http::shared::MANAGEMENT_VERSION,
        "rabbitmq_version": crate::http::shared::MANAGEMENT_VERSION,
        "product_name": "Warren",
        "product_version": env!("CARGO_PKG_VERSION"),
        "erlang_version": "n/a",
        "erlang_full_version": "n/a",
        "rates_mode": "basic",
        "cluster_name": st.broker.cluster_name(),
        "node": node,
        "uptime": st.started.elapsed().as_millis() as u64,
        "exchange_types": [
            {"name": "direct", "description": "AMQP direct exchange", "enabled": true},
            {"name": "fanout", "description": "AMQP fanout exchange", "enabled": true},
            {"name": "headers", "description": "AMQP headers exchange", "enabled": true},
            {"name": "topic", "description": "AMQP topic exchange", "enabled": true},
            {"name": "x-consistent-hash", "description": "Consistent Hashing Exchange", "enabled": true},
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
            "connections": n("connections"), "channels": n("channels"), "exchanges": exchanges,
            "queues": n("queues"), "consumers": n("consumers"),
        },
        "listeners": [
            {"node": node, "protocol": "amqp", "ip_address": st.amqp_addr.ip().to_string(), "port": st.amqp_addr.port()},
            {"node": node, "protocol": "http", "ip_address": st.http_addr.ip().to_string(), "port": st.http_addr.port()},
        ],
        "contexts": [{"node": node, "description": "RabbitMQ Management", "path": "/", "port": st.http_addr.port().to_string()}],
        "statistics_db_event_queue": 0,
    }))
}

pub(super) async fn nodes(State(st): State<Shared>) -> J {
    let (members, _, _) = super::cluster::members(&st).await;
    let records = super::remote::gather(&st, crate::forward::Listing::Node).await;
    ok(Value::Array(
        members.iter().map(|m| member_json(&st, m, &records)).collect(),
    ))
}

/// This node's full record, or another member's as it answered (`records`: its uptime,
/// memory, disk, fds …); a member that did not answer is `running: false` with its name and
/// cluster address only.
fn member_json(st: &Shared, m: &super::cluster::MemberView, records: &[(String, Option<Value>)]) -> Value {
    let found = records.iter().find(|(n, _)| *n == m.name);
    let mut v = match found {
        _ if m.name == st.node() => node_json(st),
        Some((_, Some(v @ Value::Object(_)))) => v.clone(),
        _ => json!({"name": m.name, "type": "disc", "running": false}),
    };
    if !m.address.is_empty() {
        v["cluster_address"] = json!(m.address);
    }
    v
}

/// `GET /api/nodes/{name}`: this node (the only one), or 404.
pub(super) async fn node_get(State(st): State<Shared>, Path(name): Path<String>) -> J {
    if name == st.node() {
        return ok(node_json(&st));
    }
    let (members, _, _) = super::cluster::members(&st).await;
    match members.iter().find(|m| m.name == name) {
        Some(m) => {
            let records = super::remote::gather(&st, crate::forward::Listing::Node).await;
            ok(member_json(&st, m, &records))
        }
        None => Err(ApiError::not_found()),
    }
}

/// `GET /api/nodes/{name}/memory`: RabbitMQ's `"not_available"` breakdown (Warren has no
/// per-subsystem memory accounting; `/api/nodes` carries `mem_used`), or 404.
pub(super) async fn node_memory(State(st): State<Shared>, Path(name): Path<String>) -> J {
    if name != st.node() {
        return Err(ApiError::not_found());
    }
    ok(json!({"memory": "not_available"}))
}

/// `GET /api/auth/attempts/{node}[/source]`: RabbitMQ's per-protocol authentication attempt
/// counters. Warren does not count attempts, so the list is empty (as RabbitMQ's before any
/// attempt), or 404 for another node.
pub(super) async fn auth_attempts(State(st): State<Shared>, Path(name): Path<String>) -> J {
    if name != st.node() {
        return Err(ApiError::not_found());
    }
    ok(json!([]))
}

pub(super) fn node_json(st: &Shared) -> Value {
    let alarms = st.broker.alarms.current();
    let (fds, sockets) = crate::http::prometheus::open_fds();
    let disk_free = crate::alarms::free_disk(&st.broker.config.data_dir).unwrap_or(0);
    json!({
        "fd_used": fds, "fd_total": crate::http::prometheus::max_fds(),
        "sockets_used": sockets, "sockets_total": crate::http::prometheus::max_fds(),
        "disk_free": disk_free, "mem_total": crate::alarms::total_memory().unwrap_or(0),
        "name": st.node(), "type": "disc", "running": true,
        "uptime": st.started.elapsed().as_millis() as u64,
        "mem_used": crate::http::metrics::resident_memory_bytes(),
        "mem_alarm": alarms.memory, "disk_free_alarm": alarms.disk,
        "mem_limit": st.broker.alarms.memory_limit(),
        "disk_free_limit": st.broker.alarms.disk_free_limit(),
        "store": store_json(&st.broker),
        "os_pid": std::process::id().to_string(), "processors": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "rates_mode": "basic", "being_drained": false, "enabled_plugins": ["rabbitmq_management", "rabbitmq_prometheus"],
        "rabbitmq_version": crate::http::shared::MANAGEMENT_VERSION, "erlang_version": "n/a",
        "applications": [{"name": "rabbit", "description": "Warren", "version": crate::http::shared::MANAGEMENT_VERSION}],
    })
}

pub(super) async fn whoami(State(st): State<Shared>, headers: axum::http::HeaderMap) -> J {
    let user = crate::http::shared::basic_credentials(&headers)
        .map(|(u, _)| u)
        .unwrap_or_default();
    let tags = st.broker.users.get(&user).map(|u| u.tags).unwrap_or_default();
    ok(json!({"name": user, "tags": tags}))
}

/// `GET /api/cluster-name`: the name `/api/overview` and definitions exports carry.
pub(super) async fn cluster_name(State(st): State<Shared>) -> J {
    ok(json!({"name": st.broker.cluster_name()}))
}

/// `PUT /api/cluster-name` with `{"name": …}` (administrators): 204, as RabbitMQ. Durable (a
/// definitions-log record); new AMQP connections see it as the `cluster_name` server property.
pub(super) async fn cluster_name_put(State(st): State<Shared>, body: Bytes) -> ApiResult<StatusCode> {
    let doc: Value = parse_body(&body)?;
    let name = doc
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("name must be a non-empty string"))?;
    let c = Change::SetClusterName { name: name.into() };
    ApiError::change(&st.broker, c).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/extensions`: management UI plugins; Warren has none (RabbitMQ's answer with none
/// enabled), so tools that list them get an empty list, not a 404.
pub(super) async fn extensions() -> J {
    ok(json!([]))
}

/// `GET /api/feature-flags`: Warren has no feature flags to enable (a single version, no
/// mixed-version cluster), so the list is empty, as `rabbitmqadmin list feature_flags` expects
/// rather than a 404.
pub(super) async fn feature_flags() -> J {
    ok(json!([]))
}

/// `GET /api/parameters`, `/api/operator-policies`, `/api/deprecated-features` (and their
/// per-vhost or per-component forms): Warren has no runtime parameters (no shovels or federation),
/// operator policies or deprecated features in use, so the lists are empty rather than 404 for
/// the tools that read them.
pub(super) async fn empty_list() -> J {
    ok(json!([]))
}

/// `GET /api/global-parameters`: the cluster name (RabbitMQ lists it once set, next to its
/// `internal_cluster_id`, which Warren does not have).
pub(super) async fn global_parameters(State(st): State<Shared>) -> J {
    ok(json!([{"name": "cluster_name", "value": st.broker.cluster_name()}]))
}

/// `GET /api/global-parameters/{name}`: `cluster_name`, or 404.
pub(super) async fn global_parameter_get(State(st): State<Shared>, Path(name): Path<String>) -> J {
    if name != "cluster_name" {
        return Err(ApiError::not_found());
    }
    ok(json!({"name": "cluster_name", "value": st.broker.cluster_name()}))
}

/// `GET /api/parameters/{component}/{vhost}/{name}`, `/api/operator-policies/{vhost}/{name}`:
/// Warren has no runtime parameters or operator policies, so each is RabbitMQ's 404.
pub(super) async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// `GET /api/auth`: what the management UI's login page reads; Warren has basic auth only:
/// RabbitMQ's answer without OAuth 2 (3.11+'s `oauth_*` fields and 3.10's `*uaa*` ones).
pub(super) async fn auth() -> J {
    ok(json!({"oauth_enabled": false, "oauth_disable_basic_auth": false,
              "enable_uaa": false, "uaa_client_id": "", "uaa_location": ""}))
}
