//! Protocol details clients depend on (issue 15), each checked against RabbitMQ 3.10.8 side by
//! side: idempotent unbind, the default exchange refusing every declare, the close handshake in
//! both directions (no reset while the client is still writing), numeric arguments of every AMQP
//! number type, the client's identity in the management API and `warrenctl`, and the
//! channel_max error text.

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::raw::Raw;
use common::*;
use lapin::ExchangeKind;
use lapin::options::{BasicConsumeOptions, ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, DecimalValue, FieldTable};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_codec::methods::*;
use warren_codec::{Frame, Method, ShortStr, decode_frame, encode_basic_header, encode_body, encode_method};
use warren_server::http::{client, ctl};

const DEFAULT_EXCHANGE_REFUSED: &str = "ACCESS_REFUSED - operation not permitted on the default exchange";

// ---------------------------------------------------------------- unbind, default exchange

#[tokio::test]
async fn unbind_of_a_missing_queue_or_exchange_is_unbind_ok() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "present").await;
    let none = FieldTable::default;
    // aio-pika's RPC close() unbinds its (auto-delete, maybe gone) queue; cleanup code unbinds
    // from exchanges already deleted. RabbitMQ answers unbind-ok to all of these.
    ch.queue_unbind("gone".into(), "amq.direct".into(), "k".into(), none())
        .await
        .expect("unbind of a missing queue");
    ch.queue_unbind("present".into(), "gone-x".into(), "k".into(), none())
        .await
        .expect("unbind from a missing exchange");
    ch.queue_unbind("gone".into(), "gone-x".into(), "k".into(), none())
        .await
        .expect("unbind with both missing");
    ch.exchange_unbind(
        "gone-x".into(),
        "amq.fanout".into(),
        "k".into(),
        Default::default(),
        none(),
    )
    .await
    .expect("exchange.unbind of a missing destination");
    ch.exchange_unbind(
        "amq.fanout".into(),
        "gone-x".into(),
        "k".into(),
        Default::default(),
        none(),
    )
    .await
    .expect("exchange.unbind from a missing source");
    // The channel is still open and the existing binding machinery still works.
    ch.queue_bind(
        "present".into(),
        "amq.direct".into(),
        "k".into(),
        Default::default(),
        none(),
    )
    .await
    .unwrap();
    ch.queue_unbind("present".into(), "amq.direct".into(), "k".into(), none())
        .await
        .unwrap();
    // The default exchange stays off limits, missing queue or not (RabbitMQ's order).
    let r = ch
        .queue_unbind("gone".into(), "".into(), "gone".into(), none())
        .await;
    assert_code(r, 403, DEFAULT_EXCHANGE_REFUSED);
}

#[tokio::test]
async fn declaring_the_default_exchange_is_refused_passive_or_not() {
    let b = start().await;
    let conn = b.connect().await;
    for passive in [true, false] {
        let ch = conn.create_channel().await.unwrap();
        let r = ch
            .exchange_declare(
                "".into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    passive,
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        match r {
            Ok(()) => panic!("passive={passive}: declare of \"\" answered declare-ok"),
            Err(e) => {
                assert_eq!(reply_code(&e), Some(403), "passive={passive}: {e:?}");
                assert_eq!(reply_text(&e), DEFAULT_EXCHANGE_REFUSED, "passive={passive}");
            }
        }
    }
    // Only that channel closed.
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "still-fine").await;
}

// ---------------------------------------------------------------- the close handshake

fn frame_bytes(ch: u16, m: impl Into<Method>) -> BytesMut {
    let mut out = BytesMut::new();
    encode_method(&mut out, ch, &m.into());
    out
}

/// basic.publish of `body` to queue `queue` on channel 1, `n` times.
fn publishes(queue: &str, body: &[u8], n: usize) -> BytesMut {
    let mut one = frame_bytes(
        1,
        BasicPublish {
            ticket: 0,
            exchange: ShortStr::from(""),
            routing_key: ShortStr::from(queue),
            mandatory: false,
            immediate: false,
        },
    );
    encode_basic_header(&mut one, 1, body.len() as u64, &Default::default());
    encode_body(&mut one, 1, body, 0);
    let mut out = BytesMut::with_capacity(one.len() * n);
    for _ in 0..n {
        out.extend_from_slice(&one);
    }
    out
}

fn client_close() -> ConnectionClose {
    ConnectionClose {
        reply_code: 200,
        reply_text: ShortStr::from("bye"),
        class_id: 0,
        method_id: 0,
    }
}

/// Reads frames until a method on channel 0 matching `want`; fails on EOF or a reset.
async fn read_until<R: AsyncReadExt + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    want: impl Fn(&Method) -> bool,
) -> Method {
    loop {
        while let Some(f) = decode_frame(buf, 0).expect("valid frame from the broker") {
            if let Frame::Method { channel: 0, method } = f
                && want(&method)
            {
                return method;
            }
        }
        match within(10, "a frame from the broker", rd.read_buf(buf)).await {
            Ok(0) => panic!("EOF before the expected method"),
            Ok(_) => {}
            Err(e) => panic!("read failed before the expected method: {e}"),
        }
    }
}

/// Reads (and drops) until the broker closes the socket cleanly; a reset fails the test.
/// Returns how long it took.
async fn expect_clean_eof<R: AsyncReadExt + Unpin>(rd: &mut R, secs: u64) -> Duration {
    let t0 = Instant::now();
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        buf.clear();
        match within(secs, "the broker to close the socket", rd.read_buf(&mut buf)).await {
            Ok(0) => return t0.elapsed(),
            Ok(_) => {}
            Err(e) => panic!("the broker reset the connection instead of closing it: {e}"),
        }
    }
}

/// amqplib puts connection.close on channel 0 ahead of publishes still queued for other
/// channels: the broker must answer close-ok, read and discard the rest without acting on it,
/// and wait for the client to close, so the client's writes never fail (EPIPE) and it sees a
/// clean end of stream, not a reset.
#[tokio::test]
async fn client_close_while_publishes_still_arrive_is_answered_and_drained() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "after-close").await;

    let mut r = Raw::handshake(b.running.amqp_addr, 0).await;
    r.open_channel(1).await;
    let body = [7u8; 1024];
    let mut burst = frame_bytes(0, client_close());
    burst.extend_from_slice(&publishes("after-close", &body, 2048));
    let more = publishes("after-close", &body, 2048);
    let (mut rd, mut wr) = r.stream.into_split();
    let writer = tokio::spawn(async move {
        // About 2 MiB behind the close, then 8 MiB more: far beyond the socket buffers, so
        // the broker must keep reading for these writes to complete.
        wr.write_all(&burst).await?;
        for _ in 0..4 {
            wr.write_all(&more).await?;
        }
        wr.shutdown().await?;
        Ok::<_, std::io::Error>(wr)
    });
    let mut buf = BytesMut::new();
    read_until(&mut rd, &mut buf, |m| matches!(m, Method::ConnectionCloseOk(_))).await;
    let wr = within(30, "the client's writes", writer)
        .await
        .unwrap()
        .expect("every write after connection.close succeeds (no EPIPE, no reset)");
    expect_clean_eof(&mut rd, 10).await;
    drop(wr);
    // Nothing sent after connection.close was acted on.
    assert_eq!(
        counts(&b, "after-close").0,
        0,
        "publishes after connection.close were routed"
    );
}

/// A client that never closes its socket after close-ok is dropped after RabbitMQ's closing
/// timeout: the heartbeat interval when it is shorter than 30 s.
#[tokio::test]
async fn after_close_ok_the_broker_waits_for_the_client_to_close_then_gives_up() {
    let b = start().await;
    let mut r = Raw::handshake(b.running.amqp_addr, 1).await;
    r.send_method(0, client_close()).await;
    match r.next_method().await {
        Some((0, Method::ConnectionCloseOk(_))) => {}
        other => panic!("expected close-ok, got {other:?}"),
    }
    let (mut rd, _wr) = r.stream.into_split();
    let waited = expect_clean_eof(&mut rd, 10).await;
    assert!(
        waited >= Duration::from_millis(800),
        "closed {waited:?} after close-ok: the broker must wait for the client"
    );
}

/// Server-initiated close: after connection.close the broker discards what the client still
/// sends, waits for close-ok (up to the heartbeat interval, RabbitMQ's closing timeout), and
/// closes cleanly once it comes.
#[tokio::test]
async fn after_a_server_close_frames_are_discarded_until_close_ok() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "after-error").await;

    // A hard error (504: second channel.open), then publishes before the client's close-ok.
    let mut r = Raw::handshake(b.running.amqp_addr, 0).await;
    r.open_channel(1).await;
    r.send_method(1, ChannelOpen::default()).await;
    let (mut rd, mut wr) = r.stream.into_split();
    let mut buf = BytesMut::new();
    let close = read_until(&mut rd, &mut buf, |m| matches!(m, Method::ConnectionClose(_))).await;
    let Method::ConnectionClose(close) = close else {
        unreachable!()
    };
    assert_eq!(close.reply_code, 504, "{}", close.reply_text);
    wr.write_all(&publishes("after-error", b"late", 500))
        .await
        .unwrap();
    wr.write_all(&frame_bytes(0, ConnectionCloseOk {})).await.unwrap();
    expect_clean_eof(&mut rd, 10).await;
    assert_eq!(
        counts(&b, "after-error").0,
        0,
        "publishes after connection.close were routed"
    );

    // A client that never answers is given the heartbeat interval (4 s here), not less.
    let mut r = Raw::handshake(b.running.amqp_addr, 4).await;
    r.open_channel(1).await;
    r.send_method(1, ChannelOpen::default()).await;
    let (mut rd, _wr) = r.stream.into_split();
    let mut buf = BytesMut::new();
    read_until(&mut rd, &mut buf, |m| matches!(m, Method::ConnectionClose(_))).await;
    let waited = expect_clean_eof(&mut rd, 15).await;
    assert!(
        waited >= Duration::from_millis(3500),
        "gave up waiting for close-ok after {waited:?}, before the 4 s heartbeat interval"
    );
}

// ---------------------------------------------------------------- numeric arguments

fn decimal(scale: u8, value: i32) -> AMQPValue {
    AMQPValue::DecimalValue(DecimalValue {
        scale,
        value: value as u32,
    })
}

async fn declare_args(conn: &lapin::Connection, name: &str, args: FieldTable) -> Result<(), lapin::Error> {
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), args)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn numeric_arguments_accept_every_amqp_number_type() {
    let b = start().await;
    let conn = b.connect().await;
    // Python clients send Decimal("2.0") as `D`: aio-pika users set the back-off multiplier so.
    declare_args(
        &conn,
        "retry-decimal",
        table(vec![
            ("x-delayed-retry-type", lstr("all")),
            ("x-delayed-retry-min", AMQPValue::Double(100.0)),
            ("x-delayed-retry-max", AMQPValue::Float(1000.0)),
            ("x-delayed-retry-multiplier", decimal(1, 20)),
        ]),
    )
    .await
    .expect("decimal 2.0 multiplier, float/double min and max");

    // Every width and type of x-max-length takes effect: the third message drops the first.
    let twos = [
        AMQPValue::ShortShortInt(2),
        AMQPValue::ShortShortUInt(2),
        AMQPValue::ShortInt(2),
        AMQPValue::ShortUInt(2),
        AMQPValue::LongInt(2),
        AMQPValue::LongUInt(2),
        AMQPValue::LongLongInt(2),
        AMQPValue::Float(2.0),
        AMQPValue::Double(2.0),
        decimal(0, 2),
        decimal(2, 200),
    ];
    let ch = conn.create_channel().await.unwrap();
    for (i, v) in twos.iter().enumerate() {
        let q = format!("len-{i}");
        declare_args(&conn, &q, table(vec![("x-max-length", v.clone())]))
            .await
            .unwrap_or_else(|e| panic!("x-max-length {v:?}: {e}"));
        for body in [b"a", b"b", b"c"] {
            publish(&ch, "", &q, body).await;
        }
    }
    for i in 0..twos.len() {
        let q = format!("len-{i}");
        wait_until(5, "x-max-length 2 applied", || counts(&b, &q).0 == 2).await;
    }

    // Redeclaring with the same number in another type is equivalent; another number is not.
    declare_args(
        &conn,
        "ttl",
        table(vec![("x-message-ttl", AMQPValue::LongLongInt(60_000))]),
    )
    .await
    .unwrap();
    for same in [
        AMQPValue::Double(60_000.0),
        decimal(1, 600_000),
        AMQPValue::LongUInt(60_000),
    ] {
        declare_args(&conn, "ttl", table(vec![("x-message-ttl", same.clone())]))
            .await
            .unwrap_or_else(|e| panic!("redeclare with {same:?}: {e}"));
    }
    assert_code(
        declare_args(
            &conn,
            "ttl",
            table(vec![("x-message-ttl", AMQPValue::Double(60_001.0))]),
        )
        .await,
        406,
        "inequivalent arg 'x-message-ttl'",
    );

    // A consumer priority may be any number too.
    ch.basic_consume(
        "len-0".into(),
        "prio".into(),
        BasicConsumeOptions::default(),
        table(vec![("x-priority", AMQPValue::Double(5.0))]),
    )
    .await
    .expect("x-priority as a double");
}

#[tokio::test]
async fn numeric_arguments_out_of_range_get_rabbitmq_406_texts() {
    let b = start().await;
    let conn = b.connect().await;
    let cases = [
        (
            "x-max-priority",
            AMQPValue::Double(300.0),
            "{max_value_exceeded,300}",
        ),
        (
            "x-max-priority",
            AMQPValue::ShortInt(256),
            "{max_value_exceeded,256}",
        ),
        ("x-max-length", decimal(0, -5), "{value_negative,-5}"),
        ("x-message-ttl", AMQPValue::Float(-1.0), "{value_negative,-1}"),
        ("x-expires", decimal(1, 0), "{value_zero,0}"),
        ("x-expires", AMQPValue::ShortShortUInt(0), "{value_zero,0}"),
        (
            "x-message-ttl",
            AMQPValue::Double(2.5),
            "{value_not_integral,2.5}",
        ),
        ("x-max-length", decimal(1, 25), "{value_not_integral,2.5}"),
        ("x-delayed-retry-multiplier", decimal(1, 5), "{invalid_value,0.5}"),
        ("x-message-ttl", lstr("100"), "{unacceptable_type,longstr}"),
    ];
    for (i, (arg, v, why)) in cases.into_iter().enumerate() {
        let q = format!("bad-{i}");
        let r = declare_args(&conn, &q, table(vec![(arg, v.clone())])).await;
        let want = format!("PRECONDITION_FAILED - invalid arg '{arg}' for queue '{q}' in vhost '/': {why}");
        match r {
            Ok(()) => panic!("{arg} = {v:?} accepted"),
            Err(e) => {
                assert_eq!(reply_code(&e), Some(406), "{arg} = {v:?}: {e:?}");
                assert_eq!(reply_text(&e), want, "{arg} = {v:?}");
            }
        }
    }
}

/// Arguments RabbitMQ knows for another queue type only are refused with RabbitMQ 3.10.8's 406
/// texts (checked side by side with pika), before a quorum queue's properties: the first
/// declaration is non-durable, and RabbitMQ names the argument, not `non-durable`.
#[tokio::test]
async fn arguments_of_another_queue_type_get_rabbitmqs_406() {
    let b = start().await;
    let conn = b.connect().await;
    let quorum = |arg: &str, v: AMQPValue| table(vec![("x-queue-type", lstr("quorum")), (arg, v)]);
    let cases = [
        (
            "o1",
            quorum("x-queue-version", AMQPValue::LongInt(2)),
            "invalid arg 'x-queue-version' for queue 'o1' in vhost '/' of queue type rabbit_quorum_queue",
        ),
        (
            "o2",
            quorum("x-queue-mode", lstr("lazy")),
            "invalid arg 'x-queue-mode' for queue 'o2' in vhost '/' of queue type rabbit_quorum_queue",
        ),
        (
            "o3",
            quorum("x-queue-leader-locator", lstr("nowhere")),
            "invalid arg 'x-queue-leader-locator' for queue 'o3' in vhost '/': invalid_queue_locator_arg",
        ),
        (
            "o4",
            table(vec![("x-quorum-initial-group-size", AMQPValue::LongInt(3))]),
            "invalid arg 'x-quorum-initial-group-size' for queue 'o4' in vhost '/' of queue type rabbit_classic_queue",
        ),
    ];
    for (q, args, text) in cases {
        let e = declare_args(&conn, q, args).await.expect_err(q);
        assert_eq!(reply_code(&e), Some(406), "{q}: {e:?}");
        assert_eq!(reply_text(&e), format!("PRECONDITION_FAILED - {text}"));
    }
    // Warren's own extensions stay accepted on a quorum queue.
    let ch = conn.create_channel().await.unwrap();
    let opts = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let args = quorum("x-deduplication-window", AMQPValue::LongInt(1000));
    ch.queue_declare("o5".into(), opts, args).await.unwrap();
    // So is `x-max-priority`, as RabbitMQ 4.3 takes it (3.10 refused it).
    let args = quorum("x-max-priority", AMQPValue::LongInt(10));
    ch.queue_declare("o6".into(), opts, args).await.unwrap();
}

#[tokio::test]
async fn policy_keys_accept_non_integer_json_numbers() {
    let b = start().await;
    let url = format!("http://{}/api/policies/%2F/cap", b.running.http_addr);
    // A JSON 1.0 arrives as a double (RabbitMQ's management API does the same conversion).
    let body = serde_json::json!({
        "pattern": "^capped$", "apply-to": "queues",
        "definition": {"max-length": 1.0, "message-ttl": 60000.0}
    });
    let r = client::request(
        "PUT",
        &url,
        Some(("guest", "guest")),
        Some(("application/json", body.to_string().into_bytes())),
    )
    .await
    .unwrap();
    assert!(r.status == 201 || r.status == 204, "{} {}", r.status, r.text());
    let bad = serde_json::json!({"pattern": "^x$", "definition": {"max-length": 1.5}});
    let r = client::request(
        "PUT",
        &url,
        Some(("guest", "guest")),
        Some(("application/json", bad.to_string().into_bytes())),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("1.5 is not a valid"), "{}", r.text());

    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "capped").await;
    for body in [b"a", b"b"] {
        publish(&ch, "", "capped", body).await;
    }
    wait_until(5, "max-length 1.0 by policy applied", || {
        counts(&b, "capped").0 == 1
    })
    .await;
}

// ---------------------------------------------------------------- connection identity

#[tokio::test]
async fn client_properties_and_connection_name_are_listed() {
    let b = start().await;
    let before = now_ms();
    let props = lapin::ConnectionProperties::default()
        .with_connection_name("billing-worker".into())
        .with_client_property("information".into(), "fidelity test".into());
    let named = within(5, "connect", lapin::Connection::connect(&b.url, props))
        .await
        .unwrap();
    let _anonymous = b.connect().await;
    let after = now_ms();

    let url = format!("http://{}/api/connections", b.running.http_addr);
    let r = client::request("GET", &url, Some(("guest", "guest")), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let list: Value = r.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:#?}");
    let c = list
        .iter()
        .find(|c| c["user_provided_name"] == "billing-worker")
        .unwrap_or_else(|| panic!("no connection named billing-worker: {list:#?}"));
    let p = &c["client_properties"];
    assert_eq!(p["product"], "lapin", "{p}");
    assert!(!p["version"].as_str().unwrap_or("").is_empty(), "{p}");
    assert_eq!(p["platform"], "rust", "{p}");
    assert_eq!(p["information"], "fidelity test", "{p}");
    assert_eq!(p["connection_name"], "billing-worker", "{p}");
    assert_eq!(p["capabilities"]["publisher_confirms"], true, "{p}");
    assert_eq!(p["capabilities"]["consumer_cancel_notify"], true, "{p}");
    let at = c["connected_at"].as_u64().expect("connected_at in ms");
    assert!(
        before <= at && at <= after,
        "connected_at {at} not in [{before}, {after}]"
    );
    // RabbitMQ leaves the key out when the client gave no name.
    let other = list.iter().find(|c| c["user_provided_name"].is_null()).unwrap();
    assert!(other.get("user_provided_name").is_none(), "{other}");
    assert_eq!(other["client_properties"]["product"], "lapin");

    let out = ctl::run_from(
        [
            "warrenctl",
            "--url",
            &format!("http://{}", b.running.http_addr),
            "--user",
            "guest",
            "--password",
            "guest",
            "list",
            "connections",
        ]
        .map(String::from),
    )
    .await
    .unwrap();
    let header = out.lines().next().unwrap();
    assert!(
        header.contains("client_name") && header.contains("connected_at"),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.contains("billing-worker"))
        .unwrap_or_else(|| panic!("no billing-worker line:\n{out}"));
    assert!(line.contains("lapin "), "{line}");
    assert!(line.contains(" 20"), "connected_at shown as a date: {line}");
    named.close(200, "bye".into()).await.unwrap();
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// ---------------------------------------------------------------- channel_max

#[tokio::test]
async fn channel_max_error_says_whose_limit_was_hit() {
    // The client's own limit from tune-ok.
    let b = start().await;
    let mut r = Raw::handshake_with(b.running.amqp_addr, 0, Some(10)).await;
    r.open_channel(10).await;
    r.send_method(11, ChannelOpen::default()).await;
    let (code, text) = r.expect_connection_close().await;
    assert_eq!(code, 530);
    assert_eq!(
        text,
        "NOT_ALLOWED - channel number 11 is above the negotiated channel_max (10), the client's own \
         limit from connection.tune-ok; channel numbers must be 1 to channel_max"
    );

    // The broker's limit (the client asked for none).
    let b = start_with(|c| c.channel_max = 5).await;
    let mut r = Raw::handshake_with(b.running.amqp_addr, 0, Some(0)).await;
    r.open_channel(5).await;
    r.send_method(6, ChannelOpen::default()).await;
    let (code, text) = r.expect_connection_close().await;
    assert_eq!(code, 530);
    assert_eq!(
        text,
        "NOT_ALLOWED - channel number 6 is above the negotiated channel_max (5), the broker's limit \
         (--channel-max 5); channel numbers must be 1 to channel_max"
    );
}

/// As RabbitMQ: a `user_id` property must name the authenticated user (406, channel closed),
/// unless the user has the `impersonator` tag.
#[tokio::test]
async fn publish_with_another_users_user_id_is_refused_unless_impersonator() {
    use lapin::BasicProperties;
    use lapin::options::BasicPublishOptions;
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "uid").await;
    let own = BasicProperties::default().with_user_id("guest".into());
    ch.basic_publish(
        "".into(),
        "uid".into(),
        BasicPublishOptions::default(),
        b"mine",
        own,
    )
    .await
    .unwrap();
    wait_until(5, "own user_id accepted", || counts(&b, "uid").0 == 1).await;
    let mut w = watch(&ch).await;
    let other = BasicProperties::default().with_user_id("bob".into());
    ch.basic_publish(
        "".into(),
        "uid".into(),
        BasicPublishOptions::default(),
        b"forged",
        other,
    )
    .await
    .unwrap();
    let (code, text) = closed_with(&mut w).await;
    assert_eq!(code, 406, "{text}");
    assert_eq!(
        text,
        "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'"
    );
    assert_eq!(counts(&b, "uid").0, 1, "the forged message was not enqueued");
    // An impersonator may set any user_id.
    let mut guest = b.running.broker.users.get("guest").unwrap();
    guest.tags.push("impersonator".into());
    b.running.broker.users.put(guest);
    let ch = conn.create_channel().await.unwrap();
    let other = BasicProperties::default().with_user_id("bob".into());
    ch.basic_publish(
        "".into(),
        "uid".into(),
        BasicPublishOptions::default(),
        b"on behalf",
        other,
    )
    .await
    .unwrap();
    wait_until(5, "impersonated publish accepted", || counts(&b, "uid").0 == 2).await;
    b.running.shutdown().await;
}
