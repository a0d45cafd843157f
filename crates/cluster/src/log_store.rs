//! The Raft log and vote on disk: openraft's `RaftLogStorage` over one append-only record file
//! and one small state file, with an explicit fsync discipline.
//!
//! # Files (in the directory the caller gives)
//!
//! `raft.log`, the entries: an 8-byte header `WRNRLOG` + version byte `1`, then records
//!
//! ```text
//! len: u32 LE | crc: u32 LE (CRC-32/IEEE of payload) | payload: postcard(openraft Entry)
//! ```
//!
//! in log-index order. Records whose index is at or below the purge point are dead and skipped
//! at load; once they are at least half of the file (and 64 KiB) the file is rewritten without
//! them (`raft.log.tmp`, fsync, rename, fsync of the directory).
//!
//! `raft.state`, the vote and the purge point: header `WRNRSTA` + version `1`, then one record
//! in the same framing holding `postcard(HardState)`. It is replaced atomically: written to
//! `raft.state.tmp`, fsynced, renamed over, and the directory fsynced.
//!
//! # Fsync discipline
//!
//! - `append`: the batch's entries are framed and readable at once, and queued for the log's
//!   writer, which writes everything queued in one `write`, then `fdatasync`s; only then is
//!   openraft told those batches are flushed (`LogFlushed::log_io_completed`, in order).
//!   `append` returns before the flush, as openraft allows, so Raft's core goes on (sending
//!   the entries to followers, taking more proposals) while the disk syncs; batches appended
//!   during one sync share the next (group commit).
//! - `save_vote`: the state file is replaced (fsynced) before the call returns, so a vote is
//!   durable before the node answers a vote request.
//! - `truncate`: the file is cut (`set_len`) at the first removed record and fsynced.
//! - `purge`: the new purge point is made durable in the state file first; the log rewrite is
//!   an optimisation whose crash at any point leaves either file version valid.
//!
//! # Memory
//!
//! Every live entry's place in the file is in memory; its decoded payload only while it is
//! among the most recent [`CACHE_BYTES`] of records (what followers are sent and the state
//! machine applies next), or [`CACHE_BYTES_SHARED`] while all of the process's logs together
//! keep more than [`NODE_CACHE_BYTES`] (many busy groups). Older payloads — a quorum queue's
//! backlog — are read back from the file when asked for (a lagging follower), once the writer
//! has written them.
//!
//! `truncate` and `purge` wait for the writer to go idle first, so the file they change holds
//! every appended record. All file IO runs on tokio's blocking pool, never on a runtime worker.
//! After a failed write or fsync the store is poisoned and refuses further writes (the page
//! cache can no longer be trusted to match the disk).
//!
//! The commit index is not persisted (openraft's optional `save_committed`): after a restart the
//! entries after the latest snapshot are applied again once a leader reports them committed —
//! at once on a one-node cluster, which restarts as its own leader.
//!
//! # Recovery
//!
//! A record that runs past the end of the file, or the last record with a bad CRC, is a torn
//! tail: it is cut off (and the cut fsynced). A bad CRC followed by further records, or a record
//! that decodes badly despite a good CRC, is corruption and fails the open.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, RaftLogReader, StorageIOError};
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use crate::error::{ClusterError, Result};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

pub(crate) const LOG_FILE: &str = "raft.log";
pub(crate) const STATE_FILE: &str = "raft.state";
const LOG_MAGIC: &[u8; 8] = b"WRNRLOG\x01";
const STATE_MAGIC: &[u8; 8] = b"WRNRSTA\x01";
/// Upper bound on one record's payload; a larger length field is damage, not data.
pub(crate) const MAX_RECORD: u32 = 256 << 20;
const COMPACT_MIN_BYTES: u64 = 64 << 10;
/// Record bytes whose decoded entries a group's log keeps in memory (the most recent ones),
/// while all groups' logs together keep no more than [`NODE_CACHE_BYTES`]: enough for a busy
/// quorum queue's entries in flight to its followers (the pipeline holds about 500 × 1 KiB).
pub(crate) const CACHE_BYTES: u64 = 2 << 20;
/// What a group's log keeps once all logs together keep more than [`NODE_CACHE_BYTES`].
/// Measured with 100 busy quorum queues (1 KiB messages): peak RSS of the leader's node
/// 539–566 MB with every log keeping 2 MiB, 250–256 MB with 256 KiB; one busy queue consumed
/// about 8% more with 2 MiB (31.3–40.5k against 29.4–36.5k msg/s, four alternating runs).
pub(crate) const CACHE_BYTES_SHARED: u64 = 256 << 10;
/// Decoded log entries kept in memory by all of this process's groups together before each
/// keeps only [`CACHE_BYTES_SHARED`].
pub(crate) const NODE_CACHE_BYTES: u64 = 32 << 20;

/// Record bytes cached by every log of this process.
static NODE_CACHED: AtomicU64 = AtomicU64::new(0);

/// What a log may keep cached now: [`CACHE_BYTES`], or [`CACHE_BYTES_SHARED`] while all logs
/// together keep more than [`NODE_CACHE_BYTES`].
fn cache_cap() -> u64 {
    if NODE_CACHED.load(Ordering::Relaxed) > NODE_CACHE_BYTES {
        CACHE_BYTES_SHARED
    } else {
        CACHE_BYTES
    }
}

/// One log's cached record bytes, counted in [`NODE_CACHED`] too (until dropped).
#[derive(Debug, Default)]
struct Cached(u64);

impl Cached {
    fn add(&mut self, n: u64) {
        self.0 += n;
        NODE_CACHED.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&mut self, n: u64) {
        let n = n.min(self.0);
        self.0 -= n;
        NODE_CACHED.fetch_sub(n, Ordering::Relaxed);
    }
}

impl Drop for Cached {
    fn drop(&mut self) {
        NODE_CACHED.fetch_sub(self.0, Ordering::Relaxed);
    }
}

/// One live entry: where its record is, and the entry itself while it is cached.
#[derive(Debug)]
struct Slot {
    /// The record's offset in the file.
    off: u64,
    /// The record's length, frame included.
    len: u32,
    log_id: LogId,
    /// A normal (command) entry.
    normal: bool,
    /// The entry, if cached; membership entries always are.
    entry: Option<Entry>,
}

impl Slot {
    fn new(off: u64, len: usize, entry: Entry) -> Slot {
        Slot {
            off,
            len: len as u32,
            log_id: entry.log_id,
            normal: matches!(entry.payload, openraft::EntryPayload::Normal(_)),
            entry: Some(entry),
        }
    }
}

/// Drops the decoded payloads of the oldest entries from `evicted_to` on whose records end
/// before `written`, while more than [`cache_cap`] of records are cached (membership entries
/// stay); `cached` and `evicted_to` follow.
fn evict_oldest(
    entries: &mut BTreeMap<u64, Slot>,
    (cached, evicted_to): (&mut Cached, &mut u64),
    written: u64,
) {
    let cap = cache_cap();
    if cached.0 <= cap {
        return;
    }
    for (&index, slot) in entries.range_mut(*evicted_to..) {
        if cached.0 <= cap || slot.off + u64::from(slot.len) > written {
            break;
        }
        if slot.normal && slot.entry.take().is_some() {
            cached.sub(u64::from(slot.len));
        }
        *evicted_to = index + 1;
    }
}

/// Reads back and checks the record of `slot` from `file`.
fn read_slot(file: &File, slot: &Slot) -> io::Result<Entry> {
    let mut buf = vec![0u8; slot.len as usize];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut buf, slot.off)?;
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("raft log record at {}: {why}", slot.off),
        )
    };
    if buf.len() < 8 {
        return Err(bad("cut short"));
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if len + 8 != buf.len() || crc32fast::hash(&buf[8..]) != crc {
        return Err(bad("damaged"));
    }
    let e: Entry = postcard::from_bytes(&buf[8..]).map_err(|e| bad(&e.to_string()))?;
    if e.log_id != slot.log_id {
        return Err(bad("another entry"));
    }
    Ok(e)
}

/// What the state file holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct HardState {
    vote: Option<Vote>,
    last_purged: Option<LogId>,
}

/// Frames `payload` as `len | crc | payload`.
pub(crate) fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Writes `magic + frame(payload)` to `dir/name` atomically: temp file, fsync, rename, fsync
/// of the directory.
pub(crate) fn write_atomic(dir: &Path, name: &str, magic: &[u8; 8], payload: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(payload.len() + 16);
    buf.extend_from_slice(magic);
    frame(payload, &mut buf);
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Reads a file written by [`write_atomic`]; `None` if it does not exist.
pub(crate) fn read_atomic(path: &Path, magic: &[u8; 8]) -> Result<Option<Vec<u8>>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let corrupt = |reason: &str| ClusterError::Corruption {
        file: path.display().to_string(),
        offset: 0,
        reason: reason.to_string(),
    };
    if bytes.len() < 16 || &bytes[..8] != magic {
        return Err(corrupt("bad header"));
    }
    let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let payload = bytes.get(16..16 + len).ok_or_else(|| corrupt("short record"))?;
    if crc32fast::hash(payload) != crc {
        return Err(corrupt("bad crc"));
    }
    Ok(Some(payload.to_vec()))
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The open log: file handle, in-memory copy of the live entries (the metadata log is small and
/// purged behind snapshots), and the hard state.
struct LogFile {
    dir: PathBuf,
    file: Arc<File>,
    /// Byte length of the valid part of the log, records queued for the writer included
    /// (where the next record goes).
    end: u64,
    /// Framed records appended but not yet handed to the writer, and who waits for them.
    queued: Vec<u8>,
    waiting: Vec<LogFlushed<TypeConfig>>,
    /// The writer is at work (queued records will be written by it).
    writing: bool,
    /// Where the file's written part ends (records before it can be read back).
    written: u64,
    /// Live entries by index.
    entries: BTreeMap<u64, Slot>,
    /// Record bytes of the cached entries.
    cached: Cached,
    /// Entries before this index are no longer cached (where eviction goes on from).
    evicted_to: u64,
    state: HardState,
    poisoned: bool,
}

impl LogFile {
    fn open(dir: &Path) -> Result<LogFile> {
        fs::create_dir_all(dir)?;
        let state = match read_atomic(&dir.join(STATE_FILE), STATE_MAGIC)? {
            Some(p) => postcard::from_bytes(&p)?,
            None => HardState::default(),
        };
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        // Read record by record (the log may hold a large backlog: it is not read whole).
        let file_len = file.metadata()?.len() as usize;
        if file_len == 0 {
            file.write_all(LOG_MAGIC)?;
            file.sync_all()?;
            sync_dir(dir)?;
        } else {
            let mut magic = [0u8; 8];
            if file_len < 8 || file.read_exact(&mut magic).is_err() || &magic != LOG_MAGIC {
                return Err(ClusterError::Corruption {
                    file: path.display().to_string(),
                    offset: 0,
                    reason: "bad header".into(),
                });
            }
        }
        let file_len = file_len.max(8);
        let mut reader = io::BufReader::with_capacity(1 << 20, &file);
        let purged_upto = state.last_purged.map(|l| l.index);
        let mut entries: BTreeMap<u64, Slot> = BTreeMap::new();
        let (mut cached, mut evicted_to) = (Cached::default(), 0u64);
        let mut pos = 8usize;
        let mut torn = false;
        let mut payload = Vec::new();
        while pos < file_len {
            let corrupt = |reason: &str| ClusterError::Corruption {
                file: path.display().to_string(),
                offset: pos as u64,
                reason: reason.to_string(),
            };
            if pos + 8 > file_len {
                torn = true;
                break;
            }
            let mut header = [0u8; 8];
            reader.read_exact(&mut header)?;
            let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
            let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
            let end = pos + 8 + len as usize;
            if len > MAX_RECORD || end > file_len {
                torn = true;
                break;
            }
            payload.resize(len as usize, 0);
            reader.read_exact(&mut payload)?;
            if crc32fast::hash(&payload) != crc {
                if end == file_len {
                    torn = true;
                    break;
                }
                return Err(corrupt("bad crc before the last record"));
            }
            let entry: Entry = postcard::from_bytes(&payload).map_err(|e| corrupt(&e.to_string()))?;
            let index = entry.log_id.index;
            if entries
                .last_key_value()
                .is_some_and(|(&last, _)| index != last + 1)
            {
                return Err(corrupt("log indexes not contiguous"));
            }
            if purged_upto.is_none_or(|p| index > p) {
                let slot = Slot::new(pos as u64, end - pos, entry);
                cached.add(u64::from(slot.len));
                entries.insert(index, slot);
                // Keeps only the newest records decoded as it goes (all are written).
                evict_oldest(&mut entries, (&mut cached, &mut evicted_to), end as u64);
            }
            pos = end;
        }
        drop(reader);
        if torn {
            tracing::warn!(file = %path.display(), offset = pos, "cutting torn tail of the cluster log");
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        let mut f = LogFile {
            dir: dir.to_path_buf(),
            file: Arc::new(file),
            end: pos as u64,
            queued: Vec::new(),
            waiting: Vec::new(),
            writing: false,
            written: pos as u64,
            entries,
            cached,
            evicted_to,
            state,
            poisoned: false,
        };
        f.evict();
        Ok(f)
    }

    /// Drops the decoded payloads of the oldest written entries while more than
    /// [`cache_cap`] of records are cached (membership entries stay).
    fn evict(&mut self) {
        evict_oldest(
            &mut self.entries,
            (&mut self.cached, &mut self.evicted_to),
            self.written,
        );
    }

    /// The entry of `slot` (cached, or read back from the file).
    fn get(&self, slot: &Slot) -> io::Result<Entry> {
        match &slot.entry {
            Some(e) => Ok(e.clone()),
            None => read_slot(&self.file, slot),
        }
    }

    /// Forgets the entries at and after `from` (`split_off` semantics), keeping `cached` right.
    fn drop_from(&mut self, from: u64) {
        let gone = self.entries.split_off(&from);
        self.uncount(gone);
    }

    /// Entries no longer live: their cached records no longer count.
    fn uncount(&mut self, gone: BTreeMap<u64, Slot>) {
        for slot in gone.into_values() {
            if slot.entry.is_some() {
                self.cached.sub(u64::from(slot.len));
            }
        }
    }

    fn check(&self) -> io::Result<()> {
        if self.poisoned {
            return Err(io::Error::other(
                "cluster log poisoned by an earlier write failure",
            ));
        }
        Ok(())
    }

    /// Runs a write; a failure poisons the store.
    fn guarded<T>(&mut self, f: impl FnOnce(&mut Self) -> io::Result<T>) -> io::Result<T> {
        self.check()?;
        let r = f(self);
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    /// Frames `batch` onto the writer's queue and makes its entries readable. Nothing is
    /// durable until the writer's flush.
    fn enqueue(&mut self, batch: Vec<Entry>) -> io::Result<()> {
        self.check()?;
        let start = self.queued.len();
        let mut offsets = Vec::with_capacity(batch.len());
        for e in &batch {
            let at = self.queued.len();
            let payload = match postcard::to_stdvec(e) {
                Ok(p) => p,
                Err(err) => {
                    self.queued.truncate(start);
                    return Err(io::Error::other(err));
                }
            };
            frame(&payload, &mut self.queued);
            offsets.push((self.end + (at - start) as u64, self.queued.len() - at));
        }
        self.end += (self.queued.len() - start) as u64;
        for (e, (off, len)) in batch.into_iter().zip(offsets) {
            self.cached.add(len as u64);
            if let Some(old) = self.entries.insert(e.log_id.index, Slot::new(off, len, e))
                && old.entry.is_some()
            {
                self.cached.sub(u64::from(old.len));
            }
        }
        self.evict();
        Ok(())
    }

    /// Writes and syncs `batch` at once (tests; the store goes through [`LogStore::append`]).
    #[cfg(test)]
    fn append(&mut self, batch: Vec<Entry>) -> io::Result<()> {
        let at = self.end;
        self.enqueue(batch)?;
        let buf = std::mem::take(&mut self.queued);
        self.guarded(|me| {
            std::os::unix::fs::FileExt::write_all_at(&*me.file, &buf, at)?;
            me.file.sync_data()?;
            me.written = me.written.max(at + buf.len() as u64);
            me.evict();
            Ok(())
        })
    }

    fn save_state(&mut self, state: HardState) -> io::Result<()> {
        self.guarded(|me| {
            let payload = postcard::to_stdvec(&state).map_err(io::Error::other)?;
            write_atomic(&me.dir, STATE_FILE, STATE_MAGIC, &payload)?;
            me.state = state;
            Ok(())
        })
    }

    fn truncate(&mut self, from: u64) -> io::Result<()> {
        let Some(off) = self.entries.range(from..).next().map(|(_, s)| s.off) else {
            return Ok(());
        };
        self.guarded(|me| {
            me.file.set_len(off)?;
            me.file.sync_data()?;
            me.end = off;
            me.written = me.written.min(off);
            me.drop_from(from);
            me.evicted_to = me.evicted_to.min(from);
            Ok(())
        })
    }

    fn purge(&mut self, upto: LogId) -> io::Result<()> {
        let mut state = self.state.clone();
        state.last_purged = Some(upto);
        self.save_state(state)?;
        let live = self.entries.split_off(&(upto.index + 1));
        let gone = std::mem::replace(&mut self.entries, live);
        self.uncount(gone);
        let live_from = self.entries.first_key_value().map_or(self.end, |(_, s)| s.off);
        let dead = live_from - LOG_MAGIC.len() as u64;
        if dead >= COMPACT_MIN_BYTES && dead * 2 >= self.end {
            self.guarded(|me| me.compact())?;
        }
        Ok(())
    }

    /// Rewrites the log file with only the live entries: their records, which follow each
    /// other to the end of the file, copied as they are (the writer is idle: all are written).
    fn compact(&mut self) -> io::Result<()> {
        let live_from = self.entries.first_key_value().map_or(self.end, |(_, s)| s.off);
        let mut buf = LOG_MAGIC.to_vec();
        buf.resize(LOG_MAGIC.len() + (self.end - live_from) as usize, 0);
        std::os::unix::fs::FileExt::read_exact_at(&*self.file, &mut buf[LOG_MAGIC.len()..], live_from)?;
        let shift = live_from - LOG_MAGIC.len() as u64;
        let tmp = self.dir.join(format!("{LOG_FILE}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join(LOG_FILE))?;
        sync_dir(&self.dir)?;
        self.file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.dir.join(LOG_FILE))?,
        );
        self.end = buf.len() as u64;
        self.written = self.end;
        for slot in self.entries.values_mut() {
            slot.off -= shift;
        }
        Ok(())
    }

    fn log_state(&self) -> LogState<TypeConfig> {
        let last = self.entries.last_key_value().map(|(_, s)| s.log_id);
        LogState {
            last_purged_log_id: self.state.last_purged,
            last_log_id: last.or(self.state.last_purged),
        }
    }
}

/// openraft's log storage (and its log reader: a clone of the same handle).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogFile>>,
    /// Signalled when the writer goes idle.
    idle: Arc<Condvar>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, recovering a torn tail.
    pub fn open(dir: &Path) -> Result<LogStore> {
        Ok(LogStore {
            inner: Arc::new(Mutex::new(LogFile::open(dir)?)),
            idle: Arc::new(Condvar::new()),
        })
    }

    /// True when the log holds nothing at all: no vote, no entry, no purge (a pristine node).
    pub fn is_pristine(&self) -> bool {
        let g = self.inner.lock();
        g.state.vote.is_none() && g.state.last_purged.is_none() && g.entries.is_empty()
    }

    /// True when the log holds (or held, before a purge) a command: the node has replicated
    /// data of its own, whether or not it has been applied yet since start.
    pub fn holds_commands(&self) -> bool {
        let g = self.inner.lock();
        g.state.last_purged.is_some() || g.entries.values().any(|s| s.normal)
    }

    /// True when a membership entry in the log names a node other than `me` (read from the
    /// log itself, so it holds before Raft's metrics have loaded at start).
    pub fn knows_other_nodes(&self, me: crate::types::NodeId) -> bool {
        let g = self.inner.lock();
        g.entries
            .values()
            .any(|s| match s.entry.as_ref().map(|e| &e.payload) {
                Some(openraft::EntryPayload::Membership(m)) => m.nodes().any(|(id, _)| *id != me),
                _ => false,
            })
    }

    /// The command of live entry `index`, read back from memory or the file (`Ok(None)`: no
    /// such live entry, or not a command). Blocking IO: for the rare path of a replica whose
    /// own copy of a record failed.
    pub fn command(&self, index: u64) -> io::Result<Option<Vec<u8>>> {
        let g = self.inner.lock();
        let Some(slot) = g.entries.get(&index) else {
            return Ok(None);
        };
        Ok(match g.get(slot)?.payload {
            openraft::EntryPayload::Normal(cmd) => Some(cmd.payload),
            _ => None,
        })
    }

    /// Runs `f` on the file under the lock, on the blocking pool, once the writer is idle
    /// (everything appended is in the file).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut LogFile) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let (inner, idle) = (self.inner.clone(), self.idle.clone());
        tokio::task::spawn_blocking(move || {
            let mut g = inner.lock();
            while g.writing {
                idle.wait(&mut g);
            }
            f(&mut g)
        })
        .await
        .map_err(io::Error::other)?
    }

    /// The writer: writes what is queued in one `write` and one `fdatasync`, tells openraft
    /// those batches are flushed, and goes on until nothing is queued. Runs on the blocking
    /// pool without holding the lock during IO, so readers and appends go on meanwhile.
    fn write_queued(inner: &Mutex<LogFile>, idle: &Condvar) {
        loop {
            let mut g = inner.lock();
            if g.queued.is_empty() || g.poisoned {
                let waiting = std::mem::take(&mut g.waiting);
                g.queued.clear();
                g.writing = false;
                idle.notify_all();
                drop(g);
                for cb in waiting {
                    cb.log_io_completed(Err(io::Error::other(
                        "cluster log poisoned by an earlier write failure",
                    )));
                }
                return;
            }
            let buf = std::mem::take(&mut g.queued);
            let waiting = std::mem::take(&mut g.waiting);
            let (file, at) = (g.file.clone(), g.end - buf.len() as u64);
            drop(g);
            let r =
                std::os::unix::fs::FileExt::write_all_at(&*file, &buf, at).and_then(|()| file.sync_data());
            {
                let mut g = inner.lock();
                match &r {
                    Ok(()) => {
                        g.written = g.written.max(at + buf.len() as u64);
                        g.evict();
                    }
                    Err(_) => g.poisoned = true,
                }
            }
            for cb in waiting {
                cb.log_io_completed(match &r {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                });
            }
        }
    }
}

fn io_err(e: &io::Error) -> AnyError {
    AnyError::new(e)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        // An entry no longer cached is read back under the lock, so no truncate or compaction
        // changes the file meanwhile (the rare path: a follower far behind).
        let g = self.inner.lock();
        g.entries
            .range(range)
            .map(|(_, s)| g.get(s))
            .collect::<io::Result<Vec<Entry>>>()
            .map_err(|e| StorageIOError::read_logs(io_err(&e)).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        Ok(self.inner.lock().log_state())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |f| {
            let mut st = f.state.clone();
            st.vote = Some(vote);
            f.save_state(st)
        })
        .await
        .map_err(|e| StorageIOError::write_vote(io_err(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.inner.lock().state.vote)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let batch: Vec<Entry> = entries.into_iter().collect();
        let start = {
            let mut g = self.inner.lock();
            if let Err(e) = g.enqueue(batch) {
                drop(g);
                let err = StorageIOError::write_logs(io_err(&e));
                callback.log_io_completed(Err(e));
                return Err(err.into());
            }
            g.waiting.push(callback);
            !std::mem::replace(&mut g.writing, true)
        };
        if start {
            let (inner, idle) = (self.inner.clone(), self.idle.clone());
            tokio::task::spawn_blocking(move || Self::write_queued(&inner, &idle));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |f| f.truncate(log_id.index))
            .await
            .map_err(|e| StorageIOError::write_logs(io_err(&e)).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |f| f.purge(log_id))
            .await
            .map_err(|e| StorageIOError::write_logs(io_err(&e)).into())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::types::Command;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Command {
                id: index as u128,
                payload: format!("cmd-{index}").into_bytes(),
            }),
        }
    }

    /// A log holding entries 1..=3 of term 1; returns the log file's path.
    fn log_of_three(dir: &Path) -> PathBuf {
        let mut f = LogFile::open(dir).unwrap();
        f.append((1..=3).map(|i| entry(1, i)).collect()).unwrap();
        dir.join(LOG_FILE)
    }

    fn indexes(f: &LogFile) -> Vec<u64> {
        f.entries.keys().copied().collect()
    }

    #[test]
    fn append_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut f = LogFile::open(dir.path()).unwrap();
            f.append((1..=3).map(|i| entry(1, i)).collect()).unwrap();
            f.append(vec![entry(2, 4)]).unwrap();
        }
        let f = LogFile::open(dir.path()).unwrap();
        assert_eq!(indexes(&f), vec![1, 2, 3, 4]);
        assert_eq!(f.get(&f.entries[&4]).unwrap(), entry(2, 4));
        assert_eq!(f.log_state().last_log_id, Some(entry(2, 4).log_id));
    }

    #[test]
    fn vote_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let vote = Vote::new(7, 42);
        {
            let mut f = LogFile::open(dir.path()).unwrap();
            f.save_state(HardState {
                vote: Some(vote),
                last_purged: None,
            })
            .unwrap();
        }
        let f = LogFile::open(dir.path()).unwrap();
        assert_eq!(f.state.vote, Some(vote));
        assert!(!dir.path().join("raft.state.tmp").exists());
    }

    #[test]
    fn truncate_then_append_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut f = LogFile::open(dir.path()).unwrap();
            f.append((1..=5).map(|i| entry(1, i)).collect()).unwrap();
            f.truncate(3).unwrap();
            assert_eq!(indexes(&f), vec![1, 2]);
            f.append(vec![entry(2, 3)]).unwrap();
        }
        let f = LogFile::open(dir.path()).unwrap();
        assert_eq!(indexes(&f), vec![1, 2, 3]);
        assert_eq!(f.entries[&3].log_id.leader_id.term, 2);
    }

    #[test]
    fn purge_survives_restart_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let big = |i: u64| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
            payload: EntryPayload::Normal(Command {
                id: i as u128,
                payload: vec![i as u8; 4096],
            }),
        };
        {
            let mut f = LogFile::open(dir.path()).unwrap();
            f.append((1..=40).map(big).collect()).unwrap();
            f.purge(big(10).log_id).unwrap();
            // 10 of 40 records dead: not yet worth a rewrite.
            assert!(f.end > 40 * 4096);
            f.purge(big(30).log_id).unwrap();
            // 30 of 40 dead: rewritten.
            assert!(f.end < 11 * 4200, "compacted to {}", f.end);
            f.append(vec![big(41)]).unwrap();
        }
        let f = LogFile::open(dir.path()).unwrap();
        assert_eq!(indexes(&f), (31..=41).collect::<Vec<_>>());
        let st = f.log_state();
        assert_eq!(st.last_purged_log_id, Some(big(30).log_id));
        assert_eq!(st.last_log_id, Some(big(41).log_id));
    }

    #[test]
    fn purge_past_the_end_leaves_an_empty_log_that_reports_the_purge_point() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut f = LogFile::open(dir.path()).unwrap();
            f.append((1..=3).map(|i| entry(1, i)).collect()).unwrap();
            f.purge(entry(3, 9).log_id).unwrap();
            f.append(vec![entry(3, 10)]).unwrap();
        }
        let f = LogFile::open(dir.path()).unwrap();
        assert_eq!(indexes(&f), vec![10]);
        assert_eq!(f.log_state().last_purged_log_id, Some(entry(3, 9).log_id));
    }

    fn big(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command {
                id: index as u128,
                payload: vec![index as u8; 64 << 10],
            }),
        }
    }

    #[test]
    fn only_recent_entries_stay_in_memory_and_older_ones_read_back_across_compaction_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = LogFile::open(dir.path()).unwrap();
        for i in 1..=100 {
            f.append(vec![big(i)]).unwrap();
        }
        let cached = f.entries.values().filter(|s| s.entry.is_some()).count();
        assert!(f.cached.0 <= CACHE_BYTES, "{} cached bytes", f.cached.0);
        // 2 MiB of 64 KiB records (plus framing), or 256 KiB's worth while other tests'
        // logs in this process keep more than the node's budget: the newest.
        assert!((2..=32).contains(&cached), "{cached} of 100 cached");
        assert!(f.entries[&1].entry.is_none() && f.entries[&100].entry.is_some());
        for i in 1..=100 {
            assert_eq!(f.get(&f.entries[&i]).unwrap(), big(i), "entry {i}");
        }
        // Purging 60 compacts the file (copied as it is); the rest still read back.
        f.purge(LogId::new(CommittedLeaderId::new(1, 1), 60)).unwrap();
        let len = fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        assert!(len < 41 * (64 << 10), "compacted to {len} bytes");
        for i in 61..=100 {
            assert_eq!(
                f.get(&f.entries[&i]).unwrap(),
                big(i),
                "entry {i} after compaction"
            );
        }
        drop(f);
        let f = LogFile::open(dir.path()).unwrap();
        assert!(f.cached.0 <= CACHE_BYTES);
        assert_eq!(indexes(&f), (61..=100).collect::<Vec<_>>());
        for i in 61..=100 {
            assert_eq!(f.get(&f.entries[&i]).unwrap(), big(i), "entry {i} after restart");
        }
    }

    /// A log keeps 2 MiB of recent entries decoded while the process's logs together keep
    /// less than the node's budget, and trims to 256 KiB while they keep more.
    #[test]
    fn a_log_keeps_less_while_all_logs_together_pass_the_node_budget() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = LogFile::open(dir.path()).unwrap();
        let mut i = 0;
        let mut append = |f: &mut LogFile, n: u64| {
            for _ in 0..n {
                i += 1;
                f.append(vec![big(i)]).unwrap();
            }
        };
        append(&mut f, 40);
        // Other tests' logs in this process may hold the node over its budget meanwhile.
        if NODE_CACHED.load(Ordering::Relaxed) <= NODE_CACHE_BYTES {
            assert!(f.cached.0 > CACHE_BYTES_SHARED, "{} cached bytes", f.cached.0);
        }
        assert!(f.cached.0 <= CACHE_BYTES);
        // Other groups take the node over its budget: the next append trims this log.
        let mut others = Cached::default();
        others.add(NODE_CACHE_BYTES + 1);
        append(&mut f, 1);
        assert!(f.cached.0 <= CACHE_BYTES_SHARED, "{} cached bytes", f.cached.0);
        drop(others);
        for i in 1..=41 {
            assert_eq!(f.get(&f.entries[&i]).unwrap(), big(i), "entry {i}");
        }
    }

    /// An evicted entry whose record was damaged on disk is an error when read back (openraft
    /// gets a storage error), never another entry or a panic.
    #[tokio::test]
    async fn a_damaged_evicted_record_is_an_error_when_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = LogFile::open(dir.path()).unwrap();
        for i in 1..=100 {
            f.append(vec![big(i)]).unwrap();
        }
        assert!(f.entries[&2].entry.is_none(), "entry 2 is evicted");
        let at = f.entries[&2].off + 100;
        std::os::unix::fs::FileExt::write_all_at(&*f.file, &[0xAB; 4], at).unwrap();
        let err = f.get(&f.entries[&2]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert_eq!(
            f.get(&f.entries[&1]).unwrap(),
            big(1),
            "its neighbour still reads"
        );
        let mut store = LogStore {
            inner: Arc::new(Mutex::new(f)),
            idle: Arc::new(Condvar::new()),
        };
        assert!(store.try_get_log_entries(1..=3).await.is_err());
        assert_eq!(store.try_get_log_entries(90..=90).await.unwrap(), vec![big(90)]);
        // A replica reading a command back (its own copy failed) gets the same answers.
        assert!(store.command(2).is_err());
        assert_eq!(store.command(1).unwrap(), Some(vec![1u8; 64 << 10]));
        assert_eq!(store.command(100).unwrap(), Some(vec![100u8; 64 << 10]), "cached");
        assert_eq!(store.command(101).unwrap(), None, "no such entry");
    }

    #[test]
    fn torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_of_three(dir.path());
        let full = fs::read(&path).unwrap();
        // Every cut inside the last record (header or payload) recovers the first two.
        let last_start = {
            let f = LogFile::open(dir.path()).unwrap();
            f.entries[&3].off as usize
        };
        for cut in last_start + 1..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let mut f = LogFile::open(dir.path()).unwrap();
            assert_eq!(indexes(&f), vec![1, 2], "cut at {cut}");
            assert_eq!(fs::metadata(&path).unwrap().len(), last_start as u64);
            // And the log goes on from there.
            f.append(vec![entry(2, 3)]).unwrap();
            drop(f);
            assert_eq!(indexes(&LogFile::open(dir.path()).unwrap()), vec![1, 2, 3]);
        }
        // A flipped byte in the last record's payload: torn too.
        let mut bad = full.clone();
        *bad.last_mut().unwrap() ^= 0xff;
        fs::write(&path, &bad).unwrap();
        assert_eq!(indexes(&LogFile::open(dir.path()).unwrap()), vec![1, 2]);
    }

    #[test]
    fn a_failed_write_poisons_the_log_until_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_of_three(dir.path());
        let mut f = LogFile::open(dir.path()).unwrap();
        // A read-only handle makes the next write fail, as a full or failing disk would.
        f.file = Arc::new(File::open(&path).unwrap());
        assert!(f.append(vec![entry(1, 4)]).is_err());
        f.file = Arc::new(OpenOptions::new().read(true).write(true).open(&path).unwrap());
        let refused = f.append(vec![entry(1, 4)]).unwrap_err();
        assert!(refused.to_string().contains("poisoned"), "{refused}");
        assert!(f.save_state(HardState::default()).is_err());
        assert!(f.truncate(2).is_err());
        drop(f);
        // What was durable before the failure is all there after a restart.
        let mut f = LogFile::open(dir.path()).unwrap();
        assert_eq!(indexes(&f), vec![1, 2, 3]);
        f.append(vec![entry(1, 4)]).unwrap();
    }

    /// The store's own writer (not the test-only synchronous `append`): a failed write poisons
    /// the log, the writer goes idle, and later appends are refused.
    #[test]
    fn the_writers_failed_write_poisons_the_log_and_refuses_later_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_of_three(dir.path());
        let mut f = LogFile::open(dir.path()).unwrap();
        f.file = Arc::new(File::open(&path).unwrap());
        f.enqueue(vec![entry(1, 4)]).unwrap();
        f.writing = true;
        let (inner, idle) = (Mutex::new(f), Condvar::new());
        LogStore::write_queued(&inner, &idle);
        let mut f = inner.into_inner();
        assert!(f.poisoned && !f.writing && f.queued.is_empty());
        let refused = f.enqueue(vec![entry(1, 5)]).unwrap_err();
        assert!(refused.to_string().contains("poisoned"), "{refused}");
        drop(f);
        let f = LogFile::open(dir.path()).unwrap();
        assert_eq!(indexes(&f), vec![1, 2, 3]);
    }

    #[test]
    fn bad_crc_before_the_tail_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_of_three(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        bytes[8 + 8 + 1] ^= 0xff; // first record's payload
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            LogFile::open(dir.path()),
            Err(ClusterError::Corruption { .. })
        ));
    }

    #[tokio::test]
    async fn raft_log_storage_api() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        assert!(store.is_pristine());
        store.save_vote(&Vote::new(3, 9)).await.unwrap();
        store
            .inner
            .lock()
            .append((1..=4).map(|i| entry(3, i)).collect())
            .unwrap();
        store.truncate(entry(3, 4).log_id).await.unwrap();
        store.purge(entry(3, 1).log_id).await.unwrap();
        let got = store.try_get_log_entries(0..10).await.unwrap();
        assert_eq!(got, vec![entry(3, 2), entry(3, 3)]);
        drop(store);
        let mut store = LogStore::open(dir.path()).unwrap();
        assert!(!store.is_pristine());
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(3, 9)));
        let st = store.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(entry(3, 1).log_id));
        assert_eq!(st.last_log_id, Some(entry(3, 3).log_id));
    }
}
