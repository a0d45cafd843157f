//! `GET /metrics`: Prometheus text exposition with RabbitMQ's metric names where they exist
//! (`rabbitmq_queue_messages_ready{vhost,queue}`, `rabbitmq_global_messages_*_total`,
//! `rabbitmq_global_messages_dead_lettered_{rejected,expired,maxlen,delivery_limit}_total`,
//! `rabbitmq_connections`, …) and Warren's own (`warren_queue_is_dlq`, `warren_queue_alert`,
//! `warren_dead_letter_dropped_total`).
//!
//! Built in one pass into one `String`: per vhost, one short topology lock (DLQ set and
//! queue metadata), then each queue's counts under that queue's own short lock. Nothing is
//! held across an `.await`, so scraping never stalls message flow.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::Shared;
use super::alerts::{KINDS, threshold};
use super::dlq::vhost_dead_letter_queues;
use crate::queue::Queue;

/// Resident memory of this process in bytes (VmRSS from `/proc/self/status`; 0 elsewhere).
pub fn resident_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Escapes a label value.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// What start-up recovery found (issue 21): quarantined queue directories and damage skipped,
/// each a gauge fixed at start (re-attaching lowers the quarantine count).
fn store_recovery_metrics(out: &mut String, p: &crate::persist::Persistence) {
    let r = p.store.recovery_totals();
    let d = &p.definitions_report;
    let rows: [(&str, &str, u64); 9] = [
        (
            "warren_quarantined_queue_dirs",
            "Queue directories named by no definition, kept in <data-dir>/quarantine",
            crate::persist::quarantine_count(&p.data_dir) as u64,
        ),
        (
            "warren_recovery_skipped_regions",
            "Damaged regions skipped in message segments at start-up",
            r.skipped_regions,
        ),
        (
            "warren_recovery_skipped_bytes",
            "Bytes in damaged regions and kept tails skipped at start-up",
            r.skipped_bytes,
        ),
        (
            "warren_recovery_truncated_tails",
            "Torn tails cut off the last segment or an ack file at start-up",
            r.truncated.len() as u64,
        ),
        (
            "warren_recovery_damaged_sealed_tails",
            "Sealed segments with a damaged tail, kept untruncated, at start-up",
            u64::from(r.damaged_sealed_tails),
        ),
        (
            "warren_recovery_orphan_ack_files",
            "Ack files whose segment was missing at start-up (kept as acks.N.orphan)",
            u64::from(r.orphan_ack_files),
        ),
        (
            "warren_recovery_missing_segments",
            "Segments deleted behind the broker's back, found missing at start-up",
            u64::from(r.segment_gaps),
        ),
        (
            "warren_recovery_missing_ack_files",
            "Ack files deleted behind the broker's back, found missing at start-up",
            u64::from(r.missing_ack_files),
        ),
        (
            "warren_recovery_definitions_damaged",
            "Damaged definitions-log records dropped at start-up (original file kept)",
            (d.warnings.iter().filter(|w| w.offset != 0).count() + d.truncated.len()) as u64,
        ),
    ];
    for (name, help, v) in rows {
        let _ = writeln!(out, "# TYPE {name} gauge\n# HELP {name} {help}\n{name} {v}");
    }
}

/// Renders every metric.
pub fn render(st: &Shared) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let m = &st.broker.metrics;
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# TYPE {name} {kind}\n# HELP {name} {help}");
    };
    // Per-queue series first collected into per-family buffers, so each family is contiguous.
    let mut ready = String::new();
    let mut unacked = String::new();
    let mut messages = String::new();
    let mut consumers = String::new();
    let mut is_dlq = String::new();
    let mut alert = String::new();
    let (mut n_queues, mut n_consumers) = (0u64, 0u64);
    let active: std::collections::HashSet<(String, String, &'static str)> =
        st.sampler.lock().alerts.keys().cloned().collect();
    let mut vhosts = st.broker.vhosts();
    vhosts.sort_by(|a, b| a.name.cmp(&b.name));
    for v in &vhosts {
        let dlqs = vhost_dead_letter_queues(v);
        let metas: Vec<(warren_core::topology::QueueId, String)> =
            v.read_topology(|t| t.queues().map(|q| (q.id, q.name.to_string())).collect());
        let handles: Vec<(String, Arc<Queue>)> = metas
            .into_iter()
            .filter_map(|(id, name)| v.queue_by_id(id).map(|q| (name, q)))
            .collect();
        let vl = esc(&v.name);
        for (name, q) in handles {
            let c = q.counts();
            let ql = esc(&name);
            let labels = format!("vhost=\"{vl}\",queue=\"{ql}\"");
            let _ = writeln!(ready, "rabbitmq_queue_messages_ready{{{labels}}} {}", c.ready);
            let _ = writeln!(
                unacked,
                "rabbitmq_queue_messages_unacked{{{labels}}} {}",
                c.unacked
            );
            let _ = writeln!(
                messages,
                "rabbitmq_queue_messages{{{labels}}} {}",
                c.ready as u64 + c.unacked as u64
            );
            let _ = writeln!(consumers, "rabbitmq_queue_consumers{{{labels}}} {}", c.consumers);
            let _ = writeln!(
                is_dlq,
                "warren_queue_is_dlq{{{labels}}} {}",
                u8::from(dlqs.contains(&name))
            );
            for (kind, arg) in KINDS {
                if threshold(&q.meta.arguments, arg).is_some() {
                    let on = active.contains(&(v.name.clone(), name.clone(), kind));
                    let _ = writeln!(
                        alert,
                        "warren_queue_alert{{{labels},kind=\"{kind}\"}} {}",
                        u8::from(on)
                    );
                }
            }
            n_queues += 1;
            n_consumers += c.consumers as u64;
        }
    }
    for (name, help, body) in [
        (
            "rabbitmq_queue_messages_ready",
            "Messages ready to be delivered to consumers",
            &ready,
        ),
        (
            "rabbitmq_queue_messages_unacked",
            "Messages delivered to consumers but not yet acknowledged",
            &unacked,
        ),
        (
            "rabbitmq_queue_messages",
            "Sum of ready and unacknowledged messages",
            &messages,
        ),
        ("rabbitmq_queue_consumers", "Consumers on a queue", &consumers),
        (
            "warren_queue_is_dlq",
            "1 if some queue dead-letters into this queue",
            &is_dlq,
        ),
        (
            "warren_queue_alert",
            "1 while a queue alert (x-alert-*) is firing",
            &alert,
        ),
    ] {
        family(&mut out, name, "gauge", help);
        out.push_str(body);
    }
    let counter = |out: &mut String, name: &str, help: &str, labels: &str, v: u64| {
        let _ = writeln!(
            out,
            "# TYPE {name} counter\n# HELP {name} {help}\n{name}{labels} {v}"
        );
    };
    let proto = "{protocol=\"amqp091\"}";
    counter(
        &mut out,
        "rabbitmq_global_messages_received_total",
        "Total number of messages received from publishers",
        proto,
        m.published.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "rabbitmq_global_messages_delivered_total",
        "Total number of messages delivered to consumers",
        proto,
        m.delivered.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "rabbitmq_global_messages_acknowledged_total",
        "Total number of messages acknowledged by consumers",
        proto,
        m.acked.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "rabbitmq_global_messages_redelivered_total",
        "Total number of messages redelivered to consumers",
        proto,
        m.redelivered.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "rabbitmq_global_messages_unroutable_dropped_total",
        "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
        proto,
        m.unroutable.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "warren_connection_flow_total",
        "Times a publishing connection was parked by credit flow (its queues' consumers fell behind)",
        "",
        m.flow_entered.load(Ordering::Relaxed),
    );
    let dl = "{queue_type=\"rabbit_classic_queue\",dead_letter_strategy=\"at_most_once\"}";
    for (i, (reason, help)) in [
        (
            "rejected",
            "Total number of messages dead-lettered due to basic.reject or basic.nack",
        ),
        (
            "expired",
            "Total number of messages dead-lettered due to message TTL exceeded",
        ),
        (
            "maxlen",
            "Total number of messages dead-lettered due to overflow drop-head or reject-publish-dlx",
        ),
        (
            "delivery_limit",
            "Total number of messages dead-lettered due to delivery-limit exceeded",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        counter(
            &mut out,
            &format!("rabbitmq_global_messages_dead_lettered_{reason}_total"),
            help,
            dl,
            m.dead_lettered[i].load(Ordering::Relaxed),
        );
    }
    counter(
        &mut out,
        "warren_dead_letter_dropped_total",
        "Messages dropped because their dead-letter exchange does not exist",
        "",
        m.dead_letter_dropped.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "warren_delivery_limit_dropped_total",
        "Messages dropped by x-delivery-limit with no dead-letter exchange",
        "",
        m.delivery_limit_dropped.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "warren_duplicates_dropped_total",
        "Publishes dropped as duplicates by x-deduplication-window (still confirmed)",
        "",
        m.duplicates_dropped.load(Ordering::Relaxed),
    );
    let conns = st.broker.connections();
    let channels: usize = conns.iter().map(|c| c.info.lock().channels).sum();
    let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
        let _ = writeln!(out, "# TYPE {name} gauge\n# HELP {name} {help}\n{name} {v}");
    };
    gauge(
        &mut out,
        "rabbitmq_connections",
        "Connections currently open",
        conns.len() as u64,
    );
    gauge(
        &mut out,
        "rabbitmq_channels",
        "Channels currently open",
        channels as u64,
    );
    gauge(&mut out, "rabbitmq_queues", "Queues available", n_queues);
    gauge(
        &mut out,
        "rabbitmq_consumers",
        "Consumers currently connected",
        n_consumers,
    );
    gauge(
        &mut out,
        "rabbitmq_process_resident_memory_bytes",
        "Memory used in bytes",
        resident_memory_bytes(),
    );
    let alarms = st.broker.alarms.current();
    gauge(
        &mut out,
        "rabbitmq_alarms_memory_used_watermark",
        "is 1 if VM memory watermark alarm is in effect",
        u64::from(alarms.memory),
    );
    gauge(
        &mut out,
        "rabbitmq_alarms_free_disk_space_watermark",
        "is 1 if free disk space watermark alarm is in effect",
        u64::from(alarms.disk),
    );
    gauge(
        &mut out,
        "rabbitmq_resident_memory_limit_bytes",
        "Memory high watermark in bytes (0 = none)",
        st.broker.alarms.memory_limit(),
    );
    gauge(
        &mut out,
        "rabbitmq_disk_space_available_limit_bytes",
        "Free disk space low watermark in bytes (0 = none)",
        st.broker.alarms.disk_free_limit(),
    );
    if let Some(p) = &st.broker.persistence {
        store_recovery_metrics(&mut out, p);
    }
    out
}

/// The `/metrics` handler.
pub async fn handler(State(st): State<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        render(&st),
    )
}
