//! Growing and shrinking a quorum queue's Raft group (RabbitMQ's `rabbitmq-queues add_member`,
//! `delete_member`, `grow` and `shrink`; the management API's `…/replicas/add`, `…/delete`,
//! `…/replicas/on/{node}/grow` and `…/shrink` call [`change`]).
//!
//! Only the group's leader changes its membership, so a request is passed on to the leader's
//! node ([`MemberAction::Add`] / [`MemberAction::Remove`] over the cluster link): the asking
//! node knows the leader if it is a member, else it asks the queue's home (which a non-member
//! forwards the queue's work to). On the leader:
//!
//! - **add**: the new member's node starts an empty member with its replica and leader watcher
//!   ([`MemberAction::Join`], [`crate::quorum::join`]); then the leader adds it as a learner,
//!   waits until it has caught up with the log (or a snapshot), and makes it a voter
//!   ([`warren_cluster::Cluster::grow_group`]). A node already a member is left as it is (as
//!   RabbitMQ: idempotent).
//! - **remove**: the leader removes the voter ([`warren_cluster::Cluster::shrink_group`]),
//!   then the removed node stops its member, deletes its files and forwards the queue's work
//!   to the leader ([`MemberAction::Leave`], [`crate::quorum::leave`]); a node that does not
//!   answer (down, or forgotten with `forget_cluster_node`) is removed all the same. The last
//!   member cannot be removed. A leader that removes itself keeps leading until the change
//!   committed, then the remaining members elect a new leader, which it waits for (up to the
//!   cluster operation timeout) before it leaves and forwards to it.

use std::sync::Arc;
use std::time::Duration;

use warren_cluster::ClusterError;

use crate::forward::{Host, MemberAction, MemberHandler, MemberOutcome};
use crate::quorum::group_id;

/// How long a leader waits for a new member to catch up and become a voter (RabbitMQ's
/// management API allows an `add_member` 30 s; this leaves room for the hand-over).
pub const GROW_TIMEOUT: Duration = Duration::from_secs(25);

/// How often a request may be passed on towards the group's leader (the leader moved while
/// it travelled).
const MAX_HOPS: u8 = 3;

/// What the forwarding layer runs for a peer's membership request ([`serve`]; installed by
/// the broker).
pub fn handler() -> MemberHandler {
    Box::new(|host, vhost, queue, action| Box::pin(async move { serve(&host, &vhost, &queue, action).await }))
}

/// Runs `action` about quorum queue `name` of `vhost` on this node: a member's part of a
/// membership change ([`MemberAction::Join`], [`MemberAction::Leave`], [`MemberAction::Leader`])
/// or, for [`MemberAction::Add`] / [`MemberAction::Remove`], [`change`].
pub async fn serve(host: &Arc<dyn Host>, vhost: &str, name: &str, action: MemberAction) -> MemberOutcome {
    let Some(cluster) = host.cluster().cloned() else {
        return MemberOutcome::Refused("clustering is off on this node".into());
    };
    match action {
        MemberAction::Join => match crate::quorum::join(Arc::downgrade(host), &cluster, vhost, name).await {
            Ok(()) => MemberOutcome::Done(None),
            Err(e) => MemberOutcome::Unavailable(e),
        },
        MemberAction::Leave { leader } => {
            crate::quorum::leave(&**host, &cluster, vhost, name, leader.as_deref()).await;
            MemberOutcome::Done(None)
        }
        MemberAction::Leader => MemberOutcome::Done(
            cluster
                .group_status(&group_id(vhost, name))
                .and_then(|s| s.leader),
        ),
        MemberAction::Members => match cluster.group_status(&group_id(vhost, name)) {
            Some(s) if s.leader.as_deref() == Some(cluster.node_name()) => MemberOutcome::Members(s.members),
            _ => MemberOutcome::Unavailable("this node does not lead the group".into()),
        },
        add_or_remove => change(host, vhost, name, add_or_remove).await,
    }
}

/// Adds a member to, or removes one from, quorum queue `name`'s group ([`MemberAction::Add`],
/// [`MemberAction::Remove`]): here if this node leads the group, else passed on to the leader's
/// node. The caller checked the queue exists and is a quorum queue on a clustered node.
pub async fn change(host: &Arc<dyn Host>, vhost: &str, name: &str, action: MemberAction) -> MemberOutcome {
    let (Some(c), Some(f)) = (host.cluster(), host.forwarder()) else {
        return MemberOutcome::Refused("clustering is off on this node".into());
    };
    let group = group_id(vhost, name);
    let me = c.node_name().to_string();
    let leader = match c.group_status(&group) {
        Some(s) => s.leader,
        None => host.vhost(vhost).and_then(|v| v.remote_home(name)),
    };
    let Some(leader) = leader else {
        return MemberOutcome::Unavailable(format!(
            "quorum queue '{name}' in vhost '{vhost}' has no leader yet; retry"
        ));
    };
    if leader != me {
        let passed = match action {
            MemberAction::Add {
                node,
                only_even,
                hops,
            } if hops < MAX_HOPS => MemberAction::Add {
                node,
                only_even,
                hops: hops + 1,
            },
            MemberAction::Remove { node, hops } if hops < MAX_HOPS => {
                MemberAction::Remove { node, hops: hops + 1 }
            }
            _ => {
                return MemberOutcome::Unavailable(format!(
                    "the leader of quorum queue '{name}' in vhost '{vhost}' moved while the request \
                     travelled; retry"
                ));
            }
        };
        // The leader's own timeouts bound the work; this one covers the trip.
        let timeout = GROW_TIMEOUT + host.forward_timeout() * 2;
        return f.quorum_member(&leader, (vhost, name), passed, timeout).await;
    }
    match action {
        MemberAction::Add { node, only_even, .. } => add(host, vhost, name, &node, only_even).await,
        MemberAction::Remove { node, .. } => remove(host, vhost, name, &node).await,
        _ => MemberOutcome::Refused("not a membership change".into()),
    }
}

/// Whether `node` is this node or one of its cluster peers.
fn is_cluster_member(host: &dyn Host, node: &str) -> bool {
    host.cluster()
        .is_some_and(|c| c.node_name() == node || c.peer_names().iter().any(|p| p == node))
}

/// A group change's error as an outcome.
fn failed(e: ClusterError, what: &str) -> MemberOutcome {
    match e {
        ClusterError::NotLeader { leader } => MemberOutcome::Unavailable(format!(
            "{what}: this node no longer leads the group (leader: {}); retry",
            leader.as_deref().unwrap_or("none yet")
        )),
        ClusterError::NoQuorum => MemberOutcome::Unavailable(format!("{what}: timed out")),
        ClusterError::Invalid(why) => MemberOutcome::Refused(format!("{what}: {why}")),
        e => MemberOutcome::Unavailable(format!("{what}: {e}")),
    }
}

/// On the group's leader: adds `node` (see the module doc).
async fn add(host: &Arc<dyn Host>, vhost: &str, name: &str, node: &str, only_even: bool) -> MemberOutcome {
    let (Some(c), Some(f)) = (host.cluster(), host.forwarder()) else {
        return MemberOutcome::Refused("clustering is off on this node".into());
    };
    let group = group_id(vhost, name);
    let Some(status) = c.group_status(&group) else {
        return MemberOutcome::Unavailable("this node no longer runs the group; retry".into());
    };
    if status.members.iter().any(|m| m == node) {
        return MemberOutcome::Unchanged(format!("'{node}' is already a member"));
    }
    if only_even && status.members.len() % 2 != 0 {
        return MemberOutcome::Unchanged(format!("{} members (odd)", status.members.len()));
    }
    if !is_cluster_member(&**host, node) {
        return MemberOutcome::Refused(format!("'{node}' is not a cluster member"));
    }
    let t = std::time::Instant::now();
    let joined = f
        .quorum_member(node, (vhost, name), MemberAction::Join, host.forward_timeout())
        .await;
    if !matches!(joined, MemberOutcome::Done(_)) {
        return joined;
    }
    let what = format!("adding '{node}' to quorum queue '{name}' in vhost '{vhost}'");
    if let Err(e) = c.grow_group(&group, node, GROW_TIMEOUT).await {
        return failed(e, &what);
    }
    tracing::info!(%group, node, elapsed = ?t.elapsed(), "quorum queue member added");
    MemberOutcome::Done(None)
}

/// On the group's leader: removes `node` (see the module doc).
async fn remove(host: &Arc<dyn Host>, vhost: &str, name: &str, node: &str) -> MemberOutcome {
    let (Some(c), Some(f)) = (host.cluster(), host.forwarder()) else {
        return MemberOutcome::Refused("clustering is off on this node".into());
    };
    let group = group_id(vhost, name);
    let Some(status) = c.group_status(&group) else {
        return MemberOutcome::Unavailable("this node no longer runs the group; retry".into());
    };
    if !status.members.iter().any(|m| m == node) {
        return MemberOutcome::Unchanged(format!("'{node}' is not a member"));
    }
    if status.members.len() == 1 {
        return MemberOutcome::Refused(format!(
            "'{node}' is the last member of quorum queue '{name}' in vhost '{vhost}'"
        ));
    }
    let what = format!("removing '{node}' from quorum queue '{name}' in vhost '{vhost}'");
    let timeout = host.forward_timeout();
    if let Err(e) = c.shrink_group(&group, node, timeout).await {
        return failed(e, &what);
    }
    let me = c.node_name().to_string();
    let remaining: Vec<String> = status.members.into_iter().filter(|m| m != node).collect();
    if node != me {
        let leave = MemberAction::Leave {
            leader: Some(me.clone()),
        };
        let left = f.quorum_member(node, (vhost, name), leave, timeout).await;
        if !matches!(left, MemberOutcome::Done(_)) {
            // Down or forgotten: the group goes on without it.
            tracing::warn!(%group, node, ?left, "removed member did not stop its replica");
        }
    } else {
        let leader = new_leader(host, (vhost, name), &remaining, &me).await;
        let to = leader.as_deref().or(remaining.first().map(String::as_str));
        crate::quorum::leave(&**host, c, vhost, name, to).await;
    }
    tracing::info!(%group, node, "quorum queue member removed");
    MemberOutcome::Done(None)
}

/// After this node removed itself from a group it led: the leader the remaining members elect
/// (other than `me`), asked of them until the cluster operation timeout passes.
async fn new_leader(
    host: &Arc<dyn Host>,
    queue: (&str, &str),
    remaining: &[String],
    me: &str,
) -> Option<String> {
    let f = host.forwarder()?;
    let deadline = tokio::time::Instant::now() + host.forward_timeout();
    f.ask_leader(
        queue,
        remaining,
        |l| l != me,
        Some((deadline, Duration::from_millis(20))),
    )
    .await
}
