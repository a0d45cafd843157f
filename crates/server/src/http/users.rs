//! Users and permissions through RabbitMQ's management API paths: `PUT/DELETE
//! /api/users/{name}` (with `password` or `password_hash`), `GET/PUT/DELETE
//! /api/permissions/{vhost}/{user}`, `GET /api/users/{name}/permissions` and
//! `GET /api/vhosts/{name}/permissions`, and topic permissions (`GET /api/topic-permissions`,
//! `GET/PUT/DELETE /api/topic-permissions/{vhost}/{user}`, `GET /api/users/{name}/topic-permissions`,
//! `GET /api/vhosts/{name}/topic-permissions`). Every change goes through the broker's durable
//! stores ([`crate::access`]), so it survives a restart and applies to open connections at
//! their next check.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::shared::{ApiError, ApiResult, Shared, parse_body};
use crate::auth::{Permission, TopicPermission, hash_password};
use crate::clustering::{Change, Outcome};

/// Tags as RabbitMQ accepts them: a list, or a comma-separated string.
pub fn parse_tags(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// `PUT /api/users/{name}`: 201 created, 204 updated.
pub async fn user_put(
    State(st): State<Shared>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let doc: Value = parse_body(&body)?;
    let password_hash = match (
        doc.get("password").and_then(Value::as_str),
        doc.get("password_hash").and_then(Value::as_str),
    ) {
        (Some(p), _) => Some(hash_password(p)),
        (None, Some(h)) => {
            let algo = doc
                .get("hashing_algorithm")
                .and_then(Value::as_str)
                .unwrap_or("rabbit_password_hashing_sha256");
            if algo != "rabbit_password_hashing_sha256" {
                return Err(ApiError::bad_request(format!(
                    "hashing algorithm {algo} is not supported"
                )));
            }
            Some(h.to_string())
        }
        // Neither: keep the password of an existing user; a new one cannot log in
        // with a password (RabbitMQ's passwordless user).
        (None, None) => None,
    };
    let change = Change::PutUser {
        name,
        password_hash,
        tags: parse_tags(doc.get("tags")),
    };
    Ok(match ApiError::change(&st.broker, change).await? {
        Outcome::Created => StatusCode::CREATED,
        _ => StatusCode::NO_CONTENT,
    })
}

/// `DELETE /api/users/{name}`.
pub async fn user_delete(State(st): State<Shared>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    match ApiError::change(&st.broker, Change::DeleteUser { name }).await? {
        Outcome::NotFound => Err(ApiError::not_found()),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

fn permission_json(user: &str, vhost: &str, p: &Permission) -> Value {
    json!({"user": user, "vhost": vhost, "configure": p.configure, "write": p.write, "read": p.read})
}

/// Every permission, in RabbitMQ's JSON.
pub fn permissions_json(st: &Shared) -> Vec<Value> {
    st.broker
        .users
        .permissions()
        .iter()
        .map(|(u, v, p)| permission_json(u, v, p))
        .collect()
}

/// `GET /api/permissions/{vhost}/{user}`.
pub async fn permission_get(
    State(st): State<Shared>,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<axum::Json<Value>> {
    let p = st
        .broker
        .users
        .permission(&user, &vhost)
        .ok_or_else(ApiError::not_found)?;
    Ok(axum::Json(permission_json(&user, &vhost, &p)))
}

/// `PUT /api/permissions/{vhost}/{user}` with `{"configure", "write", "read"}`.
pub async fn permission_put(
    State(st): State<Shared>,
    Path((vhost, user)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let doc: Value = parse_body(&body)?;
    let field = |k: &str| -> ApiResult<String> {
        doc.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ApiError::bad_request(format!("missing field '{k}'")))
    };
    let (configure, write, read) = (field("configure")?, field("write")?, field("read")?);
    // Refused before proposing: a bad regex never reaches the cluster's log.
    Permission::new(&configure, &write, &read).map_err(ApiError::bad_request)?;
    let change = Change::SetPermission {
        user,
        vhost,
        configure,
        write,
        read,
    };
    match ApiError::change(&st.broker, change).await? {
        Outcome::Created => Ok(StatusCode::CREATED),
        Outcome::Invalid(reason) => Err(ApiError::bad_request(reason)),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

/// `DELETE /api/permissions/{vhost}/{user}`.
pub async fn permission_delete(
    State(st): State<Shared>,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    match ApiError::change(&st.broker, Change::ClearPermission { user, vhost }).await? {
        Outcome::NotFound => Err(ApiError::not_found()),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

/// The entries of a permissions listing whose `field` is `value`, as a listing
/// ([`super::listing`]: sorted and column-picked, not paged, as RabbitMQ's).
fn where_eq(q: Option<String>, list: Vec<Value>, field: &str, value: &str) -> Response {
    let list = list.into_iter().filter(|p| p[field] == value).collect();
    super::listing::reply_json(q.as_deref(), false, list)
}

/// `GET /api/users/{name}/permissions`.
pub async fn user_permissions(
    State(st): State<Shared>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    st.broker.users.get(&name).ok_or_else(ApiError::not_found)?;
    Ok(where_eq(q, permissions_json(&st), "user", &name))
}

/// `GET /api/vhosts/{name}/permissions`.
pub async fn vhost_permissions(
    State(st): State<Shared>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    st.broker.vhost(&name).ok_or_else(ApiError::not_found)?;
    Ok(where_eq(q, permissions_json(&st), "vhost", &name))
}

fn topic_permission_json(user: &str, vhost: &str, p: &TopicPermission) -> Value {
    json!({"user": user, "vhost": vhost, "exchange": p.exchange, "write": p.write, "read": p.read})
}

/// Every topic permission, in RabbitMQ's JSON (`user`, `vhost`, `exchange`, `write`, `read`).
pub fn topic_permissions_json(st: &Shared) -> Vec<Value> {
    st.broker
        .users
        .topic_permissions()
        .iter()
        .map(|(u, v, p)| topic_permission_json(u, v, p))
        .collect()
}

/// `GET /api/topic-permissions`.
pub async fn topic_permissions_all(State(st): State<Shared>, RawQuery(q): RawQuery) -> Response {
    super::listing::reply_json(q.as_deref(), false, topic_permissions_json(&st))
}

/// `GET /api/topic-permissions/{vhost}/{user}`: the user's topic permissions on the vhost
/// (404 when there are none, or no such user or vhost, as RabbitMQ).
pub async fn topic_permission_get(
    State(st): State<Shared>,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<axum::Json<Value>> {
    let ps = st.broker.users.topic_permissions_of(&user, &vhost);
    if ps.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(axum::Json(Value::Array(
        ps.iter()
            .map(|p| topic_permission_json(&user, &vhost, p))
            .collect(),
    )))
}

/// `PUT /api/topic-permissions/{vhost}/{user}` with `{"exchange", "write", "read"}`: 201 when
/// the user had no topic permission on the vhost yet, 204 otherwise; 400 for an unknown user
/// or vhost or a bad regex.
pub async fn topic_permission_put(
    State(st): State<Shared>,
    Path((vhost, user)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let doc: Value = parse_body(&body)?;
    let field = |k: &str| -> ApiResult<String> {
        doc.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ApiError::bad_request(format!("missing field '{k}'")))
    };
    let c = Change::SetTopicPermission {
        user,
        vhost,
        exchange: field("exchange")?,
        write: field("write")?,
        read: field("read")?,
    };
    match ApiError::change(&st.broker, c).await? {
        Outcome::Created => Ok(StatusCode::CREATED),
        Outcome::Invalid(e) => Err(ApiError::bad_request(e)),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

/// `DELETE /api/topic-permissions/{vhost}/{user}`: clears all of the user's topic permissions
/// on the vhost.
pub async fn topic_permission_delete(
    State(st): State<Shared>,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    clear_topic(&st, user, vhost, None).await
}

/// Clears topic permissions (all of a user's on a vhost, or one exchange's) through
/// [`Change::ClearTopicPermissions`]: 204, or 404 when there were none.
async fn clear_topic(
    st: &Shared,
    user: String,
    vhost: String,
    exchange: Option<String>,
) -> ApiResult<StatusCode> {
    let c = Change::ClearTopicPermissions {
        user,
        vhost,
        exchange,
    };
    match ApiError::change(&st.broker, c).await? {
        Outcome::Deleted => Ok(StatusCode::NO_CONTENT),
        _ => Err(ApiError::not_found()),
    }
}

/// `DELETE /api/topic-permissions/{vhost}/{user}/{exchange}` (Warren's addition, for
/// `rabbitmqctl clear_topic_permissions USER EXCHANGE`): clears one exchange's.
pub async fn topic_permission_delete_one(
    State(st): State<Shared>,
    Path((vhost, user, exchange)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    clear_topic(&st, user, vhost, Some(exchange)).await
}

/// `GET /api/users/{name}/topic-permissions`.
pub async fn user_topic_permissions(
    State(st): State<Shared>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    st.broker.users.get(&name).ok_or_else(ApiError::not_found)?;
    Ok(where_eq(q, topic_permissions_json(&st), "user", &name))
}

/// `GET /api/vhosts/{name}/topic-permissions`.
pub async fn vhost_topic_permissions(
    State(st): State<Shared>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    st.broker.vhost(&name).ok_or_else(ApiError::not_found)?;
    Ok(where_eq(q, topic_permissions_json(&st), "vhost", &name))
}
