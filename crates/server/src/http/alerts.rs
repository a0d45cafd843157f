//! The once-a-second sampler: message rates (broker-wide and per queue, for the API's
//! `*_details.rate` fields and the management UI), each queue's depth history, and queue alerts.
//!
//! Alerts are Warren extensions set as queue arguments: `x-alert-max-length` (depth, ready +
//! unacked, above the threshold) and `x-alert-max-growth-per-minute` (depth growth over the
//! last minute, measured over at least 10 s). Crossing a threshold starts an episode: one
//! warning in the log, an entry in `GET /api/alerts`, `warren_queue_alert{…} 1`, and a JSON
//! POST to `--alert-webhook` if configured ([`super::webhook`]: HTTP or HTTPS, with timeouts
//! and retries); dropping back below ends it (logged and posted as `alert_resolved`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;
use warren_codec::FieldValue;

use super::shared::Shared;
use super::webhook::Webhook;
use crate::util::now_ms;

/// Alert kinds and the queue arguments that configure them.
pub const KINDS: [(&str, &str); 2] = [
    ("max_length", "x-alert-max-length"),
    ("max_growth_per_minute", "x-alert-max-growth-per-minute"),
];

/// Rates of one queue.
#[derive(Debug, Clone, Default)]
pub struct QueueSample {
    /// Counters at the last sample: published, delivered, acked.
    pub counters: [u64; 3],
    /// Per-second rates over the last sample interval: publish, deliver_get, ack.
    pub rates: [f64; 3],
    /// Depth (ready + unacked) history, one point a second, the last minute.
    pub depth: VecDeque<(Instant, u64)>,
    /// Depth growth per minute (see the module doc).
    pub growth_per_minute: f64,
    seen: bool,
}

/// An active alert.
#[derive(Debug, Clone)]
pub struct Alert {
    /// Vhost.
    pub vhost: String,
    /// Queue.
    pub queue: String,
    /// `max_length` or `max_growth_per_minute`.
    pub kind: &'static str,
    /// The measured value.
    pub value: f64,
    /// The configured threshold.
    pub threshold: f64,
    /// When the episode started (ms since the epoch).
    pub since_ms: u64,
}

impl Alert {
    /// The alert as JSON (`GET /api/alerts`, webhook payloads).
    pub fn to_json(&self) -> Value {
        json!({"vhost": self.vhost, "queue": self.queue, "kind": self.kind,
               "value": self.value, "threshold": self.threshold, "since": self.since_ms})
    }
}

/// Sampled state.
#[derive(Debug, Default)]
pub struct Sampler {
    /// Global counters at the last sample: published, delivered, acked.
    pub global: [u64; 3],
    /// Global per-second rates: publish, deliver_get, ack.
    pub global_rates: [f64; 3],
    /// Per queue, keyed by (vhost, queue).
    pub queues: HashMap<(String, String), QueueSample>,
    /// Active alerts, keyed by (vhost, queue, kind).
    pub alerts: HashMap<(String, String, &'static str), Alert>,
    last: Option<Instant>,
}

impl Sampler {
    /// The rates of a queue (zeros if not sampled yet).
    pub fn queue_rates(&self, vhost: &str, queue: &str) -> ([f64; 3], f64) {
        self.queues
            .get(&(vhost.to_string(), queue.to_string()))
            .map(|s| (s.rates, s.growth_per_minute))
            .unwrap_or_default()
    }
}

/// A threshold argument as a number.
pub fn threshold(args: &warren_codec::FieldTable, name: &str) -> Option<f64> {
    match args.get(name)? {
        FieldValue::LongStr(_) => args.get(name)?.as_str()?.trim().parse().ok(),
        v => warren_core::args::number(v),
    }
}

/// An alert episode starting or ending.
#[derive(Debug, Clone)]
pub struct AlertEvent {
    /// `alert_firing` or `alert_resolved`.
    pub event: &'static str,
    /// The alert.
    pub alert: Alert,
}

/// Takes one sample of every queue; returns alert episodes that started or ended.
pub fn sample(st: &Shared) -> Vec<AlertEvent> {
    let now = Instant::now();
    let m = &st.broker.metrics;
    let global = [
        m.published.load(Ordering::Relaxed),
        m.delivered.load(Ordering::Relaxed),
        m.acked.load(Ordering::Relaxed),
    ];
    // Snapshot queue handles without holding the sampler lock.
    let mut queues = Vec::new();
    for v in st.broker.vhosts() {
        let handles = v.queue_handles();
        for q in handles {
            let c = q.counts();
            let counters = [
                q.stats.published.load(Ordering::Relaxed),
                q.stats.delivered.load(Ordering::Relaxed),
                q.stats.acked.load(Ordering::Relaxed),
            ];
            let th: Vec<(&'static str, f64)> = KINDS
                .iter()
                .filter_map(|(kind, arg)| threshold(&q.meta.arguments, arg).map(|t| (*kind, t)))
                .collect();
            queues.push((
                v.name.clone(),
                q.meta.name.to_string(),
                c.ready as u64 + c.unacked as u64,
                counters,
                th,
            ));
        }
    }
    let present: HashSet<(String, String)> = queues.iter().map(|(v, q, ..)| (v.clone(), q.clone())).collect();
    let mut events = Vec::new();
    let mut s = st.sampler.lock();
    let dt = s.last.map(|l| now.duration_since(l).as_secs_f64()).unwrap_or(0.0);
    let rate = |cur: u64, prev: u64| {
        if dt > 0.0 {
            cur.saturating_sub(prev) as f64 / dt
        } else {
            0.0
        }
    };
    let prev = s.global;
    s.global_rates = std::array::from_fn(|i| rate(global[i], prev[i]));
    s.global = global;
    s.last = Some(now);
    let mut live = HashSet::new();
    for (vhost, name, depth, counters, th) in queues {
        let e = s.queues.entry((vhost.clone(), name.clone())).or_default();
        let (seen, prev) = (e.seen, e.counters);
        e.rates = std::array::from_fn(|i| if seen { rate(counters[i], prev[i]) } else { 0.0 });
        e.counters = counters;
        e.seen = true;
        e.depth.push_back((now, depth));
        while e
            .depth
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(60))
        {
            e.depth.pop_front();
        }
        let (t0, d0) = *e.depth.front().expect("just pushed");
        let window = now.duration_since(t0).as_secs_f64().max(10.0);
        e.growth_per_minute = (depth as f64 - d0 as f64) * 60.0 / window;
        let growth = e.growth_per_minute;
        for (kind, threshold) in th {
            let value = if kind == "max_length" {
                depth as f64
            } else {
                growth
            };
            let akey = (vhost.clone(), name.clone(), kind);
            let active = s.alerts.contains_key(&akey);
            if value > threshold && !active {
                let a = Alert {
                    vhost: vhost.clone(),
                    queue: name.clone(),
                    kind,
                    value,
                    threshold,
                    since_ms: now_ms(),
                };
                tracing::warn!(vhost = %vhost, queue = %name, kind, value, threshold, "queue alert firing");
                events.push(AlertEvent {
                    event: "alert_firing",
                    alert: a.clone(),
                });
                s.alerts.insert(akey.clone(), a);
            } else if value <= threshold && active {
                if let Some(mut a) = s.alerts.remove(&akey) {
                    a.value = value;
                    tracing::info!(vhost = %vhost, queue = %name, kind, value, threshold, "queue alert resolved");
                    events.push(AlertEvent {
                        event: "alert_resolved",
                        alert: a,
                    });
                }
            } else if let Some(a) = s.alerts.get_mut(&akey) {
                a.value = value;
            }
            live.insert(akey);
        }
    }
    // Forget deleted queues and alerts whose thresholds are gone.
    s.alerts.retain(|k, _| live.contains(k));
    s.queues.retain(|k, _| present.contains(k));
    events
}

/// Runs the sampler every second until shutdown, posting alert events to the webhook (each
/// delivery in its own task: a slow or failing receiver never delays the next sample).
pub async fn run(st: Shared, webhook: Option<Arc<Webhook>>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|v| *v) => return,
        }
        let events = sample(&st);
        let Some(webhook) = &webhook else {
            continue;
        };
        for ev in events {
            let body = json!({
                "event": ev.event,
                "alert": ev.alert.to_json(),
                "node": st.node(),
                "product": "Warren",
            });
            let webhook = webhook.clone();
            tokio::spawn(async move { webhook.deliver(body.to_string().into()).await });
        }
    }
}
