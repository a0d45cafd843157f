//! Durability end to end: durable definitions and persistent messages survive a restart
//! (transient ones do not), delivery counters survive, a backlog of 1,000,000 messages in 100
//! queues comes back in order, and confirmed messages survive SIGKILL of the real binary.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

async fn restart_in(dir: &std::path::Path) -> common::TestBroker {
    let dir = dir.to_path_buf();
    common::start_with(move |c| c.data_dir = dir).await
}

#[tokio::test]
async fn durable_definitions_and_persistent_messages_survive_restart() {
    let first = common::start().await;
    let dir = first.data_dir.path.clone();
    let keep = first.data_dir;
    let first = common::TestBroker {
        url: first.url,
        running: first.running,
        data_dir: common::tempdir::Dir::new(),
    };
    {
        let conn = first.connect().await;
        let ch = conn.create_channel().await.unwrap();
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            "orders".into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), AMQPValue::LongLongInt(10_000));
        ch.queue_declare("orders.q".into(), durable, args).await.unwrap();
        ch.queue_bind(
            "orders.q".into(),
            "orders".into(),
            "order.#".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_declare(
            "scratch".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.exchange_declare(
            "temp-x".into(),
            lapin::ExchangeKind::Fanout,
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        for i in 0..200 {
            let props = if i % 2 == 0 {
                persistent()
            } else {
                BasicProperties::default()
            };
            let c = ch
                .basic_publish(
                    "orders".into(),
                    "order.new".into(),
                    Default::default(),
                    format!("m{i}").as_bytes(),
                    props,
                )
                .await
                .unwrap()
                .await
                .unwrap();
            assert!(c.is_ack());
            ch.basic_publish(
                "".into(),
                "scratch".into(),
                Default::default(),
                b"gone",
                persistent(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        // Two failed deliveries of the first message: its counters must survive.
        for _ in 0..2 {
            let m = ch
                .basic_get("orders.q".into(), BasicGetOptions::default())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(m.delivery.data, b"m0");
            m.delivery
                .reject(BasicRejectOptions { requeue: true })
                .await
                .unwrap();
        }
        // One unacked delivery at shutdown.
        let m = ch
            .basic_get("orders.q".into(), BasicGetOptions::default())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.delivery.data, b"m0");
        first.running.shutdown().await;
    }
    let second = restart_in(&dir).await;
    let conn = second.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            "orders.q".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        q.message_count(),
        100,
        "only the 100 persistent messages are back"
    );
    let err = ch
        .queue_declare(
            "scratch".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(common::reply_code(&err), Some(404), "transient queue is gone");
    let ch = conn.create_channel().await.unwrap();
    assert!(
        ch.exchange_declare(
            "temp-x".into(),
            lapin::ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default()
        )
        .await
        .is_err(),
        "transient exchange is gone"
    );
    let ch = conn.create_channel().await.unwrap();
    let mut consumer = ch
        .basic_consume(
            "orders.q".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in (0..200).step_by(2) {
        let d = common::within(10, "recovered message", consumer.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.data, format!("m{i}").into_bytes(), "order kept");
        assert_eq!(d.redelivered, i == 0, "only m0 was delivered before the restart");
        if i == 0 {
            let dc = d
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("x-delivery-count").cloned());
            // Two rejects, plus the delivery that was unacked when its connection went away at
            // shutdown (a lost consumer counts as a failed delivery, RabbitMQ 4.3).
            assert_eq!(
                dc,
                Some(AMQPValue::LongLongInt(3)),
                "delivery count survived the restart"
            );
        }
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    // The binding survived: a new message routes through the topic exchange.
    ch.basic_publish(
        "orders".into(),
        "order.paid".into(),
        Default::default(),
        b"new",
        persistent(),
    )
    .await
    .unwrap();
    let d = common::within(10, "routed message", consumer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.data, b"new");
    d.ack(BasicAckOptions::default()).await.unwrap();
    second.running.shutdown().await;
    drop(keep);
}

/// Issue 15: after a restart only the messages delivered before it come back with
/// `redelivered=true` — here one held unacked at shutdown, one delivered and still unacked when
/// the broker is killed (SIGKILL: the delivery record, not a returned-message counter, tells),
/// and none of the others.
#[tokio::test]
async fn only_messages_delivered_before_a_restart_come_back_redelivered() {
    let dir = common::tempdir::Dir::new();
    let mut p = spawn_broker(&dir.path, common::free_port());
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", p.port);
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    common::declare_durable(&ch, "redeliv", FieldTable::default()).await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for i in 0..6 {
        ch.basic_publish(
            "".into(),
            "redeliv".into(),
            Default::default(),
            format!("m{i}").as_bytes(),
            persistent(),
        )
        .await
        .unwrap();
    }
    ch.wait_for_confirms().await.unwrap();
    // m0 acked, m1 and m2 delivered and left unacked.
    let get = |ch: &lapin::Channel| {
        let ch = ch.clone();
        async move {
            ch.basic_get("redeliv".into(), BasicGetOptions::default())
                .await
                .unwrap()
                .expect("a message")
        }
    };
    let m0 = get(&ch).await;
    assert_eq!(m0.delivery.data, b"m0");
    m0.delivery.ack(BasicAckOptions::default()).await.unwrap();
    for want in ["m1", "m2"] {
        let m = get(&ch).await;
        assert_eq!(m.delivery.data, want.as_bytes());
        assert!(!m.delivery.redelivered);
    }
    // Each basic.get-ok left after its delivery record reached the OS: kill the process now,
    // without any shutdown.
    p.child.kill().unwrap(); // SIGKILL
    p.child.wait().unwrap();
    drop(conn);
    let p = spawn_broker(&dir.path, common::free_port());
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", p.port);
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        let m = get(&ch).await;
        got.push((
            String::from_utf8(m.delivery.data.clone()).unwrap(),
            m.delivery.redelivered,
        ));
        m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    let want: Vec<(String, bool)> = [
        ("m1", true),
        ("m2", true),
        ("m3", false),
        ("m4", false),
        ("m5", false),
    ]
    .iter()
    .map(|(b, r)| (b.to_string(), *r))
    .collect();
    assert_eq!(
        got, want,
        "only the messages delivered before the crash are flagged"
    );
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn drained_queue_leaves_almost_nothing_on_disk() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    common::declare_durable(&ch, "drain", FieldTable::default()).await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let body = vec![7u8; 1024];
    for _ in 0..20_000 {
        ch.basic_publish("".into(), "drain".into(), Default::default(), &body, persistent())
            .await
            .unwrap();
    }
    ch.wait_for_confirms().await.unwrap();
    let store = &b.running.broker.persistence.as_ref().unwrap().store;
    let full = store.disk_usage();
    assert!(full > 20_000 * 1024, "the backlog is on disk: {full} bytes");
    let mut consumer = ch
        .basic_consume(
            "drain".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..20_000 {
        let d = common::within(10, "delivery", consumer.next())
            .await
            .unwrap()
            .unwrap();
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    // Acks are applied as they arrive; wait for the last segments to go.
    common::wait_until(10, "segments deleted", || store.disk_usage() < 9 * 1024 * 1024).await;
    println!(
        "disk usage: {full} bytes with 20,000 x 1 KiB queued, {} after draining",
        store.disk_usage()
    );
    b.running.shutdown().await;
}

#[tokio::test]
async fn million_messages_in_100_queues_recover_in_order() {
    const QUEUES: usize = 100;
    const PER_QUEUE: usize = 10_000;
    let first = common::start().await;
    let dir = first.data_dir.path.clone();
    let keep = first.data_dir;
    let first = common::TestBroker {
        url: first.url,
        running: first.running,
        data_dir: common::tempdir::Dir::new(),
    };
    {
        let conn = first.connect().await;
        let ch = conn.create_channel().await.unwrap();
        for q in 0..QUEUES {
            ch.queue_declare(
                format!("bulk-{q}").as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        }
        // Publish in-process (the AMQP path is covered elsewhere; this test is about the store).
        let vhost = first.running.broker.vhost("/").unwrap();
        let props = warren_codec::BasicProperties {
            delivery_mode: Some(2),
            ..Default::default()
        };
        for i in 0..PER_QUEUE {
            for q in 0..QUEUES {
                let body = Bytes::from(format!("{i:08}"));
                let msg = warren_core::Message::new("", &format!("bulk-{q}"), props.clone(), body);
                vhost.publish(Arc::new(msg), None, 0).unwrap();
            }
        }
        for q in 0..QUEUES {
            vhost.queue(&format!("bulk-{q}")).unwrap().flush_log();
        }
        first.running.shutdown().await;
    }
    let started = Instant::now();
    let second = restart_in(&dir).await;
    let recovery = started.elapsed();
    println!("recovered {} messages in {recovery:?}", QUEUES * PER_QUEUE);
    let vhost = second.running.broker.vhost("/").unwrap();
    for q in 0..QUEUES {
        let queue = vhost.queue(&format!("bulk-{q}")).unwrap();
        assert_eq!(queue.counts().ready as usize, PER_QUEUE, "queue bulk-{q}");
        for i in 0..PER_QUEUE {
            let (d, _) = queue
                .get(
                    warren_core::ids::ChannelKey::new(warren_core::ids::ConnId(1 << 40), 0),
                    true,
                )
                .unwrap();
            assert_eq!(&d.msg.body[..], format!("{i:08}").as_bytes(), "order in bulk-{q}");
        }
    }
    second.running.shutdown().await;
    drop(keep);
}

/// A `warren` process with its own data dir and port.
type Proc = common::process::Broker;

fn spawn_broker(dir: &std::path::Path, port: u16) -> Proc {
    spawn_broker_http(dir, port, "127.0.0.1:0")
}

/// [`spawn_broker`] with its management API on `http`.
fn spawn_broker_http(dir: &std::path::Path, port: u16, http: &str) -> Proc {
    Proc::spawn(dir, port, http, &[])
}

#[tokio::test]
async fn confirmed_messages_survive_sigkill() {
    let dir = common::tempdir::Dir::new();
    let mut confirmed: Vec<String> = Vec::new();
    let mut rng_state: u64 = 0x9e3779b97f4a7c15;
    for round in 0..10 {
        let mut p = spawn_broker(&dir.path, common::free_port());
        let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", p.port);
        // Three publishers with confirms.
        let mut tasks = Vec::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        for pubno in 0..3 {
            let url = url.clone();
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let Ok(conn) = Connection::connect(&url, ConnectionProperties::default()).await else {
                    return;
                };
                let Ok(ch) = conn.create_channel().await else {
                    return;
                };
                let _ = ch
                    .queue_declare(
                        "crash".into(),
                        QueueDeclareOptions {
                            durable: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await;
                if ch.confirm_select(ConfirmSelectOptions::default()).await.is_err() {
                    return;
                }
                for i in 0.. {
                    let id = format!("r{round}-p{pubno}-{i}");
                    let Ok(c) = ch
                        .basic_publish(
                            "".into(),
                            "crash".into(),
                            Default::default(),
                            id.as_bytes(),
                            persistent(),
                        )
                        .await
                    else {
                        return;
                    };
                    match c.await {
                        Ok(c) if c.is_ack() => {
                            let _ = tx.send(id);
                        }
                        _ => return,
                    }
                }
            }));
        }
        drop(tx);
        // Kill at a pseudo-random moment after some confirms arrived.
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let want = 20 + (rng_state % 300) as usize;
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while got < want && Instant::now() < deadline {
            if let Ok(Some(id)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                confirmed.push(id);
                got += 1;
            }
        }
        assert!(got >= want, "round {round}: only {got} confirms arrived");
        p.child.kill().unwrap(); // SIGKILL
        p.child.wait().unwrap();
        while let Ok(id) = rx.try_recv() {
            confirmed.push(id);
        }
        for t in tasks {
            let _ = t.await;
        }
        while let Some(id) = rx.recv().await {
            confirmed.push(id);
        }
    }
    // Restart once more and drain everything.
    let mut p = spawn_broker(&dir.path, common::free_port());
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", p.port);
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut seen = std::collections::HashSet::new();
    loop {
        match ch
            .basic_get("crash".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            Some(m) => {
                let id = String::from_utf8(m.delivery.data.clone()).expect("intact body");
                assert!(id.starts_with('r'), "no corrupted message: {id:?}");
                if !seen.insert(id.clone()) {
                    assert!(
                        m.delivery.redelivered,
                        "a duplicate must be flagged redelivered: {id}"
                    );
                }
            }
            None => break,
        }
    }
    let missing: Vec<&String> = confirmed.iter().filter(|id| !seen.contains(*id)).collect();
    println!(
        "{} confirmed over 10 kills, {} recovered, {} missing",
        confirmed.len(),
        seen.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "confirmed messages lost: {:?}",
        &missing[..missing.len().min(10)]
    );
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

/// A backlog larger than the in-memory budget: most of it stays on disk only (the management
/// API's `messages_paged_out`), transient messages published behind it keep their place, and
/// after a restart the persistent ones come back, in order, still paged — the transient ones
/// are gone, as RabbitMQ drops transient messages at a restart.
#[tokio::test]
async fn backlog_beyond_the_memory_budget_pages_in_order_across_restart() {
    use warren_server::queue::READY_IN_MEMORY;
    const N: usize = 3 * READY_IN_MEMORY + 100;
    let first = common::start().await;
    let dir = first.data_dir.path.clone();
    let keep = first.data_dir;
    let first = common::TestBroker {
        url: first.url,
        running: first.running,
        data_dir: common::tempdir::Dir::new(),
    };
    let is_transient = |i: usize| i % 10 == 3;
    {
        let conn = first.connect().await;
        let ch = conn.create_channel().await.unwrap();
        common::declare_durable(&ch, "paged", FieldTable::default()).await;
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        for i in 0..N {
            let props = if is_transient(i) {
                BasicProperties::default()
            } else {
                persistent()
            };
            ch.basic_publish(
                "".into(),
                "paged".into(),
                Default::default(),
                format!("{i}").as_bytes(),
                props,
            )
            .await
            .unwrap();
        }
        ch.wait_for_confirms().await.unwrap();
        let q = common::queue(&first, "paged").unwrap();
        let (ram, paged) = q.memory_counts();
        assert_eq!(ram + paged, N as u64);
        assert!(
            ram <= READY_IN_MEMORY as u64 && paged >= (N - READY_IN_MEMORY) as u64,
            "{ram} in memory, {paged} on disk"
        );
        // The first part drains in order through basic.get (transient ones included).
        for i in 0..READY_IN_MEMORY + 10 {
            let m = ch
                .basic_get("paged".into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
                .expect("a message");
            assert_eq!(m.delivery.data, format!("{i}").into_bytes());
        }
        let (ram, paged) = q.memory_counts();
        assert!(ram <= READY_IN_MEMORY as u64 && ram + paged == (N - READY_IN_MEMORY - 10) as u64);
        first.running.shutdown().await;
    }
    let second = restart_in(&dir).await;
    let q = common::queue(&second, "paged").unwrap();
    let want: Vec<String> = (READY_IN_MEMORY + 10..N)
        .filter(|i| !is_transient(*i))
        .map(|i| i.to_string())
        .collect();
    assert_eq!(q.counts().ready as usize, want.len());
    let (ram, paged) = q.memory_counts();
    assert!(
        ram <= READY_IN_MEMORY as u64 && paged > 0,
        "{ram} in memory, {paged} on disk after restart"
    );
    let conn = second.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(500, BasicQosOptions::default()).await.unwrap();
    let mut consumer = common::consume(&ch, "paged", "drain").await;
    for w in &want {
        let d = common::next(&mut consumer).await;
        assert_eq!(String::from_utf8_lossy(&d.data), *w);
        assert!(!d.redelivered, "never delivered before the restart");
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    common::wait_until(10, "queue drained", || {
        q.counts().ready == 0 && q.counts().unacked == 0
    })
    .await;
    assert_eq!(q.memory_counts(), (0, 0));
    second.running.shutdown().await;
    drop(keep);
}

/// Free bytes on the filesystem holding `dir` (from `df`).
fn free_disk(dir: &std::path::Path) -> u64 {
    let out = Command::new("df").arg("-Pk").arg(dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let kb: u64 = text
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// Memory does not grow with the backlog: 1,000,000 persistent 1 KiB messages (1 GB of
/// bodies) queued in a durable queue keep the broker process (the real binary) under 200 MB
/// resident — peak RSS read from /proc — and the drained queue gives the memory back. On a
/// machine with too little free disk for 1 GB of segments the backlog is scaled down (and says
/// so). (It was 2,000,000 until CI time ran over its 30 minutes: this test alone took 136 s
/// of it; the broker's RSS with the backlog queued was the same 24 MB.)
#[tokio::test]
async fn one_million_message_backlog_stays_under_200_mb() {
    let dir = common::tempdir::Dir::new();
    let free = free_disk(&dir.path);
    let total: usize = if free > 4 << 30 {
        1_000_000
    } else {
        ((free / 4) / 1100) as usize
    };
    if total < 1_000_000 {
        println!(
            "only {} MB free: backlog scaled down to {total} messages",
            free >> 20
        );
    }
    assert!(total >= 100_000, "not enough free disk for a meaningful backlog");
    let mut p = spawn_broker(&dir.path, common::free_port());
    let pid = p.child.id();
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", p.port);
    let base = common::proc_mem_mb(pid, "VmRSS");
    {
        let conn = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        common::declare_durable(&ch, "backlog", FieldTable::default()).await;
    }
    let started = Instant::now();
    let publishers = 2;
    let mut tasks = Vec::new();
    for _ in 0..publishers {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let conn = Connection::connect(&url, ConnectionProperties::default())
                .await
                .unwrap();
            let ch = conn.create_channel().await.unwrap();
            ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
            let body = vec![b'x'; 1024];
            let mut sent = 0;
            while sent < total / publishers {
                for _ in 0..5_000.min(total / publishers - sent) {
                    let _ = ch
                        .basic_publish(
                            "".into(),
                            "backlog".into(),
                            Default::default(),
                            &body,
                            persistent(),
                        )
                        .await
                        .unwrap();
                    sent += 1;
                }
                ch.wait_for_confirms().await.unwrap();
            }
            conn.close(200, "done".into()).await.unwrap();
        }));
    }
    let mut peak_during = 0f64;
    for t in tasks {
        while !t.is_finished() {
            peak_during = peak_during.max(common::proc_mem_mb(pid, "VmRSS"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        t.await.unwrap();
    }
    let published_in = started.elapsed();
    let queued_rss = common::proc_mem_mb(pid, "VmRSS");
    // Drain it all.
    let started = Instant::now();
    {
        let conn = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.basic_qos(2_000, BasicQosOptions::default()).await.unwrap();
        let mut consumer = ch
            .basic_consume(
                "backlog".into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        for n in 1..=total {
            let d = common::within(60, "delivery", consumer.next())
                .await
                .unwrap()
                .unwrap();
            if n % 1_000 == 0 || n == total {
                d.ack(BasicAckOptions { multiple: true }).await.unwrap();
            }
        }
        conn.close(200, "done".into()).await.unwrap();
    }
    let drained_in = started.elapsed();
    let peak = common::proc_mem_mb(pid, "VmHWM");
    let after = common::proc_mem_mb(pid, "VmRSS");
    println!(
        "{total} x 1 KiB persistent: published in {published_in:?}, drained in {drained_in:?}; \
         RSS {base:.1} MB at start, {queued_rss:.1} MB with the backlog queued, peak {peak:.1} MB \
         (sampled while publishing {peak_during:.1} MB), {after:.1} MB after draining"
    );
    let _ = p.child.kill();
    let _ = p.child.wait();
    assert!(peak < 200.0, "peak RSS {peak:.1} MB with {total} messages queued");
    assert!(
        after < base + 64.0,
        "memory not given back: {base:.1} MB -> {after:.1} MB"
    );
}

/// Publishes bodies `from..to` (each `tag` and its index in 15 ASCII digits: 16 bytes)
/// persistently to `queue` on one channel with confirms, 10,000 in flight at a time.
async fn publish_numbered(ch: &lapin::Channel, queue: &str, tag: char, from: usize, to: usize) {
    let mut i = from;
    while i < to {
        for j in i..(i + 10_000).min(to) {
            let _ = ch
                .basic_publish(
                    "".into(),
                    queue.into(),
                    Default::default(),
                    format!("{tag}{j:015}").as_bytes(),
                    persistent(),
                )
                .await
                .unwrap();
        }
        i = (i + 10_000).min(to);
        assert!(ch.wait_for_confirms().await.unwrap().is_empty(), "nacks");
    }
}

/// Issue 17: messages left on disk cost (close to) nothing in memory. 1,500,000 persistent
/// 16-byte messages published with confirms (two publishers) to a durable queue grow the real
/// broker's RSS (from /proc) by far less than the 5 bytes per message the earlier per-message
/// index cost: that index alone grew by 6.75 MB for the 1,350,000 published after a warm-up;
/// the RSS may grow by 2 MB (allocator noise: 0–0.7 MB measured, not growing with the count).
/// After a SIGKILL and a
/// restart the whole backlog is there, the recovered broker stays small, and it drains in each
/// publisher's order from the first message to the last. (The lapin client publishes ≈ 40,000
/// msg/s here, so more messages would make a long test; 100,000,000 are measured in
/// docs/benchmarks.md.)
#[tokio::test]
async fn paged_out_backlog_costs_well_under_a_byte_per_message_and_survives_sigkill() {
    const N: usize = 1_500_000;
    const WARM: usize = 150_000;
    let dir = common::tempdir::Dir::new();
    let mut p = spawn_broker(&dir.path, common::free_port());
    let pid = p.child.id();
    let url = p.url();
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    common::declare_durable(&ch, "big", FieldTable::default()).await;
    // Two publishers, each on its own connection (kept for both phases).
    let mut chans = Vec::new();
    for _ in 0..2 {
        let conn = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        chans.push((conn, ch));
    }
    let (a, b) = (&chans[0].1, &chans[1].1);
    let started = Instant::now();
    // A warm-up: buffers, allocator arenas and the in-memory part of the queue are full.
    tokio::join!(
        publish_numbered(a, "big", 'a', 0, WARM / 2),
        publish_numbered(b, "big", 'b', 0, WARM / 2)
    );
    let warm = common::proc_mem_mb(pid, "VmRSS");
    tokio::join!(
        publish_numbered(a, "big", 'a', WARM / 2, N / 2),
        publish_numbered(b, "big", 'b', WARM / 2, N / 2)
    );
    let full = common::proc_mem_mb(pid, "VmRSS");
    let published_in = started.elapsed();
    let per_msg = (full - warm).max(0.0) * 1e6 / (N - WARM) as f64;
    let disk = warren_store::dir_size(&dir.path.join("messages"));
    println!(
        "{N} x 16 B persistent published in {published_in:?}; RSS {warm:.1} MB after {WARM}, \
         {full:.1} MB after {N}: {per_msg:.2} B per paged-out message; {:.1} B on disk per message",
        disk as f64 / N as f64
    );
    drop((conn, chans));
    let _ = p.child.kill();
    let _ = p.child.wait();
    drop(p);

    let started = Instant::now();
    let p = spawn_broker(&dir.path, common::free_port());
    let recovered_in = started.elapsed();
    let rss_after = common::proc_mem_mb(p.child.id(), "VmRSS");
    let conn = Connection::connect(&p.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(common::message_count(&ch, "big").await as usize, N);
    ch.basic_qos(2_000, BasicQosOptions::default()).await.unwrap();
    let mut consumer = common::consume(&ch, "big", "").await;
    let started = Instant::now();
    let mut next = [0usize; 2];
    for i in 0..N {
        let d = common::within(60, "delivery", consumer.next())
            .await
            .unwrap()
            .unwrap();
        let k = usize::from(d.data[0] == b'b');
        if d.data[1..] != *format!("{:015}", next[k]).as_bytes() {
            panic!(
                "message {i}: {:?}, expected number {} of its publisher",
                String::from_utf8_lossy(&d.data),
                next[k]
            );
        }
        next[k] += 1;
        if i % 1_000 == 999 || i == N - 1 {
            d.ack(BasicAckOptions { multiple: true }).await.unwrap();
        }
    }
    assert_eq!(next, [N / 2, N / 2]);
    let drained_in = started.elapsed();
    println!(
        "restart with the backlog: listening after {recovered_in:?}, RSS {rss_after:.1} MB; \
         drained {N} in order in {drained_in:?}"
    );
    assert!(
        full - warm < 2.0,
        "RSS {warm:.1} -> {full:.1} MB: {per_msg:.2} B per paged-out message (the per-message index cost 5)"
    );
    assert!(
        rss_after < warm + 16.0,
        "{rss_after:.1} MB after recovering the backlog"
    );
}

/// Dead-lettering between durable queues is at-least-once: a consumer rejects (requeue=false)
/// confirmed persistent messages from `src` (dead-lettered to the durable `dlq`) while the
/// broker is SIGKILLed at a pseudo-random moment, five times. After each restart every
/// message is in `src` or in `dlq` (in both only as a duplicate, never in neither).
#[tokio::test]
async fn dead_lettering_between_durable_queues_survives_sigkill() {
    const N: usize = 2_000;
    let mut rng_state: u64 = 0x2545f4914f6cdd1d;
    for round in 0..5 {
        let dir = common::tempdir::Dir::new();
        let mut p = spawn_broker(&dir.path, common::free_port());
        let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", p.port);
        {
            let conn = Connection::connect(&url, ConnectionProperties::default())
                .await
                .unwrap();
            let ch = conn.create_channel().await.unwrap();
            common::declare_durable(&ch, "dlq", FieldTable::default()).await;
            let mut args = FieldTable::default();
            args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
            args.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString("dlq".into()),
            );
            common::declare_durable(&ch, "src", args).await;
            ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
            for i in 0..N {
                ch.basic_publish(
                    "".into(),
                    "src".into(),
                    Default::default(),
                    format!("{i}").as_bytes(),
                    persistent(),
                )
                .await
                .unwrap();
            }
            ch.wait_for_confirms().await.unwrap();
            // Reject until killed.
            ch.basic_qos(100, BasicQosOptions::default()).await.unwrap();
            let mut consumer = common::consume(&ch, "src", "rejecter").await;
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            let kill_after = 100 + (rng_state % 1_500) as usize;
            for _ in 0..kill_after {
                let d = common::next(&mut consumer).await;
                d.reject(BasicRejectOptions { requeue: false }).await.unwrap();
            }
            p.child.kill().unwrap(); // SIGKILL
            p.child.wait().unwrap();
        }
        let mut p = spawn_broker(&dir.path, p.port);
        let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", p.port);
        let conn = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let mut seen = vec![0u32; N];
        for q in ["src", "dlq"] {
            while let Some(m) = ch
                .basic_get(q.into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                let i: usize = String::from_utf8_lossy(&m.delivery.data).parse().unwrap();
                seen[i] += 1;
            }
        }
        let lost: Vec<usize> = (0..N).filter(|i| seen[*i] == 0).collect();
        let dup = seen.iter().filter(|c| **c > 1).count();
        println!("round {round}: {dup} duplicates after the crash");
        assert!(
            lost.is_empty(),
            "round {round}: lost {} messages, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
}

/// A non-durable queue's transient backlog beyond the in-memory budget goes to a scratch log
/// (`<data>/transient`, never synced, wiped at start) and drains in order; deleting the queue
/// deletes its scratch log.
#[tokio::test]
async fn transient_backlog_of_a_non_durable_queue_pages_to_scratch_disk() {
    use warren_server::queue::READY_IN_MEMORY;
    const N: usize = 2 * READY_IN_MEMORY + 500;
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    common::declare(&ch, "scratchy").await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for i in 0..N {
        ch.basic_publish(
            "".into(),
            "scratchy".into(),
            Default::default(),
            format!("{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    ch.wait_for_confirms().await.unwrap();
    let q = common::queue(&b, "scratchy").unwrap();
    let (ram, paged) = q.memory_counts();
    assert_eq!(ram + paged, N as u64);
    assert!(
        paged > 0 && ram <= READY_IN_MEMORY as u64,
        "{ram} in memory, {paged} on disk"
    );
    let scratch = b.data_dir.path.join("transient");
    let files = || walk_count(&scratch);
    assert!(files() > 0, "a scratch log exists");
    let mut consumer = common::consume(&ch, "scratchy", "drain").await;
    for i in 0..N {
        let d = common::next(&mut consumer).await;
        assert_eq!(String::from_utf8_lossy(&d.data), i.to_string());
        assert!(!d.redelivered);
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    ch.queue_delete("scratchy".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    common::wait_until(10, "scratch log deleted", || files() == 0).await;
    b.running.shutdown().await;
}

/// Regular files under `dir`.
fn walk_count(dir: &std::path::Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.filter_map(Result::ok)
        .map(|e| {
            let p = e.path();
            if p.is_dir() { walk_count(&p) } else { 1 }
        })
        .sum()
}

/// Publishes `n` persistent messages `{tag}-{i}` to durable queue `queue` with confirms.
async fn publish_confirmed(url: &str, queue: &str, tag: &str, n: usize) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    common::declare_durable(&ch, queue, FieldTable::default()).await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for i in 0..n {
        let c = ch
            .basic_publish(
                "".into(),
                queue.into(),
                Default::default(),
                format!("{tag}-{i}").as_bytes(),
                persistent(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(c.is_ack(), "message {i} confirmed");
    }
    conn.close(200, "bye".into()).await.unwrap();
}

/// Drains `queue` with basic.get (auto-ack) and returns the bodies in order.
async fn drain(url: &str, queue: &str) -> Vec<String> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        out.push(String::from_utf8(m.delivery.data.clone()).unwrap());
    }
    out
}

/// Runs `warren` on `dir` expecting it to refuse to start; returns its exit status and
/// everything it printed.
fn run_expecting_exit(dir: &std::path::Path, secs: u64) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["--amqp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .args(["--prometheus-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn warren");
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "second warren still running after {secs}s: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

fn sigterm_and_wait(p: &mut Proc) {
    let st = Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "warren did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 14: a second broker on a data directory in use exits at once, non-zero, naming the
/// directory and the PID holding it — and never touches the files, so the first broker keeps
/// every confirmed message across its own restart.
#[tokio::test]
async fn second_broker_on_the_same_data_dir_exits_at_once_and_first_keeps_its_messages() {
    let dir = common::tempdir::Dir::new();
    let mut a = spawn_broker(&dir.path, common::free_port());
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", a.port);
    publish_confirmed(&url, "before", "b", 3).await;

    let started = Instant::now();
    let (status, out) = run_expecting_exit(&dir.path, 10);
    assert!(!status.success(), "second broker must fail: {out}");
    assert!(started.elapsed() < Duration::from_secs(5), "fails fast");
    assert!(
        out.contains(&dir.path.display().to_string()),
        "names the directory: {out}"
    );
    assert!(
        out.contains(&format!("pid {}", a.child.id())),
        "names the holder's pid: {out}"
    );

    // The first broker is unharmed: its definitions and messages survive its restart.
    publish_confirmed(&url, "after", "a", 5).await;
    sigterm_and_wait(&mut a);
    let b = spawn_broker(&dir.path, common::free_port());
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", b.port);
    assert_eq!(drain(&url, "before").await, ["b-0", "b-1", "b-2"]);
    assert_eq!(drain(&url, "after").await, ["a-0", "a-1", "a-2", "a-3", "a-4"]);
}

/// A broker killed with SIGKILL leaves its lock file behind; the kernel released the lock,
/// so a restart on the same directory works and recovers every confirmed message.
#[tokio::test]
async fn lock_file_left_by_sigkill_never_blocks_a_restart() {
    let dir = common::tempdir::Dir::new();
    let mut a = spawn_broker(&dir.path, common::free_port());
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", a.port);
    publish_confirmed(&url, "kept", "k", 4).await;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    assert!(
        dir.path.join("warren.lock").exists(),
        "stale lock file left behind"
    );
    let b = spawn_broker(&dir.path, common::free_port());
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", b.port);
    assert_eq!(drain(&url, "kept").await, ["k-0", "k-1", "k-2", "k-3"]);
}

/// `warren --check-data-dir DIR`: exit status and everything it printed.
fn check_data_dir(dir: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("--check-data-dir")
        .arg(dir)
        .output()
        .expect("run warren --check-data-dir");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// Issue 21: with `definitions.log` gone, the start-up sweep used to delete every queue
/// directory. Now the offline check reports them, a start moves them to `quarantine/` (listed
/// by the API, counted in /metrics), and `warrenctl quarantine reattach` brings a queue back
/// with every message. The offline check refuses while a broker holds the directory.
#[tokio::test]
async fn lost_definitions_log_quarantines_queue_dirs_and_reattach_restores_messages() {
    use warren_server::http::{client, ctl};
    let dir = common::tempdir::Dir::new();
    let mut a = spawn_broker(&dir.path, common::free_port());
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", a.port);
    publish_confirmed(&url, "orders", "o", 50).await;
    publish_confirmed(&url, "audit", "x", 3).await;
    let (code, out) = check_data_dir(&dir.path);
    assert_eq!(code, Some(2), "refuses while the broker runs: {out}");
    assert!(out.contains(&format!("pid {}", a.child.id())), "{out}");
    sigterm_and_wait(&mut a);
    let (code, out) = check_data_dir(&dir.path);
    assert_eq!(code, Some(0), "clean after a clean stop: {out}");

    std::fs::remove_file(dir.path.join("definitions.log")).unwrap();
    let before = walk_count(&dir.path);
    let (code, out) = check_data_dir(&dir.path);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(
        out.matches("a start moves it to quarantine/").count(),
        2,
        "both queue dirs reported: {out}"
    );
    assert!(out.contains("(50 messages"), "{out}");
    assert_eq!(walk_count(&dir.path), before, "the check changed nothing");

    let http_port = common::free_port();
    let b = spawn_broker_http(&dir.path, common::free_port(), &format!("127.0.0.1:{http_port}"));
    let base = format!("http://127.0.0.1:{http_port}");
    // The management listener is bound just after the AMQP one: wait for it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let r = loop {
        let got = client::request(
            "GET",
            &format!("{base}/api/quarantine"),
            Some(("guest", "guest")),
            None,
        )
        .await;
        match got {
            Ok(r) => break r,
            Err(e) => assert!(Instant::now() < deadline, "management API not up: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(r.status, 200, "{}", r.text());
    let listed = r.json();
    let orders = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "orders")
        .unwrap_or_else(|| panic!("orders quarantined: {listed}"))
        .clone();
    assert_eq!(orders["vhost"], "/");
    assert_eq!(orders["messages"], 50);
    assert!(orders["bytes"].as_u64().unwrap() > 50 * 8);
    let quarantined = dir.path.join("quarantine").join(orders["dir"].as_str().unwrap());
    assert!(quarantined.join("msgs.0000000001").exists(), "segments kept");
    let metrics = client::request("GET", &format!("{base}/metrics"), Some(("guest", "guest")), None)
        .await
        .unwrap()
        .text();
    assert!(metrics.contains("warren_quarantined_queue_dirs 2"), "{metrics}");

    let ctl = |args: &[&str]| {
        let mut v = vec![
            "warrenctl",
            "--url",
            &base,
            "--user",
            "guest",
            "--password",
            "guest",
        ];
        v.extend_from_slice(args);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let out = ctl::run_from(ctl(&["quarantine", "list"])).await.unwrap();
    assert!(out.contains("orders") && out.contains("audit"), "{out}");
    let out = ctl::run_from(ctl(&["quarantine", "reattach", orders["dir"].as_str().unwrap()]))
        .await
        .unwrap();
    assert!(out.contains("50 messages"), "{out}");
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", b.port);
    let want: Vec<String> = (0..50).map(|i| format!("o-{i}")).collect();
    assert_eq!(drain(&url, "orders").await, want);
    let out = ctl::run_from(ctl(&["quarantine", "list"])).await.unwrap();
    assert!(!out.contains("orders") && out.contains("audit"), "{out}");
}

/// Messages consumed with automatic acknowledgement are gone for good: after a clean restart
/// the durable queue holds only what was published after them.
#[tokio::test]
async fn messages_consumed_with_auto_ack_stay_consumed_across_restart() {
    let dir = common::tempdir::Dir::new();
    let mut p = spawn_broker(&dir.path, common::free_port());
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", p.port);
    publish_confirmed(&url, "autoack", "m", 60).await;
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let opts = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut consumer = ch
        .basic_consume("autoack".into(), "c".into(), opts, FieldTable::default())
        .await
        .unwrap();
    for i in 0..60 {
        let d = common::next(&mut consumer).await;
        assert_eq!(d.data, format!("m-{i}").as_bytes());
    }
    ch.basic_cancel("c".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    publish_confirmed(&url, "autoack", "n", 10).await;
    conn.close(200, "bye".into()).await.unwrap();
    sigterm_and_wait(&mut p);
    let p = spawn_broker(&dir.path, common::free_port());
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", p.port);
    let want: Vec<String> = (0..10).map(|i| format!("n-{i}")).collect();
    assert_eq!(
        drain(&url, "autoack").await,
        want,
        "only the 10 never delivered come back"
    );
}
