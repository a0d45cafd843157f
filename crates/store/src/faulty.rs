//! [`FaultyFs`], a test helper that wraps another [`FileSystem`] and injects failures: write
//! errors, fsync errors and torn writes (only a prefix reaches the file) after a chosen number
//! of operations; a disk of limited free space (a write that does not fit reaches the file in
//! part and fails with `ENOSPC`; truncating or removing files gives the space back); it also
//! counts writes and fsyncs and can slow fsyncs down, which the group-commit tests use to observe
//! batching, and can hold reads until released, which the page-in tests use to show a queue
//! serving from memory while a read is in flight.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::fs::{DirEntry, FileHandle, FileSystem};

const NEVER: u64 = u64::MAX;

#[derive(Debug, Default)]
struct Faults {
    /// Write operations attempted so far (appends; file creation is not counted).
    writes: AtomicU64,
    /// `sync_data`/`sync_dir` calls attempted so far.
    syncs: AtomicU64,
    /// Writes with an index `>=` this fail.
    fail_write_at: AtomicU64,
    /// The write with this index is torn: only `torn_keep` bytes reach the file, then it fails
    /// and every later write fails too (the "machine" has crashed).
    torn_write_at: AtomicU64,
    torn_keep: AtomicU64,
    /// Syncs with an index `>=` this fail.
    fail_sync_at: AtomicU64,
    /// Set once a torn write happened.
    crashed: AtomicBool,
    /// Microseconds every sync sleeps before doing its work.
    sync_delay_us: AtomicU64,
    /// Bytes appends may still add ([`NEVER`] = unlimited).
    space_left: AtomicU64,
    /// Reads wait while this is set ([`FaultyFs::hold_reads`]); the count is of reads waiting.
    reads_held: std::sync::Mutex<(bool, u64)>,
    reads_released: std::sync::Condvar,
}

impl Faults {
    /// Blocks while reads are held.
    fn before_read(&self) {
        let mut g = self.reads_held.lock().unwrap_or_else(|e| e.into_inner());
        if !g.0 {
            return;
        }
        g.1 += 1;
        while g.0 {
            g = self.reads_released.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        g.1 -= 1;
    }
}

/// A [`FileSystem`] wrapper that injects faults. All settings can be changed while the store
/// runs; counts start at 0 when the wrapper is created.
#[derive(Clone, Debug)]
pub struct FaultyFs {
    inner: Arc<dyn FileSystem>,
    faults: Arc<Faults>,
}

impl FaultyFs {
    /// Wraps `inner` with no faults armed.
    pub fn new(inner: Arc<dyn FileSystem>) -> FaultyFs {
        let faults = Faults::default();
        faults.fail_write_at.store(NEVER, Ordering::SeqCst);
        faults.torn_write_at.store(NEVER, Ordering::SeqCst);
        faults.fail_sync_at.store(NEVER, Ordering::SeqCst);
        faults.space_left.store(NEVER, Ordering::SeqCst);
        FaultyFs {
            inner,
            faults: Arc::new(faults),
        }
    }

    /// After `n` more successful writes, every write fails with an IO error.
    pub fn fail_writes_after(&self, n: u64) {
        let now = self.faults.writes.load(Ordering::SeqCst);
        self.faults
            .fail_write_at
            .store(now.saturating_add(n), Ordering::SeqCst);
    }

    /// After `n` more successful writes, the next write is torn: only its first `keep` bytes
    /// reach the file and it fails; every later write fails as well (a simulated crash).
    pub fn tear_write_after(&self, n: u64, keep: usize) {
        let now = self.faults.writes.load(Ordering::SeqCst);
        self.faults.torn_keep.store(keep as u64, Ordering::SeqCst);
        self.faults
            .torn_write_at
            .store(now.saturating_add(n), Ordering::SeqCst);
    }

    /// After `n` more successful syncs (file or directory), every sync fails.
    pub fn fail_syncs_after(&self, n: u64) {
        let now = self.faults.syncs.load(Ordering::SeqCst);
        self.faults
            .fail_sync_at
            .store(now.saturating_add(n), Ordering::SeqCst);
    }

    /// Makes every sync sleep for `d` first (to widen the group-commit window in tests).
    pub fn set_sync_delay(&self, d: Duration) {
        self.faults
            .sync_delay_us
            .store(d.as_micros() as u64, Ordering::SeqCst);
    }

    /// A disk with `bytes` free from now on: an append that does not fit writes what fits and
    /// fails with `ENOSPC` (`ErrorKind::StorageFull`), as a real full disk does; truncations and
    /// removals give their bytes back. [`heal`](Self::heal) makes the space unlimited again.
    pub fn set_free_space(&self, bytes: u64) {
        self.faults.space_left.store(bytes, Ordering::SeqCst);
    }

    /// Free bytes left (`u64::MAX` when unlimited).
    pub fn free_space(&self) -> u64 {
        self.faults.space_left.load(Ordering::SeqCst)
    }

    /// From now on every read waits until [`release_reads`](Self::release_reads).
    pub fn hold_reads(&self) {
        self.faults.reads_held.lock().unwrap_or_else(|e| e.into_inner()).0 = true;
    }

    /// Lets held reads (and later ones) go on.
    pub fn release_reads(&self) {
        self.faults.reads_held.lock().unwrap_or_else(|e| e.into_inner()).0 = false;
        self.faults.reads_released.notify_all();
    }

    /// Reads waiting on [`hold_reads`](Self::hold_reads) right now.
    pub fn reads_waiting(&self) -> u64 {
        self.faults.reads_held.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Disarms every fault (counts are kept).
    pub fn heal(&self) {
        self.faults.fail_write_at.store(NEVER, Ordering::SeqCst);
        self.faults.torn_write_at.store(NEVER, Ordering::SeqCst);
        self.faults.fail_sync_at.store(NEVER, Ordering::SeqCst);
        self.faults.space_left.store(NEVER, Ordering::SeqCst);
        self.faults.crashed.store(false, Ordering::SeqCst);
    }

    /// Write operations attempted so far.
    pub fn write_count(&self) -> u64 {
        self.faults.writes.load(Ordering::SeqCst)
    }

    /// File and directory syncs attempted so far.
    pub fn sync_count(&self) -> u64 {
        self.faults.syncs.load(Ordering::SeqCst)
    }

    fn wrap(&self, h: Arc<dyn FileHandle>) -> Arc<dyn FileHandle> {
        Arc::new(FaultyHandle {
            inner: h,
            faults: self.faults.clone(),
        })
    }
}

impl Faults {
    /// Gives `bytes` back to a limited disk.
    fn free(&self, bytes: u64) {
        let _ = self
            .space_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                (left != NEVER).then(|| left.saturating_add(bytes).min(NEVER - 1))
            });
    }

    fn before_sync(&self) -> io::Result<()> {
        let delay = self.sync_delay_us.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        let i = self.syncs.fetch_add(1, Ordering::SeqCst);
        if i >= self.fail_sync_at.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fsync failure"));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct FaultyHandle {
    inner: Arc<dyn FileHandle>,
    faults: Arc<Faults>,
}

impl FileHandle for FaultyHandle {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        let f = &self.faults;
        let i = f.writes.fetch_add(1, Ordering::SeqCst);
        if f.crashed.load(Ordering::SeqCst) || i >= f.fail_write_at.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected write failure"));
        }
        if i == f.torn_write_at.load(Ordering::SeqCst) {
            let keep = (f.torn_keep.load(Ordering::SeqCst) as usize).min(buf.len());
            f.crashed.store(true, Ordering::SeqCst);
            self.inner.append(&buf[..keep])?;
            return Err(io::Error::other("injected torn write"));
        }
        let left = f.space_left.load(Ordering::SeqCst);
        if left != NEVER {
            let fits = (buf.len() as u64).min(left) as usize;
            f.space_left.fetch_sub(fits as u64, Ordering::SeqCst);
            if fits < buf.len() {
                self.inner.append(&buf[..fits])?;
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "No space left on device (injected)",
                ));
            }
        }
        self.inner.append(buf)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.faults.before_read();
        self.inner.read_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.faults.before_sync()?;
        self.inner.sync_data()
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        // After a torn write the "machine" has crashed: nothing reaches the disk any more.
        if self.faults.crashed.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected failure: crashed"));
        }
        let before = self.inner.size()?;
        self.inner.truncate(len)?;
        self.faults.free(before.saturating_sub(len));
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

impl FileSystem for FaultyFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        Ok(self.wrap(self.inner.open_read(path)?))
    }

    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        Ok(self.wrap(self.inner.open_append(path)?))
    }

    fn create_truncate(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        Ok(self.wrap(self.inner.create_truncate(path)?))
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.inner.list_dir(path)
    }

    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let len = self.inner.open_read(path).and_then(|h| h.size()).unwrap_or(0);
        self.inner.remove_file(path)?;
        self.faults.free(len);
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let len = crate::fs::disk_usage(&*self.inner, path);
        self.inner.remove_dir_all(path)?;
        self.faults.free(len);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.faults.before_sync()?;
        self.inner.sync_dir(path)
    }
}
