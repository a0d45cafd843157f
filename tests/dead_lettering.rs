//! Poison messages end to end: delivery limits with `x-delivery-count`, delayed retry with
//! growing gaps, dead-letter exchanges and RabbitMQ's `x-death` for every reason, chained
//! dead-lettering and cycles, and `reject-publish` nacks to confirm-mode publishers.

mod common;

use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Consumer};

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
        .unwrap();
}

/// A fanout DLX `name` with one queue `name.q` bound to it.
async fn dlx_with_queue(ch: &Channel, name: &str) -> String {
    ch.exchange_declare(
        name.into(),
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = format!("{name}.q");
    declare(ch, &q, FieldTable::default()).await;
    ch.queue_bind(
        q.as_str().into(),
        name.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    q
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8], props: BasicProperties) {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        props,
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

async fn consume(ch: &Channel, queue: &str) -> Consumer {
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap()
}

async fn get(ch: &Channel, queue: &str, secs: u64) -> lapin::message::BasicGetMessage {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            return m;
        }
        assert!(Instant::now() < deadline, "no message in {queue} within {secs}s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn header<'a>(props: &'a BasicProperties, key: &str) -> Option<&'a AMQPValue> {
    props.headers().as_ref()?.inner().get(key)
}

fn text(v: Option<&AMQPValue>) -> String {
    match v {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.to_string(),
        other => panic!("expected a string, got {other:?}"),
    }
}

fn deaths(props: &BasicProperties) -> Vec<FieldTable> {
    match header(props, "x-death") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|v| match v {
                AMQPValue::FieldTable(t) => t.clone(),
                other => panic!("x-death entry is not a table: {other:?}"),
            })
            .collect(),
        other => panic!("no x-death array: {other:?}"),
    }
}

/// Asserts one x-death entry's fields and types as RabbitMQ writes them.
fn assert_death(t: &FieldTable, count: i64, reason: &str, queue: &str, exchange: &str, keys: &[&str]) {
    let m = t.inner();
    assert_eq!(
        m.get("count"),
        Some(&AMQPValue::LongLongInt(count)),
        "count in {m:?}"
    );
    assert_eq!(text(m.get("reason")), reason);
    assert_eq!(text(m.get("queue")), queue);
    assert_eq!(text(m.get("exchange")), exchange);
    assert!(
        matches!(m.get("time"), Some(AMQPValue::Timestamp(_))),
        "time is a timestamp: {m:?}"
    );
    match m.get("routing-keys") {
        Some(AMQPValue::FieldArray(a)) => {
            let got: Vec<String> = a.as_slice().iter().map(|v| text(Some(v))).collect();
            assert_eq!(got, keys);
        }
        other => panic!("routing-keys: {other:?}"),
    }
}

fn count_header(props: &BasicProperties, key: &str) -> Option<i64> {
    match header(props, key)? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(*n as i64),
        other => panic!("{key} has type {other:?}"),
    }
}

/// Runs the poison scenario: 1,000 good messages and one poison message that the consumer
/// always refuses (`reject` or `nack`, requeue=true). Returns the gaps between the poison
/// message's deliveries.
async fn poison_scenario(use_nack: bool) -> Vec<Duration> {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let dlq = dlx_with_queue(&ch, "poison.dlx").await;
    let mut a = vec![
        ("x-delivery-limit", int(5)),
        ("x-dead-letter-exchange", s("poison.dlx")),
        ("x-delayed-retry-type", s("all")),
        ("x-delayed-retry-min", int(60)),
        ("x-delayed-retry-max", int(10_000)),
    ];
    if use_nack {
        a.push(("x-delivery-limit-counts", s("all")));
    }
    declare(&ch, "work", args(&a)).await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for i in 0..500 {
        publish(
            &ch,
            "",
            "work",
            format!("good-{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    publish(&ch, "", "work", b"poison", BasicProperties::default()).await;
    for i in 500..1000 {
        publish(
            &ch,
            "",
            "work",
            format!("good-{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    let cch = conn.create_channel().await.unwrap();
    cch.basic_qos(50, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consume(&cch, "work").await;
    let mut good = 0;
    let mut poison_at: Vec<Instant> = Vec::new();
    while good < 1000 || poison_at.len() < 6 {
        let d = common::within(20, "a delivery from work", consumer.next())
            .await
            .unwrap()
            .unwrap();
        if d.data == b"poison" {
            let n = poison_at.len() as i64;
            poison_at.push(Instant::now());
            if n == 0 {
                assert!(!d.redelivered);
                assert_eq!(
                    count_header(&d.properties, "x-delivery-count"),
                    None,
                    "absent on first delivery"
                );
                assert_eq!(count_header(&d.properties, "x-acquired-count"), None);
            } else {
                assert!(d.redelivered);
                assert_eq!(count_header(&d.properties, "x-acquired-count"), Some(n));
                let failed = if use_nack { 0 } else { n };
                assert_eq!(count_header(&d.properties, "x-delivery-count"), Some(failed));
            }
            if use_nack {
                d.nack(BasicNackOptions {
                    requeue: true,
                    multiple: false,
                })
                .await
                .unwrap();
            } else {
                d.reject(BasicRejectOptions { requeue: true }).await.unwrap();
            }
        } else {
            good += 1;
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
    }
    assert_eq!(good, 1000, "every good message processed");
    let dead = get(&ch, &dlq, 10).await;
    assert_eq!(dead.delivery.data, b"poison");
    let p = &dead.delivery.properties;
    let d = deaths(p);
    assert_eq!(d.len(), 1);
    assert_death(&d[0], 1, "delivery_limit", "work", "", &["work"]);
    assert_eq!(text(header(p, "x-first-death-reason")), "delivery_limit");
    assert_eq!(text(header(p, "x-first-death-queue")), "work");
    assert_eq!(text(header(p, "x-first-death-exchange")), "");
    assert_eq!(text(header(p, "x-last-death-reason")), "delivery_limit");
    // Exactly six deliveries: nothing more arrives on `work`.
    assert!(
        ch.basic_get("work".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .is_none(),
        "the poison message left the queue"
    );
    conn.close(200, "bye".into()).await.unwrap();
    b.running.shutdown().await;
    poison_at.windows(2).map(|w| w[1] - w[0]).collect()
}

fn assert_growing_gaps(gaps: &[Duration]) {
    assert_eq!(gaps.len(), 5);
    for (i, g) in gaps.iter().enumerate() {
        // Linear delay: 60 ms × n. Measured, with slack below for timer granularity.
        let expected = Duration::from_millis(60 * (i as u64 + 1));
        assert!(
            *g + Duration::from_millis(15) >= expected,
            "gap {i} was {g:?}, expected ≥ {expected:?}"
        );
    }
    assert!(gaps[4] > gaps[0], "gaps grow: {gaps:?}");
}

#[tokio::test]
async fn poison_message_with_reject_is_retried_with_backoff_then_dead_lettered() {
    let gaps = poison_scenario(false).await;
    assert_growing_gaps(&gaps);
}

#[tokio::test]
async fn poison_message_with_nack_counts_all_returns() {
    let gaps = poison_scenario(true).await;
    assert_growing_gaps(&gaps);
}

#[tokio::test]
async fn rejected_message_gets_full_x_death() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let dlq = dlx_with_queue(&ch, "rej.dlx").await;
    declare(&ch, "rej", args(&[("x-dead-letter-exchange", s("rej.dlx"))])).await;
    ch.exchange_declare(
        "src".into(),
        lapin::ExchangeKind::Direct,
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        "rej".into(),
        "src".into(),
        "k".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let cc = args(&[("CC", AMQPValue::FieldArray(vec![s("cc-key")].into()))]);
    publish(&ch, "src", "k", b"x", BasicProperties::default().with_headers(cc)).await;
    let m = get(&ch, "rej", 5).await;
    assert!(
        m.delivery
            .properties
            .headers()
            .as_ref()
            .is_some_and(|h| h.inner().contains_key("CC"))
    );
    let m = ch
        .basic_get("rej".into(), BasicGetOptions::default())
        .await
        .unwrap();
    assert!(m.is_none(), "no_ack get consumed it");
    publish(&ch, "src", "k", b"y", BasicProperties::default()).await;
    let m = common::within(5, "get", ch.basic_get("rej".into(), BasicGetOptions::default()))
        .await
        .unwrap()
        .unwrap();
    m.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let dead = get(&ch, &dlq, 5).await;
    assert_eq!(dead.delivery.data, b"y");
    assert_eq!(dead.delivery.exchange.as_str(), "rej.dlx");
    assert_eq!(dead.delivery.routing_key.as_str(), "k");
    let d = deaths(&dead.delivery.properties);
    assert_eq!(d.len(), 1);
    assert_death(&d[0], 1, "rejected", "rej", "src", &["k"]);
    assert_eq!(
        text(header(&dead.delivery.properties, "x-first-death-exchange")),
        "src"
    );
    b.running.shutdown().await;
}

#[tokio::test]
async fn queue_ttl_expiry_dead_letters_with_reason_expired() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let dlq = dlx_with_queue(&ch, "ttl.dlx").await;
    declare(
        &ch,
        "ttl",
        args(&[
            ("x-message-ttl", int(50)),
            ("x-dead-letter-exchange", s("ttl.dlx")),
        ]),
    )
    .await;
    publish(&ch, "", "ttl", b"old", BasicProperties::default()).await;
    let dead = get(&ch, &dlq, 5).await;
    assert_eq!(dead.delivery.data, b"old");
    let d = deaths(&dead.delivery.properties);
    assert_death(&d[0], 1, "expired", "ttl", "", &["ttl"]);
    assert!(!d[0].inner().contains_key("original-expiration"));
    b.running.shutdown().await;
}

#[tokio::test]
async fn per_message_ttl_expiry_keeps_original_expiration() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let dlq = dlx_with_queue(&ch, "pm.dlx").await;
    declare(&ch, "pm", args(&[("x-dead-letter-exchange", s("pm.dlx"))])).await;
    // A long-lived message at the head must not keep the short-lived one behind it alive.
    publish(
        &ch,
        "",
        "pm",
        b"long",
        BasicProperties::default().with_expiration("600000".into()),
    )
    .await;
    publish(
        &ch,
        "",
        "pm",
        b"short",
        BasicProperties::default().with_expiration("30".into()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(60)).await; // let the short TTL pass (not a wait on the broker)
    let mut consumer = consume(&ch, "pm").await;
    let d = common::within(5, "delivery", consumer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.data, b"long", "the expired message is never delivered");
    d.ack(BasicAckOptions::default()).await.unwrap();
    let dead = get(&ch, &dlq, 5).await;
    assert_eq!(dead.delivery.data, b"short");
    assert_eq!(dead.delivery.properties.expiration(), &None, "expiration removed");
    let t = &deaths(&dead.delivery.properties)[0];
    assert_death(t, 1, "expired", "pm", "", &["pm"]);
    assert_eq!(text(t.inner().get("original-expiration")), "30");
    assert!(
        common::within(2, "no more", async {
            tokio::time::timeout(Duration::from_millis(200), consumer.next())
                .await
                .is_err()
        })
        .await
    );
    b.running.shutdown().await;
}

#[tokio::test]
async fn max_length_drop_head_dead_letters_maxlen() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let dlq = dlx_with_queue(&ch, "ml.dlx").await;
    declare(
        &ch,
        "ml",
        args(&[("x-max-length", int(2)), ("x-dead-letter-exchange", s("ml.dlx"))]),
    )
    .await;
    for m in ["m1", "m2", "m3"] {
        publish(&ch, "", "ml", m.as_bytes(), BasicProperties::default()).await;
    }
    let dead = get(&ch, &dlq, 5).await;
    assert_eq!(dead.delivery.data, b"m1");
    assert_death(
        &deaths(&dead.delivery.properties)[0],
        1,
        "maxlen",
        "ml",
        "",
        &["ml"],
    );
    assert_eq!(get(&ch, "ml", 5).await.delivery.data, b"m2");
    assert_eq!(get(&ch, "ml", 5).await.delivery.data, b"m3");
    b.running.shutdown().await;
}

#[tokio::test]
async fn max_length_bytes_counts_body_bytes() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "mlb", args(&[("x-max-length-bytes", int(10))])).await;
    for m in ["aaaa", "bbbb", "cccc"] {
        publish(&ch, "", "mlb", m.as_bytes(), BasicProperties::default()).await;
    }
    assert_eq!(get(&ch, "mlb", 5).await.delivery.data, b"bbbb");
    assert_eq!(get(&ch, "mlb", 5).await.delivery.data, b"cccc");
    b.running.shutdown().await;
}

#[tokio::test]
async fn reject_publish_overflow_nacks_confirm_publisher() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(
        &ch,
        "full",
        args(&[("x-max-length", int(1)), ("x-overflow", s("reject-publish"))]),
    )
    .await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let first = ch
        .basic_publish(
            "".into(),
            "full".into(),
            Default::default(),
            b"1",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(first.is_ack());
    let second = ch
        .basic_publish(
            "".into(),
            "full".into(),
            Default::default(),
            b"2",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(second.is_nack(), "a full reject-publish queue nacks: {second:?}");
    assert_eq!(get(&ch, "full", 5).await.delivery.data, b"1");
    b.running.shutdown().await;
}

#[tokio::test]
async fn reject_publish_dlx_dead_letters_the_refused_message() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let dlq = dlx_with_queue(&ch, "rpd.dlx").await;
    declare(
        &ch,
        "rpd",
        args(&[
            ("x-max-length", int(1)),
            ("x-overflow", s("reject-publish-dlx")),
            ("x-dead-letter-exchange", s("rpd.dlx")),
        ]),
    )
    .await;
    publish(&ch, "", "rpd", b"kept", BasicProperties::default()).await;
    publish(&ch, "", "rpd", b"refused", BasicProperties::default()).await;
    let dead = get(&ch, &dlq, 5).await;
    assert_eq!(dead.delivery.data, b"refused");
    assert_death(
        &deaths(&dead.delivery.properties)[0],
        1,
        "maxlen",
        "rpd",
        "",
        &["rpd"],
    );
    b.running.shutdown().await;
}

#[tokio::test]
async fn dead_letter_routing_key_overrides_and_drops_cc() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "target", FieldTable::default()).await;
    declare(
        &ch,
        "src",
        args(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("target")),
            ("x-message-ttl", int(0)),
        ]),
    )
    .await;
    let cc = args(&[("CC", AMQPValue::FieldArray(vec![s("nowhere")].into()))]);
    publish(&ch, "", "src", b"z", BasicProperties::default().with_headers(cc)).await;
    let dead = get(&ch, "target", 5).await;
    assert_eq!(dead.delivery.routing_key.as_str(), "target");
    assert!(
        header(&dead.delivery.properties, "CC").is_none(),
        "CC removed with a dead-letter routing key"
    );
    assert_death(
        &deaths(&dead.delivery.properties)[0],
        1,
        "expired",
        "src",
        "",
        &["src", "nowhere"],
    );
    b.running.shutdown().await;
}

#[tokio::test]
async fn chained_dead_lettering_adds_entries_and_counts_repeats() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    // work --reject--> wait (TTL 30 ms) --expired--> work --reject--> final
    declare(&ch, "final", FieldTable::default()).await;
    declare(
        &ch,
        "wait",
        args(&[
            ("x-message-ttl", int(30)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("work")),
        ]),
    )
    .await;
    declare(
        &ch,
        "work",
        args(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("wait")),
        ]),
    )
    .await;
    publish(&ch, "", "work", b"job", BasicProperties::default()).await;
    // First failure.
    let m = get_acked(&ch, "work").await;
    m.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    // Back from the wait queue after its TTL.
    let m = get_acked(&ch, "work").await;
    let d = deaths(&m.delivery.properties);
    assert_eq!(d.len(), 2, "{d:?}");
    assert_death(&d[0], 1, "expired", "wait", "", &["wait"]);
    assert_death(&d[1], 1, "rejected", "work", "", &["work"]);
    m.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let m = get_acked(&ch, "work").await;
    let d = deaths(&m.delivery.properties);
    assert_eq!(d.len(), 2);
    assert_death(&d[0], 2, "expired", "wait", "", &["wait"]);
    assert_death(&d[1], 2, "rejected", "work", "", &["work"]);
    assert_eq!(
        text(header(&m.delivery.properties, "x-first-death-queue")),
        "work"
    );
    assert_eq!(text(header(&m.delivery.properties, "x-last-death-queue")), "wait");
    m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    b.running.shutdown().await;
}

async fn get_acked(ch: &Channel, queue: &str) -> lapin::message::BasicGetMessage {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
        {
            return m;
        }
        assert!(Instant::now() < deadline, "no message in {queue}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn expiry_cycle_without_rejection_is_dropped() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    // a (TTL) -> b (TTL) -> a : a cycle of expiries only; RabbitMQ drops the message.
    declare(
        &ch,
        "cyc.a",
        args(&[
            ("x-message-ttl", int(10)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("cyc.b")),
        ]),
    )
    .await;
    declare(
        &ch,
        "cyc.b",
        args(&[
            ("x-message-ttl", int(10)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("cyc.a")),
        ]),
    )
    .await;
    publish(&ch, "", "cyc.a", b"loop", BasicProperties::default()).await;
    let broker = b.running.broker.clone();
    let expired = || broker.metrics.dead_lettered[1].load(std::sync::atomic::Ordering::Relaxed);
    common::wait_until(5, "two expiries", || expired() >= 2).await;
    // Once dropped, both queues stay empty.
    let vhost = broker.vhost("/").unwrap();
    common::wait_until(5, "both queues empty", || {
        ["cyc.a", "cyc.b"]
            .iter()
            .all(|q| vhost.queue(q).unwrap().counts().ready == 0)
    })
    .await;
    assert!(expired() <= 3, "the cycle was broken, not looping: {}", expired());
    b.running.shutdown().await;
}

#[tokio::test]
async fn missing_dead_letter_exchange_is_counted_not_silent() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(
        &ch,
        "orphan",
        args(&[
            ("x-dead-letter-exchange", s("does-not-exist")),
            ("x-message-ttl", int(0)),
        ]),
    )
    .await;
    publish(&ch, "", "orphan", b"lost?", BasicProperties::default()).await;
    let broker = b.running.broker.clone();
    common::wait_until(5, "dead_letter_dropped counted", || {
        broker
            .metrics
            .dead_letter_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    })
    .await;
    b.running.shutdown().await;
}

#[tokio::test]
async fn exponential_retry_delays_double() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(
        &ch,
        "exp",
        args(&[
            ("x-delayed-retry-type", s("failed")),
            ("x-delayed-retry-min", int(40)),
            ("x-delayed-retry-max", int(10_000)),
            ("x-delayed-retry-multiplier", AMQPValue::Double(2.0)),
        ]),
    )
    .await;
    publish(&ch, "", "exp", b"flaky", BasicProperties::default()).await;
    let mut consumer = consume(&ch, "exp").await;
    let mut at = Vec::new();
    for _ in 0..4 {
        let d = common::within(10, "delivery", consumer.next())
            .await
            .unwrap()
            .unwrap();
        at.push(Instant::now());
        d.reject(BasicRejectOptions { requeue: true }).await.unwrap();
    }
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, g) in gaps.iter().enumerate() {
        let expected = Duration::from_millis(40 << i); // 40, 80, 160 ms
        assert!(
            *g + Duration::from_millis(15) >= expected,
            "gap {i} {g:?} < {expected:?}"
        );
    }
    b.running.shutdown().await;
}

#[tokio::test]
async fn unused_queue_expires_with_x_expires() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "ephemeral", args(&[("x-expires", int(100))])).await;
    declare(&ch, "kept", args(&[("x-expires", int(100))])).await;
    let _consumer = consume(&ch, "kept").await;
    let vhost = b.running.broker.vhost("/").unwrap();
    common::wait_until(5, "ephemeral queue deleted", || {
        vhost.queue("ephemeral").is_none()
    })
    .await;
    assert!(vhost.queue("kept").is_some(), "a queue with a consumer is in use");
    b.running.shutdown().await;
}
