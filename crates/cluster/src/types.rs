//! The Raft type configuration Warren runs openraft with: node ids, the [`Member`] node record
//! (name and cluster address), and the opaque command / response payloads.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A Raft node id. Derived from the node name by [`node_id_for`], so it is stable across
/// restarts and known before a node has talked to anyone.
pub type NodeId = u64;

/// What the membership records about a node: its name (`warren@host`) and the address of its
/// cluster listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node name, unique in the cluster.
    pub name: String,
    /// `HOST:PORT` of the node's cluster listener, as other nodes dial it.
    pub addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

/// An opaque command proposed to the replicated log (the server's definitions records), with
/// the random id its proposer drew for it: a proposal forwarded again after a lost answer
/// carries the same id, and the state machine applies it once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The proposal's id.
    pub id: u128,
    /// What the applier gets.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// The applier's answer to one command, returned to the proposer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResponse(#[serde(with = "serde_bytes")] pub Vec<u8>);

openraft::declare_raft_types!(
    /// Warren's openraft type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The stable node id of a node name: the first 8 bytes (big-endian) of SHA-256(name).
/// Collisions between a cluster's handful of names are negligible (2^-64 per pair), and the
/// id needs no coordination: every node computes the same id for the same name.
pub fn node_id_for(name: &str) -> NodeId {
    let digest = Sha256::digest(name.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(id)
}

pub(crate) type Raft = openraft::Raft<TypeConfig>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type LogId = openraft::LogId<NodeId>;
pub(crate) type Vote = openraft::Vote<NodeId>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, Member>;

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    /// `Command` and `CommandResponse` as builds before `serde_bytes` declared them.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct OldCommand {
        id: u128,
        payload: Vec<u8>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct OldResponse(Vec<u8>);

    #[test]
    fn byte_payloads_encode_as_earlier_builds_did_so_old_logs_and_peers_still_read() {
        for payload in [vec![], vec![0, 1, 255], vec![7; 300], (0..=255).collect()] {
            let new = Command {
                id: u128::MAX - 3,
                payload: payload.clone(),
            };
            let old = OldCommand {
                id: u128::MAX - 3,
                payload: payload.clone(),
            };
            let new_bytes = postcard::to_stdvec(&new).unwrap();
            assert_eq!(new_bytes, postcard::to_stdvec(&old).unwrap());
            assert_eq!(postcard::from_bytes::<OldCommand>(&new_bytes).unwrap(), old);
            assert_eq!(postcard::from_bytes::<Command>(&new_bytes).unwrap(), new);
            let new = CommandResponse(payload.clone());
            let bytes = postcard::to_stdvec(&new).unwrap();
            assert_eq!(bytes, postcard::to_stdvec(&OldResponse(payload)).unwrap());
            assert_eq!(postcard::from_bytes::<CommandResponse>(&bytes).unwrap(), new);
        }
    }
}
