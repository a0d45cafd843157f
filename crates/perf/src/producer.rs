//! One producer: its own connection and channel 1, pipelined publishes encoded into one buffer
//! and written once per batch (method + header frames pre-encoded per routing key with
//! `warren-codec`, the body stamped in place), an optional per-producer rate, a window of
//! outstanding confirms, and a reader task that settles confirms from the broker's acks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::Notify;
use tokio::time::Instant as TokioInstant;
use warren_codec::frame::{FRAME_BODY, FRAME_END};
use warren_codec::methods::*;
use warren_codec::{BasicProperties, Method, encode_basic_header, encode_body, encode_method};

use crate::accounting::{ConfirmTracker, ProducerTally};
use crate::body::{BODY_HEADER, MAX_SEQ, Stamp};
use crate::client::{Conn, READ_BUF, Result, close_reason, scan_frames};
use crate::config::{Pacing, PerfConfig};
use crate::stats::Shared;
use crate::uri::AmqpUri;

/// What a producer did.
#[derive(Debug, Clone, Default)]
pub struct ProducerOutcome {
    /// Publishes and confirm state.
    pub tally: ProducerTally,
    /// basic.return frames received (unroutable messages).
    pub returned: u64,
    /// When the first batch was written, ns since the origin.
    pub start_ns: u64,
    /// When the last batch was written.
    pub end_ns: u64,
}

/// State the confirm reader shares with the publishing loop.
#[derive(Debug, Default)]
struct ConfirmState {
    tracker: Mutex<ConfirmTracker>,
    notify: Notify,
    failed: AtomicBool,
    returned: std::sync::atomic::AtomicU64,
}

impl ConfirmState {
    fn tracker(&self) -> std::sync::MutexGuard<'_, ConfirmTracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A thread that wakes a rate-limited producer every `period` (std's sleep is precise to
/// tens of microseconds where tokio's timer has a 1 ms tick); it ends when dropped.
struct Ticker {
    notify: Arc<Notify>,
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(period: Duration) -> Ticker {
        let notify = Arc::new(Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let (n, s) = (notify.clone(), stop.clone());
        std::thread::Builder::new()
            .name("perf-ticker".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(period);
                    n.notify_one();
                }
            })
            .expect("spawn the pacing thread");
        Ticker { notify, stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Pre-encoded method + content-header frames for one routing key.
fn template(cfg: &PerfConfig, key: &str) -> Bytes {
    let mut b = BytesMut::new();
    let exchange = cfg.exchange_name();
    encode_method(
        &mut b,
        1,
        &Method::from(BasicPublish {
            exchange: exchange.as_str().into(),
            routing_key: key.into(),
            ..Default::default()
        }),
    );
    let props = BasicProperties {
        delivery_mode: cfg.persistent.then_some(2),
        ..Default::default()
    };
    encode_basic_header(&mut b, 1, body_size(cfg) as u64, &props);
    b.freeze()
}

/// Body size actually sent (the stamp needs 16 bytes).
pub fn body_size(cfg: &PerfConfig) -> usize {
    cfg.size.max(BODY_HEADER)
}

/// Runs producer `id` until its duration or message count is reached, then waits for its
/// outstanding confirms (up to the drain timeout) and closes.
pub async fn run(
    id: usize,
    cfg: Arc<PerfConfig>,
    uri: AmqpUri,
    shared: Arc<Shared>,
    deadline: Option<Instant>,
) -> Result<ProducerOutcome> {
    let mut conn = Conn::connect(&uri, cfg.frame_max, &format!("perf-producer-{id}")).await?;
    conn.open_channel(1).await?;
    let confirms = cfg.confirm > 0;
    if confirms {
        match conn.rpc(1, ConfirmSelect { nowait: false }).await? {
            Method::ConfirmSelectOk(_) => {}
            other => return Err(format!("expected confirm.select-ok, got {other:?}")),
        }
    }
    let frame_max = conn.frame_max;
    let templates: Vec<Bytes> = cfg.producer_keys(id).iter().map(|k| template(&cfg, k)).collect();
    let size = body_size(&cfg);
    let single_frame = frame_max == 0 || size + 8 <= frame_max as usize;
    let padding = vec![0u8; size - BODY_HEADER];
    let mut scratch = Vec::with_capacity(size);

    let Conn {
        stream,
        rbuf,
        mut wbuf,
        ..
    } = conn;
    let (rd, mut wr) = stream.into_split();
    let state = Arc::new(ConfirmState {
        tracker: Mutex::new(ConfirmTracker::new()),
        ..Default::default()
    });
    let reader = tokio::spawn(read_loop(rd, rbuf, state.clone(), shared.clone()));

    let limit = cfg.pmessages.unwrap_or(u64::MAX).min(MAX_SEQ);
    let deadline = deadline.map(TokioInstant::from_std);
    let start = TokioInstant::now();
    let start_ns = shared.now_ns();
    let mut sent: u64 = 0;
    let mut error = None;
    let fast = cfg.rate >= 1000.0;
    let spin = cfg.pacing == Pacing::Spin && fast;
    let ticker =
        (cfg.pacing == Pacing::Tick && fast).then(|| Ticker::start(Duration::from_micros(cfg.pace_us)));
    wbuf.clear();
    while sent < limit {
        if deadline.is_some_and(|d| TokioInstant::now() >= d) {
            break;
        }
        if state.failed.load(Ordering::Relaxed) {
            break;
        }
        let mut n = (cfg.batch as u64).min(limit - sent);
        if cfg.rate > 0.0 {
            let due = (start.elapsed().as_secs_f64() * cfg.rate) as u64 + 1;
            if due <= sent {
                // tokio's timer ticks every millisecond: sleeping on it would send what fell
                // due in the last tick as one burst, and the burst's own queueing would count
                // as the broker's latency.
                if let Some(t) = &ticker {
                    t.notify.notified().await;
                    continue;
                }
                if spin {
                    tokio::task::yield_now().await;
                    continue;
                }
                let next = start + Duration::from_secs_f64(sent as f64 / cfg.rate);
                let until = deadline.map_or(next, |d| d.min(next));
                tokio::time::sleep_until(until).await;
                continue;
            }
            n = n.min(due - sent);
        }
        if confirms {
            let outstanding = state.tracker().outstanding();
            if outstanding >= cfg.confirm {
                let wait = state.notify.notified();
                match deadline {
                    Some(d) => {
                        let _ = tokio::time::timeout_at(d, wait).await;
                    }
                    None => wait.await,
                }
                continue;
            }
            n = n.min(cfg.confirm - outstanding);
            state.tracker().on_publish(n);
        }
        let ts = shared.now_ns();
        for i in 0..n {
            let seq = sent + i;
            let tpl = &templates[(seq % templates.len() as u64) as usize];
            wbuf.extend_from_slice(tpl);
            let stamp = Stamp {
                sent_ns: ts,
                producer: id as u16,
                seq,
            }
            .encode();
            if single_frame {
                wbuf.reserve(size + 8);
                wbuf.put_u8(FRAME_BODY);
                wbuf.put_u16(1);
                wbuf.put_u32(size as u32);
                wbuf.extend_from_slice(&stamp);
                wbuf.extend_from_slice(&padding);
                wbuf.put_u8(FRAME_END);
            } else {
                scratch.clear();
                scratch.extend_from_slice(&stamp);
                scratch.extend_from_slice(&padding);
                encode_body(&mut wbuf, 1, &scratch, frame_max);
            }
        }
        if let Err(e) = wr.write_all(&wbuf).await {
            error = Some(format!("producer {id}: write: {e}"));
            break;
        }
        wbuf.clear();
        sent += n;
        Shared::add(&shared.published, n);
    }
    let end_ns = shared.now_ns();
    drop(ticker);

    // Wait for the last confirms; give up after the drain timeout without progress.
    if confirms && error.is_none() {
        let idle = Duration::from_secs_f64(cfg.drain_timeout);
        while state.tracker().outstanding() > 0 && !state.failed.load(Ordering::Relaxed) {
            // Every notification is progress (confirms arrived) or a failure.
            if tokio::time::timeout(idle, state.notify.notified()).await.is_err() {
                break;
            }
        }
    }
    // Close: the reader sees close-ok (or the socket closing) and ends.
    wbuf.clear();
    encode_method(
        &mut wbuf,
        0,
        &Method::from(ConnectionClose {
            reply_code: 200,
            reply_text: "bye".into(),
            ..Default::default()
        }),
    );
    let _ = wr.write_all(&wbuf).await;
    // Wait for close-ok: a broker still working through our last writes (flow control) answers
    // only after them, and closing the socket earlier could drop them.
    let close_wait = Duration::from_secs_f64(cfg.drain_timeout.max(2.0));
    let reader_err = match tokio::time::timeout(close_wait, reader).await {
        Ok(Ok(r)) => r.err(),
        Ok(Err(e)) => Some(format!("producer {id}: reader task: {e}")),
        Err(_) => None,
    };
    if let Some(e) = error.or(reader_err) {
        shared.error(e);
    }
    let tracker = state.tracker().clone();
    Ok(ProducerOutcome {
        tally: ProducerTally {
            published: sent,
            confirms: confirms.then_some(tracker),
        },
        returned: state.returned.load(Ordering::Relaxed),
        start_ns,
        end_ns,
    })
}

/// Reads the producer's socket: confirms, returns, and a broker close.
async fn read_loop(
    mut rd: OwnedReadHalf,
    mut rbuf: BytesMut,
    state: Arc<ConfirmState>,
    shared: Arc<Shared>,
) -> Result<()> {
    let mut confirms: Vec<(u64, bool, bool)> = Vec::with_capacity(64);
    rbuf.reserve(64 * 1024);
    let result = loop {
        let mut done = None;
        let scanned = scan_frames(&rbuf, |f| {
            match f.method_id() {
                Some((60, 80)) | Some((60, 120)) if f.payload.len() >= 13 => {
                    let tag = u64::from_be_bytes(f.payload[4..12].try_into().expect("8 bytes"));
                    let multiple = f.payload[12] & 1 != 0;
                    confirms.push((tag, multiple, f.payload[3] == 120));
                }
                Some((60, 50)) => {
                    state.returned.fetch_add(1, Ordering::Relaxed);
                }
                Some((10, 51)) => done = Some(Ok(())),
                Some((20, 40)) | Some((10, 50)) => {
                    let m = f.decode_method()?;
                    done = Some(Err(close_reason(&m).unwrap_or_default()));
                }
                _ => {}
            }
            Ok(())
        });
        match scanned {
            Ok(n) => rbuf.advance(n),
            Err(e) => break Err(e),
        }
        if !confirms.is_empty() {
            let mut acked = 0;
            {
                let mut t = state.tracker();
                for &(tag, multiple, nack) in &confirms {
                    let before = t.acked();
                    t.on_confirm(tag, multiple, nack);
                    acked += t.acked() - before;
                }
            }
            confirms.clear();
            Shared::add(&shared.confirmed, acked);
            state.notify.notify_one();
        }
        if let Some(r) = done {
            break r;
        }
        if rbuf.capacity() - rbuf.len() < 16 * 1024 {
            rbuf.reserve(READ_BUF.min(rbuf.len() + 64 * 1024));
        }
        match rd.read_buf(&mut rbuf).await {
            Ok(0) => break Err("producer connection closed by broker".into()),
            Ok(_) => {}
            Err(e) => break Err(format!("producer read: {e}")),
        }
    };
    if result.is_err() {
        state.failed.store(true, Ordering::Relaxed);
        state.notify.notify_one();
    }
    result
}
