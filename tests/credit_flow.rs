//! Credit flow and fairness under overload: a publisher that floods the broker as fast as a
//! socket allows (a thread writing pre-encoded publishes, never waiting for anything) must not
//! starve the consumers of the queues it feeds. A queue whose consumer keeps up paces the
//! publisher (its connection parks and shows `state: flow`, and the consumer takes a large
//! share of the flood while it lasts); a queue whose consumer is slow lets its backlog grow and page to disk
//! without slowing the other queues of a fanout. Nothing is lost either way.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use warren_codec::methods::BasicPublish;
use warren_codec::{BasicProperties, Method, ShortStr, encode_basic_header, encode_body, encode_method};

/// How long each flood lasts.
const FLOOD: Duration = Duration::from_secs(3);
/// Sampling period of the per-window delivery counts.
const WINDOW: Duration = Duration::from_millis(500);

/// A publishing connection driven from its own OS thread: it writes batches of publishes to
/// `exchange`/`key` until told to stop, always ending on a whole message, and reports how
/// many it wrote.
struct Flood {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Flood {
    async fn start(b: &common::TestBroker, exchange: &str, key: &str) -> Flood {
        let mut raw = common::raw::Raw::handshake(b.running.amqp_addr, 0).await;
        raw.open_channel(1).await;
        let frame_max = raw.frame_max;
        let stream = raw.stream.into_std().expect("std stream");
        stream.set_nonblocking(false).unwrap();
        stream.set_write_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut one = BytesMut::new();
        let m: Method = BasicPublish {
            exchange: ShortStr::from(exchange),
            routing_key: ShortStr::from(key),
            ..Default::default()
        }
        .into();
        encode_method(&mut one, 1, &m);
        let body = b"flood-message-16";
        encode_basic_header(&mut one, 1, body.len() as u64, &BasicProperties::default());
        encode_body(&mut one, 1, body, frame_max);
        let per_msg = one.len() as u64;
        let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 256).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut s = stream;
            let mut written = 0u64;
            let mut off = 0usize;
            loop {
                if off == 0 && stop2.load(Ordering::Acquire) {
                    break;
                }
                match s.write(&batch[off..]) {
                    Ok(0) => break,
                    Ok(n) => {
                        written += n as u64;
                        off = (off + n) % batch.len();
                        // Stop on a message boundary: finish the message being written.
                        if stop2.load(Ordering::Acquire) && written % per_msg == 0 {
                            break;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => panic!("flood write: {e}"),
                }
            }
            // Keep the socket open until the test has counted everything (dropped with the
            // thread's result being read: the broker sees EOF after the last whole message).
            let _ = s.flush();
            std::mem::forget(s);
            written / per_msg
        });
        Flood { stop, thread }
    }

    /// Stops the flood; the number of whole messages written.
    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Release);
        tokio::task::spawn_blocking(move || self.thread.join().expect("flood thread"))
            .await
            .unwrap()
    }
}

/// A consumer on its own connection counting what it receives; `ack_every` 0 = auto-ack,
/// else manual acks (multiple) every `ack_every` deliveries with the given prefetch; `delay`
/// is its per-message processing time (a slow client).
async fn counting_consumer(
    b: &common::TestBroker,
    queue: &str,
    prefetch: u16,
    ack_every: u64,
    delay: Option<Duration>,
) -> (lapin::Connection, Arc<AtomicU64>) {
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    if ack_every > 0 {
        ch.basic_qos(prefetch, BasicQosOptions::default()).await.unwrap();
    }
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            format!("count-{queue}").as_str().into(),
            BasicConsumeOptions {
                no_ack: ack_every == 0,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(Ok(d)) = consumer.next().await {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            n += 1;
            c.store(n, Ordering::Release);
            if ack_every > 0 && n % ack_every == 0 {
                let _ = d.ack(BasicAckOptions { multiple: true }).await;
            }
        }
    });
    (conn, count)
}

/// Samples `f` every [`WINDOW`] for the flood's duration.
async fn sample<T>(mut f: impl FnMut() -> T) -> Vec<T> {
    let mut out = vec![f()];
    let end = Instant::now() + FLOOD;
    while Instant::now() < end {
        tokio::time::sleep(WINDOW).await;
        out.push(f());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_publisher_never_starves_a_manual_ack_consumer() {
    let b = common::start().await;
    let setup = b.connect().await;
    let ch = setup.create_channel().await.unwrap();
    common::declare(&ch, "flooded").await;
    let (_cconn, consumed) = counting_consumer(&b, "flooded", 100, 10, None).await;
    let broker = b.running.broker.clone();
    let q = common::queue(&b, "flooded").unwrap();
    let flows_before = broker.metrics.flow_entered.load(Ordering::Relaxed);

    let flood = Flood::start(&b, "", "flooded").await;
    let samples = sample(|| {
        let in_flow = broker
            .connections()
            .iter()
            .any(|c| c.state(warren_server::util::now_ms()) == "flow");
        (consumed.load(Ordering::Acquire), q.counts().ready, in_flow)
    })
    .await;
    let published = flood.stop().await;

    // The consumer got messages in every window of the flood, not only once it ended.
    for w in samples.windows(2).skip(1) {
        assert!(
            w[1].0 > w[0].0,
            "the consumer starved during the flood: deliveries per {WINDOW:?}: {:?}",
            samples.iter().map(|s| s.0).collect::<Vec<_>>()
        );
    }
    // Without credit flow this consumer got ~0.1% of a flood while it lasted (the
    // publisher's connection held the core); paced, it takes a large share.
    let during = samples.last().unwrap().0;
    assert!(
        during * 10 >= published,
        "the consumer took only {during} of {published} messages while the flood lasted"
    );
    assert!(
        samples.iter().any(|s| s.2),
        "the flooding connection never showed state flow"
    );
    assert!(broker.metrics.flow_entered.load(Ordering::Relaxed) > flows_before);

    // Nothing lost: every whole message written reaches the consumer.
    common::wait_until(60, "every flooded message delivered", || {
        consumed.load(Ordering::Acquire) >= published
    })
    .await;
    assert_eq!(consumed.load(Ordering::Acquire), published);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_with_one_slow_queue_pages_it_instead_of_stopping_the_others() {
    let b = common::start().await;
    let setup = b.connect().await;
    let ch = setup.create_channel().await.unwrap();
    ch.exchange_declare(
        "fan".into(),
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut fast = Vec::new();
    for name in (0..9).map(|i| format!("fast-{i}")).chain(["slow".to_string()]) {
        common::declare(&ch, &name).await;
        ch.queue_bind(
            name.as_str().into(),
            "fan".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        if name != "slow" {
            fast.push(counting_consumer(&b, &name, 0, 0, None).await);
        }
    }
    let (_sconn, slow_consumed) = counting_consumer(&b, "slow", 10, 1, Some(Duration::from_millis(5))).await;
    let slow_q = common::queue(&b, "slow").unwrap();

    let flood = Flood::start(&b, "fan", "").await;
    let samples = sample(|| {
        let fast_counts: Vec<u64> = fast.iter().map(|(_, c)| c.load(Ordering::Acquire)).collect();
        (fast_counts, slow_q.counts().ready, slow_q.memory_counts().1)
    })
    .await;
    let published = flood.stop().await;

    // Every fast consumer kept receiving throughout.
    for w in samples.windows(2).skip(1) {
        for (i, (a, b)) in w[0].0.iter().zip(&w[1].0).enumerate() {
            assert!(b > a, "fast consumer {i} stalled during the flood: {:?}", samples);
        }
    }
    // The slow queue did not hold the publisher to its pace: its backlog grew past many credit
    // windows and went to disk.
    let slow_max = samples.iter().map(|s| s.1).max().unwrap();
    assert!(
        slow_max > 5 * warren_core::flow::DEFAULT_WINDOW,
        "the slow queue's backlog stayed at {slow_max}: the publisher was held to the slow consumer's pace"
    );
    assert!(
        samples.iter().any(|s| s.2 > 0),
        "the slow queue's backlog never paged to disk (max ready {slow_max})"
    );

    // Nothing lost: each fast consumer gets every message; the slow queue holds the rest.
    for (i, (_, c)) in fast.iter().enumerate() {
        common::wait_until(60, &format!("fast consumer {i} receives everything"), || {
            c.load(Ordering::Acquire) >= published
        })
        .await;
        assert_eq!(c.load(Ordering::Acquire), published, "fast consumer {i}");
    }
    let counts = slow_q.counts();
    let acked = slow_q.stats.acked.load(Ordering::Acquire);
    assert_eq!(
        counts.ready as u64 + counts.unacked as u64 + acked,
        published,
        "slow queue: ready {} + unacked {} + acked {acked} (consumer saw {})",
        counts.ready,
        counts.unacked,
        slow_consumed.load(Ordering::Acquire)
    );
}
