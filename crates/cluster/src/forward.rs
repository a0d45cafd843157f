//! Application traffic between nodes: an opaque request/response channel the server layers its
//! own protocol on (cross-node message forwarding: publishes to remote queues, remote consumers
//! and their deliveries, acks). It rides the same authenticated links as Raft
//! ([`crate::network`]), on connections of its own ([`APP_CONNS`] per peer, opened on first use
//! and kept), so a slow application call never delays a heartbeat or a proposal.
//!
//! The cluster layer does not look inside the payloads: the receiving node's [`AppHandler`]
//! answers each request with bytes, and a node without one answers with an error. Callers
//! batch: a request carries as many messages as waited while the previous one was in flight.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::error::{ClusterError, Result};
use crate::network::{Lane, Request, Response};

/// Connections per peer for application calls.
pub const APP_CONNS: usize = 2;

/// A boxed future answering one application request.
pub type AppFuture = Pin<Box<dyn Future<Output = Vec<u8>> + Send>>;

/// Answers application requests from peers (installed with [`Cluster::set_app_handler`]).
pub trait AppHandler: Send + Sync + 'static {
    /// Answers one request (its payload, as the peer's [`Cluster::app_call`] sent it).
    fn handle(&self, payload: Vec<u8>) -> AppFuture;
}

impl Cluster {
    /// One application request to the member named `node`, answered by its [`AppHandler`],
    /// bounded by `timeout` (connecting included). Fails if `node` is not a member, is
    /// unreachable, or has no handler.
    pub async fn app_call(&self, node: &str, payload: Vec<u8>, timeout: Duration) -> Result<Vec<u8>> {
        let addr = self
            .member_addr(node)
            .ok_or_else(|| ClusterError::Invalid(format!("no cluster member '{node}'")))?;
        match self
            .call(&addr, Lane::App, Request::App(payload), timeout)
            .await?
        {
            Response::App(r) => r
                .map(serde_bytes::ByteBuf::into_vec)
                .map_err(ClusterError::Network),
            _ => Err(ClusterError::Codec("unexpected response kind".into())),
        }
    }

    /// Answers a peer's application request with the installed handler.
    pub(crate) async fn handle_app(&self, payload: Vec<u8>) -> Response {
        let handler = self.app_handler();
        Response::App(match handler {
            Some(h) => Ok(serde_bytes::ByteBuf::from(h.handle(payload).await)),
            None => Err("this node has no application handler".into()),
        })
    }
}
