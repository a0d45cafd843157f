//! [`RecoveryReport`]: what recovery found and did to a log — corruption it skipped, torn
//! tails it cut, segments it removed. Recovery never panics and never refuses to open because
//! of a bad record; this report is how the damage becomes visible (the server logs it).

use std::path::PathBuf;

/// Damage found in the middle of a file; recovery skipped it and carried on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryWarning {
    /// The damaged file.
    pub file: PathBuf,
    /// Byte offset of the bad record or header.
    pub offset: u64,
    /// What was wrong and what recovery did about it.
    pub reason: String,
}

/// A torn tail that recovery cut off (a write interrupted by a crash; never confirmed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// The file.
    pub file: PathBuf,
    /// Its new length (the offset where the torn record began).
    pub offset: u64,
    /// Bytes dropped.
    pub dropped: u64,
}

/// What recovery of one log found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Corruption before the tail of a file, each skipped.
    pub warnings: Vec<RecoveryWarning>,
    /// Torn tails that were cut off.
    pub truncated: Vec<Truncation>,
    /// Message segments scanned.
    pub segments_scanned: u32,
    /// Fully acked (or empty) segments removed during recovery.
    pub segments_removed: u32,
    /// Live messages recovered.
    pub messages: u64,
    /// Ack or counts records naming no message of their segment (ignored).
    pub stray_records: u64,
}

impl RecoveryReport {
    /// Whether recovery found nothing wrong (torn tails count: they are normal after a crash,
    /// but worth a log line).
    pub fn is_clean(&self) -> bool {
        self.warnings.is_empty() && self.truncated.is_empty()
    }

    pub(crate) fn warn(&mut self, file: &std::path::Path, offset: u64, reason: impl Into<String>) {
        self.warnings.push(RecoveryWarning {
            file: file.to_path_buf(),
            offset,
            reason: reason.into(),
        });
    }
}
