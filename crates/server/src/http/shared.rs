//! What every management handler shares: the HTTP state ([`HttpState`], [`Shared`]), the API
//! error type with RabbitMQ's JSON error bodies and status codes ([`ApiError`]), lenient JSON
//! body parsing, basic-auth credentials, the management API version Warren follows, and the
//! `amq.default` path name of the default exchange.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use parking_lot::Mutex;
use serde_json::{Value, json};
use warren_codec::ReplyCode;
use warren_core::AmqpError;
use warren_core::ids::{ChannelKey, ConnId};

use super::alerts;
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
    pub(super) next_key: AtomicU64,
}

/// Shared handle.
pub type Shared = Arc<HttpState>;

impl HttpState {
    /// A channel key for management-API `get`/`move` operations: channel 0 of a connection id
    /// from the top of the id space (real connections count up from 1, far below).
    pub fn op_key(&self) -> ChannelKey {
        let n = self.next_key.fetch_add(1, Ordering::Relaxed);
        ChannelKey::new(ConnId((u64::MAX >> 16) - n), 0)
    }

    /// This node's name (`--node-name`), shown in listings, `/api/nodes` and Prometheus.
    pub fn node(&self) -> String {
        self.broker.config.node_name.clone()
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
    /// 503 `{"error":"service_unavailable","reason":…}`: a clustered node could not get a
    /// majority to commit a definitions change (nothing changed on any node, unless the
    /// change reached the leader's log and commits later).
    pub fn unavailable(reason: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: json!({"error": "service_unavailable", "reason": reason.into()}),
        }
    }

    /// Makes a replicated definitions change ([`crate::clustering::change`]); a cluster
    /// without a majority is a 503.
    pub async fn change(
        broker: &Broker,
        c: crate::clustering::Change,
    ) -> Result<crate::clustering::Outcome, ApiError> {
        crate::clustering::change(broker, c)
            .await
            .map_err(|e| ApiError::unavailable(e.0))
    }

    /// Makes a topology change ([`crate::clustering::Change::Define`], a policy …) through
    /// [`ApiError::change`]; a refusal is the AMQP error's HTTP answer (404, 406 → 400 …), an
    /// invalid change a 400.
    pub async fn define(
        broker: &Broker,
        c: crate::clustering::Change,
    ) -> Result<crate::clustering::Outcome, ApiError> {
        use crate::clustering::Outcome;
        match ApiError::change(broker, c).await? {
            Outcome::Invalid(reason) => Err(ApiError::bad_request(reason)),
            o @ Outcome::Refused(..) => Err(o.amqp_error().expect("a refusal").into()),
            o => Ok(o),
        }
    }

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
            // RabbitMQ's reason is the reply text without its `NAME - ` prefix.
            _ => ApiError::bad_request(e.text),
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

/// `amq.default` is the default exchange's name in API paths.
pub fn exchange_name(n: &str) -> &str {
    if n == "amq.default" { "" } else { n }
}
