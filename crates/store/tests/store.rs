//! Behaviour tests of the message store: round trips, rollover and segment deletion, counters,
//! recovery from corruption and torn tails, poisoning, group commit, the definitions log.

mod common;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use common::TestDir;
use warren_store::{DefinitionsLog, FaultyFs, FileSystem, MsgPos, StdFs, Store, StoreError, StoreOptions};

fn opts(segment_size: u64) -> StoreOptions {
    StoreOptions {
        segment_size,
        ..StoreOptions::default()
    }
}

fn faulty_opts(segment_size: u64) -> (FaultyFs, StoreOptions) {
    let fs = FaultyFs::new(Arc::new(StdFs));
    let o = StoreOptions {
        segment_size,
        fs: Arc::new(fs.clone()),
        fsync: true,
    };
    (fs, o)
}

fn payload(i: u64) -> Vec<u8> {
    format!("message number {i}").into_bytes()
}

#[test]
fn round_trip() {
    let dir = TestDir::new("rt");
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let (mut log, rec) = store.open_queue("q1").unwrap();
    assert!(rec.is_empty());
    let mut pos = Vec::new();
    for i in 0..100 {
        pos.push(log.append(i, &payload(i)).unwrap());
    }
    // Readable while still buffered, and after flushing.
    assert_eq!(log.read(pos[7]).unwrap(), Bytes::from(payload(7)));
    log.flush().unwrap();
    store.syncer().sync_blocking().unwrap();
    assert_eq!(log.read(pos[99]).unwrap(), Bytes::from(payload(99)));
    let big = vec![0xAB; 100_000];
    let big_pos = log.append(100, &big).unwrap();
    log.flush().unwrap();
    assert_eq!(log.read(big_pos).unwrap(), Bytes::from(big.clone()));
    assert_eq!(log.live_count(), 101);
    drop(log);

    let (mut log, rec) = store.open_queue("q1").unwrap();
    assert!(log.recovery_report().is_clean(), "{:?}", log.recovery_report());
    assert_eq!(rec.len(), 101);
    for (i, r) in rec.iter().take(100).enumerate() {
        assert_eq!(r.seq, i as u64);
        assert_eq!(r.pos, pos[i]);
        assert_eq!(r.payload, Bytes::from(payload(i as u64)));
        assert_eq!((r.delivery_count, r.acquired_count), (0, 0));
    }
    assert_eq!(rec[100].payload.len(), 100_000);
    assert_eq!(log.read(pos[3]).unwrap(), Bytes::from(payload(3)));
    assert_eq!(log.live_count(), 101);
    assert_eq!(store.queue_names().unwrap(), vec!["q1".to_string()]);
}

#[test]
fn segment_rollover_and_deletion_of_acked_segments() {
    let dir = TestDir::new("roll");
    let store = Store::open(dir.path(), opts(1024)).unwrap();
    let (mut log, _) = store.open_queue("q").unwrap();
    let pos: Vec<MsgPos> = (0..2000).map(|i| log.append(i, &[7u8; 40]).unwrap()).collect();
    log.flush().unwrap();
    let segments = log.segment_count();
    assert!(segments > 50, "{segments} segments");
    assert!(pos.windows(2).all(|w| w[0] < w[1]));
    let full = store.disk_usage();
    assert!(full > 2000 * 40);
    for p in &pos[..1000] {
        log.ack(*p).unwrap();
    }
    log.flush().unwrap();
    assert!(log.segment_count() <= segments / 2 + 2);
    assert!(store.disk_usage() < full * 6 / 10);
    for p in &pos[1000..] {
        log.ack(*p).unwrap();
    }
    log.flush().unwrap();
    assert_eq!(log.live_count(), 0);
    // Only the segment still being written (and its ack file) remain.
    assert_eq!(log.segment_count(), 1);
    assert!(store.disk_usage() < 2 * 1024, "{}", store.disk_usage());
    drop(log);
    let (log, rec) = store.open_queue("q").unwrap();
    assert!(rec.is_empty());
    assert_eq!(log.segment_count(), 0);
    assert_eq!(store.disk_usage(), 0);
    // Acking an unknown position is an error, not a panic.
    drop(log);
    let (mut log, _) = store.open_queue("q").unwrap();
    assert!(matches!(log.ack(pos[5]), Err(StoreError::UnknownPosition(_))));
}

#[test]
fn counters_survive_reopen() {
    let dir = TestDir::new("counts");
    let store = Store::open(dir.path(), opts(512)).unwrap();
    let (mut log, _) = store.open_queue("q").unwrap();
    let pos: Vec<MsgPos> = (0..50).map(|i| log.append(i, &payload(i)).unwrap()).collect();
    for (i, p) in pos.iter().enumerate() {
        log.set_counts(*p, i as u32, 1).unwrap();
        log.set_counts(*p, i as u32 * 2, i as u32 + 3).unwrap(); // last one wins
    }
    log.ack(pos[10]).unwrap();
    log.flush().unwrap();
    drop(log);
    let (_log, rec) = store.open_queue("q").unwrap();
    assert_eq!(rec.len(), 49);
    for r in &rec {
        assert_ne!(r.seq, 10);
        assert_eq!(
            (r.delivery_count, r.acquired_count),
            (r.seq as u32 * 2, r.seq as u32 + 3)
        );
    }
}

#[test]
fn delivered_marks_survive_reopen_and_crash() {
    let dir = TestDir::new("delivered");
    let store = Store::open(dir.path(), opts(512)).unwrap();
    let (mut log, _) = store.open_queue("q").unwrap();
    let pos: Vec<MsgPos> = (0..40).map(|i| log.append(i, &payload(i)).unwrap()).collect();
    for i in [3usize, 17, 30] {
        log.mark_delivered(pos[i]).unwrap();
    }
    log.set_counts(pos[5], 1, 1).unwrap(); // returned once: delivered too
    log.mark_delivered(pos[30]).unwrap(); // twice is fine
    log.ack(pos[17]).unwrap();
    log.mark_delivered(pos[17]).unwrap(); // acked: a no-op
    log.flush().unwrap();
    // A crash: whatever reached the OS counts, nothing runs at close.
    std::mem::forget(log);
    let store = Store::open(dir.path(), opts(512)).unwrap();
    let (mut log, rec) = store.open_queue("q").unwrap();
    assert_eq!(rec.len(), 39);
    let flagged: Vec<u64> = rec.iter().filter(|r| r.delivered).map(|r| r.seq).collect();
    assert_eq!(flagged, [3, 5, 30]);
    // Paging reads carry the marks of messages recovered on disk too.
    let (batch, _) = log.read_batch(pos[0], 100, 1 << 20).unwrap();
    let flagged: Vec<u64> = batch.iter().filter(|r| r.delivered).map(|r| r.seq).collect();
    assert_eq!(flagged, [3, 5, 30]);
    drop(log);
    let (_log, rec) = store.open_queue("q").unwrap();
    assert_eq!(rec.iter().filter(|r| r.delivered).count(), 3);
}

#[test]
fn segments_from_before_delivered_records_count_as_delivered() {
    let dir = TestDir::new("olddeliv");
    let store = Store::open(dir.path(), opts(1 << 20)).unwrap();
    let (mut log, _) = store.open_queue("q").unwrap();
    for i in 0..3 {
        log.append(i, &payload(i)).unwrap();
    }
    log.flush().unwrap();
    drop(log);
    // Clear the header flag, as a segment written by an older version has it.
    let seg = dir.path().join("queues/q/msgs.0000000001");
    let mut data = std::fs::read(&seg).unwrap();
    assert_eq!(&data[12..16], &1u32.to_le_bytes(), "new segments carry the flag");
    data[12..16].copy_from_slice(&0u32.to_le_bytes());
    std::fs::write(&seg, &data).unwrap();
    let (mut log, rec) = store.open_queue("q").unwrap();
    assert!(log.recovery_report().is_clean(), "{:?}", log.recovery_report());
    assert!(
        rec.iter().all(|r| r.delivered),
        "unknown history: all may have been delivered"
    );
    // Messages written from now on are recorded.
    log.append(3, &payload(3)).unwrap();
    log.flush().unwrap();
    drop(log);
    let (_log, rec) = store.open_queue("q").unwrap();
    let flags: Vec<(u64, bool)> = rec.iter().map(|r| (r.seq, r.delivered)).collect();
    assert_eq!(flags, [(0, true), (1, true), (2, true), (3, false)]);
}

#[test]
fn crc_mismatch_in_the_middle_is_reported_and_the_rest_recovered() {
    let dir = TestDir::new("crc");
    let store = Store::open(dir.path(), opts(4096)).unwrap();
    let (mut log, _) = store.open_queue("q").unwrap();
    let pos: Vec<MsgPos> = (0..300).map(|i| log.append(i, &payload(i)).unwrap()).collect();
    log.flush().unwrap();
    drop(log);
    drop(store);
    // Flip a payload byte of the 5th message of segment 1.
    let victim = pos.iter().filter(|p| p.segment == 1).nth(4).copied().unwrap();
    let seg_path = dir.path().join("queues/q/msgs.0000000001");
    let mut bytes = std::fs::read(&seg_path).unwrap();
    bytes[victim.offset as usize + 8 + 8 + 2] ^= 0x55;
    std::fs::write(&seg_path, &bytes).unwrap();

    let store = Store::open(dir.path(), opts(4096)).unwrap();
    let (mut log, rec) = store.open_queue("q").unwrap();
    let report = log.recovery_report().clone();
    assert_eq!(report.warnings.len(), 1, "{report:?}");
    assert_eq!(report.warnings[0].file, seg_path);
    assert_eq!(report.warnings[0].offset, u64::from(victim.offset));
    assert!(report.truncated.is_empty());
    assert_eq!(rec.len(), 299);
    assert!(rec.iter().all(|r| r.pos != victim && r.payload == payload(r.seq)));
    // The skipped record is not in the index; its neighbours read fine.
    assert!(matches!(log.read(victim), Err(StoreError::UnknownPosition(_))));
    assert_eq!(log.read(pos[0]).unwrap(), payload(0));
    // Damage found by a read names file and offset.
    let mut bytes = std::fs::read(&seg_path).unwrap();
    bytes[pos[1].offset as usize + 8 + 8] ^= 0x01;
    std::fs::write(&seg_path, &bytes).unwrap();
    match log.read(pos[1]) {
        Err(StoreError::Corruption { file, offset, .. }) => {
            assert_eq!((file, offset), (seg_path.clone(), u64::from(pos[1].offset)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn absurd_length_in_a_sealed_segment_costs_only_that_record() {
    let dir = TestDir::new("len");
    let store = Store::open(dir.path(), opts(2048)).unwrap();
    let (mut log, _) = store.open_queue("q").unwrap();
    let pos: Vec<MsgPos> = (0..200).map(|i| log.append(i, &payload(i)).unwrap()).collect();
    drop(log);
    let victim = pos.iter().filter(|p| p.segment == 2).nth(3).copied().unwrap();
    let seg_path = dir.path().join("queues/q/msgs.0000000002");
    let mut bytes = std::fs::read(&seg_path).unwrap();
    bytes[victim.offset as usize + 3] = 0x7f; // absurd length
    std::fs::write(&seg_path, &bytes).unwrap();
    let (log, rec) = store.open_queue("q").unwrap();
    // The scan resynchronises on the next good record: only the victim is lost.
    assert_eq!(rec.len(), 199);
    assert!(rec.iter().all(|r| r.pos != victim));
    assert_eq!(log.recovery_report().warnings.len(), 1);
    assert!(rec.iter().any(|r| r.pos.segment == 3));
}

#[test]
fn torn_tail_is_truncated_and_earlier_records_recovered() {
    let dir = TestDir::new("torn");
    let (fs, o) = faulty_opts(1 << 20);
    let store = Store::open(dir.path(), o).unwrap();
    let (mut log, _) = store.open_queue("q").unwrap();
    for i in 0..10 {
        log.append(i, &payload(i)).unwrap();
    }
    log.flush().unwrap();
    store.syncer().sync_blocking().unwrap();
    // The next write reaches the disk only in part; the "machine" crashes.
    fs.tear_write_after(0, 30);
    for i in 10..20 {
        log.append(i, &payload(i)).unwrap();
    }
    assert!(matches!(log.flush(), Err(StoreError::Io(_))));
    assert!(store.is_poisoned());
    assert!(matches!(log.append(99, b"x"), Err(StoreError::Poisoned)));
    drop(log);
    drop(store);

    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let (mut log, rec) = store.open_queue("q").unwrap();
    let report = log.recovery_report().clone();
    assert!(report.warnings.is_empty(), "{report:?}");
    assert_eq!(report.truncated.len(), 1);
    // 30 bytes of the torn batch made it: the first 29-byte record whole, then a fragment.
    let whole = rec.len();
    assert!((10..=11).contains(&whole), "{whole}");
    for (i, r) in rec.iter().enumerate() {
        assert_eq!(r.seq, i as u64);
        assert_eq!(r.payload, Bytes::from(payload(i as u64)));
    }
    let p = log.append(100, b"after").unwrap();
    assert!(p.segment > rec[0].pos.segment);
    drop(log);
    let (log, rec2) = store.open_queue("q").unwrap();
    assert!(log.recovery_report().is_clean(), "{:?}", log.recovery_report());
    assert_eq!(rec2.len(), whole + 1);
}

#[test]
fn hand_cut_tail_of_last_segment() {
    let dir = TestDir::new("cut");
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let (mut log, _) = store.open_queue("q").unwrap();
    for i in 0..5 {
        log.append(i, &payload(i)).unwrap();
    }
    drop(log);
    let path = dir.path().join("queues/q/msgs.0000000001");
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    let (log, rec) = store.open_queue("q").unwrap();
    assert_eq!(rec.len(), 4);
    let t = &log.recovery_report().truncated;
    assert_eq!(t.len(), 1);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), t[0].offset);
}

#[test]
fn fsync_failure_poisons_and_fails_waiters() {
    let dir = TestDir::new("poison");
    let (fs, o) = faulty_opts(1 << 20);
    let store = Store::open(dir.path(), o).unwrap();
    let (mut log, _) = store.open_queue("q").unwrap();
    let p = log.append(1, b"one").unwrap();
    log.flush().unwrap();
    store.syncer().sync_blocking().unwrap();
    fs.fail_syncs_after(0);
    log.append(2, b"two").unwrap();
    log.flush().unwrap();
    let (tx, rx) = mpsc::channel();
    for _ in 0..3 {
        let tx = tx.clone();
        store.syncer().request(Box::new(move |r| tx.send(r).unwrap()));
    }
    for _ in 0..3 {
        assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap().is_err());
    }
    assert!(store.is_poisoned());
    assert!(store.poison_info().unwrap().restart_required);
    assert!(matches!(log.append(3, b"x"), Err(StoreError::Poisoned)));
    // Acks and counters are kept in memory (never written to a file in an unknown state).
    log.set_counts(p, 1, 1).unwrap();
    log.ack(p).unwrap();
    assert!(matches!(log.flush(), Err(StoreError::Poisoned)));
    fs.heal();
    // Still poisoned: healing the disk does not make the lost pages come back.
    assert!(matches!(store.try_recover(), Err(StoreError::Poisoned)));
    assert!(matches!(
        store.syncer().sync_blocking(),
        Err(StoreError::Poisoned)
    ));
}

/// Appends `n` messages of `size` bytes (seq from `first`) and flushes every 8; returns the
/// positions of those appended before the first failed flush and whether one failed.
fn fill(log: &mut warren_store::QueueLog, first: u64, n: u64, size: usize) -> (Vec<MsgPos>, bool) {
    let mut pos = Vec::new();
    for i in first..first + n {
        match log.append(i, &vec![i as u8; size]) {
            Ok(p) => pos.push(p),
            Err(_) => return (pos, true),
        }
        if i % 8 == 7 && log.flush().is_err() {
            return (pos, true);
        }
    }
    (pos, log.flush().is_err())
}

#[test]
fn full_disk_write_is_cut_back_and_store_recovers_without_restart() {
    let dir = TestDir::new("full");
    let (fs, o) = faulty_opts(64 * 1024);
    let store = Store::open(dir.path(), o).unwrap();
    let poisons = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let p2 = poisons.clone();
    store.set_poison_hook(Arc::new(move |info| {
        assert!(!info.restart_required, "{info:?}");
        assert!(info.error.contains("No space left"), "{info:?}");
        p2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    let (mut log, _) = store.open_queue("q").unwrap();
    // 100 KiB free: the write that does not fit reaches the file in part.
    fs.set_free_space(100 * 1024);
    let (written, failed) = fill(&mut log, 0, 1000, 1000);
    assert!(failed, "the disk filled");
    assert!(store.is_poisoned());
    assert_eq!(
        poisons.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "hook ran once"
    );
    let info = store.poison_info().unwrap();
    assert!(!info.restart_required, "a write failure is recoverable: {info:?}");
    assert!(matches!(log.append(5000, b"x"), Err(StoreError::Poisoned)));
    assert!(
        store.syncer().sync_blocking().is_err(),
        "nothing confirmed while poisoned"
    );
    // The partial write was cut back: every file ends with a complete record.
    for e in std::fs::read_dir(dir.path().join("queues/q")).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        let mut at = 16;
        while at < data.len() {
            let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
            at += 8 + len;
        }
        assert_eq!(at, data.len(), "no partial record at the end of a file");
    }
    assert!(store.try_recover().is_err(), "the disk is still full");
    assert!(store.is_poisoned());
    // Space comes back; the store recovers and writes what waited in its buffers.
    fs.set_free_space(10 << 20);
    store.try_recover().unwrap();
    assert!(!store.is_poisoned());
    log.flush().unwrap();
    store.syncer().sync_blocking().unwrap();
    let more = log.append(9999, b"after").unwrap();
    log.flush().unwrap();
    store.syncer().sync_blocking().unwrap();
    drop(log);
    let (log, rec) = store.open_queue("q").unwrap();
    assert!(log.recovery_report().is_clean(), "{:?}", log.recovery_report());
    assert_eq!(
        rec.len(),
        written.len() + 1,
        "every buffered message was written after recovery"
    );
    for (i, r) in rec.iter().take(written.len()).enumerate() {
        assert_eq!(r.pos, written[i]);
        assert_eq!(r.payload, Bytes::from(vec![i as u8; 1000]));
    }
    assert_eq!(rec.last().unwrap().pos, more);
}

#[test]
fn purge_on_a_full_disk_frees_space_and_its_acks_are_written_after_recovery() {
    let dir = TestDir::new("fullpurge");
    let (fs, o) = faulty_opts(16 * 1024);
    let store = Store::open(dir.path(), o).unwrap();
    let (mut log, _) = store.open_queue("q").unwrap();
    fs.set_free_space(200 * 1024);
    let (written, failed) = fill(&mut log, 0, 1000, 1000);
    assert!(failed && store.is_poisoned());
    assert!(log.segment_count() > 5);
    let free_before = fs.free_space();
    // Keep the first 3 messages, purge the rest (a partly purged first segment).
    let purged = log.ack_from(written[3]).unwrap();
    assert_eq!(purged, written.len() as u64 - 3);
    assert_eq!(log.live_count(), 3);
    assert_eq!(
        log.segment_count(),
        1,
        "emptied segments, the one being written too, are gone"
    );
    assert!(
        fs.free_space() > free_before + 150 * 1024,
        "space freed while poisoned: {} -> {}",
        free_before,
        fs.free_space()
    );
    assert!(log.buffered_bytes() > 0, "ack records wait for the recovery");
    fs.set_free_space(10 << 20);
    store.try_recover().unwrap();
    log.flush().unwrap();
    store.syncer().sync_blocking().unwrap();
    assert_eq!(log.buffered_bytes(), 0);
    drop(log);
    let (log, rec) = store.open_queue("q").unwrap();
    assert!(log.recovery_report().is_clean(), "{:?}", log.recovery_report());
    let seqs: Vec<u64> = rec.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        vec![0, 1, 2],
        "purged messages stay purged across a restart"
    );
}

#[test]
fn write_failure_poisons() {
    let dir = TestDir::new("wfail");
    let (fs, o) = faulty_opts(1 << 20);
    let store = Store::open(dir.path(), o).unwrap();
    let (mut log, _) = store.open_queue("q").unwrap();
    log.append(1, b"one").unwrap();
    fs.fail_writes_after(0);
    assert!(matches!(log.flush(), Err(StoreError::Io(_))));
    assert!(store.is_poisoned());
    assert!(store.syncer().sync_blocking().is_err());
}

#[test]
fn group_commit_batches_requests_from_many_threads() {
    let dir = TestDir::new("group");
    let (fs, o) = faulty_opts(1 << 20);
    fs.set_sync_delay(Duration::from_millis(2));
    let store = Store::open(dir.path(), o).unwrap();
    const THREADS: usize = 4;
    const PER_THREAD: u64 = 100;
    let mut joins = Vec::new();
    for t in 0..THREADS {
        let (mut log, _) = store.open_queue(&format!("q{t}")).unwrap();
        let syncer = store.syncer();
        joins.push(std::thread::spawn(move || {
            let (tx, rx) = mpsc::channel();
            // Pipelined: keep several requests in flight, like confirms for many publishers.
            for i in 0..PER_THREAD {
                log.append(i, &payload(i)).unwrap();
                log.flush().unwrap();
                let tx = tx.clone();
                syncer.request(Box::new(move |r| tx.send(r).unwrap()));
            }
            let mut ok = 0;
            for _ in 0..PER_THREAD {
                rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap();
                ok += 1;
            }
            ok
        }));
    }
    let answered: u64 = joins.into_iter().map(|j| j.join().unwrap()).sum();
    let requests = THREADS as u64 * PER_THREAD;
    assert_eq!(answered, requests);
    let stats = store.sync_stats();
    assert_eq!(stats.requests, requests);
    assert!(stats.passes < requests / 4, "{stats:?}");
    assert!(fs.sync_count() > 0);
    // Every message is on disk.
    for t in 0..THREADS {
        let (_log, rec) = store.open_queue(&format!("q{t}")).unwrap();
        assert_eq!(rec.len() as u64, PER_THREAD);
    }
}

#[test]
fn queue_management() {
    let dir = TestDir::new("mgmt");
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    for bad in ["", ".hidden", "a/b", "..", "x y"] {
        assert!(
            matches!(store.open_queue(bad), Err(StoreError::InvalidName(_))),
            "{bad:?}"
        );
    }
    let (mut a, _) = store.open_queue("a").unwrap();
    assert!(matches!(store.open_queue("a"), Err(StoreError::AlreadyOpen(_))));
    assert!(matches!(store.delete_queue("a"), Err(StoreError::AlreadyOpen(_))));
    a.append(1, b"x").unwrap();
    drop(a);
    let (_b, _) = store.open_queue("b").unwrap();
    assert_eq!(
        store.queue_names().unwrap(),
        vec!["a".to_string(), "b".to_string()]
    );
    store.delete_queue("a").unwrap();
    store.delete_queue("a").unwrap();
    assert_eq!(store.queue_names().unwrap(), vec!["b".to_string()]);
    let (_a, rec) = store.open_queue("a").unwrap();
    assert!(rec.is_empty());
}

#[test]
fn corrupt_ack_file_is_reported_and_rewritten() {
    let dir = TestDir::new("ackcrc");
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let (mut log, _) = store.open_queue("q").unwrap();
    let pos: Vec<MsgPos> = (0..10).map(|i| log.append(i, &payload(i)).unwrap()).collect();
    for p in &pos[..5] {
        log.ack(*p).unwrap();
    }
    drop(log);
    let ack_path = dir.path().join("queues/q/acks.0000000001");
    let mut bytes = std::fs::read(&ack_path).unwrap();
    bytes[16 + 13 + 9] ^= 1; // body of the second ack record
    std::fs::write(&ack_path, &bytes).unwrap();
    let (mut log, rec) = store.open_queue("q").unwrap();
    assert_eq!(log.recovery_report().warnings.len(), 1);
    // The second message's ack is lost (at-least-once: it comes back), the rest hold.
    assert_eq!(
        rec.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 5, 6, 7, 8, 9]
    );
    log.ack(rec[0].pos).unwrap();
    drop(log);
    let (log, rec) = store.open_queue("q").unwrap();
    assert!(log.recovery_report().is_clean(), "{:?}", log.recovery_report());
    assert_eq!(rec.len(), 5);
}

#[test]
fn definitions_log_append_reopen_rewrite() {
    let dir = TestDir::new("defs");
    let path = dir.path().join("definitions.log");
    let fs: Arc<dyn FileSystem> = Arc::new(StdFs);
    let (mut defs, recs) = DefinitionsLog::open(&path, fs.clone()).unwrap();
    assert!(recs.is_empty());
    defs.append(b"declare exchange x").unwrap();
    defs.append(b"declare queue q").unwrap();
    defs.append(b"").unwrap();
    defs.append(b"bind q x").unwrap();
    drop(defs);
    let (mut defs, recs) = DefinitionsLog::open(&path, fs.clone()).unwrap();
    assert_eq!(
        recs,
        vec![
            Bytes::from_static(b"declare exchange x"),
            Bytes::from_static(b"declare queue q"),
            Bytes::new(),
            Bytes::from_static(b"bind q x"),
        ]
    );
    defs.rewrite(&[Bytes::from_static(b"declare queue q")]).unwrap();
    defs.append(b"declare queue r").unwrap();
    drop(defs);
    let (_defs, recs) = DefinitionsLog::open(&path, fs.clone()).unwrap();
    assert_eq!(
        recs,
        vec![
            Bytes::from_static(b"declare queue q"),
            Bytes::from_static(b"declare queue r")
        ]
    );
    assert!(!dir.path().join("definitions.log.tmp").exists());

    // A torn final append is cut off.
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 2).unwrap();
    drop(f);
    let (mut defs, recs) = DefinitionsLog::open(&path, fs.clone()).unwrap();
    assert_eq!(recs, vec![Bytes::from_static(b"declare queue q")]);
    assert_eq!(defs.recovery_report().truncated.len(), 1);
    defs.append(b"z").unwrap();
    drop(defs);
    let (_defs, recs) = DefinitionsLog::open(&path, fs).unwrap();
    assert_eq!(recs.len(), 2);
}

#[test]
fn definitions_log_fsync_failure_poisons() {
    let dir = TestDir::new("defspoison");
    let faulty = FaultyFs::new(Arc::new(StdFs));
    let (mut defs, _) = DefinitionsLog::open(&dir.path().join("d"), Arc::new(faulty.clone())).unwrap();
    defs.append(b"a").unwrap();
    faulty.fail_syncs_after(0);
    assert!(defs.append(b"b").is_err());
    assert!(defs.is_poisoned());
    assert!(matches!(defs.append(b"c"), Err(StoreError::Poisoned)));
}

/// Drains the log with `read_batch` from `from`, `n` messages at a time.
fn read_all_batches(
    log: &mut warren_store::QueueLog,
    from: MsgPos,
    n: usize,
) -> Vec<warren_store::Recovered> {
    read_all_batches_bytes(log, from, n, 1 << 20)
}

fn read_all_batches_bytes(
    log: &mut warren_store::QueueLog,
    from: MsgPos,
    n: usize,
    max_bytes: usize,
) -> Vec<warren_store::Recovered> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let (batch, next) = log.read_batch(at, n, max_bytes).unwrap();
        if batch.is_empty() {
            return out;
        }
        assert!(batch.len() <= n);
        at = next;
        out.extend(batch);
    }
}

#[test]
fn read_batch_pages_live_messages_in_order_across_segments() {
    let dir = TestDir::new("batch");
    let store = Store::open(dir.path(), opts(4096)).unwrap();
    let (mut log, _) = store.open_queue("q").unwrap();
    let mut pos = Vec::new();
    for i in 0..600 {
        pos.push(log.append(i, &payload(i)).unwrap());
    }
    assert!(log.segment_count() > 3);
    // Acked messages (delivered from memory) are skipped; the rest comes back in order,
    // including the records still in the write buffer.
    for i in (0..600).step_by(7) {
        log.ack(pos[i as usize]).unwrap();
    }
    let got = read_all_batches(&mut log, pos[0], 50);
    let want: Vec<u64> = (0..600).filter(|i| i % 7 != 0).collect();
    assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), want);
    // A byte limit that stops batches in the middle of segments loses nothing either.
    for max_bytes in [1, 100, 300, 1000, 5000] {
        let got = read_all_batches_bytes(&mut log, pos[0], 1000, max_bytes);
        assert_eq!(
            got.iter().map(|r| r.seq).collect::<Vec<_>>(),
            want,
            "max_bytes {max_bytes}"
        );
    }
    for r in &got {
        assert_eq!(r.payload, Bytes::from(payload(r.seq)));
        assert_eq!(r.pos, pos[r.seq as usize]);
    }
    // A cursor at the end of the segment being written sees later appends to that segment.
    let (rest, end) = log.read_batch(pos[599], 10, 1 << 20).unwrap();
    assert_eq!(rest.len(), 1);
    let p600 = log.append(600, &payload(600)).unwrap();
    let (more, _) = log.read_batch(end, 10, 1 << 20).unwrap();
    assert_eq!(more.iter().map(|r| r.pos).collect::<Vec<_>>(), vec![p600]);
    // The byte limit stops a batch early but always returns at least one message.
    let (small, _) = log.read_batch(pos[1], 1000, 1).unwrap();
    assert_eq!(small.len(), 1);
}

/// A planned read does its file IO without the log: the log keeps appending (and is not
/// borrowed) while the plan's read is held on another thread, and the result taken back is the
/// one `read_batch` gives.
#[test]
fn a_planned_read_runs_off_the_log_while_it_keeps_appending() {
    let dir = TestDir::new("plan");
    let (faulty, o) = faulty_opts(4096);
    let store = Store::open(dir.path(), o).unwrap();
    let (mut log, _) = store.open_queue("q").unwrap();
    let mut pos = Vec::new();
    for i in 0..300 {
        pos.push(log.append(i, &payload(i)).unwrap());
    }
    let plan = log.plan_read(pos[10], 100, 1 << 20).unwrap();
    assert!(!plan.is_empty());
    faulty.hold_reads();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || tx.send(plan.read()).unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while faulty.reads_waiting() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the planned read never started"
        );
        std::thread::yield_now();
    }
    // The read is in progress (held): the log is free and keeps taking appends.
    for i in 300..350 {
        pos.push(log.append(i, &payload(i)).unwrap());
    }
    assert!(rx.try_recv().is_err());
    faulty.release_reads();
    let done = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    reader.join().unwrap();
    let (got, next) = log.finish_read(done).unwrap();
    assert_eq!(
        got.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (10..110).collect::<Vec<_>>()
    );
    for r in &got {
        assert_eq!(r.payload, Bytes::from(payload(r.seq)));
    }
    let (same, same_next) = log.read_batch(pos[10], 100, 1 << 20).unwrap();
    assert_eq!(
        same.iter().map(|r| r.seq).collect::<Vec<_>>(),
        got.iter().map(|r| r.seq).collect::<Vec<_>>()
    );
    assert_eq!(same_next, next);
    // From there on, the rest, including what was appended during the read.
    let rest = read_all_batches(&mut log, next, 64);
    assert_eq!(
        rest.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (110..350).collect::<Vec<_>>()
    );
}

#[test]
fn recovery_visitor_and_read_batch_keep_counters_off_heap() {
    let dir = TestDir::new("visit");
    let store = Store::open(dir.path(), opts(4096)).unwrap();
    {
        let (mut log, _) = store.open_queue("q").unwrap();
        let mut pos = Vec::new();
        for i in 0..300 {
            pos.push(log.append(i, &payload(i)).unwrap());
        }
        log.set_counts(pos[250], 3, 4).unwrap();
        log.ack(pos[0]).unwrap();
        log.flush().unwrap();
    }
    // Keep the first 100 in memory, leave the rest on disk.
    let mut kept = Vec::new();
    let mut first_left: Option<MsgPos> = None;
    let mut left = 0;
    let mut log = store
        .open_queue_with("q", &mut |r| {
            if kept.len() < 100 {
                kept.push(r.to_owned());
            } else {
                first_left.get_or_insert(r.pos);
                left += 1;
            }
        })
        .unwrap();
    assert_eq!((kept.len(), left), (100, 199));
    assert_eq!(kept[0].seq, 1);
    let paged = read_all_batches(&mut log, first_left.unwrap(), 64);
    assert_eq!(paged.len(), 199);
    assert_eq!(paged[0].seq, 101);
    let r250 = paged.iter().find(|r| r.seq == 250).unwrap();
    assert_eq!((r250.delivery_count, r250.acquired_count), (3, 4));
    // Purging what was left on disk removes whole segments without ack records.
    assert_eq!(log.ack_from(first_left.unwrap()).unwrap(), 199);
    assert_eq!(log.live_count(), 100);
    for r in &kept {
        log.ack(r.pos).unwrap();
    }
    assert_eq!(log.live_count(), 0);
    log.flush().unwrap();
    drop(log);
    let (_log, rec) = store.open_queue("q").unwrap();
    assert!(rec.is_empty());
}

/// A record damaged after recovery (found by a page-in read) is reported with file and offset,
/// acked so it is never read again, and skipped; the rest of the batch comes back.
#[test]
fn read_batch_skips_and_reports_a_damaged_record() {
    let dir = TestDir::new("batchcrc");
    let store = Store::open(dir.path(), opts(1 << 20)).unwrap();
    let (mut log, _) = store.open_queue("q").unwrap();
    let pos: Vec<MsgPos> = (0..20).map(|i| log.append(i, &payload(i)).unwrap()).collect();
    log.flush().unwrap();
    let seg_path = dir.path().join(format!("queues/q/msgs.{:010}", pos[0].segment));
    let mut bytes = std::fs::read(&seg_path).unwrap();
    bytes[pos[7].offset as usize + 8 + 8 + 2] ^= 0x55;
    std::fs::write(&seg_path, &bytes).unwrap();
    let live = log.live_count();
    let (batch, _) = log.read_batch(pos[0], 100, 1 << 20).unwrap();
    let want: Vec<u64> = (0..20).filter(|i| *i != 7).collect();
    assert_eq!(batch.iter().map(|r| r.seq).collect::<Vec<_>>(), want);
    let w = log.recovery_report().warnings.last().expect("a warning").clone();
    assert_eq!((w.file, w.offset), (seg_path, u64::from(pos[7].offset)));
    assert_eq!(log.live_count(), live - 1, "the damaged record is acked");
    let (again, _) = log.read_batch(pos[0], 100, 1 << 20).unwrap();
    assert_eq!(again.len(), 19);
}

/// Issue 17: the log's in-memory index holds nothing per message. 200,000 messages left on
/// disk (recovered without keeping any) cost less than one bit each — the earlier index cost
/// 5 bytes — and draining half of them through page-in reads and acks adds only the bitmap of
/// the segment being consumed.
#[test]
fn index_memory_does_not_grow_with_messages_left_on_disk() {
    const N: u64 = 200_000;
    let dir = TestDir::new("idxmem");
    let store = Store::open(dir.path(), opts(1 << 20)).unwrap();
    {
        let (mut log, _) = store.open_queue("q").unwrap();
        for i in 0..N {
            log.append(i, &i.to_le_bytes()).unwrap();
        }
        log.flush().unwrap();
        assert!(log.index_bytes() < (N / 8) as usize, "{} B", log.index_bytes());
    }
    let mut first = None;
    let mut log = store
        .open_queue_with("q", &mut |r| {
            first.get_or_insert(r.pos);
        })
        .unwrap();
    assert_eq!(log.live_count(), N);
    let idle = log.index_bytes();
    assert!(idle < (N / 8) as usize, "{idle} B for {N} messages on disk");
    let mut at = first.unwrap();
    let mut seen = 0u64;
    while seen < N / 2 {
        let (batch, next) = log.read_batch(at, 1000, 1 << 20).unwrap();
        for r in &batch {
            assert_eq!(r.seq, seen);
            seen += 1;
            log.ack(r.pos).unwrap();
        }
        at = next;
    }
    assert_eq!(log.live_count(), N - seen);
    // One partly consumed 1 MiB segment: at most 8 KiB of bitmap.
    assert!(
        log.index_bytes() < idle + 8 * 1024 + 64,
        "{} B",
        log.index_bytes()
    );
}
