//! Golden byte vectors, written by hand from the AMQP 0-9-1 wire format (spec §4.2 and
//! `/work/shared/spec/README.md`), *not* produced by our encoder.
//!
//! Each vector is checked both ways: `decode_frame` on the bytes gives exactly the expected
//! typed frame (consuming the whole buffer), and `encode_frame` on the typed frame gives exactly
//! the bytes. The frame `size` field of every vector was also computed by hand; `golden` checks
//! it against the payload length so an arithmetic slip in a vector shows up as such.

use bytes::{Bytes, BytesMut};
use warren_codec::methods::*;
use warren_codec::{
    Assembled, BasicProperties, CodecError, ContentAssembler, ContentHeader, FieldTable, FieldValue, Frame,
    Method, ShortStr, decode_frame, encode_content, encode_frame,
};

const FRAME_MAX: u32 = 131072;

/// Concatenates hand-written pieces of a frame.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn s(v: &'static str) -> ShortStr {
    ShortStr::from_static(v)
}

fn b(v: &'static [u8]) -> Bytes {
    Bytes::from_static(v)
}

fn table(entries: Vec<(&'static str, FieldValue)>) -> FieldTable {
    FieldTable(entries.into_iter().map(|(k, v)| (s(k), v)).collect())
}

/// Checks one golden vector in both directions.
fn golden(wire: &[u8], expected: Frame) {
    // Sanity-check the hand-computed size field and the frame end.
    let size = u32::from_be_bytes([wire[3], wire[4], wire[5], wire[6]]) as usize;
    assert_eq!(
        size + 8,
        wire.len(),
        "hand-written size field disagrees with the payload"
    );
    assert_eq!(*wire.last().unwrap(), 0xCE, "frame-end octet");

    // Decode: the whole vector is exactly one frame.
    let mut buf = BytesMut::from(wire);
    let got = decode_frame(&mut buf, FRAME_MAX)
        .expect("decodes")
        .expect("a whole frame");
    assert_eq!(got, expected, "decoded frame");
    assert!(buf.is_empty(), "decode_frame consumed the whole frame");

    // Every strict prefix is "need more bytes", never an error or a frame.
    for cut in 0..wire.len() {
        let mut part = BytesMut::from(&wire[..cut]);
        assert_eq!(
            decode_frame(&mut part, FRAME_MAX),
            Ok(None),
            "prefix of {cut} bytes"
        );
    }

    // Encode: the typed frame gives exactly the bytes.
    let mut out = BytesMut::new();
    encode_frame(&mut out, &expected);
    assert_eq!(&out[..], wire, "encoded bytes");
}

fn method(channel: u16, m: impl Into<Method>) -> Frame {
    Frame::Method {
        channel,
        method: m.into(),
    }
}

#[test]
fn connection_start_with_nested_capabilities() {
    let wire = cat(&[
        &[0x01, 0x00, 0x00],       // method frame, channel 0
        &[0x00, 0x00, 0x00, 0x6C], // size 108
        &[0x00, 0x0A, 0x00, 0x0A], // connection(10).start(10)
        &[0x00, 0x09],             // version-major 0, version-minor 9
        &[0x00, 0x00, 0x00, 0x47], // server-properties: 71 bytes of entries
        &[0x07],
        b"product",
        b"S",
        &[0x00, 0x00, 0x00, 0x06],
        b"Warren",
        &[0x0C],
        b"capabilities",
        b"F",
        &[0x00, 0x00, 0x00, 0x22], // capabilities: 34 bytes of entries
        &[0x12],
        b"publisher_confirms",
        b"t",
        &[0x01],
        &[0x0A],
        b"basic.nack",
        b"t",
        &[0x01],
        &[0x00, 0x00, 0x00, 0x0E], // mechanisms: longstr of 14
        b"PLAIN AMQPLAIN",
        &[0x00, 0x00, 0x00, 0x05], // locales: longstr of 5
        b"en_US",
        &[0xCE],
    ]);
    let caps = table(vec![
        ("publisher_confirms", FieldValue::Bool(true)),
        ("basic.nack", FieldValue::Bool(true)),
    ]);
    let expected = method(
        0,
        ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: table(vec![
                ("product", FieldValue::str("Warren")),
                ("capabilities", FieldValue::Table(caps)),
            ]),
            mechanisms: b(b"PLAIN AMQPLAIN"),
            locales: b(b"en_US"),
        },
    );
    golden(&wire, expected);
}

#[test]
fn connection_start_ok() {
    let wire = cat(&[
        &[0x01, 0x00, 0x00],
        &[0x00, 0x00, 0x00, 0x36], // size 54
        &[0x00, 0x0A, 0x00, 0x0B], // connection.start-ok
        &[0x00, 0x00, 0x00, 0x12], // client-properties: 18 bytes
        &[0x07],
        b"product",
        b"S",
        &[0x00, 0x00, 0x00, 0x05],
        b"lapin",
        &[0x05],
        b"PLAIN", // mechanism
        &[0x00, 0x00, 0x00, 0x0C],
        b"\0guest\0guest", // response
        &[0x05],
        b"en_US", // locale
        &[0xCE],
    ]);
    let expected = method(
        0,
        ConnectionStartOk {
            client_properties: table(vec![("product", FieldValue::str("lapin"))]),
            mechanism: s("PLAIN"),
            response: b(b"\0guest\0guest"),
            locale: s("en_US"),
        },
    );
    golden(&wire, expected);
}

#[test]
fn connection_tune() {
    let wire = [
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, // method, ch 0, size 12
        0x00, 0x0A, 0x00, 0x1E, // connection.tune (30)
        0x07, 0xFF, // channel-max 2047
        0x00, 0x02, 0x00, 0x00, // frame-max 131072
        0x00, 0x3C, // heartbeat 60
        0xCE,
    ];
    let expected = method(
        0,
        ConnectionTune {
            channel_max: 2047,
            frame_max: 131072,
            heartbeat: 60,
        },
    );
    golden(&wire, expected);
}

#[test]
fn connection_tune_ok() {
    let wire = [
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, // method, ch 0, size 12
        0x00, 0x0A, 0x00, 0x1F, // connection.tune-ok (31)
        0x00, 0x00, // channel-max 0 (no limit)
        0x00, 0x00, 0x20, 0x00, // frame-max 8192
        0x00, 0x00, // heartbeat 0
        0xCE,
    ];
    let expected = method(
        0,
        ConnectionTuneOk {
            channel_max: 0,
            frame_max: 8192,
            heartbeat: 0,
        },
    );
    golden(&wire, expected);
}

#[test]
fn connection_open() {
    let wire = [
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, // size 8
        0x00, 0x0A, 0x00, 0x28, // connection.open (40)
        0x01, b'/', // virtual-host "/"
        0x00, // capabilities "" (reserved-1)
        0x00, // insist 0 (reserved-2)
        0xCE,
    ];
    let expected = method(
        0,
        ConnectionOpen {
            virtual_host: s("/"),
            capabilities: s(""),
            insist: false,
        },
    );
    golden(&wire, expected);
}

#[test]
fn connection_close() {
    let wire = cat(&[
        &[0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x17], // size 23
        &[0x00, 0x0A, 0x00, 0x32],                   // connection.close (50)
        &[0x01, 0xF6],                               // reply-code 502
        &[0x0C],
        b"SYNTAX_ERROR",
        &[0x00, 0x3C, 0x00, 0x28], // class-id 60, method-id 40 (basic.publish)
        &[0xCE],
    ]);
    let expected = method(
        0,
        ConnectionClose {
            reply_code: 502,
            reply_text: s("SYNTAX_ERROR"),
            class_id: 60,
            method_id: 40,
        },
    );
    golden(&wire, expected);
}

#[test]
fn channel_open() {
    let wire = [
        0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, // method, ch 1, size 5
        0x00, 0x14, 0x00, 0x0A, // channel(20).open(10)
        0x00, // out-of-band ""
        0xCE,
    ];
    golden(&wire, method(1, ChannelOpen { out_of_band: s("") }));
}

#[test]
fn channel_open_ok() {
    let wire = [
        0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x08, // size 8
        0x00, 0x14, 0x00, 0x0B, // channel.open-ok
        0x00, 0x00, 0x00, 0x00, // channel-id: empty longstr
        0xCE,
    ];
    golden(
        &wire,
        method(
            1,
            ChannelOpenOk {
                channel_id: Bytes::new(),
            },
        ),
    );
}

#[test]
fn channel_close() {
    let wire = cat(&[
        &[0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x1A], // ch 2, size 26
        &[0x00, 0x14, 0x00, 0x28],                   // channel.close (40)
        &[0x01, 0x94],                               // 404
        &[0x0F],
        b"NOT_FOUND - q1!",
        &[0x00, 0x32, 0x00, 0x0A], // queue.declare
        &[0xCE],
    ]);
    let expected = method(
        2,
        ChannelClose {
            reply_code: 404,
            reply_text: s("NOT_FOUND - q1!"),
            class_id: 50,
            method_id: 10,
        },
    );
    golden(&wire, expected);
}

#[test]
fn basic_publish() {
    let wire = cat(&[
        &[0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x15], // method, ch 1, size 21
        &[0x00, 0x3C, 0x00, 0x28],                   // basic(60).publish(40)
        &[0x00, 0x00],                               // ticket
        &[0x0A],
        b"amq.direct",
        &[0x02],
        b"rk",
        &[0x01], // mandatory=1, immediate=0
        &[0xCE],
    ]);
    let expected = method(
        1,
        BasicPublish {
            ticket: 0,
            exchange: s("amq.direct"),
            routing_key: s("rk"),
            mandatory: true,
            immediate: false,
        },
    );
    golden(&wire, expected);
}

#[test]
fn basic_deliver() {
    let wire = cat(&[
        &[0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x18], // size 24
        &[0x00, 0x3C, 0x00, 0x3C],                   // basic.deliver (60)
        &[0x06],
        b"ctag-1",
        &[0, 0, 0, 0, 0, 0, 0, 0x2A], // delivery-tag 42
        &[0x01],                      // redelivered: a whole octet before the shortstrs
        &[0x00],                      // exchange ""
        &[0x02],
        b"q1",
        &[0xCE],
    ]);
    let expected = method(
        1,
        BasicDeliver {
            consumer_tag: s("ctag-1"),
            delivery_tag: 42,
            redelivered: true,
            exchange: s(""),
            routing_key: s("q1"),
        },
    );
    golden(&wire, expected);
}

#[test]
fn basic_get_ok() {
    let wire = cat(&[
        &[0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x18], // ch 3, size 24
        &[0x00, 0x3C, 0x00, 0x47],                   // basic.get-ok (71)
        &[0, 0, 0, 0, 0, 0, 0x01, 0x00],             // delivery-tag 256
        &[0x00],                                     // redelivered 0
        &[0x03],
        b"ex1",
        &[0x02],
        b"rk",
        &[0x00, 0x00, 0x01, 0x00], // message-count 256
        &[0xCE],
    ]);
    let expected = method(
        3,
        BasicGetOk {
            delivery_tag: 256,
            redelivered: false,
            exchange: s("ex1"),
            routing_key: s("rk"),
            message_count: 256,
        },
    );
    golden(&wire, expected);
}

#[test]
fn basic_ack_multiple() {
    let wire = [
        0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0D, // size 13
        0x00, 0x3C, 0x00, 0x50, // basic.ack (80)
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, // delivery-tag 2^32
        0x01, // multiple
        0xCE,
    ];
    let expected = method(
        1,
        BasicAck {
            delivery_tag: 1 << 32,
            multiple: true,
        },
    );
    golden(&wire, expected);
}

#[test]
fn basic_nack_multiple_and_requeue() {
    let wire = [
        0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0D, // size 13
        0x00, 0x3C, 0x00, 0x78, // basic.nack (120)
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, // delivery-tag 7
        0x03, // multiple | requeue << 1
        0xCE,
    ];
    let expected = method(
        1,
        BasicNack {
            delivery_tag: 7,
            multiple: true,
            requeue: true,
        },
    );
    golden(&wire, expected);
}

#[test]
fn basic_nack_requeue_only_is_bit_1() {
    let wire = [
        0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0D, // size 13
        0x00, 0x3C, 0x00, 0x78, // basic.nack
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, // delivery-tag 8
        0x02, // requeue << 1
        0xCE,
    ];
    let expected = method(
        1,
        BasicNack {
            delivery_tag: 8,
            multiple: false,
            requeue: true,
        },
    );
    golden(&wire, expected);
}

#[test]
fn queue_declare_durable_auto_delete() {
    let wire = cat(&[
        &[0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x1D], // size 29
        &[0x00, 0x32, 0x00, 0x0A],                   // queue(50).declare(10)
        &[0x00, 0x00],                               // ticket
        &[0x02],
        b"q1",
        &[0x0A],                   // durable<<1 | auto-delete<<3
        &[0x00, 0x00, 0x00, 0x0F], // arguments: 15 bytes
        &[0x09],
        b"x-expires",
        b"I",
        &[0x00, 0x00, 0xEA, 0x60], // 60000
        &[0xCE],
    ]);
    let expected = method(
        1,
        QueueDeclare {
            ticket: 0,
            queue: s("q1"),
            passive: false,
            durable: true,
            exclusive: false,
            auto_delete: true,
            nowait: false,
            arguments: table(vec![("x-expires", FieldValue::I32(60000))]),
        },
    );
    golden(&wire, expected);
}

#[test]
fn queue_declare_passive_exclusive_nowait() {
    let wire = [
        0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0C, // size 12
        0x00, 0x32, 0x00, 0x0A, // queue.declare
        0x00, 0x00, // ticket
        0x00, // queue "" (server-named)
        0x15, // passive | exclusive<<2 | nowait<<4
        0x00, 0x00, 0x00, 0x00, // empty arguments
        0xCE,
    ];
    let expected = method(
        1,
        QueueDeclare {
            passive: true,
            exclusive: true,
            nowait: true,
            ..Default::default()
        },
    );
    golden(&wire, expected);
}

#[test]
fn queue_bind() {
    let wire = cat(&[
        &[0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x17], // size 23
        &[0x00, 0x32, 0x00, 0x14],                   // queue.bind (20)
        &[0x00, 0x00],
        &[0x02],
        b"q1",
        &[0x04],
        b"logs",
        &[0x03],
        b"a.b",
        &[0x01], // nowait
        &[0x00, 0x00, 0x00, 0x00],
        &[0xCE],
    ]);
    let expected = method(
        1,
        QueueBind {
            ticket: 0,
            queue: s("q1"),
            exchange: s("logs"),
            routing_key: s("a.b"),
            nowait: true,
            arguments: FieldTable::new(),
        },
    );
    golden(&wire, expected);
}

#[test]
fn exchange_declare() {
    let wire = cat(&[
        &[0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x31], // size 49
        &[0x00, 0x28, 0x00, 0x0A],                   // exchange(40).declare(10)
        &[0x00, 0x00],                               // ticket
        &[0x04],
        b"logs",
        &[0x06],
        b"fanout",
        &[0x0A], // durable<<1 | internal<<3 (passive, durable, auto-delete, internal, nowait)
        &[0x00, 0x00, 0x00, 0x1A], // arguments: 26 bytes
        &[0x12],
        b"alternate-exchange",
        b"S",
        &[0x00, 0x00, 0x00, 0x02],
        b"ae",
        &[0xCE],
    ]);
    let expected = method(
        1,
        ExchangeDeclare {
            ticket: 0,
            exchange: s("logs"),
            kind: s("fanout"),
            passive: false,
            durable: true,
            auto_delete: false,
            internal: true,
            nowait: false,
            arguments: table(vec![("alternate-exchange", FieldValue::str("ae"))]),
        },
    );
    golden(&wire, expected);
}

#[test]
fn exchange_unbind_ok_is_method_51() {
    let wire = [
        0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04, // size 4
        0x00, 0x28, 0x00, 0x33, // exchange(40).unbind-ok(51), not 41
        0xCE,
    ];
    golden(&wire, method(1, ExchangeUnbindOk {}));
    // And 40.41 is no method at all.
    let mut bad = BytesMut::from(
        &[
            0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0x00, 0x28, 0x00, 0x29, 0xCE,
        ][..],
    );
    assert_eq!(
        decode_frame(&mut bad, FRAME_MAX),
        Err(CodecError::UnknownMethod {
            class_id: 40,
            method_id: 41
        })
    );
}

#[test]
fn basic_consume() {
    let wire = cat(&[
        &[0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x1F], // size 31
        &[0x00, 0x3C, 0x00, 0x14],                   // basic.consume (20)
        &[0x00, 0x00],                               // ticket
        &[0x02],
        b"q1",
        &[0x00],                   // consumer-tag "" (server-generated)
        &[0x06],                   // no-ack<<1 | exclusive<<2
        &[0x00, 0x00, 0x00, 0x10], // arguments: 16 bytes
        &[0x0A],
        b"x-priority",
        b"I",
        &[0x00, 0x00, 0x00, 0x05],
        &[0xCE],
    ]);
    let expected = method(
        1,
        BasicConsume {
            ticket: 0,
            queue: s("q1"),
            consumer_tag: s(""),
            no_local: false,
            no_ack: true,
            exclusive: true,
            nowait: false,
            arguments: table(vec![("x-priority", FieldValue::I32(5))]),
        },
    );
    golden(&wire, expected);
}

#[test]
fn basic_qos() {
    let wire = [
        0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0B, // size 11
        0x00, 0x3C, 0x00, 0x0A, // basic.qos (10)
        0x00, 0x00, 0x00, 0x00, // prefetch-size 0
        0x00, 0x0A, // prefetch-count 10
        0x01, // global
        0xCE,
    ];
    let expected = method(
        1,
        BasicQos {
            prefetch_size: 0,
            prefetch_count: 10,
            global: true,
        },
    );
    golden(&wire, expected);
}

#[test]
fn confirm_select() {
    let wire = [
        0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, // size 5
        0x00, 0x55, 0x00, 0x0A, // confirm(85).select(10)
        0x00, // nowait 0
        0xCE,
    ];
    golden(&wire, method(1, ConfirmSelect { nowait: false }));
    let ok = [
        0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0x00, 0x55, 0x00, 0x0B, 0xCE,
    ];
    golden(&ok, method(1, ConfirmSelectOk {}));
}

#[test]
fn content_header_with_all_14_properties() {
    let wire = cat(&[
        &[0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x69], // header frame, ch 1, size 105
        &[0x00, 0x3C],                               // class basic
        &[0x00, 0x00],                               // weight
        &[0, 0, 0, 0, 0, 0, 0, 0x10],                // body-size 16
        &[0xFF, 0xFC],                               // flags: bits 15..2
        &[0x10],
        b"application/json", // content-type
        &[0x04],
        b"gzip", // content-encoding
        &[
            0x00, 0x00, 0x00, 0x08, 0x01, b'k', b'S', 0x00, 0x00, 0x00, 0x01, b'v',
        ], // headers {k: "v"}
        &[0x02], // delivery-mode
        &[0x05], // priority
        &[0x02],
        b"c1", // correlation-id
        &[0x15],
        b"amq.rabbitmq.reply-to", // reply-to
        &[0x05],
        b"60000", // expiration
        &[0x02],
        b"m1",                                             // message-id
        &[0x00, 0x00, 0x00, 0x00, 0x65, 0x53, 0xF1, 0x00], // timestamp 1700000000
        &[0x01],
        b"t", // type
        &[0x05],
        b"guest", // user-id
        &[0x03],
        b"app",  // app-id
        &[0x00], // cluster-id ""
        &[0xCE],
    ]);
    let properties = BasicProperties {
        content_type: Some(s("application/json")),
        content_encoding: Some(s("gzip")),
        headers: Some(table(vec![("k", FieldValue::str("v"))])),
        delivery_mode: Some(2),
        priority: Some(5),
        correlation_id: Some(s("c1")),
        reply_to: Some(s("amq.rabbitmq.reply-to")),
        expiration: Some(s("60000")),
        message_id: Some(s("m1")),
        timestamp: Some(1_700_000_000),
        kind: Some(s("t")),
        user_id: Some(s("guest")),
        app_id: Some(s("app")),
        cluster_id: Some(s("")),
    };
    let expected = Frame::Header {
        channel: 1,
        header: Box::new(ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: 16,
            properties,
        }),
    };
    golden(&wire, expected);
}

#[test]
fn content_header_with_no_properties() {
    let wire = [
        0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0E, // header frame, size 14
        0x00, 0x3C, 0x00, 0x00, // class 60, weight 0
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, // body-size 4096
        0x00, 0x00, // no flags
        0xCE,
    ];
    let expected = Frame::Header {
        channel: 1,
        header: Box::new(ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: 4096,
            properties: BasicProperties::default(),
        }),
    };
    golden(&wire, expected);
}

#[test]
fn content_header_single_property_flag_positions() {
    // delivery-mode alone is property 3: flag bit 12 (0x1000); timestamp is 9: bit 6 (0x0040).
    let wire = [
        0x02, 0x00, 0x05, 0x00, 0x00, 0x00, 0x17, // ch 5, size 23
        0x00, 0x3C, 0x00, 0x00, // class 60, weight 0
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // body-size 1
        0x10, 0x40, // delivery-mode | timestamp
        0x02, // delivery-mode 2
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // timestamp 1
        0xCE,
    ];
    let expected = Frame::Header {
        channel: 5,
        header: Box::new(ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: 1,
            properties: BasicProperties {
                delivery_mode: Some(2),
                timestamp: Some(1),
                ..Default::default()
            },
        }),
    };
    golden(&wire, expected);
}

#[test]
fn nested_table_with_every_type_tag() {
    // Inner table "all": one entry per RabbitMQ tag, keyed by the tag itself.
    let inner: &[&[u8]] = &[
        &[0x00, 0x00, 0x00, 0x87], // 135 bytes of entries
        &[0x01, b't', b't', 0x01],
        &[0x01, b'b', b'b', 0xFF],
        &[0x01, b'B', b'B', 0xFF],
        &[0x01, b's', b's', 0xFF, 0xFE],
        &[0x01, b'u', b'u', 0xFF, 0xFF],
        &[0x01, b'I', b'I', 0xFF, 0xFF, 0xFF, 0xFD],
        &[0x01, b'i', b'i', 0xFF, 0xFF, 0xFF, 0xFF],
        &[0x01, b'l', b'l', 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFC],
        &[0x01, b'f', b'f', 0x3F, 0xC0, 0x00, 0x00],       // 1.5f32
        &[0x01, b'd', b'd', 0x40, 0x04, 0, 0, 0, 0, 0, 0], // 2.5f64
        &[0x01, b'D', b'D', 0x02, 0x00, 0x00, 0x04, 0xD2], // 12.34
        &[0x01, b'S', b'S', 0x00, 0x00, 0x00, 0x02, b'h', b'i'],
        &[0x01, b'A', b'A', 0x00, 0x00, 0x00, 0x0C], // array: 12 bytes
        &[b'I', 0x00, 0x00, 0x00, 0x01],
        &[b'S', 0x00, 0x00, 0x00, 0x01, b'x'],
        b"V",
        &[0x01, b'T', b'T', 0x00, 0x00, 0x00, 0x00, 0x65, 0x53, 0xF1, 0x00],
        &[0x01, b'F', b'F', 0x00, 0x00, 0x00, 0x03, 0x01, b'k', b'V'],
        &[0x01, b'V', b'V'],
        &[0x01, b'x', b'x', 0x00, 0x00, 0x00, 0x03, 0x01, 0x02, 0x03],
    ];
    let inner = inner.concat();
    assert_eq!(inner.len(), 4 + 135);
    let wire = cat(&[
        &[0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0xA2], // header frame, size 162
        &[0x00, 0x3C, 0x00, 0x00],
        &[0, 0, 0, 0, 0, 0, 0, 0], // body-size 0
        &[0x20, 0x00],             // headers only (property 2, bit 13)
        &[0x00, 0x00, 0x00, 0x90], // headers: 144 bytes
        &[0x03],
        b"all",
        b"F",
        &inner,
        &[0xCE],
    ]);
    let all = table(vec![
        ("t", FieldValue::Bool(true)),
        ("b", FieldValue::I8(-1)),
        ("B", FieldValue::U8(255)),
        ("s", FieldValue::I16(-2)),
        ("u", FieldValue::U16(65535)),
        ("I", FieldValue::I32(-3)),
        ("i", FieldValue::U32(u32::MAX)),
        ("l", FieldValue::I64(-4)),
        ("f", FieldValue::F32(1.5)),
        ("d", FieldValue::F64(2.5)),
        (
            "D",
            FieldValue::Decimal {
                scale: 2,
                value: 1234,
            },
        ),
        ("S", FieldValue::str("hi")),
        (
            "A",
            FieldValue::Array(vec![FieldValue::I32(1), FieldValue::str("x"), FieldValue::Void]),
        ),
        ("T", FieldValue::Timestamp(1_700_000_000)),
        ("F", FieldValue::Table(table(vec![("k", FieldValue::Void)]))),
        ("V", FieldValue::Void),
        ("x", FieldValue::ByteArray(b(&[1, 2, 3]))),
    ]);
    let expected = Frame::Header {
        channel: 1,
        header: Box::new(ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: 0,
            properties: BasicProperties {
                headers: Some(table(vec![("all", FieldValue::Table(all))])),
                ..Default::default()
            },
        }),
    };
    golden(&wire, expected);
}

#[test]
fn spec_only_tags_u_and_l_decode_as_rabbitmq_types() {
    // 'U' (spec i16) and 'L' (spec i64) are accepted; we re-encode them as 's' and 'l'.
    let wire = [
        0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x22, // size 34
        0x00, 0x3C, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, // class, weight, body-size 0
        0x20, 0x00, // headers
        0x00, 0x00, 0x00, 0x10, // 16 bytes
        0x01, b'a', b'U', 0xFF, 0xFF, // a = -1i16
        0x01, b'b', b'L', 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, // b = 9i64
        0xCE,
    ];
    assert_eq!(wire.len() - 8, 34);
    let mut buf = BytesMut::from(&wire[..]);
    let frame = decode_frame(&mut buf, FRAME_MAX).unwrap().unwrap();
    let Frame::Header { header, .. } = &frame else {
        panic!("{frame:?}")
    };
    let headers = header.properties.headers.as_ref().unwrap();
    assert_eq!(headers.get("a"), Some(&FieldValue::I16(-1)));
    assert_eq!(headers.get("b"), Some(&FieldValue::I64(9)));
    let mut out = BytesMut::new();
    encode_frame(&mut out, &frame);
    let mut rabbit = wire;
    rabbit[27] = b's';
    rabbit[32] = b'l';
    assert_eq!(&out[..], &rabbit[..]);
}

#[test]
fn heartbeat_frame() {
    golden(
        &[0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xCE],
        Frame::Heartbeat { channel: 0 },
    );
}

#[test]
fn body_frame() {
    let wire = [
        0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o', 0xCE,
    ];
    golden(
        &wire,
        Frame::Body {
            channel: 1,
            body: b(b"hello"),
        },
    );
}

#[test]
fn empty_body_frame() {
    // A zero-length body frame is legal on the wire and must survive a round trip.
    let wire = [0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0xCE];
    golden(
        &wire,
        Frame::Body {
            channel: 1,
            body: Bytes::new(),
        },
    );
}

#[test]
fn tx_and_close_ok_methods_without_fields() {
    let cases: [(u16, u16, Method); 4] = [
        (10, 51, ConnectionCloseOk {}.into()),
        (90, 10, TxSelect {}.into()),
        (90, 21, TxCommitOk {}.into()),
        (60, 111, BasicRecoverOk {}.into()),
    ];
    for (class, meth, m) in cases {
        let [c0, c1] = class.to_be_bytes();
        let [m0, m1] = meth.to_be_bytes();
        let wire = [0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, c0, c1, m0, m1, 0xCE];
        golden(&wire, method(0, m));
    }
}

/// A whole publish as a client writes it: method, header, one 16-byte body frame.
#[test]
fn publish_sequence_through_the_assembler() {
    let body = b"0123456789abcdef";
    let wire = cat(&[
        // basic.publish exchange "" routing-key "q1"
        &[0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0B],
        &[0x00, 0x3C, 0x00, 0x28, 0x00, 0x00, 0x00, 0x02, b'q', b'1', 0x00],
        &[0xCE],
        // header: body-size 16, delivery-mode 2
        &[0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0F],
        &[
            0x00, 0x3C, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x10, 0x00, 0x02,
        ],
        &[0xCE],
        // body
        &[0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x10],
        body,
        &[0xCE],
    ]);
    let publish: Method = BasicPublish {
        routing_key: s("q1"),
        ..Default::default()
    }
    .into();
    let header = ContentHeader {
        class_id: 60,
        weight: 0,
        body_size: 16,
        properties: BasicProperties {
            delivery_mode: Some(2),
            ..Default::default()
        },
    };

    let mut buf = BytesMut::from(&wire[..]);
    let mut asm = ContentAssembler::new();
    let mut out = Vec::new();
    while let Some(frame) = decode_frame(&mut buf, FRAME_MAX).unwrap() {
        if let Assembled::Command(c) = asm.handle(frame).unwrap() {
            out.push(c);
        }
    }
    assert!(buf.is_empty());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].method, publish);
    assert_eq!(out[0].content, Some((Box::new(header.clone()), b(body))));

    let mut enc = BytesMut::new();
    encode_content(&mut enc, 1, &publish, &header, body, FRAME_MAX);
    assert_eq!(&enc[..], &wire[..]);

    // With frame_max 16 the body is split into two 8-byte body frames.
    let mut split = BytesMut::new();
    encode_content(&mut split, 1, &publish, &header, body, 16);
    let tail = &split[split.len() - 32..];
    assert_eq!(&tail[..7], &[0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x08]);
    assert_eq!(&tail[7..15], b"01234567");
    assert_eq!(tail[15], 0xCE);
    assert_eq!(&tail[16..23], &[0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x08]);
}

#[test]
fn framing_errors() {
    // Bad frame end.
    let mut buf = BytesMut::from(&[0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xCD][..]);
    assert_eq!(
        decode_frame(&mut buf, FRAME_MAX),
        Err(CodecError::BadFrameEnd(0xCD))
    );
    // Unknown frame type (4: the PDF's wrong heartbeat type).
    let mut buf = BytesMut::from(&[0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xCE][..]);
    assert_eq!(
        decode_frame(&mut buf, FRAME_MAX),
        Err(CodecError::UnknownFrameType(4))
    );
    // frame-max limits the whole frame: payload 4089 + 8 = 4097 > 4096, rejected before buffering.
    let mut buf = BytesMut::from(&[0x03, 0x00, 0x01, 0x00, 0x00, 0x0F, 0xF9][..]);
    assert_eq!(
        decode_frame(&mut buf, 4096),
        Err(CodecError::FrameTooLarge {
            size: 4097,
            max: 4096
        })
    );
    // ...while payload 4088 + 8 = 4096 is fine (just needs more bytes).
    let mut buf = BytesMut::from(&[0x03, 0x00, 0x01, 0x00, 0x00, 0x0F, 0xF8][..]);
    assert_eq!(decode_frame(&mut buf, 4096), Ok(None));
    // Trailing bytes after the last method field are a syntax error (502).
    let mut buf = BytesMut::from(
        &[
            0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x00, 0x55, 0x00, 0x0A, 0x00, 0x00, 0xCE,
        ][..],
    );
    let err = decode_frame(&mut buf, FRAME_MAX).unwrap_err();
    assert_eq!(err.reply_code().code(), 502);
    assert_eq!(err.class_method(), (85, 10));
}
