//! End-to-end protocol tests through lapin: every AMQP method Warren implements behaves as
//! RabbitMQ's does (exchanges, queues, bindings, basic.*, confirms, transactions).

mod common;

use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};

async fn exchange(ch: &Channel, name: &str, kind: ExchangeKind, args: FieldTable) {
    ch.exchange_declare(name.into(), kind, ExchangeDeclareOptions::default(), args)
        .await
        .unwrap_or_else(|e| panic!("declare exchange {name}: {e}"));
}

async fn bind(ch: &Channel, q: &str, x: &str, key: &str, args: FieldTable) {
    ch.queue_bind(q.into(), x.into(), key.into(), QueueBindOptions::default(), args)
        .await
        .unwrap_or_else(|e| panic!("bind {q} to {x}: {e}"));
}

/// Publishes with confirms on and waits for all of them, so routing is finished.
async fn publish_confirmed(ch: &Channel, x: &str, key: &str, body: &[u8], props: BasicProperties) {
    let c = ch
        .basic_publish(x.into(), key.into(), BasicPublishOptions::default(), body, props)
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(c.is_ack(), "{c:?}");
}

async fn get(ch: &Channel, q: &str, no_ack: bool) -> Option<lapin::message::BasicGetMessage> {
    within(5, "basic.get", ch.basic_get(q.into(), BasicGetOptions { no_ack }))
        .await
        .expect("basic.get")
}

async fn body_of_get(ch: &Channel, q: &str) -> Option<String> {
    get(ch, q, true)
        .await
        .map(|m| String::from_utf8(m.delivery.data.clone()).unwrap())
}

fn header<'a>(props: &'a BasicProperties, key: &str) -> Option<&'a AMQPValue> {
    props.headers().as_ref()?.inner().get(key)
}

fn delivery_count(props: &BasicProperties) -> Option<i64> {
    match header(props, "x-delivery-count")? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(*n as i64),
        other => panic!("x-delivery-count has type {other:?}"),
    }
}

#[tokio::test]
async fn direct_fanout_and_exchange_delete() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for q in ["d1", "d2"] {
        declare(&ch, q).await;
    }
    exchange(&ch, "xd", ExchangeKind::Direct, FieldTable::default()).await;
    exchange(&ch, "xf", ExchangeKind::Fanout, FieldTable::default()).await;
    bind(&ch, "d1", "xd", "a", FieldTable::default()).await;
    bind(&ch, "d2", "xd", "b", FieldTable::default()).await;
    bind(&ch, "d1", "xf", "ignored", FieldTable::default()).await;
    bind(&ch, "d2", "xf", "", FieldTable::default()).await;
    // Redeclaring with the same properties is fine.
    exchange(&ch, "xd", ExchangeKind::Direct, FieldTable::default()).await;

    publish_confirmed(&ch, "xd", "a", b"to-a", BasicProperties::default()).await;
    publish_confirmed(&ch, "xd", "b", b"to-b", BasicProperties::default()).await;
    publish_confirmed(&ch, "xd", "c", b"nowhere", BasicProperties::default()).await;
    publish_confirmed(&ch, "xf", "zzz", b"fan", BasicProperties::default()).await;
    assert_eq!(counts(&b, "d1").0, 2);
    assert_eq!(counts(&b, "d2").0, 2);
    let got = get(&ch, "d1", true).await.unwrap();
    assert_eq!(got.delivery.data, b"to-a");
    assert_eq!(got.delivery.exchange.as_str(), "xd");
    assert_eq!(got.delivery.routing_key.as_str(), "a");
    assert_eq!(got.message_count, 1);
    assert_eq!(body_of_get(&ch, "d1").await.as_deref(), Some("fan"));
    assert_eq!(body_of_get(&ch, "d2").await.as_deref(), Some("to-b"));
    assert_eq!(body_of_get(&ch, "d2").await.as_deref(), Some("fan"));

    // Unbind: no longer routed.
    ch.queue_unbind("d1".into(), "xd".into(), "a".into(), FieldTable::default())
        .await
        .unwrap();
    publish_confirmed(&ch, "xd", "a", b"after-unbind", BasicProperties::default()).await;
    assert_eq!(counts(&b, "d1").0, 0);

    // if-unused refuses while bound (406 closes the channel), plain delete works.
    let ch2 = conn.create_channel().await.unwrap();
    assert_code(
        ch2.exchange_delete(
            "xf".into(),
            ExchangeDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await,
        406,
        "in use",
    );
    ch.exchange_delete("xf".into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    let ch3 = conn.create_channel().await.unwrap();
    assert_code(
        ch3.exchange_declare(
            "xf".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        404,
        "no exchange 'xf' in vhost '/'",
    );
    // Deleting an exchange that does not exist succeeds, as in RabbitMQ.
    ch.exchange_delete("never-was".into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn topic_wildcards() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    exchange(&ch, "xt", ExchangeKind::Topic, FieldTable::default()).await;
    declare(&ch, "t1").await;
    declare(&ch, "t2").await;
    declare(&ch, "t3").await;
    bind(&ch, "t1", "xt", "*.orange.*", FieldTable::default()).await;
    bind(&ch, "t2", "xt", "*.*.rabbit", FieldTable::default()).await;
    bind(&ch, "t2", "xt", "lazy.#", FieldTable::default()).await;
    bind(&ch, "t3", "xt", "#", FieldTable::default()).await;
    let keys = [
        "quick.orange.rabbit",      // t1 t2
        "lazy.orange.elephant",     // t1 t2
        "quick.orange.fox",         // t1
        "lazy.brown.fox",           // t2
        "lazy.pink.rabbit",         // t2 (once, matched by two bindings)
        "quick.brown.fox",          // none
        "lazy",                     // t2 (# matches zero words)
        "quick.orange.male.rabbit", // none
        "orange",                   // none
        "",                         // t3 only
    ];
    for k in keys {
        publish_confirmed(&ch, "xt", k, k.as_bytes(), BasicProperties::default()).await;
    }
    assert_eq!(counts(&b, "t1").0, 3);
    assert_eq!(counts(&b, "t2").0, 5);
    assert_eq!(counts(&b, "t3").0, keys.len() as u32);
    let mut t2 = Vec::new();
    while let Some(m) = body_of_get(&ch, "t2").await {
        t2.push(m);
    }
    assert_eq!(
        t2,
        [
            "quick.orange.rabbit",
            "lazy.orange.elephant",
            "lazy.brown.fox",
            "lazy.pink.rabbit",
            "lazy"
        ]
    );
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn headers_exchange_x_match_all_and_any() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    exchange(&ch, "xh", ExchangeKind::Headers, FieldTable::default()).await;
    declare(&ch, "h-all").await;
    declare(&ch, "h-any").await;
    bind(
        &ch,
        "h-all",
        "xh",
        "",
        table(vec![
            ("x-match", lstr("all")),
            ("format", lstr("pdf")),
            ("type", lstr("report")),
        ]),
    )
    .await;
    bind(
        &ch,
        "h-any",
        "xh",
        "",
        table(vec![
            ("x-match", lstr("any")),
            ("format", lstr("pdf")),
            ("type", lstr("log")),
        ]),
    )
    .await;
    let msg = |pairs: Vec<(&str, AMQPValue)>| BasicProperties::default().with_headers(table(pairs));
    publish_confirmed(
        &ch,
        "xh",
        "",
        b"pdf-report",
        msg(vec![("format", lstr("pdf")), ("type", lstr("report"))]),
    )
    .await; // all + any
    publish_confirmed(&ch, "xh", "", b"pdf", msg(vec![("format", lstr("pdf"))])).await; // any
    publish_confirmed(
        &ch,
        "xh",
        "",
        b"zip-log",
        msg(vec![("format", lstr("zip")), ("type", lstr("log"))]),
    )
    .await; // any
    publish_confirmed(&ch, "xh", "", b"nothing", msg(vec![("format", lstr("zip"))])).await;
    publish_confirmed(&ch, "xh", "", b"no-headers", BasicProperties::default()).await;
    assert_eq!(body_of_get(&ch, "h-all").await.as_deref(), Some("pdf-report"));
    assert_eq!(body_of_get(&ch, "h-all").await, None);
    let mut any = Vec::new();
    while let Some(m) = body_of_get(&ch, "h-any").await {
        any.push(m);
    }
    assert_eq!(any, ["pdf-report", "pdf", "zip-log"]);
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn exchange_to_exchange_alternate_and_internal() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    // e2e: src (direct) --k--> dst (fanout) --> q
    exchange(&ch, "src", ExchangeKind::Direct, FieldTable::default()).await;
    ch.exchange_declare(
        "dst".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            internal: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare(&ch, "e2e").await;
    bind(&ch, "e2e", "dst", "", FieldTable::default()).await;
    ch.exchange_bind(
        "dst".into(),
        "src".into(),
        "k".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish_confirmed(&ch, "src", "k", b"via-e2e", BasicProperties::default()).await;
    publish_confirmed(&ch, "src", "other", b"not-routed", BasicProperties::default()).await;
    assert_eq!(body_of_get(&ch, "e2e").await.as_deref(), Some("via-e2e"));
    assert_eq!(body_of_get(&ch, "e2e").await, None);
    ch.exchange_unbind(
        "dst".into(),
        "src".into(),
        "k".into(),
        ExchangeUnbindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish_confirmed(&ch, "src", "k", b"after-unbind", BasicProperties::default()).await;
    assert_eq!(counts(&b, "e2e").0, 0);

    // alternate-exchange gets what the main exchange cannot route.
    exchange(&ch, "ae", ExchangeKind::Fanout, FieldTable::default()).await;
    exchange(
        &ch,
        "main",
        ExchangeKind::Direct,
        table(vec![("alternate-exchange", lstr("ae"))]),
    )
    .await;
    declare(&ch, "unrouted").await;
    declare(&ch, "routed").await;
    bind(&ch, "unrouted", "ae", "", FieldTable::default()).await;
    bind(&ch, "routed", "main", "yes", FieldTable::default()).await;
    publish_confirmed(&ch, "main", "yes", b"r", BasicProperties::default()).await;
    publish_confirmed(&ch, "main", "no", b"u", BasicProperties::default()).await;
    assert_eq!(body_of_get(&ch, "routed").await.as_deref(), Some("r"));
    assert_eq!(body_of_get(&ch, "unrouted").await.as_deref(), Some("u"));
    assert_eq!(body_of_get(&ch, "routed").await, None);

    // Publishing directly to an internal exchange is refused with 403.
    let pch = conn.create_channel().await.unwrap();
    pch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let mut w = watch(&pch).await;
    publish(&pch, "dst", "", b"direct-to-internal").await;
    let (code, text) = closed_with(&mut w).await;
    assert_eq!(code, 403);
    assert!(
        text.contains("cannot publish to internal exchange 'dst' in vhost '/'"),
        "{text}"
    );
    assert_eq!(counts(&b, "e2e").0, 0);
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn queue_declare_passive_counts_purge_delete() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    // Server-named queue.
    let q = ch
        .queue_declare("".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    assert!(q.name().as_str().starts_with("amq.gen-"), "{}", q.name());
    assert!(q.name().as_str().len() > "amq.gen-".len() + 10);
    assert!(counts(&b, q.name().as_str()).0 == 0);

    let fresh = declare(&ch, "counted").await;
    assert_eq!((fresh.message_count(), fresh.consumer_count()), (0, 0));
    for i in 0..3 {
        publish_confirmed(
            &ch,
            "",
            "counted",
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    let passive = ch
        .queue_declare(
            "counted".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!((passive.message_count(), passive.consumer_count()), (3, 0));
    // A consumer with prefetch 1 holds one unacked message: declare-ok counts ready only.
    let cch = conn.create_channel().await.unwrap();
    cch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut c = consume(&cch, "counted", "holder").await;
    let held = next(&mut c).await;
    let again = declare(&ch, "counted").await;
    assert_eq!((again.message_count(), again.consumer_count()), (2, 1));

    // delete if-unused with a consumer: 406.
    let ech = conn.create_channel().await.unwrap();
    assert_code(
        ech.queue_delete(
            "counted".into(),
            QueueDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await,
        406,
        "in use",
    );
    // delete if-empty with ready messages: 406.
    let ech = conn.create_channel().await.unwrap();
    assert_code(
        ech.queue_delete(
            "counted".into(),
            QueueDeleteOptions {
                if_empty: true,
                ..Default::default()
            },
        )
        .await,
        406,
        "not empty",
    );
    // purge returns the count of ready messages and leaves the unacked one.
    assert_eq!(
        ch.queue_purge("counted".into(), QueuePurgeOptions::default())
            .await
            .unwrap(),
        2
    );
    assert_eq!(counts(&b, "counted"), (0, 1, 1));
    held.ack(BasicAckOptions::default()).await.unwrap();
    cch.basic_cancel("holder".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    // Now if-unused and if-empty both pass; delete-ok reports the message count.
    for i in 0..4 {
        publish_confirmed(
            &ch,
            "",
            "counted",
            format!("n{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    let n = ch
        .queue_delete(
            "counted".into(),
            QueueDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(n, 4);
    assert!(queue(&b, "counted").is_none());
    // Deleting a missing queue succeeds with 0.
    assert_eq!(
        ch.queue_delete("counted".into(), QueueDeleteOptions::default())
            .await
            .unwrap(),
        0
    );
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn prefetch_one_round_robin_two_consumers() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "rr").await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for i in 0..10 {
        publish_confirmed(
            &ch,
            "",
            "rr",
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    let cch = conn.create_channel().await.unwrap();
    cch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut a = consume(&cch, "rr", "a").await;
    let mut bb = consume(&cch, "rr", "b").await;
    let mut unacked = [0u32; 2];
    let mut got = [Vec::new(), Vec::new()];
    for round in 0..5 {
        let da = next(&mut a).await;
        unacked[0] += 1;
        let db = next(&mut bb).await;
        unacked[1] += 1;
        assert!(unacked.iter().all(|n| *n <= 1), "window exceeded: {unacked:?}");
        // The broker holds exactly one unacked message per consumer; the rest wait.
        assert_eq!(counts(&b, "rr"), (10 - 2 * (round + 1), 2, 2));
        assert!(!da.redelivered && !db.redelivered);
        got[0].push(String::from_utf8(da.data.clone()).unwrap());
        got[1].push(String::from_utf8(db.data.clone()).unwrap());
        da.ack(BasicAckOptions::default()).await.unwrap();
        unacked[0] -= 1;
        db.ack(BasicAckOptions::default()).await.unwrap();
        unacked[1] -= 1;
    }
    assert_eq!(got[0], ["m0", "m2", "m4", "m6", "m8"]);
    assert_eq!(got[1], ["m1", "m3", "m5", "m7", "m9"]);
    wait_until(5, "all acked", || counts(&b, "rr") == (0, 0, 2)).await;
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn basic_get_ok_and_empty() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "g").await;
    assert!(get(&ch, "g", false).await.is_none());
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for i in 0..3 {
        publish_confirmed(
            &ch,
            "",
            "g",
            format!("m{i}").as_bytes(),
            BasicProperties::default().with_message_id(format!("id{i}").into()),
        )
        .await;
    }
    let m0 = get(&ch, "g", false).await.unwrap();
    assert_eq!((m0.message_count, m0.delivery.data.as_slice()), (2, &b"m0"[..]));
    assert_eq!(
        m0.delivery.properties.message_id().as_ref().map(|s| s.as_str()),
        Some("id0")
    );
    assert!(!m0.delivery.redelivered);
    assert_eq!(counts(&b, "g"), (2, 1, 0));
    m0.delivery.ack(BasicAckOptions::default()).await.unwrap();
    let m1 = get(&ch, "g", true).await.unwrap();
    assert_eq!(m1.message_count, 1);
    let m2 = get(&ch, "g", true).await.unwrap();
    assert_eq!((m2.message_count, m2.delivery.data.as_slice()), (0, &b"m2"[..]));
    assert!(get(&ch, "g", true).await.is_none());
    wait_until(5, "ack applied", || counts(&b, "g") == (0, 0, 0)).await;
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn ack_nack_reject_multiple_and_requeue_positions() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "acks").await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for i in 0..6 {
        publish_confirmed(
            &ch,
            "",
            "acks",
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    // Take m0..m3 with basic.get (tags 1..4), leaving m4 m5 ready.
    let mut tags = Vec::new();
    for i in 0..4 {
        let m = get(&ch, "acks", false).await.unwrap();
        assert_eq!(m.delivery.data, format!("m{i}").into_bytes());
        assert!(header(&m.delivery.properties, "x-delivery-count").is_none());
        tags.push(m.delivery.delivery_tag);
    }
    assert_eq!(counts(&b, "acks"), (2, 4, 0));
    // reject m1 with requeue: it goes back before m4 (its original position).
    ch.basic_reject(tags[1], BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    let r = get(&ch, "acks", false).await.unwrap();
    assert_eq!(r.delivery.data, b"m1");
    assert!(r.delivery.redelivered);
    assert_eq!(delivery_count(&r.delivery.properties), Some(1));
    // nack m0 and m2 (multiple up to m2's tag) with requeue: back at the front, in order.
    // m1 was re-taken under a new tag, so multiple covers tags 1 and 3 (m0, m2).
    ch.basic_nack(
        tags[2],
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    )
    .await
    .unwrap();
    wait_until(5, "nack applied", || counts(&b, "acks") == (4, 2, 0)).await;
    let mut order = Vec::new();
    for _ in 0..4 {
        let m = get(&ch, "acks", false).await.unwrap();
        let body = String::from_utf8(m.delivery.data.clone()).unwrap();
        if body == "m0" || body == "m2" {
            assert!(m.delivery.redelivered, "{body}");
            // A nack is a return, not a failed delivery; the counter header is present.
            assert!(delivery_count(&m.delivery.properties).is_some(), "{body}");
            assert!(header(&m.delivery.properties, "x-acquired-count").is_some());
        } else {
            assert!(!m.delivery.redelivered, "{body}");
        }
        order.push((body, m.delivery.delivery_tag));
    }
    let bodies: Vec<&str> = order.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(bodies, ["m0", "m2", "m4", "m5"]);
    // reject without requeue drops m0; nack without requeue (multiple) drops the rest up to m4.
    ch.basic_reject(order[0].1, BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    ch.basic_nack(
        order[2].1,
        BasicNackOptions {
            multiple: true,
            requeue: false,
        },
    )
    .await
    .unwrap();
    // That nack also covered m3 and m1 (older tags); only m5 is outstanding: ack it with
    // multiple=true.
    ch.basic_ack(order[3].1, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    wait_until(5, "all settled", || counts(&b, "acks") == (0, 0, 0)).await;
    assert!(get(&ch, "acks", true).await.is_none());
    assert!(ch.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn basic_recover_and_cancel() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "rec").await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for i in 0..3 {
        publish_confirmed(
            &ch,
            "",
            "rec",
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    let cch = conn.create_channel().await.unwrap();
    let mut c = consume(&cch, "rec", "rc").await;
    for i in 0..3 {
        let d = next(&mut c).await;
        assert_eq!(d.data, format!("m{i}").into_bytes());
        assert!(!d.redelivered);
    }
    assert_eq!(counts(&b, "rec"), (0, 3, 1));
    cch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .unwrap();
    for i in 0..3 {
        let d = next(&mut c).await;
        assert_eq!(d.data, format!("m{i}").into_bytes());
        assert!(d.redelivered);
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    wait_until(5, "acked", || counts(&b, "rec") == (0, 0, 1)).await;
    // basic.cancel: the stream ends, later messages stay in the queue.
    cch.basic_cancel("rc".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    assert!(within(5, "consumer end", c.next()).await.is_none());
    publish_confirmed(&ch, "", "rec", b"later", BasicProperties::default()).await;
    assert_eq!(counts(&b, "rec"), (1, 0, 0));
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn server_cancels_consumer_when_queue_deleted() {
    let b = start().await;
    let c1 = b.connect().await;
    let ch1 = c1.create_channel().await.unwrap();
    declare(&ch1, "doomed").await;
    let mut consumer = consume(&ch1, "doomed", "victim").await;
    let c2 = b.connect().await;
    let ch2 = c2.create_channel().await.unwrap();
    ch2.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    publish_confirmed(&ch2, "", "doomed", b"x", BasicProperties::default()).await;
    let d = next(&mut consumer).await;
    assert_eq!(d.data, b"x");
    ch2.queue_delete("doomed".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    // basic.cancel from the server ends the stream; the channel stays open.
    loop {
        match within(5, "server basic.cancel", consumer.next()).await {
            None => break,
            Some(Ok(d)) => panic!("unexpected delivery {:?}", d.data),
            Some(Err(e)) => panic!("consumer errored instead of being cancelled: {e}"),
        }
    }
    assert!(ch1.status().connected());
    declare(&ch1, "still-works").await;
    c1.close(200, "bye".into()).await.unwrap();
    c2.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn exclusive_queue_locked_and_deleted_with_owner() {
    let b = start().await;
    let owner = b.connect().await;
    let och = owner.create_channel().await.unwrap();
    och.queue_declare(
        "excl".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let other = b.connect().await;
    for op in 0..4 {
        let ch = other.create_channel().await.unwrap();
        let r = match op {
            0 => ch
                .queue_declare(
                    "excl".into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map(|_| ()),
            1 => ch
                .queue_declare(
                    "excl".into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map(|_| ()),
            2 => ch
                .basic_consume(
                    "excl".into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map(|_| ()),
            _ => ch
                .queue_purge("excl".into(), QueuePurgeOptions::default())
                .await
                .map(|_| ()),
        };
        assert_code(r, 405, "cannot obtain exclusive access to locked queue 'excl'");
    }
    // The owner may use it.
    publish(&och, "", "excl", b"mine").await;
    wait_until(5, "message in excl", || counts(&b, "excl").0 == 1).await;
    owner.close(200, "bye".into()).await.unwrap();
    wait_until(5, "exclusive queue deleted with its connection", || {
        queue(&b, "excl").is_none()
    })
    .await;
    // Now anyone may declare it.
    let ch = other.create_channel().await.unwrap();
    let q = declare(&ch, "excl").await;
    assert_eq!(q.message_count(), 0);
    other.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn auto_delete_queue_goes_after_last_consumer() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "ad".into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let _c1 = consume(&ch, "ad", "c1").await;
    let _c2 = consume(&ch, "ad", "c2").await;
    ch.basic_cancel("c1".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    assert!(queue(&b, "ad").is_some(), "one consumer left");
    ch.basic_cancel("c2".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    wait_until(5, "auto-delete queue deleted", || queue(&b, "ad").is_none()).await;
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn exclusive_consumer_refused_403() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "ec").await;
    let _first = ch
        .basic_consume(
            "ec".into(),
            "only".into(),
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    assert_code(
        ch2.basic_consume(
            "ec".into(),
            "second".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await,
        403,
        "queue 'ec' in vhost '/' in exclusive use",
    );
    // And the other way round: an exclusive consumer when the queue has one.
    declare(&ch, "ec2").await;
    let _plain = consume(&ch, "ec2", "plain").await;
    let ch3 = conn.create_channel().await.unwrap();
    assert_code(
        ch3.basic_consume(
            "ec2".into(),
            "excl".into(),
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        403,
        "in exclusive use",
    );
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn mandatory_unroutable_is_returned_and_confirms() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    declare(&ch, "exists").await;
    let mandatory = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let c = ch
        .basic_publish(
            "".into(),
            "nowhere".into(),
            mandatory,
            b"lost",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    match c {
        Confirmation::Ack(Some(ret)) => {
            assert_eq!(ret.reply_code, 312);
            assert_eq!(ret.reply_text.as_str(), "NO_ROUTE");
            assert_eq!(ret.delivery.data, b"lost");
            assert_eq!(ret.delivery.routing_key.as_str(), "nowhere");
        }
        other => panic!("expected ack with returned message, got {other:?}"),
    }
    // Routable mandatory: plain ack. Non-mandatory unroutable: plain ack, nothing returned.
    let c = ch
        .basic_publish(
            "".into(),
            "exists".into(),
            mandatory,
            b"ok",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(c, Confirmation::Ack(None));
    let c = ch
        .basic_publish(
            "".into(),
            "nowhere".into(),
            BasicPublishOptions::default(),
            b"dropped",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(c, Confirmation::Ack(None));
    // Pipelined: the returned message shows up in wait_for_confirms().
    exchange(&ch, "empty-x", ExchangeKind::Direct, FieldTable::default()).await;
    for i in 0..5 {
        let key = if i == 3 { "nobody" } else { "exists" };
        drop(
            ch.basic_publish(
                "".into(),
                key.into(),
                mandatory,
                format!("p{i}").as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap(),
        );
    }
    drop(
        ch.basic_publish(
            "empty-x".into(),
            "k".into(),
            mandatory,
            b"px",
            BasicProperties::default(),
        )
        .await
        .unwrap(),
    );
    let returned = within(5, "confirms", ch.wait_for_confirms()).await.unwrap();
    let mut bodies: Vec<Vec<u8>> = returned.iter().map(|r| r.delivery.data.clone()).collect();
    bodies.sort();
    assert_eq!(bodies, [b"p3".to_vec(), b"px".to_vec()]);
    assert!(returned.iter().all(|r| r.reply_code == 312));
    assert_eq!(counts(&b, "exists").0, 5);
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn publisher_confirms_ack_every_message() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "pc").await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    // confirm.select twice is fine.
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..500 {
        pending.push(
            ch.basic_publish(
                "".into(),
                "pc".into(),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap(),
        );
    }
    for p in pending {
        assert!(within(5, "confirm", p).await.unwrap().is_ack());
    }
    assert_eq!(counts(&b, "pc").0, 500);
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn transactions_commit_and_rollback() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "txq").await;
    ch.tx_select().await.unwrap();
    for i in 0..3 {
        publish(&ch, "", "txq", format!("t{i}").as_bytes()).await;
    }
    // A synchronous round trip on the same channel: the publishes have been processed.
    ch.basic_qos(0, BasicQosOptions::default()).await.unwrap();
    assert_eq!(counts(&b, "txq").0, 0, "uncommitted publishes are invisible");
    ch.tx_commit().await.unwrap();
    assert_eq!(counts(&b, "txq").0, 3);
    publish(&ch, "", "txq", b"rolled-back").await;
    publish(&ch, "", "txq", b"rolled-back-too").await;
    ch.tx_rollback().await.unwrap();
    assert_eq!(counts(&b, "txq").0, 3);
    ch.tx_commit().await.unwrap();
    assert_eq!(counts(&b, "txq").0, 3, "rolled-back publishes never appear");

    // Acks are transactional too.
    let m = get(&ch, "txq", false).await.unwrap();
    assert_eq!(m.delivery.data, b"t0");
    ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    ch.tx_rollback().await.unwrap();
    assert_eq!(counts(&b, "txq"), (2, 1, 0), "rolled-back ack not applied");
    ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    ch.tx_commit().await.unwrap();
    assert_eq!(counts(&b, "txq"), (2, 0, 0));

    // confirm.select on a transactional channel: 406.
    assert_code(
        ch.confirm_select(ConfirmSelectOptions::default()).await,
        406,
        "cannot switch from tx to confirm mode",
    );
    // tx.select on a confirm channel: 406; tx.commit without tx.select: 406.
    let ch2 = conn.create_channel().await.unwrap();
    ch2.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    assert_code(
        ch2.tx_select().await,
        406,
        "cannot switch from confirm to tx mode",
    );
    let ch3 = conn.create_channel().await.unwrap();
    assert_code(ch3.tx_commit().await, 406, "channel is not transactional");
    assert!(conn.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn channel_close_requeues_unacked_in_order() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "cc").await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for i in 0..6 {
        publish_confirmed(
            &ch,
            "",
            "cc",
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    let c1 = conn.create_channel().await.unwrap();
    c1.basic_qos(4, BasicQosOptions::default()).await.unwrap();
    let mut cons = consume(&c1, "cc", "first").await;
    let mut tags = Vec::new();
    for i in 0..4 {
        let d = next(&mut cons).await;
        assert_eq!(d.data, format!("m{i}").into_bytes());
        tags.push(d.delivery_tag);
    }
    // Ack m1 so that the requeued set has a gap: m0 m2 m3 must go back around it.
    c1.basic_ack(tags[1], BasicAckOptions::default()).await.unwrap();
    wait_until(5, "window refilled", || counts(&b, "cc") == (1, 4, 1)).await;
    let d = next(&mut cons).await;
    assert_eq!(d.data, b"m4");
    c1.close(200, "bye".into()).await.unwrap();
    assert_eq!(counts(&b, "cc"), (5, 0, 0));
    let c2 = conn.create_channel().await.unwrap();
    let mut cons2 = consume(&c2, "cc", "second").await;
    for expect in ["m0", "m2", "m3", "m4", "m5"] {
        let d = next(&mut cons2).await;
        assert_eq!(String::from_utf8(d.data.clone()).unwrap(), expect);
        let redelivered = expect != "m5";
        assert_eq!(d.redelivered, redelivered, "{expect}");
        if redelivered {
            assert_eq!(delivery_count(&d.properties), Some(1), "{expect}");
        } else {
            assert!(header(&d.properties, "x-delivery-count").is_none());
        }
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn message_and_queue_ttl() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    // Per-message TTL: the expiring message at the head goes, the other stays.
    declare(&ch, "mttl").await;
    publish_confirmed(
        &ch,
        "",
        "mttl",
        b"short",
        BasicProperties::default().with_expiration("100".into()),
    )
    .await;
    publish_confirmed(&ch, "", "mttl", b"forever", BasicProperties::default()).await;
    publish_confirmed(
        &ch,
        "",
        "mttl",
        b"long",
        BasicProperties::default().with_expiration("600000".into()),
    )
    .await;
    wait_until(5, "per-message TTL expiry", || counts(&b, "mttl").0 == 2).await;
    let m = get(&ch, "mttl", true).await.unwrap();
    assert_eq!(m.delivery.data, b"forever");
    assert_eq!(
        m.delivery.properties.expiration().as_ref().map(|s| s.as_str()),
        None
    );
    let m = get(&ch, "mttl", true).await.unwrap();
    assert_eq!(m.delivery.data, b"long");
    assert_eq!(
        m.delivery.properties.expiration().as_ref().map(|s| s.as_str()),
        Some("600000")
    );

    // Queue TTL (x-message-ttl).
    ch.queue_declare(
        "qttl".into(),
        QueueDeclareOptions::default(),
        table(vec![("x-message-ttl", AMQPValue::LongInt(150))]),
    )
    .await
    .unwrap();
    for i in 0..3 {
        publish_confirmed(
            &ch,
            "",
            "qttl",
            format!("e{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    assert!(counts(&b, "qttl").0 <= 3);
    wait_until(5, "queue TTL expiry", || counts(&b, "qttl").0 == 0).await;
    assert!(get(&ch, "qttl", true).await.is_none());
    // A consumer that is waiting still gets messages with TTL 0.
    ch.queue_declare(
        "zttl".into(),
        QueueDeclareOptions::default(),
        table(vec![("x-message-ttl", AMQPValue::LongInt(0))]),
    )
    .await
    .unwrap();
    let cch = conn.create_channel().await.unwrap();
    let mut c = consume(&cch, "zttl", "z").await;
    publish_confirmed(&ch, "", "zttl", b"instant", BasicProperties::default()).await;
    assert_eq!(next(&mut c).await.data, b"instant");
    conn.close(200, "bye".into()).await.unwrap();
}
