//! Codec throughput, Warren vs amq-protocol (the codec lapin uses), side by side.
//!
//! Three messages, each a method frame + content header frame + one body frame:
//! 1. basic.publish with a 16 B body, 2. basic.publish with a 4 KiB body,
//! 3. basic.deliver with a 16 B body.
//!
//! - `decode/*`: a server's steady state. Each iteration the message's bytes arrive in a reused
//!   read buffer (an `extend_from_slice`, standing in for the socket read, timed for both
//!   libraries), then all three frames are parsed out of it and dropped. Warren's `decode_frame`
//!   splits a 64 KiB `BytesMut` (as `warren-server`'s connection loop does; once the frames are
//!   dropped the buffer is reclaimed in place, so there is no per-message allocation);
//!   amq-protocol's `parse_frame` reads a `&[u8]` of a reused `Vec<u8>`.
//! - `decode_fresh/*`: each message in its own freshly allocated buffer, built outside the timed
//!   section with `iter_batched` (a `BytesMut` for Warren, a `Vec<u8>` for amq-protocol) and
//!   freed inside it, for both. Inputs are cold and each costs a `free`, so this measures the
//!   allocator and the cache as much as the codec. (An earlier version of this bench gave only
//!   Warren fresh buffers and let amq-protocol re-read one hot slice: see docs/benchmarks.md.)
//! - `encode/*`: write the three frames into a reused buffer (cleared each iteration).
//!
//! Run: `cargo bench -p warren-codec --bench codec -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame, WriteContext, gen_frame, parse_frame};
use amq_protocol::protocol::{AMQPClass, basic as amqp_basic};
use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use warren_codec::methods::{BasicDeliver, BasicPublish};
use warren_codec::{BasicProperties, ContentHeader, Frame, Method, decode_frame, encode_content};

const CHANNEL: u16 = 1;
const FRAME_MAX: u32 = 131072;
const EXCHANGE: &str = "amq.direct";
const ROUTING_KEY: &str = "bench.routing.key";
const CONSUMER_TAG: &str = "amq.ctag-Xq3vY8mK2pL9";
const CONTENT_TYPE: &str = "application/octet-stream";

/// One message in both libraries' types.
struct Case {
    name: &'static str,
    method: Method,
    header: ContentHeader,
    body: Bytes,
    amqp: [AMQPFrame; 3],
    wire: Vec<u8>,
}

fn case(name: &'static str, deliver: bool, body_len: usize) -> Case {
    let body = Bytes::from((0..body_len).map(|i| i as u8).collect::<Vec<u8>>());
    let (method, amqp_method) = if deliver {
        (
            Method::from(BasicDeliver {
                consumer_tag: CONSUMER_TAG.into(),
                delivery_tag: 42,
                redelivered: false,
                exchange: EXCHANGE.into(),
                routing_key: ROUTING_KEY.into(),
            }),
            amqp_basic::AMQPMethod::Deliver(amqp_basic::Deliver {
                consumer_tag: CONSUMER_TAG.into(),
                delivery_tag: 42,
                redelivered: false,
                exchange: EXCHANGE.into(),
                routing_key: ROUTING_KEY.into(),
            }),
        )
    } else {
        (
            Method::from(BasicPublish {
                ticket: 0,
                exchange: EXCHANGE.into(),
                routing_key: ROUTING_KEY.into(),
                mandatory: false,
                immediate: false,
            }),
            amqp_basic::AMQPMethod::Publish(amqp_basic::Publish {
                exchange: EXCHANGE.into(),
                routing_key: ROUTING_KEY.into(),
                mandatory: false,
                immediate: false,
            }),
        )
    };
    let header = ContentHeader {
        class_id: 60,
        weight: 0,
        body_size: body_len as u64,
        properties: BasicProperties {
            content_type: Some(CONTENT_TYPE.into()),
            delivery_mode: Some(2),
            ..Default::default()
        },
    };
    let amqp = [
        AMQPFrame::Method(CHANNEL, AMQPClass::Basic(amqp_method)),
        AMQPFrame::Header(
            CHANNEL,
            AMQPContentHeader {
                class_id: 60,
                body_size: body_len as u64,
                properties: amqp_basic::AMQPProperties::default()
                    .with_content_type(CONTENT_TYPE.into())
                    .with_delivery_mode(2),
            },
        ),
        AMQPFrame::Body(CHANNEL, body.to_vec()),
    ];
    let mut wire = BytesMut::new();
    encode_content(&mut wire, CHANNEL, &method, &header, &body, FRAME_MAX);
    let wire = wire.to_vec();

    // Both encoders must produce the same bytes, or the comparison is meaningless.
    let mut theirs = Vec::new();
    for f in &amqp {
        theirs = gen_frame(f)(WriteContext::from(theirs))
            .expect("amq-protocol encodes")
            .write;
    }
    assert_eq!(
        theirs, wire,
        "{name}: amq-protocol and Warren disagree on the bytes"
    );

    Case {
        name,
        method,
        header,
        body,
        amqp,
        wire,
    }
}

fn warren_decode(buf: &mut BytesMut) -> usize {
    let mut n = 0;
    while let Some(frame) = decode_frame(buf, FRAME_MAX).expect("decodes") {
        n += matches!(black_box(frame), Frame::Body { .. }) as usize;
    }
    n
}

fn amqp_decode(mut input: &[u8]) -> usize {
    let mut n = 0;
    while !input.is_empty() {
        let (rest, frame) = parse_frame(input).expect("amq-protocol decodes");
        n += matches!(black_box(frame), AMQPFrame::Body(..)) as usize;
        input = rest;
    }
    n
}

fn bench(c: &mut Criterion) {
    let cases = [
        case("publish_16B", false, 16),
        case("publish_4KiB", false, 4096),
        case("deliver_16B", true, 16),
    ];
    for k in &cases {
        assert_eq!(warren_decode(&mut BytesMut::from(&k.wire[..])), 1);
        assert_eq!(amqp_decode(&k.wire), 1);
    }

    for k in &cases {
        let mut g = c.benchmark_group(format!("decode/{}", k.name));
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        g.bench_function("warren", |b| {
            b.iter(|| {
                rbuf.extend_from_slice(black_box(&k.wire));
                let n = warren_decode(&mut rbuf);
                debug_assert!(rbuf.is_empty());
                n
            })
        });
        let mut vbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
        g.bench_function("amq-protocol", |b| {
            b.iter(|| {
                vbuf.clear();
                vbuf.extend_from_slice(black_box(&k.wire));
                amqp_decode(&vbuf)
            })
        });
        g.finish();
    }

    for k in &cases {
        let mut g = c.benchmark_group(format!("decode_fresh/{}", k.name));
        g.bench_function("warren", |b| {
            b.iter_batched(
                || BytesMut::from(&k.wire[..]),
                |mut buf| warren_decode(black_box(&mut buf)),
                BatchSize::SmallInput,
            )
        });
        g.bench_function("amq-protocol", |b| {
            b.iter_batched(
                || k.wire.clone(),
                |buf| amqp_decode(black_box(&buf)),
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }

    for k in &cases {
        let mut g = c.benchmark_group(format!("encode/{}", k.name));
        let mut out = BytesMut::with_capacity(8192);
        g.bench_function("warren", |b| {
            b.iter(|| {
                out.clear();
                encode_content(
                    &mut out,
                    CHANNEL,
                    &k.method,
                    &k.header,
                    black_box(&k.body),
                    FRAME_MAX,
                );
                black_box(out.len())
            })
        });
        let mut vec: Vec<u8> = Vec::with_capacity(8192);
        g.bench_function("amq-protocol", |b| {
            b.iter(|| {
                let mut w = std::mem::take(&mut vec);
                w.clear();
                for f in black_box(&k.amqp) {
                    w = gen_frame(f)(WriteContext::from(w)).expect("encodes").write;
                }
                let len = w.len();
                vec = w;
                black_box(len)
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
