//! `GET /metrics` on the management port: the same text as the Prometheus listener's
//! `/metrics/per-object` ([`super::prometheus`]), behind the management API's authorisation
//! unless `--metrics-public`; plus the helpers both use.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::IntoResponse;

use super::shared::Shared;

/// Resident memory of this process in bytes (VmRSS from `/proc/self/status`; 0 elsewhere).
pub fn resident_memory_bytes() -> u64 {
    proc_field("/proc/self/status", "VmRSS:", 1).map_or(0, |kb| kb * 1024)
}

/// The `nth` whitespace-separated word, as a number, of the line of `file` starting `prefix`.
pub(super) fn proc_field(file: &str, prefix: &str, nth: usize) -> Option<u64> {
    let s = std::fs::read_to_string(file).ok()?;
    let line = s.lines().find(|l| l.starts_with(prefix))?;
    line.split_whitespace().nth(nth)?.parse().ok()
}

/// What start-up recovery found (issue 21): quarantined queue directories and damage skipped,
/// each a gauge fixed at start (re-attaching lowers the quarantine count).
pub(super) fn store_recovery_metrics(out: &mut String, p: &crate::persist::Persistence) {
    let r = p.store.recovery_totals();
    let d = &p.definitions_report;
    let rows: [(&str, &str, u64); 9] = [
        (
            "warren_quarantined_queue_dirs",
            "Queue directories named by no definition, kept in <data-dir>/quarantine",
            crate::persist::quarantine_count(&p.data_dir) as u64,
        ),
        (
            "warren_recovery_skipped_regions",
            "Damaged regions skipped in message segments at start-up",
            r.skipped_regions,
        ),
        (
            "warren_recovery_skipped_bytes",
            "Bytes in damaged regions and kept tails skipped at start-up",
            r.skipped_bytes,
        ),
        (
            "warren_recovery_truncated_tails",
            "Torn tails cut off the last segment or an ack file at start-up",
            r.truncated.len() as u64,
        ),
        (
            "warren_recovery_damaged_sealed_tails",
            "Sealed segments with a damaged tail, kept untruncated, at start-up",
            u64::from(r.damaged_sealed_tails),
        ),
        (
            "warren_recovery_orphan_ack_files",
            "Ack files whose segment was missing at start-up (kept as acks.N.orphan)",
            u64::from(r.orphan_ack_files),
        ),
        (
            "warren_recovery_missing_segments",
            "Segments deleted behind the broker's back, found missing at start-up",
            u64::from(r.segment_gaps),
        ),
        (
            "warren_recovery_missing_ack_files",
            "Ack files deleted behind the broker's back, found missing at start-up",
            u64::from(r.missing_ack_files),
        ),
        (
            "warren_recovery_definitions_damaged",
            "Damaged definitions-log records dropped at start-up (original file kept)",
            (d.warnings.iter().filter(|w| w.offset != 0).count() + d.truncated.len()) as u64,
        ),
    ];
    for (name, help, v) in rows {
        let _ = writeln!(out, "# TYPE {name} gauge\n# HELP {name} {help}\n{name} {v}");
    }
}

/// Renders every metric: the Prometheus listener's per-object form.
pub fn render(st: &Shared) -> String {
    super::prometheus::render(st, &super::prometheus::Scope::PerObject)
}

/// The `/metrics` handler.
pub async fn handler(State(st): State<Shared>) -> impl IntoResponse {
    super::prometheus::reply(render(&st))
}
