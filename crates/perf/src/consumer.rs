//! One consumer: its own connection and channel 1, basic.qos + basic.consume, then a read loop
//! that parses every complete frame in a large read buffer without copying (basic.deliver,
//! content header and body frames by hand; anything else through the codec), records each
//! batch of deliveries under one lock, and coalesces acks (`multiple = true` every N
//! deliveries, and whenever deliveries pause).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use warren_codec::frame::{FRAME_BODY, FRAME_HEADER};
use warren_codec::methods::*;
use warren_codec::{Method, encode_method};

use crate::accounting::Seen;
use crate::body::Stamp;
use crate::client::{Conn, FrameRef, READ_BUF, Result, close_reason, scan_frames};
use crate::config::PerfConfig;
use crate::stats::Shared;
use crate::uri::AmqpUri;

/// How long deliveries may pause before pending acks are flushed anyway.
const ACK_FLUSH: Duration = Duration::from_millis(5);

/// A delivery in progress (method seen, waiting for header and body frames).
#[derive(Debug, Default)]
struct Incoming {
    redelivered: bool,
    remaining: u64,
    stamp: Option<Stamp>,
    active: bool,
}

/// Parses `basic.deliver`'s delivery tag and redelivered flag from a method payload.
fn parse_deliver(p: &[u8]) -> Option<(u64, bool)> {
    let ctag = *p.get(4)? as usize;
    let at = 5 + ctag;
    let tag = u64::from_be_bytes(p.get(at..at + 8)?.try_into().ok()?);
    Some((tag, p.get(at + 8)? & 1 != 0))
}

/// Runs consumer `id` until `stop` turns true. Sends `Ok(())` on `ready` once consuming.
pub async fn run(
    id: usize,
    cfg: Arc<PerfConfig>,
    uri: AmqpUri,
    shared: Arc<Shared>,
    ready: mpsc::UnboundedSender<Result<()>>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let setup = async {
        let mut conn = Conn::connect(&uri, cfg.frame_max, &format!("perf-consumer-{id}")).await?;
        conn.open_channel(1).await?;
        if !cfg.auto_ack && cfg.prefetch > 0 {
            let qos = BasicQos {
                prefetch_count: cfg.prefetch,
                ..Default::default()
            };
            match conn.rpc(1, qos).await? {
                Method::BasicQosOk(_) => {}
                other => return Err(format!("expected basic.qos-ok, got {other:?}")),
            }
        }
        let consume = BasicConsume {
            queue: cfg.queue_name(cfg.consumer_queue(id)).as_str().into(),
            consumer_tag: format!("perf-c{id}").as_str().into(),
            no_ack: cfg.auto_ack,
            ..Default::default()
        };
        match conn.rpc(1, consume).await? {
            Method::BasicConsumeOk(_) => Ok(conn),
            other => Err(format!("expected basic.consume-ok, got {other:?}")),
        }
    };
    let conn = match setup.await {
        Ok(c) => {
            let _ = ready.send(Ok(()));
            c
        }
        Err(e) => {
            let e = format!("consumer {id}: {e}");
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
    };
    let group = if cfg.groups() > 1 {
        cfg.consumer_queue(id)
    } else {
        0
    };
    let ack_every = cfg.multi_ack_every.max(1);
    let manual = !cfg.auto_ack;

    let Conn {
        stream,
        mut rbuf,
        mut wbuf,
        ..
    } = conn;
    let (mut rd, mut wr) = stream.into_split();
    rbuf.reserve(READ_BUF);
    let mut cur = Incoming::default();
    let mut batch: Vec<(Stamp, bool)> = Vec::with_capacity(1024);
    let mut corrupt = 0u64;
    let mut last_tag = 0u64;
    let mut unacked = 0u64;
    let result: Result<()> = loop {
        // Parse every complete frame in the buffer.
        let mut closed = None;
        let scanned = scan_frames(&rbuf, |f: FrameRef<'_>| {
            match f.kind {
                FRAME_BODY if cur.active => {
                    if cur.stamp.is_none() {
                        cur.stamp = Stamp::decode(f.payload);
                        if cur.stamp.is_none() {
                            corrupt += 1;
                        }
                    }
                    cur.remaining = cur.remaining.saturating_sub(f.payload.len() as u64);
                    if cur.remaining == 0 {
                        cur.active = false;
                        if let Some(s) = cur.stamp.take() {
                            batch.push((s, cur.redelivered));
                        }
                    }
                }
                FRAME_HEADER if cur.active && f.payload.len() >= 12 => {
                    cur.remaining = u64::from_be_bytes(f.payload[4..12].try_into().expect("8 bytes"));
                    if cur.remaining == 0 {
                        cur.active = false;
                        corrupt += 1;
                    }
                }
                _ => match f.method_id() {
                    Some((60, 60)) => {
                        let (tag, redelivered) = parse_deliver(f.payload).ok_or("malformed basic.deliver")?;
                        cur = Incoming {
                            redelivered,
                            remaining: u64::MAX,
                            stamp: None,
                            active: true,
                        };
                        last_tag = tag;
                        unacked += 1;
                    }
                    Some((20, 40)) | Some((10, 50)) | Some((60, 30)) => {
                        let m = f.decode_method()?;
                        closed = Some(close_reason(&m).unwrap_or_else(|| format!("{m:?}")));
                    }
                    _ => {}
                },
            }
            Ok(())
        });
        match scanned {
            Ok(n) => rbuf.advance(n),
            Err(e) => break Err(e),
        }
        if !batch.is_empty() {
            let now = shared.now_ns();
            let mut new = 0;
            {
                let mut t = shared.tally();
                for &(s, redelivered) in &batch {
                    let lat = now.saturating_sub(s.sent_ns).max(1);
                    t.latency.saturating_record(lat);
                    t.interval.saturating_record(lat);
                    if t.acct.record(group, s.producer as usize, s.seq, redelivered) != Seen::Duplicate {
                        new += 1;
                    }
                }
                t.first_ns.get_or_insert(now);
                t.last_ns = now;
            }
            Shared::add(&shared.consumed, batch.len() as u64);
            Shared::add(&shared.unique, new);
            batch.clear();
        }
        if let Some(reason) = closed {
            break Err(reason);
        }
        if manual && unacked >= ack_every {
            if let Err(e) = send_ack(&mut wr, &mut wbuf, last_tag).await {
                break Err(e);
            }
            unacked = 0;
        }
        if *stop.borrow() {
            break Ok(());
        }
        if rbuf.capacity() - rbuf.len() < 64 * 1024 {
            rbuf.reserve(READ_BUF);
        }
        tokio::select! {
            r = rd.read_buf(&mut rbuf) => match r {
                Ok(0) => break Err("consumer connection closed by broker".into()),
                Ok(_) => {}
                Err(e) => break Err(format!("consumer read: {e}")),
            },
            _ = stop.changed() => break Ok(()),
            _ = tokio::time::sleep(ACK_FLUSH), if manual && unacked > 0 => {
                if let Err(e) = send_ack(&mut wr, &mut wbuf, last_tag).await {
                    break Err(e);
                }
                unacked = 0;
            }
        }
    };
    if manual && unacked > 0 && result.is_ok() {
        let _ = send_ack(&mut wr, &mut wbuf, last_tag).await;
    }
    if corrupt > 0 {
        shared.tally().acct.corrupt += corrupt;
    }
    match rd.reunite(wr) {
        Ok(stream) => {
            Conn {
                stream,
                rbuf,
                wbuf,
                frame_max: 0,
            }
            .close()
            .await
        }
        Err(_) => {}
    }
    result.map_err(|e| format!("consumer {id}: {e}"))
}

async fn send_ack(wr: &mut tokio::net::tcp::OwnedWriteHalf, wbuf: &mut BytesMut, tag: u64) -> Result<()> {
    wbuf.clear();
    encode_method(
        wbuf,
        1,
        &Method::from(BasicAck {
            delivery_tag: tag,
            multiple: true,
        }),
    );
    wr.write_all(wbuf).await.map_err(|e| format!("ack write: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_codec::frame::decode_frame;
    use warren_codec::{BasicProperties, encode_content};

    #[test]
    fn parses_deliver_fields_like_the_codec() {
        let mut buf = BytesMut::new();
        let deliver = Method::from(BasicDeliver {
            consumer_tag: "perf-c7".into(),
            delivery_tag: 0x0102_0304_0506,
            redelivered: true,
            exchange: "x".into(),
            routing_key: "perf-1".into(),
        });
        let header = warren_codec::ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: 16,
            properties: BasicProperties::default(),
        };
        encode_content(&mut buf, 1, &deliver, &header, &[0u8; 16], 4096);
        let mut seen = Vec::new();
        let n = scan_frames(&buf, |f| {
            seen.push((f.kind, f.method_id().and_then(|_| parse_deliver(f.payload))));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(seen[0], (1, Some((0x0102_0304_0506, true))));
        assert_eq!((seen[1].0, seen[2].0), (FRAME_HEADER, FRAME_BODY));
        // The codec agrees on the frame boundaries.
        let mut b = buf.clone();
        for _ in 0..3 {
            assert!(decode_frame(&mut b, 0).unwrap().is_some());
        }
        assert!(b.is_empty());
    }
}
