//! [`Store`]: the root directory, the options, the set of open queue logs and the shared
//! group-commit syncer. Opening a queue's log goes through here so that each log has exactly
//! one owner.
//!
//! Layout: `<root>/queues/<name>/` per queue (see [`queue_log`](crate::queue_log)). Deleting a
//! queue renames its directory to `queues/.trash-<name>-<n>` (atomic), fsyncs `queues/`, then
//! removes the trash; leftover trash is removed on the next open.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::Mutex;

use crate::error::{StoreError, io_at};
use crate::format::{self, HEADER_LEN, HeaderCheck, MAGIC_DEFS, MAX_BODY};
use crate::fs::{FileSystem, StdFs};
use crate::queue_log::{QueueLog, Recovered, RecoveredRef, read_all};
use crate::readonly::ReadOnlyFs;
use crate::report::RecoveryReport;
use crate::sync::{PoisonHook, PoisonInfo, Shared, SyncHandle, SyncStats, SyncerLink};

/// Default segment size: 8 MiB (lavinmq's).
pub const DEFAULT_SEGMENT_SIZE: u64 = 8 * 1024 * 1024;

/// The file in a queue's directory holding a copy of its definition (an opaque record the
/// server encodes), so that a directory whose definition was lost can be re-attached.
pub const QUEUE_META_FILE: &str = "queue.def";
/// Bytes [`Store::try_recover`] must be able to write before it clears a poison.
pub const RECOVERY_PROBE: u64 = 1 << 20;

/// Options of [`Store::open`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// A segment is sealed once the next record would take it past this size (default 8 MiB;
    /// clamped to 64 B ..= 1 GiB).
    pub segment_size: u64,
    /// The filesystem (default [`StdFs`]; tests use [`FaultyFs`](crate::FaultyFs)).
    pub fs: Arc<dyn FileSystem>,
    /// Whether sync passes really fdatasync (default `true`; `false` only for benchmarks and
    /// tests — nothing is then durable across a machine crash).
    pub fsync: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            fs: Arc::new(StdFs),
            fsync: true,
        }
    }
}

/// The durable message store rooted at one directory.
pub struct Store {
    shared: Arc<Shared>,
    link: Arc<SyncerLink>,
    /// What recovery found in every queue log opened so far (for the start-up summary and
    /// the metrics).
    recovered: Mutex<RecoveryReport>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// Whether `name` is a filesystem-safe queue-log id: 1..=200 bytes of `[A-Za-z0-9._-]`, not
/// starting with `.`.
pub fn is_valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_name(name: &str) -> Result<(), StoreError> {
    if is_valid_queue_name(name) {
        Ok(())
    } else {
        Err(StoreError::InvalidName(name.to_owned()))
    }
}

impl Store {
    /// Opens (creating if needed) the store at `root` and starts its syncer thread.
    pub fn open(root: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        let fs = opts.fs;
        let queues = root.join("queues");
        fs.create_dir_all(&queues)
            .map_err(|e| io_at(&queues, "create", e))?;
        for e in fs.list_dir(&queues).map_err(|e| io_at(&queues, "list", e))? {
            if e.is_dir && e.name.starts_with(".trash-") {
                let p = queues.join(&e.name);
                fs.remove_dir_all(&p).map_err(|e| io_at(&p, "remove", e))?;
            }
        }
        let segment_size = opts
            .segment_size
            .clamp(64.max(HEADER_LEN as u64), MAX_BODY as u64);
        let shared = Arc::new(Shared::new(fs, root.to_path_buf(), segment_size, opts.fsync));
        let link = SyncerLink::start(shared.clone())?;
        Ok(Store {
            shared,
            link,
            recovered: Mutex::new(RecoveryReport::default()),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    fn queue_dir(&self, name: &str) -> PathBuf {
        self.shared.root.join("queues").join(name)
    }

    /// Opens (creating if needed) the log of one queue; `name` is a filesystem-safe id the
    /// caller chooses (see [`is_valid_queue_name`]). Returns the log and the messages still
    /// live in it, in seq order, with their counters; what recovery found is in
    /// [`QueueLog::recovery_report`]. A log has one owner: opening it again while open fails
    /// with [`StoreError::AlreadyOpen`].
    pub fn open_queue(&self, name: &str) -> Result<(QueueLog, Vec<Recovered>), StoreError> {
        let mut out = Vec::new();
        let log = self.open_queue_with(name, &mut |r| out.push(r.to_owned()))?;
        if !out.is_sorted_by_key(|r: &Recovered| r.seq) {
            out.sort_by_key(|r| r.seq);
        }
        Ok((log, out))
    }

    /// Like [`open_queue`](Self::open_queue), but hands each live message to `visit` (in log
    /// order, payload borrowed) instead of collecting them: the caller keeps what fits its
    /// memory budget and reads the rest later with [`QueueLog::read_batch`].
    pub fn open_queue_with(
        &self,
        name: &str,
        visit: &mut dyn FnMut(RecoveredRef<'_>),
    ) -> Result<QueueLog, StoreError> {
        check_name(name)?;
        if !self.shared.open_queues().insert(name.to_owned()) {
            return Err(StoreError::AlreadyOpen(name.to_owned()));
        }
        // On failure no QueueLog exists to release the name, so release it here.
        let log = QueueLog::open(self.shared.clone(), name, visit).inspect_err(|_| {
            self.shared.open_queues().remove(name);
        })?;
        if let Ok(mut r) = self.recovered.lock() {
            r.absorb(log.recovery_report());
        }
        Ok(log)
    }

    /// The sum of the recovery reports of every queue log opened since the store was opened.
    pub fn recovery_totals(&self) -> RecoveryReport {
        self.recovered.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Moves a queue's directory (which must not be open) to `dest/<name>` — or
    /// `dest/<name>-<n>` if that exists — instead of deleting it: for a directory that no
    /// definition names. Returns the new path.
    pub fn quarantine_queue(&self, name: &str, dest: &Path) -> Result<PathBuf, StoreError> {
        check_name(name)?;
        let open = self.shared.open_queues();
        if open.contains(name) {
            return Err(StoreError::AlreadyOpen(name.to_owned()));
        }
        let fs = &*self.shared.fs;
        fs.create_dir_all(dest).map_err(|e| io_at(dest, "create", e))?;
        let mut to = dest.join(name);
        let mut n = 1;
        while fs.exists(&to) {
            to = dest.join(format!("{name}-{n}"));
            n += 1;
        }
        let dir = self.queue_dir(name);
        fs.rename(&dir, &to).map_err(|e| io_at(&dir, "rename", e))?;
        drop(open);
        if self.shared.fsync {
            let queues = self.shared.root.join("queues");
            fs.sync_dir(&queues).map_err(|e| io_at(&queues, "fsync", e))?;
            fs.sync_dir(dest).map_err(|e| io_at(dest, "fsync", e))?;
        }
        Ok(to)
    }

    /// Moves a directory set aside by [`quarantine_queue`](Self::quarantine_queue) back as the
    /// log `name` (which must not exist yet); open it afterwards to recover its messages.
    pub fn restore_queue(&self, from: &Path, name: &str) -> Result<(), StoreError> {
        check_name(name)?;
        let open = self.shared.open_queues();
        let fs = &*self.shared.fs;
        let dir = self.queue_dir(name);
        if open.contains(name) || fs.exists(&dir) {
            return Err(StoreError::AlreadyOpen(name.to_owned()));
        }
        fs.rename(from, &dir).map_err(|e| io_at(from, "rename", e))?;
        drop(open);
        if self.shared.fsync {
            let queues = self.shared.root.join("queues");
            fs.sync_dir(&queues).map_err(|e| io_at(&queues, "fsync", e))?;
            if let Some(parent) = from.parent() {
                fs.sync_dir(parent).map_err(|e| io_at(parent, "fsync", e))?;
            }
        }
        Ok(())
    }

    /// Keeps `meta` (the caller's encoding of the queue's definition) in the queue's
    /// directory as [`QUEUE_META_FILE`]; rewritten (temp file, fsync, rename) only when it
    /// changed.
    pub fn write_queue_meta(&self, name: &str, meta: &[u8]) -> Result<(), StoreError> {
        check_name(name)?;
        let dir = self.queue_dir(name);
        if read_queue_meta(&dir).as_deref() == Some(meta) {
            return Ok(());
        }
        let fs = &*self.shared.fs;
        let mut buf = Vec::with_capacity(meta.len() + 32);
        format::put_header(&mut buf, MAGIC_DEFS);
        format::put_record(&mut buf, &[meta]);
        let tmp = dir.join(format!("{QUEUE_META_FILE}.tmp"));
        let path = dir.join(QUEUE_META_FILE);
        let h = fs.create_truncate(&tmp).map_err(|e| io_at(&tmp, "create", e))?;
        h.append(&buf).map_err(|e| io_at(&tmp, "write", e))?;
        if self.shared.fsync {
            h.sync_data().map_err(|e| io_at(&tmp, "fsync", e))?;
        }
        drop(h);
        fs.rename(&tmp, &path).map_err(|e| io_at(&path, "rename", e))?;
        self.shared.mark_dir_dirty(dir);
        Ok(())
    }

    /// Deletes a queue's log and all its files (idempotent). The log must not be open.
    pub fn delete_queue(&self, name: &str) -> Result<(), StoreError> {
        check_name(name)?;
        let open = self.shared.open_queues();
        if open.contains(name) {
            return Err(StoreError::AlreadyOpen(name.to_owned()));
        }
        let fs = &*self.shared.fs;
        let dir = self.queue_dir(name);
        if !fs.exists(&dir) {
            return Ok(());
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let queues = self.shared.root.join("queues");
        let trash = queues.join(format!(".trash-{name}-{nanos}"));
        fs.rename(&dir, &trash).map_err(|e| io_at(&dir, "rename", e))?;
        drop(open);
        let synced = if self.shared.fsync {
            fs.sync_dir(&queues).map_err(|e| io_at(&queues, "fsync", e))
        } else {
            Ok(())
        };
        // The space is freed even if the rename could not be made durable (a crash could then
        // bring back an empty directory, which the next open clears as trash or the broker as
        // an undefined queue).
        fs.remove_dir_all(&trash)
            .map_err(|e| io_at(&trash, "remove", e))?;
        synced
    }

    /// Names of the queue logs on disk, sorted.
    pub fn queue_names(&self) -> Result<Vec<String>, StoreError> {
        let queues = self.shared.root.join("queues");
        let mut names: Vec<String> = self
            .shared
            .fs
            .list_dir(&queues)
            .map_err(|e| io_at(&queues, "list", e))?
            .into_iter()
            .filter(|e| e.is_dir && is_valid_queue_name(&e.name))
            .map(|e| e.name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// A handle to the group-commit syncer (cheap to clone; keeps the syncer thread alive).
    pub fn syncer(&self) -> SyncHandle {
        SyncHandle::new(self.link.clone())
    }

    /// Counters of the syncer.
    pub fn sync_stats(&self) -> SyncStats {
        self.syncer().stats()
    }

    /// Whether a write or fsync failure has poisoned the store (it then refuses writes until
    /// reopened; the broker should raise a disk alarm).
    pub fn is_poisoned(&self) -> bool {
        self.shared.is_poisoned()
    }

    /// Why the store is poisoned, or `None` if it is not.
    pub fn poison_info(&self) -> Option<PoisonInfo> {
        self.shared.poison_info()
    }

    /// Sets the function called each time the store becomes poisoned (see [`PoisonHook`]).
    pub fn set_poison_hook(&self, hook: PoisonHook) {
        self.shared.set_poison_hook(hook);
    }

    /// Clears a poison left by a failed write (e.g. a full disk) once the caller believes the
    /// cause is gone: the failed writes were cut back at once and their bytes stay buffered in
    /// their logs, so the next flush writes them again. Returns `Err(Poisoned)` if an fsync
    /// failed (only a restart can clear that: see [`PoisonInfo::restart_required`]). A no-op if
    /// the store is not poisoned. If the disk is still full, the next write poisons it again.
    ///
    /// Before clearing it, a probe file of [`RECOVERY_PROBE`] bytes is written and removed under
    /// the root: while that fails (the disk is still full), the store stays poisoned and this
    /// returns the IO error.
    pub fn try_recover(&self) -> Result<(), StoreError> {
        match self.shared.poison_info() {
            None => return Ok(()),
            Some(i) if i.restart_required => return Err(StoreError::Poisoned),
            Some(_) => {}
        }
        let fs = &*self.shared.fs;
        let probe = self.shared.root.join(".space-probe");
        let h = fs
            .create_truncate(&probe)
            .map_err(|e| io_at(&probe, "create", e))?;
        let wrote = h.append(&vec![0u8; RECOVERY_PROBE as usize]);
        drop(h);
        let _ = fs.remove_file(&probe);
        wrote.map_err(|e| io_at(&probe, "write", e))?;
        self.shared.try_recover()
    }

    /// Bytes in files under the root.
    pub fn disk_usage(&self) -> u64 {
        crate::fs::disk_usage(&*self.shared.fs, &self.shared.root)
    }
}

/// The definition copy kept in a queue directory by [`Store::write_queue_meta`], if present
/// and intact.
pub fn read_queue_meta(dir: &Path) -> Option<Vec<u8>> {
    let data = read_all(&StdFs, &dir.join(QUEUE_META_FILE)).ok()?;
    if format::check_header(&data, MAGIC_DEFS) != HeaderCheck::Ok {
        return None;
    }
    let rec = &data[HEADER_LEN..];
    let len = format::verify_record(rec).ok()?;
    Some(rec[format::FRAME_LEN..format::FRAME_LEN + len].to_vec())
}

/// Bytes in the files under `path` (a queue directory's size on disk).
pub fn dir_size(path: &Path) -> u64 {
    crate::fs::disk_usage(&StdFs, path)
}

/// What recovery would find in the queue log in `dir` — live messages, damage it would skip,
/// tails it would cut — computed without changing anything on disk (over [`ReadOnlyFs`]).
pub fn inspect_queue_dir(dir: &Path) -> Result<RecoveryReport, StoreError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let shared = Arc::new(Shared::new(
        Arc::new(ReadOnlyFs),
        dir.to_path_buf(),
        DEFAULT_SEGMENT_SIZE,
        false,
    ));
    let log = QueueLog::open_in(shared, &name, dir.to_path_buf(), &mut |_| {})?;
    Ok(log.recovery_report().clone())
}
