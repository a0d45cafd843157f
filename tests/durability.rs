//! Durability end to end: durable definitions and persistent messages survive a restart
//! (transient ones do not), delivery counters survive, a backlog of 1,000,000 messages in 100
//! queues comes back in order, and confirmed messages survive SIGKILL of the real binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
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
        assert!(d.redelivered, "recovered messages may have been delivered before");
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

#[tokio::test]
async fn drained_queue_leaves_almost_nothing_on_disk() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "drain".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
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
            let (d, _) = queue.get(u64::MAX, true).unwrap();
            assert_eq!(&d.msg.body[..], format!("{i:08}").as_bytes(), "order in bulk-{q}");
        }
    }
    second.running.shutdown().await;
    drop(keep);
}

/// A `warren` process with its own data dir and port.
struct Proc {
    child: Child,
    port: u16,
}

fn spawn_broker(dir: &std::path::Path, port: u16) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args([
            "--amqp-listen",
            &format!("127.0.0.1:{port}"),
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir)
        .env("WARREN_LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn warren");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains(&format!("listening on 127.0.0.1:{port}")) {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("broker listening");
    Proc { child, port }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn confirmed_messages_survive_sigkill() {
    let dir = common::tempdir::Dir::new();
    let mut confirmed: Vec<String> = Vec::new();
    let mut rng_state: u64 = 0x9e3779b97f4a7c15;
    for round in 0..10 {
        let mut p = spawn_broker(&dir.path, free_port());
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
    let mut p = spawn_broker(&dir.path, free_port());
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
