//! Vhosts (`/api/vhosts`): listing, create, delete (through the vhost service).

use super::common::*;

pub(super) fn vhost_json(st: &Shared, v: &VHost) -> Value {
    let handles = v.queue_handles();
    let (mut ready, mut unacked) = (0u64, 0u64);
    for q in handles {
        let c = q.counts();
        ready += c.ready as u64;
        unacked += c.unacked as u64;
    }
    json!({
        "name": v.name, "description": "", "tags": [], "default_queue_type": "classic",
        "metadata": {"description": "", "tags": [], "default_queue_type": "classic"},
        "tracing": false, "cluster_state": {st.node(): "running"},
        "messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked,
    })
}

/// `GET /api/vhosts`: paginated, sorted, filtered and column-picked as RabbitMQ's
/// ([`crate::http::listing`]).
pub(super) async fn vhosts(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    let items: Vec<Arc<VHost>> = sorted_vhosts(&st)
        .into_iter()
        .filter(|v| c.sees_vhost(&st.broker, &v.name))
        .collect();
    crate::http::listing::reply(
        q.as_deref(),
        true,
        items,
        |v| v.name.as_str(),
        move |v| Some(vhost_json(&st, v)),
    )
}

pub(super) async fn vhost_get(State(st): State<Shared>, Path(name): Path<String>) -> J {
    let v = vhost(&st, &name)?;
    ok(vhost_json(&st, &v))
}

pub(super) async fn vhost_put(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let _: Value = parse_body(&body)?;
    if !st.broker.create_vhost(&name) {
        return Ok(StatusCode::NO_CONTENT);
    }
    // RabbitMQ grants the administrator who creates a vhost full permissions on it.
    if st.broker.users.permission(&c.name, &name).is_none() {
        let _ = st
            .broker
            .set_permission(&c.name, &name, crate::auth::Permission::all());
    }
    Ok(StatusCode::CREATED)
}

pub(super) async fn vhost_delete(
    State(st): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let v = st.broker.remove_vhost(&name).ok_or_else(ApiError::not_found)?;
    for c in st.broker.connections() {
        if c.info.lock().vhost == name {
            // RabbitMQ's text: `CONNECTION_FORCED - vhost 'NAME' is deleted`.
            c.close(
                warren_codec::ReplyCode::ConnectionForced,
                format!("vhost '{name}' is deleted"),
            );
        }
    }
    v.delete_contents();
    st.broker.forget_vhost(&name);
    Ok(StatusCode::NO_CONTENT)
}
