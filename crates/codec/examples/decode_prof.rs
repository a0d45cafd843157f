//! A tiny, deterministic decode loop for instruction-count profiling, e.g.
//! `valgrind --tool=callgrind target/release/examples/decode_prof warren publish16 100000`.
//! Modes: `warren` or `amqp` (a fresh buffer per message), `steady` or `amqp-steady` (a reused
//! read buffer, as the criterion bench's `decode/*`); cases: `publish16`, `publish4k`, `deliver16`.
//! Mode `race` (fresh buffers) or `race-steady` (reused read buffers) interleaves short timed rounds of both decoders (Warren's buffers built untimed,
//! as criterion's `iter_batched` does) and prints medians and the median per-round ratio: on a
//! noisy shared machine, interleaving keeps both sides under the same load.

use std::hint::black_box;

use amq_protocol::frame::{AMQPFrame, parse_frame};
use bytes::BytesMut;
use warren_codec::methods::{BasicDeliver, BasicPublish};
use warren_codec::{BasicProperties, ContentHeader, Frame, Method, decode_frame, encode_content};

fn wire(deliver: bool, body_len: usize) -> Vec<u8> {
    let method = if deliver {
        Method::from(BasicDeliver {
            consumer_tag: "amq.ctag-Xq3vY8mK2pL9".into(),
            delivery_tag: 42,
            redelivered: false,
            exchange: "amq.direct".into(),
            routing_key: "bench.routing.key".into(),
        })
    } else {
        Method::from(BasicPublish {
            ticket: 0,
            exchange: "amq.direct".into(),
            routing_key: "bench.routing.key".into(),
            mandatory: false,
            immediate: false,
        })
    };
    let header = ContentHeader {
        class_id: 60,
        weight: 0,
        body_size: body_len as u64,
        properties: BasicProperties {
            content_type: Some("application/octet-stream".into()),
            delivery_mode: Some(2),
            ..Default::default()
        },
    };
    let body = vec![7u8; body_len];
    let mut out = BytesMut::new();
    encode_content(&mut out, 1, &method, &header, &body, 131072);
    out.to_vec()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("warren");
    let case = args.get(2).map(String::as_str).unwrap_or("publish16");
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let w = match case {
        "publish4k" => wire(false, 4096),
        "deliver16" => wire(true, 16),
        _ => wire(false, 16),
    };
    let mut bodies = 0usize;
    match mode {
        "race" => {
            race(&w, n);
            return;
        }
        "race-steady" => {
            race_steady(&w, n);
            return;
        }
        "amqp" => {
            for _ in 0..n {
                let mut input = black_box(&w[..]);
                while !input.is_empty() {
                    let (rest, frame) = parse_frame(input).expect("decodes");
                    bodies += matches!(black_box(frame), AMQPFrame::Body(..)) as usize;
                    input = rest;
                }
            }
        }
        "steady" => {
            // The bench's `decode/*` model: a reused 64 KiB read buffer, refilled each message.
            let mut buf = BytesMut::with_capacity(64 * 1024);
            for _ in 0..n {
                buf.extend_from_slice(black_box(&w));
                while let Some(frame) = decode_frame(&mut buf, 131072).expect("decodes") {
                    bodies += matches!(black_box(frame), Frame::Body { .. }) as usize;
                }
            }
        }
        "amqp-steady" => {
            let mut v: Vec<u8> = Vec::with_capacity(64 * 1024);
            for _ in 0..n {
                v.clear();
                v.extend_from_slice(black_box(&w));
                let mut input = &v[..];
                while !input.is_empty() {
                    let (rest, frame) = parse_frame(input).expect("decodes");
                    bodies += matches!(black_box(frame), AMQPFrame::Body(..)) as usize;
                    input = rest;
                }
            }
        }
        "setup" => {
            // Only the buffer construction the criterion bench does outside the timed section.
            for _ in 0..n {
                black_box(BytesMut::from(&w[..]));
            }
        }
        _ => {
            for _ in 0..n {
                let mut buf = BytesMut::from(&w[..]);
                while let Some(frame) = decode_frame(black_box(&mut buf), 131072).expect("decodes") {
                    bodies += matches!(black_box(frame), Frame::Body { .. }) as usize;
                }
            }
        }
    }
    assert_eq!(bodies, n);
}

fn warren_batch(bufs: Vec<BytesMut>) -> usize {
    let mut bodies = 0;
    for mut buf in bufs {
        while let Some(frame) = decode_frame(&mut buf, 131072).expect("decodes") {
            bodies += matches!(black_box(frame), Frame::Body { .. }) as usize;
        }
    }
    bodies
}

fn amqp_batch(w: &[u8], n: usize) -> usize {
    let mut bodies = 0;
    for _ in 0..n {
        let mut input = black_box(w);
        while !input.is_empty() {
            let (rest, frame) = parse_frame(input).expect("decodes");
            bodies += matches!(black_box(frame), AMQPFrame::Body(..)) as usize;
            input = rest;
        }
    }
    bodies
}

fn race(w: &[u8], rounds: usize) {
    use std::time::Instant;
    const BATCH: usize = 1000;
    let (mut ws, mut am, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let bufs: Vec<BytesMut> = (0..BATCH).map(|_| BytesMut::from(w)).collect();
        let t = Instant::now();
        assert_eq!(warren_batch(black_box(bufs)), BATCH);
        let tw = t.elapsed().as_nanos() as f64 / BATCH as f64;
        let t = Instant::now();
        assert_eq!(amqp_batch(w, BATCH), BATCH);
        let ta = t.elapsed().as_nanos() as f64 / BATCH as f64;
        ws.push(tw);
        am.push(ta);
        ratios.push(ta / tw);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    println!(
        "warren {:.1} ns  amq-protocol {:.1} ns  median ratio {:.2}x",
        med(&mut ws),
        med(&mut am),
        med(&mut ratios)
    );
}

fn race_steady(w: &[u8], rounds: usize) {
    use std::time::Instant;
    const BATCH: usize = 1000;
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut vbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let (mut ws, mut am, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let mut bodies = 0;
        for _ in 0..BATCH {
            rbuf.extend_from_slice(black_box(w));
            while let Some(frame) = decode_frame(&mut rbuf, 131072).expect("decodes") {
                bodies += matches!(black_box(frame), Frame::Body { .. }) as usize;
            }
        }
        let tw = t.elapsed().as_nanos() as f64 / BATCH as f64;
        assert_eq!(bodies, BATCH);
        let t = Instant::now();
        let mut bodies = 0;
        for _ in 0..BATCH {
            vbuf.clear();
            vbuf.extend_from_slice(black_box(w));
            let mut input = &vbuf[..];
            while !input.is_empty() {
                let (rest, frame) = parse_frame(input).expect("decodes");
                bodies += matches!(black_box(frame), AMQPFrame::Body(..)) as usize;
                input = rest;
            }
        }
        let ta = t.elapsed().as_nanos() as f64 / BATCH as f64;
        assert_eq!(bodies, BATCH);
        ws.push(tw);
        am.push(ta);
        ratios.push(ta / tw);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    println!(
        "warren {:.1} ns  amq-protocol {:.1} ns  median ratio {:.2}x",
        med(&mut ws),
        med(&mut am),
        med(&mut ratios)
    );
}
