//! The real `warren` binary: command line, environment variables, log line, and a clean
//! SIGTERM shutdown that closes clients with 320 CONNECTION_FORCED and exits 0.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use futures_lite::StreamExt;
use lapin::{Connection, ConnectionProperties};

const BIN: &str = env!("CARGO_BIN_EXE_warren");

/// A child process killed on drop (if the test fails before it exits).
struct Broker {
    child: Child,
    lines: mpsc::Receiver<String>,
    _data: tempdir::Dir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns the binary with `args` and extra environment, capturing stdout and stderr lines.
fn spawn(args: &[&str], env: &[(&str, &str)]) -> Broker {
    let data = tempdir::Dir::new();
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--data-dir")
        .arg(&data.path)
        .env_remove("WARREN_AMQP_LISTEN")
        .env("WARREN_HTTP_LISTEN", "127.0.0.1:0")
        .env("WARREN_PROMETHEUS_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn warren");
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send(l);
        }
    });
    Broker {
        child,
        lines: rx,
        _data: data,
    }
}

impl Broker {
    /// Waits (with a deadline) for a log line containing `needle`; returns it.
    fn wait_for_line(&self, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(l) => seen.push(l),
                Err(_) => panic!("no line containing {needle:?} within {secs}s; output: {seen:#?}"),
            }
        }
    }

    fn sigterm(&self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(st.success());
    }

    /// Waits for the process to exit; returns its status.
    async fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "warren did not exit within {secs}s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[test]
fn help_lists_flags() {
    let out = Command::new(BIN).arg("--help").output().expect("run --help");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--amqp-listen",
        "--data-dir",
        "--heartbeat",
        "--frame-max",
        "--max-message-size",
        "--config",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
    assert!(
        text.contains("WARREN_AMQP_LISTEN"),
        "--help names the env var:\n{text}"
    );
}

#[test]
fn bad_config_exits_nonzero() {
    let dir = tempdir::Dir::new();
    let path = dir.path.join("bad.toml");
    std::fs::write(&path, "no_such_setting = 1\n").unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run warren");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"));
}

#[tokio::test]
async fn sigterm_closes_clients_with_320_and_exits_0() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut p = spawn(&["--amqp-listen", &listen], &[]);
    let line = p.wait_for_line("listening on", 30);
    assert!(line.contains(&listen), "{line}");

    let url = format!("amqp://guest:guest@{listen}/%2f");
    let conn = within(
        10,
        "connect",
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    .expect("connect");
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "work").await;
    publish(&ch, "", "work", b"hello").await;
    let mut consumer = consume(&ch, "work", "c").await;
    let d = next(&mut consumer).await;
    assert_eq!(d.data, b"hello");
    d.ack(lapin::options::BasicAckOptions::default()).await.unwrap();
    let mut events = conn.events_listener();

    p.sigterm();
    // The consumer's stream ends with the connection error: 320 CONNECTION_FORCED.
    let code = loop {
        match within(10, "connection.close after SIGTERM", consumer.next()).await {
            Some(Err(e)) => break reply_code(&e),
            Some(Ok(_)) => continue,
            None => break None,
        }
    };
    let code = match code {
        Some(c) => c,
        // Fall back to the connection's error event.
        None => loop {
            match within(5, "connection error event", events.next()).await {
                Some(lapin::Event::Error(e)) => break reply_code(&e).expect("protocol error"),
                Some(_) => continue,
                None => panic!("no error event"),
            }
        },
    };
    assert_eq!(code, 320);
    wait_until(5, "client sees the connection closed", || {
        !conn.status().connected()
    })
    .await;
    let st = p.wait_exit(10).await;
    assert!(st.success(), "exit status {st:?}");
    assert_eq!(st.code(), Some(0));
}

#[tokio::test]
async fn env_var_sets_listen_address() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut p = spawn(&[], &[("WARREN_AMQP_LISTEN", &listen)]);
    let line = p.wait_for_line("listening on", 30);
    assert!(line.contains(&listen), "{line}");
    let url = format!("amqp://guest:guest@{listen}/%2f");
    let conn = within(
        10,
        "connect",
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    .expect("connect via env-configured address");
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "env").await;
    conn.close(200, "bye".into()).await.unwrap();
    p.sigterm();
    let st = p.wait_exit(10).await;
    assert_eq!(st.code(), Some(0));
}

#[tokio::test]
async fn connection_open_and_close_are_logged_with_peer_user_vhost_and_name() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut p = spawn(&["--amqp-listen", &listen], &[]);
    p.wait_for_line("listening on", 30);
    let url = format!("amqp://guest:guest@{listen}/%2f");
    let props = ConnectionProperties::default().with_connection_name("log-check".into());
    let conn = within(10, "connect", Connection::connect(&url, props))
        .await
        .expect("connect");
    let opened = p.wait_for_line("connection opened", 10);
    for field in [
        "peer=127.0.0.1:",
        "user=guest",
        "vhost=/",
        "name=log-check",
        "INFO",
    ] {
        assert!(opened.contains(field), "{field} missing: {opened}");
    }
    conn.close(200, "bye".into()).await.unwrap();
    let closed = p.wait_for_line("connection closed", 10);
    for field in [
        "peer=127.0.0.1:",
        "user=guest",
        "vhost=/",
        "name=log-check",
        "INFO",
        "client sent connection.close (200 bye)",
    ] {
        assert!(closed.contains(field), "{field} missing: {closed}");
    }
    p.sigterm();
    assert_eq!(p.wait_exit(10).await.code(), Some(0));
}
