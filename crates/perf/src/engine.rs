//! A whole run: declare the topology (exchange, queues purged, bindings), start consumers,
//! start producers, print progress once a second, wait for the producers, drain (until every
//! expected delivery arrived or the drain goes `--drain-timeout` seconds without progress),
//! stop consumers, delete the topology, and build the [`Report`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use warren_codec::methods::*;
use warren_codec::{FieldTable, FieldValue};

use crate::client::{Conn, Result};
use crate::config::{ExchangeType, PerfConfig};
use crate::producer::{self, ProducerOutcome};
use crate::report::{Latency, Report, thousands};
use crate::stats::{Shared, process_cpu_seconds, steal_seconds, steal_share};
use crate::uri::AmqpUri;
use crate::{accounting::ProducerTally, consumer};

async fn expect(conn: &mut Conn, method: impl Into<warren_codec::Method>, what: &str) -> Result<()> {
    // A refusal arrives as a channel.close, which `rpc` turns into an error.
    conn.rpc(1, method)
        .await
        .map(|_| ())
        .map_err(|e| format!("{what}: {e}"))
}

/// Declares the exchange, the queues (purged) and the bindings on a setup connection.
async fn setup(cfg: &PerfConfig, uri: &AmqpUri) -> Result<Conn> {
    let mut conn = Conn::connect(uri, cfg.frame_max, "perf-setup").await?;
    conn.open_channel(1).await?;
    let exchange = cfg.exchange_name();
    if !exchange.is_empty() {
        let kind = match cfg.exchange_type {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Topic => "topic",
        };
        let declare = ExchangeDeclare {
            exchange: exchange.as_str().into(),
            kind: kind.into(),
            durable: cfg.durable,
            ..Default::default()
        };
        expect(&mut conn, declare, "exchange.declare").await?;
    }
    for q in 0..cfg.queues {
        let name = cfg.queue_name(q);
        let mut arguments = FieldTable::new();
        if cfg.quorum_queue {
            arguments.insert("x-queue-type", FieldValue::LongStr(Bytes::from_static(b"quorum")));
        }
        let declare = QueueDeclare {
            queue: name.as_str().into(),
            durable: cfg.durable_queues(),
            arguments,
            ..Default::default()
        };
        expect(&mut conn, declare, &format!("queue.declare {name}")).await?;
        let purge = QueuePurge {
            queue: name.as_str().into(),
            ..Default::default()
        };
        expect(&mut conn, purge, &format!("queue.purge {name}")).await?;
    }
    for (q, key) in cfg.bindings_to_declare() {
        let bind = QueueBind {
            queue: cfg.queue_name(q).as_str().into(),
            exchange: exchange.as_str().into(),
            routing_key: key.as_str().into(),
            ..Default::default()
        };
        expect(&mut conn, bind, "queue.bind").await?;
    }
    Ok(conn)
}

/// Deletes what [`setup`] declared, then closes the setup connection.
async fn teardown(cfg: &PerfConfig, mut conn: Conn) -> Result<()> {
    for q in 0..cfg.queues {
        let del = QueueDelete {
            queue: cfg.queue_name(q).as_str().into(),
            ..Default::default()
        };
        expect(&mut conn, del, "queue.delete").await?;
    }
    let exchange = cfg.exchange_name();
    if !exchange.is_empty() {
        let del = ExchangeDelete {
            exchange: exchange.as_str().into(),
            ..Default::default()
        };
        expect(&mut conn, del, "exchange.delete").await?;
    }
    conn.close().await;
    Ok(())
}

/// Starts every consumer and waits until each is consuming.
async fn start_consumers(
    cfg: &Arc<PerfConfig>,
    uri: &AmqpUri,
    shared: &Arc<Shared>,
    stop: &watch::Sender<bool>,
) -> Result<Vec<JoinHandle<Result<()>>>> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handles: Vec<_> = (0..cfg.consumers)
        .map(|i| {
            tokio::spawn(consumer::run(
                i,
                cfg.clone(),
                uri.clone(),
                shared.clone(),
                tx.clone(),
                stop.subscribe(),
            ))
        })
        .collect();
    for _ in 0..cfg.consumers {
        match rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e),
            None => return Err("consumer task ended before consuming".into()),
        }
    }
    Ok(handles)
}

/// Prints one progress line per second on stderr until aborted.
async fn progress(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut p0, mut c0, mut d0) = (0, 0, 0);
    let start = Instant::now();
    loop {
        tick.tick().await;
        let p = Shared::get(&shared.published);
        let c = Shared::get(&shared.confirmed);
        let d = Shared::get(&shared.consumed);
        let lat = {
            let mut t = shared.tally();
            let l = Latency::from_histogram(&t.interval);
            t.interval.reset();
            l
        };
        eprintln!(
            "[{:>4.0}s] published {:>10} msg/s  confirmed {:>10} msg/s  consumed {:>10} msg/s  \
             latency p50 {:.0} µs p99 {:.0} µs",
            start.elapsed().as_secs_f64(),
            thousands(p - p0),
            thousands(c - c0),
            thousands(d - d0),
            lat.p50_us,
            lat.p99_us
        );
        (p0, c0, d0) = (p, c, d);
    }
}

fn describe(cfg: &PerfConfig) -> String {
    let mut s = format!(
        "{}p→{}q({:?})→{}c {}B",
        cfg.producers,
        cfg.queues,
        cfg.exchange_type,
        cfg.consumers,
        producer::body_size(cfg)
    );
    if cfg.persistent {
        s.push_str(" persistent");
    }
    if cfg.rate > 0.0 {
        s.push_str(&format!(" rate {}/s/producer ({:?} pacing)", cfg.rate, cfg.pacing).to_lowercase());
    }
    if cfg.confirm > 0 {
        s.push_str(&format!(" confirm {}", cfg.confirm));
    }
    if cfg.auto_ack {
        s.push_str(" auto-ack");
    } else {
        s.push_str(&format!(
            " prefetch {} multi-ack {}",
            cfg.prefetch, cfg.multi_ack_every
        ));
    }
    if cfg.backlog {
        s.push_str(" backlog");
    }
    s
}

/// Runs the benchmark described by `cfg`; `show_progress` prints a line per second on stderr.
pub async fn run(cfg: PerfConfig, show_progress: bool) -> Result<Report> {
    let uri = cfg.validate()?;
    let (producer_uri, consumer_uri) = cfg.role_uris(&uri)?;
    let cfg = Arc::new(cfg);
    let admin = setup(&cfg, &uri).await?;
    let shared = Arc::new(Shared::new(cfg.groups(), cfg.producers));
    let (stop_tx, _) = watch::channel(false);
    let cpu0 = process_cpu_seconds().unwrap_or(0.0);
    let steal0 = steal_seconds();
    let wall0 = Instant::now();

    let mut consumers = Vec::new();
    if !cfg.backlog {
        consumers = start_consumers(&cfg, &consumer_uri, &shared, &stop_tx).await?;
    }
    let ticker = show_progress.then(|| tokio::spawn(progress(shared.clone())));

    let deadline = cfg
        .publish_duration()
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    let producers: Vec<_> = (0..cfg.producers)
        .map(|i| {
            tokio::spawn(producer::run(
                i,
                cfg.clone(),
                producer_uri.clone(),
                shared.clone(),
                deadline,
            ))
        })
        .collect();
    let mut outcomes: Vec<ProducerOutcome> = Vec::with_capacity(cfg.producers);
    for (i, h) in producers.into_iter().enumerate() {
        match h.await {
            Ok(Ok(o)) => outcomes.push(o),
            Ok(Err(e)) => {
                shared.error(format!("producer {i}: {e}"));
                outcomes.push(ProducerOutcome::default());
            }
            Err(e) => {
                shared.error(format!("producer {i}: task: {e}"));
                outcomes.push(ProducerOutcome::default());
            }
        }
    }
    // Deliveries so far arrived while the producers ran (the starvation measure: a consumer
    // that only gets messages once publishing stops is starved, whatever its final rate).
    let consumed_while_publishing = Shared::get(&shared.unique);
    let published: u64 = outcomes.iter().map(|o| o.tally.published).sum();
    let pub_start = outcomes
        .iter()
        .filter(|o| o.tally.published > 0)
        .map(|o| o.start_ns)
        .min();
    let pub_end = outcomes.iter().map(|o| o.end_ns).max().unwrap_or(0);

    let consume_start_ns;
    if cfg.backlog {
        consume_start_ns = shared.now_ns();
        match start_consumers(&cfg, &consumer_uri, &shared, &stop_tx).await {
            Ok(h) => consumers = h,
            Err(e) => shared.error(e),
        }
    } else {
        consume_start_ns = pub_start.unwrap_or(0);
    }

    // Drain: until every expected delivery arrived, or no progress for the drain timeout.
    let expected = if cfg.consumers > 0 {
        published * cfg.groups() as u64
    } else {
        0
    };
    let idle = Duration::from_secs_f64(cfg.drain_timeout);
    let mut last = Shared::get(&shared.unique);
    let mut last_progress = Instant::now();
    while cfg.consumers > 0 && !consumers.iter().all(|h| h.is_finished()) {
        let now = Shared::get(&shared.unique);
        if now >= expected {
            break;
        }
        if now != last {
            last = now;
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= idle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    for h in consumers {
        match h.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => shared.error(e),
            Err(e) => shared.error(format!("consumer task: {e}")),
        }
    }
    if let Some(t) = ticker {
        t.abort();
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds().unwrap_or(0.0) - cpu0;
    let steal = steal_share(&steal0, &steal_seconds(), wall);
    if !cfg.keep_queues {
        if let Err(e) = teardown(&cfg, admin).await {
            shared.error(format!("teardown: {e}"));
        }
    } else {
        admin.close().await;
    }

    let tallies: Vec<ProducerTally> = outcomes.iter().map(|o| o.tally.clone()).collect();
    let t = shared.tally();
    let summary = t.acct.summary(&tallies);
    let confirmed: u64 = tallies
        .iter()
        .filter_map(|t| t.confirms.as_ref())
        .map(|c| c.acked())
        .sum();
    let nacked: u64 = tallies
        .iter()
        .filter_map(|t| t.confirms.as_ref())
        .map(|c| c.nacked())
        .sum();
    let publish_seconds = pub_start.map_or(0.0, |s| pub_end.saturating_sub(s) as f64 / 1e9);
    let consume_seconds = t.last_ns.saturating_sub(consume_start_ns) as f64 / 1e9;
    let rate = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let consumed = t.acct.deliveries;
    let handled = published + consumed;
    Ok(Report {
        uri: uri.to_string(),
        scenario: describe(&cfg),
        producers: cfg.producers,
        consumers: cfg.consumers,
        queues: cfg.queues,
        size: producer::body_size(&cfg),
        publish_seconds,
        consume_seconds,
        published,
        confirmed,
        nacked,
        returned: outcomes.iter().map(|o| o.returned).sum(),
        consumed,
        expected,
        lost: (cfg.consumers > 0).then_some(summary.lost),
        lost_confirmed: (cfg.consumers > 0).then_some(summary.lost_confirmed),
        duplicated: summary.duplicated,
        redelivered: t.acct.redelivered,
        out_of_order: summary.out_of_order,
        corrupt: t.acct.corrupt,
        publish_rate: rate(published, publish_seconds),
        confirm_rate: rate(confirmed, publish_seconds),
        consume_rate: rate(consumed, consume_seconds),
        consume_rate_while_publishing: if cfg.backlog {
            0.0
        } else {
            rate(consumed_while_publishing, publish_seconds)
        },
        latency: Latency::from_histogram(&t.latency),
        tool_cpu_seconds: cpu,
        wall_seconds: wall,
        tool_cpu_utilisation: if wall > 0.0 { cpu / wall } else { 0.0 },
        tool_cpu_ns_per_msg: if handled > 0 {
            cpu * 1e9 / handled as f64
        } else {
            0.0
        },
        machine_steal_max: steal.iter().copied().fold(0.0, f64::max),
        machine_steal: steal,
        errors: shared.errors(),
    })
}
