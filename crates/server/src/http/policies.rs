//! `/api/policies[/{vhost}[/{name}]]`: RabbitMQ's policy endpoints. `PUT` validates the
//! policy (400 with RabbitMQ's "Validation failed" text), stores it durably and applies it to
//! the vhost's queues at once (201 created, 204 updated); `DELETE` removes it (204, 404 if
//! missing). Who may do what is [`super::authz`]'s table (policymakers and administrators).

use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::authz::Caller;
use super::shared::{ApiError, ApiResult, Shared, parse_body};
use crate::clustering::{Change, Outcome};
use crate::policies::{list_json, policy_from_json, policy_json};

type J = ApiResult<axum::Json<Value>>;

/// `GET /api/policies`: sorted and column-picked, not paged, as RabbitMQ's
/// ([`super::listing`]).
pub async fn list_all(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    let mut all = list_json(&st.broker, None);
    all.retain(|p| c.lists_vhost(&st.broker, p["vhost"].as_str().unwrap_or("")));
    super::listing::reply_json(q.as_deref(), false, all)
}

/// `GET /api/policies/{vhost}`, as `GET /api/policies`.
pub async fn list_vhost(
    State(st): State<Shared>,
    Path(vh): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    st.broker.vhost(&vh).ok_or_else(ApiError::not_found)?;
    Ok(super::listing::reply_json(
        q.as_deref(),
        false,
        list_json(&st.broker, Some(&vh)),
    ))
}

/// `GET /api/policies/{vhost}/{name}`.
pub async fn get(State(st): State<Shared>, Path((vh, name)): Path<(String, String)>) -> J {
    let v = st.broker.vhost(&vh).ok_or_else(ApiError::not_found)?;
    let p = v.policy(&name).ok_or_else(ApiError::not_found)?;
    Ok(axum::Json(policy_json(&vh, &p)))
}

/// `PUT /api/policies/{vhost}/{name}` with `{"pattern", "definition", "priority", "apply-to"}`.
pub async fn put(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    st.broker.vhost(&vh).ok_or_else(ApiError::not_found)?;
    let doc: Value = parse_body(&body)?;
    policy_from_json(&name, &doc).map_err(|e| ApiError::bad_request(e.rabbit_text()))?;
    let c = Change::PutPolicy {
        vhost: vh,
        name,
        policy: doc,
    };
    match ApiError::change(&st.broker, c).await? {
        Outcome::NotFound => Err(ApiError::not_found()),
        Outcome::Invalid(e) => Err(ApiError::bad_request(e)),
        Outcome::Created => Ok(StatusCode::CREATED),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

/// `DELETE /api/policies/{vhost}/{name}`.
pub async fn delete(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    match ApiError::change(&st.broker, Change::DeletePolicy { vhost: vh, name }).await? {
        Outcome::Deleted => Ok(StatusCode::NO_CONTENT),
        _ => Err(ApiError::not_found()),
    }
}
