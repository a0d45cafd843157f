//! Ordering and duplicates end to end (issue 9): single active consumer takeover (on cancel and
//! on an abruptly lost connection), consumer priorities, priority queues, the
//! `x-consistent-hash` and `x-random` exchanges, message groups (`x-message-group-header`) and
//! deduplication (`x-deduplication-window`), with ordering asserted message by message.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::raw::Raw;
use common::{TestBroker, counts, next, within};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Consumer, ExchangeKind};
use warren_codec::methods::{BasicAck, BasicCancel, BasicConsume, BasicQos, ChannelClose};
use warren_codec::{Frame, Method};

fn args(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(v.into())
}

fn int(v: i64) -> AMQPValue {
    AMQPValue::LongLongInt(v)
}

async fn declare(ch: &Channel, name: &str, a: FieldTable) {
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), a)
        .await
        .unwrap_or_else(|e| panic!("declare {name}: {e}"));
}

/// Publishes on a confirm-mode channel and waits for the ack.
async fn publish_confirmed(ch: &Channel, exchange: &str, key: &str, body: &[u8], props: BasicProperties) {
    let c = within(
        5,
        "publish",
        ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            props,
        ),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
    assert!(c.is_ack(), "publish {key} confirmed with {c:?}");
}

async fn confirm_channel(conn: &lapin::Connection) -> Channel {
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    ch
}

async fn consume_with(ch: &Channel, queue: &str, tag: &str, a: FieldTable) -> Consumer {
    ch.basic_consume(queue.into(), tag.into(), BasicConsumeOptions::default(), a)
        .await
        .unwrap_or_else(|e| panic!("consume {queue}: {e}"))
}

fn body(d: &lapin::message::Delivery) -> String {
    String::from_utf8(d.data.clone()).unwrap()
}

async fn ack(d: &lapin::message::Delivery) {
    d.ack(BasicAckOptions::default()).await.expect("ack");
}

/// Asserts that `consumer` receives nothing for a short while (a negative check; the positive
/// checks around it use deadlines).
async fn assert_quiet(consumer: &mut Consumer, what: &str) {
    if let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await {
        panic!("{what}: unexpected delivery {:?}", d.map(|d| body(&d)));
    }
}

/// A consumer on a raw socket (so that its connection can be lost abruptly, without
/// connection.close): channel 1, `prefetch`, consuming `queue`.
async fn raw_consumer(b: &TestBroker, queue: &str, prefetch: u16) -> Raw {
    let mut r = Raw::handshake(b.running.amqp_addr, 0).await;
    r.open_channel(1).await;
    r.send_method(
        1,
        BasicQos {
            prefetch_size: 0,
            prefetch_count: prefetch,
            global: false,
        },
    )
    .await;
    match r.next_method().await {
        Some((1, Method::BasicQosOk(_))) => {}
        other => panic!("expected basic.qos-ok, got {other:?}"),
    }
    r.send_method(
        1,
        BasicConsume {
            queue: queue.into(),
            consumer_tag: "raw".into(),
            ..Default::default()
        },
    )
    .await;
    match r.next_method().await {
        Some((1, Method::BasicConsumeOk(_))) => {}
        other => panic!("expected basic.consume-ok, got {other:?}"),
    }
    r
}

/// The bodies of the next `n` deliveries on a raw consumer (bodies must be non-empty).
async fn raw_bodies(r: &mut Raw, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        if let Frame::Body { body, .. } = r.next_frame().await.expect("a frame") {
            out.push(String::from_utf8(body.to_vec()).unwrap());
        }
    }
    out
}

/// The next `n` deliveries' bodies, acking each; asserts the redelivered flag of each.
async fn take(consumer: &mut Consumer, n: usize, redelivered: Option<bool>) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let d = next(consumer).await;
        if let Some(r) = redelivered {
            assert_eq!(d.redelivered, r, "redelivered flag of {}", body(&d));
        }
        out.push(body(&d));
        ack(&d).await;
    }
    out
}

fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Single active consumer, consumer priorities, priority queues
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn single_active_consumer_takeover_on_cancel_requeues_in_order() {
    let b = common::start().await;
    let conn = b.connect().await;
    let pubch = confirm_channel(&conn).await;
    declare(
        &pubch,
        "sac",
        args(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await;
    for i in 0..5 {
        publish_confirmed(
            &pubch,
            "",
            "sac",
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    let ca = b.connect().await;
    let cha = ca.create_channel().await.unwrap();
    let mut a = consume_with(&cha, "sac", "a", FieldTable::default()).await;
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(body(&next(&mut a).await));
    }
    assert_eq!(got, names("m", 0..5));
    // A waiting consumer's basic.consume succeeds; it receives nothing while `a` is active.
    let cb = b.connect().await;
    let chb = cb.create_channel().await.unwrap();
    let mut bc = consume_with(&chb, "sac", "b", FieldTable::default()).await;
    assert_eq!(counts(&b, "sac").2, 2);
    publish_confirmed(&pubch, "", "sac", b"m5", BasicProperties::default()).await;
    assert_eq!(body(&next(&mut a).await), "m5");
    assert_quiet(&mut bc, "the waiting consumer").await;
    // `a` cancels and closes its channel: its six unacked messages go back in order and the
    // next consumer takes over with them, in order, marked redelivered.
    cha.basic_cancel("a".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    cha.close(200, "bye".into()).await.unwrap();
    assert_eq!(take(&mut bc, 6, Some(true)).await, names("m", 0..6));
    publish_confirmed(&pubch, "", "sac", b"m6", BasicProperties::default()).await;
    assert_eq!(take(&mut bc, 1, Some(false)).await, ["m6"]);
    b.running.shutdown().await;
}

#[tokio::test]
async fn single_active_consumer_takeover_on_connection_failure() {
    let b = common::start().await;
    let conn = b.connect().await;
    let pubch = confirm_channel(&conn).await;
    declare(
        &pubch,
        "sac2",
        args(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await;
    // The active consumer is on a raw socket with prefetch 5.
    let mut raw = raw_consumer(&b, "sac2", 5).await;
    let cb = b.connect().await;
    let chb = cb.create_channel().await.unwrap();
    let mut bc = consume_with(&chb, "sac2", "b", FieldTable::default()).await;
    for i in 0..8 {
        publish_confirmed(
            &pubch,
            "",
            "sac2",
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    assert_eq!(raw_bodies(&mut raw, 5).await, names("m", 0..5));
    assert_eq!(counts(&b, "sac2"), (3, 5, 2));
    assert_quiet(&mut bc, "the waiting consumer").await;
    // The connection dies without connection.close.
    drop(raw);
    // The next consumer gets the five requeued messages first, in order, then the rest.
    assert_eq!(take(&mut bc, 5, Some(true)).await, names("m", 0..5));
    assert_eq!(take(&mut bc, 3, Some(false)).await, names("m", 5..8));
    common::wait_until(5, "everything acked", || counts(&b, "sac2") == (0, 0, 1)).await;
    b.running.shutdown().await;
}

/// A single-active-consumer queue `name` with `n` messages `m0..` and the active consumer on a
/// raw socket holding the first `prefetch`, a lapin consumer waiting behind it.
async fn sac_with_holder(
    b: &TestBroker,
    name: &str,
    n: usize,
    prefetch: u16,
) -> (Raw, lapin::Connection, Consumer) {
    let conn = b.connect().await;
    let pubch = confirm_channel(&conn).await;
    declare(
        &pubch,
        name,
        args(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await;
    let mut raw = raw_consumer(b, name, prefetch).await;
    let cb = b.connect().await;
    let chb = cb.create_channel().await.unwrap();
    let mut waiting = consume_with(&chb, name, "waiting", FieldTable::default()).await;
    for i in 0..n {
        publish_confirmed(
            &pubch,
            "",
            name,
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    assert_eq!(
        raw_bodies(&mut raw, prefetch as usize).await,
        names("m", 0..prefetch as usize)
    );
    assert_quiet(&mut waiting, "the waiting consumer").await;
    (raw, cb, waiting)
}

/// Cancels the raw consumer (tag `raw` on channel 1) and waits for cancel-ok.
async fn raw_cancel(raw: &mut Raw) {
    raw.send_method(
        1,
        BasicCancel {
            consumer_tag: "raw".into(),
            nowait: false,
        },
    )
    .await;
    match raw.next_method().await {
        Some((1, Method::BasicCancelOk(_))) => {}
        other => panic!("expected basic.cancel-ok, got {other:?}"),
    }
}

fn channel_close() -> Method {
    ChannelClose {
        reply_code: 200,
        reply_text: "bye".into(),
        class_id: 0,
        method_id: 0,
    }
    .into()
}

/// Issue 15: the active consumer acks one message and closes its channel in one write, so a
/// delivery the ack let through is still on its way to the closing channel. The next consumer
/// gets every held message back first, in order, then the rest — each exactly once (a late
/// "never sent" return of that delivery must not take it back from the new consumer).
#[tokio::test]
async fn single_active_consumer_channel_close_returns_held_messages_first_exactly_once() {
    let b = common::start().await;
    let (mut raw, _cb, mut next_consumer) = sac_with_holder(&b, "sac-close", 8, 5).await;
    raw.send_methods(vec![
        (
            1,
            BasicAck {
                delivery_tag: 1,
                multiple: false,
            }
            .into(),
        ),
        (1, channel_close()),
    ])
    .await;
    let got = take(&mut next_consumer, 7, None).await;
    assert_eq!(
        got,
        names("m", 1..8),
        "returned messages first, in order, then the rest"
    );
    assert_quiet(&mut next_consumer, "every message once").await;
    common::wait_until(5, "everything acked", || counts(&b, "sac-close") == (0, 0, 1)).await;
    b.running.shutdown().await;
}

/// Issue 15: basic.cancel while holding unacked messages does not activate the next consumer;
/// the channel's close then returns them, and the next consumer gets them first (redelivered,
/// in order), then the messages behind them.
#[tokio::test]
async fn single_active_consumer_cancel_then_close_returns_held_messages_first() {
    let b = common::start().await;
    let (mut raw, _cb, mut next_consumer) = sac_with_holder(&b, "sac-cancel", 8, 5).await;
    raw_cancel(&mut raw).await;
    assert_quiet(
        &mut next_consumer,
        "the next consumer while the cancelled one holds messages",
    )
    .await;
    raw.send_method(1, channel_close()).await;
    assert_eq!(take(&mut next_consumer, 5, Some(true)).await, names("m", 0..5));
    assert_eq!(take(&mut next_consumer, 3, Some(false)).await, names("m", 5..8));
    b.running.shutdown().await;
}

/// Issue 15: a cancelled active consumer that acks its messages on its still-open channel hands
/// over once it holds none (RabbitMQ 3.10 classic queues forget to; quorum queues do not).
#[tokio::test]
async fn single_active_consumer_cancelled_holder_acking_its_last_message_hands_over() {
    let b = common::start().await;
    let (mut raw, _cb, mut next_consumer) = sac_with_holder(&b, "sac-ack", 6, 3).await;
    raw_cancel(&mut raw).await;
    assert_quiet(&mut next_consumer, "the next consumer after the cancel").await;
    raw.send_method(
        1,
        BasicAck {
            delivery_tag: 2,
            multiple: true,
        },
    )
    .await;
    assert_quiet(&mut next_consumer, "the next consumer while one message is held").await;
    raw.send_method(
        1,
        BasicAck {
            delivery_tag: 3,
            multiple: false,
        },
    )
    .await;
    assert_eq!(take(&mut next_consumer, 3, Some(false)).await, names("m", 3..6));
    common::wait_until(5, "everything acked", || counts(&b, "sac-ack") == (0, 0, 1)).await;
    b.running.shutdown().await;
}

#[tokio::test]
async fn single_active_consumer_respects_consumer_priority() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(
        &ch,
        "sacp",
        args(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await;
    let c1 = conn.create_channel().await.unwrap();
    let mut low = consume_with(&c1, "sacp", "low", FieldTable::default()).await;
    let c2 = conn.create_channel().await.unwrap();
    let mut high = consume_with(&c2, "sacp", "high", args(&[("x-priority", int(10))])).await;
    publish_confirmed(&ch, "", "sacp", b"x", BasicProperties::default()).await;
    assert_eq!(take(&mut high, 1, None).await, ["x"]);
    assert_quiet(&mut low, "the lower-priority consumer").await;
    c2.basic_cancel("high".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    publish_confirmed(&ch, "", "sacp", b"y", BasicProperties::default()).await;
    assert_eq!(take(&mut low, 1, None).await, ["y"]);
    b.running.shutdown().await;
}

#[tokio::test]
async fn consumer_priorities_prefer_the_highest_with_room() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "cp", FieldTable::default()).await;
    let chl = conn.create_channel().await.unwrap();
    chl.basic_qos(100, BasicQosOptions::default()).await.unwrap();
    let mut low = consume_with(&chl, "cp", "low", args(&[("x-priority", int(1))])).await;
    let chh = conn.create_channel().await.unwrap();
    chh.basic_qos(3, BasicQosOptions::default()).await.unwrap();
    let mut high = consume_with(&chh, "cp", "high", args(&[("x-priority", int(10))])).await;
    for i in 0..10 {
        publish_confirmed(
            &ch,
            "",
            "cp",
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    // The high-priority consumer takes messages until its prefetch is full; the rest overflow
    // to the low-priority one.
    let mut h = Vec::new();
    for _ in 0..3 {
        h.push(body(&next(&mut high).await));
    }
    assert_eq!(h, names("m", 0..3));
    let mut l = Vec::new();
    for _ in 0..7 {
        l.push(body(&next(&mut low).await));
    }
    assert_eq!(l, names("m", 3..10));
    b.running.shutdown().await;
}

#[tokio::test]
async fn priority_queue_delivers_highest_first_fifo_within_a_priority() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "pq", args(&[("x-max-priority", int(10))])).await;
    let msgs: [(&str, Option<u8>); 8] = [
        ("p1", Some(1)),
        ("p5a", Some(5)),
        ("p10a", Some(10)),
        ("p5b", Some(5)),
        ("p0", Some(0)),
        ("none", None),
        ("p10b", Some(10)),
        ("p200", Some(200)), // above x-max-priority: treated as the maximum
    ];
    for (bd, p) in msgs {
        let props = match p {
            Some(p) => BasicProperties::default().with_priority(p),
            None => BasicProperties::default(),
        };
        publish_confirmed(&ch, "", "pq", bd.as_bytes(), props).await;
    }
    let mut c = consume_with(&ch, "pq", "c", FieldTable::default()).await;
    assert_eq!(
        take(&mut c, 8, Some(false)).await,
        ["p10a", "p10b", "p200", "p5a", "p5b", "p1", "p0", "none"]
    );
    b.running.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Consistent-hash and random exchanges
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn consistent_hash_exchange_distributes_by_weight_and_is_sticky() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        "hashed".into(),
        ExchangeKind::Custom("x-consistent-hash".into()),
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let weights = [1u32, 1, 2, 4];
    for (i, w) in weights.iter().enumerate() {
        let q = format!("shard{i}");
        declare(&ch, &q, FieldTable::default()).await;
        ch.queue_bind(
            q.as_str().into(),
            "hashed".into(),
            w.to_string().as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    // A non-integer weight is refused (406), as RabbitMQ's plugin does.
    let bad = conn.create_channel().await.unwrap();
    let r = bad
        .queue_bind(
            "shard0".into(),
            "hashed".into(),
            "heavy".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await;
    common::assert_code(r, 406, "weight");
    let n = 40_000;
    for i in 0..n {
        common::publish(&ch, "hashed", &format!("key-{i}"), b"x").await;
    }
    let total: u32 = weights.iter().sum();
    let shard = |i: usize| format!("shard{i}");
    common::wait_until(30, "every message routed", || {
        (0..4).map(|i| counts(&b, &shard(i)).0).sum::<u32>() == n
    })
    .await;
    for (i, w) in weights.iter().enumerate() {
        let got = counts(&b, &shard(i)).0 as f64;
        let expected = n as f64 * *w as f64 / total as f64;
        assert!(
            (got - expected).abs() / expected <= 0.05,
            "shard{i} (weight {w}) got {got}, expected {expected} ±5%"
        );
    }
    // Stickiness: the same routing key always reaches the same queue.
    let before: Vec<u32> = (0..4).map(|i| counts(&b, &shard(i)).0).collect();
    for _ in 0..50 {
        common::publish(&ch, "hashed", "customer-42", b"y").await;
    }
    common::wait_until(10, "the sticky messages", || {
        (0..4).map(|i| counts(&b, &shard(i)).0).sum::<u32>() == n + 50
    })
    .await;
    let grown: Vec<usize> = (0..4)
        .filter(|i| counts(&b, &shard(*i)).0 != before[*i])
        .collect();
    assert_eq!(
        grown.len(),
        1,
        "one queue got every message of the key: {grown:?}"
    );
    assert_eq!(counts(&b, &shard(grown[0])).0, before[grown[0]] + 50);
    b.running.shutdown().await;
}

#[tokio::test]
async fn consistent_hash_on_header_and_property() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    for (x, a) in [
        ("by-header", ("hash-header", "customer")),
        ("by-prop", ("hash-property", "message_id")),
    ] {
        ch.exchange_declare(
            x.into(),
            ExchangeKind::Custom("x-consistent-hash".into()),
            ExchangeDeclareOptions::default(),
            args(&[(a.0, s(a.1))]),
        )
        .await
        .unwrap();
        for i in 0..3 {
            let q = format!("{x}.{i}");
            declare(&ch, &q, FieldTable::default()).await;
            ch.queue_bind(
                q.as_str().into(),
                x.into(),
                "1".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        }
    }
    // Different routing keys, same header / message id: one queue.
    for i in 0..30 {
        let h = args(&[("customer", s("c-7"))]);
        publish_confirmed(
            &ch,
            "by-header",
            &format!("rk{i}"),
            b"h",
            BasicProperties::default().with_headers(h),
        )
        .await;
        publish_confirmed(
            &ch,
            "by-prop",
            &format!("rk{i}"),
            b"p",
            BasicProperties::default().with_message_id("id-9".into()),
        )
        .await;
    }
    for x in ["by-header", "by-prop"] {
        let c: Vec<u32> = (0..3).map(|i| counts(&b, &format!("{x}.{i}")).0).collect();
        assert_eq!(c.iter().filter(|n| **n == 30).count(), 1, "{x}: {c:?}");
        assert_eq!(c.iter().sum::<u32>(), 30, "{x}: {c:?}");
    }
    // Without the header the message is unroutable (basic.return when mandatory).
    let unroutable = b.running.broker.metrics.unroutable.load(Ordering::Relaxed);
    publish_confirmed(&ch, "by-header", "rk", b"none", BasicProperties::default()).await;
    assert_eq!(
        b.running.broker.metrics.unroutable.load(Ordering::Relaxed),
        unroutable + 1
    );
    // Mutually exclusive arguments are refused.
    let bad = conn.create_channel().await.unwrap();
    let r = bad
        .exchange_declare(
            "bad".into(),
            ExchangeKind::Custom("x-consistent-hash".into()),
            ExchangeDeclareOptions::default(),
            args(&[("hash-header", s("a")), ("hash-property", s("message_id"))]),
        )
        .await;
    common::assert_code(r, 406, "mutually exclusive");
    b.running.shutdown().await;
}

#[tokio::test]
async fn random_exchange_uses_every_bound_queue_once_per_message() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    ch.exchange_declare(
        "rnd".into(),
        ExchangeKind::Custom("x-random".into()),
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for i in 0..3 {
        let q = format!("rnd{i}");
        declare(&ch, &q, FieldTable::default()).await;
        ch.queue_bind(
            q.as_str().into(),
            "rnd".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    for _ in 0..300 {
        publish_confirmed(&ch, "rnd", "any", b"r", BasicProperties::default()).await;
    }
    let c: Vec<u32> = (0..3).map(|i| counts(&b, &format!("rnd{i}")).0).collect();
    assert_eq!(
        c.iter().sum::<u32>(),
        300,
        "each message reaches exactly one queue"
    );
    assert!(c.iter().all(|n| *n >= 50), "{c:?}");
    b.running.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Message groups
// ---------------------------------------------------------------------------------------------

fn grouped(g: &str) -> BasicProperties {
    BasicProperties::default().with_headers(args(&[("order-id", s(g))]))
}

#[tokio::test]
async fn message_groups_in_order_one_in_flight_and_parallel() {
    const CONSUMERS: usize = 8;
    const GROUPS: usize = 1000;
    const MESSAGES: usize = 100_000;
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "groups", args(&[("x-message-group-header", s("order-id"))])).await;
    // Message i is number i / GROUPS of group i % GROUPS.
    for i in 0..MESSAGES {
        let g = i % GROUPS;
        let bd = format!("{g}:{}", i / GROUPS);
        common::publish_props(&ch, "", "groups", bd.as_bytes(), grouped(&format!("g{g}"))).await;
    }
    common::wait_until(60, "every message enqueued", || {
        counts(&b, "groups").0 as usize == MESSAGES
    })
    .await;

    #[derive(Default)]
    struct Shared {
        in_flight: HashSet<usize>,
        next: HashMap<usize, usize>,
        per_consumer: Vec<usize>,
        done: usize,
        violations: Vec<String>,
    }
    let shared = Arc::new(parking_lot_free::Mutex::new(Shared {
        per_consumer: vec![0; CONSUMERS],
        ..Default::default()
    }));
    let mut conns = Vec::new();
    let mut tasks = Vec::new();
    for c in 0..CONSUMERS {
        let conn = b.connect().await;
        let cch = conn.create_channel().await.unwrap();
        cch.basic_qos(20, BasicQosOptions::default()).await.unwrap();
        let mut consumer = consume_with(&cch, "groups", &format!("c{c}"), FieldTable::default()).await;
        let shared = shared.clone();
        conns.push((conn, cch));
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                let text = body(&d);
                let (g, n) = text.split_once(':').unwrap();
                let (g, n): (usize, usize) = (g.parse().unwrap(), n.parse().unwrap());
                {
                    let mut s = shared.lock();
                    if !s.in_flight.insert(g) {
                        s.violations.push(format!("two in flight in group {g}"));
                    }
                    let expected = s.next.get(&g).copied().unwrap_or(0);
                    if n != expected {
                        s.violations
                            .push(format!("group {g}: got {n}, expected {expected}"));
                    }
                    s.next.insert(g, n + 1);
                    s.per_consumer[c] += 1;
                }
                // "Process", then leave the group before acking: the broker only delivers
                // the group's next message once it has the ack.
                tokio::task::yield_now().await;
                {
                    let mut s = shared.lock();
                    s.in_flight.remove(&g);
                    s.done += 1;
                }
                d.ack(BasicAckOptions::default()).await.unwrap();
            }
        }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let done = shared.lock().done;
        if done == MESSAGES {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {done} of {MESSAGES} processed in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = shared.lock();
    assert!(
        s.violations.is_empty(),
        "violations: {:?}",
        &s.violations[..s.violations.len().min(10)]
    );
    assert_eq!(s.next.len(), GROUPS);
    assert!(s.next.values().all(|n| *n == MESSAGES / GROUPS));
    let used = s.per_consumer.iter().filter(|n| **n > 0).count();
    assert!(
        used > 1,
        "groups were processed in parallel by several consumers: {:?}",
        s.per_consumer
    );
    eprintln!("per-consumer deliveries: {:?}", s.per_consumer);
    drop(s);
    for t in tasks {
        t.abort();
    }
    b.running.shutdown().await;
}

/// Processes `messages` messages of `groups` groups with `consumers` consumers that each take
/// `work` per message; returns the elapsed time.
async fn grouped_run(
    b: &TestBroker,
    queue: &str,
    consumers: usize,
    groups: usize,
    messages: usize,
    work: Duration,
) -> Duration {
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, queue, args(&[("x-message-group-header", s("order-id"))])).await;
    for i in 0..messages {
        common::publish_props(
            &ch,
            "",
            queue,
            format!("{i}").as_bytes(),
            grouped(&format!("g{}", i % groups)),
        )
        .await;
    }
    common::wait_until(30, "every message enqueued", || {
        counts(b, queue).0 as usize == messages
    })
    .await;
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = tokio::time::Instant::now();
    let mut keep = Vec::new();
    for c in 0..consumers {
        let cch = conn.create_channel().await.unwrap();
        cch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
        let mut consumer = consume_with(&cch, queue, &format!("c{c}"), FieldTable::default()).await;
        let done = done.clone();
        keep.push(cch);
        tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                tokio::time::sleep(work).await;
                d.ack(BasicAckOptions::default()).await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let d2 = done.clone();
    common::wait_until(60, "every message processed", move || {
        d2.load(Ordering::Relaxed) == messages
    })
    .await;
    let took = start.elapsed();
    for c in keep {
        let _ = c.close(200, "done".into()).await;
    }
    took
}

#[tokio::test]
async fn message_group_throughput_scales_with_consumers() {
    let b = common::start().await;
    let work = Duration::from_millis(5);
    let one = grouped_run(&b, "scale1", 1, 100, 200, work).await;
    let eight = grouped_run(&b, "scale8", 8, 100, 200, work).await;
    eprintln!("1 consumer: {one:?}, 8 consumers: {eight:?}");
    assert!(
        eight * 3 < one,
        "8 consumers ({eight:?}) should be well over 3x faster than 1 ({one:?})"
    );
    b.running.shutdown().await;
}

#[tokio::test]
async fn message_group_takeover_when_the_holding_consumer_disconnects() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "gto", args(&[("x-message-group-header", s("order-id"))])).await;
    for i in 0..5 {
        publish_confirmed(&ch, "", "gto", format!("a{i}").as_bytes(), grouped("A")).await;
        publish_confirmed(&ch, "", "gto", format!("b{i}").as_bytes(), grouped("B")).await;
    }
    // The first consumer holds both groups' heads (one in flight per group).
    let mut raw = raw_consumer(&b, "gto", 10).await;
    assert_eq!(raw_bodies(&mut raw, 2).await, ["a0", "b0"]);
    let cb = b.connect().await;
    let chb = cb.create_channel().await.unwrap();
    let mut other = consume_with(&chb, "gto", "other", FieldTable::default()).await;
    assert_quiet(&mut other, "a consumer while both groups are busy").await;
    assert_eq!(counts(&b, "gto"), (8, 2, 2));
    drop(raw);
    // The other consumer takes over both groups from their heads, each in order.
    let got = take(&mut other, 10, None).await;
    let a: Vec<&String> = got.iter().filter(|m| m.starts_with('a')).collect();
    let bb: Vec<&String> = got.iter().filter(|m| m.starts_with('b')).collect();
    assert_eq!(a, names("a", 0..5).iter().collect::<Vec<_>>());
    assert_eq!(bb, names("b", 0..5).iter().collect::<Vec<_>>());
    b.running.shutdown().await;
}

#[tokio::test]
async fn message_group_requeue_holds_the_group() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "grq", args(&[("x-message-group-header", s("order-id"))])).await;
    for i in 0..3 {
        publish_confirmed(&ch, "", "grq", format!("a{i}").as_bytes(), grouped("A")).await;
    }
    publish_confirmed(&ch, "", "grq", b"u0", BasicProperties::default()).await;
    let cch = conn.create_channel().await.unwrap();
    let mut c = consume_with(&cch, "grq", "c", FieldTable::default()).await;
    let d = next(&mut c).await;
    assert_eq!(body(&d), "a0");
    assert_eq!(
        body(&next(&mut c).await),
        "u0",
        "ungrouped messages flow past a busy group"
    );
    d.nack(BasicNackOptions {
        requeue: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let d = next(&mut c).await;
    assert_eq!((body(&d).as_str(), d.redelivered), ("a0", true));
    d.reject(BasicRejectOptions { requeue: false }).await.unwrap();
    assert_eq!(take(&mut c, 2, Some(false)).await, ["a1", "a2"]);
    b.running.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Deduplication
// ---------------------------------------------------------------------------------------------

fn with_id(id: &str) -> BasicProperties {
    BasicProperties::default().with_message_id(id.into())
}

#[tokio::test]
async fn deduplication_window_drops_repeats_and_confirms_them() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "dedup", args(&[("x-deduplication-window", int(1500))])).await;
    for _ in 0..3 {
        publish_confirmed(&ch, "", "dedup", b"pay-1", with_id("payment-1")).await;
    }
    assert_eq!(counts(&b, "dedup").0, 1);
    let q = common::queue(&b, "dedup").unwrap();
    assert_eq!(q.stats.duplicates_dropped.load(Ordering::Relaxed), 2);
    assert_eq!(
        b.running
            .broker
            .metrics
            .duplicates_dropped
            .load(Ordering::Relaxed),
        2
    );
    // Another id, and a message without one, are not affected.
    publish_confirmed(&ch, "", "dedup", b"pay-2", with_id("payment-2")).await;
    publish_confirmed(&ch, "", "dedup", b"anon", BasicProperties::default()).await;
    publish_confirmed(&ch, "", "dedup", b"anon", BasicProperties::default()).await;
    assert_eq!(counts(&b, "dedup").0, 4);
    // Once the window has passed the id is accepted again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        publish_confirmed(&ch, "", "dedup", b"pay-1-again", with_id("payment-1")).await;
        if counts(&b, "dedup").0 == 5 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "payment-1 never accepted again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Duplicates are routed (confirmed with basic.ack), not unroutable.
    assert_eq!(b.running.broker.metrics.unroutable.load(Ordering::Relaxed), 0);
    b.running.shutdown().await;
}

#[tokio::test]
async fn deduplication_by_header_and_on_an_exchange() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(
        &ch,
        "dedup-h",
        args(&[
            ("x-deduplication-window", int(60_000)),
            ("x-deduplication-header", s("idempotency-key")),
        ]),
    )
    .await;
    let h = |k: &str| BasicProperties::default().with_headers(args(&[("idempotency-key", s(k))]));
    publish_confirmed(&ch, "", "dedup-h", b"1", h("k1")).await;
    publish_confirmed(
        &ch,
        "",
        "dedup-h",
        b"2",
        h("k1").with_message_id("different".into()),
    )
    .await;
    publish_confirmed(&ch, "", "dedup-h", b"3", h("k2")).await;
    assert_eq!(counts(&b, "dedup-h").0, 2);

    ch.exchange_declare(
        "dedup-x".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        args(&[("x-deduplication-window", int(60_000))]),
    )
    .await
    .unwrap();
    for q in ["fan1", "fan2"] {
        declare(&ch, q, FieldTable::default()).await;
        ch.queue_bind(
            q.into(),
            "dedup-x".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    for _ in 0..3 {
        publish_confirmed(&ch, "dedup-x", "", b"e", with_id("evt-1")).await;
    }
    assert_eq!((counts(&b, "fan1").0, counts(&b, "fan2").0), (1, 1));
    assert_eq!(
        b.running
            .broker
            .metrics
            .duplicates_dropped
            .load(Ordering::Relaxed),
        3
    );
    assert_eq!(b.running.broker.metrics.unroutable.load(Ordering::Relaxed), 0);
    // A bad window is refused.
    let bad = conn.create_channel().await.unwrap();
    let r = bad
        .queue_declare(
            "bad".into(),
            QueueDeclareOptions::default(),
            args(&[("x-deduplication-window", s("soon"))]),
        )
        .await;
    common::assert_code(r, 406, "x-deduplication-window");
    b.running.shutdown().await;
}

#[tokio::test]
async fn deduplication_window_survives_a_restart_for_held_messages() {
    let first = common::start().await;
    let dir = first.data_dir.path.clone();
    let keep = first.data_dir;
    let first = TestBroker {
        url: first.url,
        running: first.running,
        data_dir: common::tempdir::Dir::new(),
    };
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    {
        let conn = first.connect().await;
        let ch = confirm_channel(&conn).await;
        ch.queue_declare(
            "dd".into(),
            durable,
            args(&[("x-deduplication-window", int(60_000))]),
        )
        .await
        .unwrap();
        publish_confirmed(&ch, "", "dd", b"o1", with_id("order-1").with_delivery_mode(2)).await;
        first.running.shutdown().await;
    }
    let d2 = dir.clone();
    let second = common::start_with(move |c| c.data_dir = d2).await;
    let conn = second.connect().await;
    let ch = confirm_channel(&conn).await;
    ch.queue_declare(
        "dd".into(),
        durable,
        args(&[("x-deduplication-window", int(60_000))]),
    )
    .await
    .unwrap();
    assert_eq!(counts(&second, "dd").0, 1);
    // The publisher retries after the restart: still a duplicate, still confirmed.
    publish_confirmed(&ch, "", "dd", b"o1", with_id("order-1").with_delivery_mode(2)).await;
    publish_confirmed(&ch, "", "dd", b"o2", with_id("order-2").with_delivery_mode(2)).await;
    assert_eq!(counts(&second, "dd").0, 2);
    second.running.shutdown().await;
    drop(keep);
}

/// A std mutex wrapper with `lock()` returning the guard directly (the test crate does not
/// depend on parking_lot).
mod parking_lot_free {
    pub struct Mutex<T>(std::sync::Mutex<T>);
    impl<T> Mutex<T> {
        pub fn new(v: T) -> Self {
            Mutex(std::sync::Mutex::new(v))
        }
        pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap()
        }
    }
}
