//! Users and permissions listings, and Warren's `/api/alerts`.

use super::common::*;

/// A user as `/api/users` and definitions show it, with its own `limits`
/// ([`crate::limits`]).
pub fn user_json(st: &Shared, u: &crate::auth::User) -> Value {
    let limits = st.broker.limits.own(crate::limits::Scope::User, &u.name);
    json!({"name": u.name, "password_hash": u.password_hash,
           "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": u.tags, "limits": limits})
}

/// `GET /api/users`: sorted and column-picked, not paged, as RabbitMQ's.
pub(super) async fn users(State(st): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let mut us = st.broker.users.list();
    us.sort_by(|a, b| a.name.cmp(&b.name));
    crate::http::listing::reply_json(
        q.as_deref(),
        false,
        us.iter().map(|u| user_json(&st, u)).collect(),
    )
}

/// `GET /api/users/without-permissions`: users with no permissions on any vhost.
pub(super) async fn users_without_permissions(State(st): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let with: std::collections::HashSet<String> = st
        .broker
        .users
        .permissions()
        .into_iter()
        .map(|(u, _, _)| u)
        .collect();
    let mut us = st.broker.users.list();
    us.retain(|u| !with.contains(&u.name));
    us.sort_by(|a, b| a.name.cmp(&b.name));
    crate::http::listing::reply_json(
        q.as_deref(),
        false,
        us.iter().map(|u| user_json(&st, u)).collect(),
    )
}

pub(super) async fn user_get(State(st): State<Shared>, Path(name): Path<String>) -> J {
    let u = st.broker.users.get(&name).ok_or_else(ApiError::not_found)?;
    ok(user_json(&st, &u))
}

/// Every user's permissions on every vhost, from the broker's store.
pub fn permissions_json(st: &Shared) -> Vec<Value> {
    crate::http::users::permissions_json(st)
}

pub(super) async fn permissions(State(st): State<Shared>, RawQuery(q): RawQuery) -> Response {
    crate::http::listing::reply_json(q.as_deref(), false, permissions_json(&st))
}

pub(super) async fn alerts(State(st): State<Shared>, Extension(c): Extension<Caller>) -> J {
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
