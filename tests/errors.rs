//! Error paths with RabbitMQ's exact reply codes (and the key part of their texts), through
//! lapin and through a raw socket for framing errors lapin cannot produce. Every raw test keeps
//! a well-behaved lapin connection (opened before) publishing and consuming afterwards.

mod common;

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::raw::Raw;
use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use warren_codec::methods::*;
use warren_codec::{Method, ShortStr, encode_basic_header, encode_body, encode_method};

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn not_found_404() {
    let b = start().await;
    let conn = b.connect().await;
    // Publish to a missing exchange closes the channel asynchronously.
    let ch = conn.create_channel().await.unwrap();
    let mut w = watch(&ch).await;
    publish(&ch, "no-such-x", "k", b"x").await;
    let (code, text) = closed_with(&mut w).await;
    assert_eq!(code, 404);
    assert_eq!(text, "NOT_FOUND - no exchange 'no-such-x' in vhost '/'");

    // Also in confirm mode: the confirm fails with the channel error.
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let confirm = ch
        .basic_publish(
            "no-such-x".into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    assert_code(
        within(5, "confirm", confirm).await,
        404,
        "no exchange 'no-such-x'",
    );

    let ch = conn.create_channel().await.unwrap();
    assert_code(
        ch.queue_declare("missing-q".into(), passive(), FieldTable::default())
            .await,
        404,
        "no queue 'missing-q' in vhost '/'",
    );
    let ch = conn.create_channel().await.unwrap();
    assert_code(
        ch.exchange_declare(
            "missing-x".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        404,
        "no exchange 'missing-x' in vhost '/'",
    );
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "here").await;
    assert_code(
        ch.queue_bind(
            "here".into(),
            "missing-x".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await,
        404,
        "no exchange 'missing-x'",
    );
    let ch = conn.create_channel().await.unwrap();
    assert_code(
        ch.queue_bind(
            "missing-q".into(),
            "amq.direct".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await,
        404,
        "no queue 'missing-q'",
    );
    let ch = conn.create_channel().await.unwrap();
    assert_code(
        ch.exchange_bind(
            "amq.fanout".into(),
            "missing-x".into(),
            "".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await,
        404,
        "no exchange 'missing-x'",
    );
    let ch = conn.create_channel().await.unwrap();
    assert_code(
        ch.basic_consume(
            "missing-q".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await,
        404,
        "no queue 'missing-q'",
    );
    let ch = conn.create_channel().await.unwrap();
    assert_code(
        ch.basic_get("missing-q".into(), BasicGetOptions::default()).await,
        404,
        "no queue 'missing-q'",
    );
    // Soft errors leave the connection usable.
    assert!(conn.status().connected());
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "after").await;
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn precondition_failed_406() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "plain").await;
    assert_code(
        ch.queue_declare(
            "plain".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        406,
        "inequivalent arg 'durable' for queue 'plain' in vhost '/': received 'true' but current is 'false'",
    );
    let ch = conn.create_channel().await.unwrap();
    assert_code(
        ch.queue_declare(
            "plain".into(),
            QueueDeclareOptions::default(),
            table(vec![("x-message-ttl", AMQPValue::LongInt(1000))]),
        )
        .await,
        406,
        "inequivalent arg 'x-message-ttl'",
    );
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        "xd".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    assert_code(
        ch.exchange_declare(
            "xd".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
        406,
        "inequivalent arg 'type' for exchange 'xd' in vhost '/': received 'fanout' but current is 'direct'",
    );
    // x-max-length as a string.
    let ch = conn.create_channel().await.unwrap();
    assert_code(
        ch.queue_declare(
            "bad-args".into(),
            QueueDeclareOptions::default(),
            table(vec![("x-max-length", lstr("10"))]),
        )
        .await,
        406,
        "x-max-length",
    );
    assert!(queue(&b, "bad-args").is_none());
    // Unknown delivery tag.
    let ch = conn.create_channel().await.unwrap();
    let mut w = watch(&ch).await;
    ch.basic_ack(42, BasicAckOptions::default()).await.unwrap();
    assert_eq!(
        closed_with(&mut w).await,
        (406, "PRECONDITION_FAILED - unknown delivery tag 42".to_string())
    );
    // Acking the same tag twice.
    let ch = conn.create_channel().await.unwrap();
    publish(&ch, "", "plain", b"once").await;
    wait_until(5, "message", || counts(&b, "plain").0 == 1).await;
    let mut w = watch(&ch).await;
    let m = ch
        .basic_get("plain".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    let tag = m.delivery.delivery_tag;
    ch.basic_ack(tag, BasicAckOptions::default()).await.unwrap();
    ch.basic_ack(tag, BasicAckOptions::default()).await.unwrap();
    let (code, text) = closed_with(&mut w).await;
    assert_eq!(code, 406);
    assert!(text.contains(&format!("unknown delivery tag {tag}")), "{text}");
    // Invalid expiration property.
    let ch = conn.create_channel().await.unwrap();
    let mut w = watch(&ch).await;
    publish_props(
        &ch,
        "",
        "plain",
        b"x",
        BasicProperties::default().with_expiration("soon".into()),
    )
    .await;
    assert_eq!(closed_with(&mut w).await.0, 406);
    assert!(conn.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn access_refused_403_and_resource_locked_405() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    assert_code(
        ch.queue_declare(
            "amq.mine".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
        403,
        "queue name 'amq.mine' contains reserved prefix 'amq.*'",
    );
    let ch = conn.create_channel().await.unwrap();
    assert_code(
        ch.exchange_declare(
            "amq.mine".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
        403,
        "exchange name 'amq.mine' contains reserved prefix 'amq.*'",
    );
    let ch = conn.create_channel().await.unwrap();
    assert_code(
        ch.exchange_delete("amq.direct".into(), ExchangeDeleteOptions::default())
            .await,
        403,
        "reserved prefix 'amq.*'",
    );
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "q").await;
    assert_code(
        ch.queue_bind(
            "q".into(),
            "".into(),
            "q".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await,
        403,
        "operation not permitted on the default exchange",
    );
    let ch = conn.create_channel().await.unwrap();
    assert_code(
        ch.exchange_delete("".into(), ExchangeDeleteOptions::default())
            .await,
        403,
        "operation not permitted on the default exchange",
    );
    let ch = conn.create_channel().await.unwrap();
    assert_code(
        ch.queue_unbind("q".into(), "".into(), "q".into(), FieldTable::default())
            .await,
        403,
        "operation not permitted on the default exchange",
    );
    // 405: another connection's exclusive queue.
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "mine".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let other = b.connect().await;
    let och = other.create_channel().await.unwrap();
    assert_code(
        och.queue_delete("mine".into(), QueueDeleteOptions::default())
            .await,
        405,
        "cannot obtain exclusive access to locked queue 'mine' in vhost '/'",
    );
    // Declaring it non-exclusive from the owner is also 405 (exclusive flag mismatch).
    let ch = conn.create_channel().await.unwrap();
    assert_code(
        ch.queue_declare(
            "mine".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
        405,
        "locked queue 'mine'",
    );
    assert!(conn.status().connected() && other.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
    other.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn hard_errors_close_the_connection() {
    let b = start().await;
    let mut by = Bystander::new(&b).await;
    // 530 unknown vhost.
    let url = format!("amqp://guest:guest@{}/nope", b.running.amqp_addr);
    let r = within(
        5,
        "connect",
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await;
    assert_code(r.map(|_| ()), 530, "nope");
    // 403 wrong password (lapin announces authentication_failure_close).
    let url = format!("amqp://guest:wrong@{}/%2f", b.running.amqp_addr);
    let r = within(
        5,
        "connect",
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await;
    assert_code(
        r.map(|_| ()),
        403,
        "Login was refused using authentication mechanism PLAIN",
    );
    let url = format!("amqp://nobody:guest@{}/%2f", b.running.amqp_addr);
    let r = within(
        5,
        "connect",
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await;
    assert_code(r.map(|_| ()), 403, "Login was refused");

    // 540 immediate=true.
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let mut w = watch(&ch).await;
    let _ = ch
        .basic_publish(
            "".into(),
            "x".into(),
            BasicPublishOptions {
                immediate: true,
                ..Default::default()
            },
            b"x",
            BasicProperties::default(),
        )
        .await;
    let (code, text) = closed_with(&mut w).await;
    assert_eq!(code, 540);
    assert!(text.contains("immediate=true"), "{text}");
    wait_until(5, "connection closed", || !conn.status().connected()).await;

    // 540 basic.recover with requeue=false (RabbitMQ does not implement it).
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let mut w = watch(&ch).await;
    let r = ch.basic_recover(BasicRecoverOptions { requeue: false }).await;
    assert!(r.is_err());
    let (code, text) = closed_with(&mut w).await;
    assert_eq!(code, 540);
    assert!(text.contains("requeue=false"), "{text}");
    wait_until(5, "connection closed", || !conn.status().connected()).await;

    // 530 reused consumer tag.
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "tags").await;
    let _c = consume(&ch, "tags", "dup").await;
    let ch2 = conn.create_channel().await.unwrap();
    let mut w = watch(&ch2).await;
    let r = ch
        .basic_consume(
            "tags".into(),
            "dup".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert!(r.is_err());
    let (code, text) = closed_with(&mut w).await;
    assert_eq!(code, 530);
    assert!(text.contains("attempt to reuse consumer tag 'dup'"), "{text}");
    wait_until(5, "connection closed", || !conn.status().connected()).await;

    by.check().await;
}

// ---------------------------------------------------------------- raw socket tests

fn method_bytes(ch: u16, m: impl Into<Method>) -> BytesMut {
    let mut out = BytesMut::new();
    encode_method(&mut out, ch, &m.into());
    out
}

fn publish_method(key: &str) -> BasicPublish {
    BasicPublish {
        ticket: 0,
        exchange: ShortStr::from(""),
        routing_key: ShortStr::from(key),
        mandatory: false,
        immediate: false,
    }
}

#[tokio::test]
async fn raw_wrong_protocol_header() {
    let b = start().await;
    let mut by = Bystander::new(&b).await;
    for header in [&b"AMQP\x00\x00\x09\x00"[..], b"AMQP\x01\x01\x00\x0a", b"GET / HT"] {
        let mut r = Raw::connect(b.running.amqp_addr).await;
        r.send(header).await;
        let got = r.read_raw(8).await;
        assert_eq!(got, b"AMQP\x00\x00\x09\x01", "answer to {header:?}");
        r.expect_eof(5).await;
    }
    by.check().await;
}

#[tokio::test]
async fn raw_framing_errors_501() {
    let b = start().await;
    let mut by = Bystander::new(&b).await;
    let addr = b.running.amqp_addr;

    // A frame larger than frame_max: refused from its header alone.
    let mut r = Raw::handshake(addr, 0).await;
    let mut f = BytesMut::new();
    f.put_u8(1);
    f.put_u16(1);
    f.put_u32(r.frame_max); // payload frame_max + 8 overhead > frame_max
    r.send(&f).await;
    let (code, text) = r.expect_connection_close().await;
    assert_eq!(code, 501, "{text}");
    assert!(text.starts_with("FRAME_ERROR"), "{text}");

    // Frame-end octet not 0xCE.
    let mut r = Raw::handshake(addr, 0).await;
    let mut f = method_bytes(1, ChannelOpen::default());
    let last = f.len() - 1;
    f[last] = 0x00;
    r.send(&f).await;
    assert_eq!(r.expect_connection_close().await.0, 501);

    // Unknown frame type.
    let mut r = Raw::handshake(addr, 0).await;
    r.send(&[9, 0, 0, 0, 0, 0, 0, 0xCE]).await;
    assert_eq!(r.expect_connection_close().await.0, 501);

    // Body longer than its header declared.
    let mut r = Raw::handshake(addr, 0).await;
    r.open_channel(1).await;
    let mut f = method_bytes(1, publish_method("x"));
    encode_basic_header(&mut f, 1, 3, &Default::default());
    encode_body(&mut f, 1, b"12345", 0);
    r.send(&f).await;
    assert_eq!(r.expect_connection_close().await.0, 501);

    by.check().await;
}

#[tokio::test]
async fn raw_sequence_errors_505_504() {
    let b = start().await;
    let mut by = Bystander::new(&b).await;
    let addr = b.running.amqp_addr;

    // Content header without a method: 505.
    let mut r = Raw::handshake(addr, 0).await;
    r.open_channel(1).await;
    let mut f = BytesMut::new();
    encode_basic_header(&mut f, 1, 5, &Default::default());
    r.send(&f).await;
    assert_eq!(r.expect_connection_close().await.0, 505);

    // Body frame where a content header is due: 505.
    let mut r = Raw::handshake(addr, 0).await;
    r.open_channel(1).await;
    let mut f = method_bytes(1, publish_method("x"));
    encode_body(&mut f, 1, b"abc", 0);
    r.send(&f).await;
    assert_eq!(r.expect_connection_close().await.0, 505);

    // A method on a channel that was never opened: 504.
    let mut r = Raw::handshake(addr, 0).await;
    r.send_method(
        5,
        QueueDeclare {
            queue: ShortStr::from("q"),
            ..Default::default()
        },
    )
    .await;
    let (code, text) = r.expect_connection_close().await;
    assert_eq!(code, 504, "{text}");
    assert!(text.contains("expected 'channel.open'"), "{text}");

    // channel.open twice: 504.
    let mut r = Raw::handshake(addr, 0).await;
    r.open_channel(1).await;
    r.send_method(1, ChannelOpen::default()).await;
    let (code, text) = r.expect_connection_close().await;
    assert_eq!(code, 504, "{text}");
    assert!(text.contains("second 'channel.open' seen"), "{text}");

    by.check().await;
}

#[tokio::test]
async fn raw_qos_prefetch_size_540() {
    let b = start().await;
    let mut by = Bystander::new(&b).await;
    let mut r = Raw::handshake(b.running.amqp_addr, 0).await;
    r.open_channel(1).await;
    r.send_method(
        1,
        BasicQos {
            prefetch_size: 4096,
            prefetch_count: 10,
            global: false,
        },
    )
    .await;
    let (code, text) = r.expect_connection_close().await;
    assert_eq!(code, 540, "{text}");
    assert!(text.starts_with("NOT_IMPLEMENTED"), "{text}");
    by.check().await;
}

#[tokio::test]
async fn raw_message_over_max_message_size_406() {
    let b = start_with(|c| c.max_message_size = 1024).await;
    let mut by = Bystander::new(&b).await;
    let mut r = Raw::handshake(b.running.amqp_addr, 0).await;
    r.open_channel(1).await;
    r.send_method(
        1,
        QueueDeclare {
            queue: ShortStr::from("big"),
            ..Default::default()
        },
    )
    .await;
    match r.next_method().await {
        Some((1, Method::QueueDeclareOk(_))) => {}
        other => panic!("expected declare-ok, got {other:?}"),
    }
    // Exactly at the limit is fine.
    let mut f = method_bytes(1, publish_method("big"));
    encode_basic_header(&mut f, 1, 1024, &Default::default());
    encode_body(&mut f, 1, &[7u8; 1024], 0);
    r.send(&f).await;
    wait_until(5, "1024-byte message enqueued", || counts(&b, "big").0 == 1).await;
    // One byte more closes the channel with 406.
    let mut f = method_bytes(1, publish_method("big"));
    encode_basic_header(&mut f, 1, 2048, &Default::default());
    encode_body(&mut f, 1, &[7u8; 2048], 0);
    r.send(&f).await;
    let (code, text) = r.expect_channel_close(1).await;
    assert_eq!(code, 406);
    assert_eq!(
        text,
        "PRECONDITION_FAILED - message size 2048 is larger than configured max size 1024"
    );
    // The connection survives: a new channel works.
    r.open_channel(2).await;
    r.send_method(
        2,
        QueueDeclare {
            queue: ShortStr::from("big"),
            passive: true,
            ..Default::default()
        },
    )
    .await;
    match r.next_method().await {
        Some((2, Method::QueueDeclareOk(ok))) => assert_eq!(ok.message_count, 1),
        other => panic!("expected declare-ok, got {other:?}"),
    }
    by.check().await;
}

#[tokio::test]
async fn raw_heartbeat_timeout_disconnects_silent_client() {
    let b = start().await;
    let mut by = Bystander::new(&b).await;
    let mut r = Raw::handshake(b.running.amqp_addr, 1).await;
    let t0 = Instant::now();
    // Stay silent: the broker must drop us after two missed heartbeat intervals.
    r.expect_eof(8).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "closed too early: {waited:?}"
    );
    // A client that does send heartbeats stays connected past the same time.
    let mut alive = Raw::handshake(b.running.amqp_addr, 1).await;
    let hb = Bytes::from_static(&warren_codec::frame::HEARTBEAT_FRAME);
    for _ in 0..6 {
        alive.send(&hb).await;
        // Wait for the broker's own heartbeat (sent every half interval) instead of sleeping.
        match alive.next_frame().await {
            Some(warren_codec::Frame::Heartbeat { channel: 0 }) => {}
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }
    alive.open_channel(1).await;
    by.check().await;
}
