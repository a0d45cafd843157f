//! A full disk must never cost a confirmed message: the store's fault-injecting filesystem
//! (`warren_store::FaultyFs`) under an in-process broker for the deterministic part — nacks,
//! the disk alarm raised by the failure itself, channel close without confirms, purge on a
//! poisoned store, recovery without a restart, "restart required" after an fsync failure — and
//! a real `warren` process on a small tmpfs filled with confirmed persistent messages (skipped
//! with a message where mounting is not permitted).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use lapin::Confirmation;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use warren_server::http::client;
use warren_store::{FaultyFs, StdFs};

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

/// A body of `size` bytes that starts with `id`.
fn body(id: u64, size: usize) -> Vec<u8> {
    let mut b = vec![0x5a; size.max(8)];
    b[..8].copy_from_slice(&id.to_le_bytes());
    b
}

fn body_id(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

/// A broker whose message store writes through `fs`.
async fn start_faulty() -> (TestBroker, FaultyFs) {
    let fs = FaultyFs::new(Arc::new(StdFs));
    let inner = fs.clone();
    let b = start_with(move |c| c.store_fs = Some(Arc::new(inner))).await;
    (b, fs)
}

async fn confirm_channel(conn: &Connection, queue: &str) -> Channel {
    let ch = conn.create_channel().await.unwrap();
    declare_durable(&ch, queue, FieldTable::default()).await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    ch
}

/// Publishes one persistent message of `size` bytes starting with `id`.
async fn publish_body(
    ch: &Channel,
    queue: &str,
    id: u64,
    size: usize,
) -> lapin::Result<lapin::PublisherConfirm> {
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        &body(id, size),
        persistent(),
    )
    .await
}

/// Publishes one persistent message and waits for its confirm.
async fn publish_confirmed(ch: &Channel, queue: &str, id: u64, size: usize) -> Confirmation {
    within(10, "publisher confirm", async {
        publish_body(ch, queue, id, size).await.unwrap().await.unwrap()
    })
    .await
}

/// Drains `queue` with basic.get (no-ack) and returns the ids found.
async fn drain_ids(ch: &Channel, queue: &str) -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        ids.insert(body_id(&m.delivery.data));
    }
    ids
}

/// Stops `b` and starts a broker (real filesystem) on the same data directory.
async fn restart(b: TestBroker) -> (TestBroker, common::tempdir::Dir) {
    let TestBroker {
        running, data_dir, ..
    } = b;
    running.shutdown().await;
    let dir = data_dir.path.clone();
    (start_with(move |c| c.data_dir = dir).await, data_dir)
}

fn store_poisoned(b: &TestBroker) -> bool {
    warren_server::monitor::store_problem(&b.running.broker).is_some()
}

#[tokio::test]
async fn publishes_after_a_failed_write_are_nacked_at_once_and_the_store_recovers() {
    let (b, fs) = start_faulty().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn, "q").await;
    let mut acked = Vec::new();
    for id in 0..5 {
        assert!(publish_confirmed(&ch, "q", id, 100).await.is_ack());
        acked.push(id);
    }
    fs.fail_writes_after(0);
    // Every publish from the failure on is nacked, and the disk alarm is up by the time the
    // first nack arrives (not at the next sample).
    assert!(publish_confirmed(&ch, "q", 100, 100).await.is_nack());
    assert!(
        b.running.broker.alarms.current().disk,
        "disk alarm raised by the failure"
    );
    let problem = warren_server::monitor::store_problem(&b.running.broker).expect("store poisoned");
    assert!(!problem.restart_required, "{problem:?}");
    // Space comes back: the monitor recovers the store without a restart.
    fs.heal();
    wait_until(10, "store recovered", || !store_poisoned(&b)).await;
    wait_until(10, "disk alarm cleared", || {
        !b.running.broker.alarms.current().disk
    })
    .await;
    for id in 200..205 {
        assert!(
            publish_confirmed(&ch, "q", id, 100).await.is_ack(),
            "acked after recovery"
        );
        acked.push(id);
    }
    drop(ch);
    let _ = conn.close(200, "bye".into()).await;
    let (b2, _dir) = restart(b).await;
    let conn = b2.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let ids = drain_ids(&ch, "q").await;
    for id in &acked {
        assert!(ids.contains(id), "confirmed message {id} lost: {ids:?}");
    }
    // The nacked message may be there too (it waited in the log's buffer): at least once.
    assert!(ids.len() <= acked.len() + 1, "{ids:?}");
}

#[tokio::test]
async fn a_publish_without_confirms_that_cannot_be_stored_closes_the_channel() {
    let (b, fs) = start_faulty().await;
    let conn = b.connect().await;
    let confirms = confirm_channel(&conn, "q").await;
    fs.fail_writes_after(0);
    assert!(publish_confirmed(&confirms, "q", 1, 100).await.is_nack());
    // A second connection, before the monitor could block it: its publish is not silently
    // dropped.
    let conn2 = b.connect().await;
    let ch = conn2.create_channel().await.unwrap();
    let mut w = watch(&ch).await;
    ch.basic_publish(
        "".into(),
        "q".into(),
        BasicPublishOptions::default(),
        &body(2, 100),
        persistent(),
    )
    .await
    .unwrap();
    let (code, text) = closed_with(&mut w).await;
    assert_eq!(code, 506, "{text}");
    assert!(text.contains("not stored"), "{text}");
    // The nacked one waits in the log's buffer (at least once); the refused one is not there.
    assert_eq!(counts(&b, "q").0, 1, "the unstored publish was not taken");
}

#[tokio::test]
async fn purge_on_a_full_disk_frees_space_and_stays_purged_across_restart() {
    let (b, fs) = start_faulty().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn, "q").await;
    // 4 MiB of room for 64 KiB messages: the disk fills after ~60.
    fs.set_free_space(4 << 20);
    let mut acked = 0u64;
    let mut id = 0;
    loop {
        let c = publish_confirmed(&ch, "q", id, 64 * 1024).await;
        id += 1;
        if c.is_nack() {
            break;
        }
        acked += 1;
        assert!(id < 1000, "the disk never filled");
    }
    assert!(acked > 10, "{acked}");
    assert!(store_poisoned(&b));
    let free_full = fs.free_space();
    // Purge on the poisoned store (from a connection that does not publish, so it is not
    // blocked): the segments go now, and the purge is not undone later.
    let admin = b.connect().await;
    let ch2 = admin.create_channel().await.unwrap();
    let n = ch2
        .queue_purge("q".into(), QueuePurgeOptions::default())
        .await
        .unwrap();
    // The nacked message may be there too: it waits in the log's buffer (at least once).
    assert!(
        (acked..=acked + 1).contains(&u64::from(n)),
        "{n} purged, {acked} acked"
    );
    assert!(
        fs.free_space() >= free_full + acked * 64 * 1024 / 2,
        "purge freed space: {free_full} -> {}",
        fs.free_space()
    );
    // With the space back, the store recovers by itself and publishing resumes.
    wait_until(10, "store recovered", || !store_poisoned(&b)).await;
    assert!(publish_confirmed(&ch, "q", 5000, 100).await.is_ack());
    drop((ch, ch2));
    let _ = conn.close(200, "bye".into()).await;
    let (b2, _dir) = restart(b).await;
    let conn = b2.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let ids = drain_ids(&ch, "q").await;
    assert_eq!(ids, BTreeSet::from([5000]), "purged messages came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_declaration_that_cannot_be_recorded_is_refused_and_undone() {
    let (b, fs) = start_faulty().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare_durable(&ch, "kept", FieldTable::default()).await;
    fs.fail_writes_after(0);
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let r = ch
        .queue_declare("refused".into(), durable, FieldTable::default())
        .await;
    assert_code(r, 506, "cannot record queue.declare in vhost '/'");
    // 506 is a connection error (hard, as the spec's constants say).
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let r = ch
        .exchange_declare(
            "refused-x".into(),
            lapin::ExchangeKind::Fanout,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    assert_code(r, 506, "the definitions log cannot be written");
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let r = ch
        .queue_bind(
            "kept".into(),
            "amq.fanout".into(),
            "".into(),
            lapin::options::QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_code(r, 506, "cannot record queue.bind");
    // Through the management API: RabbitMQ's 500 shape, and nothing declared either.
    let url = format!("http://{}/api/queues/%2F/refused-http", b.running.http_addr);
    let r = client::request(
        "PUT",
        &url,
        Some(("guest", "guest")),
        Some(("application/json", br#"{"durable":true}"#.to_vec())),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 500, "{}", r.text());
    let v: serde_json::Value = r.json();
    assert_eq!(v["error"], "internal_server_error", "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("cannot record queue.declare"),
        "{v}"
    );
    // Nothing refused was left behind in memory either.
    let v = b.running.broker.vhost("/").unwrap();
    v.read_topology(|t| {
        assert!(t.queue("refused").is_none() && t.queue("refused-http").is_none());
        assert!(t.exchange("refused-x").is_none());
        assert!(
            !t.bindings()
                .iter()
                .any(|x| &*x.source == "amq.fanout" && &*x.destination == "kept"),
            "the refused binding stayed"
        );
    });
    drop(v);
    // What needs no record still works: a transient queue, redeclaring the durable one.
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "transient".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare("kept".into(), durable, FieldTable::default())
        .await
        .unwrap();
    drop(conn);
    fs.heal();
    let (b, _dir) = restart(b).await;
    b.running.broker.vhost("/").unwrap().read_topology(|t| {
        assert!(t.queue("kept").is_some());
        assert!(t.queue("refused").is_none() && t.exchange("refused-x").is_none());
    });
}

#[tokio::test]
async fn after_an_fsync_failure_the_api_says_restart_required() {
    let (b, fs) = start_faulty().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn, "q").await;
    assert!(publish_confirmed(&ch, "q", 1, 100).await.is_ack());
    fs.fail_syncs_after(0);
    assert!(publish_confirmed(&ch, "q", 2, 100).await.is_nack());
    fs.heal();
    wait_until(5, "disk alarm", || b.running.broker.alarms.current().disk).await;
    // Never acked again, even with the disk healthy: the kernel may have dropped pages. (A new
    // connection's first publish is read before it is blocked.)
    let conn2 = b.connect().await;
    let ch2 = confirm_channel(&conn2, "q").await;
    assert!(publish_confirmed(&ch2, "q", 3, 100).await.is_nack());
    let url = format!("http://{}/api/health/checks/alarms", b.running.http_addr);
    let r = client::request("GET", &url, Some(("guest", "guest")), None)
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    let v: serde_json::Value = r.json();
    let store = &v["alarms"][0]["store"];
    assert_eq!(v["alarms"][0]["resource"], "disk", "{v}");
    assert_eq!(store["restart_required"], true, "{v}");
    assert!(store["error"].as_str().unwrap().contains("fsync"), "{v}");
    assert!(
        store_poisoned(&b),
        "an fsync failure is not recovered without a restart"
    );
}

// ------------------------------------------------------------------ a real process on a tmpfs

/// A tmpfs mounted for one test, unmounted (lazily) on drop.
struct Tmpfs {
    dir: common::tempdir::Dir,
}

impl Tmpfs {
    /// `None` (after printing why) where mounting is not permitted.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = common::tempdir::Dir::new();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir.path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir.path)
            .status()
            .unwrap();
        assert!(st.success(), "remount tmpfs");
    }

    fn path(&self) -> &Path {
        &self.dir.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir.path).status();
    }
}

fn spawn_warren(data: &Path, extra: &[&str]) -> process::Broker {
    process::Broker::spawn(data, free_port(), "127.0.0.1:0", extra)
}

/// Publishes 64 KiB persistent messages with confirms (32 in flight) until no confirm arrives
/// for `quiet` (the broker stopped reading: blocked) after at least one nack, or `limit`
/// passes. Returns (acked ids, nacked count).
async fn publish_until_full(ch: &Channel, first: u64, quiet: Duration, limit: Duration) -> (Vec<u64>, usize) {
    let mut acked = Vec::new();
    let mut nacked = 0;
    let mut inflight = std::collections::VecDeque::new();
    let mut id = first;
    let start = Instant::now();
    loop {
        while inflight.len() < 32 {
            // lapin holds publishes back while the connection is blocked.
            match tokio::time::timeout(quiet, publish_body(ch, "fill", id, 64 * 1024)).await {
                Ok(Ok(c)) => inflight.push_back((id, c)),
                Ok(Err(_)) => return (acked, nacked),
                Err(_) => {
                    // Blocked: collect the confirms still in flight.
                    for (next, confirm) in inflight.drain(..) {
                        match tokio::time::timeout(quiet, confirm).await {
                            Ok(Ok(c)) if c.is_ack() => acked.push(next),
                            Ok(Ok(_)) => nacked += 1,
                            _ => {}
                        }
                    }
                    assert!(nacked > 0, "publishing stalled for {quiet:?} without a nack");
                    return (acked, nacked);
                }
            }
            id += 1;
        }
        let (next, confirm) = inflight.pop_front().unwrap();
        match tokio::time::timeout(quiet, confirm).await {
            Ok(Ok(c)) if c.is_ack() => acked.push(next),
            Ok(Ok(_)) => nacked += 1,
            Ok(Err(_)) => return (acked, nacked),
            Err(_) if nacked > 0 || start.elapsed() > limit => return (acked, nacked),
            Err(_) => panic!("no confirm for {quiet:?} and no nack"),
        }
        if start.elapsed() > limit {
            return (acked, nacked);
        }
    }
}

#[tokio::test]
async fn confirmed_messages_survive_a_full_tmpfs_and_a_restart() {
    let Some(fs) = Tmpfs::mount("24m") else { return };
    let data: PathBuf = fs.path().join("data");
    // No free-space limit: the disk really fills and writes fail (ENOSPC).
    let mut w = spawn_warren(&data, &["--disk-free-limit", "0"]);
    let conn = Connection::connect(&w.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "fill".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let (mut acked, nacked) =
        publish_until_full(&ch, 0, Duration::from_secs(3), Duration::from_secs(60)).await;
    eprintln!("disk full: {} confirmed, {nacked} nacked", acked.len());
    assert!(nacked > 0, "the disk filled and publishes were nacked");
    assert!(acked.len() > 100, "{}", acked.len());
    // More room while the broker runs: the store recovers without a restart and confirms
    // flow again (the publisher was blocked, not lost).
    fs.resize("96m");
    let recovered = within(30, "publishing resumes after the disk grew", async {
        // The connection is blocked until the store recovers: even this waits for it.
        let ch2 = conn.create_channel().await.unwrap();
        ch2.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        let mut ok = 0;
        let mut id = 1_000_000;
        while ok < 20 {
            let c = publish_confirmed(&ch2, "fill", id, 64 * 1024).await;
            if c.is_ack() {
                acked.push(id);
                ok += 1;
            }
            id += 1;
        }
        ok
    })
    .await;
    assert_eq!(recovered, 20);
    // SIGKILL, then a restart: every confirmed message is there.
    w.child.kill().unwrap();
    w.child.wait().unwrap();
    drop(conn);
    let w2 = spawn_warren(&data, &[]);
    let conn = Connection::connect(&w2.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let ids = within(60, "drain after restart", drain_ids(&ch, "fill")).await;
    let lost: Vec<u64> = acked.iter().copied().filter(|i| !ids.contains(i)).collect();
    eprintln!(
        "after restart: {} confirmed, {} recovered, {} lost",
        acked.len(),
        ids.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} confirmed messages lost: {lost:?}",
        lost.len()
    );
}
