//! Group commit: the store-wide `Shared` state (filesystem, options, poison flag, the set of
//! files written since their last fsync) and the dedicated syncer thread behind
//! [`SyncHandle`].
//!
//! Writers ([`QueueLog::flush`](crate::QueueLog::flush)) push bytes to the OS and mark the
//! file dirty. [`SyncHandle::request`] queues a callback. The syncer thread takes *all* queued
//! callbacks and *all* dirty files in one step under the lock, fdatasyncs the files (and the
//! directories that gained or lost entries), then answers every callback of that batch with the
//! one result. Requests that arrive while a pass runs wait for the next pass, so one fsync pass
//! covers any number of publishers (raft-engine's `write_barrier.rs`, fjall's journal).
//! A failed sync poisons the store: that batch and every later request get an error, and
//! appends and flushes return [`StoreError::Poisoned`] (acks and counters are kept in memory
//! until the store recovers). A failed *write* (a full disk) is undone at once — the file is cut
//! back to its last complete record — and also poisons the store, but
//! [`Store::try_recover`](crate::Store::try_recover) can clear that once space is free; a failed
//! *fsync* leaves the disk in an unknown state and needs a restart ([`PoisonInfo`]).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle, ThreadId};

use crate::error::StoreError;
use crate::fs::{FileHandle, FileSystem};

/// A completion callback of [`SyncHandle::request`].
pub type SyncCallback = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Called once each time the store becomes poisoned (on the thread whose write or fsync
/// failed): the broker raises its disk alarm from here without waiting for its next sample.
pub type PoisonHook = Arc<dyn Fn(&PoisonInfo) + Send + Sync>;

/// Why the store is poisoned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoisonInfo {
    /// The failure, with the file it happened on.
    pub error: String,
    /// An fsync failed (or a failed write could not be undone): the kernel may have dropped
    /// pages, so what is on disk is unknown and only a restart (recovery from the files) clears
    /// the poison. `false` for a write failure such as a full disk, which was undone and which
    /// [`Store::try_recover`](crate::Store::try_recover) clears once space is free.
    pub restart_required: bool,
}

/// An open file plus the store-unique id the dirty set knows it by.
#[derive(Clone, Debug)]
pub(crate) struct FileRef {
    pub(crate) id: u64,
    pub(crate) handle: Arc<dyn FileHandle>,
}

#[derive(Default)]
struct SyncState {
    dirty_files: HashMap<u64, Arc<dyn FileHandle>>,
    dirty_dirs: HashSet<PathBuf>,
    pending: Vec<SyncCallback>,
    shutdown: bool,
}

/// State shared by the store, its queue logs and the syncer thread.
pub(crate) struct Shared {
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) root: PathBuf,
    pub(crate) segment_size: u64,
    pub(crate) fsync: bool,
    poisoned: AtomicBool,
    poison_info: Mutex<Option<PoisonInfo>>,
    poison_hook: Mutex<Option<PoisonHook>>,
    next_file_id: AtomicU64,
    pub(crate) open_queues: Mutex<HashSet<String>>,
    state: Mutex<SyncState>,
    wake: Condvar,
    passes: AtomicU64,
    requests: AtomicU64,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("root", &self.root)
            .field("segment_size", &self.segment_size)
            .field("fsync", &self.fsync)
            .field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; carry on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn new(fs: Arc<dyn FileSystem>, root: PathBuf, segment_size: u64, fsync: bool) -> Shared {
        Shared {
            fs,
            root,
            segment_size,
            fsync,
            poisoned: AtomicBool::new(false),
            poison_info: Mutex::new(None),
            poison_hook: Mutex::new(None),
            next_file_id: AtomicU64::new(1),
            open_queues: Mutex::new(HashSet::new()),
            state: Mutex::new(SyncState::default()),
            wake: Condvar::new(),
            passes: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Poisons the store (see [`PoisonInfo`]); the hook runs on the first failure only.
    pub(crate) fn poison(&self, error: String, restart_required: bool) {
        let info = {
            let mut info = lock(&self.poison_info);
            match &mut *info {
                Some(i) => {
                    i.restart_required |= restart_required;
                    return;
                }
                None => {
                    let i = PoisonInfo {
                        error,
                        restart_required,
                    };
                    *info = Some(i.clone());
                    self.poisoned.store(true, Ordering::Release);
                    i
                }
            }
        };
        let hook = lock(&self.poison_hook).clone();
        if let Some(h) = hook {
            // A panicking hook must not take a writer down with it.
            let _ = catch_unwind(AssertUnwindSafe(|| h(&info)));
        }
    }

    pub(crate) fn poison_info(&self) -> Option<PoisonInfo> {
        lock(&self.poison_info).clone()
    }

    pub(crate) fn set_poison_hook(&self, hook: PoisonHook) {
        *lock(&self.poison_hook) = Some(hook);
    }

    /// Clears a write-failure poison (the failed writes were undone, their bytes are still
    /// buffered and go out with the next flush). Refused after an fsync failure.
    pub(crate) fn try_recover(&self) -> Result<(), StoreError> {
        let mut info = lock(&self.poison_info);
        match &*info {
            None => Ok(()),
            Some(i) if i.restart_required => Err(StoreError::Poisoned),
            Some(_) => {
                *info = None;
                self.poisoned.store(false, Ordering::Release);
                Ok(())
            }
        }
    }

    /// `Err(Poisoned)` once poisoned.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if self.is_poisoned() {
            Err(StoreError::Poisoned)
        } else {
            Ok(())
        }
    }

    pub(crate) fn file_ref(&self, handle: Arc<dyn FileHandle>) -> FileRef {
        FileRef {
            id: self.next_file_id.fetch_add(1, Ordering::Relaxed),
            handle,
        }
    }

    /// Records that `file` has bytes the OS holds but the disk may not.
    pub(crate) fn mark_dirty(&self, file: &FileRef) {
        lock(&self.state)
            .dirty_files
            .entry(file.id)
            .or_insert_with(|| file.handle.clone());
    }

    /// Records that directory `dir` gained or lost entries.
    pub(crate) fn mark_dir_dirty(&self, dir: PathBuf) {
        lock(&self.state).dirty_dirs.insert(dir);
    }

    pub(crate) fn open_queues(&self) -> MutexGuard<'_, HashSet<String>> {
        lock(&self.open_queues)
    }
}

/// Owns the syncer thread; the thread stops once the last link (the store's and every
/// [`SyncHandle`]'s) is dropped, after answering every request queued before that.
pub(crate) struct SyncerLink {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
}

impl SyncerLink {
    pub(crate) fn start(shared: Arc<Shared>) -> Result<Arc<SyncerLink>, StoreError> {
        let s = shared.clone();
        let handle = thread::Builder::new()
            .name("warren-store-sync".into())
            .spawn(move || run(&s))?;
        let thread_id = handle.thread().id();
        Ok(Arc::new(SyncerLink {
            shared,
            thread: Mutex::new(Some(handle)),
            thread_id,
        }))
    }
}

impl Drop for SyncerLink {
    fn drop(&mut self) {
        lock(&self.shared.state).shutdown = true;
        self.shared.wake.notify_all();
        let handle = lock(&self.thread).take();
        // The last handle may be dropped by a callback running on the syncer itself.
        if let Some(h) = handle
            && thread::current().id() != self.thread_id
        {
            let _ = h.join();
        }
    }
}

fn run(shared: &Shared) {
    loop {
        let (batch, files, dirs) = {
            let mut st = lock(&shared.state);
            while st.pending.is_empty() && !st.shutdown {
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.pending.is_empty() {
                return; // shut down with nothing left to answer
            }
            (
                std::mem::take(&mut st.pending),
                std::mem::take(&mut st.dirty_files),
                std::mem::take(&mut st.dirty_dirs),
            )
        };
        let result = sync_pass(shared, files, dirs);
        shared.passes.fetch_add(1, Ordering::Relaxed);
        for done in batch {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(e.duplicate()),
            };
            // A panicking callback must not take the syncer (and every later commit) down.
            let _ = catch_unwind(AssertUnwindSafe(move || done(r)));
        }
    }
}

fn sync_pass(
    shared: &Shared,
    files: HashMap<u64, Arc<dyn FileHandle>>,
    dirs: HashSet<PathBuf>,
) -> Result<(), StoreError> {
    if shared.is_poisoned() {
        // Nothing was synced: the files stay dirty for the first pass after a recovery (the
        // bytes written to them before the failure are still owed an fsync, and so are new
        // directory entries).
        let mut st = lock(&shared.state);
        for (id, h) in files {
            st.dirty_files.entry(id).or_insert(h);
        }
        st.dirty_dirs.extend(dirs);
        return Err(StoreError::Poisoned);
    }
    if !shared.fsync {
        return Ok(());
    }
    let mut result = Ok(());
    for handle in files.values() {
        if let Err(e) = handle.sync_data() {
            result = Err(StoreError::Io(std::io::Error::new(
                e.kind(),
                format!("fdatasync failed: {e}"),
            )));
            break;
        }
    }
    if result.is_ok() {
        for dir in &dirs {
            match shared.fs.sync_dir(dir) {
                Ok(()) => {}
                // The directory was deleted since (delete_queue): nothing left to make durable.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    result = Err(crate::error::io_at(dir, "fsync of directory", e));
                    break;
                }
            }
        }
    }
    if let Err(e) = &result {
        shared.poison(e.to_string(), true);
    }
    result
}

/// Counters of the syncer, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Sync passes run (each covers every request queued before it started).
    pub passes: u64,
    /// Requests received.
    pub requests: u64,
}

/// A cloneable handle to the store's group-commit syncer.
#[derive(Clone)]
pub struct SyncHandle {
    link: Arc<SyncerLink>,
}

impl fmt::Debug for SyncHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

impl SyncHandle {
    pub(crate) fn new(link: Arc<SyncerLink>) -> SyncHandle {
        SyncHandle { link }
    }

    /// Group commit: calls `done` once every write flushed (by [`QueueLog::flush`]) before this
    /// call is durable — one fdatasync of every dirty file, batched so that one sync pass
    /// covers all requests queued while the previous pass ran. `done` runs on the store's
    /// syncer thread, never on the caller's; keep it short (send a message, wake a task).
    /// Once the store is poisoned `done` gets [`StoreError::Poisoned`] (or the IO error of the
    /// pass that failed).
    ///
    /// [`QueueLog::flush`]: crate::QueueLog::flush
    pub fn request(&self, done: SyncCallback) {
        let shared = &self.link.shared;
        shared.requests.fetch_add(1, Ordering::Relaxed);
        lock(&shared.state).pending.push(done);
        shared.wake.notify_one();
    }

    /// Blocks until every write flushed before the call is durable (a convenience over
    /// [`request`](Self::request) for callers without an event loop).
    pub fn sync_blocking(&self) -> Result<(), StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.request(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        rx.recv().unwrap_or(Err(StoreError::Closed))
    }

    /// Passes run and requests received so far.
    pub fn stats(&self) -> SyncStats {
        let s = &self.link.shared;
        SyncStats {
            passes: s.passes.load(Ordering::Relaxed),
            requests: s.requests.load(Ordering::Relaxed),
        }
    }
}
