//! Runs the perf engine as a library against an in-process Warren for a bounded number of
//! messages and checks the accounting end to end: everything published is consumed exactly
//! once. No timing assertions.

use warren_perf::{ExchangeType, PerfConfig};
use warren_server::{Config, start};

/// Each broker gets a data directory of its own: one broker owns a directory (its lock is
/// exclusive even within one process).
fn fresh_data_dir() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("warren-perf-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn broker_uri() -> (warren_server::RunningBroker, String) {
    let broker = start(Config {
        amqp_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        prometheus_listen: None,
        data_dir: fresh_data_dir(),
        ..Config::default()
    })
    .await
    .expect("broker starts");
    let uri = format!("amqp://guest:guest@{}/%2f", broker.amqp_addr);
    (broker, uri)
}

fn config(uri: &str) -> PerfConfig {
    PerfConfig {
        uri: uri.to_string(),
        producers: 2,
        consumers: 1,
        pmessages: Some(5_000),
        confirm: 100,
        auto_ack: false,
        prefetch: 500,
        multi_ack_every: 50,
        quiet: true,
        drain_timeout: 30.0,
        ..PerfConfig::default()
    }
}

#[tokio::test]
async fn confirms_and_manual_acks_lose_nothing() {
    let (broker, uri) = broker_uri().await;
    let report = warren_perf::run(config(&uri), false).await.expect("run");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.published, 10_000);
    assert_eq!(report.confirmed, 10_000);
    assert_eq!(report.consumed, report.published);
    assert_eq!(report.lost, Some(0));
    assert_eq!(report.lost_confirmed, Some(0));
    assert_eq!(report.duplicated, 0);
    assert_eq!(report.corrupt, 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn fanout_delivers_one_copy_per_queue() {
    let (broker, uri) = broker_uri().await;
    let cfg = PerfConfig {
        exchange_type: ExchangeType::Fanout,
        queues: 3,
        consumers: 3,
        auto_ack: true,
        confirm: 0,
        pmessages: Some(2_000),
        size: 64,
        ..config(&uri)
    };
    let report = warren_perf::run(cfg, false).await.expect("run");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.published, 4_000);
    assert_eq!(report.expected, 12_000);
    assert_eq!(report.consumed, 12_000);
    assert_eq!((report.lost, report.duplicated), (Some(0), 0));
    broker.shutdown().await;
}

#[tokio::test]
async fn topic_bindings_and_backlog_drain() {
    let (broker, uri) = broker_uri().await;
    let cfg = PerfConfig {
        exchange_type: ExchangeType::Topic,
        queues: 4,
        consumers: 4,
        bindings: Some(40),
        backlog: true,
        pmessages: Some(3_000),
        size: 256,
        ..config(&uri)
    };
    let report = warren_perf::run(cfg, false).await.expect("run");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.published, 6_000);
    assert_eq!(report.consumed, 6_000);
    assert_eq!((report.lost, report.duplicated, report.returned), (Some(0), 0, 0));
    broker.shutdown().await;
}
