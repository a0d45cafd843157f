//! Property tests: field tables, basic properties and all 66 methods round-trip; the frame decoder
//! is incremental (any cut of a byte stream gives the same frames); and random or mutated bytes
//! never make the decoder or the content assembler panic.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use proptest::option::of;
use proptest::prelude::*;
use proptest::strategy::Union;
use warren_codec::methods::*;
use warren_codec::types::{Reader, put_table};
use warren_codec::{
    Assembled, BasicProperties, Command, ContentAssembler, ContentHeader, FieldTable, FieldValue, Frame,
    Method, ShortStr, decode_frame, encode_content, encode_frame,
};

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// A short string of at most 255 octets: mostly short arbitrary Unicode, sometimes long ASCII
/// right up to the limit.
fn shortstr() -> impl Strategy<Value = ShortStr> {
    prop_oneof![
        8 => ".{0,40}",
        1 => "[a-z]{200,255}",
        1 => Just(String::new()),
    ]
    .prop_map(ShortStr::from)
}

fn longstr() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..48).prop_map(Bytes::from)
}

/// Floats either finite (so `PartialEq` works) or any bit pattern (compare bytes instead).
#[derive(Clone, Copy, Debug)]
enum Floats {
    Finite,
    AnyBits,
}

fn f32s(f: Floats) -> BoxedStrategy<f32> {
    match f {
        Floats::Finite => any::<f32>().prop_filter("finite", |x| x.is_finite()).boxed(),
        Floats::AnyBits => any::<u32>().prop_map(f32::from_bits).boxed(),
    }
}

fn f64s(f: Floats) -> BoxedStrategy<f64> {
    match f {
        Floats::Finite => any::<f64>().prop_filter("finite", |x| x.is_finite()).boxed(),
        Floats::AnyBits => any::<u64>().prop_map(f64::from_bits).boxed(),
    }
}

fn leaf_value(f: Floats) -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<bool>().prop_map(FieldValue::Bool),
        any::<i8>().prop_map(FieldValue::I8),
        any::<u8>().prop_map(FieldValue::U8),
        any::<i16>().prop_map(FieldValue::I16),
        any::<u16>().prop_map(FieldValue::U16),
        any::<i32>().prop_map(FieldValue::I32),
        any::<u32>().prop_map(FieldValue::U32),
        any::<i64>().prop_map(FieldValue::I64),
        f32s(f).prop_map(FieldValue::F32),
        f64s(f).prop_map(FieldValue::F64),
        (any::<u8>(), any::<i32>()).prop_map(|(scale, value)| FieldValue::Decimal { scale, value }),
        longstr().prop_map(FieldValue::LongStr),
        any::<u64>().prop_map(FieldValue::Timestamp),
        Just(FieldValue::Void),
        longstr().prop_map(FieldValue::ByteArray),
    ]
}

/// Any field value, nesting arrays and tables a few levels deep.
fn field_value(f: Floats) -> impl Strategy<Value = FieldValue> {
    leaf_value(f).prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(FieldValue::Array),
            prop::collection::vec((shortstr(), inner), 0..6)
                .prop_map(|entries| FieldValue::Table(FieldTable(entries))),
        ]
    })
}

fn field_table_with(f: Floats) -> impl Strategy<Value = FieldTable> {
    prop::collection::vec((shortstr(), field_value(f)), 0..8).prop_map(FieldTable)
}

fn field_table() -> BoxedStrategy<FieldTable> {
    field_table_with(Floats::Finite).boxed()
}

fn basic_properties() -> impl Strategy<Value = BasicProperties> {
    (
        (
            of(shortstr()),
            of(shortstr()),
            of(field_table()),
            of(any::<u8>()),
            of(any::<u8>()),
        ),
        (
            of(shortstr()),
            of(shortstr()),
            of(shortstr()),
            of(shortstr()),
            of(any::<u64>()),
        ),
        (of(shortstr()), of(shortstr()), of(shortstr()), of(shortstr())),
    )
        .prop_map(|(a, b, c)| BasicProperties {
            content_type: a.0,
            content_encoding: a.1,
            headers: a.2,
            delivery_mode: a.3,
            priority: a.4,
            correlation_id: b.0,
            reply_to: b.1,
            expiration: b.2,
            message_id: b.3,
            timestamp: b.4,
            kind: c.0,
            user_id: c.1,
            app_id: c.2,
            cluster_id: c.3,
        })
}

/// A strategy for one method struct with a strategy per field.
macro_rules! m {
    ($t:ident) => {
        Just(Method::from($t {})).boxed()
    };
    ($t:ident { $($f:ident : $s:expr),+ $(,)? }) => {
        ($($s,)+).prop_map(|($($f,)+)| Method::from($t { $($f),+ })).boxed()
    };
}

/// Every one of the 66 methods, with every field random.
fn any_method() -> impl Strategy<Value = Method> {
    let ss = shortstr;
    let ls = longstr;
    let tb = field_table;
    let b = any::<bool>;
    let u8_ = any::<u8>;
    let u16_ = any::<u16>;
    let u32_ = any::<u32>;
    let u64_ = any::<u64>;
    let all: Vec<BoxedStrategy<Method>> = vec![
        m!(ConnectionStart {
            version_major: u8_(),
            version_minor: u8_(),
            server_properties: tb(),
            mechanisms: ls(),
            locales: ls()
        }),
        m!(ConnectionStartOk {
            client_properties: tb(),
            mechanism: ss(),
            response: ls(),
            locale: ss()
        }),
        m!(ConnectionSecure { challenge: ls() }),
        m!(ConnectionSecureOk { response: ls() }),
        m!(ConnectionTune {
            channel_max: u16_(),
            frame_max: u32_(),
            heartbeat: u16_()
        }),
        m!(ConnectionTuneOk {
            channel_max: u16_(),
            frame_max: u32_(),
            heartbeat: u16_()
        }),
        m!(ConnectionOpen {
            virtual_host: ss(),
            capabilities: ss(),
            insist: b()
        }),
        m!(ConnectionOpenOk { known_hosts: ss() }),
        m!(ConnectionClose {
            reply_code: u16_(),
            reply_text: ss(),
            class_id: u16_(),
            method_id: u16_()
        }),
        m!(ConnectionCloseOk),
        m!(ConnectionBlocked { reason: ss() }),
        m!(ConnectionUnblocked),
        m!(ConnectionUpdateSecret {
            new_secret: ls(),
            reason: ss()
        }),
        m!(ConnectionUpdateSecretOk),
        m!(ChannelOpen { out_of_band: ss() }),
        m!(ChannelOpenOk { channel_id: ls() }),
        m!(ChannelFlow { active: b() }),
        m!(ChannelFlowOk { active: b() }),
        m!(ChannelClose {
            reply_code: u16_(),
            reply_text: ss(),
            class_id: u16_(),
            method_id: u16_()
        }),
        m!(ChannelCloseOk),
        m!(AccessRequest {
            realm: ss(),
            exclusive: b(),
            passive: b(),
            active: b(),
            write: b(),
            read: b()
        }),
        m!(AccessRequestOk { ticket: u16_() }),
        m!(ExchangeDeclare {
            ticket: u16_(),
            exchange: ss(),
            kind: ss(),
            passive: b(),
            durable: b(),
            auto_delete: b(),
            internal: b(),
            nowait: b(),
            arguments: tb()
        }),
        m!(ExchangeDeclareOk),
        m!(ExchangeDelete {
            ticket: u16_(),
            exchange: ss(),
            if_unused: b(),
            nowait: b()
        }),
        m!(ExchangeDeleteOk),
        m!(ExchangeBind {
            ticket: u16_(),
            destination: ss(),
            source: ss(),
            routing_key: ss(),
            nowait: b(),
            arguments: tb()
        }),
        m!(ExchangeBindOk),
        m!(ExchangeUnbind {
            ticket: u16_(),
            destination: ss(),
            source: ss(),
            routing_key: ss(),
            nowait: b(),
            arguments: tb()
        }),
        m!(ExchangeUnbindOk),
        m!(QueueDeclare {
            ticket: u16_(),
            queue: ss(),
            passive: b(),
            durable: b(),
            exclusive: b(),
            auto_delete: b(),
            nowait: b(),
            arguments: tb()
        }),
        m!(QueueDeclareOk {
            queue: ss(),
            message_count: u32_(),
            consumer_count: u32_()
        }),
        m!(QueueBind {
            ticket: u16_(),
            queue: ss(),
            exchange: ss(),
            routing_key: ss(),
            nowait: b(),
            arguments: tb()
        }),
        m!(QueueBindOk),
        m!(QueuePurge {
            ticket: u16_(),
            queue: ss(),
            nowait: b()
        }),
        m!(QueuePurgeOk {
            message_count: u32_()
        }),
        m!(QueueDelete {
            ticket: u16_(),
            queue: ss(),
            if_unused: b(),
            if_empty: b(),
            nowait: b()
        }),
        m!(QueueDeleteOk {
            message_count: u32_()
        }),
        m!(QueueUnbind {
            ticket: u16_(),
            queue: ss(),
            exchange: ss(),
            routing_key: ss(),
            arguments: tb()
        }),
        m!(QueueUnbindOk),
        m!(BasicQos {
            prefetch_size: u32_(),
            prefetch_count: u16_(),
            global: b()
        }),
        m!(BasicQosOk),
        m!(BasicConsume {
            ticket: u16_(),
            queue: ss(),
            consumer_tag: ss(),
            no_local: b(),
            no_ack: b(),
            exclusive: b(),
            nowait: b(),
            arguments: tb()
        }),
        m!(BasicConsumeOk { consumer_tag: ss() }),
        m!(BasicCancel {
            consumer_tag: ss(),
            nowait: b()
        }),
        m!(BasicCancelOk { consumer_tag: ss() }),
        m!(BasicPublish {
            ticket: u16_(),
            exchange: ss(),
            routing_key: ss(),
            mandatory: b(),
            immediate: b()
        }),
        m!(BasicReturn {
            reply_code: u16_(),
            reply_text: ss(),
            exchange: ss(),
            routing_key: ss()
        }),
        m!(BasicDeliver {
            consumer_tag: ss(),
            delivery_tag: u64_(),
            redelivered: b(),
            exchange: ss(),
            routing_key: ss()
        }),
        m!(BasicGet {
            ticket: u16_(),
            queue: ss(),
            no_ack: b()
        }),
        m!(BasicGetOk {
            delivery_tag: u64_(),
            redelivered: b(),
            exchange: ss(),
            routing_key: ss(),
            message_count: u32_()
        }),
        m!(BasicGetEmpty { cluster_id: ss() }),
        m!(BasicAck {
            delivery_tag: u64_(),
            multiple: b()
        }),
        m!(BasicReject {
            delivery_tag: u64_(),
            requeue: b()
        }),
        m!(BasicRecoverAsync { requeue: b() }),
        m!(BasicRecover { requeue: b() }),
        m!(BasicRecoverOk),
        m!(BasicNack {
            delivery_tag: u64_(),
            multiple: b(),
            requeue: b()
        }),
        m!(ConfirmSelect { nowait: b() }),
        m!(ConfirmSelectOk),
        m!(TxSelect),
        m!(TxSelectOk),
        m!(TxCommit),
        m!(TxCommitOk),
        m!(TxRollback),
        m!(TxRollbackOk),
    ];
    assert_eq!(all.len(), 66);
    Union::new(all)
}

fn content_header() -> impl Strategy<Value = ContentHeader> {
    (any::<u16>(), any::<u16>(), any::<u64>(), basic_properties()).prop_map(
        |(class_id, weight, body_size, properties)| ContentHeader {
            class_id,
            weight,
            body_size,
            properties,
        },
    )
}

fn any_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        4 => (any::<u16>(), any_method()).prop_map(|(channel, method)| Frame::Method { channel, method }),
        2 => (any::<u16>(), content_header()).prop_map(|(channel, header)| Frame::Header { channel, header: Box::new(header) }),
        2 => (any::<u16>(), prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(channel, b)| Frame::Body { channel, body: Bytes::from(b) }),
        1 => any::<u16>().prop_map(|channel| Frame::Heartbeat { channel }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn table_bytes(t: &FieldTable) -> Bytes {
    let mut out = BytesMut::new();
    put_table(&mut out, t);
    out.freeze()
}

fn frame_bytes(f: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    encode_frame(&mut out, f);
    out
}

/// Feeds `wire` to `decode_frame` in chunks of the given sizes (cycling), decoding after every
/// append until it says "need more". Returns the frames, or the first error.
fn decode_in_chunks(
    wire: &[u8],
    chunks: &[usize],
    frame_max: u32,
) -> Result<Vec<Frame>, warren_codec::CodecError> {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < wire.len() {
        let n = chunks[i % chunks.len()].min(wire.len() - at);
        i += 1;
        buf.extend_from_slice(&wire[at..at + n]);
        at += n;
        while let Some(f) = decode_frame(&mut buf, frame_max)? {
            frames.push(f);
        }
    }
    assert!(
        buf.is_empty(),
        "bytes left over after the last frame: {}",
        buf.len()
    );
    Ok(frames)
}

/// Runs bytes through the decoder and per-channel assemblers the way a connection would; any
/// error stops it. Only a panic fails.
fn drive(wire: &[u8], chunks: &[usize], frame_max: u32) -> usize {
    let mut buf = BytesMut::new();
    let mut assemblers: HashMap<u16, ContentAssembler> = HashMap::new();
    let mut commands = 0;
    let mut at = 0;
    let mut i = 0;
    while at < wire.len() {
        let n = chunks[i % chunks.len()].max(1).min(wire.len() - at);
        i += 1;
        buf.extend_from_slice(&wire[at..at + n]);
        at += n;
        loop {
            match decode_frame(&mut buf, frame_max) {
                Ok(None) => break,
                Err(e) => {
                    let _ = (e.reply_code(), e.class_method(), e.to_string());
                    return commands;
                }
                Ok(Some(Frame::Heartbeat { .. })) => {}
                Ok(Some(frame)) => {
                    let a = assemblers.entry(frame.channel()).or_default();
                    match a.handle(frame) {
                        Ok(Assembled::Command(_)) => commands += 1,
                        Ok(Assembled::Pending) => {}
                        Err(e) => {
                            let _ = (e.reply_code(), e.to_string());
                            return commands;
                        }
                    }
                }
            }
        }
    }
    commands
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Tables with every value type (finite floats) decode to the same value.
    #[test]
    fn field_table_round_trip(t in field_table()) {
        let bytes = table_bytes(&t);
        let mut r = Reader::new(&bytes);
        prop_assert_eq!(r.table().unwrap(), t);
        prop_assert_eq!(r.remaining(), 0);
    }

    /// With floats of any bit pattern (NaNs included), the bytes survive decode → encode exactly.
    #[test]
    fn field_table_round_trip_bitwise(t in field_table_with(Floats::AnyBits)) {
        let bytes = table_bytes(&t);
        let decoded = Reader::new(&bytes).table().unwrap();
        prop_assert_eq!(table_bytes(&decoded), bytes);
    }

    /// Each value, alone, round-trips through the tagged-value encoding.
    #[test]
    fn field_value_round_trip(v in field_value(Floats::Finite)) {
        let mut out = BytesMut::new();
        warren_codec::types::put_value(&mut out, &v);
        let bytes = out.freeze();
        let mut r = Reader::new(&bytes);
        prop_assert_eq!(r.value().unwrap(), v);
        prop_assert!(r.finish().is_ok());
    }

    #[test]
    fn basic_properties_round_trip(p in basic_properties(), body_size in any::<u64>()) {
        let h = ContentHeader { class_id: 60, weight: 0, body_size, properties: p };
        let mut out = BytesMut::new();
        h.encode(&mut out);
        // The flags word has exactly one bit per property that is set, and never bits 1 or 0.
        let flags = u16::from_be_bytes([out[12], out[13]]);
        prop_assert_eq!(flags, h.properties.flags());
        prop_assert_eq!(flags & 0b11, 0);
        prop_assert_eq!(ContentHeader::decode(&out.freeze()).unwrap(), h);
    }

    /// Every method round-trips through its payload encoding and through a whole frame.
    #[test]
    fn method_round_trip(m in any_method(), channel in any::<u16>()) {
        let mut payload = BytesMut::new();
        m.encode(&mut payload);
        prop_assert_eq!(&Method::decode(&payload.freeze()).unwrap(), &m);

        let frame = Frame::Method { channel, method: m };
        let mut wire = frame_bytes(&frame);
        prop_assert_eq!(decode_frame(&mut wire, 0).unwrap(), Some(frame));
        prop_assert!(wire.is_empty());
    }

    /// A random stream of frames, cut at arbitrary boundaries, decodes to the same frames.
    #[test]
    fn stream_is_incremental(
        frames in prop::collection::vec(any_frame(), 0..12),
        chunks in prop::collection::vec(1usize..97, 1..16),
    ) {
        let mut wire = BytesMut::new();
        for f in &frames {
            encode_frame(&mut wire, f);
        }
        let got = decode_in_chunks(&wire, &chunks, 0).unwrap();
        prop_assert_eq!(&got, &frames);
        // Byte by byte gives the same.
        let one = decode_in_chunks(&wire, &[1], 0).unwrap();
        prop_assert_eq!(one, frames);
    }

    /// Content written by `encode_content` with any frame_max is reassembled exactly.
    #[test]
    fn content_reassembles(
        channel in 1u16..,
        props in basic_properties(),
        body in prop::collection::vec(any::<u8>(), 0..2000),
        frame_max in prop_oneof![Just(0u32), 9u32..600, Just(4096u32), Just(131072u32)],
        chunks in prop::collection::vec(1usize..300, 1..8),
    ) {
        let method: Method = BasicPublish { exchange: "ex".into(), routing_key: "rk".into(), ..Default::default() }.into();
        let header = ContentHeader { class_id: 60, weight: 0, body_size: body.len() as u64, properties: props };
        let mut wire = BytesMut::new();
        encode_content(&mut wire, channel, &method, &header, &body, frame_max);
        // Random properties can make the header frame bigger than a small frame_max (a method or
        // header frame cannot be split), so decode without a limit and check body frames below.
        let frames = decode_in_chunks(&wire, &chunks, 0).unwrap();
        if frame_max != 0 {
            for f in &frames {
                if let Frame::Body { body, .. } = f {
                    prop_assert!(body.len() + 8 <= frame_max as usize);
                }
            }
        }
        let mut asm = ContentAssembler::new();
        let mut done: Vec<Command> = Vec::new();
        for f in frames {
            if let Assembled::Command(c) = asm.handle(f).unwrap() {
                done.push(c);
            }
        }
        prop_assert!(asm.is_idle());
        prop_assert_eq!(done.len(), 1);
        prop_assert_eq!(&done[0].method, &method);
        prop_assert_eq!(done[0].content.clone(), Some((Box::new(header), Bytes::from(body))));
    }

    /// Random bytes never panic the decoder or the assemblers.
    #[test]
    fn random_bytes_never_panic(
        wire in prop::collection::vec(any::<u8>(), 0..1024),
        chunks in prop::collection::vec(1usize..128, 1..8),
    ) {
        drive(&wire, &chunks, 131072);
        drive(&wire, &chunks, 4096);
    }

    /// Random bytes behind a plausible frame header (so the payload decoders get exercised).
    #[test]
    fn random_payloads_never_panic(
        kind in prop_oneof![Just(1u8), Just(2u8), Just(3u8), Just(8u8)],
        class_method in prop::sample::select(
            warren_codec::generated::METHOD_TABLE.iter().map(|m| (m.class_id, m.method_id)).collect::<Vec<_>>()
        ),
        payload in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut wire = vec![kind, 0, 1];
        let mut p = Vec::new();
        if kind == 1 {
            p.extend_from_slice(&class_method.0.to_be_bytes());
            p.extend_from_slice(&class_method.1.to_be_bytes());
        }
        p.extend_from_slice(&payload);
        wire.extend_from_slice(&(p.len() as u32).to_be_bytes());
        wire.extend_from_slice(&p);
        wire.push(0xCE);
        drive(&wire, &[wire.len()], 131072);
    }

    /// Valid streams with a few bytes flipped, or truncated, never panic.
    #[test]
    fn mutated_streams_never_panic(
        frames in prop::collection::vec(any_frame(), 1..8),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        chunks in prop::collection::vec(1usize..200, 1..8),
    ) {
        let mut wire = BytesMut::new();
        for f in &frames {
            encode_frame(&mut wire, f);
        }
        let mut wire = wire.to_vec();
        for (at, x) in flips {
            let i = at.index(wire.len());
            wire[i] ^= x;
        }
        drive(&wire, &chunks, 131072);
        wire.truncate(cut.index(wire.len() + 1));
        drive(&wire, &chunks, 0);
    }
}

#[test]
fn decoder_state_is_untouched_while_waiting() {
    // decode_frame must not consume anything until a whole frame is there.
    let f = Frame::Method {
        channel: 7,
        method: BasicAck {
            delivery_tag: 9,
            multiple: true,
        }
        .into(),
    };
    let wire = frame_bytes(&f);
    for cut in 0..wire.len() {
        let mut buf = BytesMut::from(&wire[..cut]);
        assert_eq!(decode_frame(&mut buf, 0), Ok(None));
        assert_eq!(&buf[..], &wire[..cut]);
    }
}

/// A header may claim any body size; two body frames must not make the assembler try to
/// preallocate it (that would panic with "capacity overflow" or abort on allocation failure).
#[test]
fn huge_declared_body_size_does_not_preallocate() {
    for body_size in [u64::MAX, 1 << 62, 1 << 40] {
        let mut a = ContentAssembler::new();
        let publish = Frame::Method {
            channel: 1,
            method: BasicPublish::default().into(),
        };
        assert_eq!(a.handle(publish).unwrap(), Assembled::Pending);
        let header = Frame::Header {
            channel: 1,
            header: Box::new(ContentHeader {
                class_id: 60,
                weight: 0,
                body_size,
                properties: BasicProperties::default(),
            }),
        };
        assert_eq!(a.handle(header).unwrap(), Assembled::Pending);
        for _ in 0..3 {
            let body = Frame::Body {
                channel: 1,
                body: Bytes::from_static(b"abc"),
            };
            assert_eq!(a.handle(body).unwrap(), Assembled::Pending);
        }
    }
}

/// With no frame_max, a frame header claiming a 4 GiB payload must not make `decode_frame`
/// reserve 4 GiB up front.
#[test]
fn huge_frame_size_does_not_reserve_it() {
    let mut buf = BytesMut::from(&[0x03, 0x00, 0x01, 0xFF, 0xFF, 0xFF, 0xF0, 0x00][..]);
    assert_eq!(decode_frame(&mut buf, 0), Ok(None));
    assert!(buf.capacity() < 64 << 20, "reserved {} bytes", buf.capacity());
}
