//! Cluster membership through the management API (Warren's paths for RabbitMQ's
//! `rabbitmqctl` verbs, administrators only): `GET /api/cluster` (`cluster_status`),
//! `POST /api/cluster/join` with `{"address": "HOST:PORT"}` (`join_cluster`, run on the joining
//! node), `DELETE /api/cluster/nodes/{name}` (`forget_cluster_node`); and the member list
//! `/api/nodes` shows. A node without clustering reports itself as the one member.

use super::common::*;
use warren_cluster::ClusterError;

/// A member as the cluster sees it: name, cluster address, voter, and whether it answered.
#[derive(Debug, Clone)]
pub(super) struct MemberView {
    pub name: String,
    pub address: String,
    pub voter: bool,
    pub running: bool,
    pub last_applied: Option<u64>,
}

/// Every member (this node alone when clustering is off), and the leader's name.
pub(super) async fn members(st: &Shared) -> (Vec<MemberView>, Option<String>, u64) {
    let Some(c) = st.broker.cluster() else {
        let me = MemberView {
            name: st.node(),
            address: String::new(),
            voter: true,
            running: true,
            last_applied: None,
        };
        return (vec![me], Some(st.node()), 0);
    };
    let s = c.status().await;
    let leader = s.leader_name().map(str::to_string);
    let members = s
        .members
        .into_iter()
        .map(|m| MemberView {
            running: m.reachable || m.name == st.node(),
            name: m.name,
            address: m.addr,
            voter: m.voter,
            last_applied: m.last_applied,
        })
        .collect();
    (members, leader, s.term)
}

fn cluster_error(e: ClusterError) -> ApiError {
    match e {
        ClusterError::NoQuorum => ApiError::unavailable(
            "no quorum: the cluster has no reachable majority; membership was not changed",
        ),
        ClusterError::Shutdown => ApiError::unavailable("this node is shutting down"),
        other => ApiError::bad_request(other.to_string()),
    }
}

fn not_clustered() -> ApiError {
    ApiError::bad_request(
        "clustering is off on this node: start it with --cluster-listen (or --cluster-seeds) \
         and --cluster-secret",
    )
}

/// `GET /api/cluster`: this node, the leader, the term, and every member.
pub(super) async fn cluster_status(State(st): State<Shared>) -> J {
    let (members, leader, term) = members(&st).await;
    let running: Vec<&str> = members
        .iter()
        .filter(|m| m.running)
        .map(|m| m.name.as_str())
        .collect();
    ok(json!({
        "cluster_name": st.broker.cluster_name(),
        "node": st.node(),
        "clustered": st.broker.cluster().is_some(),
        "address": st.broker.cluster().map(|c| c.addr().to_string()),
        "leader": leader,
        "term": term,
        "running_nodes": running,
        "members": members.iter().map(|m| json!({
            "name": m.name, "address": m.address, "voter": m.voter,
            "running": m.running, "last_applied": m.last_applied,
        })).collect::<Vec<_>>(),
    }))
}

/// `POST /api/cluster/join` with `{"address": "HOST:PORT"}`: this node joins the cluster of
/// the node listening there (it must hold no replicated data of its own).
pub(super) async fn cluster_join(State(st): State<Shared>, body: Bytes) -> ApiResult<StatusCode> {
    let doc: Value = parse_body(&body)?;
    let addr = doc
        .get("address")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::bad_request("address (HOST:PORT) is required"))?;
    let c = st.broker.cluster().ok_or_else(not_clustered)?;
    c.join(addr).await.map_err(cluster_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/cluster/nodes/{name}`: removes a member from the cluster.
pub(super) async fn cluster_forget(
    State(st): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let c = st.broker.cluster().ok_or_else(not_clustered)?;
    let known = c.status().await.members.iter().any(|m| m.name == name);
    if !known {
        return Err(ApiError::not_found());
    }
    c.forget(&name).await.map_err(cluster_error)?;
    Ok(StatusCode::NO_CONTENT)
}
