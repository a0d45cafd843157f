//! `warren --check-data-dir D`: the offline check of a data directory (issue 21). Takes the
//! directory's lock (so it refuses while a broker runs on it), then runs the same recovery the
//! broker runs at start-up over [`ReadOnlyFs`](warren_store::ReadOnlyFs) — reads only, every
//! write a no-op — and reports what a start would find: damaged definitions records, damaged
//! regions skipped in segments, torn tails it would cut, damaged sealed-segment tails it would
//! keep, orphan ack files, missing segments, queue directories no definition names (which a
//! start moves to `quarantine/`) and what `quarantine/` already holds. Nothing changes on disk.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use warren_store::{DataDirLock, DefinitionsLog, ReadOnlyFs, RecoveryReport};

use crate::broker::Broker;
use crate::config::Config;

/// The check's findings: the report text and whether anything was found.
#[derive(Debug)]
pub struct CheckOutcome {
    /// Human-readable report, one finding per line, a summary line last.
    pub text: String,
    /// Whether nothing was damaged, missing or quarantined.
    pub clean: bool,
}

/// Checks `data_dir` without changing it. Fails if the directory is missing or locked.
pub fn check_data_dir(data_dir: &Path) -> Result<CheckOutcome, String> {
    if !data_dir.is_dir() {
        return Err(format!("{} is not a directory", data_dir.display()));
    }
    let _lock = DataDirLock::acquire(data_dir).map_err(|e| e.to_string())?;
    let mut text = String::new();
    let mut clean = true;
    let (defs, records) = DefinitionsLog::open(&data_dir.join("definitions.log"), Arc::new(ReadOnlyFs))
        .map_err(|e| format!("definitions log: {e}"))?;
    let d = defs.recovery_report();
    for w in d.warnings.iter().filter(|w| w.offset != 0) {
        clean = false;
        let _ = writeln!(text, "definitions.log: offset {}: {}", w.offset, w.reason);
    }
    for t in &d.truncated {
        clean = false;
        let _ = writeln!(
            text,
            "definitions.log: damaged final record at offset {} ({} bytes) would be dropped",
            t.offset, t.dropped
        );
    }
    let broker = Broker::new(Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    });
    broker.replay_definitions(records);
    let named = broker.durable_queue_dirs();

    let mut total = RecoveryReport::default();
    let queues = data_dir.join("messages").join("queues");
    let mut dirs: Vec<_> = std::fs::read_dir(&queues)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    dirs.retain(|n| warren_store::is_valid_queue_name(n) && queues.join(n).is_dir());
    dirs.sort();
    let mut unnamed = 0;
    for dir in &dirs {
        let path = queues.join(dir);
        let r = match warren_store::inspect_queue_dir(&path) {
            Ok(r) => r,
            Err(e) => {
                clean = false;
                let _ = writeln!(text, "queue dir {dir}: cannot be read: {e}");
                continue;
            }
        };
        describe(&mut text, dir, &r);
        if !named.contains(dir) {
            unnamed += 1;
            let _ = writeln!(
                text,
                "queue dir {dir}: named by no definition ({} messages, {} bytes); a start moves it to quarantine/",
                r.messages,
                warren_store::dir_size(&path)
            );
        }
        total.absorb(&r);
    }
    let quarantined = crate::persist::list_quarantine(data_dir);
    for q in &quarantined {
        let _ = writeln!(
            text,
            "quarantine/{}: queue '{}' in vhost '{}', {} messages, {} bytes",
            q.dir,
            q.queue.as_deref().unwrap_or("?"),
            q.vhost.as_deref().unwrap_or("?"),
            q.messages,
            q.bytes
        );
    }
    clean &= total.is_clean() && total.orphan_ack_files == 0 && unnamed == 0 && quarantined.is_empty();
    let _ = writeln!(
        text,
        "{}: {} queue dirs; {}; {} named by no definition; {} in quarantine; {}",
        data_dir.display(),
        dirs.len(),
        total.summary(),
        unnamed,
        quarantined.len(),
        if clean {
            "clean"
        } else {
            "problems found (nothing was changed)"
        }
    );
    Ok(CheckOutcome { text, clean })
}

/// One line per finding in one queue directory's report.
fn describe(text: &mut String, dir: &str, r: &RecoveryReport) {
    for w in &r.warnings {
        let file = w
            .file
            .file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default();
        let _ = writeln!(text, "queue dir {dir}: {file} offset {}: {}", w.offset, w.reason);
    }
    for t in &r.truncated {
        let file = t
            .file
            .file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "queue dir {dir}: {file}: torn tail at offset {} ({} bytes) would be cut",
            t.offset, t.dropped
        );
    }
    if r.segment_gaps > 0 {
        let _ = writeln!(
            text,
            "queue dir {dir}: {} segments missing (created, never removed by the broker): their messages are lost",
            r.segment_gaps
        );
    }
}
