//! Quorum queue replicas (RabbitMQ 3.13+'s management paths, administrators only), through
//! [`crate::quorum_membership`]:
//!
//! - `POST /api/queues/quorum/{vhost}/{name}/replicas/add` with `{"node": …}`
//!   (`rabbitmq-queues add_member`): 204 once the node is a voting member that caught up;
//! - `DELETE /api/queues/quorum/{vhost}/{name}/replicas/delete` with `{"node": …}`
//!   (`delete_member`): 202 once the group no longer has it;
//! - `POST /api/queues/quorum/replicas/on/{node}/grow` with `{"strategy": "all"|"even",
//!   "vhost_pattern": …, "queue_pattern": …}` (`grow`): adds `node` to every matching quorum
//!   queue (`even`: only those with an even member count), one after the other;
//! - `DELETE /api/queues/quorum/replicas/on/{node}/shrink` (`shrink`): removes `node` from
//!   every quorum queue that has it (not from one it is the last member of).
//!
//! As RabbitMQ: 404 for an unknown queue (or, for `grow`, a node that is not a cluster member),
//! a node already a member (add) or not a member (delete) is success. Warren answers 400 for a
//! classic queue, an unknown node and the last member (RabbitMQ: 503 with its error atom), 503
//! when the group has no leader or no majority in time; and `grow` / `shrink` answer with each
//! queue's result (`[{"vhost", "name", "result"}]`, 200 and 202; RabbitMQ: 204 and 202 with no
//! body), which `warrenctl grow` / `shrink` print as `rabbitmq-queues` does.

use super::common::*;
use crate::forward::{MemberAction, MemberOutcome};

/// The body of `…/replicas/add` and `…/replicas/delete`.
#[derive(Debug, Deserialize)]
struct MemberBody {
    node: Option<String>,
}

/// The body of `…/replicas/on/{node}/grow`.
#[derive(Debug, Deserialize)]
struct GrowBody {
    #[serde(default = "all")]
    strategy: String,
    #[serde(default = "any")]
    vhost_pattern: String,
    #[serde(default = "any")]
    queue_pattern: String,
}

fn all() -> String {
    "all".into()
}
fn any() -> String {
    ".*".into()
}

/// 404 unless quorum queue `name` of `vh` exists; 400 for another queue type or a node without
/// clustering.
fn quorum_queue(st: &Shared, vh: &str, name: &str) -> ApiResult<()> {
    let v = vhost(st, vh)?;
    let quorum = v
        .read_topology(|t| t.queue(name).map(|m| m.args.quorum))
        .ok_or_else(ApiError::not_found)?;
    if !quorum {
        return Err(ApiError::bad_request(format!(
            "queue '{name}' in vhost '{vh}' is not a quorum queue"
        )));
    }
    if st.broker.cluster().is_none() {
        return Err(ApiError::bad_request(
            "clustering is off on this node: its quorum queues have no replicas to add or remove",
        ));
    }
    Ok(())
}

/// The node named in an add or delete `body` about quorum queue `name` of `vh` (400 without
/// one; see [`quorum_queue`]).
fn node_of(st: &Shared, vh: &str, name: &str, body: &[u8]) -> ApiResult<String> {
    quorum_queue(st, vh, name)?;
    let b: MemberBody = parse_body(body)?;
    b.node
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("node is required"))
}

/// Whether `node` is this node or one of its cluster peers.
fn cluster_member(st: &Shared, node: &str) -> bool {
    st.broker
        .cluster()
        .is_some_and(|c| c.node_name() == node || c.peer_names().iter().any(|p| p == node))
}

/// An outcome as an answer: `done` for success (and nothing to do).
fn answer(outcome: MemberOutcome, done: StatusCode) -> Response {
    match outcome {
        MemberOutcome::Done(_) | MemberOutcome::Unchanged(_) | MemberOutcome::Members(_) => {
            done.into_response()
        }
        MemberOutcome::Refused(why) => ApiError::bad_request(why).into_response(),
        MemberOutcome::Unavailable(why) => ApiError::unavailable(why).into_response(),
    }
}

/// One queue's line of a `grow` / `shrink` answer.
fn result_json(vh: &str, name: &str, outcome: &MemberOutcome) -> Value {
    let result = match outcome {
        MemberOutcome::Done(_) | MemberOutcome::Members(_) => "ok".to_string(),
        MemberOutcome::Unchanged(why) => format!("skipped: {why}"),
        MemberOutcome::Refused(why) | MemberOutcome::Unavailable(why) => format!("error: {why}"),
    };
    json!({"vhost": vh, "name": name, "result": result})
}

/// Runs `action` on quorum queue `name` of `vh` (passed on to its group's leader).
async fn change(st: &Shared, vh: &str, name: &str, action: MemberAction) -> MemberOutcome {
    let Some(host) = st.broker.forwarder().and_then(|f| f.host().upgrade()) else {
        return MemberOutcome::Refused("clustering is off on this node".into());
    };
    crate::quorum_membership::change(&host, vh, name, action).await
}

/// `POST /api/queues/quorum/{vhost}/{name}/replicas/add` with `{"node": …}`.
pub(super) async fn replica_add(
    State(st): State<Shared>,
    Path(q): Path<(String, String)>,
    body: Bytes,
) -> Response {
    member_request(&st, q, &body, true).await
}

/// `DELETE /api/queues/quorum/{vhost}/{name}/replicas/delete` with `{"node": …}` (a node
/// forgotten by the cluster can still be removed from the group).
pub(super) async fn replica_delete(
    State(st): State<Shared>,
    Path(q): Path<(String, String)>,
    body: Bytes,
) -> Response {
    member_request(&st, q, &body, false).await
}

/// Adds (`add`) or removes the node `body` names to / from quorum queue `name` of `vh`.
async fn member_request(st: &Shared, (vh, name): (String, String), body: &[u8], add: bool) -> Response {
    let node = match node_of(st, &vh, &name, body) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    if !add {
        let remove = MemberAction::Remove { node, hops: 0 };
        return answer(change(st, &vh, &name, remove).await, StatusCode::ACCEPTED);
    }
    if !cluster_member(st, &node) {
        return ApiError::bad_request(format!("'{node}' is not a cluster member")).into_response();
    }
    let add = MemberAction::Add {
        node,
        only_even: false,
        hops: 0,
    };
    answer(change(st, &vh, &name, add).await, StatusCode::NO_CONTENT)
}

/// The quorum queues of every vhost whose name matches `vhosts`, whose names match `queues`,
/// as (vhost, name), sorted.
fn quorum_queues(st: &Shared, vhosts: &regex::Regex, queues: &regex::Regex) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in sorted_vhosts(st) {
        if !vhosts.is_match(&v.name) {
            continue;
        }
        let mut names: Vec<String> = v.read_topology(|t| {
            t.queues()
                .filter(|m| m.args.quorum && queues.is_match(&m.name))
                .map(|m| m.name.to_string())
                .collect()
        });
        names.sort();
        out.extend(names.into_iter().map(|n| (v.name.to_string(), n)));
    }
    out
}

fn pattern(p: &str) -> ApiResult<regex::Regex> {
    regex::Regex::new(p).map_err(|e| ApiError::bad_request(format!("invalid pattern '{p}': {e}")))
}

/// `POST /api/queues/quorum/replicas/on/{node}/grow`: `node` joins every matching quorum
/// queue's group, one queue after the other.
pub(super) async fn replicas_grow(
    State(st): State<Shared>,
    Path(node): Path<String>,
    body: Bytes,
) -> Response {
    let b: GrowBody = match parse_body(&body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let only_even = match b.strategy.as_str() {
        "all" => false,
        "even" => true,
        other => {
            return ApiError::bad_request(format!("strategy must be 'all' or 'even', not '{other}'"))
                .into_response();
        }
    };
    if st.broker.cluster().is_none() || !cluster_member(&st, &node) {
        return ApiError::not_found().into_response();
    }
    let (vhosts, queues) = match (pattern(&b.vhost_pattern), pattern(&b.queue_pattern)) {
        (Ok(v), Ok(q)) => (v, q),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let mut results = Vec::new();
    for (vh, name) in quorum_queues(&st, &vhosts, &queues) {
        let add = MemberAction::Add {
            node: node.clone(),
            only_even,
            hops: 0,
        };
        let outcome = change(&st, &vh, &name, add).await;
        results.push(result_json(&vh, &name, &outcome));
    }
    (StatusCode::OK, axum::Json(Value::Array(results))).into_response()
}

/// `DELETE /api/queues/quorum/replicas/on/{node}/shrink`: `node` leaves every quorum queue's
/// group it is a member of (a forgotten node too).
pub(super) async fn replicas_shrink(State(st): State<Shared>, Path(node): Path<String>) -> Response {
    if st.broker.cluster().is_none() {
        return ApiError::not_found().into_response();
    }
    let every = regex::Regex::new(".*").expect("a valid regex");
    let mut results = Vec::new();
    for (vh, name) in quorum_queues(&st, &every, &every) {
        let remove = MemberAction::Remove {
            node: node.clone(),
            hops: 0,
        };
        let outcome = change(&st, &vh, &name, remove).await;
        if let MemberOutcome::Unchanged(_) = outcome {
            continue; // not one of its queues
        }
        results.push(result_json(&vh, &name, &outcome));
    }
    (StatusCode::ACCEPTED, axum::Json(Value::Array(results))).into_response()
}
