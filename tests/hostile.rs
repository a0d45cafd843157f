//! Hostile input over a real socket (issue 11), beyond the framing errors in tests/errors.rs:
//! truncated frames, unknown methods, methods on closed channels, malformed field values,
//! channel-0 misuse, 65,535 channel opens, heartbeat floods and slowloris clients. Each attack
//! gets the exact reply code and close behaviour while a crowd of 10 well-behaved connections
//! keeps publishing (confirmed) and consuming (acked) with no loss.

mod common;

use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::raw::Raw;
use common::*;
use warren_codec::frame::PROTOCOL_HEADER;
use warren_codec::methods::*;
use warren_codec::{Method, ShortStr, encode_basic_header, encode_method};

/// Ten well-behaved connections.
struct Crowd(Vec<Bystander>);

impl Crowd {
    async fn new(b: &TestBroker) -> Crowd {
        let mut v = Vec::new();
        for _ in 0..10 {
            v.push(Bystander::new(b).await);
        }
        Crowd(v)
    }

    async fn check(&mut self) {
        for by in &mut self.0 {
            by.check().await;
        }
    }
}

/// A method frame with a hand-made payload (class, method, then `args` verbatim).
fn raw_method(ch: u16, class: u16, method: u16, args: &[u8]) -> BytesMut {
    let mut f = BytesMut::new();
    f.put_u8(1);
    f.put_u16(ch);
    f.put_u32(4 + args.len() as u32);
    f.put_u16(class);
    f.put_u16(method);
    f.put_slice(args);
    f.put_u8(0xCE);
    f
}

/// queue.declare arguments: ticket, queue name bytes, flags, then `table` verbatim.
fn declare_args(name: &[u8], table: &[u8]) -> Vec<u8> {
    let mut a = vec![0, 0, name.len() as u8];
    a.extend_from_slice(name);
    a.push(0);
    a.extend_from_slice(table);
    a
}

fn live(b: &TestBroker) -> usize {
    b.running.broker.connections().len()
}

#[tokio::test]
async fn truncated_frames_then_eof_leak_nothing() {
    let b = start().await;
    let mut crowd = Crowd::new(&b).await;
    let base = live(&b);
    let addr = b.running.amqp_addr;
    let whole = {
        let mut f = BytesMut::new();
        encode_method(
            &mut f,
            1,
            &QueueDeclare {
                queue: ShortStr::from("t"),
                ..Default::default()
            },
        );
        f
    };
    // Cut inside the frame header, inside the payload, and just before the frame-end octet.
    for cut in [3, 10, whole.len() - 1] {
        let mut r = Raw::handshake(addr, 0).await;
        r.open_channel(1).await;
        r.send(&whole[..cut]).await;
        drop(r);
    }
    // A truncated protocol header, then EOF.
    let mut r = Raw::connect(addr).await;
    r.send(b"AMQP\x00").await;
    drop(r);
    wait_until(5, "connections cleaned up", || live(&b) == base).await;
    assert!(common::queue(&b, "t").is_none());
    crowd.check().await;
}

#[tokio::test]
async fn unknown_class_or_method_is_540() {
    let b = start().await;
    let mut crowd = Crowd::new(&b).await;
    let addr = b.running.amqp_addr;
    for (ch, class, method) in [(1u16, 99u16, 1u16), (1, 50, 99), (0, 10, 99)] {
        let mut r = Raw::handshake(addr, 0).await;
        r.open_channel(1).await;
        r.send(&raw_method(ch, class, method, &[])).await;
        let (code, text) = r.expect_connection_close().await;
        assert_eq!(code, 540, "{class}.{method}: {text}");
        assert!(text.starts_with("NOT_IMPLEMENTED"), "{text}");
    }
    crowd.check().await;
}

#[tokio::test]
async fn methods_on_closed_channels() {
    let b = start().await;
    let mut crowd = Crowd::new(&b).await;
    let addr = b.running.amqp_addr;

    // Closed by the client: the channel number is free again, anything but channel.open is 504.
    let mut r = Raw::handshake(addr, 0).await;
    r.open_channel(1).await;
    r.send_method(1, ChannelClose::default()).await;
    assert!(matches!(
        r.next_method().await,
        Some((1, Method::ChannelCloseOk(_)))
    ));
    r.send_method(
        1,
        QueueDeclare {
            queue: ShortStr::from("q"),
            ..Default::default()
        },
    )
    .await;
    let (code, text) = r.expect_connection_close().await;
    assert_eq!(code, 504, "{text}");
    assert!(text.contains("expected 'channel.open'"), "{text}");

    // Closed by the broker (a soft error): until the client's close-ok, everything on the
    // channel is dropped, including content; then the number can be reopened.
    let mut r = Raw::handshake(addr, 0).await;
    r.open_channel(1).await;
    r.send_method(
        1,
        QueueDeclare {
            queue: ShortStr::from("missing"),
            passive: true,
            ..Default::default()
        },
    )
    .await;
    let close = loop {
        match r.next_method().await {
            Some((1, Method::ChannelClose(c))) => break c,
            other => panic!("expected channel.close, got {other:?}"),
        }
    };
    assert_eq!(close.reply_code, 404);
    let mut f = BytesMut::new();
    encode_method(
        &mut f,
        1,
        &QueueDeclare {
            queue: ShortStr::from("ignored"),
            ..Default::default()
        },
    );
    encode_method(
        &mut f,
        1,
        &BasicPublish {
            routing_key: ShortStr::from("ignored"),
            ..Default::default()
        },
    );
    encode_basic_header(&mut f, 1, 3, &Default::default());
    warren_codec::encode_body(&mut f, 1, b"abc", 0);
    encode_method(&mut f, 1, &ChannelCloseOk {});
    r.send(&f).await;
    r.open_channel(1).await;
    assert!(common::queue(&b, "ignored").is_none());
    crowd.check().await;
}

#[tokio::test]
async fn malformed_field_values_are_502() {
    let b = start().await;
    let mut crowd = Crowd::new(&b).await;
    let addr = b.running.amqp_addr;
    let empty_table = [0u8, 0, 0, 0];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "invalid UTF-8 in a shortstr",
            declare_args(&[0xff, 0xfe, b'q'], &empty_table),
        ),
        (
            "bad field type tag",
            declare_args(b"q", &[0, 0, 0, 3, 1, b'k', b'Z']),
        ),
        (
            "table length beyond the frame",
            declare_args(b"q", &[0, 0, 0x03, 0xe8, 1, b'k']),
        ),
        ("shortstr length beyond the frame", vec![0, 0, 200, b'q']),
        ("trailing bytes", declare_args(b"q", &[0, 0, 0, 0, 1, 2, 3])),
    ];
    for (what, args) in cases {
        let mut r = Raw::handshake(addr, 0).await;
        r.open_channel(1).await;
        r.send(&raw_method(1, 50, 10, &args)).await;
        let (code, text) = r.expect_connection_close().await;
        assert_eq!(code, 502, "{what}: {text}");
        assert!(text.starts_with("SYNTAX_ERROR"), "{what}: {text}");
    }
    assert!(common::queue(&b, "q").is_none());
    crowd.check().await;
}

#[tokio::test]
async fn channel_zero_misuse() {
    let b = start().await;
    let mut crowd = Crowd::new(&b).await;
    let addr = b.running.amqp_addr;
    // A channel-class or basic method on channel 0: 503 COMMAND_INVALID.
    for m in [
        Method::from(ChannelOpen::default()),
        Method::from(BasicPublish {
            routing_key: ShortStr::from("x"),
            ..Default::default()
        }),
        Method::from(QueueDeclare {
            queue: ShortStr::from("z"),
            ..Default::default()
        }),
    ] {
        let mut r = Raw::handshake(addr, 0).await;
        r.send_method(0, m.clone()).await;
        let (code, text) = r.expect_connection_close().await;
        assert_eq!(code, 503, "{}: {text}", m.name());
    }
    // Content on channel 0, a heartbeat on a non-zero channel: 505 UNEXPECTED_FRAME.
    let mut r = Raw::handshake(addr, 0).await;
    let mut f = BytesMut::new();
    encode_basic_header(&mut f, 0, 1, &Default::default());
    r.send(&f).await;
    assert_eq!(r.expect_connection_close().await.0, 505);
    let mut r = Raw::handshake(addr, 0).await;
    r.open_channel(1).await;
    r.send(&[8, 0, 1, 0, 0, 0, 0, 0xCE]).await;
    assert_eq!(r.expect_connection_close().await.0, 505);
    // A second connection.open / start-ok once open: 504 CHANNEL_ERROR.
    let mut r = Raw::handshake(addr, 0).await;
    r.send_method(
        0,
        ConnectionOpen {
            virtual_host: ShortStr::from("/"),
            ..Default::default()
        },
    )
    .await;
    let (code, text) = r.expect_connection_close().await;
    assert_eq!(code, 504, "{text}");
    assert!(common::queue(&b, "z").is_none());
    crowd.check().await;
}

#[tokio::test]
async fn sixty_five_thousand_channel_opens_stop_at_channel_max() {
    let b = start().await;
    let mut crowd = Crowd::new(&b).await;
    let mut r = Raw::handshake(b.running.amqp_addr, 0).await;
    let mut f = BytesMut::with_capacity(65_535 * 13);
    for ch in 1..=65_535u16 {
        encode_method(&mut f, ch, &ChannelOpen::default());
    }
    // The broker may close the socket while we still write: ignore write errors.
    {
        use tokio::io::AsyncWriteExt;
        let _ = r.stream.write_all(&f).await;
    }
    let mut opened = 0u32;
    let close = loop {
        match r.next_method().await {
            Some((_, Method::ChannelOpenOk(_))) => opened += 1,
            Some((0, Method::ConnectionClose(c))) => break c,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(opened, 2047, "channels up to channel_max open");
    assert_eq!(close.reply_code, 530, "{}", close.reply_text);
    assert!(close.reply_text.contains("channel_max"), "{}", close.reply_text);
    r.send_method(0, ConnectionCloseOk {}).await;
    r.expect_eof(5).await;
    wait_until(5, "connection cleaned up", || live(&b) == 10).await;
    crowd.check().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_heartbeats_do_not_stall_others() {
    let b = start().await;
    let mut crowd = Crowd::new(&b).await;
    let mut r = Raw::handshake(b.running.amqp_addr, 0).await;
    let chunk: Vec<u8> = warren_codec::frame::HEARTBEAT_FRAME.repeat(8192); // 64 KiB
    let t0 = Instant::now();
    let (rd, mut wr) = r.stream.into_split();
    let flood = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for _ in 0..(1_000_000 / 8192 + 1) {
            wr.write_all(&chunk).await.expect("flood write");
        }
        wr
    });
    // Others are served while the flood goes on.
    crowd.check().await;
    let wr = within(30, "the flood to be consumed", flood).await.unwrap();
    let took = t0.elapsed();
    println!("1,007,616 heartbeat frames (8 MB) taken in {took:?}");
    // The flooding connection is still healthy: it can open a channel.
    r.stream = rd.reunite(wr).unwrap();
    r.open_channel(1).await;
    crowd.check().await;
}

#[tokio::test]
async fn slowloris_is_closed_after_the_handshake_timeout() {
    let b = start_with(|c| c.handshake_timeout = Duration::from_secs(1)).await;
    let mut crowd = Crowd::new(&b).await;
    let addr = b.running.amqp_addr;
    let base = live(&b);

    // Half a protocol header, then silence.
    let mut half = Raw::connect(addr).await;
    half.send(&PROTOCOL_HEADER[..4]).await;
    // The whole header, then nothing after connection.start.
    let mut mute = Raw::connect(addr).await;
    mute.send(&PROTOCOL_HEADER).await;
    assert!(matches!(
        mute.next_method().await,
        Some((0, Method::ConnectionStart(_)))
    ));
    // Half of a start-ok frame, then silence.
    let mut partial = Raw::connect(addr).await;
    partial.send(&PROTOCOL_HEADER).await;
    assert!(matches!(
        partial.next_method().await,
        Some((0, Method::ConnectionStart(_)))
    ));
    let mut f = BytesMut::new();
    encode_method(
        &mut f,
        0,
        &ConnectionStartOk {
            mechanism: ShortStr::from("PLAIN"),
            response: bytes::Bytes::from_static(b"\0guest\0guest"),
            locale: ShortStr::from("en_US"),
            ..Default::default()
        },
    );
    partial.send(&f[..f.len() / 2]).await;

    let t0 = Instant::now();
    half.expect_eof(5).await;
    mute.expect_eof(5).await;
    partial.expect_eof(5).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "closed too early: {waited:?}"
    );
    println!("three slowloris clients closed after {waited:?}");
    wait_until(5, "no leaked connections", || live(&b) == base).await;
    crowd.check().await;
}

/// A connection task that fails mid-delivery (a bug; injected here through the
/// `fault-injection` feature) costs that connection only: its cleanup still runs, the delivery
/// in flight and everything unacked go back to the queue, its consumer is removed, and the
/// queue keeps serving everyone else. (Before the cleanup guard, the message in flight was
/// stranded and the next delivery to the dead consumer re-entered the queue's lock: the queue
/// hung.)
#[tokio::test]
async fn a_connection_task_failing_mid_delivery_costs_only_that_connection() {
    let b = start().await;
    let mut crowd = Crowd::new(&b).await;
    let setup = b.connect().await;
    let ch = setup.create_channel().await.unwrap();
    declare(&ch, "work").await;
    let connections = b.running.broker.connections().len();
    // The doomed consumer registers first, so it is offered the first message.
    let doomed = b.connect().await;
    let dch = doomed.create_channel().await.unwrap();
    let _doomed_consumer = consume(&dch, "work", "warren.test.panic-on-deliver").await;
    for i in 0..20 {
        publish(&ch, "", "work", format!("m{i}").as_bytes()).await;
    }
    let healthy = b.connect().await;
    let hch = healthy.create_channel().await.unwrap();
    let mut hc = consume(&hch, "work", "healthy").await;
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 20 {
        let d = next(&mut hc).await;
        seen.insert(String::from_utf8(d.data.clone()).unwrap());
        d.ack(lapin::options::BasicAckOptions::default()).await.unwrap();
    }
    wait_until(5, "queue drained, the failed consumer gone", || {
        counts(&b, "work") == (0, 0, 1)
    })
    .await;
    wait_until(5, "the failed connection unregistered", || {
        b.running.broker.connections().len() == connections + 1
    })
    .await;
    crowd.check().await;
    publish(&ch, "", "work", b"after").await;
    assert_eq!(next(&mut hc).await.data, b"after");
    b.running.shutdown().await;
}
