//! Node-to-node transport: length-prefixed postcard frames over TCP (or TLS, [`ClusterTls`]),
//! the cluster-secret handshake, the pool of reused outgoing connections, and openraft's
//! `RaftNetwork` on top.
//!
//! # TLS
//!
//! With a [`ClusterTls`] every connection the transport opens or accepts — Raft RPCs of every
//! group, control calls, application (forwarding, listing) calls — is a TLS session (rustls,
//! the node's certificate on both sides, the peer's verified against the cluster CA), and the
//! cluster-secret handshake below runs inside it (defence in depth: a stolen certificate alone
//! does not make a node, nor does the secret alone). A plaintext peer never gets a challenge.
//! Connections are a [`Stream`], plain or TLS, read and written in place: TLS adds rustls'
//! record buffers per connection, nothing per frame.
//!
//! # Frames
//!
//! Every message is `len: u32 BE | postcard(message)`, `len` at most [`MAX_FRAME`] (checked
//! before allocating). postcard rather than JSON: Raft entries and snapshots carry opaque byte
//! payloads, which JSON would inflate about fourfold; postcard is compact (varint integers,
//! raw bytes), maintained, and serde-based, and openraft's types use no self-describing serde
//! features, so they round-trip through it.
//!
//! # Handshake (mutual, the secret never on the wire)
//!
//! ```text
//! server → client  Challenge { version, nonce_s }                 (32 random bytes)
//! client → server  Proof { nonce_c, HMAC-SHA256(secret, "warren-cluster client" ‖ nonce_s ‖ nonce_c) }
//! server → client  Accept { HMAC-SHA256(secret, "warren-cluster server" ‖ nonce_c ‖ nonce_s) }
//!                  or Refused, and the server closes
//! ```
//!
//! Both sides check the other's MAC in constant time; a peer without the secret learns nothing
//! it could replay (fresh nonces on both sides).
//!
//! # Connections
//!
//! Connections are opened on first use and reused; a failed or timed-out call drops its
//! connection, and the next call reconnects. Raft RPCs use one connection per peer; control
//! calls (forwarded proposals, joins, which wait for a commit) use up to [`CONTROL_CONNS`]
//! others, so a slow proposal never delays a heartbeat and a few proposals from one node are
//! in flight at once. Every call has a timeout. Calls on one connection are serialised
//! (request, then its response).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use rustls_pki_types::ServerName;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::error::{ClusterError, Result};
use crate::types::{Member, NodeId, TypeConfig};

/// Control connections per peer: how many forwarded proposals one node has in flight to
/// another at once.
pub const CONTROL_CONNS: usize = 4;

/// Largest frame accepted (openraft sends snapshots in chunks well below this).
pub const MAX_FRAME: u32 = 64 << 20;
/// Largest handshake frame: an unauthenticated peer gets no big buffer.
const MAX_HANDSHAKE: u32 = 256;
const PROTOCOL_VERSION: u32 = 1;

type HmacSha256 = Hmac<Sha256>;

/// Requests between nodes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Who are you, and what do you know?
    Hello,
    /// Commit this command (sent to the leader; it does not forward again).
    Propose {
        /// The proposal's id, the same on every retry (applied once).
        id: u128,
        #[serde(with = "serde_bytes")]
        cmd: Vec<u8>,
        timeout_ms: u64,
    },
    /// Add this node as a voter (sent to the leader).
    Join {
        id: NodeId,
        member: Member,
        timeout_ms: u64,
    },
    /// Remove the node of this name (sent to the leader).
    Forget {
        name: String,
        timeout_ms: u64,
    },
    /// An application request ([`crate::forward`]).
    App(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A Raft RPC (`AppendEntries`, `Vote` or `InstallSnapshot`) of another Raft group than
    /// the metadata one ([`crate::groups`]), named by its group id; answered like the bare RPC.
    Group(String, Box<Request>),
}

/// A peer's view of itself, answered to [`Request::Hello`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub id: NodeId,
    pub name: String,
    /// The node is part of a cluster (has a membership).
    pub initialized: bool,
    pub leader: Option<(NodeId, Member)>,
    pub term: u64,
    pub last_applied: u64,
}

/// Why a control call failed on the remote side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum RemoteFailure {
    /// The remote is not the leader (any more); retry against the new one.
    NotLeader,
    NoQuorum,
    Invalid(String),
    Other(String),
}

impl From<RemoteFailure> for ClusterError {
    fn from(f: RemoteFailure) -> Self {
        match f {
            RemoteFailure::NotLeader => ClusterError::Network("remote is not the leader".into()),
            RemoteFailure::NoQuorum => ClusterError::NoQuorum,
            RemoteFailure::Invalid(s) => ClusterError::Invalid(s),
            RemoteFailure::Other(s) => ClusterError::Raft(s),
        }
    }
}

/// Responses, one per request kind.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Hello(Hello),
    /// A control request's outcome: the log index it committed at (0 if it changed nothing)
    /// and the applier's answer.
    Control(Result<(u64, Vec<u8>), RemoteFailure>),
    /// An application request's answer ([`crate::forward`]).
    App(std::result::Result<serde_bytes::ByteBuf, String>),
}

#[derive(Debug, Serialize, Deserialize)]
enum Handshake {
    Challenge { version: u32, nonce: [u8; 32] },
    Proof { nonce: [u8; 32], mac: Vec<u8> },
    Accept { mac: Vec<u8> },
    Refused,
}

/// Inter-node TLS ([module doc](self)): the rustls configurations of both ends of every
/// cluster connection.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    /// The accepting side: the node's certificate, and the verifier of peers' client
    /// certificates (mutual TLS).
    pub server: Arc<rustls::ServerConfig>,
    /// The dialling side: the CA peers' certificates must chain to, and the node's certificate
    /// as its client certificate.
    pub client: Arc<rustls::ClientConfig>,
    /// The name every peer's certificate is verified against; `None`: the host of the address
    /// dialled (an IP address must then be among the certificate's IP SANs, a host name among
    /// its DNS SANs).
    pub server_name: Option<ServerName<'static>>,
}

impl ClusterTls {
    /// The name the certificate of the peer at `addr` (`HOST:PORT`) must carry.
    fn name_for(&self, addr: &str) -> Result<ServerName<'static>> {
        if let Some(n) = &self.server_name {
            return Ok(n.clone());
        }
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_string())
            .map_err(|e| ClusterError::Invalid(format!("no TLS server name in {addr}: {e}")))
    }
}

/// One cluster connection: plain TCP, or a TLS session (either side) over it.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Stream {
    /// Dials `to` (the address of `addr`, or a proxy in front of it): TCP, then TLS if `tls`.
    async fn connect(to: &str, addr: &str, tls: Option<&ClusterTls>) -> Result<Stream> {
        let s = TcpStream::connect(to).await?;
        s.set_nodelay(true)?;
        let Some(tls) = tls else {
            return Ok(Stream::Plain(s));
        };
        let name = tls.name_for(addr)?;
        let s = tokio_rustls::TlsConnector::from(tls.client.clone())
            .connect(name, s)
            .await
            .map_err(|e| ClusterError::Network(format!("TLS with {addr}: {e}")))?;
        Ok(Stream::Tls(Box::new(s.into())))
    }

    /// Accepts a peer's connection: as is, or its TLS handshake if `tls`.
    pub(crate) async fn accept(s: TcpStream, tls: Option<&ClusterTls>) -> Result<Stream> {
        let _ = s.set_nodelay(true);
        let Some(tls) = tls else {
            return Ok(Stream::Plain(s));
        };
        let s = tokio_rustls::TlsAcceptor::from(tls.server.clone())
            .accept(s)
            .await
            .map_err(|e| ClusterError::Network(format!("TLS handshake: {e}")))?;
        Ok(Stream::Tls(Box::new(s.into())))
    }
}

/// Polls `$call` on the stream under a [`Stream`], whichever kind it is (pinned in place).
macro_rules! on_stream {
    ($self:ident, $s:ident => $call:expr) => {
        match $self.get_mut() {
            Stream::Plain(s) => {
                let $s = std::pin::Pin::new(s);
                $call
            }
            Stream::Tls(s) => {
                let $s = std::pin::Pin::new(s.as_mut());
                $call
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        on_stream!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        on_stream!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        on_stream!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        on_stream!(self, s => s.poll_shutdown(cx))
    }
}

/// Writes one frame.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, msg: &T) -> Result<()> {
    let payload = postcard::to_stdvec(msg)?;
    if payload.len() > MAX_FRAME as usize {
        return Err(ClusterError::Codec(format!(
            "frame of {} bytes too large",
            payload.len()
        )));
    }
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(&payload);
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame; the length is checked before the buffer is allocated.
pub(crate) async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(r: &mut R) -> Result<T> {
    read_frame_max(r, MAX_FRAME).await
}

/// Reads one frame of at most `max` bytes.
async fn read_frame_max<R: AsyncRead + Unpin, T: DeserializeOwned>(r: &mut R, max: u32) -> Result<T> {
    let len = r.read_u32().await?;
    if len > max {
        return Err(ClusterError::Codec(format!("frame of {len} bytes too large")));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf).await?;
    Ok(postcard::from_bytes(&buf)?)
}

fn mac(secret: &[u8], label: &[u8], a: &[u8], b: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    m.update(label);
    m.update(a);
    m.update(b);
    m
}

const CLIENT_LABEL: &[u8] = b"warren-cluster client";
const SERVER_LABEL: &[u8] = b"warren-cluster server";

/// The accepting side of the handshake. `Err(AuthRefused)` if the peer lacks the secret.
pub(crate) async fn server_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    secret: &[u8],
    peer: &str,
) -> Result<()> {
    let nonce_s: [u8; 32] = rand::random();
    write_frame(
        s,
        &Handshake::Challenge {
            version: PROTOCOL_VERSION,
            nonce: nonce_s,
        },
    )
    .await?;
    let Handshake::Proof {
        nonce: nonce_c,
        mac: proof,
    } = read_frame_max(s, MAX_HANDSHAKE).await?
    else {
        return Err(ClusterError::Codec("expected a handshake proof".into()));
    };
    if mac(secret, CLIENT_LABEL, &nonce_s, &nonce_c)
        .verify_slice(&proof)
        .is_err()
    {
        let _ = write_frame(s, &Handshake::Refused).await;
        return Err(ClusterError::AuthRefused {
            peer: peer.to_string(),
        });
    }
    let answer = mac(secret, SERVER_LABEL, &nonce_c, &nonce_s)
        .finalize()
        .into_bytes()
        .to_vec();
    write_frame(s, &Handshake::Accept { mac: answer }).await
}

/// The connecting side of the handshake. `Err(AuthRefused)` if either side lacks the secret.
pub(crate) async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    secret: &[u8],
    peer: &str,
) -> Result<()> {
    let Handshake::Challenge {
        version,
        nonce: nonce_s,
    } = read_frame_max(s, MAX_HANDSHAKE).await?
    else {
        return Err(ClusterError::Codec("expected a handshake challenge".into()));
    };
    if version != PROTOCOL_VERSION {
        return Err(ClusterError::Codec(format!(
            "peer speaks cluster protocol {version}"
        )));
    }
    let nonce_c: [u8; 32] = rand::random();
    let proof = mac(secret, CLIENT_LABEL, &nonce_s, &nonce_c)
        .finalize()
        .into_bytes()
        .to_vec();
    write_frame(
        s,
        &Handshake::Proof {
            nonce: nonce_c,
            mac: proof,
        },
    )
    .await?;
    match read_frame_max(s, MAX_HANDSHAKE).await? {
        Handshake::Accept { mac: answer }
            if mac(secret, SERVER_LABEL, &nonce_c, &nonce_s)
                .verify_slice(&answer)
                .is_ok() =>
        {
            Ok(())
        }
        _ => Err(ClusterError::AuthRefused {
            peer: peer.to_string(),
        }),
    }
}

/// Which connection to a peer a call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Lane {
    /// AppendEntries, Vote, InstallSnapshot, Hello: short calls.
    Raft,
    /// Forwarded proposals and membership changes: wait for commits.
    Control,
    /// Application calls ([`crate::forward`]).
    App,
    /// Raft RPCs of the per-queue groups ([`crate::groups`]): [`GROUP_CONNS`] connections per
    /// peer shared by every group, so a follower's slow append in one group never delays the
    /// metadata group's heartbeats.
    Group,
}

/// Connections per peer shared by all the per-queue Raft groups.
pub const GROUP_CONNS: usize = 2;

struct Conn {
    stream: Stream,
    /// A call was cancelled between its request and its response: the stream is out of step.
    busy: bool,
}

type Slot = Arc<tokio::sync::Mutex<Option<Conn>>>;

/// Outgoing connections per peer address: slot 0 for the Raft lane, slots 1 to
/// [`CONTROL_CONNS`] for control calls, the next [`crate::forward::APP_CONNS`] for application
/// calls, the next [`GROUP_CONNS`] for the per-queue Raft groups.
pub(crate) struct Pool {
    secret: Vec<u8>,
    connect_timeout: Duration,
    /// Inter-node TLS, if on.
    tls: Option<ClusterTls>,
    slots: parking_lot::Mutex<HashMap<(String, usize), Slot>>,
    /// Testing: connect to the value instead when dialling the key (a proxy in between).
    dial_via: HashMap<String, String>,
    /// Round-robin position among the control connections when all are busy.
    turn: std::sync::atomic::AtomicUsize,
}

impl Pool {
    pub(crate) fn new(secret: Vec<u8>, connect_timeout: Duration) -> Pool {
        Pool {
            secret,
            connect_timeout,
            tls: None,
            slots: Default::default(),
            dial_via: HashMap::new(),
            turn: Default::default(),
        }
    }

    /// Dials `via` whenever a call goes to `addr` (partition tests put a proxy there).
    pub(crate) fn with_dial_via(mut self, dial_via: HashMap<String, String>) -> Pool {
        self.dial_via = dial_via;
        self
    }

    /// Opens every connection as a TLS client of `tls` (`None`: plain TCP).
    pub(crate) fn with_tls(mut self, tls: Option<ClusterTls>) -> Pool {
        self.tls = tls;
        self
    }

    fn slot(&self, addr: &str, n: usize) -> Slot {
        self.slots
            .lock()
            .entry((addr.to_string(), n))
            .or_default()
            .clone()
    }

    /// The connection a call takes: the Raft lane's one, or for control calls an idle one of
    /// [`CONTROL_CONNS`] (preferring one already open), else the next in turn.
    fn pick(&self, addr: &str, lane: Lane) -> Slot {
        let range = match lane {
            Lane::Raft => return self.slot(addr, 0),
            Lane::Control => 1..=CONTROL_CONNS,
            Lane::App => CONTROL_CONNS + 1..=CONTROL_CONNS + crate::forward::APP_CONNS,
            Lane::Group => {
                let first = CONTROL_CONNS + crate::forward::APP_CONNS + 1;
                first..=first + GROUP_CONNS - 1
            }
        };
        let slots: Vec<Slot> = range.map(|n| self.slot(addr, n)).collect();
        let idle = |open: bool| {
            slots
                .iter()
                .find(|s| s.try_lock().is_ok_and(|g| g.is_some() == open))
                .cloned()
        };
        idle(true).or_else(|| idle(false)).unwrap_or_else(|| {
            let n = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            slots[n % slots.len()].clone()
        })
    }

    /// Drops every outgoing connection (at shutdown).
    pub(crate) fn close_all(&self) {
        self.slots.lock().clear();
    }

    async fn connect(&self, addr: &str) -> Result<Stream> {
        let fut = async {
            let to = self.dial_via.get(addr).map_or(addr, String::as_str);
            let mut s = Stream::connect(to, addr, self.tls.as_ref()).await?;
            client_handshake(&mut s, &self.secret, addr).await?;
            Ok::<_, ClusterError>(s)
        };
        tokio::time::timeout(self.connect_timeout, fut)
            .await
            .map_err(|_| ClusterError::Network(format!("connect to {addr} timed out")))?
    }

    /// One request/response on the pooled connection to `addr`, bounded by `timeout`.
    pub(crate) async fn call(
        &self,
        addr: &str,
        lane: Lane,
        req: &Request,
        timeout: Duration,
    ) -> Result<Response> {
        let slot = self.pick(addr, lane);
        let fut = async {
            let mut g = slot.lock().await;
            if g.as_ref().is_some_and(|c| c.busy) {
                *g = None;
            }
            if g.is_none() {
                *g = Some(Conn {
                    stream: self.connect(addr).await?,
                    busy: false,
                });
            }
            let conn = g.as_mut().expect("connected above");
            conn.busy = true;
            let r = async {
                write_frame(&mut conn.stream, req).await?;
                read_frame::<_, Response>(&mut conn.stream).await
            }
            .await;
            match r {
                Ok(resp) => {
                    conn.busy = false;
                    Ok(resp)
                }
                Err(e) => {
                    *g = None;
                    Err(e)
                }
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ClusterError::Network(format!(
                "call to {addr} timed out after {timeout:?}"
            ))),
        }
    }
}

/// openraft's network factory: clients to peers, over the shared pool.
#[derive(Clone)]
pub(crate) struct Network {
    pub(crate) pool: Arc<Pool>,
    pub(crate) rpc_timeout: Duration,
    /// `None` for the metadata group; a per-queue group's id, which its RPCs carry.
    pub(crate) group: Option<Arc<str>>,
    /// When each peer last answered an append-entries call of this group (heartbeats
    /// included): which members its leader hears from.
    pub(crate) answered: Answered,
}

/// Per peer, when it last answered an append-entries call.
pub(crate) type Answered = Arc<parking_lot::Mutex<HashMap<NodeId, std::time::Instant>>>;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        PeerClient {
            target,
            node: node.clone(),
            pool: self.pool.clone(),
            rpc_timeout: self.rpc_timeout,
            group: self.group.clone(),
            answered: self.answered.clone(),
        }
    }
}

/// openraft's client to one peer.
pub(crate) struct PeerClient {
    target: NodeId,
    node: Member,
    pool: Arc<Pool>,
    rpc_timeout: Duration,
    group: Option<Arc<str>>,
    answered: Answered,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, Member, RaftError<NodeId, E>>;

impl PeerClient {
    async fn rpc<E: std::error::Error>(
        &self,
        req: Request,
        option: &RPCOption,
    ) -> Result<Response, RpcErr<E>> {
        let timeout = option
            .hard_ttl()
            .min(self.rpc_timeout.max(Duration::from_millis(1)));
        let (lane, req) = match &self.group {
            None => (Lane::Raft, req),
            Some(g) => (Lane::Group, Request::Group(g.to_string(), Box::new(req))),
        };
        match self.pool.call(&self.node.addr, lane, &req, timeout).await {
            // The peer does not run this group (yet: a new queue's members start their groups
            // as each applies its declaration): unreachable for now, with the peer's reason,
            // rather than a garbled answer.
            Ok(Response::App(Err(why))) => Err(RPCError::Unreachable(Unreachable::new(
                &ClusterError::Network(why),
            ))),
            Ok(r) => Ok(r),
            Err(e) => Err(match e {
                ClusterError::Io(ref io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                    RPCError::Unreachable(Unreachable::new(&e))
                }
                _ => RPCError::Network(NetworkError::new(&e)),
            }),
        }
    }

    fn remote<E: std::error::Error>(&self, e: RaftError<NodeId, E>) -> RpcErr<E> {
        RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e))
    }

    fn unexpected<E: std::error::Error>(&self) -> RpcErr<E> {
        let e = ClusterError::Codec("unexpected response kind".into());
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        match self.rpc(Request::AppendEntries(rpc), &option).await? {
            Response::AppendEntries(r) => {
                self.answered
                    .lock()
                    .insert(self.target, std::time::Instant::now());
                r.map_err(|e| self.remote(e))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self.rpc(Request::InstallSnapshot(rpc), &option).await? {
            Response::InstallSnapshot(r) => r.map_err(|e| self.remote(e)),
            _ => Err(self.unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        match self.rpc(Request::Vote(rpc), &option).await? {
            Response::Vote(r) => r.map_err(|e| self.remote(e)),
            _ => Err(self.unexpected()),
        }
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(100)))
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    #[tokio::test]
    async fn handshake_with_the_same_secret_succeeds_and_with_another_is_refused_both_ways() {
        for (client_secret, server_secret, ok) in [
            (b"cookie".as_slice(), b"cookie".as_slice(), true),
            (b"guess", b"cookie", false),
        ] {
            let (mut c, mut s) = pair().await;
            let server = tokio::spawn(async move { server_handshake(&mut s, server_secret, "c").await });
            let client = client_handshake(&mut c, client_secret, "s").await;
            let server = server.await.unwrap();
            assert_eq!(client.is_ok(), ok, "{client:?}");
            assert_eq!(server.is_ok(), ok, "{server:?}");
            if !ok {
                assert!(matches!(client, Err(ClusterError::AuthRefused { .. })));
                assert!(matches!(server, Err(ClusterError::AuthRefused { .. })));
            }
        }
    }

    #[tokio::test]
    async fn a_server_without_the_secret_cannot_pass_as_one() {
        // The client checks the server's proof too: a server that answers Accept with a MAC
        // under another secret is refused.
        let (mut c, mut s) = pair().await;
        let server = tokio::spawn(async move { server_handshake(&mut s, b"other", "c").await });
        let client = client_handshake(&mut c, b"cookie", "s").await;
        assert!(matches!(client, Err(ClusterError::AuthRefused { .. })));
        assert!(server.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_before_allocation() {
        let (mut c, mut s) = pair().await;
        c.write_all(&(MAX_FRAME + 1).to_be_bytes()).await.unwrap();
        let r: Result<Request> = read_frame(&mut s).await;
        assert!(matches!(r, Err(ClusterError::Codec(_))), "{r:?}");
        // Before authentication the bound is a few hundred bytes.
        let (mut c, mut s) = pair().await;
        let server = tokio::spawn(async move { server_handshake(&mut s, b"cookie", "c").await });
        let _challenge: Handshake = read_frame(&mut c).await.unwrap();
        c.write_all(&1000u32.to_be_bytes()).await.unwrap();
        assert!(matches!(server.await.unwrap(), Err(ClusterError::Codec(_))));
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let (mut c, mut s) = pair().await;
        let req = Request::Propose {
            id: u128::MAX,
            cmd: vec![0, 1, 2, 255],
            timeout_ms: 7,
        };
        write_frame(&mut c, &req).await.unwrap();
        match read_frame(&mut s).await.unwrap() {
            Request::Propose { id, cmd, timeout_ms } => {
                assert_eq!((id, cmd, timeout_ms), (u128::MAX, vec![0, 1, 2, 255], 7))
            }
            other => panic!("{other:?}"),
        }
    }
}
