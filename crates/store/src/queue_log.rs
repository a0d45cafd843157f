//! [`QueueLog`]: one queue's durable messages — the segment files of its directory, the
//! in-memory index of which messages in each segment are still live, buffered appends, acks
//! and delivery counters, reads for paging, and recovery on open.
//!
//! The index holds nothing per message: per segment a record count, a live count, the end of
//! its last record, and an [`AckedSet`] (a bitmap of acked records, allocated on the first ack
//! in the segment). Page-in reads and purges find the records by walking the segment's bytes,
//! so a backlog left on disk costs about 100 bytes of memory per 8 MiB segment.
//!
//! # Layout of `<root>/queues/<name>/`
//!
//! - `msgs.0000000001`, `msgs.0000000002`, …: message segments (10-digit numbers). A segment
//!   is written until it would pass `segment_size`, then sealed; a message larger than that
//!   gets a segment of its own. Each open of the log starts a *new* segment on the first
//!   append, so a sealed segment is never written again (and a stale ack can never hit a
//!   message written later at the same offset).
//! - `acks.0000000001`, …: one per segment, created on the segment's first ack or counts
//!   update, holding ack and counts records that name messages by byte offset (lavinmq's
//!   layout).
//! - A segment and its ack file are unlinked (segment first, so a crash in between never
//!   resurrects acked messages) as soon as every message in it is acked — unless it is the
//!   segment being written, which is checked again when it is sealed.
//!
//! Record encodings are in [`format`](mod@crate::format).
//!
//! # Recovery
//!
//! Segments are scanned in order; each file is read whole and every record CRC-checked. A torn
//! record at the end of a file (frame past end of file, CRC failure on the last record, or a
//! zero-filled tail) is cut off; corruption before the tail is reported in the
//! [`RecoveryReport`] with file and offset, the bad record is skipped when its length is sane
//! (otherwise the rest of that file), and recovery carries on. A damaged ack file is rewritten
//! from what could be read, so later acks are not appended after garbage. Segments whose
//! messages are all acked are removed; live messages are returned in seq order with their
//! counters.
//!
//! # Delivered marks
//!
//! [`QueueLog::mark_delivered`] buffers a small record (like an ack) when a message is handed
//! to a consumer, so that after a restart — clean or not — only messages delivered before it
//! come back with `delivered` set (the `redelivered` flag; RabbitMQ records the same in its
//! queue index). The records reach the OS with the log's next [`flush`](QueueLog::flush),
//! which the broker runs before the deliveries could have gone far; a crash can lose the marks
//! of the last moment's deliveries, as RabbitMQ's index journal can. Segments written before
//! delivered records existed lack the header flag that says they are recorded: all their
//! messages count as delivered.
//!

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::acked::AckedSet;
use crate::error::{StoreError, io_at};
use crate::format::{
    self, AckRecord, FRAME_LEN, HEADER_LEN, HeaderCheck, MAGIC_ACK_INDEX, MAGIC_ACKS, MAGIC_MSGS,
};
use crate::fs::{FileHandle, FileSystem};
use crate::report::{RecoveryReport, Truncation};
use crate::sync::{FileRef, Shared};

/// Where a message lives: its segment number and the byte offset of its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgPos {
    /// Segment number (`msgs.NNNNNNNNNN`).
    pub segment: u32,
    /// Byte offset of the record in the segment.
    pub offset: u32,
}

/// A live message found by recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// Its position, for later [`QueueLog::ack`] / [`QueueLog::set_counts`] / [`QueueLog::read`].
    pub pos: MsgPos,
    /// The sequence number given to [`QueueLog::append`].
    pub seq: u64,
    /// The last durable delivery count (0 if never set).
    pub delivery_count: u32,
    /// The last durable acquired count (0 if never set).
    pub acquired_count: u32,
    /// It may have been delivered before the log was opened (see the module doc).
    pub delivered: bool,
    /// The payload, as appended.
    pub payload: Bytes,
}

/// A live message found by recovery, borrowed from the segment being scanned: the caller of
/// [`Store::open_queue_with`](crate::Store::open_queue_with) decides what to keep in memory
/// (copying the payload) and what to leave on disk for [`QueueLog::read_batch`].
#[derive(Clone, Copy, Debug)]
pub struct RecoveredRef<'a> {
    /// Its position.
    pub pos: MsgPos,
    /// The sequence number given to [`QueueLog::append`].
    pub seq: u64,
    /// The last durable delivery count (0 if never set).
    pub delivery_count: u32,
    /// The last durable acquired count (0 if never set).
    pub acquired_count: u32,
    /// It may have been delivered before the log was opened (see the module doc).
    pub delivered: bool,
    /// The payload, as appended.
    pub payload: &'a [u8],
}

impl RecoveredRef<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> Recovered {
        Recovered {
            pos: self.pos,
            seq: self.seq,
            delivery_count: self.delivery_count,
            acquired_count: self.acquired_count,
            delivered: self.delivered,
            payload: Bytes::copy_from_slice(self.payload),
        }
    }
}

/// A page-in read planned by [`QueueLog::plan_read`]: byte ranges of segment files, read by
/// [`read`](Self::read) without the log (on a blocking thread, say) and taken back by
/// [`QueueLog::finish_read`].
#[derive(Debug)]
pub struct ReadPlan {
    runs: Vec<ReadRun>,
    /// Where to continue if the plan reads nothing.
    next: MsgPos,
    max_msgs: usize,
    max_bytes: usize,
}

/// One `pread` of a plan: a run of records in one segment.
#[derive(Debug)]
struct ReadRun {
    segment: u32,
    path: PathBuf,
    /// The open segment file, until read.
    handle: Option<Arc<dyn FileHandle>>,
    /// Where the read starts: a record's offset.
    first: u64,
    /// Where it ends (a record cut here is read again by the next plan).
    end: u64,
    /// The end of the segment's last record when planned.
    seg_end: u64,
    /// The segment's deliveries were recorded (see the module doc).
    recorded: bool,
    /// What was read.
    data: Bytes,
    /// A failed read: its path, error kind and message (an `io::Error` is not `Clone`).
    error: Option<(PathBuf, std::io::ErrorKind, String)>,
}

impl ReadPlan {
    /// Whether it reads nothing (no live record at or after the position).
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Reads the planned byte ranges: the file IO of a page-in, one `pread` per run. Blocking.
    pub fn read(mut self) -> ReadPlan {
        for run in &mut self.runs {
            let Some(handle) = run.handle.take() else { continue };
            let mut buf = vec![0u8; (run.end - run.first) as usize];
            let mut got = match read_upto(&*handle, &mut buf, run.first) {
                Ok(got) => got,
                Err(e) => {
                    run.error = Some((run.path.clone(), e.kind(), e.to_string()));
                    continue;
                }
            };
            // The first record always comes back whole, so every read makes progress.
            if got >= FRAME_LEN {
                let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
                let need = FRAME_LEN + len;
                if len <= format::MAX_BODY && need > got && run.first + need as u64 <= run.seg_end {
                    buf.resize(need, 0);
                    match read_upto(&*handle, &mut buf[got..], run.first + got as u64) {
                        Ok(more) => got += more,
                        Err(e) => {
                            run.error = Some((run.path.clone(), e.kind(), e.to_string()));
                            continue;
                        }
                    }
                    run.end = run.first + need as u64;
                }
            }
            buf.truncate(got);
            run.data = Bytes::from(buf);
        }
        self
    }
}

/// Buffered bytes past this size are pushed to the OS without waiting for `flush`.
const WRITE_BUF: usize = 256 * 1024;
/// Same, for one ack file.
const ACK_BUF: usize = 16 * 1024;
/// Small reads fetch this much in one syscall.
const READ_AHEAD: usize = 4096;

/// The ack-file index in a queue's directory (see [`format`](mod@crate::format)).
const ACK_INDEX: &str = "acks.index";

pub(crate) fn msgs_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("msgs.{n:010}"))
}

pub(crate) fn acks_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("acks.{n:010}"))
}

fn parse_numbered(name: &str, prefix: &str) -> Option<u32> {
    let digits = name.strip_prefix(prefix)?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The offset of the next good record of a segment's file after `from` (short of `end`), or
/// `end` if none: where reading resumes after damage found by a page-in read.
fn resync_in_file(fs: &dyn FileSystem, path: &Path, from: u64, end: u64) -> u64 {
    if from >= end {
        return end;
    }
    let Ok(h) = fs.open_read(path) else { return end };
    let mut data = vec![0u8; (end - from) as usize];
    let Ok(got) = read_upto(&*h, &mut data, from) else {
        return end;
    };
    data.truncate(got);
    format::next_good_record(&data, 0, |l| l >= 8).map_or(end, |q| from + q as u64)
}

/// Reads a whole file into memory.
pub(crate) fn read_all(fs: &dyn FileSystem, path: &Path) -> Result<Vec<u8>, StoreError> {
    let h = fs.open_read(path).map_err(|e| io_at(path, "open", e))?;
    let len = h.size().map_err(|e| io_at(path, "stat", e))? as usize;
    let mut data = vec![0u8; len];
    let n = read_upto(&*h, &mut data, 0).map_err(|e| io_at(path, "read", e))?;
    data.truncate(n);
    Ok(data)
}

/// Fills `buf` from `offset` unless end of file comes first; returns bytes read.
fn read_upto(h: &dyn FileHandle, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match h.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Pushes `buf` to the OS and marks the file dirty; `written` is the file's length before (the
/// bytes already handed to the OS), advanced on success. A failed write (a full disk) poisons
/// the store; whatever part of `buf` reached the file is cut off again, so the file ends with a
/// complete record and `buf` can be written again once the store recovers. If that cut fails
/// too, the file's state is unknown and the poison needs a restart.
fn write_out(
    shared: &Shared,
    file: &FileRef,
    buf: &mut Vec<u8>,
    written: &mut u64,
    path: &Path,
) -> Result<(), StoreError> {
    if buf.is_empty() {
        return Ok(());
    }
    if let Err(e) = file.handle.append(buf) {
        let err = io_at(path, "write", e);
        let undone = file.handle.truncate(*written);
        shared.poison(err.to_string(), undone.is_err());
        return Err(err);
    }
    shared.mark_dirty(file);
    *written += buf.len() as u64;
    buf.clear();
    Ok(())
}

struct AckWriter {
    file: FileRef,
    /// Bytes already handed to the OS (the file's length).
    written: u64,
    buf: Vec<u8>,
}

/// What the log keeps in memory about one segment: counts, where its records end, and which
/// are acked ([`AckedSet`]: nothing until one is). No per-message entry: records are found by
/// reading the segment (page-in reads, purges).
#[derive(Default)]
struct Segment {
    /// Records in it, live or acked.
    count: u32,
    live: u32,
    /// Byte offset just past its last good record (for the segment being written: past the
    /// last append).
    end: u32,
    acked: AckedSet,
    /// Byte ranges `[start, end)` found damaged (by recovery or a read): never records; reads
    /// skip them.
    damaged: Vec<(u32, u32)>,
    acks: Option<AckWriter>,
    /// Recovery found corruption: never removed automatically (kept for inspection).
    keep: bool,
    /// Its messages' deliveries are recorded (header flag); if not, they all count as
    /// delivered.
    deliveries_recorded: bool,
}

impl Segment {
    /// The end of the damaged range holding `offset`, if one does.
    fn damaged_end(&self, offset: u32) -> Option<u32> {
        self.damaged
            .iter()
            .find(|&&(s, e)| s <= offset && offset < e)
            .map(|&(_, e)| e)
    }

    /// Average record size (for planning reads).
    fn avg_record(&self) -> usize {
        ((self.end.saturating_sub(HEADER_LEN as u32) / self.count.max(1)) as usize)
            .max(crate::acked::GRAIN as usize)
    }
}

struct Writer {
    seg: u32,
    file: FileRef,
    /// Bytes already handed to the OS.
    written: u64,
    buf: Vec<u8>,
}

impl Writer {
    fn size(&self) -> u64 {
        self.written + self.buf.len() as u64
    }
}

/// One queue's message log. Owned by one queue (it is `Send`); every method takes `&mut self`.
/// Dropping it flushes buffered writes to the OS (not to disk: use the [`SyncHandle`]).
///
/// [`SyncHandle`]: crate::SyncHandle
pub struct QueueLog {
    name: String,
    dir: PathBuf,
    shared: Arc<Shared>,
    segments: BTreeMap<u32, Segment>,
    writer: Option<Writer>,
    next_segment: u32,
    live: u64,
    /// Segments with ack bytes waiting in their buffer.
    dirty_acks: Vec<u32>,
    read_cache: Option<(u32, Arc<dyn FileHandle>)>,
    report: RecoveryReport,
    /// Durable counters of recovered live messages that had any, until they are read back by
    /// [`read_batch`](Self::read_batch) or acked (messages left on disk carry none in memory).
    counts: HashMap<MsgPos, (u32, u32)>,
    /// Recovered live messages with a delivered record, until read back or acked.
    delivered: std::collections::HashSet<MsgPos>,
    /// Records in `acks.index`, to compact it once most of them describe removed segments.
    index_records: usize,
}

impl fmt::Debug for QueueLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueLog")
            .field("name", &self.name)
            .field("segments", &self.segments.len())
            .field("writing", &self.writer.as_ref().map(|w| w.seg))
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

impl QueueLog {
    /// Opens (recovering) the log in `<root>/queues/<name>`; the caller has validated and
    /// reserved `name`.
    pub(crate) fn open(
        shared: Arc<Shared>,
        name: &str,
        visit: &mut dyn FnMut(RecoveredRef<'_>),
    ) -> Result<QueueLog, StoreError> {
        let queues = shared.root.join("queues");
        let dir = queues.join(name);
        QueueLog::open_in(shared, name, dir, visit)
    }

    /// Like [`open`](Self::open) for a log in any directory `dir` (an offline check of a
    /// quarantined directory); `name` is only for messages.
    pub(crate) fn open_in(
        shared: Arc<Shared>,
        name: &str,
        dir: PathBuf,
        visit: &mut dyn FnMut(RecoveredRef<'_>),
    ) -> Result<QueueLog, StoreError> {
        let fs = shared.fs.clone();
        let queues = dir.parent().map(Path::to_path_buf).unwrap_or_default();
        if !fs.exists(&dir) {
            fs.create_dir_all(&dir).map_err(|e| io_at(&dir, "create", e))?;
            if shared.fsync {
                fs.sync_dir(&queues).map_err(|e| io_at(&queues, "fsync", e))?;
            }
        }
        let mut log = QueueLog {
            name: name.to_owned(),
            dir,
            shared,
            segments: BTreeMap::new(),
            writer: None,
            next_segment: 1,
            live: 0,
            dirty_acks: Vec::new(),
            read_cache: None,
            report: RecoveryReport::default(),
            counts: HashMap::new(),
            delivered: Default::default(),
            index_records: 0,
        };
        log.recover(visit)?;
        Ok(log)
    }

    fn recover(&mut self, visit: &mut dyn FnMut(RecoveredRef<'_>)) -> Result<(), StoreError> {
        let fs = self.shared.fs.clone();
        let fs = &*fs;
        let dir = self.dir.clone();
        let mut msgs = Vec::new();
        let mut acks = std::collections::BTreeSet::new();
        let mut dir_changed = false;
        for e in fs.list_dir(&dir).map_err(|e| io_at(&dir, "list", e))? {
            if let Some(n) = parse_numbered(&e.name, "msgs.") {
                msgs.push(n);
            } else if let Some(n) = parse_numbered(&e.name, "acks.") {
                acks.insert(n);
            } else if e.name.ends_with(".tmp") {
                // An interrupted ack-file rewrite; the original is still in place.
                let p = dir.join(&e.name);
                fs.remove_file(&p).map_err(|e| io_at(&p, "remove", e))?;
                dir_changed = true;
            }
        }
        msgs.sort_unstable();
        let had_acks: std::collections::BTreeSet<u32> = acks.clone();
        for (i, &n) in msgs.iter().enumerate() {
            self.report.segments_scanned += 1;
            let has_acks = acks.remove(&n);
            dir_changed |= self.recover_segment(n, has_acks, i + 1 == msgs.len(), visit)?;
        }
        // Ack files whose segment is gone: a crash between the two unlinks of a removal, or a
        // segment deleted behind the broker's back. Kept aside for inspection, never reused.
        let highest = msgs.last().copied().max(acks.last().copied()).unwrap_or(0);
        for n in acks {
            let p = acks_path(&dir, n);
            let aside = dir.join(format!("acks.{n:010}.orphan"));
            self.report.orphan_ack_files += 1;
            self.report.warn(
                &p,
                0,
                format!("msgs.{n:010} is missing; ack file kept as {}", aside.display()),
            );
            fs.rename(&p, &aside).map_err(|e| io_at(&p, "rename", e))?;
            dir_changed = true;
        }
        dir_changed |= self.check_index(&msgs, &had_acks)?;
        if dir_changed && self.shared.fsync {
            fs.sync_dir(&dir).map_err(|e| io_at(&dir, "fsync", e))?;
        }
        self.next_segment = highest.saturating_add(1);
        self.report.messages = self.live;
        Ok(())
    }

    /// Reads the queue index (`acks.index`) and reports what it names that is gone: ack files
    /// deleted behind the broker's back (the acked messages of that segment come back, as
    /// redeliveries) and segments created and never removed by the broker (their messages are
    /// lost). `present` lists the segments found at start. Then rewrites the index to list
    /// exactly the ack files and segments now present. Returns whether the directory changed.
    fn check_index(
        &mut self,
        present: &[u32],
        had_acks: &std::collections::BTreeSet<u32>,
    ) -> Result<bool, StoreError> {
        let fs = self.shared.fs.clone();
        let fs = &*fs;
        let path = self.dir.join(ACK_INDEX);
        let mut ack_files = std::collections::BTreeSet::new();
        let mut created = std::collections::BTreeSet::new();
        let mut damaged = false;
        let mut scanned = 0;
        if fs.exists(&path) {
            let data = read_all(fs, &path)?;
            if format::check_header(&data, MAGIC_ACK_INDEX) == HeaderCheck::Ok {
                let scan = format::scan(&data, |len| len == 4 || len == 5);
                damaged = !scan.problems.is_empty() || scan.torn_at.is_some();
                scanned = scan.records.len();
                for (_, r) in &scan.records {
                    let body = &data[r.clone()];
                    let n = u32::from_le_bytes(body[body.len() - 4..].try_into().expect("4 bytes"));
                    match (body.len(), body[0]) {
                        (4, _) => {
                            ack_files.insert(n);
                        }
                        (_, format::INDEX_SEGMENT_CREATED) => {
                            created.insert(n);
                        }
                        (_, format::INDEX_SEGMENT_REMOVED) => {
                            created.remove(&n);
                        }
                        _ => damaged = true,
                    }
                }
            } else {
                damaged = true;
            }
        }
        for &n in &ack_files {
            if self.segments.contains_key(&n) && !had_acks.contains(&n) {
                self.report.missing_ack_files += 1;
                self.report.warn(
                    &acks_path(&self.dir, n),
                    0,
                    "ack file missing (acks.index lists it): the acked messages of this segment come back as redeliveries",
                );
            }
        }
        for &n in &created {
            if present.binary_search(&n).is_err() {
                self.report.segment_gaps += 1;
                self.report.warn(
                    &msgs_path(&self.dir, n),
                    0,
                    "segment missing (acks.index records it created and never removed by the broker): its messages are lost",
                );
            }
        }
        let (segments, acks_now) = self.index_contents();
        // An index that lists nothing (every segment it recorded was removed) goes.
        let empty_file = segments.is_empty() && acks_now.is_empty() && scanned > 0;
        if !damaged
            && !empty_file
            && acks_now.iter().eq(ack_files.iter())
            && segments.iter().eq(created.iter())
        {
            self.index_records = scanned;
            return Ok(false);
        }
        self.write_index(&segments, &acks_now, self.shared.fsync)?;
        Ok(true)
    }

    /// What the index should list now: the segments, and those with an ack file.
    fn index_contents(&self) -> (Vec<u32>, Vec<u32>) {
        let segments: Vec<u32> = self.segments.keys().copied().collect();
        let acks = segments
            .iter()
            .copied()
            .filter(|&n| self.shared.fs.exists(&acks_path(&self.dir, n)))
            .collect();
        (segments, acks)
    }

    /// Replaces the index with one listing exactly `segments` and `acks` (or removes it when
    /// both are empty), through a temporary file and a rename.
    fn write_index(&mut self, segments: &[u32], acks: &[u32], fsync: bool) -> Result<(), StoreError> {
        let fs = self.shared.fs.clone();
        let fs = &*fs;
        let path = self.dir.join(ACK_INDEX);
        self.index_records = segments.len() + acks.len();
        if self.index_records == 0 {
            if fs.exists(&path) {
                fs.remove_file(&path).map_err(|e| io_at(&path, "remove", e))?;
            }
            return Ok(());
        }
        let mut buf = Vec::with_capacity(HEADER_LEN + self.index_records * 13);
        format::put_header(&mut buf, MAGIC_ACK_INDEX);
        for n in segments {
            format::put_record(
                &mut buf,
                &[&[format::INDEX_SEGMENT_CREATED][..], &n.to_le_bytes()[..]],
            );
        }
        for n in acks {
            format::put_record(&mut buf, &[&n.to_le_bytes()]);
        }
        let tmp = self.dir.join(format!("{ACK_INDEX}.tmp"));
        let h = fs.create_truncate(&tmp).map_err(|e| io_at(&tmp, "create", e))?;
        if let Err(e) = h.append(&buf) {
            let _ = fs.remove_file(&tmp);
            return Err(io_at(&tmp, "write", e));
        }
        if fsync {
            h.sync_data().map_err(|e| io_at(&tmp, "fsync", e))?;
        } else {
            self.shared.mark_dirty(&self.shared.file_ref(h));
        }
        fs.rename(&tmp, &path).map_err(|e| io_at(&path, "rename", e))?;
        Ok(())
    }

    /// Appends one record to the queue index (`acks.index`), synced with the next group
    /// commit. The file is opened for the append only (it changes once per segment), so a
    /// queue holds no descriptor for it.
    fn index_append(&mut self, body: &[&[u8]]) -> Result<(), StoreError> {
        let path = self.dir.join(ACK_INDEX);
        let fs = &*self.shared.fs;
        let existed = fs.exists(&path);
        let handle = fs.open_append(&path).map_err(|e| io_at(&path, "open", e))?;
        let mut buf = Vec::with_capacity(HEADER_LEN + 13);
        let mut written = if existed {
            handle.size().map_err(|e| io_at(&path, "stat", e))?
        } else {
            0
        };
        if written == 0 {
            format::put_header(&mut buf, MAGIC_ACK_INDEX);
        }
        format::put_record(&mut buf, body);
        let file = self.shared.file_ref(handle);
        write_out(&self.shared, &file, &mut buf, &mut written, &path)?;
        self.index_records += 1;
        Ok(())
    }

    /// Records a segment event (`kind`: created or removed) in the index without poisoning the
    /// store when the write fails: the record only serves recovery's reports (see
    /// `remove_segment`), and removing a segment must work on a full disk.
    fn index_note(&mut self, kind: u8, n: u32) {
        let path = self.dir.join(ACK_INDEX);
        let fs = &*self.shared.fs;
        let Ok(handle) = fs.open_append(&path) else { return };
        let Ok(size) = handle.size() else { return };
        let mut buf = Vec::with_capacity(HEADER_LEN + 13);
        if size == 0 {
            format::put_header(&mut buf, MAGIC_ACK_INDEX);
        }
        format::put_record(&mut buf, &[&[kind][..], &n.to_le_bytes()[..]]);
        if handle.append(&buf).is_err() {
            // Leave no partial record behind (a torn tail is rewritten at recovery anyway).
            let _ = handle.truncate(size);
            return;
        }
        self.shared.mark_dirty(&self.shared.file_ref(handle));
        self.shared.mark_dir_dirty(self.dir.clone());
        self.index_records += 1;
        // Mostly records of removed segments: rewrite it short (unsynced; a lost index costs
        // only recovery's detection of missing files, never a message).
        if self.index_records > 2 * self.segments.len() + 32 {
            let (segments, acks) = self.index_contents();
            let _ = self.write_index(&segments, &acks, false);
        }
    }

    /// Appends `n` to the index: ack file `acks.n` was just created.
    fn index_ack_file(&mut self, n: u32) -> Result<(), StoreError> {
        self.index_append(&[&n.to_le_bytes()])
    }

    /// Recovers segment `n`, handing its live messages to `visit` in log order; returns whether
    /// files were removed or renamed.
    fn recover_segment(
        &mut self,
        n: u32,
        has_acks: bool,
        last: bool,
        visit: &mut dyn FnMut(RecoveredRef<'_>),
    ) -> Result<bool, StoreError> {
        let fs = self.shared.fs.clone();
        let fs = &*fs;
        let path = msgs_path(&self.dir, n);
        let apath = acks_path(&self.dir, n);
        let data = read_all(fs, &path)?;
        match format::check_header(&data, MAGIC_MSGS) {
            HeaderCheck::Ok => {}
            HeaderCheck::Incomplete => {
                // Crash while creating the segment: it never held a message.
                fs.remove_file(&path).map_err(|e| io_at(&path, "remove", e))?;
                if has_acks {
                    fs.remove_file(&apath).map_err(|e| io_at(&apath, "remove", e))?;
                }
                self.report.segments_removed += 1;
                return Ok(true);
            }
            HeaderCheck::BadMagic => {
                self.report.warn(
                    &path,
                    0,
                    "bad file header; segment skipped and kept for inspection",
                );
                self.segments.insert(
                    n,
                    Segment {
                        keep: true,
                        ..Segment::default()
                    },
                );
                return Ok(false);
            }
            HeaderCheck::Version(version) => {
                return Err(StoreError::UnsupportedVersion { file: path, version });
            }
        }
        let scan = format::scan(&data, |len| len >= 8);
        let mut seg = Segment {
            keep: !scan.problems.is_empty(),
            deliveries_recorded: format::header_flags(&data) & format::FLAG_DELIVERIES != 0,
            ..Segment::default()
        };
        for p in &scan.problems {
            self.report.skipped_regions += 1;
            self.report.skipped_bytes += p.skipped;
            self.report.warn(&path, p.offset, p.reason.clone());
            seg.damaged.push((
                p.offset as u32,
                (p.offset + p.skipped).min(u64::from(u32::MAX)) as u32,
            ));
        }
        match scan.torn_at {
            // Only the segment written last can end in a torn write (every open starts a new
            // segment): cut it there.
            Some(at) if last => self.truncate(&path, at, data.len() as u64)?,
            // A sealed segment is never truncated: its bad tail is damage, kept for inspection.
            Some(at) => {
                seg.keep = true;
                self.report.damaged_sealed_tails += 1;
                self.report.skipped_bytes += data.len() as u64 - at;
                self.report.warn(
                    &path,
                    at,
                    format!(
                        "{}; damaged tail ({} bytes) of a sealed segment skipped; segment kept, not truncated",
                        scan.torn_reason,
                        data.len() as u64 - at
                    ),
                );
            }
            None => {}
        }
        // Only while recovering: the record offsets, to check the ack file's records against.
        let offsets: Vec<u32> = scan.records.iter().map(|(off, _)| *off).collect();
        seg.count = offsets.len() as u32;
        seg.live = seg.count;
        seg.end = scan.records.last().map_or(HEADER_LEN, |(_, r)| r.end) as u32;

        let mut counts: HashMap<u32, (u32, u32)> = HashMap::new();
        let mut delivered = std::collections::HashSet::new();
        let mut changed = false;
        if has_acks {
            changed |= self.recover_acks(n, &mut seg, &offsets, &mut counts, &mut delivered)?;
        }
        if seg.live == 0 && !seg.keep {
            fs.remove_file(&path).map_err(|e| io_at(&path, "remove", e))?;
            if fs.exists(&apath) {
                fs.remove_file(&apath).map_err(|e| io_at(&apath, "remove", e))?;
            }
            self.report.segments_removed += 1;
            return Ok(true);
        }
        for (off, range) in &scan.records {
            if seg.acked.contains(*off) {
                continue;
            }
            let (seq, payload) =
                format::decode_message(&data[range.clone()]).expect("length checked by scan");
            let (delivery_count, acquired_count) = counts.get(off).copied().unwrap_or((0, 0));
            let pos = MsgPos {
                segment: n,
                offset: *off,
            };
            if delivery_count != 0 || acquired_count != 0 {
                self.counts.insert(pos, (delivery_count, acquired_count));
            }
            let marked = delivered.contains(off);
            if marked {
                self.delivered.insert(pos);
            }
            visit(RecoveredRef {
                pos,
                seq,
                delivery_count,
                acquired_count,
                delivered: marked || acquired_count > 0 || !seg.deliveries_recorded,
                payload,
            });
        }
        self.live += seg.live as u64;
        self.segments.insert(n, seg);
        Ok(changed)
    }

    /// Applies `acks.n` to `seg`; returns whether the directory changed.
    fn recover_acks(
        &mut self,
        n: u32,
        seg: &mut Segment,
        offsets: &[u32],
        counts: &mut HashMap<u32, (u32, u32)>,
        delivered: &mut std::collections::HashSet<u32>,
    ) -> Result<bool, StoreError> {
        let fs = self.shared.fs.clone();
        let fs = &*fs;
        let apath = acks_path(&self.dir, n);
        let data = read_all(fs, &apath)?;
        match format::check_header(&data, MAGIC_ACKS) {
            HeaderCheck::Ok => {}
            HeaderCheck::Incomplete => {
                fs.remove_file(&apath).map_err(|e| io_at(&apath, "remove", e))?;
                return Ok(true);
            }
            HeaderCheck::BadMagic => {
                let aside = apath.with_extension(format!("{n:010}.corrupt"));
                self.report.warn(
                    &apath,
                    0,
                    format!("bad file header; acks ignored, file moved to {}", aside.display()),
                );
                fs.rename(&apath, &aside)
                    .map_err(|e| io_at(&apath, "rename", e))?;
                return Ok(true);
            }
            HeaderCheck::Version(version) => {
                return Err(StoreError::UnsupportedVersion { file: apath, version });
            }
        }
        let scan = format::scan(&data, |len| {
            len == format::ACK_BODY_LEN || len == format::COUNTS_BODY_LEN
        });
        let mut rewrite = !scan.problems.is_empty();
        for p in &scan.problems {
            self.report.warn(&apath, p.offset, p.reason.clone());
        }
        for (off, range) in &scan.records {
            let rec = match format::decode_ack(&data[range.clone()]) {
                Some(r) => r,
                None => {
                    self.report
                        .warn(&apath, *off as u64, "unknown ack record kind; skipped");
                    rewrite = true;
                    continue;
                }
            };
            let target = match rec {
                AckRecord::Ack(o) | AckRecord::Delivered(o) => o,
                AckRecord::Counts { offset, .. } => offset,
            };
            if offsets.binary_search(&target).is_err() {
                self.report.stray_records += 1;
                continue;
            }
            match rec {
                AckRecord::Ack(o) => {
                    if seg.acked.insert(o) {
                        seg.live -= 1;
                    }
                }
                AckRecord::Delivered(o) => {
                    delivered.insert(o);
                }
                AckRecord::Counts {
                    offset,
                    delivery,
                    acquired,
                } => {
                    counts.insert(offset, (delivery, acquired));
                }
            }
        }
        if rewrite && seg.live > 0 {
            self.rewrite_acks(n, seg, offsets, counts, delivered)?;
            return Ok(true);
        }
        if let Some(at) = scan.torn_at {
            self.truncate(&apath, at, data.len() as u64)?;
        }
        Ok(false)
    }

    /// Replaces `acks.n` with a clean file holding `seg`'s acks and the live messages'
    /// counters (temp file, fsync, rename, fsync directory).
    fn rewrite_acks(
        &mut self,
        n: u32,
        seg: &Segment,
        offsets: &[u32],
        counts: &HashMap<u32, (u32, u32)>,
        delivered: &std::collections::HashSet<u32>,
    ) -> Result<(), StoreError> {
        let fs = &*self.shared.fs;
        let apath = acks_path(&self.dir, n);
        let tmp = self.dir.join(format!("acks.{n:010}.tmp"));
        let mut buf = Vec::new();
        format::put_header(&mut buf, MAGIC_ACKS);
        for &off in offsets {
            if seg.acked.contains(off) {
                format::put_ack(&mut buf, off);
            } else {
                if let Some(&(d, a)) = counts.get(&off) {
                    format::put_counts(&mut buf, off, d, a);
                }
                if delivered.contains(&off) {
                    format::put_delivered(&mut buf, off);
                }
            }
        }
        let h = fs.create_truncate(&tmp).map_err(|e| io_at(&tmp, "create", e))?;
        h.append(&buf).map_err(|e| io_at(&tmp, "write", e))?;
        if self.shared.fsync {
            h.sync_data().map_err(|e| io_at(&tmp, "fsync", e))?;
        }
        drop(h);
        fs.rename(&tmp, &apath).map_err(|e| io_at(&apath, "rename", e))?;
        Ok(())
    }

    fn truncate(&mut self, path: &Path, at: u64, len: u64) -> Result<(), StoreError> {
        let h = self
            .shared
            .fs
            .open_append(path)
            .map_err(|e| io_at(path, "open", e))?;
        h.truncate(at).map_err(|e| io_at(path, "truncate", e))?;
        if self.shared.fsync {
            h.sync_data().map_err(|e| io_at(path, "fsync", e))?;
        }
        self.report.truncated.push(Truncation {
            file: path.to_path_buf(),
            offset: at,
            dropped: len - at,
        });
        Ok(())
    }

    /// The log's name (its directory under `queues/`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What recovery found when this log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Messages appended or recovered and not yet acked.
    pub fn live_count(&self) -> u64 {
        self.live
    }

    /// Bytes buffered in memory and not yet handed to the OS: records that wait for the next
    /// flush, or for a poisoned store to recover (they are lost if the process stops first).
    pub fn buffered_bytes(&self) -> u64 {
        let acks: usize = self
            .segments
            .values()
            .filter_map(|s| s.acks.as_ref())
            .map(|a| a.buf.len())
            .sum();
        (acks + self.writer.as_ref().map_or(0, |w| w.buf.len())) as u64
    }

    /// Segment files currently on disk (or being written).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Heap bytes of the log's in-memory index: per segment a fixed entry plus its acked
    /// bitmap (only while some but not all of its records are acked), and the counters of
    /// recovered messages not yet read back. Nothing per message left on disk.
    pub fn index_bytes(&self) -> usize {
        let per_segment = std::mem::size_of::<Segment>() + 2 * std::mem::size_of::<u32>();
        let segments: usize = self
            .segments
            .values()
            .map(|s| per_segment + s.acked.heap_bytes() + s.damaged.capacity() * 8)
            .sum();
        segments
            + self.counts.capacity() * (std::mem::size_of::<(MsgPos, (u32, u32))>() + 1)
            + self.delivered.capacity() * (std::mem::size_of::<MsgPos>() + 1)
    }

    /// Appends a message (buffered: call [`flush`](Self::flush), then
    /// [`SyncHandle::request`](crate::SyncHandle::request), before confirming it). Starts a
    /// new segment when this record would take the current one past `segment_size`.
    pub fn append(&mut self, seq: u64, payload: &[u8]) -> Result<MsgPos, StoreError> {
        self.shared.check()?;
        let max = (format::MAX_BODY - 8) as u64;
        if payload.len() as u64 > max {
            return Err(StoreError::TooLarge {
                len: payload.len() as u64,
                max,
            });
        }
        let rec = (FRAME_LEN + 8 + payload.len()) as u64;
        let roll = match &self.writer {
            None => true,
            Some(w) => w.size() > HEADER_LEN as u64 && w.size() + rec > self.shared.segment_size,
        };
        if roll {
            self.roll()?;
        }
        let w = self.writer.as_mut().expect("roll opened a segment");
        let offset = w.size() as u32;
        format::put_message(&mut w.buf, seq, payload);
        let seg = self
            .segments
            .get_mut(&w.seg)
            .expect("writer's segment is indexed");
        seg.count += 1;
        seg.live += 1;
        seg.end = offset + rec as u32;
        self.live += 1;
        let pos = MsgPos {
            segment: w.seg,
            offset,
        };
        // The record is buffered and indexed: if pushing the buffer out fails, the store is
        // poisoned and the record waits in the buffer (its confirm fails with the sync).
        if w.buf.len() >= WRITE_BUF {
            let _ = self.flush_writer();
        }
        Ok(pos)
    }

    fn flush_writer(&mut self) -> Result<(), StoreError> {
        if let Some(w) = &mut self.writer {
            write_out(
                &self.shared,
                &w.file,
                &mut w.buf,
                &mut w.written,
                &msgs_path(&self.dir, w.seg),
            )?;
        }
        Ok(())
    }

    /// Seals the segment being written (removing it if already fully acked) and starts the
    /// next one.
    fn roll(&mut self) -> Result<(), StoreError> {
        if self.writer.is_some() {
            self.flush_writer()?;
            let w = self.writer.take().expect("checked");
            if self.segments.get(&w.seg).is_some_and(|s| s.live == 0 && !s.keep) {
                self.remove_segment(w.seg)?;
            }
        }
        let n = self.next_segment;
        self.next_segment = n.checked_add(1).ok_or_else(|| StoreError::TooLarge {
            len: u64::from(u32::MAX) + 1,
            max: u64::from(u32::MAX),
        })?;
        let path = msgs_path(&self.dir, n);
        let handle = self
            .shared
            .fs
            .create_truncate(&path)
            .map_err(|e| io_at(&path, "create", e))?;
        // Recorded so that recovery can tell this segment deleted behind the broker's back
        // from one the broker removed (see `remove_segment`). Best effort: a failed write costs
        // the detection only, and the message path reports its own failures.
        self.index_note(format::INDEX_SEGMENT_CREATED, n);
        let mut buf = Vec::with_capacity(64 * 1024);
        format::put_header_flags(&mut buf, MAGIC_MSGS, format::FLAG_DELIVERIES);
        self.writer = Some(Writer {
            seg: n,
            file: self.shared.file_ref(handle),
            written: 0,
            buf,
        });
        self.segments.insert(
            n,
            Segment {
                deliveries_recorded: true,
                end: HEADER_LEN as u32,
                ..Segment::default()
            },
        );
        self.shared.mark_dir_dirty(self.dir.clone());
        Ok(())
    }

    /// Unlinks segment `n` and its ack file (segment first), after recording the removal in the
    /// queue index. That record is best effort: removing a segment frees space, so it must work
    /// on a full disk; if the record is lost (a write error, or a crash before the next group
    /// commit) the next recovery reports the segment missing once — a false alarm, never a
    /// loss.
    fn remove_segment(&mut self, n: u32) -> Result<(), StoreError> {
        self.segments.remove(&n);
        self.index_note(format::INDEX_SEGMENT_REMOVED, n);
        if self.read_cache.as_ref().is_some_and(|(s, _)| *s == n) {
            self.read_cache = None;
        }
        let fs = &*self.shared.fs;
        for path in [msgs_path(&self.dir, n), acks_path(&self.dir, n)] {
            match fs.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(&path, "remove", e)),
            }
        }
        self.shared.mark_dir_dirty(self.dir.clone());
        Ok(())
    }

    /// Checks that `pos` can name a record: its segment is in the log and the offset lies
    /// within the segment's records, outside damaged ranges. (Which offsets start records is
    /// not kept in memory: positions come from `append`, recovery and reads.)
    fn locate(&self, pos: MsgPos) -> Result<(), StoreError> {
        match self.segments.get(&pos.segment) {
            Some(s)
                if pos.offset >= HEADER_LEN as u32
                    && pos.offset < s.end
                    && s.damaged_end(pos.offset).is_none() =>
            {
                Ok(())
            }
            _ => Err(StoreError::UnknownPosition(pos)),
        }
    }

    /// Acks the message at `pos` (idempotent). Once every message of a sealed segment is
    /// acked, the segment and its ack file are unlinked. Works on a poisoned store too: the
    /// unlink frees space at once, and an ack record waits in memory until the store recovers
    /// (a restart before that redelivers the message).
    pub fn ack(&mut self, pos: MsgPos) -> Result<(), StoreError> {
        self.locate(pos)?;
        let writing = self.writer.as_ref().is_some_and(|w| w.seg == pos.segment);
        let seg = self.segments.get_mut(&pos.segment).expect("located");
        if seg.live == 0 || !seg.acked.insert(pos.offset) {
            return Ok(());
        }
        seg.live -= 1;
        self.live -= 1;
        if seg.live == 0 && !seg.keep {
            // Everything written so far is acked: a watermark instead of bits.
            seg.acked.all_below(seg.end);
        }
        if !self.counts.is_empty() {
            self.counts.remove(&pos);
        }
        if !self.delivered.is_empty() {
            self.delivered.remove(&pos);
        }
        if seg.live == 0 && !writing && !seg.keep {
            return self.remove_segment(pos.segment);
        }
        self.ack_record(pos.segment, |buf| format::put_ack(buf, pos.offset))
    }

    /// Records the message's delivery counters durably (the last call wins on recovery).
    /// A no-op for an acked message. On a poisoned store the record waits in memory.
    pub fn set_counts(
        &mut self,
        pos: MsgPos,
        delivery_count: u32,
        acquired_count: u32,
    ) -> Result<(), StoreError> {
        self.locate(pos)?;
        if self.segments[&pos.segment].acked.contains(pos.offset) {
            return Ok(());
        }
        self.ack_record(pos.segment, |buf| {
            format::put_counts(buf, pos.offset, delivery_count, acquired_count)
        })
    }

    /// Records that the message at `pos` was delivered (buffered like an ack), so that it comes
    /// back `delivered` after a restart. A no-op for an acked message.
    pub fn mark_delivered(&mut self, pos: MsgPos) -> Result<(), StoreError> {
        self.shared.check()?;
        self.locate(pos)?;
        if self.segments[&pos.segment].acked.contains(pos.offset) {
            return Ok(());
        }
        self.ack_record(pos.segment, |buf| format::put_delivered(buf, pos.offset))
    }

    /// Buffers one record for `acks.n`, opening (or creating) the file on first use.
    fn ack_record(&mut self, n: u32, put: impl FnOnce(&mut Vec<u8>)) -> Result<(), StoreError> {
        if self.segments.get(&n).is_some_and(|s| s.acks.is_none())
            && !self.shared.fs.exists(&acks_path(&self.dir, n))
        {
            self.index_ack_file(n)?;
        }
        let seg = self.segments.get_mut(&n).expect("caller located the segment");
        if seg.acks.is_none() {
            let path = acks_path(&self.dir, n);
            let fs = &*self.shared.fs;
            let existed = fs.exists(&path);
            let handle = fs.open_append(&path).map_err(|e| io_at(&path, "open", e))?;
            let mut buf = Vec::new();
            let written = if existed {
                handle.size().map_err(|e| io_at(&path, "stat", e))?
            } else {
                format::put_header(&mut buf, MAGIC_ACKS);
                self.shared.mark_dir_dirty(self.dir.clone());
                0
            };
            seg.acks = Some(AckWriter {
                file: self.shared.file_ref(handle),
                written,
                buf,
            });
            self.dirty_acks.push(n);
        }
        let aw = seg.acks.as_mut().expect("opened above");
        if aw.buf.is_empty() && self.dirty_acks.last() != Some(&n) {
            self.dirty_acks.push(n);
        }
        put(&mut aw.buf);
        // While the store is poisoned the records wait here; a failed write poisons it (and
        // keeps the buffer for the next flush), so the ack itself still counts in memory.
        if aw.buf.len() >= ACK_BUF && !self.shared.is_poisoned() {
            let _ = write_out(
                &self.shared,
                &aw.file,
                &mut aw.buf,
                &mut aw.written,
                &acks_path(&self.dir, n),
            );
        }
        Ok(())
    }

    /// Pushes every buffered write to the OS and marks the files dirty for the syncer. Call it,
    /// then [`SyncHandle::request`](crate::SyncHandle::request), to make the writes durable.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.shared.check()?;
        self.flush_writer()?;
        let dirty = std::mem::take(&mut self.dirty_acks);
        for (k, &n) in dirty.iter().enumerate() {
            if let Some(aw) = self.segments.get_mut(&n).and_then(|s| s.acks.as_mut())
                && let Err(e) = write_out(
                    &self.shared,
                    &aw.file,
                    &mut aw.buf,
                    &mut aw.written,
                    &acks_path(&self.dir, n),
                )
            {
                // This file and the ones after it are still owed their bytes.
                self.dirty_acks.extend_from_slice(&dirty[k..]);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Reads back the payload of the message at `pos` (for paging bodies out of memory);
    /// the record's CRC is checked.
    pub fn read(&mut self, pos: MsgPos) -> Result<Bytes, StoreError> {
        self.locate(pos)?;
        let path = msgs_path(&self.dir, pos.segment);
        let corrupt = |offset: u32, reason: String| StoreError::Corruption {
            file: path.clone(),
            offset: offset.into(),
            reason,
        };
        let handle = match &self.writer {
            Some(w) if w.seg == pos.segment => {
                if u64::from(pos.offset) >= w.written {
                    let rec = &w.buf[(u64::from(pos.offset) - w.written) as usize..];
                    let len = format::verify_record(rec).map_err(|r| corrupt(pos.offset, r))?;
                    return Ok(Bytes::copy_from_slice(&rec[FRAME_LEN + 8..FRAME_LEN + len]));
                }
                w.file.handle.clone()
            }
            _ => match &self.read_cache {
                Some((n, h)) if *n == pos.segment => h.clone(),
                _ => {
                    let h = self
                        .shared
                        .fs
                        .open_read(&path)
                        .map_err(|e| io_at(&path, "open", e))?;
                    self.read_cache = Some((pos.segment, h.clone()));
                    h
                }
            },
        };
        let mut buf = vec![0u8; READ_AHEAD];
        let mut got =
            read_upto(&*handle, &mut buf, pos.offset.into()).map_err(|e| io_at(&path, "read", e))?;
        if got < FRAME_LEN {
            return Err(corrupt(pos.offset, "record frame cut short".into()));
        }
        let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
        if !(8..=format::MAX_BODY).contains(&len) {
            return Err(corrupt(pos.offset, format!("invalid record length {len}")));
        }
        let total = FRAME_LEN + len;
        if total > buf.len() {
            buf.resize(total, 0);
            got += read_upto(&*handle, &mut buf[got..], u64::from(pos.offset) + got as u64)
                .map_err(|e| io_at(&path, "read", e))?;
        }
        buf.truncate(got.min(total));
        format::verify_record(&buf).map_err(|r| corrupt(pos.offset, r))?;
        if total <= READ_AHEAD {
            Ok(Bytes::copy_from_slice(&buf[FRAME_LEN + 8..total]))
        } else {
            Ok(Bytes::from(buf).slice(FRAME_LEN + 8..total))
        }
    }

    /// Reads live messages in log order starting at the first one at or after `from`, up to
    /// `max_msgs` messages or about `max_bytes` payload bytes (at least one message): the
    /// page-in path for messages kept only on disk. Reads are sequential, one `pread` per run of
    /// records. A record that fails its CRC is reported in the log's warnings, acked (so it is
    /// not read again) and skipped. Returns the messages and the position to continue from.
    ///
    /// The same as [`plan_read`](Self::plan_read), [`ReadPlan::read`] and
    /// [`finish_read`](Self::finish_read) in a row; a caller that must not hold its lock over
    /// the file reads uses those three instead.
    pub fn read_batch(
        &mut self,
        from: MsgPos,
        max_msgs: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Recovered>, MsgPos), StoreError> {
        let plan = self.plan_read(from, max_msgs, max_bytes)?;
        self.finish_read(plan.read())
    }

    /// Picks the bytes a page-in of up to `max_msgs` messages or about `max_bytes` payload
    /// bytes from `from` reads (see [`read_batch`](Self::read_batch)), without reading them:
    /// the plan holds the segment files' handles and byte ranges, so [`ReadPlan::read`] can
    /// run anywhere (a blocking thread) while the log's owner goes on. Buffered appends are
    /// pushed to the OS first, so every planned byte is in the file. `from` must be where a
    /// record starts (a position from `append`, recovery or a read's continuation) or the end
    /// of a segment's records.
    ///
    /// The log keeps no per-message index: the ranges are sized from each segment's average
    /// record size, and the records are found by walking the bytes read.
    ///
    /// The plan stays valid while the planned records stay in the log: the owner must not
    /// apply a plan's result after acking any of them (a purge from before `from`, say) — it
    /// checks that its own read position is still `from` before [`finish_read`](Self::finish_read).
    pub fn plan_read(
        &mut self,
        from: MsgPos,
        max_msgs: usize,
        max_bytes: usize,
    ) -> Result<ReadPlan, StoreError> {
        if self.writer.is_some() {
            // Records still in the write buffer are read from the file like the rest.
            self.flush_writer()?;
        }
        let limit = max_msgs.max(1);
        let mut runs = Vec::new();
        let mut est_msgs = 0usize;
        let mut est_bytes = 0usize;
        let mut next = from;
        let mut cursor = Some(from.segment);
        while let Some(c) = cursor {
            let Some((&n, seg)) = self.segments.range(c..).next() else {
                break;
            };
            cursor = n.checked_add(1);
            let start = if n == from.segment {
                from.offset.max(HEADER_LEN as u32)
            } else {
                HEADER_LEN as u32
            };
            if seg.live == 0 || start >= seg.end {
                next = MsgPos {
                    segment: n,
                    offset: seg.end.max(start),
                };
                continue;
            }
            // Enough bytes for the messages still wanted at this segment's average size, one
            // more record of slack, at least one page.
            let avg = seg.avg_record();
            let want = ((limit - est_msgs).saturating_mul(avg))
                .min(max_bytes.saturating_sub(est_bytes).saturating_add(avg))
                .saturating_add(avg)
                .max(READ_AHEAD);
            let end = (u64::from(start) + want as u64).min(u64::from(seg.end));
            let seg_end = u64::from(seg.end);
            let recorded = seg.deliveries_recorded;
            let path = msgs_path(&self.dir, n);
            let handle = self.segment_handle(n)?;
            runs.push(ReadRun {
                segment: n,
                path,
                handle: Some(handle),
                first: u64::from(start),
                end,
                seg_end,
                recorded,
                data: Bytes::new(),
                error: None,
            });
            let got = (end - u64::from(start)) as usize;
            est_msgs += got / avg;
            est_bytes += got;
            // Stopped inside this segment: the rest of it comes first next time.
            if end < seg_end || est_msgs >= limit || est_bytes >= max_bytes {
                break;
            }
        }
        Ok(ReadPlan {
            runs,
            next,
            max_msgs: limit,
            max_bytes,
        })
    }

    /// Takes the bytes a [`ReadPlan`] read back: walks the records, skips acked ones, checks
    /// each CRC, attaches the durable counters and delivered flag, reports (and acks) damaged
    /// records, and returns the messages and the position to continue from, as
    /// [`read_batch`](Self::read_batch) does. A read that failed is returned as the error
    /// (nothing of the plan was taken). If every record read was acked, it reads on (under the
    /// caller's lock: rare) until it finds a live one or the end of the log.
    pub fn finish_read(&mut self, done: ReadPlan) -> Result<(Vec<Recovered>, MsgPos), StoreError> {
        let mut done = done;
        loop {
            let start = done.runs.first().map(|r| MsgPos {
                segment: r.segment,
                offset: r.first as u32,
            });
            let (max_msgs, max_bytes) = (done.max_msgs, done.max_bytes);
            let (out, next) = self.take_read(done)?;
            if !out.is_empty() || start.is_none_or(|s| s == next) {
                return Ok((out, next));
            }
            done = self.plan_read(next, max_msgs, max_bytes)?;
            if done.is_empty() {
                return Ok((out, next));
            }
            done = done.read();
        }
    }

    /// One plan's records (see [`finish_read`](Self::finish_read)).
    fn take_read(&mut self, done: ReadPlan) -> Result<(Vec<Recovered>, MsgPos), StoreError> {
        if let Some(e) = done.runs.iter().find_map(|r| r.error.as_ref()) {
            return Err(io_at(&e.0, "read", std::io::Error::new(e.1, e.2.clone())));
        }
        let ReadPlan {
            runs,
            mut next,
            max_msgs,
            max_bytes,
        } = done;
        let fs = self.shared.fs.clone();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        // Damaged records found: acked (so never read again), then their ranges recorded.
        let mut bad = Vec::new();
        let mut damage: Vec<(u32, u32, u32)> = Vec::new();
        'runs: for run in runs {
            let n = run.segment;
            let Some(seg) = self.segments.get(&n) else {
                // Acked and removed since the plan was made.
                next = MsgPos {
                    segment: n,
                    offset: run.seg_end as u32,
                };
                continue;
            };
            let buf = run.data;
            let got_end = run.first + buf.len() as u64;
            let mut p = run.first;
            let mut full = false;
            while p < run.seg_end {
                if let Some(e) = seg.damaged_end(p as u32) {
                    p = u64::from(e);
                    continue;
                }
                let at = (p - run.first) as usize;
                let rest = buf.get(at..).unwrap_or(&[]);
                let why = match format::verify_record(rest) {
                    Ok(len) if len >= 8 => {
                        let rec = FRAME_LEN + len;
                        if !seg.acked.contains(p as u32) {
                            if out.len() >= max_msgs || (!out.is_empty() && bytes >= max_bytes) {
                                full = true;
                                break;
                            }
                            let pos = MsgPos {
                                segment: n,
                                offset: p as u32,
                            };
                            let body = &buf[at + FRAME_LEN..at + rec];
                            let (seq, _) = format::decode_message(body).expect("verified length");
                            let (delivery_count, acquired_count) = if self.counts.is_empty() {
                                (0, 0)
                            } else {
                                self.counts.remove(&pos).unwrap_or((0, 0))
                            };
                            let marked = !self.delivered.is_empty() && self.delivered.remove(&pos);
                            out.push(Recovered {
                                pos,
                                seq,
                                delivery_count,
                                acquired_count,
                                delivered: marked || acquired_count > 0 || !run.recorded,
                                payload: buf.slice(at + FRAME_LEN + 8..at + rec),
                            });
                            bytes += rec;
                        }
                        p += rec as u64;
                        continue;
                    }
                    Ok(len) => format!("invalid record length {len}"),
                    Err(reason) => reason,
                };
                // Not a whole good record at `p`.
                let len = rest
                    .get(..4)
                    .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as u64);
                let cut = len.is_none_or(|l| {
                    l <= format::MAX_BODY as u64 && at as u64 + FRAME_LEN as u64 + l > buf.len() as u64
                });
                if cut && got_end == run.end && run.end < run.seg_end {
                    // The plan's range ends inside this record: read it next time.
                    break;
                }
                // Damage since recovery (or a file cut short): report it, ack the record, and
                // resume at the next good record.
                let why = if got_end < run.end && cut {
                    "record beyond end of file".to_string()
                } else {
                    why
                };
                self.report.warn(&run.path, p, format!("{why}; message skipped"));
                bad.push(MsgPos {
                    segment: n,
                    offset: p as u32,
                });
                let resume = match format::next_good_record(&buf, at + 1, |l| l >= 8) {
                    Some(q) => run.first + q as u64,
                    None => resync_in_file(&*fs, &run.path, p + 1, run.seg_end),
                };
                damage.push((n, p as u32, resume as u32));
                p = resume;
                // What comes next was not necessarily read: plan again from there.
                if p < run.seg_end && p >= got_end {
                    break;
                }
            }
            next = MsgPos {
                segment: n,
                offset: p as u32,
            };
            if full || p < run.seg_end {
                break 'runs;
            }
        }
        for pos in bad {
            self.ack(pos)?;
        }
        for (n, s, e) in damage {
            if let Some(seg) = self.segments.get_mut(&n) {
                seg.damaged.push((s, e));
                seg.keep = true;
            }
        }
        Ok((out, next))
    }

    /// The offsets of the records of segment `n` at or after `start` (which starts a record),
    /// read from its file and, for the segment being written, its write buffer (not flushed:
    /// a purge must work on a poisoned store): a purge of messages kept only on disk.
    fn record_offsets(&mut self, n: u32, start: u32) -> Result<Vec<u32>, StoreError> {
        let Some(seg) = self.segments.get(&n) else {
            return Ok(Vec::new());
        };
        let (start, end) = (start.max(HEADER_LEN as u32), seg.end);
        if start >= end {
            return Ok(Vec::new());
        }
        let damaged = seg.damaged.clone();
        let path = msgs_path(&self.dir, n);
        // Bytes from `start` already in the file, then the rest from the write buffer.
        let (file_end, buffered) = match &self.writer {
            Some(w) if w.seg == n => {
                let from = u64::from(start).max(w.written) - w.written;
                (
                    w.written.min(u64::from(end)),
                    w.buf.get(from as usize..).unwrap_or(&[]).to_vec(),
                )
            }
            _ => (u64::from(end), Vec::new()),
        };
        let mut data = Vec::new();
        if u64::from(start) < file_end {
            let handle = self.segment_handle(n)?;
            data = vec![0u8; (file_end - u64::from(start)) as usize];
            let got = read_upto(&*handle, &mut data, start.into()).map_err(|e| io_at(&path, "read", e))?;
            data.truncate(got);
        }
        data.extend_from_slice(&buffered);
        let mut out = Vec::new();
        let mut p = start;
        while p < end {
            if let Some(&(_, e)) = damaged.iter().find(|&&(s, e)| s <= p && p < e) {
                p = e;
                continue;
            }
            let at = (p - start) as usize;
            let Some(len) = data
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            else {
                break;
            };
            if !(8..=format::MAX_BODY).contains(&len) || at + FRAME_LEN + len > data.len() {
                break;
            }
            out.push(p);
            p += (FRAME_LEN + len) as u32;
        }
        Ok(out)
    }

    /// Acks every live message at or after `from` (a purge of messages kept only on disk).
    /// Segments that become empty are unlinked without writing ack records — the one being
    /// written too (the next append starts a new one). Works on a poisoned store: unlinks free
    /// space at once, ack records for partly purged segments wait in memory until it recovers.
    /// Returns how many messages were acked.
    pub fn ack_from(&mut self, from: MsgPos) -> Result<u64, StoreError> {
        let writing = self.writer.as_ref().map(|w| w.seg);
        let segs: Vec<u32> = self.segments.range(from.segment..).map(|(&n, _)| n).collect();
        let mut acked = 0u64;
        for n in segs {
            let Some(seg) = self.segments.get(&n) else {
                continue;
            };
            if seg.live == 0 {
                continue;
            }
            let whole_segment = n != from.segment || from.offset <= HEADER_LEN as u32;
            // The live records at or after `from` (read from the file unless every one is).
            let tail = if whole_segment && !seg.keep {
                None
            } else {
                let start = if n == from.segment { from.offset } else { 0 };
                let offs = self.record_offsets(n, start)?;
                let seg = &self.segments[&n];
                Some(
                    offs.into_iter()
                        .filter(|&o| !seg.acked.contains(o))
                        .collect::<Vec<u32>>(),
                )
            };
            let seg = self.segments.get_mut(&n).expect("listed");
            let tail_live = tail.as_ref().map_or(seg.live, |t| t.len() as u32);
            if tail_live == seg.live && !seg.keep {
                self.live -= u64::from(tail_live);
                acked += u64::from(tail_live);
                if writing == Some(n) {
                    // Released below (no records to write for a file about to go).
                    seg.live = 0;
                    seg.acked.all_below(seg.end);
                } else {
                    self.remove_segment(n)?;
                }
                continue;
            }
            for offset in tail.unwrap_or_default() {
                self.ack(MsgPos { segment: n, offset })?;
                acked += 1;
            }
        }
        if !self.counts.is_empty() {
            self.counts.retain(|p, _| *p < from);
        }
        if !self.delivered.is_empty() {
            self.delivered.retain(|p| *p < from);
        }
        self.release_empty_writer()?;
        Ok(acked)
    }

    /// Unlinks the segment being written if none of its messages is live any more (after a
    /// purge: its space comes back at once, even on a poisoned store); the next append starts
    /// a new segment. Returns whether it did. Not for the hot path: a queue that drains to
    /// empty on every message would create a segment per message.
    pub fn release_empty_writer(&mut self) -> Result<bool, StoreError> {
        let Some(n) = self.writer.as_ref().map(|w| w.seg) else {
            return Ok(false);
        };
        if !self.segments.get(&n).is_some_and(|s| s.live == 0 && !s.keep) {
            return Ok(false);
        }
        // Nothing left to write for: drop the buffer and the file.
        self.writer = None;
        self.remove_segment(n)?;
        Ok(true)
    }

    /// A read handle for segment `n` (cached for the last segment read).
    fn segment_handle(&mut self, n: u32) -> Result<Arc<dyn FileHandle>, StoreError> {
        if let Some(w) = &self.writer
            && w.seg == n
        {
            return Ok(w.file.handle.clone());
        }
        if let Some((c, h)) = &self.read_cache
            && *c == n
        {
            return Ok(h.clone());
        }
        let path = msgs_path(&self.dir, n);
        let h = self
            .shared
            .fs
            .open_read(&path)
            .map_err(|e| io_at(&path, "open", e))?;
        self.read_cache = Some((n, h.clone()));
        Ok(h)
    }

    /// Flushes to the OS and closes the log, reporting a failed flush (dropping it flushes
    /// too, but silently).
    pub fn close(mut self) -> Result<(), StoreError> {
        self.flush()
    }
}

impl Drop for QueueLog {
    fn drop(&mut self) {
        if !self.shared.is_poisoned() {
            let _ = self.flush();
        }
        self.shared.open_queues().remove(&self.name);
    }
}
