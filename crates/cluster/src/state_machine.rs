//! The replicated state machine: openraft's `RaftStateMachine` over the caller's [`Apply`]
//! implementation, and the snapshot file.
//!
//! Committed commands reach [`Apply::apply`] in log order, exactly once per start of the node.
//! The applier's state is in memory and rebuilt at every start: [`Apply::restore`] with the
//! latest snapshot (if any), then `apply` of every committed entry after it as the leader
//! reports them committed. Snapshots are [`Apply::snapshot`]'s bytes, and sent to nodes that
//! lag behind the leader's purged log, which [`Apply::restore`] them.
//!
//! # When a snapshot is taken
//!
//! Once `snapshot_threshold` entries were applied since the last one *and* their commands
//! amount to at least twice the state's size ([`Apply::size`]): the state machine asks the
//! Raft core for it (openraft's own policy is off). A snapshot costs time and memory in
//! proportion to the state — for a quorum queue, every message it holds — so with a large
//! backlog snapshots become rarer in proportion, and their total cost stays linear in the
//! traffic (the log on disk holds at most about twice the state in between).
//!
//! # Retried proposals
//!
//! Every command carries its proposer's random id. The state machine remembers the ids and
//! answers of the last [`REMEMBERED`] commands (in apply order, so every node remembers the
//! same ones, and in the snapshot); a command whose id it remembers — a forwarded proposal sent
//! again after its answer was lost — is answered from memory, not applied again.
//!
//! # Snapshot file
//!
//! `snapshot` in the node's directory: header `WRNRSNP` + version `1`, one record
//! `len: u32 LE | crc: u32 LE | postcard(StoredSnapshot)` holding openraft's snapshot meta (last
//! log id, membership, id) and the snapshot's bytes: `postcard(SnapshotBody)`, the remembered
//! command ids with their answers and the applier's own bytes. Replaced atomically (temp, fsync, rename,
//! fsync of the directory) before openraft is told the snapshot exists, so the log can be purged
//! behind it. Only its meta stays in memory: its bytes are read back from the file when a
//! lagging member needs them (a quorum queue's snapshot holds every message it holds).

use std::collections::{HashMap, VecDeque};
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
/// How many recent command ids (with their answers) are remembered to recognise a retry.
pub const REMEMBERED: usize = 16 * 1024;

/// The ids and answers of the last `capacity` ([`REMEMBERED`] unless set) applied commands,
/// oldest first.
#[derive(Debug)]
struct Recent {
    order: VecDeque<u128>,
    answers: HashMap<u128, Vec<u8>>,
    capacity: usize,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            order: VecDeque::new(),
            answers: HashMap::new(),
            capacity: REMEMBERED,
        }
    }
}

impl Recent {
    fn insert(&mut self, id: u128, answer: Vec<u8>) {
        if self.capacity == 0 {
            return;
        }
        if self.answers.insert(id, answer).is_none() {
            self.order.push_back(id);
            self.trim();
        }
    }

    fn trim(&mut self) {
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.answers.remove(&oldest);
            }
        }
    }

    fn to_vec(&self) -> Vec<(u128, Vec<u8>)> {
        self.order
            .iter()
            .map(|id| (*id, self.answers[id].clone()))
            .collect()
    }

    fn from_vec(v: Vec<(u128, Vec<u8>)>, capacity: usize) -> Recent {
        let mut r = Recent {
            capacity,
            ..Recent::default()
        };
        for (id, answer) in v {
            r.insert(id, answer);
        }
        r
    }
}

/// What a snapshot's bytes hold.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotBody {
    recent: Vec<(u128, Vec<u8>)>,
    #[serde(with = "serde_bytes")]
    app: Vec<u8>,
}

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
    /// About how many bytes a snapshot of the state would take (0: small, not worth counting).
    fn size(&self) -> u64 {
        0
    }
    /// The group's durable copies (its log and latest snapshot), handed over once its storage
    /// is open, for an applier that keeps copies of its own that can fail.
    fn attach(&self, _durable: Durable) {}
}

/// Reads a group's durable copies back: a command from its log, the applier's part of its
/// latest snapshot. Blocking IO, for rare paths (a replica's own copy of a record failed).
#[derive(Clone)]
pub struct Durable {
    log: crate::log_store::LogStore,
    dir: PathBuf,
}

impl Durable {
    pub(crate) fn new(log: crate::log_store::LogStore, dir: PathBuf) -> Durable {
        Durable { log, dir }
    }

    /// The command of log entry `index`, if the log still holds it (not purged by a snapshot).
    pub fn command(&self, index: u64) -> std::io::Result<Option<Vec<u8>>> {
        self.log.command(index)
    }

    /// The applier's bytes in the latest snapshot ([`Apply::snapshot`]), if there is one.
    pub fn snapshot(&self) -> std::io::Result<Option<Vec<u8>>> {
        let Some(p) =
            read_atomic(&self.dir.join(SNAPSHOT_FILE), SNAPSHOT_MAGIC).map_err(std::io::Error::other)?
        else {
            return Ok(None);
        };
        let snap: StoredSnapshot = postcard::from_bytes(&p).map_err(std::io::Error::other)?;
        let body: SnapshotBody = postcard::from_bytes(&snap.data).map_err(std::io::Error::other)?;
        Ok(Some(body.app))
    }
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
    /// The meta of the latest snapshot (its bytes are in the snapshot file).
    current: Option<SnapshotMeta>,
    snapshot_seq: u64,
    /// Shared with the cluster so `status()` can read it without asking the Raft core.
    applied_index: Arc<AtomicU64>,
    /// Commands applied or restored since start (the cluster refuses to reset a node with any).
    commands: Arc<AtomicU64>,
    recent: Recent,
    /// Entries and command bytes applied since the last snapshot.
    since: (u64, u64),
    /// Entries before a snapshot is due (besides the bytes: see the module doc).
    threshold: u64,
    /// Asks the Raft core for a snapshot; `asked` until it is taken.
    trigger: Option<tokio::sync::mpsc::UnboundedSender<()>>,
    asked: bool,
}

impl StateMachine {
    /// Opens the state machine in `dir`: restores the latest snapshot into the applier.
    pub fn open(
        dir: &Path,
        applier: Arc<dyn Apply>,
        applied_index: Arc<AtomicU64>,
        commands: Arc<AtomicU64>,
    ) -> Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
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
            recent: Recent::default(),
            since: (0, 0),
            threshold: u64::MAX,
            trigger: None,
            asked: false,
        };
        if let Some(snap) = current {
            sm.commands.fetch_add(1, Ordering::AcqRel);
            let body: SnapshotBody = postcard::from_bytes(&snap.data)?;
            sm.applier.restore(&body.app);
            sm.recent = Recent::from_vec(body.recent, REMEMBERED);
            sm.set_applied(snap.meta.last_log_id);
            sm.membership = snap.meta.last_membership.clone();
            sm.current = Some(snap.meta);
        }
        Ok(sm)
    }

    /// Remembers the ids and answers of the last `n` commands (default [`REMEMBERED`]) to
    /// recognise a retry; 0 for a group whose writers never retry under the same id (a quorum
    /// queue's: each write gets a fresh id), where the memory would buy nothing.
    pub fn remember(&mut self, n: usize) {
        self.recent.capacity = n;
        self.recent.trim();
    }

    /// Asks for a snapshot on `trigger` once `threshold` entries (and twice the state's size
    /// in commands) were applied since the last one.
    pub fn snapshot_when(&mut self, threshold: u64, trigger: tokio::sync::mpsc::UnboundedSender<()>) {
        self.threshold = threshold;
        self.trigger = Some(trigger);
    }

    /// After applying: asks for a snapshot if one is due (see the module doc).
    fn maybe_ask(&mut self) {
        if self.asked || self.since.0 < self.threshold {
            return;
        }
        if self.since.1 < self.applier.size().saturating_mul(2) {
            return;
        }
        if let Some(t) = &self.trigger {
            self.asked = t.send(()).is_ok();
        }
    }

    fn set_applied(&mut self, id: Option<LogId>) {
        self.last_applied = id;
        self.applied_index
            .store(id.map_or(0, |l| l.index), Ordering::Release);
    }
}

/// Writes the snapshot file (atomically, fsynced) on the blocking pool; gives the snapshot back.
async fn persist(dir: PathBuf, snap: StoredSnapshot) -> Result<StoredSnapshot, StorageError> {
    let sig = snap.meta.signature();
    let write = move || {
        let payload = postcard::to_stdvec(&snap).map_err(std::io::Error::other)?;
        write_atomic(&dir, SNAPSHOT_FILE, SNAPSHOT_MAGIC, &payload).map(|()| snap)
    };
    let err = match tokio::task::spawn_blocking(write).await {
        Ok(Ok(snap)) => return Ok(snap),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    Err(StorageIOError::write_snapshot(Some(sig), AnyError::error(err)).into())
}

/// Reads the snapshot file back (on the blocking pool); `None` if there is none.
async fn read_back(dir: PathBuf) -> Result<Option<StoredSnapshot>, StorageError> {
    let read = move || -> std::result::Result<Option<StoredSnapshot>, String> {
        match read_atomic(&dir.join(SNAPSHOT_FILE), SNAPSHOT_MAGIC) {
            Ok(Some(p)) => postcard::from_bytes(&p).map(Some).map_err(|e| e.to_string()),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    };
    let err = match tokio::task::spawn_blocking(read).await {
        Ok(Ok(snap)) => return Ok(snap),
        Ok(Err(e)) => e,
        Err(e) => e.to_string(),
    };
    Err(StorageIOError::read_snapshot(None, AnyError::error(err)).into())
}

/// Builds one snapshot from what the state machine captured when openraft asked for a builder
/// (so it matches `last_applied` exactly, whatever is applied meanwhile).
pub struct SnapshotBuilder {
    dir: PathBuf,
    snap: StoredSnapshot,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let snap = StoredSnapshot {
            meta: self.snap.meta.clone(),
            data: std::mem::take(&mut self.snap.data),
        };
        let snap = persist(self.dir.clone(), snap).await?;
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
            self.since.0 += 1;
            if let EntryPayload::Normal(cmd) = &entry.payload {
                self.since.1 += cmd.payload.len() as u64;
            }
            let resp = match &entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(cmd) => match self.recent.answers.get(&cmd.id) {
                    Some(answer) => answer.clone(),
                    None => {
                        self.commands.fetch_add(1, Ordering::AcqRel);
                        let answer = self.applier.apply(entry.log_id.index, &cmd.payload);
                        if self.recent.capacity > 0 {
                            self.recent.insert(cmd.id, answer.clone());
                        }
                        answer
                    }
                },
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    Vec::new()
                }
            };
            self.set_applied(Some(entry.log_id));
            out.push(CommandResponse(resp));
        }
        self.maybe_ask();
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        self.since = (0, 0);
        self.asked = false;
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
            data: postcard::to_stdvec(&SnapshotBody {
                recent: self.recent.to_vec(),
                app: self.applier.snapshot(),
            })
            .expect("encoding to a Vec cannot fail"),
        };
        self.current = Some(snap.meta.clone());
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
        let body: SnapshotBody = postcard::from_bytes(&snap.data).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::error(e.to_string()))
        })?;
        let snap = persist(self.dir.clone(), snap).await?;
        self.applier.restore(&body.app);
        self.recent = Recent::from_vec(body.recent, self.recent.capacity);
        self.commands.fetch_add(1, Ordering::AcqRel);
        self.set_applied(meta.last_log_id);
        self.membership = meta.last_membership.clone();
        self.current = Some(snap.meta);
        self.since = (0, 0);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        if self.current.is_none() {
            return Ok(None);
        }
        // The file holds the latest snapshot written (one being built is not there yet: the
        // one before it is as good, and the log behind it is purged only once it is).
        Ok(read_back(self.dir.clone()).await?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::{CommittedLeaderId, Membership};
    use parking_lot::Mutex;

    use super::*;
    use crate::types::Command;

    /// Counts applies; its state is the list of payloads.
    #[derive(Default)]
    struct Log(Mutex<Vec<Vec<u8>>>);

    impl Apply for Log {
        fn apply(&self, index: u64, cmd: &[u8]) -> Vec<u8> {
            self.0.lock().push(cmd.to_vec());
            index.to_le_bytes().to_vec()
        }
        fn snapshot(&self) -> Vec<u8> {
            postcard::to_stdvec(&*self.0.lock()).unwrap()
        }
        fn restore(&self, snap: &[u8]) {
            *self.0.lock() = postcard::from_bytes(snap).unwrap();
        }
    }

    /// A state whose size the test sets.
    #[derive(Default)]
    struct Sized(AtomicU64);

    impl Apply for Sized {
        fn apply(&self, _: u64, _: &[u8]) -> Vec<u8> {
            Vec::new()
        }
        fn snapshot(&self) -> Vec<u8> {
            Vec::new()
        }
        fn restore(&self, _: &[u8]) {}
        fn size(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[tokio::test]
    async fn a_snapshot_is_asked_for_after_the_threshold_and_twice_the_states_size() {
        let dir = tempfile::tempdir().unwrap();
        let applier = Arc::new(Sized::default());
        let mut sm = StateMachine::open(
            dir.path(),
            applier.clone(),
            Default::default(),
            Default::default(),
        )
        .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        sm.snapshot_when(3, tx);
        // A small state: asked for after 3 entries, once until taken.
        sm.apply((1..=2).map(|i| cmd(i, i as u128, "x"))).await.unwrap();
        assert!(rx.try_recv().is_err());
        sm.apply((3..=5).map(|i| cmd(i, i as u128, "x"))).await.unwrap();
        assert!(rx.try_recv().is_ok());
        sm.apply(vec![cmd(6, 6, "x")]).await.unwrap();
        assert!(rx.try_recv().is_err(), "asked once until taken");
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        // A state of 10 bytes: due after 3 entries and 20 bytes of commands since.
        applier.0.store(10, Ordering::Relaxed);
        let five = "y".repeat(5);
        sm.apply((7..=9).map(|i| cmd(i, i as u128, &five))).await.unwrap();
        assert!(rx.try_recv().is_err(), "15 bytes since");
        sm.apply(vec![cmd(10, 10, &five)]).await.unwrap();
        assert!(rx.try_recv().is_ok(), "20 bytes since");
    }

    fn cmd(index: u64, id: u128, payload: &str) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command {
                id,
                payload: payload.as_bytes().to_vec(),
            }),
        }
    }

    fn open(dir: &Path) -> (StateMachine, Arc<Log>) {
        let log = Arc::new(Log::default());
        let sm = StateMachine::open(dir, log.clone(), Default::default(), Default::default()).unwrap();
        (sm, log)
    }

    #[tokio::test]
    async fn a_retried_command_is_answered_once_applied_and_not_applied_again() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, log) = open(dir.path());
        let answers = sm
            .apply(vec![cmd(1, 7, "a"), cmd(2, 8, "b"), cmd(3, 7, "a")])
            .await
            .unwrap();
        assert_eq!(answers[2], answers[0], "the retry gets the first answer");
        assert_eq!(*log.0.lock(), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(sm.applied_state().await.unwrap().0.map(|l| l.index), Some(3));
    }

    #[tokio::test]
    async fn snapshots_carry_the_state_and_the_remembered_ids_to_another_node_and_to_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, _) = open(&dir.path().join("leader"));
        let membership = Membership::new(vec![BTreeSet::from([1])], None);
        let mut entries = vec![Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
            payload: EntryPayload::Membership(membership),
        }];
        entries.extend((2..=4).map(|i| cmd(i, i as u128, &format!("c{i}"))));
        sm.apply(entries).await.unwrap();
        assert!(sm.get_current_snapshot().await.unwrap().is_none());
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(4));
        // What a lagging member is sent is read back from the file: the same meta and bytes.
        let sent = sm.get_current_snapshot().await.unwrap().expect("a snapshot");
        assert_eq!(sent.meta, snap.meta);
        assert_eq!(sent.snapshot.get_ref(), snap.snapshot.get_ref());
        // The applier's part of it reads back for a replica whose own copy failed.
        let leader_dir = dir.path().join("leader");
        let durable = Durable::new(crate::log_store::LogStore::open(&leader_dir).unwrap(), leader_dir);
        let app: Vec<Vec<u8>> = postcard::from_bytes(&durable.snapshot().unwrap().unwrap()).unwrap();
        assert_eq!(app, vec![b"c2".to_vec(), b"c3".to_vec(), b"c4".to_vec()]);
        assert_eq!(durable.command(2).unwrap(), None, "nothing in this log");

        // Installed on a lagging node.
        let follower_dir = dir.path().join("follower");
        let (mut follower, log) = open(&follower_dir);
        follower
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        assert_eq!(log.0.lock().len(), 3);
        let (applied, membership) = follower.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(4));
        assert_eq!(membership.voter_ids().collect::<Vec<_>>(), vec![1]);
        // A retry of command 3 after the snapshot is still recognised.
        follower.apply(vec![cmd(5, 3, "c3")]).await.unwrap();
        assert_eq!(log.0.lock().len(), 3);

        // And the follower restarts from the installed snapshot.
        drop(follower);
        let (mut restarted, log) = open(&follower_dir);
        assert_eq!(log.0.lock().len(), 3);
        assert_eq!(
            restarted.applied_state().await.unwrap().0.map(|l| l.index),
            Some(4)
        );
        assert!(restarted.get_current_snapshot().await.unwrap().is_some());
        restarted
            .apply(vec![cmd(5, 2, "c2"), cmd(6, 99, "new")])
            .await
            .unwrap();
        assert_eq!(log.0.lock().len(), 4);
    }

    #[test]
    fn only_the_last_remembered_ids_are_kept() {
        let mut r = Recent::default();
        for id in 0..(REMEMBERED as u128 + 10) {
            r.insert(id, vec![]);
        }
        assert_eq!(r.order.len(), REMEMBERED);
        assert!(!r.answers.contains_key(&9) && r.answers.contains_key(&10));
        let back = Recent::from_vec(r.to_vec(), REMEMBERED);
        assert_eq!(back.order, r.order);
        let fewer = Recent::from_vec(r.to_vec(), 3);
        assert_eq!(
            fewer.order,
            r.order.range(REMEMBERED - 3..).copied().collect::<Vec<_>>()
        );
        assert_eq!(fewer.answers.len(), 3);
    }

    #[tokio::test]
    async fn a_state_machine_told_to_remember_nothing_keeps_no_ids_nor_snapshots_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, log) = open(dir.path());
        sm.remember(0);
        sm.apply(vec![cmd(1, 7, "a"), cmd(2, 7, "a")]).await.unwrap();
        assert_eq!(
            *log.0.lock(),
            vec![b"a".to_vec(), b"a".to_vec()],
            "nothing recognised"
        );
        assert!(sm.recent.order.is_empty() && sm.recent.answers.is_empty());
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let body: SnapshotBody = postcard::from_bytes(snap.snapshot.get_ref()).unwrap();
        assert!(body.recent.is_empty());
    }
}
