//! Health checks (`/api/health/checks/*`, `/api/aliveness-test`).

use super::common::*;

pub(super) async fn health_ok() -> J {
    ok(json!({"status": "ok"}))
}

pub(super) fn unhealthy(body: Value) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

/// RabbitMQ's alarm checks: 200 `{"status":"ok"}`, or 503 with the alarms in effect.
pub(super) fn alarm_check(st: &Shared, reason: &str) -> Response {
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
pub(super) fn store_json(broker: &crate::broker::Broker) -> Value {
    match crate::monitor::store_problem(broker) {
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

pub(super) async fn health_alarms(State(st): State<Shared>) -> Response {
    alarm_check(&st, "There are alarms in effect in the cluster")
}

pub(super) async fn health_local_alarms(State(st): State<Shared>) -> Response {
    alarm_check(&st, "There are alarms in effect on the node")
}

pub(super) async fn health_port(State(st): State<Shared>, Path(port): Path<String>) -> Response {
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

pub(super) async fn health_protocol(Path(proto): Path<String>) -> Response {
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

pub(super) async fn aliveness(State(st): State<Shared>, Path(vh): Path<String>) -> J {
    vhost(&st, &vh)?;
    ok(json!({"status": "ok"}))
}
