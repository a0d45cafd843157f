//! The [`Cluster`] handle the server uses: start-up and cluster formation, proposals from any
//! node (forwarded to the leader), status, run-time membership (`join`, `forget`), shutdown;
//! and the listener that serves peers' requests.
//!
//! # Formation
//!
//! - A node with existing Raft state (a restart) just starts; the membership is in its log. If
//!   its address changed since, it finds the leader through the other members and has the new
//!   address recorded (a membership change of its node record), so the log reaches it again.
//! - A pristine node with no seeds initialises a one-node cluster of itself.
//! - A pristine node with seeds asks them `Hello` until either one of them knows a leader —
//!   then it asks that leader to add it (as a learner, caught up, then promoted to voter) — or
//!   all of them answered and none is in a cluster: then the node with the lowest id among them
//!   initialises the cluster with all of them as voters, and the others join it as above (a
//!   no-op for a node already a voter). Every initial member should list every other as a seed.
//! - [`Cluster::join`] on a lone node (one that initialised itself and never applied a
//!   command) drops its own bootstrap, restarts Raft pristine, and asks the leader of the
//!   cluster at the given address to add it, as above.
//!
//! # Node ids
//!
//! A node's Raft id is [`node_id_for`] of its name, so a name always maps to the same id and
//! `forget` works by name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, Config, SnapshotPolicy};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{ClusterError, Result};
use crate::log_store::{LOG_FILE, LogStore, STATE_FILE, sync_dir};
use crate::network::{
    Hello, Lane, Network, Pool, RemoteFailure, Request, Response, Stream, read_frame, server_handshake,
    write_frame,
};
use crate::state_machine::{Apply, SNAPSHOT_FILE, StateMachine};
use crate::types::{Command, Member, NodeId, Raft, node_id_for};

/// Timing of the cluster; the defaults suit a LAN, tests shorten them.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// Leader heartbeat period.
    pub heartbeat: Duration,
    /// A follower that heard no heartbeat for a random time in `[election_min, election_max)`
    /// starts an election.
    pub election_min: Duration,
    /// See `election_min`.
    pub election_max: Duration,
    /// Bound on one Raft RPC (append entries, vote, snapshot chunk, hello).
    pub rpc: Duration,
    /// Bound on connecting (TCP + handshake) to a peer.
    pub connect: Duration,
    /// Bound on `propose`, `join` and `forget`: past it they fail with `NoQuorum`.
    pub propose: Duration,
    /// Pause between formation attempts while seeds are unreachable.
    pub retry: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            heartbeat: Duration::from_millis(250),
            election_min: Duration::from_millis(1000),
            election_max: Duration::from_millis(2000),
            rpc: Duration::from_millis(2000),
            connect: Duration::from_millis(2000),
            propose: Duration::from_secs(10),
            retry: Duration::from_millis(500),
        }
    }
}

/// How to start a cluster node.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's name (`warren@host`), unique in the cluster.
    pub node_name: String,
    /// This node's Raft id; [`ClusterConfig::new`] derives it from the name ([`node_id_for`]).
    pub node_id: NodeId,
    /// Address the cluster listener binds (`HOST:PORT`; port 0 picks one).
    pub listen: String,
    /// Address other nodes dial to reach this one; `None` means the bound address (give one
    /// when `listen` is a wildcard such as `0.0.0.0`).
    pub advertise: Option<String>,
    /// Cluster addresses of the other initial members (empty: a one-node cluster).
    pub seeds: Vec<String>,
    /// The shared secret authenticating nodes to each other (RabbitMQ's Erlang cookie).
    pub secret: Vec<u8>,
    /// Directory for the Raft log, vote and snapshot (created if missing).
    pub data_dir: PathBuf,
    /// Timing.
    pub timeouts: Timeouts,
    /// A snapshot is taken after this many applied entries, once their commands also amount to
    /// twice the state's size ([`crate::Apply::size`]).
    pub snapshot_threshold: u64,
    /// Entries kept in the log behind a snapshot (for followers slightly behind).
    pub logs_to_keep: u64,
    /// Testing: when dialling a peer at a key address, connect to the value instead (a TCP
    /// proxy that partition tests cut and heal). Empty in production.
    pub dial_via: std::collections::HashMap<String, String>,
    /// Inter-node TLS: `None` keeps every cluster connection plain TCP.
    pub tls: Option<crate::network::ClusterTls>,
}

impl ClusterConfig {
    /// A configuration with the id derived from `node_name` and default timing.
    pub fn new(node_name: &str, listen: &str, secret: &[u8], data_dir: impl Into<PathBuf>) -> ClusterConfig {
        ClusterConfig {
            node_name: node_name.to_string(),
            node_id: node_id_for(node_name),
            listen: listen.to_string(),
            advertise: None,
            seeds: Vec::new(),
            secret: secret.to_vec(),
            data_dir: data_dir.into(),
            timeouts: Timeouts::default(),
            snapshot_threshold: 5000,
            logs_to_keep: 1000,
            dial_via: Default::default(),
            tls: None,
        }
    }
}

/// One member as `status()` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// Raft id.
    pub id: NodeId,
    /// Node name.
    pub name: String,
    /// Cluster address.
    pub addr: String,
    /// A voter (false: a learner still catching up).
    pub voter: bool,
    /// It answered this status call.
    pub reachable: bool,
    /// Its last applied log index, as it reported it (`None` if unreachable).
    pub last_applied: Option<u64>,
}

/// The cluster as this node sees it.
#[derive(Debug, Clone)]
pub struct Status {
    /// This node's id.
    pub node_id: NodeId,
    /// This node's name.
    pub node_name: String,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// This node's current term.
    pub term: u64,
    /// This node's last applied log index.
    pub last_applied: u64,
    /// Every member (voters and learners), sorted by name.
    pub members: Vec<MemberStatus>,
}

impl Status {
    /// The leader's name, if a leader is known.
    pub fn leader_name(&self) -> Option<&str> {
        let leader = self.leader?;
        self.members
            .iter()
            .find(|m| m.id == leader)
            .map(|m| m.name.as_str())
    }

    /// Ids of the voting members.
    pub fn voters(&self) -> Vec<NodeId> {
        self.members.iter().filter(|m| m.voter).map(|m| m.id).collect()
    }
}

struct Inner {
    id: NodeId,
    name: String,
    addr: String,
    /// The Raft instance and its log store; replaced only when a lone node resets itself to
    /// join a cluster.
    raft: parking_lot::RwLock<(Raft, LogStore)>,
    pool: Arc<Pool>,
    timeouts: Timeouts,
    applied: Arc<AtomicU64>,
    /// Commands applied (or restored from a snapshot) since start: a node with any may not
    /// reset itself to join another cluster.
    commands: Arc<AtomicU64>,
    applier: Arc<dyn Apply>,
    config: ClusterConfig,
    shutdown: watch::Sender<bool>,
    tasks: parking_lot::Mutex<Vec<JoinHandle<()>>>,
    /// Answers application requests ([`crate::forward`]), once the server installs it.
    app: std::sync::OnceLock<Arc<dyn crate::forward::AppHandler>>,
    /// The per-queue Raft groups this node is a member of ([`crate::groups`]).
    groups: crate::groups::Registry,
}

/// A running cluster node. Cheap to clone. Stopped by [`Cluster::shutdown`] (dropping the
/// handles does not stop its tasks).
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl Cluster {
    /// Starts the node: opens its state in `data_dir`, binds the cluster listener, starts Raft,
    /// and initialises or joins a cluster as described in the module doc. Returns once the
    /// listener is up; formation with seeds continues in the background (watch `status()`).
    pub async fn start(config: ClusterConfig, applier: Arc<dyn Apply>) -> Result<Cluster> {
        let listener = TcpListener::bind(&config.listen).await?;
        let addr = match &config.advertise {
            Some(a) => a.clone(),
            None => listener.local_addr()?.to_string(),
        };
        let pool = Arc::new(
            Pool::new(config.secret.clone(), config.timeouts.connect)
                .with_dial_via(config.dial_via.clone())
                .with_tls(config.tls.clone()),
        );
        let applied = Arc::new(AtomicU64::new(0));
        let commands = Arc::new(AtomicU64::new(0));
        let (raft, log) = open_raft(&config, &applier, &pool, &applied, &commands).await?;
        let pristine = log.is_pristine();
        let (shutdown, _) = watch::channel(false);
        let cluster = Cluster {
            inner: Arc::new(Inner {
                id: config.node_id,
                name: config.node_name.clone(),
                addr: addr.clone(),
                raft: parking_lot::RwLock::new((raft, log)),
                pool,
                timeouts: config.timeouts.clone(),
                applied,
                commands,
                applier,
                config: config.clone(),
                shutdown,
                tasks: Default::default(),
                app: Default::default(),
                groups: Default::default(),
            }),
        };
        let accept = tokio::spawn(cluster.clone().accept_loop(listener, config.secret.clone()));
        cluster.inner.tasks.lock().push(accept);
        if !pristine {
            let announce = tokio::spawn(cluster.clone().announce());
            cluster.inner.tasks.lock().push(announce);
        } else if config.seeds.is_empty() {
            let me = BTreeMap::from([(cluster.inner.id, cluster.me())]);
            if let Err(e) = cluster.raft().initialize(me).await {
                cluster.shutdown().await;
                return Err(ClusterError::Raft(e.to_string()));
            }
            // Return once status() and peers' hellos see the one-node cluster.
            let id = cluster.inner.id;
            let _ = cluster
                .raft()
                .wait(Some(config.timeouts.rpc))
                .metrics(
                    |m| m.membership_config.membership().get_node(&id).is_some(),
                    "own membership",
                )
                .await;
        } else {
            let form = tokio::spawn(cluster.clone().form(config.seeds.clone()));
            cluster.inner.tasks.lock().push(form);
        }
        tracing::info!(node = %config.node_name, id = config.node_id, %addr, pristine, "cluster node started");
        Ok(cluster)
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.id
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.inner.name
    }

    /// The address peers dial to reach this node.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Installs the handler of peers' application requests ([`crate::forward`]; once).
    pub fn set_app_handler(&self, h: Arc<dyn crate::forward::AppHandler>) {
        let _ = self.inner.app.set(h);
    }

    pub(crate) fn app_handler(&self) -> Option<Arc<dyn crate::forward::AppHandler>> {
        self.inner.app.get().cloned()
    }

    /// The address of the member named `name`, from the membership this node knows.
    pub(crate) fn member_addr(&self, name: &str) -> Option<String> {
        let rx = self.raft().metrics();
        let m = rx.borrow();
        let mem = m.membership_config.membership();
        mem.nodes()
            .find(|(_, n)| n.name == name)
            .map(|(_, n)| n.addr.clone())
    }

    /// The names of the other members, from the membership this node knows.
    pub fn peer_names(&self) -> Vec<String> {
        let rx = self.raft().metrics();
        let m = rx.borrow();
        let mem = m.membership_config.membership();
        mem.nodes()
            .filter(|(id, _)| **id != self.inner.id)
            .map(|(_, n)| n.name.clone())
            .collect()
    }

    /// The per-queue groups of this node ([`crate::groups`]).
    pub(crate) fn groups(&self) -> &crate::groups::Registry {
        &self.inner.groups
    }

    /// The pool of outgoing connections every group shares.
    pub(crate) fn pool(&self) -> Arc<Pool> {
        self.inner.pool.clone()
    }

    /// The configuration this node started with.
    pub(crate) fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// The current Raft instance.
    fn raft(&self) -> Raft {
        self.inner.raft.read().0.clone()
    }

    fn me(&self) -> Member {
        Member {
            name: self.inner.name.clone(),
            addr: self.inner.addr.clone(),
        }
    }

    /// Stops the node: Raft, the listener, every connection. The data directory can then be
    /// reopened by a new `start`.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        self.shutdown_groups().await;
        let _ = self.raft().shutdown().await;
        let tasks: Vec<_> = self.inner.tasks.lock().drain(..).collect();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        self.inner.pool.close_all();
    }

    fn is_shut_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    fn leader(&self) -> Option<(NodeId, Member)> {
        let rx = self.raft().metrics();
        let m = rx.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    fn hello(&self) -> Hello {
        let (initialized, term) = {
            let rx = self.raft().metrics();
            let m = rx.borrow();
            (
                m.membership_config.membership().nodes().next().is_some(),
                m.current_term,
            )
        };
        Hello {
            id: self.inner.id,
            name: self.inner.name.clone(),
            initialized,
            leader: self.leader(),
            term,
            last_applied: self.inner.applied.load(Ordering::Acquire),
        }
    }

    /// Commits `cmd` to the replicated log and returns the applier's answer from the leader.
    /// Works on any node: a follower forwards to the leader over the cluster link. Fails with
    /// [`ClusterError::NoQuorum`] if no majority commits it within `Timeouts::propose` (the
    /// command may still commit later, if it reached a leader's log: treat it as unknown).
    ///
    /// A forwarded proposal whose link fails before the answer arrives is sent again (to the
    /// new leader, if one was elected) under the same random id; the state machine remembers
    /// the ids (and answers) of the last 16,384 commands, so a retry of a proposal that did
    /// commit is answered from that memory instead of being applied twice.
    pub async fn propose(&self, cmd: impl Into<Vec<u8>>) -> Result<Vec<u8>> {
        let cmd = cmd.into();
        let id: u128 = rand::random();
        let deadline = Instant::now() + self.inner.timeouts.propose;
        let (index, answer) = self
            .on_leader(deadline, |remaining| Request::Propose {
                id,
                cmd: cmd.clone(),
                timeout_ms: remaining.as_millis() as u64,
            })
            .await?;
        self.await_applied(index, deadline).await;
        Ok(answer)
    }

    /// Waits (until `deadline`) for this node to apply the log up to `index`, so that what a
    /// caller had committed through this node is visible on it when the call returns.
    async fn await_applied(&self, index: u64, deadline: Instant) {
        if index == 0 || self.inner.applied.load(Ordering::Acquire) >= index {
            return;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let waited = self
            .raft()
            .wait(Some(remaining))
            .applied_index_at_least(Some(index), "local apply of a committed proposal")
            .await;
        if let Err(e) = waited {
            // Committed all the same: report success, the node applies it when it catches up.
            tracing::warn!(index, error = %e, "committed entry not yet applied on this node");
        }
    }

    /// Waits up to `timeout` until this node knows a leader, and returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId> {
        let m = self
            .raft()
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a known leader")
            .await
            .map_err(|_| ClusterError::NoQuorum)?;
        m.current_leader.ok_or(ClusterError::NoQuorum)
    }

    /// Joins the cluster that the node at `addr` belongs to (RabbitMQ's `join_cluster`, run on
    /// the joining node). Only a node without data of its own can join: a pristine node, or a
    /// lone node that never applied a command, whose own bootstrap is dropped first.
    pub async fn join(&self, addr: &str) -> Result<()> {
        let (voters, others) = {
            let rx = self.raft().metrics();
            let m = rx.borrow();
            let mem = m.membership_config.membership();
            (
                mem.voter_ids().count(),
                mem.nodes().any(|(id, _)| *id != self.inner.id),
            )
        };
        if others || voters > 1 || self.inner.raft.read().1.knows_other_nodes(self.inner.id) {
            return Err(ClusterError::Invalid(
                "this node is already clustered with others".into(),
            ));
        }
        if self.inner.commands.load(Ordering::Acquire) > 0 || self.inner.raft.read().1.holds_commands() {
            return Err(ClusterError::Invalid(
                "this node holds replicated data of its own; reset it before joining".into(),
            ));
        }
        let deadline = Instant::now() + self.inner.timeouts.propose;
        // Check the secret and that `addr` is in a cluster before dropping anything.
        loop {
            match self
                .call(addr, Lane::Raft, Request::Hello, self.inner.timeouts.rpc)
                .await
            {
                Ok(Response::Hello(h)) if h.initialized => break,
                Ok(Response::Hello(_)) if Instant::now() + self.inner.timeouts.retry >= deadline => {
                    return Err(ClusterError::Invalid(format!("{addr} is not in a cluster")));
                }
                Ok(Response::Hello(_)) => {} // it may be starting: ask again
                Ok(_) => return Err(ClusterError::Codec("unexpected response".into())),
                Err(e @ ClusterError::AuthRefused { .. }) => return Err(e),
                Err(e) if Instant::now() + self.inner.timeouts.retry >= deadline => return Err(e),
                Err(_) => {}
            }
            tokio::time::sleep(self.inner.timeouts.retry).await;
        }
        let pristine = self.inner.raft.read().1.is_pristine();
        if !pristine {
            self.reset().await?;
        }
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ClusterError::NoQuorum);
            }
            let leader = match self.call(addr, Lane::Raft, Request::Hello, remaining).await {
                Ok(Response::Hello(h)) => h.leader,
                Err(e @ ClusterError::AuthRefused { .. }) => return Err(e),
                _ => None,
            };
            if let Some((_, leader)) = leader {
                let req = Request::Join {
                    id: self.inner.id,
                    member: self.me(),
                    timeout_ms: remaining.as_millis() as u64,
                };
                match self.call(&leader.addr, Lane::Control, req, remaining).await {
                    Ok(Response::Control(Ok(_))) => return Ok(()),
                    Ok(Response::Control(Err(RemoteFailure::Invalid(s)))) => {
                        return Err(ClusterError::Invalid(s));
                    }
                    Ok(Response::Control(Err(RemoteFailure::NoQuorum))) => {
                        return Err(ClusterError::NoQuorum);
                    }
                    Err(e @ ClusterError::AuthRefused { .. }) => return Err(e),
                    _ => {}
                }
            }
            tokio::time::sleep(self.inner.timeouts.retry.min(remaining)).await;
        }
    }

    /// Drops this lone node's own bootstrap (its Raft files) and restarts Raft pristine, so
    /// that it can take another cluster's log.
    async fn reset(&self) -> Result<()> {
        tracing::info!(node = %self.inner.name, "resetting this lone node to join a cluster");
        let _ = self.raft().shutdown().await;
        let dir = self.inner.config.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            for f in [LOG_FILE, STATE_FILE, SNAPSHOT_FILE] {
                match std::fs::remove_file(dir.join(f)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            sync_dir(&dir)
        })
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))??;
        let i = &self.inner;
        let (raft, log) = open_raft(&i.config, &i.applier, &i.pool, &i.applied, &i.commands).await?;
        *i.raft.write() = (raft, log);
        Ok(())
    }

    /// Removes the node named `name` from the cluster (from any member; forwarded to the
    /// leader). The removed node stops receiving the log.
    pub async fn forget(&self, name: &str) -> Result<()> {
        let deadline = Instant::now() + self.inner.timeouts.propose;
        let (index, _) = self
            .on_leader(deadline, |remaining| Request::Forget {
                name: name.to_string(),
                timeout_ms: remaining.as_millis() as u64,
            })
            .await?;
        if name != self.inner.name {
            // (A node that forgot itself no longer receives the log.)
            self.await_applied(index, deadline).await;
        }
        Ok(())
    }

    /// Members, leader, term, and each member's reachability and last applied index (asked of
    /// each member in parallel, bounded by `Timeouts::rpc`).
    pub async fn status(&self) -> Status {
        let (leader, term, nodes) = {
            let rx = self.raft().metrics();
            let m = rx.borrow();
            let mem = m.membership_config.membership();
            let voters: BTreeSet<NodeId> = mem.voter_ids().collect();
            let nodes: Vec<(NodeId, Member, bool)> = mem
                .nodes()
                .map(|(id, n)| (*id, n.clone(), voters.contains(id)))
                .collect();
            (m.current_leader, m.current_term, nodes)
        };
        let mut asks = tokio::task::JoinSet::new();
        for (id, node, voter) in nodes {
            let me = self.clone();
            asks.spawn(async move {
                let reply = if id == me.inner.id {
                    Some(me.hello())
                } else {
                    match me
                        .call(&node.addr, Lane::Raft, Request::Hello, me.inner.timeouts.rpc)
                        .await
                    {
                        Ok(Response::Hello(h)) => Some(h),
                        _ => None,
                    }
                };
                MemberStatus {
                    id,
                    name: node.name,
                    addr: node.addr,
                    voter,
                    reachable: reply.is_some(),
                    last_applied: reply.map(|h| h.last_applied),
                }
            });
        }
        let mut members: Vec<MemberStatus> = asks.join_all().await;
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Status {
            node_id: self.inner.id,
            node_name: self.inner.name.clone(),
            leader,
            term,
            last_applied: self.inner.applied.load(Ordering::Acquire),
            members,
        }
    }

    /// One call on `lane` to `addr`.
    pub(crate) async fn call(
        &self,
        addr: &str,
        lane: Lane,
        req: Request,
        timeout: Duration,
    ) -> Result<Response> {
        self.inner.pool.call(addr, lane, &req, timeout).await
    }

    /// Runs a control request on the leader: locally if this node leads, else forwarded;
    /// retried across elections until `deadline`, then `NoQuorum`.
    async fn on_leader(
        &self,
        deadline: Instant,
        req: impl Fn(Duration) -> Request,
    ) -> Result<(u64, Vec<u8>)> {
        loop {
            if self.is_shut_down() {
                return Err(ClusterError::Shutdown);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ClusterError::NoQuorum);
            }
            let result = match self.leader() {
                Some((id, _)) if id == self.inner.id => self.handle_control(req(remaining)).await,
                Some((_, node)) => match self
                    .call(&node.addr, Lane::Control, req(remaining), remaining)
                    .await
                {
                    Ok(Response::Control(r)) => r,
                    Ok(_) => Err(RemoteFailure::Other("unexpected response".into())),
                    Err(_) => Err(RemoteFailure::NotLeader),
                },
                None => Err(RemoteFailure::NotLeader),
            };
            match result {
                Ok(v) => return Ok(v),
                Err(RemoteFailure::NotLeader) => {
                    // Wait for news of a (new) leader, bounded by the deadline.
                    let mut rx = self.raft().metrics();
                    let pause = Duration::from_millis(50).min(remaining);
                    let _ = tokio::time::timeout(pause, rx.changed()).await;
                }
                Err(f) => return Err(f.into()),
            }
        }
    }

    /// Executes a control request on this node, which must be the leader (no forwarding).
    async fn handle_control(&self, req: Request) -> Result<(u64, Vec<u8>), RemoteFailure> {
        let raft = self.raft();
        let write_err = |e: RaftError<NodeId, ClientWriteError<NodeId, Member>>| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => RemoteFailure::NotLeader,
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                RemoteFailure::Invalid(e.to_string())
            }
            RaftError::Fatal(e) => RemoteFailure::Other(e.to_string()),
        };
        let bounded = |ms: u64| Duration::from_millis(ms).min(self.inner.timeouts.propose);
        match req {
            Request::Propose { id, cmd, timeout_ms } => {
                let command = Command { id, payload: cmd };
                match tokio::time::timeout(bounded(timeout_ms), raft.client_write(command)).await {
                    Err(_) => Err(RemoteFailure::NoQuorum),
                    Ok(Ok(resp)) => Ok((resp.log_id.index, resp.data.0)),
                    Ok(Err(e)) => Err(write_err(e)),
                }
            }
            Request::Join {
                id,
                member,
                timeout_ms,
            } => {
                let work = async {
                    let (is_voter, recorded) = {
                        let rx = raft.metrics();
                        let m = rx.borrow();
                        let mem = m.membership_config.membership();
                        (mem.voter_ids().any(|v| v == id), mem.get_node(&id).cloned())
                    };
                    match recorded {
                        None => {
                            raft.add_learner(id, member, true).await.map_err(write_err)?;
                        }
                        // A member back at a new address: record it, so the log reaches it.
                        Some(old) if old != member => {
                            let nodes = BTreeMap::from([(id, member)]);
                            let resp = raft
                                .change_membership(ChangeMembers::SetNodes(nodes), true)
                                .await
                                .map_err(write_err)?;
                            if is_voter {
                                return Ok((resp.log_id.index, Vec::new()));
                            }
                        }
                        Some(_) if is_voter => return Ok((0, Vec::new())),
                        Some(_) => {}
                    }
                    let resp = raft
                        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                        .await
                        .map_err(write_err)?;
                    Ok((resp.log_id.index, Vec::new()))
                };
                tokio::time::timeout(bounded(timeout_ms), work)
                    .await
                    .unwrap_or(Err(RemoteFailure::NoQuorum))
            }
            Request::Forget { name, timeout_ms } => {
                let work = async {
                    let (id, voter) = {
                        let rx = raft.metrics();
                        let m = rx.borrow();
                        let mem = m.membership_config.membership();
                        let Some((id, _)) = mem.nodes().find(|(_, n)| n.name == name) else {
                            return Err(RemoteFailure::Invalid(format!("no cluster member named {name}")));
                        };
                        (*id, mem.voter_ids().any(|v| v == *id))
                    };
                    let change = if voter {
                        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                    } else {
                        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                    };
                    let resp = raft.change_membership(change, false).await.map_err(write_err)?;
                    Ok((resp.log_id.index, Vec::new()))
                };
                tokio::time::timeout(bounded(timeout_ms), work)
                    .await
                    .unwrap_or(Err(RemoteFailure::NoQuorum))
            }
            _ => Err(RemoteFailure::Other("not a control request".into())),
        }
    }

    /// For a restarted member whose address changed since the membership recorded it: finds
    /// the leader through the other members and asks it to record the new address (the leader
    /// could not reach the node at the old one).
    async fn announce(self) {
        let t = self.inner.timeouts.clone();
        let me = self.me();
        // The membership is loaded from the log as Raft starts; give it the time of a few RPCs.
        let loaded = self
            .raft()
            .wait(Some(t.rpc))
            .metrics(
                |m| m.membership_config.membership().nodes().next().is_some(),
                "membership loaded",
            )
            .await;
        let Ok(metrics) = loaded else { return };
        let mem = metrics.membership_config.membership();
        match mem.get_node(&self.inner.id) {
            Some(recorded) if *recorded != me => {
                tracing::info!(old = %recorded, new = %me, "this node's address changed; telling the leader")
            }
            _ => return,
        }
        let peers: Vec<String> = mem
            .nodes()
            .filter(|(id, _)| **id != self.inner.id)
            .map(|(_, n)| n.addr.clone())
            .collect();
        while !self.is_shut_down() {
            for peer in &peers {
                let Ok(Response::Hello(h)) = self.call(peer, Lane::Raft, Request::Hello, t.rpc).await else {
                    continue;
                };
                let Some((_, leader)) = h.leader else { continue };
                let req = Request::Join {
                    id: self.inner.id,
                    member: me.clone(),
                    timeout_ms: t.propose.as_millis() as u64,
                };
                if let Ok(Response::Control(Ok(_))) =
                    self.call(&leader.addr, Lane::Control, req, t.propose).await
                {
                    return;
                }
            }
            tokio::time::sleep(t.retry).await;
        }
    }

    /// Formation for a pristine node with seeds (module doc).
    async fn form(self, seeds: Vec<String>) {
        let t = self.inner.timeouts.clone();
        loop {
            let joined = {
                let rx = self.raft().metrics();
                let m = rx.borrow();
                m.membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == self.inner.id)
            };
            if joined || self.is_shut_down() {
                return;
            }
            let mut hellos = Vec::new();
            for seed in &seeds {
                match self.call(seed, Lane::Raft, Request::Hello, t.rpc).await {
                    Ok(Response::Hello(h)) => hellos.push((h, seed)),
                    Ok(_) => {}
                    Err(e) => tracing::debug!(%seed, error = %e, "seed not reachable yet"),
                }
            }
            if let Some((_, leader)) = hellos.iter().find_map(|(h, _)| h.leader.clone()) {
                let req = Request::Join {
                    id: self.inner.id,
                    member: self.me(),
                    timeout_ms: t.propose.as_millis() as u64,
                };
                match self.call(&leader.addr, Lane::Control, req, t.propose).await {
                    Ok(Response::Control(Ok(_))) => {
                        tracing::info!(leader = %leader, "joined the cluster");
                        return;
                    }
                    other => tracing::debug!(?other, "join not accepted yet"),
                }
            } else if hellos.len() == seeds.len() && hellos.iter().all(|(h, _)| !h.initialized) {
                let lowest = hellos.iter().all(|(h, _)| self.inner.id < h.id);
                if lowest {
                    let mut members = BTreeMap::from([(self.inner.id, self.me())]);
                    for (h, seed) in &hellos {
                        members.insert(
                            h.id,
                            Member {
                                name: h.name.clone(),
                                addr: (*seed).clone(),
                            },
                        );
                    }
                    match self.raft().initialize(members).await {
                        Ok(()) => {
                            tracing::info!("initialised the cluster with the seeds");
                            return;
                        }
                        Err(e) => tracing::debug!(error = %e, "initialise refused"),
                    }
                }
            }
            tokio::time::sleep(t.retry).await;
        }
    }

    async fn accept_loop(self, listener: TcpListener, secret: Vec<u8>) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let me = self.clone();
                        let secret = secret.clone();
                        conns.spawn(async move { me.serve(stream, peer.to_string(), secret).await });
                    }
                    Err(e) => tracing::warn!(error = %e, "cluster accept failed"),
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        conns.shutdown().await;
    }

    /// Serves one peer connection: the handshake, then request, response, until it closes.
    /// With TLS on, the TLS handshake comes first and the secret's inside the session; both are
    /// bounded by `Timeouts::connect`.
    async fn serve(self, stream: TcpStream, peer: String, secret: Vec<u8>) {
        let hs = tokio::time::timeout(self.inner.timeouts.connect, async {
            let mut s = Stream::accept(stream, self.inner.config.tls.as_ref()).await?;
            server_handshake(&mut s, &secret, &peer).await?;
            Ok::<_, ClusterError>(s)
        });
        let mut stream = match hs.await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(%peer, error = %e, "cluster peer refused");
                return;
            }
            Err(_) => {
                tracing::warn!(%peer, "cluster handshake timed out");
                return;
            }
        };
        loop {
            let req: Request = match read_frame(&mut stream).await {
                Ok(r) => r,
                Err(_) => return,
            };
            let resp = self.handle(req).await;
            if write_frame(&mut stream, &resp).await.is_err() {
                return;
            }
        }
    }

    async fn handle(&self, req: Request) -> Response {
        match req {
            Request::AppendEntries(_) | Request::Vote(_) | Request::InstallSnapshot(_) => {
                handle_raft(&self.raft(), req).await
            }
            Request::Group(group, rpc) => self.handle_group(&group, *rpc).await,
            Request::Hello => Response::Hello(self.hello()),
            Request::App(payload) => self.handle_app(payload).await,
            control => Response::Control(self.handle_control(control).await),
        }
    }
}

/// Serves one Raft RPC with `raft` (the metadata group's or a per-queue group's instance).
pub(crate) async fn handle_raft(raft: &Raft, req: Request) -> Response {
    match req {
        Request::AppendEntries(r) => Response::AppendEntries(raft.append_entries(r).await),
        Request::Vote(r) => Response::Vote(raft.vote(r).await),
        Request::InstallSnapshot(r) => Response::InstallSnapshot(raft.install_snapshot(r).await),
        _ => Response::App(Err("not a Raft RPC".into())),
    }
}

/// Opens the node's log and state machine and starts its Raft instance; also returns (a handle
/// on) the log store.
async fn open_raft(
    config: &ClusterConfig,
    applier: &Arc<dyn Apply>,
    pool: &Arc<Pool>,
    applied: &Arc<AtomicU64>,
    commands: &Arc<AtomicU64>,
) -> Result<(Raft, LogStore)> {
    let network = Network {
        pool: pool.clone(),
        rpc_timeout: config.timeouts.rpc,
        group: None,
        answered: Default::default(),
    };
    let counters = (applied.clone(), commands.clone());
    // Forwarded proposals are retried under the same id: remember them.
    open_raft_in(
        config,
        config.data_dir.clone(),
        applier.clone(),
        (network, crate::state_machine::REMEMBERED),
        counters,
    )
    .await
}

/// Starts a Raft instance of this node (the metadata group's or a per-queue group's) with its
/// log and state machine in `dir`, talking through `network`; its state machine remembers the
/// last `remember` command ids ([`StateMachine::remember`]).
pub(crate) async fn open_raft_in(
    config: &ClusterConfig,
    dir: PathBuf,
    applier: Arc<dyn Apply>,
    (network, remember): (Network, usize),
    (applied, commands): (Arc<AtomicU64>, Arc<AtomicU64>),
) -> Result<(Raft, LogStore)> {
    let t = &config.timeouts;
    let raft_config = Config {
        cluster_name: "warren".into(),
        heartbeat_interval: t.heartbeat.as_millis() as u64,
        election_timeout_min: t.election_min.as_millis() as u64,
        election_timeout_max: t.election_max.as_millis() as u64,
        install_snapshot_timeout: t.rpc.as_millis() as u64,
        // The state machine asks for snapshots itself (by entries and size: see
        // `state_machine`'s module doc).
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: config.logs_to_keep,
        purge_batch_size: 1,
        ..Default::default()
    }
    .validate()
    .map_err(|e| ClusterError::Invalid(format!("cluster timing: {e}")))?;
    let (ask, mut asked) = tokio::sync::mpsc::unbounded_channel();
    let threshold = config.snapshot_threshold;
    let (log, sm) = tokio::task::spawn_blocking(move || {
        let log = LogStore::open(&dir)?;
        let mut sm = StateMachine::open(&dir, applier.clone(), applied, commands)?;
        applier.attach(crate::state_machine::Durable::new(log.clone(), dir.clone()));
        sm.snapshot_when(threshold, ask);
        sm.remember(remember);
        Ok::<_, ClusterError>((log, sm))
    })
    .await
    .map_err(|e| ClusterError::Raft(e.to_string()))??;
    let raft = Raft::new(config.node_id, Arc::new(raft_config), network, log.clone(), sm)
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
    // Ends when the state machine (so the Raft core) is gone.
    let r = raft.clone();
    tokio::spawn(async move {
        while asked.recv().await.is_some() {
            if r.trigger().snapshot().await.is_err() {
                break;
            }
        }
    });
    Ok((raft, log))
}
