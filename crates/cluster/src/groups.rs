//! Per-queue Raft groups: more openraft instances on the same node beside the metadata group,
//! one per replicated (quorum) queue, as RabbitMQ runs one Ra cluster per quorum queue.
//!
//! Each group has its own log, vote and snapshot in `<data_dir>/groups/<digest>` (the same
//! [`crate::log_store`] and [`crate::state_machine`] as the metadata group, so the same fsync
//! discipline: an entry is durable on a member before that member acknowledges it), its own
//! [`Apply`] (the server's queue replica), and the node's own Raft id. Its members are named
//! cluster members; their addresses come from the metadata membership.
//!
//! Groups open no listener and no connections of their own: their RPCs travel over the node's
//! authenticated links ([`crate::network`]) as [`Request::Group`] frames naming the group, on
//! the [`Lane::Group`] connections every group shares, and the receiving node's [`Registry`]
//! hands each one to that group's Raft instance.
//!
//! Writes are local to the group's leader ([`Cluster::group_write`]): the server sends work for
//! a replicated queue to the node that leads its group (its "home" for forwarding), and a
//! write on another node fails with [`ClusterError::NotLeader`] naming the leader it knows.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use sha2::{Digest, Sha256};

use crate::cluster::{Cluster, handle_raft, open_raft_in};
use crate::error::{ClusterError, Result};
use crate::network::{Answered, Network, Request, Response};
use crate::state_machine::Apply;
use crate::types::{Command, Member, NodeId, Raft, node_id_for};

/// One group this node is a member of.
struct Group {
    raft: Raft,
    dir: PathBuf,
    applied: Arc<AtomicU64>,
    /// When each peer last answered this node's append-entries calls (as leader).
    answered: Answered,
}

/// The groups of this node by id (held by the [`Cluster`]).
#[derive(Default)]
pub(crate) struct Registry {
    groups: parking_lot::RwLock<HashMap<String, Arc<Group>>>,
    /// Signalled whenever a group starts here (a vote waiting for its group: [`Cluster::handle_group`]).
    started: tokio::sync::Notify,
}

/// How long a vote request for a group not started here yet waits for it: a new queue's
/// members start their group when they apply its declaration, which the declaring node (the
/// first candidate) may do a few milliseconds before them.
const VOTE_WAITS_FOR_GROUP: Duration = Duration::from_millis(250);

impl Registry {
    fn get(&self, group: &str) -> Option<Arc<Group>> {
        self.groups.read().get(group).cloned()
    }
}

/// A group as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    /// The leader's node name, if a leader is known.
    pub leader: Option<String>,
    /// The members' node names (voters), sorted.
    pub members: Vec<String>,
    /// This node's current term in the group.
    pub term: u64,
    /// This node's last applied index in the group.
    pub last_applied: u64,
    /// Only on the leader (empty elsewhere): the members it heard from within the longest
    /// election timeout (itself included), sorted — RabbitMQ's `online`.
    pub online: Vec<String>,
    /// Only on the leader (empty elsewhere): per member, the leader's last log index minus the
    /// index the member is known to have (all of it if none yet); 0 for the leader.
    pub lag: BTreeMap<String, u64>,
}

/// A group write's error: [`ClusterError::NotLeader`] naming the leader if another node leads.
fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> ClusterError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ClusterError::NotLeader {
            leader: f.leader_node.map(|n| n.name),
        },
        e => ClusterError::Raft(e.to_string()),
    }
}

/// When a member's pristine group is initialised ([`Cluster::start_group`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Init {
    /// At once: this node campaigns first.
    Now,
    /// Only if no candidate asked for a vote within the longest election timeout.
    Fallback,
    /// Never: the membership comes from the group's own log, or from the leader that adds it.
    Never,
}

/// The directory name of a group's files: 16 hex digits of SHA-256 of its id (ids hold any
/// characters, e.g. a vhost and queue name).
fn dir_name(group: &str) -> String {
    let d = Sha256::digest(group.as_bytes());
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl Cluster {
    /// Starts this node's member of `group` (a no-op if it runs already), with `members` (node
    /// names, this node among them) and `applier` as its state; a group with state on disk
    /// resumes from it. A pristine group is initialised with exactly `members` (openraft
    /// accepts the same initial membership from each member): at once if `first` (the node
    /// that declared the queue, which then campaigns first and leads, as RabbitMQ's default
    /// `client-local` leader locator places a new queue's leader on the declaring client's
    /// node), otherwise only if no candidate has asked for this member's vote within the
    /// longest election timeout (the first node died meanwhile).
    pub async fn start_group(
        &self,
        group: &str,
        members: &[String],
        applier: Arc<dyn Apply>,
        first: bool,
    ) -> Result<()> {
        let init = if first { Init::Now } else { Init::Fallback };
        self.open_group(group, members, applier, init).await
    }

    /// At a node's start: resumes this node's member of `group` from its files, if it has any
    /// (never initialises a new one: the membership is in the group's own log). Returns
    /// whether it runs.
    pub async fn resume_group(&self, group: &str, applier: Arc<dyn Apply>) -> Result<bool> {
        let dir = self.config().data_dir.join("groups").join(dir_name(group));
        if !dir.join(crate::log_store::STATE_FILE).exists() && !dir.join(crate::log_store::LOG_FILE).exists()
        {
            return Ok(false);
        }
        let me = [self.node_name().to_string()];
        self.open_group(group, &me, applier, Init::Never).await?;
        Ok(true)
    }

    async fn open_group(
        &self,
        group: &str,
        members: &[String],
        applier: Arc<dyn Apply>,
        init: Init,
    ) -> Result<()> {
        if self.groups().get(group).is_some() {
            return Ok(());
        }
        let mut nodes = BTreeMap::new();
        for name in members {
            let addr = if name == self.node_name() {
                self.addr().to_string()
            } else {
                self.member_addr(name)
                    .ok_or_else(|| ClusterError::Invalid(format!("no cluster member '{name}'")))?
            };
            nodes.insert(
                node_id_for(name),
                Member {
                    name: name.clone(),
                    addr,
                },
            );
        }
        if !nodes.contains_key(&self.node_id()) {
            return Err(ClusterError::Invalid(format!(
                "this node is not a member of group '{group}'"
            )));
        }
        let config = self.config();
        let dir = config.data_dir.join("groups").join(dir_name(group));
        let network = Network {
            pool: self.pool(),
            rpc_timeout: config.timeouts.rpc,
            group: Some(Arc::from(group)),
            answered: Default::default(),
        };
        let answered = network.answered.clone();
        let applied = Arc::new(AtomicU64::new(0));
        let counters = (applied.clone(), Arc::new(AtomicU64::new(0)));
        // A queue's writes never retry under the same id (each gets a fresh one): remembering
        // ids would cost about 1 MB per busy queue for nothing.
        let (raft, log) = open_raft_in(config, dir.clone(), applier, (network, 0), counters).await?;
        match init {
            Init::Now if log.is_pristine() => {
                if let Err(e) = raft.initialize(nodes).await {
                    tracing::debug!(group, error = %e, "group initialise refused (already initialised)");
                }
            }
            Init::Fallback if log.is_pristine() => {
                let (raft, log, wait) = (raft.clone(), log.clone(), config.timeouts.election_max);
                let group = group.to_string();
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    if log.is_pristine() && raft.initialize(nodes).await.is_ok() {
                        tracing::info!(group, "no candidate asked for a vote: group initialised here");
                    }
                });
            }
            _ => {}
        }
        let g = Arc::new(Group {
            raft,
            dir,
            applied,
            answered,
        });
        let raced = {
            let mut groups = self.groups().groups.write();
            match groups.get(group) {
                Some(_) => Some(g),
                None => {
                    groups.insert(group.to_string(), g);
                    None
                }
            }
        };
        if let Some(extra) = raced {
            let _ = extra.raft.shutdown().await;
        }
        self.groups().started.notify_waiters();
        tracing::info!(group, ?members, "raft group started");
        Ok(())
    }

    /// Starts this node's member of `group` as an empty replica that the group's leader is to
    /// add ([`Cluster::grow_group`]): never initialised here, it learns the group's log and
    /// membership from the leader. A no-op if it runs already.
    pub async fn join_group(&self, group: &str, applier: Arc<dyn Apply>) -> Result<()> {
        let me = [self.node_name().to_string()];
        self.open_group(group, &me, applier, Init::Never).await
    }

    /// On `group`'s leader: adds cluster member `node` (whose member runs: [`Cluster::join_group`])
    /// as a learner, waits until it caught up, then makes it a voter (RabbitMQ's
    /// `rabbitmq-queues grow`). Fails with [`ClusterError::NotLeader`] on another node, and
    /// with [`ClusterError::NoQuorum`] past `timeout`.
    pub async fn grow_group(&self, group: &str, node: &str, timeout: Duration) -> Result<()> {
        let (g, voters) = self.leading(group)?;
        let addr = self
            .member_addr(node)
            .ok_or_else(|| ClusterError::Invalid(format!("no cluster member '{node}'")))?;
        let id = node_id_for(node);
        let member = Member {
            name: node.to_string(),
            addr,
        };
        let work = async {
            g.raft.add_learner(id, member, true).await.map_err(write_error)?;
            let mut voters = voters;
            voters.insert(id);
            g.raft.change_membership(voters, false).await.map_err(write_error)
        };
        match tokio::time::timeout(timeout, work).await {
            Err(_) => Err(ClusterError::NoQuorum),
            Ok(r) => r.map(|_| ()),
        }
    }

    /// On `group`'s leader: removes `node` from the group's voters (RabbitMQ's
    /// `rabbitmq-queues shrink`); its member stops taking part (its files stay until it is
    /// stopped with them).
    pub async fn shrink_group(&self, group: &str, node: &str, timeout: Duration) -> Result<()> {
        let (g, mut voters) = self.leading(group)?;
        if !voters.remove(&node_id_for(node)) {
            return Ok(());
        }
        if voters.is_empty() {
            return Err(ClusterError::Invalid(format!(
                "'{node}' is the last member of '{group}'"
            )));
        }
        match tokio::time::timeout(timeout, g.raft.change_membership(voters, false)).await {
            Err(_) => Err(ClusterError::NoQuorum),
            Ok(r) => r.map(|_| ()).map_err(write_error),
        }
    }

    /// `group` and its voters, if this node leads it ([`ClusterError::NotLeader`] if not).
    fn leading(&self, group: &str) -> Result<(Arc<Group>, std::collections::BTreeSet<NodeId>)> {
        let g = self
            .groups()
            .get(group)
            .ok_or_else(|| ClusterError::Invalid(format!("no raft group '{group}' on this node")))?;
        let (leader, voters) = {
            let rx = g.raft.metrics();
            let m = rx.borrow();
            let mem = m.membership_config.membership();
            let leader = m
                .current_leader
                .and_then(|id| mem.get_node(&id).map(|n| n.name.clone()));
            (
                (m.current_leader == Some(self.node_id()))
                    .then_some(())
                    .ok_or(leader),
                mem.voter_ids().collect(),
            )
        };
        match leader {
            Ok(()) => Ok((g, voters)),
            Err(leader) => Err(ClusterError::NotLeader { leader }),
        }
    }

    /// Stops this node's member of `group`; with `remove_data`, deletes its files (the queue
    /// was deleted).
    pub async fn stop_group(&self, group: &str, remove_data: bool) {
        let g = self.groups().groups.write().remove(group);
        let Some(g) = g else { return };
        let _ = g.raft.shutdown().await;
        if remove_data {
            let dir = g.dir.clone();
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        }
    }

    /// Stops every group (at shutdown).
    pub(crate) async fn shutdown_groups(&self) {
        let all: Vec<Arc<Group>> = self.groups().groups.write().drain().map(|(_, g)| g).collect();
        for g in all {
            let _ = g.raft.shutdown().await;
        }
    }

    /// The ids of the groups this node runs.
    pub fn group_ids(&self) -> Vec<String> {
        self.groups().groups.read().keys().cloned().collect()
    }

    /// Commits `payload` to `group`'s log on this node, which must lead the group, and returns
    /// the applier's answer once a majority of the members has it durably. Fails with
    /// [`ClusterError::NotLeader`] if another node leads (or none is known), and with
    /// [`ClusterError::NoQuorum`] if no majority commits it within `timeout` (it may still
    /// commit later).
    pub async fn group_write(&self, group: &str, payload: Vec<u8>, timeout: Duration) -> Result<Vec<u8>> {
        let g = self
            .groups()
            .get(group)
            .ok_or_else(|| ClusterError::Invalid(format!("no raft group '{group}' on this node")))?;
        let command = Command {
            id: rand::random(),
            payload,
        };
        match tokio::time::timeout(timeout, g.raft.client_write(command)).await {
            Err(_) => Err(ClusterError::NoQuorum),
            Ok(Ok(resp)) => Ok(resp.data.0),
            Ok(Err(e)) => Err(write_error(e)),
        }
    }

    /// Submits a write to `group` on this node (its leader) and returns the wait for its
    /// answer, bounded by `timeout` from now (`Err(NoQuorum)` past it), like
    /// [`Cluster::group_write`]. Writes submitted one after another take log positions in that
    /// order, so a proposer may have several in flight (pipelining) and still see them commit
    /// in order.
    pub async fn group_submit(
        &self,
        group: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<impl std::future::Future<Output = Result<Vec<u8>>> + Send + 'static> {
        let g = self
            .groups()
            .get(group)
            .ok_or_else(|| ClusterError::Invalid(format!("no raft group '{group}' on this node")))?;
        let deadline = tokio::time::Instant::now() + timeout;
        let command = Command {
            id: rand::random(),
            payload,
        };
        let rx = g
            .raft
            .client_write_ff(command)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        Ok(async move {
            match tokio::time::timeout_at(deadline, rx).await {
                Err(_) => Err(ClusterError::NoQuorum),
                Ok(Err(_)) => Err(ClusterError::Raft("the raft group stopped".into())),
                Ok(Ok(Ok(resp))) => Ok(resp.data.0),
                Ok(Ok(Err(e))) => Err(write_error(RaftError::APIError(e))),
            }
        })
    }

    /// How this node sees `group` (`None`: not a member here).
    pub fn group_status(&self, group: &str) -> Option<GroupStatus> {
        let g = self.groups().get(group)?;
        let rx = g.raft.metrics();
        let m = rx.borrow();
        let mem = m.membership_config.membership();
        let name_of = |id: &NodeId| mem.get_node(id).map(|n| n.name.clone());
        let mut members: Vec<String> = mem.voter_ids().filter_map(|id| name_of(&id)).collect();
        members.sort();
        let (mut online, mut lag) = (Vec::new(), BTreeMap::new());
        if let Some(matched) = &m.replication {
            let last = m.last_log_index.unwrap_or(0);
            let fresh = self.config().timeouts.election_max;
            let answered = g.answered.lock();
            for id in mem.voter_ids() {
                let Some(name) = name_of(&id) else { continue };
                let heard = id == self.node_id() || answered.get(&id).is_some_and(|t| t.elapsed() <= fresh);
                if heard {
                    online.push(name.clone());
                }
                let have = if id == self.node_id() {
                    last
                } else {
                    matched.get(&id).copied().flatten().map_or(0, |l| l.index)
                };
                lag.insert(name, last.saturating_sub(have));
            }
            online.sort();
        }
        Some(GroupStatus {
            leader: m.current_leader.as_ref().and_then(name_of),
            members,
            online,
            lag,
            term: m.current_term,
            last_applied: g.applied.load(Ordering::Acquire),
        })
    }

    /// Waits until `group`'s leader as this node sees it differs from `known` (or `timeout`
    /// passes, or the group stops), and returns the new leader's name.
    pub async fn group_leader_change(
        &self,
        group: &str,
        known: Option<&str>,
        timeout: Duration,
    ) -> Option<String> {
        let g = self.groups().get(group)?;
        let mut rx = g.raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let leader = {
                let m = rx.borrow_and_update();
                m.current_leader.and_then(|id| {
                    m.membership_config
                        .membership()
                        .get_node(&id)
                        .map(|n| n.name.clone())
                })
            };
            if leader.as_deref() != known {
                return leader;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return leader,
            }
        }
    }

    /// Serves a peer's RPC for `group` (an error answer if this node does not run it, e.g.
    /// not started yet: the leader retries). A vote request waits up to
    /// [`VOTE_WAITS_FOR_GROUP`] for the group to start, so a new queue's first election does
    /// not fail (and wait out an election timeout) for a member a few milliseconds behind.
    pub(crate) async fn handle_group(&self, group: &str, rpc: Request) -> Response {
        let mut g = self.groups().get(group);
        if g.is_none() && matches!(rpc, Request::Vote(_)) {
            let deadline = tokio::time::Instant::now() + VOTE_WAITS_FOR_GROUP;
            loop {
                // Registered for `notify_waiters` from its creation, before the check below.
                let started = self.groups().started.notified();
                g = self.groups().get(group);
                if g.is_some() || tokio::time::timeout_at(deadline, started).await.is_err() {
                    break;
                }
            }
        }
        match g {
            Some(g) => handle_raft(&g.raft, rpc).await,
            None => Response::App(Err(format!("no raft group '{group}' on this node"))),
        }
    }
}
