//! RabbitMQ's `rabbitmq_prometheus` plugin, as Warren can serve it: the Prometheus listener
//! (`--prometheus-listen`, default 127.0.0.1:15692, no authentication, as the plugin) with
//! `/metrics` (aggregated), `/metrics/per-object` (per queue, connection and channel labels)
//! and `/metrics/detailed?family=…&vhost=…` (the `rabbitmq_detailed_` families asked for,
//! queue families limited to the vhosts asked for). The management port's `/metrics` renders
//! the per-object form through the same code ([`render`]).
//!
//! Names, types, labels and HELP texts are those of the plugin's collectors (the core metrics
//! collector's families by their ETS table name, the global counters with their `protocol` and
//! `queue_type` labels, the alarm, identity and build-info families). What Warren does not
//! measure (Erlang reductions, GC, Mnesia, per-channel message counters) is left out rather
//! than faked; see docs/compatibility.md.
//!
//! Rendered in one pass into one `String`: queue counts are read under each queue's own short
//! lock and connection facts under each connection's; nothing is held across an `.await`.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::IntoResponse;
use tokio::sync::watch;

use super::alerts::{KINDS, threshold};
use super::dlq::vhost_dead_letter_queues;
use super::shared::Shared;
use crate::stats::{CONSUME_AUTO, CONSUME_MANUAL, GET_AUTO, GET_MANUAL, Metrics};

/// Which rendering: the plugin's three endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `/metrics`: every family summed over its objects (no per-object labels).
    Aggregated,
    /// `/metrics/per-object` (and the management port's `/metrics`): one series per object.
    PerObject,
    /// `/metrics/detailed`: only `families`, per object, prefixed `rabbitmq_detailed_`; queue
    /// families only for `vhosts` when given.
    Detailed {
        /// Core-metrics family (ETS table) names, e.g. `queue_coarse_metrics`.
        families: HashSet<String>,
        /// The `vhost` parameters (None: every vhost).
        vhosts: Option<HashSet<String>>,
    },
}

impl Scope {
    fn per_object(&self) -> bool {
        !matches!(self, Scope::Aggregated)
    }

    fn wants(&self, family: &str) -> bool {
        match self {
            Scope::Detailed { families, .. } => families.contains(family),
            _ => true,
        }
    }

    fn wants_vhost(&self, vhost: &str) -> bool {
        match self {
            Scope::Detailed { vhosts: Some(v), .. } => v.contains(vhost),
            _ => true,
        }
    }

    fn prefix(&self) -> &'static str {
        match self {
            Scope::Detailed { .. } => "rabbitmq_detailed_",
            _ => "rabbitmq_",
        }
    }

    /// `family=a&family=b&vhost=x` (RabbitMQ's query parameters, repeatable).
    pub fn detailed(query: Option<&str>) -> Scope {
        let mut families = HashSet::new();
        let mut vhosts: Option<HashSet<String>> = None;
        for kv in query.unwrap_or("").split('&') {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v = super::listing::unescape(v);
            match super::listing::unescape(k).as_str() {
                "family" => {
                    families.insert(v);
                }
                "vhost" => {
                    vhosts.get_or_insert_with(HashSet::new).insert(v);
                }
                _ => {}
            }
        }
        Scope::Detailed { families, vhosts }
    }
}

/// Escapes a label value.
pub fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One queue's facts.
struct QueueRow {
    labels: String,
    ready: u64,
    unacked: u64,
    consumers: u64,
    ready_bytes: u64,
    is_dlq: bool,
    alerts: Vec<(&'static str, bool)>,
}

/// One connection's facts (`channel` is the label RabbitMQ gives connection metrics: it holds
/// the connection process there, the connection name here).
struct ConnRow {
    name: String,
    channels: u64,
    recv: u64,
    send: u64,
}

/// What one scrape reads.
struct Snapshot {
    queues: Vec<QueueRow>,
    conns: Vec<ConnRow>,
    /// Consumers per channel name (per-object only).
    channel_consumers: BTreeMap<String, u64>,
}

fn snapshot(st: &Shared, scope: &Scope) -> Snapshot {
    let active: HashSet<(String, String, &'static str)> = st.sampler.lock().alerts.keys().cloned().collect();
    let mut conns: Vec<ConnRow> = Vec::new();
    let mut names = std::collections::HashMap::new();
    for c in st.broker.connections() {
        let info = c.info.lock();
        let name = match info.peer {
            Some(p) => format!("{p} -> {}", st.amqp_addr),
            None => format!("? -> {}", st.amqp_addr),
        };
        names.insert(c.id, name.clone());
        conns.push(ConnRow {
            name,
            channels: c.channel_count() as u64,
            recv: c.octets[0].load(Ordering::Relaxed),
            send: c.octets[1].load(Ordering::Relaxed),
        });
    }
    conns.sort_by(|a, b| a.name.cmp(&b.name));
    let mut queues = Vec::new();
    let mut channel_consumers = BTreeMap::new();
    let mut vhosts = st.broker.vhosts();
    vhosts.sort_by(|a, b| a.name.cmp(&b.name));
    for v in vhosts.iter().filter(|v| scope.wants_vhost(&v.name)) {
        let dlqs = vhost_dead_letter_queues(v);
        let metas: Vec<(warren_core::topology::QueueId, String)> =
            v.read_topology(|t| t.queues().map(|q| (q.id, q.name.to_string())).collect());
        for (id, name) in metas {
            let Some(q) = v.queue_by_id(id) else { continue };
            let c = q.counts();
            if scope.per_object() && c.consumers > 0 {
                for spec in q.consumer_specs() {
                    let conn = names.get(&spec.channel.connection()).map_or("?", String::as_str);
                    let ch = format!("{conn} ({})", spec.channel.number());
                    *channel_consumers.entry(ch).or_insert(0) += 1;
                }
            }
            let alerts = KINDS
                .iter()
                .filter(|(_, arg)| threshold(&q.meta.arguments, arg).is_some())
                .map(|(kind, _)| (*kind, active.contains(&(v.name.clone(), name.clone(), *kind))))
                .collect();
            queues.push(QueueRow {
                labels: format!("vhost=\"{}\",queue=\"{}\"", esc(&v.name), esc(&name)),
                ready: u64::from(c.ready),
                unacked: u64::from(c.unacked),
                consumers: u64::from(c.consumers),
                ready_bytes: c.ready_bytes,
                is_dlq: dlqs.contains(&name),
                alerts,
            });
        }
    }
    Snapshot {
        queues,
        conns,
        channel_consumers,
    }
}

/// The exposition being written.
struct Out<'a> {
    buf: String,
    scope: &'a Scope,
}

impl Out<'_> {
    /// `# HELP` and `# TYPE` of `name` (with no prefix added).
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.buf, "# TYPE {name} {kind}\n# HELP {name} {help}");
    }

    /// A family with one unlabelled (or fixed-label) sample.
    fn one(&mut self, name: &str, kind: &str, help: &str, labels: &str, v: u64) {
        self.head(name, kind, help);
        let _ = writeln!(self.buf, "{name}{labels} {v}");
    }

    /// A core-metrics family: the scope's prefix; per object `(labels, value)` rows, summed
    /// into one unlabelled sample when aggregated (as the plugin does).
    fn core<'r>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        rows: impl Iterator<Item = (&'r str, u64)>,
        label: &str,
    ) {
        let full = format!("{}{name}", self.scope.prefix());
        self.head(&full, kind, help);
        if self.scope.per_object() {
            for (obj, v) in rows {
                let _ = writeln!(self.buf, "{full}{{{label}}} {v}", label = labelled(label, obj));
            }
        } else {
            let total: u64 = rows.map(|(_, v)| v).sum();
            let _ = writeln!(self.buf, "{full} {total}");
        }
    }

    /// A core-metrics family Warren keeps as one node-wide number (no object labels).
    fn node(&mut self, name: &str, kind: &str, help: &str, v: u64) {
        let full = format!("{}{name}", self.scope.prefix());
        self.one(&full, kind, help, "", v);
    }
}

/// `label="value"`, or `value` itself when `label` is empty (queue rows carry their labels).
fn labelled(label: &str, obj: &str) -> String {
    if label.is_empty() {
        obj.to_string()
    } else {
        format!("{label}=\"{}\"", esc(obj))
    }
}

/// Open file descriptors, and how many of them are sockets (`/proc/self/fd`).
pub(crate) fn open_fds() -> (u64, u64) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return (0, 0);
    };
    let (mut fds, mut sockets) = (0, 0);
    for e in dir.flatten() {
        fds += 1;
        if std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")) {
            sockets += 1;
        }
    }
    (fds, sockets)
}

/// The soft limit on open files (`/proc/self/limits`), 0 if unknown.
pub(crate) fn max_fds() -> u64 {
    super::metrics::proc_field("/proc/self/limits", "Max open files", 3).unwrap_or(0)
}

/// A stable id for this node's data (RabbitMQ's `rabbitmq_cluster_permanent_id` is a
/// generated id kept with the cluster's data): derived from the data directory's path.
fn permanent_id(st: &Shared) -> String {
    use std::hash::{Hash, Hasher};
    let dir = &st.broker.config.data_dir;
    let path = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    format!("rabbitmq-cluster-id-warren-{:016x}", h.finish())
}

/// The identity family (every scope: dashboards join on it).
fn identity(out: &mut Out<'_>, st: &Shared) {
    let labels = format!(
        "{{rabbitmq_node=\"{}\",rabbitmq_cluster=\"warren\",rabbitmq_cluster_permanent_id=\"{}\"}}",
        esc(&st.node()),
        permanent_id(st)
    );
    out.one(
        "rabbitmq_identity_info",
        "untyped",
        "RabbitMQ node & cluster identity info",
        &labels,
        1,
    );
}

/// Renders one scrape.
pub fn render(st: &Shared, scope: &Scope) -> String {
    let snap = snapshot(st, scope);
    let m = &*st.broker.metrics;
    let mut out = Out {
        buf: String::with_capacity(16 * 1024 + snap.queues.len() * 512),
        scope,
    };
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let q = &snap.queues;
    let conn_rows = || snap.conns.iter().map(|c| (c.name.as_str(), c.channels));
    // Node-wide facts read once.
    let (fds, sockets) = open_fds();
    let consumers: u64 = q.iter().map(|r| r.consumers).sum();
    let unacked: u64 = q.iter().map(|r| r.unacked).sum();
    let channels: u64 = snap.conns.iter().map(|c| c.channels).sum();

    if scope.wants("connection_churn_metrics") {
        let churn: [(&str, &str, u64); 7] = [
            (
                "connections_opened_total",
                "Total number of connections opened",
                get(&m.connections_opened),
            ),
            (
                "connections_closed_total",
                "Total number of connections closed or terminated",
                get(&m.connections_closed),
            ),
            (
                "channels_opened_total",
                "Total number of channels opened",
                get(&m.channels_opened),
            ),
            (
                "channels_closed_total",
                "Total number of channels closed",
                get(&m.channels_closed),
            ),
            (
                "queues_declared_total",
                "Total number of queues declared",
                get(&m.queues_declared),
            ),
            (
                "queues_created_total",
                "Total number of queues created",
                get(&m.queues_created),
            ),
            (
                "queues_deleted_total",
                "Total number of queues deleted",
                get(&m.queues_deleted),
            ),
        ];
        for (name, help, v) in churn {
            out.node(name, "counter", help, v);
        }
    }
    if scope.wants("node_coarse_metrics") {
        out.node("process_open_fds", "gauge", "Open file descriptors", fds);
        out.node("process_open_tcp_sockets", "gauge", "Open TCP sockets", sockets);
        out.node(
            "process_resident_memory_bytes",
            "gauge",
            "Memory used in bytes",
            super::metrics::resident_memory_bytes(),
        );
        let free = crate::alarms::free_disk(&st.broker.config.data_dir).unwrap_or(0);
        out.node(
            "disk_space_available_bytes",
            "gauge",
            "Disk space available in bytes",
            free,
        );
    }
    if scope.wants("node_metrics") {
        let max = max_fds();
        out.node("process_max_fds", "gauge", "Open file descriptors limit", max);
        out.node("process_max_tcp_sockets", "gauge", "Open TCP sockets limit", max);
        out.node(
            "resident_memory_limit_bytes",
            "gauge",
            "Memory high watermark in bytes",
            st.broker.alarms.memory_limit(),
        );
        out.node(
            "disk_space_available_limit_bytes",
            "gauge",
            "Free disk space low watermark in bytes",
            st.broker.alarms.disk_free_limit(),
        );
    }
    if scope.wants("queue_coarse_metrics") {
        let rows = |f: fn(&QueueRow) -> u64| q.iter().map(move |r| (r.labels.as_str(), f(r)));
        out.core(
            "queue_messages_ready",
            "gauge",
            "Messages ready to be delivered to consumers",
            rows(|r| r.ready),
            "",
        );
        out.core(
            "queue_messages_unacked",
            "gauge",
            "Messages delivered to consumers but not yet acknowledged",
            rows(|r| r.unacked),
            "",
        );
        out.core(
            "queue_messages",
            "gauge",
            "Sum of ready and unacknowledged messages - total queue depth",
            rows(|r| r.ready + r.unacked),
            "",
        );
    }
    // queue_consumer_count is the subset of queue_metrics the plugin uses when the latter is
    // not asked for.
    let queue_metrics = scope.wants("queue_metrics");
    if queue_metrics || scope.wants("queue_consumer_count") {
        let rows = |f: fn(&QueueRow) -> u64| q.iter().map(move |r| (r.labels.as_str(), f(r)));
        out.core(
            "queue_consumers",
            "gauge",
            "Consumers on a queue",
            rows(|r| r.consumers),
            "",
        );
        if queue_metrics {
            out.core(
                "queue_messages_ready_bytes",
                "gauge",
                "Size in bytes of ready messages",
                rows(|r| r.ready_bytes),
                "",
            );
        }
    }
    if scope.wants("channel_metrics") {
        let rows = snap.channel_consumers.iter().map(|(k, v)| (k.as_str(), *v));
        if scope.per_object() {
            out.core(
                "channel_consumers",
                "gauge",
                "Consumers on a channel",
                rows,
                "channel",
            );
        } else {
            out.node("channel_consumers", "gauge", "Consumers on a channel", consumers);
            out.node(
                "channel_messages_unacked",
                "gauge",
                "Delivered but not yet acknowledged messages",
                unacked,
            );
        }
    }
    if scope.wants("channel_exchange_metrics") {
        let unroutable = get(&m.unroutable);
        let returned = get(&m.unroutable_returned);
        let rows: [(&str, &str, u64); 4] = [
            (
                "channel_messages_published_total",
                "Total number of messages published into an exchange on a channel",
                get(&m.published),
            ),
            (
                "channel_messages_confirmed_total",
                "Total number of messages published into an exchange and confirmed on the channel",
                get(&m.confirmed),
            ),
            (
                "channel_messages_unroutable_returned_total",
                "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
                returned,
            ),
            (
                "channel_messages_unroutable_dropped_total",
                "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
                unroutable.saturating_sub(returned),
            ),
        ];
        for (name, help, v) in rows {
            out.node(name, "counter", help, v);
        }
    }
    if scope.wants("channel_queue_metrics") {
        let d = &m.delivered_by;
        let rows: [(&str, &str, u64); 7] = [
            (
                "channel_get_ack_total",
                "Total number of messages fetched with basic.get in manual acknowledgement mode",
                get(&d[GET_MANUAL]),
            ),
            (
                "channel_get_total",
                "Total number of messages fetched with basic.get in automatic acknowledgement mode",
                get(&d[GET_AUTO]),
            ),
            (
                "channel_messages_delivered_ack_total",
                "Total number of messages delivered to consumers in manual acknowledgement mode",
                get(&d[CONSUME_MANUAL]),
            ),
            (
                "channel_messages_delivered_total",
                "Total number of messages delivered to consumers in automatic acknowledgement mode",
                get(&d[CONSUME_AUTO]),
            ),
            (
                "channel_messages_redelivered_total",
                "Total number of messages redelivered to consumers",
                get(&m.redelivered),
            ),
            (
                "channel_messages_acked_total",
                "Total number of messages acknowledged by consumers",
                get(&m.acked),
            ),
            (
                "channel_get_empty_total",
                "Total number of times basic.get operations fetched no message",
                get(&m.get_empty),
            ),
        ];
        for (name, help, v) in rows {
            out.node(name, "counter", help, v);
        }
    }
    if scope.wants("channel_queue_exchange_metrics") {
        out.node(
            "queue_messages_published_total",
            "counter",
            "Total number of messages published to queues",
            get(&m.enqueued),
        );
    }
    if scope.wants("connection_coarse_metrics") {
        let recv = snap.conns.iter().map(|c| (c.name.as_str(), c.recv));
        out.core(
            "connection_incoming_bytes_total",
            "counter",
            "Total number of bytes received on a connection",
            recv,
            "channel",
        );
        let send = snap.conns.iter().map(|c| (c.name.as_str(), c.send));
        out.core(
            "connection_outgoing_bytes_total",
            "counter",
            "Total number of bytes sent on a connection",
            send,
            "channel",
        );
    }
    if scope.wants("connection_metrics") {
        out.core(
            "connection_channels",
            "gauge",
            "Channels on a connection",
            conn_rows(),
            "channel",
        );
    }
    if let Scope::Detailed { .. } = scope {
        identity(&mut out, st);
        return out.buf;
    }

    // The plugin's totals, build and identity info.
    out.one(
        "rabbitmq_connections",
        "gauge",
        "Connections currently open",
        "",
        snap.conns.len() as u64,
    );
    out.one(
        "rabbitmq_channels",
        "gauge",
        "Channels currently open",
        "",
        channels,
    );
    out.one(
        "rabbitmq_consumers",
        "gauge",
        "Consumers currently connected",
        "",
        consumers,
    );
    out.one("rabbitmq_queues", "gauge", "Queues available", "", q.len() as u64);
    let build = format!(
        "{{rabbitmq_version=\"{MANAGEMENT}\",prometheus_plugin_version=\"{MANAGEMENT}\",\
         prometheus_client_version=\"warren-{v}\",erlang_version=\"none (Warren {v}, Rust)\",\
         product_name=\"Warren\",product_version=\"{v}\"}}",
        v = env!("CARGO_PKG_VERSION"),
        MANAGEMENT = super::shared::MANAGEMENT_VERSION,
    );
    out.one(
        "rabbitmq_build_info",
        "untyped",
        "RabbitMQ & Erlang/OTP version info",
        &build,
        1,
    );
    identity(&mut out, st);

    // The alarm collector.
    let alarms = st.broker.alarms.current();
    for (name, help, on) in [
        (
            "rabbitmq_alarms_file_descriptor_limit",
            "is 1 if file descriptor limit alarm is in effect",
            false,
        ),
        (
            "rabbitmq_alarms_free_disk_space_watermark",
            "is 1 if free disk space watermark alarm is in effect",
            alarms.disk,
        ),
        (
            "rabbitmq_alarms_memory_used_watermark",
            "is 1 if VM memory watermark alarm is in effect",
            alarms.memory,
        ),
    ] {
        out.one(name, "untyped", help, "", u64::from(on));
    }

    global_counters(&mut out, m, consumers);

    // Warren's own.
    let own = |f: fn(&QueueRow) -> u64| q.iter().map(move |r| (r.labels.as_str(), f(r)));
    out.head(
        "warren_queue_is_dlq",
        "gauge",
        "1 if some queue dead-letters into this queue",
    );
    for (labels, v) in own(|r| u64::from(r.is_dlq)) {
        let _ = writeln!(out.buf, "warren_queue_is_dlq{{{labels}}} {v}");
    }
    out.head(
        "warren_queue_alert",
        "gauge",
        "1 while a queue alert (x-alert-*) is firing",
    );
    for r in q {
        for (kind, on) in &r.alerts {
            let _ = writeln!(
                out.buf,
                "warren_queue_alert{{{},kind=\"{kind}\"}} {}",
                r.labels,
                u8::from(*on)
            );
        }
    }
    for (name, help, v) in [
        (
            "warren_connection_flow_total",
            "Times a publishing connection was parked by credit flow (its queues' consumers fell behind)",
            get(&m.flow_entered),
        ),
        (
            "warren_dead_letter_dropped_total",
            "Messages dropped because their dead-letter exchange does not exist",
            get(&m.dead_letter_dropped),
        ),
        (
            "warren_forward_dropped_total",
            "Unconfirmed message copies for queues of another cluster node that could not be forwarded",
            get(&m.forward_dropped),
        ),
        (
            "warren_delivery_limit_dropped_total",
            "Messages dropped by x-delivery-limit with no dead-letter exchange",
            get(&m.delivery_limit_dropped),
        ),
        (
            "warren_duplicates_dropped_total",
            "Publishes dropped as duplicates by x-deduplication-window (still confirmed)",
            get(&m.duplicates_dropped),
        ),
    ] {
        out.one(name, "counter", help, "", v);
    }
    if let Some(p) = &st.broker.persistence {
        super::metrics::store_recovery_metrics(&mut out.buf, p);
    }
    out.buf
}

/// The global counters collector (`rabbitmq_global_*`): protocol counters labelled
/// `protocol="amqp091"`, delivery counters also `queue_type="rabbit_classic_queue"` (Warren's
/// queues are classic queues), dead-letter counters by queue type and strategy.
fn global_counters(out: &mut Out<'_>, m: &Metrics, consumers: u64) {
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let proto = "{protocol=\"amqp091\"}";
    let unroutable = get(&m.unroutable);
    let returned = get(&m.unroutable_returned);
    let protocol: [(&str, &str, &str, u64); 8] = [
        (
            "received_total",
            "counter",
            "Total number of messages received from publishers",
            get(&m.published),
        ),
        (
            "received_confirm_total",
            "counter",
            "Total number of messages received from publishers expecting confirmations",
            get(&m.received_confirm),
        ),
        (
            "routed_total",
            "counter",
            "Total number of messages routed to queues or streams",
            get(&m.routed),
        ),
        (
            "unroutable_dropped_total",
            "counter",
            "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
            unroutable.saturating_sub(returned),
        ),
        (
            "unroutable_returned_total",
            "counter",
            "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
            returned,
        ),
        (
            "confirmed_total",
            "counter",
            "Total number of messages confirmed to publishers",
            get(&m.confirmed),
        ),
        ("", "gauge", "Current number of publishers", get(&m.publishers)),
        ("", "gauge", "Current number of consumers", consumers),
    ];
    for (i, (suffix, kind, help, v)) in protocol.into_iter().enumerate() {
        let name = match (i, suffix) {
            (6, _) => "rabbitmq_global_publishers".to_string(),
            (7, _) => "rabbitmq_global_consumers".to_string(),
            _ => format!("rabbitmq_global_messages_{suffix}"),
        };
        out.one(&name, kind, help, proto, v);
    }
    let qt = "{protocol=\"amqp091\",queue_type=\"rabbit_classic_queue\"}";
    let d = &m.delivered_by;
    let by_type: [(&str, &str, u64); 8] = [
        (
            "delivered_total",
            "Total number of messages delivered to consumers",
            get(&m.delivered),
        ),
        (
            "delivered_consume_manual_ack_total",
            "Total number of messages delivered to consumers using basic.consume with manual acknowledgment",
            get(&d[CONSUME_MANUAL]),
        ),
        (
            "delivered_consume_auto_ack_total",
            "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment",
            get(&d[CONSUME_AUTO]),
        ),
        (
            "delivered_get_manual_ack_total",
            "Total number of messages delivered to consumers using basic.get with manual acknowledgment",
            get(&d[GET_MANUAL]),
        ),
        (
            "delivered_get_auto_ack_total",
            "Total number of messages delivered to consumers using basic.get with automatic acknowledgment",
            get(&d[GET_AUTO]),
        ),
        (
            "get_empty_total",
            "Total number of times basic.get operations fetched no message",
            get(&m.get_empty),
        ),
        (
            "redelivered_total",
            "Total number of messages redelivered to consumers",
            get(&m.redelivered),
        ),
        (
            "acknowledged_total",
            "Total number of messages acknowledged by consumers",
            get(&m.acked),
        ),
    ];
    for (suffix, help, v) in by_type {
        out.one(
            &format!("rabbitmq_global_messages_{suffix}"),
            "counter",
            help,
            qt,
            v,
        );
    }
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
        out.one(
            &format!("rabbitmq_global_messages_dead_lettered_{reason}_total"),
            "counter",
            help,
            dl,
            get(&m.dead_lettered[i]),
        );
    }
}

async fn aggregated(State(st): State<Shared>) -> impl IntoResponse {
    reply(render(&st, &Scope::Aggregated))
}

async fn per_object(State(st): State<Shared>) -> impl IntoResponse {
    reply(render(&st, &Scope::PerObject))
}

async fn detailed(State(st): State<Shared>, RawQuery(q): RawQuery) -> impl IntoResponse {
    reply(render(&st, &Scope::detailed(q.as_deref())))
}

/// The text exposition's content type.
pub fn reply(body: String) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
}

/// The Prometheus listener's routes (no authentication, as RabbitMQ's plugin).
pub fn router(st: Shared) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(aggregated))
        .route("/metrics/per-object", axum::routing::get(per_object))
        .route("/metrics/detailed", axum::routing::get(detailed))
        .with_state(st)
}

/// Serves the Prometheus endpoints on `listener` until `shutdown` turns true.
pub async fn serve(st: Shared, listener: tokio::net::TcpListener, mut shutdown: watch::Receiver<bool>) {
    let app = router(Arc::clone(&st));
    let stop = async move {
        let _ = shutdown.wait_for(|v| *v).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::warn!("Prometheus listener failed: {e}");
    }
}
