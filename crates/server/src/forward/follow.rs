//! Nodes that hold no member of a quorum queue's group following its leader (issue 20).
//!
//! A member learns its group's leader from Raft (the quorum module's watcher) and forwards the
//! queue's work there. A node outside the group (a cluster larger than the group) only knows
//! the home it was told: the declaring node at first. When forwarding there fails — the node
//! cannot be reached, or no longer serves the queue — [`Forwarder::forward_failed`] asks the
//! other nodes which node leads the group ([`MemberAction::Leader`]) and makes the first leader
//! a member names (other than the failed node) the queue's home, so later publishes, consumes
//! and gets go there. What failed meanwhile was nacked or refused, as on a member during a
//! failover. One lookup per queue at a time, and at most one per [`COOLDOWN`]: a queue that
//! nacks for another reason (`x-overflow: reject-publish`) costs a query a second, not one per
//! message.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

use super::{Forwarder, Host};

/// Least time between two lookups of one queue's leader.
pub const COOLDOWN: Duration = Duration::from_secs(1);

/// The lookups of this node: when each queue's last one started, and whether it runs (the
/// forwarder's `lookups`).
pub(crate) type Lookups = HashMap<(String, String), (Instant, bool)>;

/// Whether a lookup of `key` may start now (none running, none within the cooldown); if so it
/// is recorded as running.
fn start(l: &mut Lookups, key: &(String, String), now: Instant) -> bool {
    match l.get_mut(key) {
        Some((_, true)) => false,
        Some((at, running)) if now.duration_since(*at) >= COOLDOWN => {
            (*at, *running) = (now, true);
            true
        }
        Some(_) => false,
        None => {
            l.insert(key.clone(), (now, true));
            true
        }
    }
}

fn done(l: &mut Lookups, key: &(String, String)) {
    if let Some((_, running)) = l.get_mut(key) {
        *running = false;
    }
}

impl Forwarder {
    /// Forwarding work for queue `queue` of `vhost` to `node` failed (unreachable, or not
    /// served there): if it is a quorum queue this node holds no member of, looks up its
    /// group's leader in the background and makes it the queue's home (see the module doc).
    pub(crate) fn forward_failed(&self, vhost: &str, queue: &str, node: &str) {
        let Some(b) = self.broker.upgrade() else { return };
        let Some(v) = b.vhost(vhost) else { return };
        let quorum = v.read_topology(|t| t.queue(queue).is_some_and(|m| m.args.quorum));
        if !quorum || b.quorum().get(vhost, queue).is_some() || v.remote_home(queue).as_deref() != Some(node)
        {
            return;
        }
        let key = (vhost.to_string(), queue.to_string());
        if !start(&mut self.lookups.lock(), &key, Instant::now()) {
            return;
        }
        let (broker, failed) = (self.broker.clone(), node.to_string());
        tokio::spawn(async move {
            let found = follow(&broker, &key, &failed).await;
            if let Some(b) = broker.upgrade()
                && let Some(f) = b.forwarder()
            {
                done(&mut f.lookups.lock(), &key);
            }
            tracing::info!(vhost = key.0, queue = key.1, %failed, leader = ?found, "quorum queue leader looked up from outside its group");
        });
    }
}

/// Asks the other nodes (the failed one last) for the group's leader until one names a node
/// other than `failed` (and this one), for up to the cluster operation timeout; makes it the
/// queue's home.
async fn follow(broker: &Weak<dyn Host>, (vhost, queue): &(String, String), failed: &str) -> Option<String> {
    let deadline = {
        let b = broker.upgrade()?;
        tokio::time::Instant::now() + b.forward_timeout()
    };
    while tokio::time::Instant::now() < deadline {
        // The broker is held for one round at a time: it may shut down meanwhile.
        let b = broker.upgrade()?;
        let (mut peers, me) = {
            let c = b.cluster()?;
            (c.peer_names(), c.node_name().to_string())
        };
        peers.sort_by_key(|p| p == failed);
        let wanted = |l: &str| l != failed && l != me;
        if let Some(leader) = b
            .forwarder()?
            .ask_leader((vhost, queue), &peers, wanted, None)
            .await
        {
            let v = b.vhost(vhost)?;
            // A member that appeared here meanwhile follows Raft itself.
            if b.quorum().get(vhost, queue).is_none() && v.remote_home(queue).as_deref() == Some(failed) {
                v.cede_queue(queue, &leader);
            }
            return Some(leader);
        }
        drop(b);
        // An election takes a timeout or two: nothing to await but the members' answers.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lookup_per_queue_at_a_time_and_per_cooldown() {
        let mut l = Lookups::default();
        let (q, other) = (
            ("/".to_string(), "q".to_string()),
            ("/".to_string(), "r".to_string()),
        );
        let t = Instant::now();
        assert!(start(&mut l, &q, t));
        assert!(!start(&mut l, &q, t + COOLDOWN * 2), "one at a time");
        assert!(start(&mut l, &other, t), "queues are independent");
        done(&mut l, &q);
        assert!(!start(&mut l, &q, t + COOLDOWN / 2), "within the cooldown");
        assert!(start(&mut l, &q, t + COOLDOWN));
    }
}
