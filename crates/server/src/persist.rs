//! Durability glue between the broker and `warren-store`: how a message is encoded into a
//! queue-log payload, how definitions (durable exchanges, queues, bindings) are encoded into
//! the definitions log — as the AMQP methods that declared them, the way LavinMQ does — and the
//! start-up recovery that replays definitions and reloads every durable queue's messages.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use warren_codec::methods::*;
use warren_codec::types::put_shortstr;
use warren_codec::{BasicProperties, Method, Reader};
use warren_core::Message;
use warren_core::queue::{Entry, StorePos};
use warren_store::{
    DataDirLock, DefinitionsLog, FileSystem, MsgPos, Recovered, Store, StoreError, StoreOptions, SyncHandle,
};

/// Packs a store position into the opaque [`StorePos`] core keeps per entry.
pub fn pack(pos: MsgPos) -> StorePos {
    StorePos(((pos.segment as u64) << 32) | pos.offset as u64)
}

/// Unpacks [`pack`].
pub fn unpack(p: StorePos) -> MsgPos {
    MsgPos {
        segment: (p.0 >> 32) as u32,
        offset: p.0 as u32,
    }
}

/// The queue-log directory name of a queue: a hash of vhost and name (filesystem-safe).
pub fn queue_dir(vhost: &str, queue: &str) -> String {
    let mut h = Sha256::new();
    h.update(vhost.as_bytes());
    h.update([0]);
    h.update(queue.as_bytes());
    h.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Flag bit: the broker dead-lettered the message.
const FLAG_DEAD_LETTERED: u8 = 1;
/// Flag bit: an enqueue timestamp (ms since the epoch, u64) follows the flags.
const FLAG_ENQUEUED_AT: u8 = 2;

/// Encodes a message as a queue-log payload:
/// `flags u8 | [enqueued_at u64] | exchange shortstr | routing key shortstr | properties | body`.
/// `enqueued_at` (when it was routed to its queues) lets TTLs be recomputed when the message
/// is read back (page-in, recovery).
pub fn encode_message(msg: &Message, enqueued_at: u64) -> BytesMut {
    let mut out = BytesMut::with_capacity(msg.body.len() + 72);
    out.put_u8(if msg.dead_lettered { FLAG_DEAD_LETTERED } else { 0 } | FLAG_ENQUEUED_AT);
    out.put_u64(enqueued_at);
    put_shortstr(&mut out, &msg.exchange);
    put_shortstr(&mut out, &msg.routing_key);
    msg.properties.encode(&mut out);
    out.extend_from_slice(&msg.body);
    out
}

/// Decodes [`encode_message`]: the message and its enqueue time (absent in records written
/// before it was recorded).
pub fn decode_message(payload: &Bytes) -> Option<(Message, Option<u64>)> {
    let mut r = Reader::new(payload);
    let flags = r.u8().ok()?;
    let enqueued_at = if flags & FLAG_ENQUEUED_AT != 0 {
        Some(r.u64().ok()?)
    } else {
        None
    };
    let exchange = r.shortstr().ok()?;
    let routing_key = r.shortstr().ok()?;
    let properties = BasicProperties::decode(&mut r).ok()?;
    let body = r.take_rest();
    let msg = Message {
        exchange,
        routing_key,
        properties,
        body,
        dead_lettered: flags & FLAG_DEAD_LETTERED != 0,
    };
    Some((msg, enqueued_at))
}

/// Encodes a definitions record: `vhost shortstr | method payload`.
pub fn encode_definition(vhost: &str, m: &Method) -> Bytes {
    let mut out = BytesMut::new();
    put_shortstr(&mut out, vhost);
    m.encode(&mut out);
    out.freeze()
}

/// Decodes [`encode_definition`].
pub fn decode_definition(rec: &Bytes) -> Option<(String, Method)> {
    let mut r = Reader::new(rec);
    let vhost = r.shortstr().ok()?.to_string();
    let rest = r.take_rest();
    Some((vhost, Method::decode(&rest).ok()?))
}

/// Tag of an access-control record (vhosts, users, permissions; see [`crate::access`]) in the
/// definitions log. Such a record is `0x00 | ACCESS_TAG | JSON`: where a method record has its
/// vhost's length (never 0: vhost names are not empty) and then the high byte of a class id
/// (always 0x00), so the two kinds never collide, and a broker that predates these records
/// skips them as undecodable.
pub const ACCESS_TAG: u8 = 0xA5;

/// Encodes an access-control record.
pub fn encode_access(rec: &serde_json::Value) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(0);
    out.put_u8(ACCESS_TAG);
    out.extend_from_slice(rec.to_string().as_bytes());
    out.freeze()
}

/// Decodes [`encode_access`]; `None` for a method record.
pub fn decode_access(rec: &Bytes) -> Option<serde_json::Value> {
    if rec.len() < 2 || rec[0] != 0 || rec[1] != ACCESS_TAG {
        return None;
    }
    serde_json::from_slice(&rec[2..]).ok()
}

/// The broker's durable store: message logs and the definitions log.
pub struct Persistence {
    /// Per-queue message logs.
    pub store: Store,
    /// Group commit.
    pub syncer: SyncHandle,
    /// Scratch logs of non-durable queues whose backlog outgrew memory (no fsync; wiped at
    /// every start).
    pub scratch: Store,
    defs: Mutex<DefinitionsLog>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// What opening the definitions log found (damaged records are dropped, reported here and
    /// the original file kept).
    pub definitions_report: warren_store::RecoveryReport,
    /// The exclusive lock on the data directory, held as long as the store is open.
    _lock: DataDirLock,
    /// Woken when the message store becomes poisoned (a failed write or fsync), so the alarm
    /// monitor re-checks at once instead of at its next sample.
    pub store_failed: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Persistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persistence").finish_non_exhaustive()
    }
}

impl Persistence {
    /// Opens the store under `data_dir`, returning the definitions records to replay. The
    /// directory's lock is taken first: while another broker holds it this fails with
    /// [`StoreError::Locked`] before anything is read. `fs` replaces the filesystem of the
    /// message store and the definitions log (fault injection in tests).
    pub fn open(
        data_dir: &Path,
        fs: Option<Arc<dyn FileSystem>>,
    ) -> Result<(Persistence, Vec<Bytes>), StoreError> {
        std::fs::create_dir_all(data_dir).map_err(StoreError::Io)?;
        let lock = DataDirLock::acquire(data_dir)?;
        let mut opts = StoreOptions::default();
        if let Some(fs) = fs {
            opts.fs = fs;
        }
        let store = Store::open(&data_dir.join("messages"), opts.clone())?;
        let store_failed = Arc::new(tokio::sync::Notify::new());
        let notify = store_failed.clone();
        store.set_poison_hook(Arc::new(move |info| {
            if info.restart_required {
                tracing::error!(
                    error = %info.error,
                    "message store failed (fsync): what is on disk is unknown; RESTART REQUIRED. \
                     Publishers stay blocked (disk alarm); unconfirmed publishes are nacked"
                );
            } else {
                tracing::error!(
                    error = %info.error,
                    "message store cannot write (disk full?): publishers are blocked (disk alarm) \
                     and unconfirmed publishes are nacked; it resumes by itself once space is free"
                );
            }
            notify.notify_one();
        }));
        let (defs, records) = DefinitionsLog::open(&data_dir.join("definitions.log"), opts.fs.clone())?;
        let definitions_report = defs.recovery_report().clone();
        for w in &definitions_report.warnings {
            tracing::warn!(
                "definitions log: {} at offset {}: {}",
                w.file.display(),
                w.offset,
                w.reason
            );
        }
        for t in &definitions_report.truncated {
            tracing::warn!(
                "definitions log: damaged final record at offset {} ({} bytes) dropped",
                t.offset,
                t.dropped
            );
        }
        let syncer = store.syncer();
        let scratch_dir = data_dir.join("transient");
        if scratch_dir.exists() {
            std::fs::remove_dir_all(&scratch_dir).map_err(StoreError::Io)?;
        }
        let scratch = Store::open(
            &scratch_dir,
            StoreOptions {
                fsync: false,
                ..StoreOptions::default()
            },
        )?;
        Ok((
            Persistence {
                store,
                syncer,
                scratch,
                defs: Mutex::new(defs),
                data_dir: data_dir.to_path_buf(),
                definitions_report,
                _lock: lock,
                store_failed,
            },
            records,
        ))
    }

    /// Appends one definitions record (fsync'd, off the async worker: see [`blocking`]).
    pub fn record(&self, vhost: &str, m: &Method) -> Result<(), StoreError> {
        self.record_raw(&encode_definition(vhost, m))
    }

    /// Appends one pre-encoded definitions record (fsync'd, off the async worker). A failure
    /// is logged and returned; the log refuses every later append until a restart (what is on
    /// disk after a failed write or fsync is unknown).
    pub fn record_raw(&self, rec: &Bytes) -> Result<(), StoreError> {
        let r = blocking(|| self.defs.lock().append(rec));
        if let Err(e) = &r {
            tracing::error!(
                "cannot persist definition: {e}; durable declarations are refused until a restart"
            );
        }
        r
    }

    /// Replaces the definitions log with a compacted snapshot.
    pub fn rewrite(&self, records: &[Bytes]) {
        if let Err(e) = blocking(|| self.defs.lock().rewrite(records)) {
            tracing::error!("cannot compact definitions: {e}");
        }
    }
}

/// Runs blocking disk work (an fsync of the definitions log, opening a queue's log) without
/// stalling the other tasks of the calling tokio worker: on the multi-threaded runtime the
/// worker hands its other tasks to another thread first (`block_in_place`); elsewhere (a
/// current-thread runtime, a plain thread) `f` simply runs.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// A message read back from a queue log (recovery or page-in) as a queue entry: its TTL is
/// recomputed from the enqueue time recorded with it (`expiry(enqueued_at, message TTL)`).
/// `None` (logged) for an undecodable record.
pub fn stored_entry(
    r: &Recovered,
    redelivered: bool,
    expiry: impl Fn(u64, Option<u64>) -> Option<u64>,
    queue: &str,
) -> Option<Entry> {
    let Some((msg, enqueued_at)) = decode_message(&r.payload) else {
        tracing::warn!(queue, seq = r.seq, "undecodable message record skipped");
        return None;
    };
    let expires_at = enqueued_at.and_then(|t| expiry(t, msg.expiration_ms().ok().flatten()));
    Some(Entry {
        seq: r.seq,
        msg: Arc::new(msg),
        redelivered: redelivered || r.acquired_count > 0,
        delivery_count: r.delivery_count,
        acquired_count: r.acquired_count,
        expires_at,
        pos: Some(pack(r.pos)),
    })
}

/// A durable queue's definition as a definitions record (also kept in the queue's own
/// directory, so that the directory can be re-attached if the definitions log loses it).
pub fn queue_record(vhost: &str, q: &warren_core::topology::QueueMeta) -> Bytes {
    let m: Method = QueueDeclare {
        ticket: 0,
        queue: q.name.clone(),
        passive: false,
        durable: true,
        exclusive: false,
        auto_delete: q.auto_delete,
        nowait: false,
        arguments: q.arguments.clone(),
    }
    .into();
    encode_definition(vhost, &m)
}

/// Where queue directories that no definition names are moved (never deleted).
pub const QUARANTINE_DIR: &str = "quarantine";

/// A queue directory set aside in `<data-dir>/quarantine/`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Quarantined {
    /// Its directory name.
    pub dir: String,
    /// Its full path.
    pub path: PathBuf,
    /// The vhost of the queue it belonged to, from its definition copy (if intact).
    pub vhost: Option<String>,
    /// The queue's name, from its definition copy (if intact).
    pub queue: Option<String>,
    /// Live messages in it.
    pub messages: u64,
    /// Bytes on disk.
    pub bytes: u64,
}

/// The vhost and queue.declare kept in a queue directory, if intact.
pub(crate) fn dir_definition(dir: &Path) -> Option<(String, QueueDeclare)> {
    let rec = warren_store::read_queue_meta(dir)?;
    match decode_definition(&Bytes::from(rec))? {
        (vhost, Method::QueueDeclare(q)) => Some((vhost, q)),
        _ => None,
    }
}

/// Describes one queue directory (read only: nothing on disk changes).
pub fn describe_queue_dir(path: &Path) -> Quarantined {
    let def = dir_definition(path);
    Quarantined {
        dir: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.to_path_buf(),
        messages: warren_store::inspect_queue_dir(path).map_or(0, |r| r.messages),
        bytes: warren_store::dir_size(path),
        vhost: def.as_ref().map(|(v, _)| v.clone()),
        queue: def.map(|(_, q)| q.queue.to_string()),
    }
}

/// Every directory in `<data_dir>/quarantine/`, sorted by name.
pub fn list_quarantine(data_dir: &Path) -> Vec<Quarantined> {
    let Ok(rd) = std::fs::read_dir(data_dir.join(QUARANTINE_DIR)) else {
        return Vec::new();
    };
    let mut out: Vec<Quarantined> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| describe_queue_dir(&e.path()))
        .collect();
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    out
}

/// Moves every queue directory that no definition names to `<data-dir>/quarantine/`, logging
/// each with its message count and size. Returns how many were moved.
pub fn quarantine_unknown(p: &Persistence, live: &std::collections::HashSet<String>) -> usize {
    let dest = p.data_dir.join(QUARANTINE_DIR);
    let mut moved = 0;
    for dir in p.store.queue_names().unwrap_or_default() {
        if live.contains(&dir) {
            continue;
        }
        let info = describe_queue_dir(&p.store.root().join("queues").join(&dir));
        match p.store.quarantine_queue(&dir, &dest) {
            Ok(to) => {
                moved += 1;
                tracing::warn!(
                    queue_dir = %dir,
                    messages = info.messages,
                    bytes = info.bytes,
                    vhost = info.vhost.as_deref().unwrap_or("?"),
                    queue = info.queue.as_deref().unwrap_or("?"),
                    "queue directory named by no definition moved to {} (nothing deleted; \
                     `warrenctl quarantine reattach {}` declares its queue again)",
                    to.display(),
                    to.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
                );
            }
            Err(e) => tracing::error!(
                queue_dir = %dir,
                messages = info.messages,
                "queue directory named by no definition could not be quarantined ({e}); left in place"
            ),
        }
    }
    moved
}

/// How many directories `<data_dir>/quarantine/` holds (cheap: no file is read).
pub fn quarantine_count(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join(QUARANTINE_DIR)).map_or(0, |rd| {
        rd.filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .count()
    })
}

/// The one start-up line that sums up what recovery found in every queue log and the
/// definitions log (WARN when anything was damaged, missing or set aside; INFO otherwise).
pub fn log_recovery_summary(p: &Persistence) {
    let r = p.store.recovery_totals();
    let d = &p.definitions_report;
    let quarantined = quarantine_count(&p.data_dir);
    let line = format!(
        "store recovery: {}; definitions log: {} damaged records dropped; {} queue directories in quarantine",
        r.summary(),
        d.warnings.iter().filter(|w| w.offset != 0).count() + d.truncated.len(),
        quarantined
    );
    if r.is_clean() && r.orphan_ack_files == 0 && d.is_clean() && quarantined == 0 {
        tracing::info!("{line}");
    } else {
        tracing::warn!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_codec::ShortStr;

    #[test]
    fn message_payload_round_trips() {
        let mut props = BasicProperties {
            delivery_mode: Some(2),
            ..Default::default()
        };
        let mut h = warren_codec::FieldTable::new();
        h.insert("k", warren_codec::FieldValue::I64(7));
        props.headers = Some(h);
        let mut m = Message::new("ex", "rk", props, Bytes::from_static(b"body"));
        m.dead_lettered = true;
        let enc = encode_message(&m, 1_700_000_000_123).freeze();
        assert_eq!(decode_message(&enc), Some((m, Some(1_700_000_000_123))));
    }

    #[test]
    fn access_records_never_collide_with_method_records() {
        let rec = serde_json::json!({"op": "vhost", "name": "v"});
        let enc = encode_access(&rec);
        assert_eq!(decode_access(&enc), Some(rec));
        assert!(
            decode_definition(&enc).is_none(),
            "old decoders skip access records"
        );
        let m: Method = QueueDelete {
            queue: ShortStr::from("q"),
            ..Default::default()
        }
        .into();
        let def = encode_definition("/", &m);
        assert!(decode_access(&def).is_none());
        assert!(decode_definition(&def).is_some());
    }

    #[test]
    fn positions_pack() {
        let p = MsgPos {
            segment: 7,
            offset: 123_456,
        };
        assert_eq!(unpack(pack(p)), p);
    }

    #[test]
    fn queue_dirs_are_valid_and_distinct() {
        let a = queue_dir("/", "q");
        assert!(warren_store::is_valid_queue_name(&a));
        assert_ne!(a, queue_dir("/x", "q"));
    }
}
