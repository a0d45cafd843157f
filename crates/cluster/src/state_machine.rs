//! The replicated state machine: openraft's `RaftStateMachine` over the caller's [`Apply`]
//! implementation, and the snapshot file.
//!
//! Committed commands reach [`Apply::apply`] in log order, exactly once per start of the node.
//! The applier's state is in memory and rebuilt at every start: [`Apply::restore`] with the
//! latest snapshot (if any), then `apply` of every committed entry after it as the leader
//! reports them committed. Snapshots are [`Apply::snapshot`]'s bytes, taken after openraft's
//! snapshot policy (every `snapshot_threshold` applied entries), and sent to nodes that lag
//! behind the leader's purged log, which [`Apply::restore`] them.
//!
//! # Snapshot file
//!
//! `snapshot` in the node's directory: header `WRNRSNP` + version `1`, one record
//! `len: u32 LE | crc: u32 LE | postcard(StoredSnapshot)` holding openraft's snapshot meta (last
//! log id, membership, id) and the applier's bytes. Replaced atomically (temp, fsync, rename,
//! fsync of the directory) before openraft is told the snapshot exists, so the log can be purged
//! behind it.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::log_store::{read_atomic, write_atomic};
use crate::types::{CommandResponse, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

pub(crate) const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_MAGIC: &[u8; 8] = b"WRNRSNP\x01";

/// What Warren's server plugs into the cluster: the owner of the replicated state.
///
/// Calls come one at a time from the Raft state-machine task, in log order; none runs
/// concurrently with another.
pub trait Apply: Send + Sync + 'static {
    /// Applies the committed command at log `index`; the answer goes back to the proposer.
    fn apply(&self, index: u64, cmd: &[u8]) -> Vec<u8>;
    /// The whole state, serialised, as of the last applied command.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the whole state with a snapshot's bytes.
    fn restore(&self, snap: &[u8]);
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// openraft's state machine: the applier plus what Raft needs to know about it.
pub struct StateMachine {
    dir: PathBuf,
    applier: Arc<dyn Apply>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    current: Option<StoredSnapshot>,
    snapshot_seq: u64,
    /// Shared with the cluster so `status()` can read it without asking the Raft core.
    applied_index: Arc<AtomicU64>,
    /// Commands applied or restored since start (the cluster refuses to reset a node with any).
    commands: Arc<AtomicU64>,
}

impl StateMachine {
    /// Opens the state machine in `dir`: restores the latest snapshot into the applier.
    pub fn open(
        dir: &Path,
        applier: Arc<dyn Apply>,
        applied_index: Arc<AtomicU64>,
        commands: Arc<AtomicU64>,
    ) -> Result<StateMachine> {
        let current: Option<StoredSnapshot> = match read_atomic(&dir.join(SNAPSHOT_FILE), SNAPSHOT_MAGIC)? {
            Some(p) => Some(postcard::from_bytes(&p)?),
            None => None,
        };
        let mut sm = StateMachine {
            dir: dir.to_path_buf(),
            applier,
            last_applied: None,
            membership: StoredMembership::default(),
            current: None,
            snapshot_seq: 0,
            applied_index,
            commands,
        };
        if let Some(snap) = current {
            sm.commands.fetch_add(1, Ordering::AcqRel);
            sm.applier.restore(&snap.data);
            sm.set_applied(snap.meta.last_log_id);
            sm.membership = snap.meta.last_membership.clone();
            sm.current = Some(snap);
        }
        Ok(sm)
    }

    fn set_applied(&mut self, id: Option<LogId>) {
        self.last_applied = id;
        self.applied_index
            .store(id.map_or(0, |l| l.index), Ordering::Release);
    }
}

/// Writes the snapshot file (atomically, fsynced) on the blocking pool.
async fn persist(dir: PathBuf, snap: StoredSnapshot) -> Result<(), StorageError> {
    let sig = snap.meta.signature();
    let write = move || {
        let payload = postcard::to_stdvec(&snap).map_err(std::io::Error::other)?;
        write_atomic(&dir, SNAPSHOT_FILE, SNAPSHOT_MAGIC, &payload)
    };
    let err = match tokio::task::spawn_blocking(write).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    Err(StorageIOError::write_snapshot(Some(sig), AnyError::error(err)).into())
}

/// Builds one snapshot from what the state machine captured when openraft asked for a builder
/// (so it matches `last_applied` exactly, whatever is applied meanwhile).
pub struct SnapshotBuilder {
    dir: PathBuf,
    snap: StoredSnapshot,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let snap = self.snap.clone();
        let dir = self.dir.clone();
        persist(dir, snap.clone()).await?;
        Ok(Snapshot {
            meta: snap.meta,
            snapshot: Box::new(Cursor::new(snap.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        for entry in entries {
            let resp = match &entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(cmd) => {
                    self.commands.fetch_add(1, Ordering::AcqRel);
                    self.applier.apply(entry.log_id.index, &cmd.0)
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    Vec::new()
                }
            };
            self.set_applied(Some(entry.log_id));
            out.push(CommandResponse(resp));
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        let id = match self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.snapshot_seq),
            None => format!("0-0-{}", self.snapshot_seq),
        };
        let snap = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
                snapshot_id: id,
            },
            data: self.applier.snapshot(),
        };
        self.current = Some(snap.clone());
        SnapshotBuilder {
            dir: self.dir.clone(),
            snap,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let snap = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        persist(self.dir.clone(), snap.clone()).await?;
        self.applier.restore(&snap.data);
        self.commands.fetch_add(1, Ordering::AcqRel);
        self.set_applied(meta.last_log_id);
        self.membership = meta.last_membership.clone();
        self.current = Some(snap);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.current.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}
