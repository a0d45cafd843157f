//! [`DataDirLock`]: one broker per data directory. An exclusive advisory `flock` on
//! `<data-dir>/warren.lock`, taken before anything in the directory is read and held for as
//! long as the value lives (the broker keeps it for its whole life). The file holds the PID of
//! the holder, for the message a second broker prints; its mere existence means nothing — the
//! kernel drops the lock when the holder exits or is killed, so a stale file never blocks a
//! restart.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::error::{StoreError, io_at};

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "warren.lock";

/// An exclusive lock on a data directory; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Locks `dir` (which must exist) or fails at once with [`StoreError::Locked`] naming the
    /// directory and, when the lock file says, the PID of the process holding it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_at(&path, "open", e))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(e) => return Err(io_at(&path, "lock", e.into())),
        }
        // Ours now: record who holds it (best effort; the lock, not the text, is what counts).
        let _ = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()));
        Ok(DataDirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
