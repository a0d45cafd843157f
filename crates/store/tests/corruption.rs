//! Corruption and missing files (issue 21): every fault leaves each undamaged message
//! recoverable, deletes nothing that recovery did not itself find to be a torn write, and is
//! reported — in the [`RecoveryReport`](warren_store::RecoveryReport) of the log and, without
//! changing a byte, by the read-only [`inspect_queue_dir`].

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use common::TestDir;
use warren_store::{DefinitionsLog, MsgPos, StdFs, Store, StoreOptions, inspect_queue_dir};

fn opts(segment_size: u64) -> StoreOptions {
    StoreOptions {
        segment_size,
        ..StoreOptions::default()
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!("message number {i}").into_bytes()
}

/// Writes `n` messages to log `q` in segments of 2 KiB, acks those `ack` selects, closes it.
fn fill(dir: &Path, n: u64, ack: impl Fn(u64) -> bool) -> Vec<MsgPos> {
    let store = Store::open(dir, opts(2048)).unwrap();
    let (mut log, _) = store.open_queue("q").unwrap();
    let pos: Vec<MsgPos> = (0..n).map(|i| log.append(i, &payload(i)).unwrap()).collect();
    for (i, p) in pos.iter().enumerate() {
        if ack(i as u64) {
            log.ack(*p).unwrap();
        }
    }
    log.close().unwrap();
    pos
}

fn seg(dir: &Path, kind: &str, n: u32) -> PathBuf {
    dir.join(format!("queues/q/{kind}.{n:010}"))
}

/// Every file under `dir` with its contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The offline check reports what opening will find, and changes nothing.
fn inspect_changes_nothing(dir: &Path) -> warren_store::RecoveryReport {
    let before = snapshot(dir);
    let r = inspect_queue_dir(&dir.join("queues/q")).unwrap();
    assert_eq!(before, snapshot(dir), "the offline check changed files");
    r
}

fn recovered_seqs(dir: &Path) -> (Vec<u64>, warren_store::RecoveryReport) {
    let store = Store::open(dir, opts(2048)).unwrap();
    let (log, rec) = store.open_queue("q").unwrap();
    for r in &rec {
        assert_eq!(r.payload, Bytes::from(payload(r.seq)), "intact payload");
    }
    (rec.iter().map(|r| r.seq).collect(), log.recovery_report().clone())
}

#[test]
fn corrupted_length_in_a_sealed_segment_costs_one_record_and_never_truncates() {
    let dir = TestDir::new("seallen");
    let pos = fill(dir.path(), 200, |_| false);
    let in_two: Vec<usize> = (0..pos.len()).filter(|&i| pos[i].segment == 2).collect();
    let victim = in_two[3];
    let path = seg(dir.path(), "msgs", 2);
    let mut bytes = std::fs::read(&path).unwrap();
    // A length that makes the record seem to run past the end of the file.
    bytes[pos[victim].offset as usize..][..4].copy_from_slice(&1_000_000u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();

    let offline = inspect_changes_nothing(dir.path());
    let (seqs, report) = recovered_seqs(dir.path());
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "sealed segment untouched");
    let want: Vec<u64> = (0..200).filter(|&i| i != victim as u64).collect();
    assert_eq!(seqs, want, "every other message recovered");
    assert!(report.truncated.is_empty(), "{report:?}");
    assert_eq!(report.skipped_regions, 1);
    assert_eq!(report.warnings.len(), 1);
    assert_eq!(report.warnings[0].offset, u64::from(pos[victim].offset));
    assert_eq!((offline.skipped_regions, offline.messages), (1, 199));
}

#[test]
fn damaged_last_record_of_a_sealed_segment_is_kept_not_truncated() {
    let dir = TestDir::new("sealtail");
    let pos = fill(dir.path(), 200, |_| false);
    let last_in_two = (0..pos.len())
        .filter(|&i| pos[i].segment == 2)
        .next_back()
        .unwrap();
    let path = seg(dir.path(), "msgs", 2);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[pos[last_in_two].offset as usize..][..4].copy_from_slice(&1_000_000u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();

    let (seqs, report) = recovered_seqs(dir.path());
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "sealed segment untouched");
    assert_eq!(seqs.len(), 199);
    assert!(!seqs.contains(&(last_in_two as u64)));
    assert!(report.truncated.is_empty(), "{report:?}");
    assert_eq!(report.damaged_sealed_tails, 1);
    // Kept for inspection even once every message in it is acked.
    let store = Store::open(dir.path(), opts(2048)).unwrap();
    let (mut log, rec) = store.open_queue("q").unwrap();
    for r in rec.iter().filter(|r| r.pos.segment == 2) {
        log.ack(r.pos).unwrap();
    }
    log.close().unwrap();
    assert!(path.exists());
}

#[test]
fn deleted_middle_segment_is_reported_and_its_ack_file_kept() {
    let dir = TestDir::new("midseg");
    // Ack one message of segment 2 so it has an ack file.
    let pos = fill(dir.path(), 200, |i| i == 80);
    assert_eq!(pos[80].segment, 2, "{:?}", pos[80]);
    std::fs::remove_file(seg(dir.path(), "msgs", 2)).unwrap();

    let offline = inspect_changes_nothing(dir.path());
    let (seqs, report) = recovered_seqs(dir.path());
    let want: Vec<u64> = (0..200).filter(|&i| pos[i as usize].segment != 2).collect();
    assert_eq!(seqs, want, "every message of the other segments recovered");
    assert_eq!(
        (report.orphan_ack_files, report.segment_gaps),
        (1, 1),
        "{report:?}"
    );
    assert_eq!((offline.orphan_ack_files, offline.segment_gaps), (1, 1));
    assert!(dir.path().join("queues/q/acks.0000000002.orphan").exists());
    assert!(
        report.summary().contains("1 orphan ack files"),
        "{}",
        report.summary()
    );
}

#[test]
fn deleted_middle_segment_without_an_ack_file_is_reported() {
    let dir = TestDir::new("midseg-noacks");
    let pos = fill(dir.path(), 200, |_| false);
    assert!(pos.iter().any(|p| p.segment == 3), "at least three segments");
    std::fs::remove_file(seg(dir.path(), "msgs", 2)).unwrap();

    let offline = inspect_changes_nothing(dir.path());
    assert_eq!(offline.segment_gaps, 1, "{offline:?}");
    let (seqs, report) = recovered_seqs(dir.path());
    let want: Vec<u64> = (0..200).filter(|&i| pos[i as usize].segment != 2).collect();
    assert_eq!(seqs, want, "every message of the other segments recovered");
    assert_eq!(report.segment_gaps, 1, "{report:?}");
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.file.ends_with("msgs.0000000002") && w.reason.contains("missing")),
        "{report:?}"
    );
    assert!(
        report.summary().contains("1 missing segments"),
        "{}",
        report.summary()
    );
    // Reported once: the index is rewritten to what is present.
    let (_, again) = recovered_seqs(dir.path());
    assert_eq!(again.segment_gaps, 0, "{again:?}");
}

#[test]
fn a_middle_segment_the_broker_removed_is_not_a_fault() {
    let dir = TestDir::new("midseg-acked");
    let pos = fill(dir.path(), 200, |_| false);
    {
        let store = Store::open(dir.path(), opts(2048)).unwrap();
        let (mut log, rec) = store.open_queue("q").unwrap();
        for r in rec.iter().filter(|r| r.pos.segment == 2) {
            log.ack(r.pos).unwrap();
        }
        log.close().unwrap();
    }
    assert!(
        !seg(dir.path(), "msgs", 2).exists(),
        "fully acked sealed segment removed"
    );
    let offline = inspect_changes_nothing(dir.path());
    let (seqs, report) = recovered_seqs(dir.path());
    let want: Vec<u64> = (0..200).filter(|&i| pos[i as usize].segment != 2).collect();
    assert_eq!(seqs, want);
    assert_eq!((report.segment_gaps, offline.segment_gaps), (0, 0), "{report:?}");
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn deleted_ack_file_brings_acked_messages_back_and_is_reported() {
    let dir = TestDir::new("delacks");
    let pos = fill(dir.path(), 200, |i| i % 2 == 0);
    let seg2: Vec<u64> = (0..200).filter(|&i| pos[i as usize].segment == 2).collect();
    std::fs::remove_file(seg(dir.path(), "acks", 2)).unwrap();

    let offline = inspect_changes_nothing(dir.path());
    let (seqs, report) = recovered_seqs(dir.path());
    // At-least-once: the acked messages of segment 2 come back; none is lost.
    let want: Vec<u64> = (0..200)
        .filter(|&i| i % 2 == 1 || pos[i as usize].segment == 2)
        .collect();
    assert_eq!(seqs, want);
    assert!(seg2.len() > 2);
    assert_eq!(report.missing_ack_files, 1, "{report:?}");
    assert_eq!(offline.missing_ack_files, 1);
    assert!(!report.is_clean());
}

#[test]
fn truncated_last_segment_keeps_every_whole_record_and_is_reported() {
    let dir = TestDir::new("lastcut");
    let pos = fill(dir.path(), 200, |_| false);
    let last = pos.last().unwrap().segment;
    let path = seg(dir.path(), "msgs", last);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 5)
        .unwrap();

    let offline = inspect_changes_nothing(dir.path());
    assert_eq!(offline.truncated.len(), 1);
    let (seqs, report) = recovered_seqs(dir.path());
    assert_eq!(seqs, (0..199).collect::<Vec<u64>>());
    assert_eq!(report.truncated.len(), 1);
    assert_eq!(report.truncated[0].offset, u64::from(pos[199].offset));
}

#[test]
fn flipped_byte_in_a_definitions_record_loses_that_record_only() {
    let dir = TestDir::new("defflip");
    let path = dir.path().join("definitions.log");
    let fs: Arc<dyn warren_store::FileSystem> = Arc::new(StdFs);
    let recs: Vec<Vec<u8>> = (0..10).map(|i| format!("definition {i}").into_bytes()).collect();
    let (mut defs, _) = DefinitionsLog::open(&path, fs.clone()).unwrap();
    for r in &recs {
        defs.append(r).unwrap();
    }
    drop(defs);
    let original = std::fs::read(&path).unwrap();
    for (victim, byte) in [(4usize, 10usize), (4, 0), (9, 10)] {
        // byte 0 is the length field: the record seems to run past the end of the file.
        let mut bytes = original.clone();
        let at = 16 + recs[..victim].iter().map(|r| 8 + r.len()).sum::<usize>() + byte;
        bytes[at] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let (defs, got) = DefinitionsLog::open(&path, fs.clone()).unwrap();
        let want: Vec<Bytes> = recs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != victim)
            .map(|(_, r)| Bytes::from(r.clone()))
            .collect();
        assert_eq!(got, want, "victim {victim} byte {byte}");
        assert!(!defs.recovery_report().is_clean());
        // The damaged original is kept beside the log.
        let kept: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("definitions.log.damaged-")
            })
            .collect();
        assert!(!kept.is_empty());
        assert!(kept.iter().any(|e| std::fs::read(e.path()).unwrap() == bytes));
        for e in kept {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
}

#[test]
fn quarantined_directory_keeps_its_files_and_definition_and_can_be_restored() {
    let dir = TestDir::new("quar");
    fill(dir.path(), 100, |i| i < 10);
    let store = Store::open(dir.path(), opts(2048)).unwrap();
    store.write_queue_meta("q", b"declare q").unwrap();
    let before = snapshot(&dir.path().join("queues/q"));
    let dest = dir.path().join("quarantine");
    let to = store.quarantine_queue("q", &dest).unwrap();
    assert_eq!(to, dest.join("q"));
    assert!(!dir.path().join("queues/q").exists());
    assert_eq!(before.len(), snapshot(&to).len(), "every file moved");
    assert_eq!(
        warren_store::read_queue_meta(&to).as_deref(),
        Some(&b"declare q"[..])
    );
    assert_eq!(inspect_queue_dir(&to).unwrap().messages, 90);
    store.restore_queue(&to, "q").unwrap();
    let (_log, rec) = store.open_queue("q").unwrap();
    assert_eq!(
        rec.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (10..100).collect::<Vec<_>>()
    );
}
