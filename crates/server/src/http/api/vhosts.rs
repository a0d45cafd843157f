//! Vhosts (`/api/vhosts`): listing, create, delete (through the vhost service).

use super::common::*;
use crate::clustering::{Change, Outcome};

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
    // RabbitMQ grants the administrator who creates a vhost full permissions on it.
    let change = Change::PutVhost {
        name,
        grant: Some(c.name.clone()),
    };
    match ApiError::change(&st.broker, change).await? {
        Outcome::Created => Ok(StatusCode::CREATED),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

pub(super) async fn vhost_delete(
    State(st): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    match ApiError::change(&st.broker, Change::DeleteVhost { name }).await? {
        Outcome::NotFound => Err(ApiError::not_found()),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}
