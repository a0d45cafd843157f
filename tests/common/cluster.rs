//! Helpers for cluster tests (`tests/cluster.rs`, `tests/nemesis.rs`): management API
//! requests, polling the API for a condition with a deadline, and cluster members as real
//! `warren` processes with fast Raft timeouts.

use std::time::{Duration, Instant};

use serde_json::Value;
use warren_server::http::client;

/// The cluster secret of every test cluster.
pub const SECRET: &str = "test-cluster-secret";

/// A management API request on `port` with `auth`.
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    auth: (&str, &str),
    body: Option<Value>,
) -> client::Response {
    client::request(
        method,
        &format!("http://127.0.0.1:{port}{path}"),
        Some(auth),
        body.map(|b| ("application/json", b.to_string().into_bytes())),
    )
    .await
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A management API request as guest.
pub async fn api(port: u16, method: &str, path: &str, body: Option<Value>) -> client::Response {
    http(port, method, path, ("guest", "guest"), body).await
}

/// Polls `GET path` on `port` until `ok` holds of its status and JSON, failing after `secs`
/// (a listener not up yet, as a restarted process's, counts as not yet).
pub async fn wait_for(port: u16, path: &str, secs: u64, what: &str, ok: impl Fn(u16, &Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let url = format!("http://127.0.0.1:{port}{path}");
        let (status, v) = match client::request("GET", &url, Some(("guest", "guest")), None).await {
            Ok(r) => (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null)),
            Err(e) => (0, Value::String(e.to_string())),
        };
        if ok(status, &v) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {secs}s (last: {status} {v})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many members of a `/api/nodes` listing run.
pub fn running_members(v: &Value) -> usize {
    v.as_array()
        .map(|a| a.iter().filter(|n| n["running"] == true).count())
        .unwrap_or(0)
}

/// Three of `f()`.
pub fn three<T>(f: impl Fn() -> T) -> [T; 3] {
    [f(), f(), f()]
}

/// Starts member `i` of a three-node cluster as a `warren` process named
/// `{prefix}{i+1}@localhost` on `dir`: AMQP on `amqp`, management API on `http`, cluster
/// listener on `cluster[i]` with the others as seeds, fast Raft timeouts.
pub fn spawn_member(
    prefix: &str,
    i: usize,
    dir: &std::path::Path,
    amqp: u16,
    http: u16,
    cluster: &[u16; 3],
) -> super::process::Broker {
    spawn_member_with(prefix, i, dir, (amqp, http), cluster, &[])
}

/// [`spawn_member`] with `extra` flags (`(amqp, http)`: its AMQP and management ports).
pub fn spawn_member_with(
    prefix: &str,
    i: usize,
    dir: &std::path::Path,
    (amqp, http): (u16, u16),
    cluster: &[u16; 3],
    extra: &[&str],
) -> super::process::Broker {
    let seeds: Vec<String> = (0..3)
        .filter(|j| *j != i)
        .map(|j| format!("127.0.0.1:{}", cluster[j]))
        .collect();
    let (name, listen, seeds) = (
        format!("{prefix}{}@localhost", i + 1),
        format!("127.0.0.1:{}", cluster[i]),
        seeds.join(","),
    );
    let mut args = vec![
        "--node-name",
        name.as_str(),
        "--cluster-listen",
        &listen,
        "--cluster-seeds",
        &seeds,
        "--cluster-secret",
        SECRET,
        "--cluster-fast-timeouts",
        "true",
    ];
    args.extend_from_slice(extra);
    super::process::Broker::spawn(dir, amqp, &format!("127.0.0.1:{http}"), &args)
}

/// Waits until every node (by management port) of `https` reports a leader of quorum queue `path`'s group other than
/// `not` (`None`: any), the same one everywhere, and returns it.
pub async fn group_leader(https: &[u16], path: &str, not: Option<&str>) -> String {
    let mut leader = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    'again: loop {
        assert!(
            Instant::now() < deadline,
            "the nodes agree on a new leader within 15s"
        );
        for &n in https {
            wait_for(n, path, 15, "a group leader", |s, v| {
                s == 200 && v["leader"].is_string() && v["leader"].as_str() != not
            })
            .await;
            let v: Value = serde_json::from_slice(&api(n, "GET", path, None).await.body).unwrap();
            let l = v["leader"].as_str().unwrap_or_default().to_string();
            if !leader.is_empty() && leader != l {
                leader.clear();
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue 'again;
            }
            leader = l;
        }
        return leader;
    }
}

/// Declares quorum queue `q` through `url` and waits until the nodes `https` (by management
/// port) agree on its group's leader (`path`: the queue's API path); returns the leader.
pub async fn declare_quorum(url: &str, https: &[u16], q: &str, path: &str) -> String {
    let c = lapin::Connection::connect(url, Default::default())
        .await
        .expect("connect");
    let ch = c.create_channel().await.unwrap();
    let quorum = super::table(vec![("x-queue-type", super::lstr("quorum"))]);
    super::declare_durable(&ch, q, quorum).await;
    group_leader(https, path, None).await
}
