//! The crate's one error type, [`ClusterError`], and its conversions from the engine's and the
//! codec's errors.

use std::io;

/// Everything that can go wrong in the cluster layer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A write was not committed by a majority within the propose timeout (no leader reachable,
    /// or the leader could not replicate to a quorum). The command may still commit later if it
    /// reached a leader's log; the caller should treat the operation as failed and retry-safe.
    #[error("no quorum: the cluster has no reachable majority")]
    NoQuorum,
    /// A write to a per-queue Raft group on a node that does not lead it; the leader this
    /// node knows of, if any.
    #[error("not the group's leader (leader: {leader:?})")]
    NotLeader {
        /// The leader's node name.
        leader: Option<String>,
    },
    /// The peer refused our cluster secret, or proved it does not share it.
    #[error("cluster secret refused by {peer}")]
    AuthRefused {
        /// The peer's address.
        peer: String,
    },
    /// A disk file of the log store is damaged beyond a torn tail.
    #[error("corrupt cluster log {file} at offset {offset}: {reason}")]
    Corruption {
        /// The damaged file.
        file: String,
        /// Byte offset of the damaged record.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// File or socket IO failed.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// A peer could not be reached or the link failed mid-call.
    #[error("network: {0}")]
    Network(String),
    /// A frame could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),
    /// The Raft engine reported an error (fatal, or a membership change it refused).
    #[error("raft: {0}")]
    Raft(String),
    /// The operation is not valid in this node's state (e.g. joining while holding data of its
    /// own, forgetting an unknown node).
    #[error("{0}")]
    Invalid(String),
    /// The cluster node is shutting down.
    #[error("cluster node is shut down")]
    Shutdown,
}

impl From<postcard::Error> for ClusterError {
    fn from(e: postcard::Error) -> Self {
        ClusterError::Codec(e.to_string())
    }
}

/// Crate result alias.
pub type Result<T, E = ClusterError> = std::result::Result<T, E>;
