//! [`StoreError`], the one error type of the store, and helpers that attach a path to an
//! [`std::io::Error`].

use std::io;
use std::path::{Path, PathBuf};

use crate::MsgPos;

/// Everything that can go wrong in the store.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// An operating-system IO error; the message names the file where one is known.
    #[error("store I/O error: {0}")]
    Io(#[from] io::Error),
    /// A file's contents are not what the format says. Recovery reports these as
    /// [`RecoveryWarning`](crate::RecoveryWarning)s and carries on; `read` returns them.
    #[error("corrupt store file {}: offset {offset}: {reason}", file.display())]
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damaged record (or header) in `file`.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A file was written by a newer (or unknown) format version; the store refuses to guess.
    #[error("store file {} has unsupported format version {version}", file.display())]
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// The version found in its header.
        version: u32,
    },
    /// An fsync or write failed earlier: the store refuses appends and flushes until a write
    /// failure is recovered from ([`Store::try_recover`](crate::Store::try_recover)) or, after an
    /// fsync failure, until it is reopened (the disk's state is unknown; see "Can Applications
    /// Recover from fsync Failures?", ATC '20). [`Store::poison_info`](crate::Store::poison_info)
    /// says which.
    #[error("store is poisoned by an earlier write or fsync failure")]
    Poisoned,
    /// The store (and its syncer thread) has shut down.
    #[error("store is closed")]
    Closed,
    /// A queue name that is not a filesystem-safe id (`[A-Za-z0-9._-]`, 1..=200 bytes, not
    /// starting with `.`).
    #[error("invalid queue log name {0:?}")]
    InvalidName(String),
    /// The queue's log is already open (one owner per log).
    #[error("queue log {0:?} is already open")]
    AlreadyOpen(String),
    /// Another process holds the data directory's lock (see [`DataDirLock`](crate::DataDirLock)).
    #[error("data directory {} is in use by another warren process ({}); stop it or choose another --data-dir", dir.display(), match pid { Some(p) => format!("pid {p}"), None => "pid unknown".to_string() })]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// The PID the lock file names, if it could be read.
        pid: Option<u32>,
    },
    /// The position is not a message of this log (never appended, or its segment is gone).
    #[error("no message at {0:?}")]
    UnknownPosition(MsgPos),
    /// A payload or record larger than the format allows.
    #[error("record of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The size asked for.
        len: u64,
        /// The maximum.
        max: u64,
    },
}

impl StoreError {
    /// A copy of this error for handing to several waiters (an [`io::Error`] is not `Clone`,
    /// so the copy keeps its kind and message).
    pub fn duplicate(&self) -> StoreError {
        match self {
            StoreError::Io(e) => StoreError::Io(io::Error::new(e.kind(), e.to_string())),
            StoreError::Corruption { file, offset, reason } => StoreError::Corruption {
                file: file.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            StoreError::UnsupportedVersion { file, version } => StoreError::UnsupportedVersion {
                file: file.clone(),
                version: *version,
            },
            StoreError::Poisoned => StoreError::Poisoned,
            StoreError::Closed => StoreError::Closed,
            StoreError::InvalidName(n) => StoreError::InvalidName(n.clone()),
            StoreError::AlreadyOpen(n) => StoreError::AlreadyOpen(n.clone()),
            StoreError::Locked { dir, pid } => StoreError::Locked {
                dir: dir.clone(),
                pid: *pid,
            },
            StoreError::UnknownPosition(p) => StoreError::UnknownPosition(*p),
            StoreError::TooLarge { len, max } => StoreError::TooLarge { len: *len, max: *max },
        }
    }
}

/// Attaches `path` to an IO error, keeping its kind.
pub(crate) fn io_at(path: &Path, what: &str, e: io::Error) -> StoreError {
    StoreError::Io(io::Error::new(
        e.kind(),
        format!("{what} {}: {e}", path.display()),
    ))
}
