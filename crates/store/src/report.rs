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
    /// Damaged regions skipped inside message segments (each also in `warnings`): records
    /// lost to corruption, never to recovery's own doing.
    pub skipped_regions: u64,
    /// Bytes in those regions.
    pub skipped_bytes: u64,
    /// Sealed (not last) segments whose tail was damaged: reported and kept, never truncated.
    pub damaged_sealed_tails: u32,
    /// Segments the queue index records as created and never removed by the broker that are
    /// gone (deleted behind its back): their messages are lost. Each is also in `warnings`.
    /// Segments the broker removed itself (every message acked) leave gaps in the numbering
    /// that are not counted.
    pub segment_gaps: u32,
    /// Ack files whose segment is missing (a segment deleted behind the broker's back, or a
    /// crash between the two unlinks of a segment's removal): renamed `acks.N.orphan`, kept.
    pub orphan_ack_files: u32,
    /// Ack files the queue's `acks.index` lists but which are gone: their segment's acked
    /// messages come back (redelivered), never lost.
    pub missing_ack_files: u32,
}

impl RecoveryReport {
    /// Whether recovery found nothing wrong (torn tails count: they are normal after a crash,
    /// but worth a log line).
    pub fn is_clean(&self) -> bool {
        self.warnings.is_empty() && self.truncated.is_empty()
    }

    /// Adds another log's report to this one (a whole store's summary).
    pub fn absorb(&mut self, other: &RecoveryReport) {
        self.warnings.extend(other.warnings.iter().cloned());
        self.truncated.extend(other.truncated.iter().cloned());
        self.segments_scanned += other.segments_scanned;
        self.segments_removed += other.segments_removed;
        self.messages += other.messages;
        self.stray_records += other.stray_records;
        self.skipped_regions += other.skipped_regions;
        self.skipped_bytes += other.skipped_bytes;
        self.damaged_sealed_tails += other.damaged_sealed_tails;
        self.segment_gaps += other.segment_gaps;
        self.orphan_ack_files += other.orphan_ack_files;
        self.missing_ack_files += other.missing_ack_files;
    }

    /// One line for the log: counts of everything recovery found.
    pub fn summary(&self) -> String {
        format!(
            "{} messages in {} segments; {} damaged regions skipped ({} bytes); {} torn tails \
             truncated; {} damaged sealed-segment tails kept; {} orphan ack files; {} missing ack \
             files; {} missing segments; {} other warnings",
            self.messages,
            self.segments_scanned,
            self.skipped_regions,
            self.skipped_bytes,
            self.truncated.len(),
            self.damaged_sealed_tails,
            self.orphan_ack_files,
            self.missing_ack_files,
            self.segment_gaps,
            (self.warnings.len() as u64).saturating_sub(
                self.skipped_regions
                    + u64::from(self.damaged_sealed_tails)
                    + u64::from(self.orphan_ack_files)
                    + u64::from(self.missing_ack_files)
                    + u64::from(self.segment_gaps)
            ),
        )
    }

    pub(crate) fn warn(&mut self, file: &std::path::Path, offset: u64, reason: impl Into<String>) {
        self.warnings.push(RecoveryWarning {
            file: file.to_path_buf(),
            offset,
            reason: reason.into(),
        });
    }
}
