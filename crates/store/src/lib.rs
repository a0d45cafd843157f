//! # warren-store
//!
//! Warren's durable message store: blocking file IO, no async runtime. Each durable queue owns
//! a [`QueueLog`] — a directory of numbered segment files plus one ack file per segment
//! (lavinmq's layout) — and all logs share one [`SyncHandle`], a group-commit syncer thread
//! that fdatasyncs every dirty file once per batch of requests. Topology lives in a separate
//! [`DefinitionsLog`]. Every file carries a magic + version header and every record a length and
//! a CRC32C; recovery truncates torn tails and reports (never panics on) corruption elsewhere.
//! After a failed write or fsync the store is poisoned and refuses writes (fjall's rule); a
//! failed write (a full disk) is undone at once and can be recovered from without a restart.
//!
//! Typical use by a queue task: `append` a batch, `flush`, `syncer().request(confirm)`; `ack`
//! and `set_counts` as consumers settle; `read` to page a body back in.
//!
//! ## Layout
//! - [`store`]: [`Store`], [`StoreOptions`]: root directory, open/delete/list queue logs.
//! - [`queue_log`]: [`QueueLog`], [`MsgPos`], [`Recovered`]: one queue's segments, index,
//!   appends, acks, counters, reads, recovery.
//! - [`sync`]: [`SyncHandle`]: the group-commit syncer and the poison flag.
//! - [`definitions`]: [`DefinitionsLog`]: the definitions append log.
//! - [`format`](mod@format): the on-disk encoding (headers, record framing, CRC, the tail scanner).
//! - [`report`]: [`RecoveryReport`]: what recovery found and did.
//! - [`fs`]: the [`FileSystem`] seam and [`StdFs`]; [`faulty`]: [`FaultyFs`] for fault
//!   injection in tests; [`readonly`]: [`ReadOnlyFs`] for offline checks.
//! - [`lock`]: [`DataDirLock`], the exclusive lock on a data directory.
//! - [`error`]: the error type, [`StoreError`].
//!
//! The format is documented in `format.rs` and in `docs/storage.md`.

#![deny(missing_docs, missing_debug_implementations)]
#![warn(unreachable_pub)]

mod acked;
pub mod definitions;
pub mod error;
pub mod faulty;
pub mod format;
pub mod fs;
pub mod lock;
pub mod queue_log;
pub mod readonly;
pub mod report;
pub mod store;
pub mod sync;

pub use definitions::DefinitionsLog;
pub use error::StoreError;
pub use faulty::FaultyFs;
pub use fs::{DirEntry, FileHandle, FileSystem, StdFs};
pub use lock::{DataDirLock, LOCK_FILE};
pub use queue_log::{MsgPos, QueueLog, ReadPlan, Recovered, RecoveredRef};
pub use readonly::ReadOnlyFs;
pub use report::{RecoveryReport, RecoveryWarning, Truncation};
pub use store::{
    DEFAULT_SEGMENT_SIZE, QUEUE_META_FILE, RECOVERY_PROBE, Store, StoreOptions, dir_size, inspect_queue_dir,
    is_valid_queue_name, read_queue_meta,
};
pub use sync::{PoisonHook, PoisonInfo, SyncCallback, SyncHandle, SyncStats};
