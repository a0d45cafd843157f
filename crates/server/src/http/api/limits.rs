//! Vhost and user limits (`/api/vhost-limits[/{vhost}[/{name}]]`,
//! `/api/user-limits[/{user}[/{name}]]`, and the `vhost-limits` runtime parameters
//! `/api/parameters/vhost-limits/…`), see [`crate::limits`]; and the answers to writes of
//! what Warren lacks: other runtime parameters and operator policies.

use super::common::*;
use crate::limits::{LimitSet, Scope, validate};

/// RabbitMQ's limit listing: `{KEY: owner, "value": {limit: n, …}}` for each of `owners` with
/// limits, sorted by owner.
fn limit_entries(st: &Shared, scope: Scope, mut owners: Vec<String>) -> Value {
    owners.sort();
    let key = match scope {
        Scope::Vhost => "vhost",
        Scope::User => "user",
    };
    Value::Array(
        owners
            .into_iter()
            .filter_map(|o| {
                let set: LimitSet = st.broker.shown_limits(scope, &o);
                (!set.is_empty()).then(|| json!({key: o, "value": set}))
            })
            .collect(),
    )
}

fn vhost_limits_of(st: &Shared, caller: &Caller, only: Option<&str>) -> Value {
    let names = st
        .broker
        .vhosts()
        .iter()
        .map(|v| v.name.clone())
        .filter(|v| only.is_none_or(|o| o == v) && caller.lists_vhost(&st.broker, v))
        .collect();
    limit_entries(st, Scope::Vhost, names)
}

/// Monitoring and administrator users see every user's limits, others their own.
fn user_limits_of(st: &Shared, caller: &Caller, only: Option<&str>) -> Value {
    let users = st
        .broker
        .users
        .list()
        .into_iter()
        .map(|u| u.name)
        .filter(|u| only.is_none_or(|o| o == u) && (caller.is_monitor() || *u == caller.name))
        .collect();
    limit_entries(st, Scope::User, users)
}

/// `GET /api/vhost-limits`: each vhost's own limits over `--max-queues-per-vhost` (shown as
/// every vhost's `max-queues`).
pub(super) async fn vhost_limits(State(st): State<Shared>, Extension(caller): Extension<Caller>) -> J {
    ok(vhost_limits_of(&st, &caller, None))
}

/// `GET /api/vhost-limits/{vhost}`: that vhost's (404 for a missing vhost).
pub(super) async fn vhost_limits_one(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(vh): Path<String>,
) -> J {
    vhost(&st, &vh)?;
    ok(vhost_limits_of(&st, &caller, Some(&vh)))
}

/// `GET /api/user-limits`: each user's own limits over `--max-connections-per-user` (shown as
/// every user's `max-connections`).
pub(super) async fn user_limits(State(st): State<Shared>, Extension(caller): Extension<Caller>) -> J {
    ok(user_limits_of(&st, &caller, None))
}

/// `GET /api/user-limits/{user}`: that user's (404 for a missing user).
pub(super) async fn user_limits_one(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
) -> J {
    st.broker.users.get(&user).ok_or_else(ApiError::not_found)?;
    ok(user_limits_of(&st, &caller, Some(&user)))
}

/// A 400 with `reason` as RabbitMQ gives it (a string, or its Erlang term as JSON).
fn bad_request(reason: Value) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        body: json!({"error": "bad_request", "reason": reason}),
    }
}

/// The owner must exist: RabbitMQ answers 404 `vhost_not_found` for a vhost and 400
/// `["no_such_user", NAME]` for a user.
fn check_owner(st: &Shared, scope: Scope, owner: &str) -> ApiResult<()> {
    match scope {
        Scope::Vhost if st.broker.vhost(owner).is_none() => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            body: json!({"error": "not_found", "reason": "vhost_not_found"}),
        }),
        Scope::User if st.broker.users.get(owner).is_none() => {
            Err(bad_request(json!(["no_such_user", owner])))
        }
        _ => Ok(()),
    }
}

/// `PUT …/{owner}/{name}` with `{"value": N}`: 204, as RabbitMQ.
async fn put_limit(
    st: &Shared,
    scope: Scope,
    owner: &str,
    name: &str,
    body: &Bytes,
) -> ApiResult<StatusCode> {
    check_owner(st, scope, owner)?;
    let doc: Value = parse_body(body)?;
    let value = doc
        .get("value")
        .ok_or_else(|| bad_request(json!("[{key_missing,value}]")))?;
    let n = validate(scope, name, value).map_err(|e| bad_request(json!(e.0)))?;
    let mut set = st.broker.limits.own(scope, owner);
    set.insert(name.to_string(), n);
    replace_limits(st, scope, owner, set).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE …/{owner}/{name}`: 204 whether or not it was set, as RabbitMQ. **Difference**: for
/// a missing vhost or user RabbitMQ 3.10.8 fails with an empty 500; Warren answers 404.
async fn delete_limit(st: &Shared, scope: Scope, owner: &str, name: &str) -> ApiResult<StatusCode> {
    let exists = match scope {
        Scope::Vhost => st.broker.vhost(owner).is_some(),
        Scope::User => st.broker.users.get(owner).is_some(),
    };
    if !exists {
        return Err(ApiError::not_found());
    }
    let mut set = st.broker.limits.own(scope, owner);
    if set.remove(name).is_some() {
        replace_limits(st, scope, owner, set).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces `owner`'s limits (through the cluster on a clustered node: [`Change::SetLimits`]);
/// whether it had any before.
pub(crate) async fn replace_limits(st: &Shared, scope: Scope, owner: &str, set: LimitSet) -> ApiResult<bool> {
    if st.broker.cluster().is_none() {
        return Ok(st.broker.replace_limits(scope, owner, set));
    }
    let c = Change::SetLimits {
        scope: match scope {
            Scope::Vhost => "vhost",
            Scope::User => "user",
        }
        .into(),
        owner: owner.to_string(),
        limits: set,
    };
    Ok(ApiError::change(&st.broker, c).await? == Outcome::Updated)
}

/// `PUT /api/vhost-limits/{vhost}/{name}` (`max-queues`, `max-connections`).
pub(super) async fn vhost_limit_put(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    put_limit(&st, Scope::Vhost, &vh, &name, &body).await
}

/// `DELETE /api/vhost-limits/{vhost}/{name}`.
pub(super) async fn vhost_limit_delete(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    delete_limit(&st, Scope::Vhost, &vh, &name).await
}

/// `PUT /api/user-limits/{user}/{name}` (`max-connections`, `max-channels`).
pub(super) async fn user_limit_put(
    State(st): State<Shared>,
    Path((user, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    put_limit(&st, Scope::User, &user, &name, &body).await
}

/// `DELETE /api/user-limits/{user}/{name}`.
pub(super) async fn user_limit_delete(
    State(st): State<Shared>,
    Path((user, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    delete_limit(&st, Scope::User, &user, &name).await
}

/// The one runtime-parameter component Warren has: vhost limits, as RabbitMQ also shows and
/// takes them (`{"component": "vhost-limits", "name": "limits", "value": {…}}`).
const VHOST_LIMITS: &str = "vhost-limits";

/// `GET /api/parameters`: the vhosts' limits (the caller's vhosts), as RabbitMQ lists them.
pub(super) async fn parameters_all(State(st): State<Shared>, Extension(c): Extension<Caller>) -> J {
    let mut all = crate::limits::vhost_parameters(&st.broker, None);
    all.retain(|p| c.lists_vhost(&st.broker, p["vhost"].as_str().unwrap_or("")));
    ok(Value::Array(all))
}

/// `GET /api/parameters/{component}`: `vhost-limits` as [`parameters_all`]; `[]` for any
/// other component (no shovels, federation).
pub(super) async fn parameters_component(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    Path(component): Path<String>,
) -> J {
    if component != VHOST_LIMITS {
        return ok(json!([]));
    }
    parameters_all(State(st), Extension(c)).await
}

/// `GET /api/parameters/{component}/{vhost}` (404 for a missing vhost).
pub(super) async fn parameters_vhost(
    State(st): State<Shared>,
    Path((component, vh)): Path<(String, String)>,
) -> J {
    vhost(&st, &vh)?;
    if component != VHOST_LIMITS {
        return ok(json!([]));
    }
    ok(Value::Array(crate::limits::vhost_parameters(
        &st.broker,
        Some(&vh),
    )))
}

/// `GET /api/parameters/vhost-limits/{vhost}/limits`: the vhost's limits (404 without any).
pub(super) async fn parameter_get(
    State(st): State<Shared>,
    Path((component, vh, name)): Path<(String, String, String)>,
) -> J {
    if component != VHOST_LIMITS || name != "limits" {
        return Err(ApiError::not_found());
    }
    let p = crate::limits::vhost_parameters(&st.broker, Some(&vh));
    p.into_iter()
        .next()
        .map(axum::Json)
        .ok_or_else(ApiError::not_found)
}

/// `PUT /api/parameters/{component}/{vhost}/{name}`: `vhost-limits` (named `limits`) replaces
/// the vhost's limits with `value` (201 when it had none, else 204). Warren has no other
/// component (shovels, federation): RabbitMQ's answer for a component whose plugin is not
/// enabled, 400 `Validation failed … component C not found`.
pub(super) async fn parameter_put(
    State(st): State<Shared>,
    Path((component, vh, name)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    if component != VHOST_LIMITS {
        return Err(bad_request(json!(format!(
            "Validation failed\n\ncomponent {component} not found\n"
        ))));
    }
    check_owner(&st, Scope::Vhost, &vh)?;
    // RabbitMQ stores other names but only reads `limits` (and answers 500 for them).
    if name != "limits" {
        return Err(bad_request(json!(
            "Validation failed\n\nvhost-limits parameters are named 'limits'\n"
        )));
    }
    let doc: Value = parse_body(&body)?;
    let value = doc
        .get("value")
        .ok_or_else(|| bad_request(json!("[{key_missing,value}]")))?;
    let set = crate::limits::parse_set(Scope::Vhost, value).map_err(|e| bad_request(json!(e.0)))?;
    Ok(if replace_limits(&st, Scope::Vhost, &vh, set).await? {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

/// `DELETE /api/parameters/vhost-limits/{vhost}/limits`: clears the vhost's limits (204; 404
/// when it has none, or for another component).
pub(super) async fn parameter_delete(
    State(st): State<Shared>,
    Path((component, vh, name)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    if component == VHOST_LIMITS
        && name == "limits"
        && !st.broker.limits.own(Scope::Vhost, &vh).is_empty()
        && replace_limits(&st, Scope::Vhost, &vh, LimitSet::new()).await?
    {
        return Ok(StatusCode::NO_CONTENT);
    }
    Err(ApiError::not_found())
}

/// `PUT /api/operator-policies/{vhost}/{name}`: Warren has no operator policies; a 400 saying
/// so, in RabbitMQ's error shape (nothing is stored).
pub(super) async fn operator_policy_put() -> ApiError {
    bad_request(json!(
        "operator policies are not supported by Warren (use a policy: PUT /api/policies/{vhost}/{name})"
    ))
}
