//! Bounded load tests: many connections and channels, a 16 MiB message, 100k pipelined
//! confirms, and a slow consumer held to its prefetch window.

mod common;

use std::collections::{HashSet, VecDeque};

use common::*;
use lapin::BasicProperties;
use lapin::options::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_connections_ten_channels_each() {
    const CONNS: usize = 100;
    const CHANNELS: usize = 10;
    const MSGS: usize = 20;
    let b = start().await;
    let url = b.url.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CONNS {
        let url = url.clone();
        tasks.spawn(async move {
            let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
                .await
                .expect("connect");
            let mut chans = tokio::task::JoinSet::new();
            for k in 0..CHANNELS {
                let ch = conn.create_channel().await.expect("channel");
                chans.spawn(async move {
                    let q = format!("load-{c}-{k}");
                    declare(&ch, &q).await;
                    let mut consumer = consume(&ch, &q, "c").await;
                    for i in 0..MSGS {
                        publish(&ch, "", &q, format!("{c}/{k}/{i}").as_bytes()).await;
                    }
                    let mut seen = HashSet::new();
                    for _ in 0..MSGS {
                        let d = within(60, "load delivery", futures_lite::StreamExt::next(&mut consumer))
                            .await
                            .expect("consumer alive")
                            .expect("delivery");
                        let body = String::from_utf8(d.data.clone()).unwrap();
                        assert!(seen.insert(body.clone()), "duplicate delivery {body}");
                        assert!(!d.redelivered);
                        d.ack(BasicAckOptions::default()).await.expect("ack");
                    }
                    let expected: HashSet<String> = (0..MSGS).map(|i| format!("{c}/{k}/{i}")).collect();
                    assert_eq!(seen, expected);
                    q
                });
            }
            let mut queues = Vec::new();
            while let Some(r) = chans.join_next().await {
                queues.push(r.expect("channel task"));
            }
            (conn, queues)
        });
    }
    let mut conns = Vec::new();
    within(80, "all connections done", async {
        while let Some(r) = tasks.join_next().await {
            conns.push(r.expect("connection task"));
        }
    })
    .await;
    assert_eq!(conns.len(), CONNS);
    assert_eq!(b.running.broker.connections().len(), CONNS);
    // Exactly once: nothing left over anywhere once the acks are in (a requeue on channel
    // close would show up as a ready message here).
    for (_, queues) in &conns {
        for q in queues {
            let q = q.clone();
            // (The channels were dropped, which closes them and cancels their consumers.)
            wait_until(10, "acks applied", || {
                let (ready, unacked, _) = counts(&b, &q);
                ready == 0 && unacked == 0
            })
            .await;
        }
    }
    for (conn, _) in conns {
        conn.close(200, "bye".into()).await.unwrap();
    }
    wait_until(10, "connections gone", || {
        b.running.broker.connections().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_message_round_trip() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "big").await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let body: Vec<u8> = (0..16 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let c = within(30, "16 MiB publish confirm", async {
        ch.basic_publish(
            "".into(),
            "big".into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap()
    })
    .await;
    assert!(c.is_ack());
    assert_eq!(queue(&b, "big").unwrap().counts().ready_bytes, body.len() as u64);
    let mut consumer = consume(&ch, "big", "big").await;
    let d = within(
        30,
        "16 MiB delivery",
        futures_lite::StreamExt::next(&mut consumer),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(d.data.len(), body.len());
    assert!(d.data == body, "body bytes differ");
    d.ack(BasicAckOptions::default()).await.unwrap();
    // Also through basic.get (after the consumer is gone).
    ch.basic_cancel("big".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    let c = within(30, "second 16 MiB publish", async {
        ch.basic_publish(
            "".into(),
            "big".into(),
            BasicPublishOptions::default(),
            &body[..body.len() - 1],
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap()
    })
    .await;
    assert!(c.is_ack());
    let m = within(
        30,
        "16 MiB get",
        ch.basic_get("big".into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    .expect("a message");
    assert!(m.delivery.data == body[..body.len() - 1]);
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_pipelined_confirms() {
    const N: usize = 100_000;
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "confirms").await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let t0 = std::time::Instant::now();
    let pending = within(60, "publishing 100k", async {
        let mut pending = Vec::with_capacity(N);
        for i in 0..N {
            pending.push(
                ch.basic_publish(
                    "".into(),
                    "confirms".into(),
                    BasicPublishOptions::default(),
                    &(i as u64).to_be_bytes(),
                    BasicProperties::default(),
                )
                .await
                .expect("publish"),
            );
        }
        pending
    })
    .await;
    let acked = within(60, "100k confirms", async {
        let mut acked = 0;
        for p in pending {
            if p.await.expect("confirm").is_ack() {
                acked += 1;
            }
        }
        acked
    })
    .await;
    assert_eq!(acked, N);
    assert_eq!(counts(&b, "confirms"), (N as u32, 0, 0));
    eprintln!("100k confirmed publishes in {:?}", t0.elapsed());
    assert_eq!(
        ch.queue_purge("confirms".into(), QueuePurgeOptions::default())
            .await
            .unwrap(),
        N as u32
    );
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_stays_within_prefetch() {
    const PREFETCH: usize = 10;
    const N: usize = 200;
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "slow").await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for i in 0..N {
        publish(&ch, "", "slow", format!("m{i}").as_bytes()).await;
    }
    within(10, "confirms", ch.wait_for_confirms()).await.unwrap();
    let cch = conn.create_channel().await.unwrap();
    cch.basic_qos(PREFETCH as u16, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consume(&cch, "slow", "slow").await;
    let mut outstanding = VecDeque::new();
    let mut max_outstanding = 0;
    for i in 0..N {
        let d = next(&mut consumer).await;
        assert_eq!(d.data, format!("m{i}").into_bytes(), "in order");
        outstanding.push_back(d);
        max_outstanding = max_outstanding.max(outstanding.len());
        assert!(
            outstanding.len() <= PREFETCH,
            "{} unacked > prefetch",
            outstanding.len()
        );
        if outstanding.len() == PREFETCH {
            // The window is full: the broker holds exactly PREFETCH unacked and no more.
            let (ready, unacked, _) = counts(&b, "slow");
            assert_eq!(unacked as usize, PREFETCH);
            assert_eq!(ready as usize, N - i - 1);
            // Ack the oldest (slowly: one at a time) to let one more in.
            let old = outstanding.pop_front().unwrap();
            old.ack(BasicAckOptions::default()).await.unwrap();
        }
    }
    assert_eq!(max_outstanding, PREFETCH);
    while let Some(d) = outstanding.pop_front() {
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    wait_until(5, "all acked", || counts(&b, "slow") == (0, 0, 1)).await;
    conn.close(200, "bye".into()).await.unwrap();
}
