//! Quorum queues' Raft groups (issue 20, first slice): declaring a quorum queue in a cluster
//! starts one Raft group for it ([`warren_cluster::groups`]) on the members chosen from the
//! declaration, each member holding a [`Replica`] of the queue's replicated state
//! ([`warren_core::quorum::QuorumState`]); deleting the queue stops the group and deletes its
//! files. The management API shows the group's `leader` and `members`.
//!
//! Not yet: messages do not travel through the group. A quorum queue's messages still live on
//! its home node as a classic queue's do (docs/clustering.md, "Quorum queues").

use std::sync::Arc;

use parking_lot::Mutex;
use warren_cluster::{Apply, Cluster};
use warren_core::quorum::{Command, QuorumState};

/// RabbitMQ's default quorum queue group size.
pub const DEFAULT_GROUP_SIZE: usize = 3;

/// The id of the Raft group of quorum queue `name` in `vhost` (lengths first: both names may
/// hold any character).
pub fn group_id(vhost: &str, name: &str) -> String {
    format!("qq:{}:{}:{vhost}{name}", vhost.len(), name.len())
}

/// The members of a new queue's group: `size` nodes (at least one, at most all), starting with
/// the declaring node and then the next ones by name, wrapping around. Every node computes it
/// from the same committed declaration and membership, so all agree.
pub fn choose_members(declaring: &str, mut nodes: Vec<String>, size: usize) -> Vec<String> {
    if !nodes.iter().any(|n| n == declaring) {
        nodes.push(declaring.to_string());
    }
    nodes.sort();
    nodes.dedup();
    let start = nodes.iter().position(|n| n == declaring).unwrap_or(0);
    let size = size.clamp(1, nodes.len());
    let mut members: Vec<String> = (0..size)
        .map(|i| nodes[(start + i) % nodes.len()].clone())
        .collect();
    members.sort();
    members
}

/// One member's copy of a quorum queue's replicated state: the group's applier.
#[derive(Debug, Default)]
pub struct Replica {
    state: Mutex<QuorumState>,
}

impl Replica {
    /// Messages in this replica (ready and unacked).
    pub fn len(&self) -> usize {
        self.state.lock().len()
    }

    /// No messages.
    pub fn is_empty(&self) -> bool {
        self.state.lock().is_empty()
    }
}

impl Apply for Replica {
    fn apply(&self, index: u64, cmd: &[u8]) -> Vec<u8> {
        match Command::decode(cmd) {
            Some(c) => self.state.lock().apply(&c).to_le_bytes().to_vec(),
            None => {
                tracing::error!(index, "undecodable quorum queue command skipped");
                Vec::new()
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        self.state.lock().encode()
    }

    fn restore(&self, snap: &[u8]) {
        match QuorumState::decode(snap) {
            Some(s) => *self.state.lock() = s,
            None => tracing::error!("undecodable quorum queue snapshot ignored"),
        }
    }
}

/// After a quorum queue's declaration by `declaring` was applied: starts this node's member
/// of its group, if this node is among the chosen members (in the background: Raft start-up
/// does disk IO).
pub fn declared(cluster: &Cluster, vhost: &str, name: &str, declaring: &str, size: Option<u64>) {
    let mut nodes = cluster.peer_names();
    nodes.push(cluster.node_name().to_string());
    let size = size.map_or(DEFAULT_GROUP_SIZE, |s| s.min(usize::MAX as u64) as usize);
    let members = choose_members(declaring, nodes, size);
    if !members.iter().any(|m| m == cluster.node_name()) {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let (cluster, group) = (cluster.clone(), group_id(vhost, name));
    rt.spawn(async move {
        if let Err(e) = cluster
            .start_group(&group, &members, Arc::new(Replica::default()))
            .await
        {
            tracing::error!(%group, error = %e, "cannot start the quorum queue's raft group");
        }
    });
}

/// At a clustered node's start: resumes this node's member of every quorum queue's group it
/// has files of (in the background). `queues` names them as (vhost, queue).
pub fn resume_all(cluster: &Cluster, queues: Vec<(String, String)>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let groups: Vec<String> = queues.iter().map(|(v, q)| group_id(v, q)).collect();
    let cluster = cluster.clone();
    rt.spawn(async move {
        for group in groups {
            if let Err(e) = cluster.resume_group(&group, Arc::new(Replica::default())).await {
                tracing::error!(%group, error = %e, "cannot resume the quorum queue's raft group");
            }
        }
    });
}

/// After a quorum queue was deleted: stops this node's member of its group and deletes its
/// files.
pub fn deleted(cluster: &Cluster, vhost: &str, name: &str) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let (cluster, group) = (cluster.clone(), group_id(vhost, name));
    rt.spawn(async move { cluster.stop_group(&group, true).await });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_start_at_the_declaring_node_and_every_node_agrees() {
        let all = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let nodes = all(&["c", "a", "e", "b", "d"]);
        assert_eq!(choose_members("d", nodes.clone(), 3), all(&["a", "d", "e"]));
        assert_eq!(choose_members("b", nodes.clone(), 3), all(&["b", "c", "d"]));
        // The order nodes are listed in does not matter.
        let mut reversed = nodes.clone();
        reversed.reverse();
        assert_eq!(choose_members("d", reversed, 3), all(&["a", "d", "e"]));
        // Clamped to the cluster's size, and at least the declaring node.
        assert_eq!(choose_members("a", all(&["a", "b"]), 3), all(&["a", "b"]));
        assert_eq!(choose_members("a", all(&["a", "b"]), 0), all(&["a"]));
        assert_eq!(group_id("/", "q"), "qq:1:1:/q");
    }
}
