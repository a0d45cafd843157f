//! warren-cluster: Warren's cluster layer. One metadata Raft group (plus one per quorum queue), run by the `openraft` engine (Warren
//! writes no consensus of its own), replicates opaque commands — the server's definitions
//! records — to every node, in one order, committed by a majority.
//!
//! Warren supplies the glue:
//! - [`log_store`]: the Raft log and vote on disk, with an explicit fsync discipline and torn-tail
//!   recovery;
//! - [`state_machine`]: committed commands to the caller's [`Apply`], and snapshots of it;
//! - [`network`]: authenticated (cluster secret, HMAC challenge–response) TCP links between
//!   nodes, over mutual TLS when configured ([`ClusterTls`]), carrying Raft's RPCs and
//!   forwarded proposals;
//! - [`forward`]: application requests over those links (the server's cross-node message
//!   forwarding), answered by the receiving node's [`AppHandler`];
//! - [`groups`]: more Raft groups on the same node and links, one per replicated (quorum)
//!   queue, each with its own log and applier;
//! - [`cluster`]: the [`Cluster`] handle — start, `propose` from any node, `status`, `join`,
//!   `forget`, `shutdown`;
//! - [`types`]: the Raft type configuration, node ids and the [`Member`] record;
//! - [`error`]: the crate's error type, [`ClusterError`].

pub mod cluster;
pub mod error;
pub mod forward;
pub mod groups;
pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod types;

pub use cluster::{Cluster, ClusterConfig, MemberStatus, Status, Timeouts};
pub use error::{ClusterError, Result};
pub use forward::{AppFuture, AppHandler};
pub use groups::GroupStatus;
pub use network::ClusterTls;
pub use state_machine::{Apply, Durable};
pub use types::{Member, NodeId, node_id_for};
