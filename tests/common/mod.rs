//! Shared helpers for end-to-end tests: an in-process broker on 127.0.0.1 with an ephemeral
//! port, lapin connections, and waiting on conditions with a deadline (never bare sleeps).

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use warren_server::{Config, RunningBroker};

/// A broker running in this test process.
pub struct TestBroker {
    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`
    pub url: String,
    /// The running broker.
    pub running: RunningBroker,
    /// Its data directory (removed on drop).
    pub data_dir: tempdir::Dir,
}

/// Starts a broker with default settings on an ephemeral loopback port.
pub async fn start() -> TestBroker {
    start_with(|_| {}).await
}

/// Starts a broker after `f` adjusts its configuration.
pub async fn start_with(f: impl FnOnce(&mut Config)) -> TestBroker {
    let data_dir = tempdir::Dir::new();
    let mut config = Config {
        amqp_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path.clone(),
        ..Config::default()
    };
    f(&mut config);
    let running = warren_server::start(config).await.expect("broker starts");
    let url = format!("amqp://guest:guest@{}/%2f", running.amqp_addr);
    TestBroker {
        url,
        running,
        data_dir,
    }
}

impl TestBroker {
    /// Opens a lapin connection.
    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .expect("connect")
    }
}

/// The AMQP reply code of a lapin protocol error.
pub fn reply_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => Some(p.get_id()),
        _ => None,
    }
}

/// The reply text of a lapin protocol error.
pub fn reply_text(e: &lapin::Error) -> String {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => p.get_message().to_string(),
        other => format!("{other:?}"),
    }
}

/// Awaits `fut`, failing the test after `secs` seconds.
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs}s waiting for {what}"),
    }
}

/// Polls `cond` until it holds, failing after `secs` seconds.
pub async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("condition not met within {secs}s: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub mod tempdir {
    //! A temporary directory removed on drop.
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};

    static N: AtomicU64 = AtomicU64::new(0);

    pub struct Dir {
        pub path: PathBuf,
    }

    impl Dir {
        pub fn new() -> Dir {
            let path = std::env::temp_dir().join(format!(
                "warren-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
