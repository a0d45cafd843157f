//! Cross-node message forwarding for classic queues: a message a channel on this node routes
//! to a queue whose home is another node is sent there over the cluster link
//! ([`warren_cluster::forward`]) and enqueued by the home node; a consumer of such a queue is
//! served through a proxy consumer on the home node ([`consume`]).
//!
//! # Publishing
//!
//! Routing happens on the publishing node (the topology is replicated); only the destinations
//! that are remote queues travel. Each destination node has one [`Link`]: a FIFO of outgoing
//! messages and one task that sends them in batches (all that waited while the previous batch
//! was in flight, up to [`MAX_BATCH`] messages or [`MAX_BATCH_BYTES`]), one request at a time,
//! so a publisher's messages arrive in the order it published them. The home node enqueues a
//! batch, writes and fsyncs (one group commit) what persistent messages its durable queues
//! took, and answers with one verdict per message. The publishing channel's confirm waits for
//! every destination node's verdict (and its own group commit): `basic.ack` when all accepted,
//! `basic.nack` when one refused it (`x-overflow: reject-publish`, a store failure) or its node
//! could not be reached within the cluster operation timeout. Without confirms a copy for an
//! unreachable node is dropped (counted in `forward_dropped`), as RabbitMQ drops a copy for a
//! classic queue whose node is down.
//!
//! # Protocol
//!
//! [`Request`] and [`Response`] are postcard-encoded; a message travels as the store's record
//! ([`crate::persist::encode_message`]), which the home node writes to its log unchanged.
//! Protocol logic ([`encode_batch`], [`Handler::publish`]) is kept apart from the IO (the link
//! task, [`warren_cluster::Cluster::app_call`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use warren_cluster::{AppFuture, AppHandler, Cluster};
use warren_codec::ShortStr;
use warren_core::MessageRef;
use warren_core::queue::Published;
use warren_core::topology::ConnId;

use crate::mailbox::{ConnEvent, ConnShared};
use crate::queue::{Queue, Stored};
use crate::util::now_ms;

mod consume;
mod follow;

use consume::Op;
pub use consume::{ConsumeRequest, QueueRef, RemoteQueue, Verdict, chan_id, unreachable};

/// What forwarding needs of the broker (implemented by [`crate::broker::Broker`]; a trait so
/// that this module does not name the broker, which names it).
pub trait Host: Send + Sync + 'static {
    /// A vhost by name.
    fn vhost(&self, name: &str) -> Option<Arc<crate::vhost::VHost>>;
    /// The cluster layer.
    fn cluster(&self) -> Option<&Cluster>;
    /// How long a forwarded batch may take (the cluster operation timeout).
    fn forward_timeout(&self) -> Duration;
    /// The message store's group commit, on a node with persistence.
    fn syncer(&self) -> Option<&warren_store::SyncHandle>;
    /// The broker's counters.
    fn metrics(&self) -> &crate::stats::Metrics;
    /// A fresh broker-wide id (connections, consumers).
    fn next_id(&self) -> u64;
    /// The forwarding layer.
    fn forwarder(&self) -> Option<&Forwarder>;
    /// This node's replicas of quorum queues.
    fn quorum(&self) -> &crate::quorum::Registry;
    /// Deletes an auto-delete queue whose last consumer left
    /// ([`crate::broker::Broker::auto_delete_queue`]).
    fn auto_delete(self: Arc<Self>, vhost: &str, queue: &str);
}

/// Most messages in one forwarded batch.
pub const MAX_BATCH: usize = 512;
/// Most message bytes in one forwarded batch (a batch holds at least one message).
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// Most bytes of messages waiting on one [`Link`] (queued or in flight) before the
/// publishers feeding it are parked (credit flow: their connections are not read, and show
/// `flow`, until the link drains under it), so a link slower than its publishers does not
/// grow memory.
pub const LINK_MAX_BYTES: usize = 8 << 20;

/// Bytes counted per forwarded message besides its body (names, properties, bookkeeping).
const ITEM_OVERHEAD: usize = 256;

/// One link's byte count and the connections parked on it.
#[derive(Debug, Default)]
pub struct LinkCredit {
    bytes: std::sync::atomic::AtomicUsize,
    waiters: parking_lot::Mutex<Vec<Weak<ConnShared>>>,
}

impl LinkCredit {
    /// Bytes of messages waiting on the link or in flight.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Whether a publisher of `conn` must wait for the link to drain; if so, `conn` is woken
    /// (its `flow_resume`) when it has.
    pub fn park(&self, conn: &Arc<ConnShared>) -> bool {
        if self.bytes() < LINK_MAX_BYTES {
            return false;
        }
        let mut w = self.waiters.lock();
        if self.bytes() < LINK_MAX_BYTES {
            return false;
        }
        let me = Arc::downgrade(conn);
        if !w.iter().any(|x| x.ptr_eq(&me)) {
            w.push(me);
        }
        true
    }

    /// `n` bytes left the link: parked publishers go on once it is under the bound.
    fn drained(&self, n: usize) {
        let before = self.bytes.fetch_sub(n, Ordering::AcqRel);
        if before.saturating_sub(n) < LINK_MAX_BYTES {
            let waiters = std::mem::take(&mut *self.waiters.lock());
            for c in waiters.iter().filter_map(Weak::upgrade) {
                c.flow_resume();
            }
        }
    }
}

/// A request from one node's forwarding layer to another's.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Enqueue these messages into these queues of this node.
    Publish(Vec<Item>),
    /// Remote consumers' control traffic and deliveries ([`consume`]), in order.
    Ops(Vec<Op>),
    /// This node's own objects as its management API lists them ([`Listing`]).
    Listing(Listing),
    /// A management API request about an object of this node ([`ManagementCall`]).
    Management(ManagementCall),
    /// A change to this node's member of a quorum queue's group, asked by the group's leader
    /// (`rabbitmq-queues add_member` / `delete_member`), or the leader this member knows.
    QuorumMember {
        /// The queue's vhost.
        vhost: String,
        /// The queue.
        queue: String,
        /// What to do.
        action: MemberAction,
    },
}

/// What a [`Request::QuorumMember`] asks of a node about a quorum queue's group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MemberAction {
    /// Start an empty member (with its replica and leader watcher) that the leader adds next
    /// ([`crate::quorum::join`]).
    Join,
    /// Stop the member and delete its files: the group no longer has it; forward to `leader`
    /// ([`crate::quorum::leave`]).
    Leave {
        /// The group's leader (or a remaining member) to forward the queue's work to.
        leader: Option<String>,
    },
    /// Answer the group's leader as this member sees it.
    Leader,
    /// Add cluster member `node` to the group (`add_member`; with `only_even`, only if the
    /// group has an even number of members: `grow … even`), run by the group's leader
    /// ([`crate::quorum_membership`]); `hops`: how often it was passed on already.
    Add {
        /// The node to add.
        node: String,
        /// Only if the group's member count is even.
        only_even: bool,
        /// Times passed on towards the leader.
        hops: u8,
    },
    /// Remove `node` from the group (`delete_member`), run by the group's leader.
    Remove {
        /// The node to remove.
        node: String,
        /// Times passed on towards the leader.
        hops: u8,
    },
    /// Answer the group's members, if this node leads it ([`MemberOutcome::Members`]): asked
    /// by a member that sees no leader for a while, to learn whether it was removed while it
    /// was away. (Last, as every new variant: peers of an earlier build decode the others by
    /// position.)
    Members,
}

/// What serves a peer's [`Request::QuorumMember`] here (the broker installs
/// `crate::quorum_membership`'s, which forwarding does not depend on).
pub type MemberHandler = Box<
    dyn Fn(
            Arc<dyn Host>,
            String,
            String,
            MemberAction,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = MemberOutcome> + Send>>
        + Send
        + Sync,
>;

/// The outcome of a [`MemberAction`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberOutcome {
    /// Done (with the leader this member knows, for [`MemberAction::Leader`]).
    Done(Option<String>),
    /// Nothing to do (already a member, not a member, an odd member count), and why.
    Unchanged(String),
    /// Refused: the request is wrong (unknown node, the last member …).
    Refused(String),
    /// Not done now: no leader, no majority in time, a node that did not answer.
    Unavailable(String),
    /// The group's members, as its leader knows them ([`MemberAction::Members`]). (Last:
    /// peers of an earlier build decode the others by position.)
    Members(Vec<String>),
}

/// A management API request that another member received for an object this node holds (a
/// queue it is home to, one of its connections) and hands over, so that an operator's tools
/// work through any node as RabbitMQ's do: run here by the same router, as `user` (the asking
/// member authenticated the caller; the link is authenticated by the cluster secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManagementCall {
    /// HTTP method.
    pub method: String,
    /// Path and query, as the client sent them.
    pub path: String,
    /// The authenticated caller.
    pub user: String,
    /// Headers the handlers read (e.g. `x-reason`), as (name, value).
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Vec<u8>,
}

/// What runs a [`ManagementCall`] here: (HTTP status, JSON body). Installed by the management
/// API.
pub type Manager = Box<
    dyn Fn(ManagementCall) -> std::pin::Pin<Box<dyn std::future::Future<Output = (u16, Vec<u8>)> + Send>>
        + Send
        + Sync,
>;

/// What a [`Request::Listing`] asks a node for: its own objects (the queues it is home to,
/// its connections …), rendered by its management API as RabbitMQ's JSON, so that any node's
/// listings are cluster-wide.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Listing {
    /// Its queues (of one vhost, or one queue, when given).
    Queues {
        /// Only this vhost's.
        vhost: Option<String>,
        /// Only this queue.
        name: Option<String>,
    },
    /// Its `/api/nodes` record.
    Node,
    /// Its AMQP connections.
    Connections,
    /// Their channels.
    Channels,
    /// The consumers of its queues.
    Consumers,
    /// Its totals for `/api/overview`.
    Totals,
}

/// Renders a [`Listing`] of this node's objects as JSON (installed by the management API).
pub type Lister = Box<dyn Fn(&Listing) -> String + Send + Sync>;

/// One forwarded message.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Item {
    /// Its vhost.
    pub vhost: String,
    /// The home node's queues it was routed to.
    pub queues: Vec<String>,
    /// The message as the store encodes it.
    pub msg: Vec<u8>,
    /// Its per-message TTL (ms), from `expiration`.
    pub ttl: Option<u64>,
}

/// A node's answer to a [`Request`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    /// One verdict per message of a [`Request::Publish`]: every queue took it (and made it
    /// durable where it had to).
    Published(Vec<bool>),
    /// One verdict per op of a [`Request::Ops`].
    Ops(Vec<Verdict>),
    /// A [`Request::Listing`]'s JSON.
    Listing(String),
    /// A [`Request::Management`]'s status and body.
    Management(u16, Vec<u8>),
    /// A [`Request::QuorumMember`]'s outcome.
    Member(MemberOutcome),
    /// The request could not be decoded or served.
    Failed(String),
}

/// Where a forwarded message's verdict goes: a channel in confirm mode.
#[derive(Debug)]
pub struct Reply {
    /// The publishing connection.
    pub conn: Arc<ConnShared>,
    /// The channel number.
    pub channel: u16,
    /// The publish sequence number the verdict is for.
    pub seq: u64,
}

/// A message waiting on a [`Link`].
#[derive(Debug)]
struct Outgoing {
    vhost: String,
    queues: Vec<ShortStr>,
    msg: MessageRef,
    ttl: Option<u64>,
    reply: Option<Reply>,
    /// Called with the verdict (a dead letter's at-least-once retry).
    done: Option<Done>,
}

/// A callback with a forwarded message's verdict.
struct Done(Box<dyn FnOnce(bool) + Send + Sync>);

impl std::fmt::Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Done")
    }
}

/// How long a dead letter whose home did not take it waits before it is sent again.
const DEAD_LETTER_RETRY: Duration = Duration::from_millis(500);

/// Where an op's verdict goes.
#[derive(Debug)]
pub(crate) enum OpReply {
    None,
    Once(tokio::sync::oneshot::Sender<Verdict>),
    /// A delivery to a remote channel: not taken, it goes back to its queue. It holds one of
    /// the channel's stand-in connection's pending-delivery slots until its verdict comes, so
    /// a queue delivers to another node no faster than the op link carries.
    Delivery {
        origin: String,
        chan: u64,
        queue: Arc<Queue>,
        seq: u64,
        conn: Arc<crate::mailbox::ConnShared>,
    },
}

/// One destination node's link: its FIFO and its byte count.
type LinkEntry = (mpsc::UnboundedSender<Outgoing>, Arc<LinkCredit>);

/// The outgoing side of forwarding: one [`Link`] per destination node for publishes, one op
/// link for the rest, and the remote consumers' registries.
pub struct Forwarder {
    links: parking_lot::Mutex<HashMap<String, LinkEntry>>,
    ops: parking_lot::Mutex<HashMap<String, mpsc::UnboundedSender<(Op, OpReply)>>>,
    pub(crate) remote: parking_lot::Mutex<consume::Registry>,
    pub(crate) watched: parking_lot::Mutex<HashSet<String>>,
    lister: std::sync::OnceLock<Lister>,
    manager: std::sync::OnceLock<Manager>,
    member: std::sync::OnceLock<MemberHandler>,
    /// Lookups of quorum queues' leaders from outside their groups (`follow`'s `Lookups`:
    /// when each queue's last one started, and whether it runs).
    lookups: parking_lot::Mutex<HashMap<(String, String), (std::time::Instant, bool)>>,
    broker: Weak<dyn Host>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Forwarder")
    }
}

impl Forwarder {
    pub(crate) fn new(broker: Weak<dyn Host>) -> Forwarder {
        Forwarder {
            links: Default::default(),
            ops: Default::default(),
            remote: Default::default(),
            watched: Default::default(),
            lister: Default::default(),
            manager: Default::default(),
            member: Default::default(),
            lookups: Default::default(),
            broker,
        }
    }

    /// The broker it forwards for.
    pub fn host(&self) -> Weak<dyn Host> {
        self.broker.clone()
    }

    /// Installs what answers peers' [`Request::Listing`]s (once).
    pub fn set_lister(&self, l: Lister) {
        let _ = self.lister.set(l);
    }

    /// Installs what runs peers' [`Request::Management`] calls (once).
    pub fn set_manager(&self, m: Manager) {
        let _ = self.manager.set(m);
    }

    /// Installs what serves peers' [`Request::QuorumMember`]s (once).
    pub fn set_member_handler(&self, h: MemberHandler) {
        let _ = self.member.set(h);
    }

    /// Asks member `node` for a listing of its own objects, bounded by `timeout`: its JSON,
    /// or why there is none (unreachable, no management API there …).
    pub async fn listing(&self, node: &str, what: Listing, timeout: Duration) -> Result<String, String> {
        match self.app_request(node, Request::Listing(what), timeout).await? {
            Response::Listing(json) => Ok(json),
            Response::Failed(why) => Err(why),
            _ => Err("unexpected answer".into()),
        }
    }

    /// Has member `node` run a management API request about one of its objects, bounded by
    /// `timeout`: its status and body, or why there is none.
    pub async fn management(
        &self,
        node: &str,
        call: ManagementCall,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), String> {
        match self.app_request(node, Request::Management(call), timeout).await? {
            Response::Management(status, body) => Ok((status, body)),
            Response::Failed(why) => Err(why),
            _ => Err("unexpected answer".into()),
        }
    }

    /// Has member `node` do `action` about quorum queue `queue`'s group, bounded by `timeout`
    /// (`Unavailable` naming the node if it does not answer).
    pub async fn quorum_member(
        &self,
        node: &str,
        (vhost, queue): (&str, &str),
        action: MemberAction,
        timeout: Duration,
    ) -> MemberOutcome {
        let req = Request::QuorumMember {
            vhost: vhost.to_string(),
            queue: queue.to_string(),
            action,
        };
        match self.app_request(node, req, timeout).await {
            Ok(Response::Member(r)) => r,
            Ok(Response::Failed(why)) | Err(why) => {
                MemberOutcome::Unavailable(format!("node '{node}' did not answer: {why}"))
            }
            Ok(_) => MemberOutcome::Unavailable(format!("node '{node}' gave an unexpected answer")),
        }
    }

    /// The leader of quorum queue `queue`'s group, as the first of `nodes` to name one that
    /// `wanted` accepts says (each node asked with up to 500 ms to answer); with `again`
    /// (`(deadline, pause)`), asked round after round until the deadline, as a new leader
    /// needs an election timeout or two; without, one round.
    pub(crate) async fn ask_leader(
        &self,
        queue: (&str, &str),
        nodes: &[String],
        wanted: impl Fn(&str) -> bool,
        again: Option<(tokio::time::Instant, Duration)>,
    ) -> Option<String> {
        loop {
            for n in nodes {
                let asked = self
                    .quorum_member(n, queue, MemberAction::Leader, Duration::from_millis(500))
                    .await;
                if let MemberOutcome::Done(Some(l)) = asked
                    && wanted(&l)
                {
                    return Some(l);
                }
            }
            let (deadline, pause) = again?;
            if tokio::time::Instant::now() + pause >= deadline {
                return None;
            }
            // Nothing to await but the members' answers.
            tokio::time::sleep(pause).await;
        }
    }

    async fn app_request(&self, node: &str, req: Request, timeout: Duration) -> Result<Response, String> {
        let b = self.broker.upgrade().ok_or("shutting down")?;
        let c = b.cluster().ok_or("not clustered")?;
        let payload = postcard::to_stdvec(&req).expect("postcard encodes to a Vec");
        let answer = c
            .app_call(node, payload, timeout)
            .await
            .map_err(|e| e.to_string())?;
        postcard::from_bytes(&answer).map_err(|e| e.to_string())
    }

    /// Queues `op` for `node`'s op link; its verdict goes to `reply`.
    pub(crate) fn op(&self, node: &str, op: Op, reply: OpReply) {
        let mut links = self.ops.lock();
        let tx = links.entry(node.to_string()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(op_link(node.to_string(), self.broker.clone(), rx));
            tx
        });
        if let Err(mpsc::error::SendError((_, reply))) = tx.send((op, reply)) {
            drop(links);
            if let Some(conn) = self.op_verdict(reply, Verdict::Unreachable) {
                conn.wake();
            }
        }
    }

    /// Hands verdict `v` to `reply`; for a delivery, the stand-in connection whose slot it
    /// freed (to wake its queues once the whole batch of verdicts is in).
    fn op_verdict(&self, reply: OpReply, v: Verdict) -> Option<Arc<crate::mailbox::ConnShared>> {
        match reply {
            OpReply::None => None,
            OpReply::Once(tx) => {
                let _ = tx.send(v);
                None
            }
            OpReply::Delivery {
                origin,
                chan,
                queue,
                seq,
                conn,
            } => {
                conn.took_delivery();
                self.delivery_refused(&origin, chan, &queue, seq, &v);
                Some(conn)
            }
        }
    }

    /// The bytes waiting on (or in flight on) the link to `node`.
    pub fn link_bytes(&self, node: &str) -> usize {
        self.links.lock().get(node).map_or(0, |(_, c)| c.bytes())
    }

    /// Queues `msg` for the queues `queues` of node `node`; its verdict goes to `reply`. The
    /// link's credit when it is over [`LINK_MAX_BYTES`] now (the publisher should park on it).
    pub fn publish(
        &self,
        node: &str,
        vhost: &str,
        queues: Vec<ShortStr>,
        msg: MessageRef,
        ttl: Option<u64>,
        reply: Option<Reply>,
    ) -> Option<Arc<LinkCredit>> {
        let out = Outgoing {
            vhost: vhost.to_string(),
            queues,
            msg,
            ttl,
            reply,
            done: None,
        };
        self.send_out(node, out)
    }

    /// Forwards a dead letter to the queues `queues` of `node` at least once: sent again every
    /// [`DEAD_LETTER_RETRY`] until the node took it (or this node stops), then `confirmed`.
    pub fn dead_letter(
        &self,
        node: &str,
        vhost: &str,
        queues: Vec<ShortStr>,
        msg: MessageRef,
        confirmed: crate::vhost::Confirmed,
    ) {
        let broker = self.broker.clone();
        let (n, v, qs, m) = (node.to_string(), vhost.to_string(), queues.clone(), msg.clone());
        let done = Done(Box::new(move |ok| {
            if ok {
                return confirmed();
            }
            tokio::spawn(async move {
                tokio::time::sleep(DEAD_LETTER_RETRY).await;
                if let Some(f) = broker.upgrade().as_ref().and_then(|b| b.forwarder()) {
                    f.dead_letter(&n, &v, qs, m, confirmed);
                }
            });
        }));
        let out = Outgoing {
            vhost: vhost.to_string(),
            queues,
            msg,
            ttl: None,
            reply: None,
            done: Some(done),
        };
        self.send_out(node, out);
    }

    /// Queues `out` on `node`'s link: the link's credit when it is over the bound now.
    fn send_out(&self, node: &str, out: Outgoing) -> Option<Arc<LinkCredit>> {
        let size = out.msg.body.len() + ITEM_OVERHEAD;
        let mut links = self.links.lock();
        let (tx, credit) = links.entry(node.to_string()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let credit = Arc::new(LinkCredit::default());
            tokio::spawn(Link::run(
                node.to_string(),
                self.broker.clone(),
                rx,
                credit.clone(),
            ));
            (tx, credit)
        });
        credit.bytes.fetch_add(size, Ordering::AcqRel);
        if let Err(mpsc::error::SendError(out)) = tx.send(out) {
            // The link's task ended (the runtime is shutting down).
            credit.drained(size);
            verdict(out.reply, false);
            return None; // A dead letter's retry ends with the runtime.
        }
        (credit.bytes() >= LINK_MAX_BYTES).then(|| credit.clone())
    }
}

/// Sends a verdict to the publishing channel.
fn verdict(reply: Option<Reply>, ok: bool) {
    if let Some(r) = reply {
        send_verdict(r, ok);
    }
}

/// Sends a verdict to the publishing channel (`ConnEvent::Forwarded`).
pub fn send_verdict(r: Reply, ok: bool) {
    let _ = r.conn.tx.send(ConnEvent::Forwarded {
        channel: r.channel,
        seq: r.seq,
        ok,
    });
}

/// The task sending one destination node's messages, batch by batch.
struct Link;

impl Link {
    async fn run(
        node: String,
        broker: Weak<dyn Host>,
        mut rx: mpsc::UnboundedReceiver<Outgoing>,
        credit: Arc<LinkCredit>,
    ) {
        let mut batch: Vec<Outgoing> = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut bytes = first.msg.body.len();
            batch.push(first);
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(o) => {
                        bytes += o.msg.body.len();
                        batch.push(o);
                    }
                    Err(_) => break,
                }
            }
            let Some(b) = broker.upgrade() else { return };
            let verdicts = match b.cluster() {
                Some(c) => send(c, &node, &batch, b.forward_timeout()).await,
                None => Err("not clustered".to_string()),
            };
            let verdicts = verdicts.unwrap_or_else(|e| {
                tracing::warn!(%node, messages = batch.len(), "forwarding failed: {e}");
                vec![false; batch.len()]
            });
            credit.drained(batch.iter().map(|o| o.msg.body.len() + ITEM_OVERHEAD).sum());
            let mut failed: Vec<(&str, &str)> = Vec::new();
            for (o, ok) in batch.iter().zip(&verdicts) {
                for q in o.queues.iter().filter(|_| !ok) {
                    if !failed.contains(&(&o.vhost, q)) {
                        failed.push((&o.vhost, q));
                    }
                }
            }
            if let (false, Some(f)) = (failed.is_empty(), b.forwarder()) {
                for (vhost, q) in failed {
                    f.forward_failed(vhost, q, &node);
                }
            }
            for (o, ok) in batch
                .drain(..)
                .zip(verdicts.into_iter().chain(std::iter::repeat(false)))
            {
                if !ok && o.reply.is_none() && o.done.is_none() {
                    b.metrics().forward_dropped.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(d) = o.done {
                    (d.0)(ok);
                }
                verdict(o.reply, ok);
            }
        }
    }
}

/// The task sending one node's ops, batch by batch, in order.
async fn op_link(node: String, broker: Weak<dyn Host>, mut rx: mpsc::UnboundedReceiver<(Op, OpReply)>) {
    let mut batch: Vec<(Op, OpReply)> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let Some(b) = broker.upgrade() else { return };
        let (ops, replies): (Vec<Op>, Vec<OpReply>) = batch.drain(..).unzip();
        let n = ops.len();
        let req = Request::Ops(ops);
        let verdicts = match b.cluster() {
            Some(c) => {
                let payload = postcard::to_stdvec(&req).expect("postcard encodes to a Vec");
                match c.app_call(&node, payload, b.forward_timeout()).await {
                    Ok(answer) => match postcard::from_bytes(&answer) {
                        Ok(Response::Ops(v)) if v.len() == n => v,
                        _ => vec![Verdict::Unreachable; n],
                    },
                    Err(e) => {
                        tracing::debug!(%node, "op link: {e}");
                        vec![Verdict::Unreachable; n]
                    }
                }
            }
            None => vec![Verdict::Unreachable; n],
        };
        let Some(f) = b.forwarder() else { return };
        if let Request::Ops(ops) = &req {
            for (op, _) in ops
                .iter()
                .zip(&verdicts)
                .filter(|(_, v)| matches!(v, Verdict::Unreachable))
            {
                if let Some((vhost, q)) = op.queue() {
                    f.forward_failed(vhost, q, &node);
                }
            }
        }
        let mut freed: Vec<Arc<crate::mailbox::ConnShared>> = Vec::new();
        for (r, v) in replies.into_iter().zip(verdicts) {
            if let Some(conn) = f.op_verdict(r, v)
                && !freed.iter().any(|c| Arc::ptr_eq(c, &conn))
            {
                freed.push(conn);
            }
        }
        // Queues that stopped at a stand-in's pending limit deliver again.
        for conn in freed {
            conn.wake();
        }
    }
}

/// One batch to `node`: its verdicts, or why none came.
async fn send(c: &Cluster, node: &str, batch: &[Outgoing], timeout: Duration) -> Result<Vec<bool>, String> {
    let payload = encode_batch(batch, now_ms());
    let answer = c
        .app_call(node, payload, timeout)
        .await
        .map_err(|e| e.to_string())?;
    match postcard::from_bytes(&answer).map_err(|e| e.to_string())? {
        Response::Published(v) if v.len() == batch.len() => Ok(v),
        Response::Published(v) => Err(format!("{} verdicts for {} messages", v.len(), batch.len())),
        Response::Failed(why) => Err(why),
        Response::Ops(_) | Response::Listing(_) | Response::Management(..) | Response::Member(_) => {
            Err("unexpected answer".into())
        }
    }
}

/// A batch as its [`Request::Publish`].
fn encode_batch(batch: &[Outgoing], now: u64) -> Vec<u8> {
    let items = batch
        .iter()
        .map(|o| Item {
            vhost: o.vhost.clone(),
            queues: o.queues.iter().map(|q| q.to_string()).collect(),
            msg: crate::persist::encode_message(&o.msg, now).to_vec(),
            ttl: o.ttl,
        })
        .collect();
    postcard::to_stdvec(&Request::Publish(items)).expect("postcard encodes to a Vec")
}

/// What [`Handler::publish`] did: verdicts, queues to sync, quorum queues' verdicts to come,
/// queues whose last ingest credit it took.
type Enqueued = (
    Vec<bool>,
    Vec<Arc<Queue>>,
    Vec<(usize, tokio::sync::oneshot::Receiver<bool>)>,
    Vec<Arc<Queue>>,
);

/// Adds `q` to `queues` unless it is there already (a batch's few distinct queues).
fn add_once(queues: &mut Vec<Arc<Queue>>, q: &Arc<Queue>) {
    if !queues.iter().any(|x| Arc::ptr_eq(x, q)) {
        queues.push(q.clone());
    }
}

/// How long the answer to a forwarded batch waits for the queues it ran out of credit
/// ([`paced`]); well under the origin's forwarding timeout, which would nack the batch.
const CREDIT_WAIT: Duration = Duration::from_millis(500);

/// Credit flow across a link: while a queue a forwarded batch fed is out of ingest credit, the
/// answer waits (as a local publisher's connection stops reading its socket), so the origin's
/// link fills to its bound (or the publisher's unconfirmed window fills) and parks the
/// publisher there. Returns once every queue has half a window of credit again or judged its
/// consumers slow ([`Queue::link_park`]), or after `limit`.
async fn paced(queues: &[Arc<Queue>], limit: Duration) {
    if queues.is_empty() {
        return;
    }
    let end = tokio::time::Instant::now() + limit;
    // Stands in for the link's publisher in the queues' waiter lists.
    let (me, _rx) = ConnShared::new(ConnId(0), None);
    loop {
        let now = now_ms();
        let Some(at) = queues.iter().filter_map(|q| q.link_park(&me, now)).min() else {
            return;
        };
        let grace = tokio::time::Instant::now() + Duration::from_millis(at.saturating_sub(now).max(1));
        if tokio::time::Instant::now() >= end {
            return;
        }
        let _ = tokio::time::timeout_at(grace.min(end), me.flow_notify.notified()).await;
    }
}

/// The incoming side of forwarding: serves peers' [`Request`]s with this node's queues.
pub struct Handler {
    broker: Weak<dyn Host>,
}

impl Handler {
    pub(crate) fn new(broker: Weak<dyn Host>) -> Handler {
        Handler { broker }
    }

    /// Enqueues a forwarded batch: a verdict per message, the queues whose logs took
    /// persistent messages (to flush and sync before answering), and the verdicts of quorum
    /// queues' groups to wait for (by message).
    fn publish(broker: &dyn Host, items: Vec<Item>, now: u64) -> Enqueued {
        let mut dirty: Vec<Arc<Queue>> = Vec::new();
        let mut replicated = Vec::new();
        let mut out_of_credit: Vec<Arc<Queue>> = Vec::new();
        let verdicts = items
            .into_iter()
            .enumerate()
            .map(|(n, item)| {
                let Some(v) = broker.vhost(&item.vhost) else {
                    return false;
                };
                let payload = Bytes::from(item.msg);
                let Some((msg, _)) = crate::persist::decode_message(&payload) else {
                    return false;
                };
                let msg: MessageRef = Arc::new(msg);
                let mut ok = true;
                for name in &item.queues {
                    // A queue deleted meanwhile drops its copy, as a local publish would.
                    let Ok(q) = v.queue_for_use(name, ConnId(0)) else {
                        // Not served here (any more): a quorum queue's leader moved.
                        ok &= v.remote_home(name).is_none();
                        continue;
                    };
                    if q.is_replicated() {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        match q.replicator() {
                            Some(r) => r.publish(
                                msg.clone(),
                                item.ttl,
                                Some(Box::new(move |ok| {
                                    let _ = tx.send(ok);
                                })),
                            ),
                            None => ok = false,
                        }
                        if q.take_credit(now) {
                            add_once(&mut out_of_credit, &q);
                        }
                        replicated.push((n, rx));
                        continue;
                    }
                    let write = (msg.is_persistent() && q.is_durable()).then_some(&payload[..]);
                    let (p, stored, exhausted) = q.publish(msg.clone(), item.ttl, now, write);
                    if exhausted {
                        add_once(&mut out_of_credit, &q);
                    }
                    ok &= p != Published::Rejected && stored != Stored::Failed;
                    if stored == Stored::Written {
                        add_once(&mut dirty, &q);
                    }
                }
                ok
            })
            .collect();
        (verdicts, dirty, replicated, out_of_credit)
    }

    async fn serve(broker: Arc<dyn Host>, req: Request) -> Response {
        // Work for a quorum queue whose group just elected this node's member arrives from
        // members that follow the new leader already: it waits for this node to serve it.
        let mut queues: Vec<(&str, &str)> = match &req {
            Request::Publish(items) => items
                .iter()
                .flat_map(|i| i.queues.iter().map(|q| (i.vhost.as_str(), q.as_str())))
                .collect(),
            Request::Ops(ops) => ops.iter().filter_map(Op::queue).collect(),
            _ => Vec::new(),
        };
        queues.sort_unstable();
        queues.dedup();
        let deadline = tokio::time::Instant::now() + broker.forward_timeout();
        for (vhost, queue) in queues {
            until_served(&*broker, vhost, queue, deadline).await;
        }
        match req {
            Request::Publish(items) => {
                let (mut verdicts, dirty, replicated, out_of_credit) =
                    Self::publish(&*broker, items, now_ms());
                for (n, rx) in replicated {
                    verdicts[n] &= rx.await.unwrap_or(false);
                }
                if !dirty.is_empty() {
                    let mut ok = dirty.iter().fold(true, |ok, q| q.flush_log() && ok);
                    if let Some(syncer) = broker.syncer() {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        syncer.request(Box::new(move |r| {
                            let _ = tx.send(r.is_ok());
                        }));
                        ok &= rx.await.unwrap_or(false);
                    }
                    if !ok {
                        // Which message reached which log is not tracked: nack them all.
                        verdicts.iter_mut().for_each(|v| *v = false);
                    }
                }
                paced(&out_of_credit, CREDIT_WAIT).await;
                Response::Published(verdicts)
            }
            Request::Ops(ops) => match broker.forwarder() {
                Some(f) => Response::Ops(ops.into_iter().map(|op| f.serve_op(&broker, op)).collect()),
                None => Response::Failed("not clustered".into()),
            },
            Request::Listing(what) => match broker.forwarder().and_then(|f| f.lister.get()) {
                Some(l) => Response::Listing(l(&what)),
                None => Response::Failed("this node has no management API".into()),
            },
            Request::QuorumMember { vhost, queue, action } => {
                match broker.forwarder().and_then(|f| f.member.get()) {
                    Some(h) => Response::Member(h(broker.clone(), vhost, queue, action).await),
                    None => Response::Failed("no quorum queue membership handler on this node".into()),
                }
            }
            Request::Management(call) => match broker.forwarder().and_then(|f| f.manager.get()) {
                Some(m) => {
                    let (status, body) = m(call).await;
                    Response::Management(status, body)
                }
                None => Response::Failed("this node has no management API".into()),
            },
        }
    }
}

/// Waits (until `deadline`) while this node's member leads the group of quorum queue `queue`
/// but the node does not serve it yet: a new leader commits `ReleaseAll` before it takes the
/// queue over (`crate::quorum`), and the other members forward to it as soon as they see it
/// lead. Returns at once for any other queue.
async fn until_served(broker: &dyn Host, vhost: &str, queue: &str, deadline: tokio::time::Instant) {
    let (Some(c), Some(v)) = (broker.cluster(), broker.vhost(vhost)) else {
        return;
    };
    if !v.read_topology(|t| t.queue(queue).is_some_and(|m| m.args.quorum)) {
        return;
    }
    let group = crate::quorum::group_id(vhost, queue);
    crate::quorum::wait_until(deadline, || {
        let leads = c
            .group_status(&group)
            .is_some_and(|s| s.leader.as_deref() == Some(c.node_name()));
        !leads || v.queue(queue).is_some_and(|q| q.replicator().is_some())
    })
    .await;
}

impl AppHandler for Handler {
    fn handle(&self, payload: Vec<u8>) -> AppFuture {
        let broker = self.broker.upgrade();
        Box::pin(async move {
            let resp = match (broker, postcard::from_bytes::<Request>(&payload)) {
                (None, _) => Response::Failed("shutting down".into()),
                (_, Err(e)) => Response::Failed(format!("bad forwarding request: {e}")),
                (Some(b), Ok(req)) => Handler::serve(b, req).await,
            };
            postcard::to_stdvec(&resp).expect("postcard encodes to a Vec")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Peers of an earlier build decode membership requests and answers by variant position:
    /// new variants go last, existing ones keep their tags.
    #[test]
    fn membership_variants_keep_their_positions_on_the_wire() {
        let tag = |a: &MemberAction| postcard::to_stdvec(a).unwrap()[0];
        assert_eq!(tag(&MemberAction::Join), 0);
        assert_eq!(tag(&MemberAction::Leader), 2);
        let add = MemberAction::Add {
            node: "n".into(),
            only_even: false,
            hops: 0,
        };
        assert_eq!(tag(&add), 3);
        let remove = MemberAction::Remove {
            node: "n".into(),
            hops: 0,
        };
        assert_eq!(tag(&remove), 4);
        assert_eq!(tag(&MemberAction::Members), 5);
        let outcome = |o: &MemberOutcome| postcard::to_stdvec(o).unwrap()[0];
        assert_eq!(outcome(&MemberOutcome::Unavailable(String::new())), 3);
        assert_eq!(outcome(&MemberOutcome::Members(Vec::new())), 4);
    }

    #[test]
    fn a_batch_round_trips_with_its_messages() {
        let msg: MessageRef = Arc::new(warren_core::Message::new(
            "x",
            "k",
            Default::default(),
            Bytes::from_static(b"body"),
        ));
        let batch = vec![Outgoing {
            vhost: "/".into(),
            queues: vec![ShortStr::from("q1"), ShortStr::from("q2")],
            msg,
            ttl: Some(5),
            reply: None,
            done: None,
        }];
        let Request::Publish(items) = postcard::from_bytes(&encode_batch(&batch, 7)).unwrap() else {
            panic!("a publish batch")
        };
        assert_eq!(items.len(), 1);
        assert_eq!((items[0].vhost.as_str(), items[0].ttl), ("/", Some(5)));
        assert_eq!(items[0].queues, vec!["q1".to_string(), "q2".to_string()]);
        let (m, at) = crate::persist::decode_message(&Bytes::from(items[0].msg.clone())).unwrap();
        assert_eq!(
            (&*m.exchange, &*m.routing_key, &m.body[..], at),
            ("x", "k", &b"body"[..], Some(7))
        );
    }
}
