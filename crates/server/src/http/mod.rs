//! The management HTTP listener (`--http-listen`, default 127.0.0.1:15672): RabbitMQ's
//! management API paths and JSON ([`api`], [`definitions`]), Prometheus metrics at `/metrics`
//! ([`metrics`]), dead-letter-queue detection and reprocessing ([`dlq`]), queue alerts with an
//! optional webhook ([`alerts`], delivered over HTTP or HTTPS by [`webhook`]), the management
//! UI at `/` (one page, `ui/index.html`, and its script `/ui/app.js`, both embedded in the
//! binary: a login form and hash-routed views over the API), a tiny HTTP/1.1 client ([`client`]) and the `warrenctl` command line built on it
//! ([`ctl`], both re-exported from `warren-ctl`); quarantined queue directories
//! ([`quarantine`]).
//!
//! Every route needs HTTP basic auth with a broker user and passes RabbitMQ's tag and
//! permission checks ([`authz`]), except the UI's two static files (no data: the page logs in
//! through its form and sends the credentials on each `/api` call); `/metrics` can be made
//! public (`--metrics-public`, as RabbitMQ's Prometheus plugin). Handlers never hold a lock
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
pub mod shared;
pub mod users;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::broker::Broker;

pub use shared::{
    ApiError, ApiResult, HttpState, MANAGEMENT_VERSION, Shared, basic_credentials, exchange_name, parse_body,
};

async fn fallback() -> ApiError {
    ApiError::not_found()
}

/// The full router (API, metrics, dashboard) with authentication.
pub fn router(st: Shared) -> Router {
    api::routes()
        .merge(quarantine::routes())
        .route("/metrics", axum::routing::get(metrics::handler))
        .route("/", axum::routing::get(ui_page))
        .route("/ui/app.js", axum::routing::get(ui_script))
        // One authorisation step for every registered route (unknown paths stay 404).
        .route_layer(axum::middleware::from_fn_with_state(st.clone(), authz::authorize))
        .fallback(fallback)
        .with_state(st)
}

/// The UI's Content-Security-Policy: scripts only from this origin (no inline script, so a
/// value that slipped into the page unescaped could still not run), fetches only to it.
const UI_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'";

async fn ui_page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, UI_CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("ui/index.html"),
    )
}

async fn ui_script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("ui/app.js"),
    )
}

/// Serves the management API on `listener`, and the Prometheus endpoints on `prometheus` if
/// given, until `shutdown` turns true; queue alerts go to `webhook` if given.
pub async fn serve(
    broker: Arc<Broker>,
    listener: tokio::net::TcpListener,
    prometheus: Option<tokio::net::TcpListener>,
    amqp_addr: SocketAddr,
    webhook: Option<Arc<webhook::Webhook>>,
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
    api::peer_listing::install(&st, router);
    let sampler = tokio::spawn(alerts::run(st.clone(), webhook, shutdown.clone()));
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
