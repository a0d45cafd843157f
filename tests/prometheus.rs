//! End-to-end tests of the Prometheus listener (RabbitMQ's `rabbitmq_prometheus` port):
//! unauthenticated `/metrics`, `/metrics/per-object` and `/metrics/detailed`, counters that move
//! by the exact traffic sent, and Debian's real `prometheus` scraping Warren while the
//! RabbitMQ-Overview dashboard's queries answer through its HTTP API.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use lapin::BasicProperties;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
};
use serde_json::Value;
use warren_server::http::client;

async fn get(addr: SocketAddr, path: &str) -> String {
    let r = client::request("GET", &format!("http://{addr}{path}"), None, None)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.text()
}

fn prom(b: &TestBroker) -> SocketAddr {
    b.running.prometheus_addr.expect("Prometheus listener on")
}

/// The value of the sample `series` (name with its exact labels).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

const P: &str = "{protocol=\"amqp091\"}";
const PQ: &str = "{protocol=\"amqp091\",queue_type=\"rabbit_classic_queue\"}";

async fn publish_confirmed(ch: &lapin::Channel, exchange: &str, key: &str, n: usize, mandatory: bool) {
    for i in 0..n {
        ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions {
                mandatory,
                ..Default::default()
            },
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
}

#[tokio::test]
async fn unauthenticated_endpoints_count_exact_traffic_and_stop_with_the_broker() {
    let b = start().await;
    let addr = prom(&b);
    let m = get(addr, "/metrics").await;
    // Identity and build info, as the plugin writes them.
    let id = m
        .lines()
        .find(|l| l.starts_with("rabbitmq_identity_info{"))
        .expect("identity info");
    assert!(
        id.contains("rabbitmq_node=\"warren@") && id.contains("rabbitmq_cluster=\"warren\""),
        "{id}"
    );
    assert!(
        id.contains("rabbitmq_cluster_permanent_id=\"") && id.ends_with("} 1"),
        "{id}"
    );
    assert!(m.contains("# TYPE rabbitmq_identity_info untyped\n# HELP rabbitmq_identity_info RabbitMQ node & cluster identity info\n"));
    let build = m.lines().find(|l| l.starts_with("rabbitmq_build_info{")).unwrap();
    for l in [
        "rabbitmq_version=",
        "prometheus_plugin_version=",
        "prometheus_client_version=",
        "erlang_version=",
    ] {
        assert!(build.contains(l), "{build}");
    }
    // Every family the brief names is there with its type.
    for (name, kind) in [
        ("rabbitmq_connections", "gauge"),
        ("rabbitmq_channels", "gauge"),
        ("rabbitmq_consumers", "gauge"),
        ("rabbitmq_queues", "gauge"),
        ("rabbitmq_connections_opened_total", "counter"),
        ("rabbitmq_connections_closed_total", "counter"),
        ("rabbitmq_channels_opened_total", "counter"),
        ("rabbitmq_channels_closed_total", "counter"),
        ("rabbitmq_queues_declared_total", "counter"),
        ("rabbitmq_queues_created_total", "counter"),
        ("rabbitmq_queues_deleted_total", "counter"),
        ("rabbitmq_channel_messages_published_total", "counter"),
        ("rabbitmq_channel_messages_confirmed_total", "counter"),
        ("rabbitmq_channel_messages_unroutable_dropped_total", "counter"),
        ("rabbitmq_channel_messages_unroutable_returned_total", "counter"),
        ("rabbitmq_channel_messages_redelivered_total", "counter"),
        ("rabbitmq_channel_messages_acked_total", "counter"),
        ("rabbitmq_channel_get_total", "counter"),
        ("rabbitmq_channel_get_ack_total", "counter"),
        ("rabbitmq_channel_get_empty_total", "counter"),
        ("rabbitmq_channel_messages_delivered_total", "counter"),
        ("rabbitmq_channel_messages_delivered_ack_total", "counter"),
        ("rabbitmq_queue_messages_ready", "gauge"),
        ("rabbitmq_queue_messages_unacked", "gauge"),
        ("rabbitmq_queue_messages", "gauge"),
        ("rabbitmq_queue_consumers", "gauge"),
        ("rabbitmq_process_resident_memory_bytes", "gauge"),
        ("rabbitmq_resident_memory_limit_bytes", "gauge"),
        ("rabbitmq_disk_space_available_bytes", "gauge"),
        ("rabbitmq_disk_space_available_limit_bytes", "gauge"),
        ("rabbitmq_process_open_fds", "gauge"),
        ("rabbitmq_process_max_fds", "gauge"),
        ("rabbitmq_process_open_tcp_sockets", "gauge"),
        ("rabbitmq_process_max_tcp_sockets", "gauge"),
        ("rabbitmq_alarms_memory_used_watermark", "untyped"),
        ("rabbitmq_alarms_free_disk_space_watermark", "untyped"),
        ("rabbitmq_alarms_file_descriptor_limit", "untyped"),
        ("rabbitmq_global_messages_received_total", "counter"),
        ("rabbitmq_global_messages_received_confirm_total", "counter"),
        ("rabbitmq_global_messages_routed_total", "counter"),
        ("rabbitmq_global_messages_unroutable_dropped_total", "counter"),
        ("rabbitmq_global_messages_unroutable_returned_total", "counter"),
        ("rabbitmq_global_messages_confirmed_total", "counter"),
        ("rabbitmq_global_messages_delivered_total", "counter"),
        (
            "rabbitmq_global_messages_delivered_consume_auto_ack_total",
            "counter",
        ),
        (
            "rabbitmq_global_messages_delivered_consume_manual_ack_total",
            "counter",
        ),
        ("rabbitmq_global_messages_delivered_get_auto_ack_total", "counter"),
        (
            "rabbitmq_global_messages_delivered_get_manual_ack_total",
            "counter",
        ),
        ("rabbitmq_global_messages_redelivered_total", "counter"),
        ("rabbitmq_global_messages_acknowledged_total", "counter"),
        ("rabbitmq_global_messages_get_empty_total", "counter"),
        ("rabbitmq_global_messages_dead_lettered_rejected_total", "counter"),
        ("rabbitmq_global_publishers", "gauge"),
        ("rabbitmq_global_consumers", "gauge"),
        ("warren_queue_is_dlq", "gauge"),
        ("warren_dead_letter_dropped_total", "counter"),
    ] {
        assert_eq!(
            m.matches(&format!("# TYPE {name} {kind}\n# HELP {name} "))
                .count(),
            1,
            "{name}"
        );
    }
    assert!(
        !m.contains("queue=\""),
        "aggregated /metrics has no per-queue labels"
    );

    // Traffic: 25 confirmed publishes, consumed with manual acks; 2 mandatory and 3 plain
    // unroutable publishes; one basic.get of each kind and one on an empty queue.
    let conn = b.connect().await;
    let pubch = conn.create_channel().await.unwrap();
    pubch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    declare(&pubch, "work").await;
    publish_confirmed(&pubch, "", "work", 25, false).await;
    publish_confirmed(&pubch, "amq.direct", "nowhere", 2, true).await;
    publish_confirmed(&pubch, "amq.direct", "nowhere", 3, false).await;
    let subch = conn.create_channel().await.unwrap();
    let mut consumer = consume(&subch, "work", "c1").await;
    use futures_lite::StreamExt as _;
    for _ in 0..25 {
        let d = within(10, "a delivery", consumer.next()).await.unwrap().unwrap();
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    wait_until(10, "25 acks", || counts(&b, "work") == (0, 0, 1)).await;
    declare(&pubch, "polled").await;
    publish_confirmed(&pubch, "", "polled", 2, false).await;
    let g = subch
        .basic_get("polled".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap();
    assert!(g.is_some());
    let g = subch
        .basic_get("polled".into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap();
    g.unwrap().delivery.ack(BasicAckOptions::default()).await.unwrap();
    assert!(
        subch
            .basic_get("polled".into(), BasicGetOptions::default())
            .await
            .unwrap()
            .is_none()
    );
    wait_until(10, "the get acked", || counts(&b, "polled") == (0, 0, 0)).await;
    // A third channel opened and closed; a queue deleted.
    let extra = conn.create_channel().await.unwrap();
    declare(&extra, "doomed").await;
    extra
        .queue_delete("doomed".into(), Default::default())
        .await
        .unwrap();
    extra.close(200, "bye".into()).await.unwrap();

    let m = get(addr, "/metrics").await;
    let expect = [
        ("rabbitmq_channel_messages_published_total", 32.0),
        ("rabbitmq_channel_messages_confirmed_total", 32.0),
        ("rabbitmq_channel_messages_unroutable_returned_total", 2.0),
        ("rabbitmq_channel_messages_unroutable_dropped_total", 3.0),
        ("rabbitmq_channel_messages_delivered_ack_total", 25.0),
        ("rabbitmq_channel_messages_delivered_total", 0.0),
        ("rabbitmq_channel_messages_acked_total", 26.0),
        ("rabbitmq_channel_messages_redelivered_total", 0.0),
        ("rabbitmq_channel_get_total", 1.0),
        ("rabbitmq_channel_get_ack_total", 1.0),
        ("rabbitmq_channel_get_empty_total", 1.0),
        ("rabbitmq_queue_messages_published_total", 27.0),
        ("rabbitmq_connections_opened_total", 1.0),
        ("rabbitmq_connections_closed_total", 0.0),
        ("rabbitmq_channels_opened_total", 3.0),
        ("rabbitmq_channels_closed_total", 1.0),
        ("rabbitmq_queues_declared_total", 3.0),
        ("rabbitmq_queues_created_total", 3.0),
        ("rabbitmq_queues_deleted_total", 1.0),
        ("rabbitmq_connections", 1.0),
        ("rabbitmq_channels", 2.0),
        ("rabbitmq_consumers", 1.0),
        ("rabbitmq_queues", 2.0),
        ("rabbitmq_queue_messages_ready", 0.0),
        ("rabbitmq_queue_consumers", 1.0),
        ("rabbitmq_channel_consumers", 1.0),
        ("rabbitmq_connection_channels", 2.0),
        (&format!("rabbitmq_global_messages_received_total{P}"), 32.0),
        (
            &format!("rabbitmq_global_messages_received_confirm_total{P}"),
            32.0,
        ),
        (&format!("rabbitmq_global_messages_routed_total{P}"), 27.0),
        (&format!("rabbitmq_global_messages_confirmed_total{P}"), 32.0),
        (
            &format!("rabbitmq_global_messages_unroutable_returned_total{P}"),
            2.0,
        ),
        (
            &format!("rabbitmq_global_messages_unroutable_dropped_total{P}"),
            3.0,
        ),
        (&format!("rabbitmq_global_publishers{P}"), 1.0),
        (&format!("rabbitmq_global_consumers{P}"), 1.0),
        (&format!("rabbitmq_global_messages_delivered_total{PQ}"), 27.0),
        (
            &format!("rabbitmq_global_messages_delivered_consume_manual_ack_total{PQ}"),
            25.0,
        ),
        (
            &format!("rabbitmq_global_messages_delivered_consume_auto_ack_total{PQ}"),
            0.0,
        ),
        (
            &format!("rabbitmq_global_messages_delivered_get_manual_ack_total{PQ}"),
            1.0,
        ),
        (
            &format!("rabbitmq_global_messages_delivered_get_auto_ack_total{PQ}"),
            1.0,
        ),
        (&format!("rabbitmq_global_messages_get_empty_total{PQ}"), 1.0),
        (&format!("rabbitmq_global_messages_acknowledged_total{PQ}"), 26.0),
    ];
    for (series, want) in expect {
        assert_eq!(metric(&m, series), Some(want), "{series}");
    }
    assert!(metric(&m, "rabbitmq_connection_incoming_bytes_total").unwrap() > 0.0);
    assert!(metric(&m, "rabbitmq_process_open_fds").unwrap() > 0.0);
    assert!(metric(&m, "rabbitmq_process_open_tcp_sockets").unwrap() >= 2.0);
    assert!(metric(&m, "rabbitmq_process_max_fds").unwrap() > 0.0);
    assert!(metric(&m, "rabbitmq_disk_space_available_bytes").unwrap() > 0.0);

    // The management port still needs credentials for its /metrics (per-object form).
    let mgmt = format!("http://{}/metrics", b.running.http_addr);
    assert_eq!(
        client::request("GET", &mgmt, None, None).await.unwrap().status,
        401
    );
    let r = client::request("GET", &mgmt, Some(("guest", "guest")), None)
        .await
        .unwrap();
    assert!(
        r.text()
            .contains("rabbitmq_queue_messages_ready{vhost=\"/\",queue=\"work\"} 0")
    );

    conn.close(200, "bye".into()).await.unwrap();
    wait_until(10, "connection closed counted", || {
        b.running
            .broker
            .metrics
            .connections_closed
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    })
    .await;
    let m = get(addr, "/metrics").await;
    assert_eq!(metric(&m, "rabbitmq_channels_closed_total"), Some(3.0));
    assert_eq!(metric(&m, &format!("rabbitmq_global_publishers{P}")), Some(0.0));
    b.running.shutdown().await;
    // Stopped with the broker.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener still open"
    );
}

#[tokio::test]
async fn per_object_and_detailed_honour_family_and_vhost() {
    let b = start().await;
    let addr = prom(&b);
    let api = |p: &str| format!("http://{}{p}", b.running.http_addr);
    let put = |p: String, body: &'static str| async move {
        let r = client::request(
            "PUT",
            &p,
            Some(("guest", "guest")),
            Some(("application/json", body.into())),
        )
        .await
        .unwrap();
        assert!(r.status < 300, "PUT {p}: {} {}", r.status, r.text());
    };
    put(api("/api/vhosts/other"), "{}").await;
    put(
        api("/api/permissions/other/guest"),
        r#"{"configure":".*","write":".*","read":".*"}"#,
    )
    .await;
    put(api("/api/queues/other/q2"), r#"{"durable":false}"#).await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "q1").await;
    for i in 0..3 {
        publish(&ch, "", "q1", format!("{i}").as_bytes()).await;
    }
    wait_until(10, "3 ready", || counts(&b, "q1").0 == 3).await;
    let ch3 = conn.create_channel().await.unwrap();
    let _c = consume(&ch3, "q1", "tag").await;
    wait_until(10, "delivered to the consumer", || counts(&b, "q1") == (0, 3, 1)).await;

    let m = get(addr, "/metrics/per-object").await;
    assert_eq!(
        metric(&m, "rabbitmq_queue_messages_unacked{vhost=\"/\",queue=\"q1\"}"),
        Some(3.0)
    );
    assert_eq!(
        metric(&m, "rabbitmq_queue_messages_ready{vhost=\"other\",queue=\"q2\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "rabbitmq_queue_consumers{vhost=\"/\",queue=\"q1\"}"),
        Some(1.0)
    );
    let chan = m
        .lines()
        .find(|l| l.starts_with("rabbitmq_channel_consumers{channel=\""))
        .expect("per-channel consumers");
    assert!(chan.ends_with(" 1"), "{chan}");
    assert!(
        m.lines()
            .any(|l| l.starts_with("rabbitmq_connection_incoming_bytes_total{channel=\"127.0.0.1:"))
    );
    assert!(m.contains("rabbitmq_identity_info{"));
    assert!(m.contains("rabbitmq_global_messages_received_total{protocol=\"amqp091\"} 3\n"));

    // One family, one vhost.
    let d = get(addr, "/metrics/detailed?family=queue_coarse_metrics&vhost=other").await;
    assert_eq!(
        metric(
            &d,
            "rabbitmq_detailed_queue_messages_ready{vhost=\"other\",queue=\"q2\"}"
        ),
        Some(0.0)
    );
    assert!(!d.contains("queue=\"q1\""), "{d}");
    assert!(!d.contains("rabbitmq_detailed_queue_consumers"), "{d}");
    assert!(!d.contains("rabbitmq_connections "), "{d}");
    assert!(!d.contains("rabbitmq_global_"), "{d}");
    assert!(
        d.contains("rabbitmq_identity_info{"),
        "identity stays for dashboard joins"
    );
    // Several families, every vhost.
    let d = get(
        addr,
        "/metrics/detailed?family=queue_metrics&family=connection_coarse_metrics&family=channel_metrics",
    )
    .await;
    assert_eq!(
        metric(&d, "rabbitmq_detailed_queue_consumers{vhost=\"/\",queue=\"q1\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &d,
            "rabbitmq_detailed_queue_consumers{vhost=\"other\",queue=\"q2\"}"
        ),
        Some(0.0)
    );
    assert!(d.contains("# TYPE rabbitmq_detailed_connection_incoming_bytes_total counter\n"));
    assert!(
        d.lines()
            .any(|l| l.starts_with("rabbitmq_detailed_channel_consumers{channel="))
    );
    assert!(!d.contains("rabbitmq_detailed_queue_messages_ready{"), "{d}");
    // vhost given with %2F, as clients encode "/".
    let d = get(addr, "/metrics/detailed?vhost=%2F&family=queue_coarse_metrics").await;
    assert!(d.contains("queue=\"q1\"") && !d.contains("queue=\"q2\""), "{d}");
    // No family: only the identity.
    let d = get(addr, "/metrics/detailed").await;
    assert!(!d.contains("rabbitmq_detailed_"), "{d}");
    conn.close(200, "bye".into()).await.ok();
    b.running.shutdown().await;
}

#[tokio::test]
async fn off_starts_no_listener() {
    let b = start_with(|c| c.prometheus_listen = None).await;
    assert!(b.running.prometheus_addr.is_none());
    b.running.shutdown().await;
}

/// Percent-encodes a PromQL expression for a query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (c as char).to_string(),
            _ => format!("%{c:02X}"),
        })
        .collect()
}

/// Kills the `prometheus` process when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The queries of RabbitMQ's official "RabbitMQ-Overview" Grafana dashboard
/// (rabbitmq-server, deps/rabbitmq_prometheus/docker/grafana/dashboards/RabbitMQ-Overview.json),
/// as (panel, metric expression, labels the panel joins from `rabbitmq_identity_info`): every
/// panel multiplies its metric by `on(instance, job) group_left(…) rabbitmq_identity_info`
/// filtered on `$rabbitmq_cluster` and `$namespace` (empty outside Kubernetes), which is
/// what [`dashboard_query`] rebuilds.
const OVERVIEW_PANELS: &[(&str, &str, &str, &str)] = &[
    // (panel, aggregation, metric expression, joined labels)
    (
        "Ready messages",
        "sum",
        "rabbitmq_queue_messages_ready",
        "rabbitmq_cluster",
    ),
    (
        "Incoming messages / s",
        "sum",
        "rate(rabbitmq_global_messages_received_total[60s])",
        "rabbitmq_cluster",
    ),
    (
        "Publishers",
        "sum",
        "rabbitmq_global_publishers",
        "rabbitmq_cluster",
    ),
    (
        "Publishers (3.8 form: channels)",
        "sum",
        "rabbitmq_channels",
        "rabbitmq_cluster",
    ),
    (
        "Publishers (3.8 form: channel consumers)",
        "sum",
        "rabbitmq_channel_consumers",
        "rabbitmq_cluster",
    ),
    ("Connections", "sum", "rabbitmq_connections", "rabbitmq_cluster"),
    ("Queues", "sum", "rabbitmq_queues", "rabbitmq_cluster"),
    (
        "Unacknowledged messages",
        "sum",
        "rabbitmq_queue_messages_unacked",
        "rabbitmq_cluster",
    ),
    (
        "Outgoing messages / s: redelivered",
        "sum",
        "rate(rabbitmq_global_messages_redelivered_total[60s])",
        "rabbitmq_cluster",
    ),
    (
        "Outgoing messages / s: consume auto ack",
        "sum",
        "rate(rabbitmq_global_messages_delivered_consume_auto_ack_total[60s])",
        "rabbitmq_cluster",
    ),
    (
        "Outgoing messages / s: consume manual ack",
        "sum",
        "rate(rabbitmq_global_messages_delivered_consume_manual_ack_total[60s])",
        "rabbitmq_cluster",
    ),
    (
        "Outgoing messages / s: get auto ack",
        "sum",
        "rate(rabbitmq_global_messages_delivered_get_auto_ack_total[60s])",
        "rabbitmq_cluster",
    ),
    (
        "Outgoing messages / s: get manual ack",
        "sum",
        "rate(rabbitmq_global_messages_delivered_get_manual_ack_total[60s])",
        "rabbitmq_cluster",
    ),
    ("Consumers", "sum", "rabbitmq_consumers", "rabbitmq_cluster"),
    (
        "Consumers (global)",
        "sum",
        "rabbitmq_global_consumers",
        "rabbitmq_cluster",
    ),
    ("Channels", "sum", "rabbitmq_channels", "rabbitmq_cluster"),
    (
        "Nodes",
        "",
        "rabbitmq_build_info",
        "rabbitmq_cluster, rabbitmq_node",
    ),
    (
        "Memory available: limit",
        "",
        "rabbitmq_resident_memory_limit_bytes",
        "rabbitmq_cluster, rabbitmq_node",
    ),
    (
        "Memory available: used",
        "",
        "rabbitmq_process_resident_memory_bytes",
        "rabbitmq_cluster, rabbitmq_node",
    ),
    (
        "Disk space available",
        "",
        "rabbitmq_disk_space_available_bytes",
        "rabbitmq_cluster, rabbitmq_node",
    ),
    (
        "Disk space available: limit",
        "",
        "rabbitmq_disk_space_available_limit_bytes",
        "rabbitmq_cluster, rabbitmq_node",
    ),
    (
        "File descriptors available: max",
        "",
        "rabbitmq_process_max_fds",
        "rabbitmq_cluster, rabbitmq_node",
    ),
    (
        "File descriptors available: open",
        "",
        "rabbitmq_process_open_fds",
        "rabbitmq_cluster, rabbitmq_node",
    ),
    (
        "TCP sockets available: max",
        "",
        "rabbitmq_process_max_tcp_sockets",
        "rabbitmq_cluster, rabbitmq_node",
    ),
    (
        "TCP sockets available: open",
        "",
        "rabbitmq_process_open_tcp_sockets",
        "rabbitmq_cluster, rabbitmq_node",
    ),
    (
        "Messages ready to be delivered to consumers",
        "sum by(rabbitmq_node)",
        "rabbitmq_queue_messages_ready",
        "rabbitmq_node",
    ),
    (
        "Messages pending consumer acknowledgement",
        "sum by(rabbitmq_node)",
        "rabbitmq_queue_messages_unacked",
        "rabbitmq_node",
    ),
    (
        "Messages published / s",
        "sum by(rabbitmq_node)",
        "rate(rabbitmq_global_messages_received_total[60s])",
        "rabbitmq_node",
    ),
    (
        "Messages confirmed to publishers / s",
        "sum by(rabbitmq_node)",
        "rate(rabbitmq_global_messages_confirmed_total[60s])",
        "rabbitmq_node",
    ),
    (
        "Messages routed to queues / s",
        "sum by(rabbitmq_node)",
        "rate(rabbitmq_global_messages_routed_total[60s])",
        "rabbitmq_node",
    ),
    (
        "Messages unconfirmed to publishers / s",
        "sum by(rabbitmq_node)",
        "rate(rabbitmq_global_messages_received_confirm_total[60s])",
        "rabbitmq_node",
    ),
    (
        "Unroutable messages dropped / s",
        "sum by(rabbitmq_node)",
        "rate(rabbitmq_global_messages_unroutable_dropped_total[60s])",
        "rabbitmq_node",
    ),
    (
        "Unroutable messages returned to publishers / s",
        "sum by(rabbitmq_node)",
        "rate(rabbitmq_global_messages_unroutable_returned_total[60s])",
        "rabbitmq_node",
    ),
    (
        "Messages delivered / s",
        "sum by(rabbitmq_node)",
        "rate(rabbitmq_global_messages_delivered_total[60s])",
        "rabbitmq_node",
    ),
    (
        "Messages redelivered / s",
        "sum by(rabbitmq_node)",
        "rate(rabbitmq_global_messages_redelivered_total[60s])",
        "rabbitmq_node",
    ),
    (
        "Messages acknowledged / s",
        "sum by(rabbitmq_node)",
        "rate(rabbitmq_global_messages_acknowledged_total[60s])",
        "rabbitmq_node",
    ),
    (
        "Polling operations that yield no result / s",
        "sum by(rabbitmq_node)",
        "rate(rabbitmq_global_messages_get_empty_total[60s])",
        "rabbitmq_node",
    ),
    (
        "Total queues",
        "",
        "rabbitmq_queues",
        "rabbitmq_cluster, rabbitmq_node",
    ),
    (
        "Queues declared / s",
        "sum by(rabbitmq_node)",
        "rate(rabbitmq_queues_declared_total[60s])",
        "rabbitmq_cluster, rabbitmq_node",
    ),
    (
        "Queues created / s",
        "sum by(rabbitmq_node)",
        "rate(rabbitmq_queues_created_total[60s])",
        "rabbitmq_cluster, rabbitmq_node",
    ),
    (
        "Queues deleted / s",
        "sum by(rabbitmq_node)",
        "rate(rabbitmq_queues_deleted_total[60s])",
        "rabbitmq_cluster, rabbitmq_node",
    ),
    (
        "Total channels",
        "",
        "rabbitmq_channels",
        "rabbitmq_cluster, rabbitmq_node",
    ),
    (
        "Channels opened / s",
        "sum by(rabbitmq_node)",
        "rate(rabbitmq_channels_opened_total[60s])",
        "rabbitmq_cluster, rabbitmq_node",
    ),
    (
        "Channels closed / s",
        "sum by(rabbitmq_node)",
        "rate(rabbitmq_channels_closed_total[60s])",
        "rabbitmq_cluster, rabbitmq_node",
    ),
    (
        "Total connections",
        "",
        "rabbitmq_connections",
        "rabbitmq_cluster, rabbitmq_node",
    ),
    (
        "Connections opened / s",
        "sum by(rabbitmq_node)",
        "rate(rabbitmq_connections_opened_total[60s])",
        "rabbitmq_cluster, rabbitmq_node",
    ),
    (
        "Connections closed / s",
        "sum by(rabbitmq_node)",
        "rate(rabbitmq_connections_closed_total[60s])",
        "rabbitmq_cluster, rabbitmq_node",
    ),
];

/// A panel's PromQL as the dashboard writes it, with `$rabbitmq_cluster` = "warren" and an
/// empty `$namespace`.
fn dashboard_query(agg: &str, expr: &str, labels: &str) -> String {
    let joined = format!(
        "{expr} * on(instance, job) group_left({labels}) \
         rabbitmq_identity_info{{rabbitmq_cluster=\"warren\", namespace=\"\"}}"
    );
    if agg.is_empty() {
        joined
    } else {
        format!("{agg}({joined})")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrapes_warren_and_the_overview_dashboard_queries_answer() {
    let Ok(bin) = which("prometheus") else {
        println!(
            "SKIPPED: no `prometheus` binary on PATH (Debian package `prometheus`; .ci/run installs it)"
        );
        return;
    };
    let b = start().await;
    let target = prom(&b);
    let dir = tempdir::Dir::new();
    let config = dir.path.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: warren\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path.join("prometheus.log")).unwrap();
    let child = std::process::Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path.join("tsdb").display()))
        .arg(format!("--web.listen-address={web}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn prometheus");
    let _guard = KillOnDrop(child);

    // Traffic for the whole test: confirmed publishes, a manual-ack consumer, an auto-ack
    // consumer, polling with both ack modes and on an empty queue, unroutable publishes,
    // and a short-lived connection, queue and channel each round.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for q in ["manual", "auto", "polled", "empty"] {
        declare(&ch, q).await;
    }
    let cons = conn.create_channel().await.unwrap();
    let mut manual = consume(&cons, "manual", "m").await;
    let mut auto = cons
        .basic_consume(
            "auto".into(),
            "a".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    let traffic = {
        let stop = stop.clone();
        let url = b.url.clone();
        tokio::spawn(async move {
            use futures_lite::StreamExt as _;
            let mut round = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && round < 600 {
                round += 1;
                for q in ["manual", "auto", "polled", "polled"] {
                    publish_confirmed(&ch, "", q, 1, false).await;
                }
                publish_confirmed(&ch, "amq.direct", "nowhere", 1, true).await;
                publish_confirmed(&ch, "amq.direct", "nowhere", 1, false).await;
                let d = manual.next().await.unwrap().unwrap();
                d.ack(BasicAckOptions::default()).await.unwrap();
                let _ = auto.next().await.unwrap().unwrap();
                let _ = cons
                    .basic_get("polled".into(), BasicGetOptions { no_ack: true })
                    .await
                    .unwrap();
                if let Some(m) = cons
                    .basic_get("polled".into(), BasicGetOptions::default())
                    .await
                    .unwrap()
                {
                    m.delivery.ack(BasicAckOptions::default()).await.unwrap();
                }
                let _ = cons
                    .basic_get("empty".into(), BasicGetOptions::default())
                    .await
                    .unwrap();
                let c = lapin::Connection::connect(&url, Default::default())
                    .await
                    .unwrap();
                let x = c.create_channel().await.unwrap();
                declare(&x, "churn").await;
                x.queue_delete("churn".into(), Default::default()).await.unwrap();
                c.close(200, "bye".into()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let api = |q: &str| format!("http://{web}/api/v1/query?query={}", encode(q));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // Ready, and scraping Warren successfully.
    let up = loop {
        if let Ok(r) = client::request("GET", &api("up{job=\"warren\"} == 1"), None, None).await
            && r.status == 200
            && r.json()["data"]["result"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        {
            break true;
        }
        if tokio::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let log = || std::fs::read_to_string(dir.path.join("prometheus.log")).unwrap_or_default();
    assert!(up, "prometheus never scraped Warren: {}", log());
    let mut pending: Vec<(&str, String)> = OVERVIEW_PANELS
        .iter()
        .map(|(panel, agg, expr, labels)| (*panel, dashboard_query(agg, expr, labels)))
        .collect();
    let mut answered = Vec::new();
    while !pending.is_empty() && tokio::time::Instant::now() < deadline {
        let mut still = Vec::new();
        for (panel, q) in pending {
            let r = client::request("GET", &api(&q), None, None).await.expect("query");
            let body: Value = r.json();
            assert_eq!(r.status, 200, "{panel}: {q}: {body}");
            match body["data"]["result"].as_array() {
                Some(a) if !a.is_empty() => answered.push((panel, a[0]["value"][1].to_string())),
                _ => still.push((panel, q)),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = within(20, "traffic to stop", traffic).await;
    for (panel, v) in &answered {
        println!("{panel}: {v}");
    }
    assert!(
        pending.is_empty(),
        "dashboard queries with no result: {pending:#?}\n{}",
        log()
    );
    conn.close(200, "bye".into()).await.ok();
    b.running.shutdown().await;
}

/// The full path of `name` on PATH.
fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
        .ok_or(())
}
