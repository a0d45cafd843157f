//! The management HTTP listener (`--http-listen`, default 127.0.0.1:15672): RabbitMQ's
//! management API paths and JSON ([`api`], [`definitions`]), Prometheus metrics at `/metrics`
//! ([`metrics`]), dead-letter-queue detection and reprocessing ([`dlq`]), queue alerts with an
//! optional webhook ([`alerts`]), the dashboard at `/`, a tiny HTTP/1.1 client ([`client`])
//! and the `warrenctl` command line built on it ([`ctl`], both re-exported from `warren-ctl`); quarantined queue directories
//! ([`quarantine`]).
//!
//! Every route needs HTTP basic auth with a broker user and passes RabbitMQ's tag and
//! permission checks ([`authz`]); `/metrics` can be made public (`--metrics-public`, as
//! RabbitMQ's Prometheus plugin). Handlers never hold a lock
//! across an `.await`: they snapshot under the broker's short locks and render afterwards.

pub mod alerts;
/// `warrenctl`, from `warren-ctl`.
pub use warren_ctl as ctl;
/// The small HTTP/1.1 client, from `warren-ctl` (its own crate since issue 16).
pub use warren_ctl::client;
pub mod api;
pub mod authz;
pub use crate::convert;
pub mod definitions;
pub mod dlq;
pub mod listing;
pub mod metrics;
pub mod policies;
pub mod prometheus;
pub mod quarantine;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::watch;
use warren_codec::ReplyCode;
use warren_core::AmqpError;

use crate::broker::Broker;

/// The version of RabbitMQ's management API whose paths and JSON Warren follows.
pub const MANAGEMENT_VERSION: &str = "4.1.0";

/// State shared by the HTTP handlers and the sampler task.
#[derive(Debug)]
pub struct HttpState {
    /// The broker.
    pub broker: Arc<Broker>,
    /// AMQP listener address.
    pub amqp_addr: SocketAddr,
    /// HTTP listener address.
    pub http_addr: SocketAddr,
    /// When the listener started (uptime).
    pub started: Instant,
    /// Rates and depth history, updated every second by [`alerts::run`].
    pub sampler: Mutex<alerts::Sampler>,
    next_key: AtomicU64,
}

/// Shared handle.
pub type Shared = Arc<HttpState>;

impl HttpState {
    /// A channel key for management-API `get`/`move` operations, from the top of the key
    /// space (real channels use `connection id << 16 | channel`, far below).
    pub fn op_key(&self) -> u64 {
        u64::MAX - self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// The node name shown in listings.
    pub fn node(&self) -> String {
        format!("warren@{}", self.http_addr.ip())
    }
}

/// An API error, rendered as RabbitMQ renders it: `{"error": …, "reason": …}`.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON body.
    pub body: Value,
}

impl ApiError {
    /// 404 `{"error":"Object Not Found","reason":"Not Found"}`.
    pub fn not_found() -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            body: json!({"error": "Object Not Found", "reason": "Not Found"}),
        }
    }

    /// 400 `{"error":"bad_request","reason":…}`.
    pub fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({"error": "bad_request", "reason": reason.into()}),
        }
    }

    /// 401 `{"error":"not_authorised","reason":"Login failed"}`.
    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            body: json!({"error": "not_authorised", "reason": "Login failed"}),
        }
    }
}

impl ApiError {
    /// 400 with an AMQP error as RabbitMQ reports an operation the management API ran over
    /// AMQP: `403 ACCESS_REFUSED - …`.
    pub fn amqp_failure(e: &AmqpError) -> ApiError {
        ApiError::bad_request(format!("{} {}", e.code.code(), e.reply_text()))
    }
}

impl From<AmqpError> for ApiError {
    fn from(e: AmqpError) -> ApiError {
        match e.code {
            ReplyCode::NotFound => ApiError::not_found(),
            ReplyCode::AccessRefused => ApiError {
                status: StatusCode::FORBIDDEN,
                body: json!({"error": "not_authorised", "reason": e.reply_text()}),
            },
            // The broker, not the request, failed (e.g. a definitions log that cannot be
            // written): RabbitMQ's 500 shape.
            ReplyCode::ResourceError | ReplyCode::InternalError => ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: json!({"error": "internal_server_error", "reason": e.reply_text()}),
            },
            _ => ApiError::bad_request(e.reply_text()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
            );
        }
        r
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// Parses a JSON request body (an empty body is `{}`), 400 on bad JSON.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// `(user, password)` from an `Authorization: Basic …` header.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let enc = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(enc.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

async fn fallback() -> ApiError {
    ApiError::not_found()
}

/// The full router (API, metrics, dashboard) with authentication.
pub fn router(st: Shared) -> Router {
    api::routes()
        .merge(quarantine::routes())
        .route("/metrics", axum::routing::get(metrics::handler))
        .route("/", axum::routing::get(dashboard))
        // One authorisation step for every registered route (unknown paths stay 404).
        .route_layer(axum::middleware::from_fn_with_state(st.clone(), authz::authorize))
        .fallback(fallback)
        .with_state(st)
}

async fn dashboard() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("dashboard.html"),
    )
}

/// Serves the management API on `listener`, and the Prometheus endpoints on `prometheus` if
/// given, until `shutdown` turns true.
pub async fn serve(
    broker: Arc<Broker>,
    listener: tokio::net::TcpListener,
    prometheus: Option<tokio::net::TcpListener>,
    amqp_addr: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let http_addr = listener
        .local_addr()
        .unwrap_or_else(|_| ([127, 0, 0, 1], 0).into());
    let st = Arc::new(HttpState {
        broker,
        amqp_addr,
        http_addr,
        started: Instant::now(),
        sampler: Mutex::new(alerts::Sampler::default()),
        next_key: AtomicU64::new(0),
    });
    let sampler = tokio::spawn(alerts::run(st.clone(), shutdown.clone()));
    let prometheus = prometheus.map(|l| tokio::spawn(prometheus::serve(st.clone(), l, shutdown.clone())));
    let app = router(st).into_make_service_with_connect_info::<SocketAddr>();
    let stop = async move {
        let _ = shutdown.wait_for(|v| *v).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::warn!("management HTTP listener failed: {e}");
    }
    sampler.abort();
    // Dropped (with its hold on the broker) before this returns.
    let _ = sampler.await;
    if let Some(p) = prometheus {
        let _ = p.await;
    }
}
