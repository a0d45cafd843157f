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

/// `GET /api/health/checks/certificate-expiration/{within}/{unit}`: RabbitMQ's argument
/// checks (a positive integer and `days`, `weeks`, `months` or `years`; 400 otherwise), then
/// 503 when a certificate of the AMQPS listener (`--tls-cert`, `--tls-ca`) expires within that
/// period (months are 30 days, years 365), listing them; 200 without a TLS listener.
pub(super) async fn health_certificate_expiration(
    State(st): State<Shared>,
    Path((within, unit)): Path<(String, String)>,
) -> Response {
    let Some(n) = within.parse::<u64>().ok().filter(|n| *n > 0) else {
        return ApiError::bad_request("Invalid expiration value.").into_response();
    };
    let day = 86_400u64;
    let per = match unit.as_str() {
        "days" => day,
        "weeks" => 7 * day,
        "months" => 30 * day,
        "years" => 365 * day,
        _ => {
            return ApiError::bad_request(
                "Time unit not recognised. Supported units: days, weeks, months, years.",
            )
            .into_response();
        }
    };
    let cfg = &st.broker.config;
    let horizon = (now_ms() / 1000).saturating_add(n.saturating_mul(per)) as i64;
    let mut expiring = Vec::new();
    for path in [&cfg.tls_cert, &cfg.tls_ca].into_iter().flatten() {
        match certificate_expiries(path) {
            Ok(list) => expiring.extend(
                list.into_iter()
                    .filter(|(_, not_after)| *not_after <= horizon)
                    .map(|(subject, not_after)| {
                        json!({"node": st.node(), "protocol": "amqp/ssl", "port": cfg.tls_listen.port(),
                               "certfile": path.display().to_string(), "subject": subject,
                               "expires_on": not_after})
                    }),
            ),
            Err(e) => expiring.push(json!({"certfile": path.display().to_string(), "error": e})),
        }
    }
    if expiring.is_empty() {
        return axum::Json(json!({"status": "ok"})).into_response();
    }
    unhealthy(json!({"status": "failed", "reason": "Certificates expiring", "expired": expiring}))
}

/// `(subject, notAfter as Unix seconds)` of each certificate of a PEM file.
fn certificate_expiries(path: &std::path::Path) -> Result<Vec<(String, i64)>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut out = Vec::new();
    for c in certs {
        let c = c.map_err(|e| format!("invalid PEM: {e}"))?;
        let (_, x) = x509_parser::parse_x509_certificate(c.as_ref())
            .map_err(|e| format!("invalid certificate: {e}"))?;
        out.push((x.subject().to_string(), x.validity().not_after.timestamp()));
    }
    Ok(out)
}

/// `GET /api/health/checks/below-node-connection-limit`: 503 when `--max-connections` is set
/// and reached, as RabbitMQ's node connection limit check.
pub(super) async fn health_below_connection_limit(State(st): State<Shared>) -> Response {
    let limit = st.broker.config.max_connections;
    let count = st.broker.connections().len();
    if limit == 0 || count < limit as usize {
        return axum::Json(json!({"status": "ok", "limit": limit, "connections": count})).into_response();
    }
    unhealthy(json!({"status": "failed", "limit": limit, "connections": count,
        "reason": format!("node connection limit ({limit}) is reached")}))
}

pub(super) async fn aliveness(State(st): State<Shared>, Path(vh): Path<String>) -> J {
    vhost(&st, &vh)?;
    ok(json!({"status": "ok"}))
}
