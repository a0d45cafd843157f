//! Quarantined queue directories (issue 21): `GET /api/quarantine` lists the directories the
//! start-up sweep moved to `<data-dir>/quarantine/` because no definition named them (vhost
//! and queue from the definition copy each keeps, live messages, bytes), and
//! `POST /api/quarantine/{dir}/reattach` declares the queue again from that copy and recovers
//! its messages. Administrators only (the rule is in [`super::authz::RULES`]).

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::shared::{ApiError, ApiResult, Shared};

/// The routes of this module.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/quarantine", get(list))
        .route("/api/quarantine/{dir}/reattach", post(reattach))
}

async fn list(State(st): State<Shared>) -> ApiResult<Json<Value>> {
    let Some(p) = &st.broker.persistence else {
        return Ok(Json(json!([])));
    };
    let data_dir = p.data_dir.clone();
    let dirs = tokio::task::spawn_blocking(move || crate::persist::list_quarantine(&data_dir))
        .await
        .unwrap_or_default();
    Ok(Json(serde_json::to_value(dirs).unwrap_or_else(|_| json!([]))))
}

async fn reattach(State(st): State<Shared>, Path(dir): Path<String>) -> ApiResult<Json<Value>> {
    let broker = st.broker.clone();
    let r = tokio::task::spawn_blocking(move || crate::recovery::reattach(&broker, &dir))
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    match r {
        Ok((vhost, queue, messages)) => Ok(Json(
            json!({"vhost": vhost, "queue": queue, "messages": messages}),
        )),
        Err((404, reason)) => Err(ApiError {
            status: axum::http::StatusCode::NOT_FOUND,
            body: json!({"error": "Object Not Found", "reason": reason}),
        }),
        Err((409, reason)) => Err(ApiError {
            status: axum::http::StatusCode::CONFLICT,
            body: json!({"error": "conflict", "reason": reason}),
        }),
        Err((_, reason)) => Err(ApiError::bad_request(reason)),
    }
}
