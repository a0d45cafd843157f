//! Where a quorum queue replica keeps its messages' records (issue 20): in memory up to
//! [`HELD_BYTES`], beyond that in a scratch log of its own (`Persistence::scratch`: written,
//! never synced, wiped at every start), so a backlog with no consumer costs each member an
//! index entry per message, not the message.
//!
//! The scratch log is a cache, not the durable copy: the group's Raft log and snapshots are.
//! After a restart the replica is rebuilt from those (its records kept here again). Each
//! record on disk remembers where its durable copy is (its origin: the log entry and which of
//! its enqueues, or "the snapshot"), so a record this log cannot give back (a disk error, a
//! damaged file) is read from the group's log entry, or once that is purged from its latest
//! snapshot, which holds every message older than the purge ([`Durable`]). Only if those fail
//! too is the message lost (reported; served as undecodable). A log that cannot be opened or
//! written keeps the records in memory, as before paging existed.

use std::sync::Weak;

use bytes::Bytes;
use warren_cluster::Durable;
use warren_core::quorum::{Bodies, Body, Command, SnapshotRecords};
use warren_store::{MsgPos, QueueLog};

use crate::persist::Persistence;

/// Record bytes a replica holds in memory before it keeps further records on disk (per
/// queue: a node with many busy quorum queues holds one such budget for each).
pub const HELD_BYTES: u64 = 256 << 10;

/// One replica's keeper of records (see the module doc).
pub struct ReplicaBodies {
    /// The scratch store and this replica's log name in it; `None`: memory only. Weak: a
    /// replica may outlive its broker for a while (its Raft tasks end after it), and must not
    /// keep the data directory's lock.
    scratch: Option<(Weak<Persistence>, String)>,
    /// The log, opened when the first record goes to disk.
    log: Option<QueueLog>,
    /// Record bytes held in memory.
    held: u64,
    /// Records on disk, and their bytes.
    stored: u64,
    stored_bytes: u64,
    /// The log failed: records stay in memory from now on.
    failed: bool,
    /// Records appended since the last [`flush`](Self::flush).
    dirty: bool,
    /// The log entry being applied and how many of its enqueues were kept (0: restoring a
    /// snapshot): the origin of the next record.
    at: (u64, u64),
    /// The group's durable copies, once its storage is open.
    durable: Option<Durable>,
    /// Records read back from the durable copies because this log failed to give them.
    recovered: u64,
    /// The latest snapshot, indexed, while reads fall back on it: read once for a page-in's
    /// or a snapshot build's run of failed records, not once per record; dropped after the
    /// next applied command ([`flush`](Self::flush)).
    snapshot: Option<SnapshotRecords>,
    /// Times the snapshot was read since the last [`flush`](Self::flush): once, and once more
    /// for a record the kept one lacked (a newer snapshot may hold it), then no more.
    snapshot_reads: u8,
}

impl std::fmt::Debug for ReplicaBodies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaBodies")
            .field("log", &self.scratch.as_ref().map(|(_, n)| n))
            .field("held", &self.held)
            .field("stored", &self.stored)
            .field("failed", &self.failed)
            .finish()
    }
}

impl Default for ReplicaBodies {
    fn default() -> Self {
        ReplicaBodies::in_memory()
    }
}

impl ReplicaBodies {
    /// Every record in memory (no store: a broker without a data directory).
    pub fn in_memory() -> ReplicaBodies {
        ReplicaBodies {
            scratch: None,
            log: None,
            held: 0,
            stored: 0,
            stored_bytes: 0,
            failed: false,
            dirty: false,
            at: (0, 0),
            durable: None,
            recovered: 0,
            snapshot: None,
            snapshot_reads: 0,
        }
    }

    /// The group's durable copies, read when this keeper's own copy of a record fails.
    pub fn attach(&mut self, durable: Durable) {
        self.durable = Some(durable);
    }

    /// Log entry `index` is being applied (0: a snapshot is being restored): the records kept
    /// next come from it.
    pub fn at(&mut self, index: u64) {
        self.at = (index, 0);
    }

    /// Records read back from the group's log or snapshot because the scratch log failed.
    pub fn recovered(&self) -> u64 {
        self.recovered
    }

    /// The origin of the next record kept: entry index << 20 | its nth enqueue (a batch has
    /// at most a few hundred), or 0 (a restored snapshot's).
    fn next_origin(&mut self) -> u64 {
        let (index, nth) = self.at;
        if index != 0 {
            self.at.1 += 1;
        }
        match (index.checked_shl(20), nth < 1 << 20) {
            (Some(i), true) if i >> 20 == index => i | nth,
            _ => 0,
        }
    }

    /// Message `id`'s record from the group's durable copies: the log entry its origin names,
    /// else the latest snapshot (which holds it if the log no longer does).
    fn read_durable(&mut self, id: u64, origin: u64) -> Option<Bytes> {
        let d = self.durable.as_ref()?;
        let (index, nth) = (origin >> 20, (origin & ((1 << 20) - 1)) as usize);
        if index != 0 {
            match d.command(index) {
                Ok(Some(c)) => {
                    if let Some(r) = Command::decode(&c).as_ref().and_then(|c| c.enqueued(nth)) {
                        return Some(Bytes::copy_from_slice(r));
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::error!(id, "quorum queue replica: cannot read the log entry back: {e}"),
            }
        }
        if let Some(r) = self.snapshot.as_ref().and_then(|s| s.get(id)) {
            return Some(Bytes::copy_from_slice(r));
        }
        // Not read yet, or read before a newer snapshot replaced the log entry.
        if self.snapshot_reads >= 2 {
            return None;
        }
        self.snapshot_reads += 1;
        self.snapshot = match d.snapshot() {
            Ok(Some(snap)) => SnapshotRecords::new(snap),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(id, "quorum queue replica: cannot read the snapshot back: {e}");
                None
            }
        };
        self.snapshot.as_ref()?.get(id).map(Bytes::copy_from_slice)
    }

    /// Records beyond [`HELD_BYTES`] go to scratch log `name` (a valid store name, unique in
    /// this process).
    pub fn paging(p: Weak<Persistence>, name: String) -> ReplicaBodies {
        let mut b = ReplicaBodies::in_memory();
        b.scratch = Some((p, name));
        b
    }

    /// Record bytes held in memory, and records kept on disk.
    pub fn usage(&self) -> (u64, u64) {
        (self.held, self.stored)
    }

    /// Record bytes kept, in memory and on disk.
    pub fn bytes(&self) -> u64 {
        self.held + self.stored_bytes
    }

    /// Hands what was appended to the OS (one write), so the writer's buffer stays small.
    pub fn flush(&mut self) {
        self.snapshot = None;
        self.snapshot_reads = 0;
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        if let Some(log) = &mut self.log
            && let Err(e) = log.flush()
        {
            tracing::warn!("quorum queue replica: scratch log flush failed: {e}");
        }
    }

    fn log(&mut self) -> Option<&mut QueueLog> {
        if self.failed {
            return None;
        }
        if self.log.is_none() {
            let (p, name) = self.scratch.as_ref()?;
            let p = p.upgrade()?;
            match p.scratch.open_queue(name) {
                Ok((log, _)) => self.log = Some(log),
                Err(e) => {
                    tracing::warn!(
                        "quorum queue replica: cannot open a scratch log, records stay in memory: {e}"
                    );
                    self.failed = true;
                    return None;
                }
            }
        }
        self.log.as_mut()
    }
}

fn pos(segment: u32, offset: u64) -> Option<MsgPos> {
    Some(MsgPos {
        segment,
        offset: u32::try_from(offset).ok()?,
    })
}

impl Bodies for ReplicaBodies {
    fn keep(&mut self, record: Vec<u8>) -> Body {
        let origin = self.next_origin();
        let len = record.len() as u64;
        if self.held + len > HELD_BYTES
            && let Ok(len32) = u32::try_from(len)
            && let Some(log) = self.log()
        {
            match log.append(0, &record) {
                Ok(p) => {
                    self.stored += 1;
                    self.stored_bytes += len;
                    self.dirty = true;
                    return Body::Stored {
                        segment: p.segment,
                        offset: p.offset.into(),
                        len: len32,
                        origin,
                    };
                }
                Err(e) => {
                    tracing::warn!(
                        "quorum queue replica: scratch log write failed, records stay in memory: {e}"
                    );
                    self.failed = true;
                }
            }
        }
        self.held += len;
        Body::Held(record)
    }

    fn release(&mut self, body: Body) {
        match body {
            Body::Held(r) => self.held = self.held.saturating_sub(r.len() as u64),
            Body::Stored {
                segment, offset, len, ..
            } => {
                self.stored = self.stored.saturating_sub(1);
                self.stored_bytes = self.stored_bytes.saturating_sub(u64::from(len));
                if let (Some(log), Some(p)) = (&mut self.log, pos(segment, offset))
                    && let Err(e) = log.ack(p)
                {
                    tracing::warn!("quorum queue replica: scratch log ack failed: {e}");
                }
            }
        }
    }

    fn read(&mut self, id: u64, body: &Body) -> Option<Bytes> {
        let (segment, offset, origin) = match body {
            Body::Held(r) => return Some(Bytes::copy_from_slice(r)),
            Body::Stored {
                segment,
                offset,
                origin,
                ..
            } => (*segment, *offset, *origin),
        };
        let read = match (pos(segment, offset), self.log.as_mut()) {
            (Some(p), Some(log)) => log.read(p).map_err(|e| e.to_string()),
            _ => Err("no scratch log".to_string()),
        };
        match read {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::error!(id, "quorum queue replica: cannot read a record back: {e}");
                let b = self.read_durable(id, origin);
                match &b {
                    Some(_) => {
                        self.recovered += 1;
                        tracing::warn!(
                            id,
                            "quorum queue replica: record read from the group's log or snapshot instead"
                        );
                    }
                    None => tracing::error!(id, "quorum queue replica: the record is lost on this node"),
                }
                b
            }
        }
    }
}

impl Drop for ReplicaBodies {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            drop(log);
            if let Some((p, name)) = &self.scratch
                && let Some(p) = p.upgrade()
                && let Err(e) = p.scratch.delete_queue(name)
            {
                tracing::warn!("quorum queue replica: cannot delete scratch log {name}: {e}");
            }
        }
    }
}
