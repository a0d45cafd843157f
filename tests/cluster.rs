//! Clustering end to end (issue 19, first slice): brokers on loopback forming one Raft
//! cluster, membership through the management API and `warrenctl`, vhosts, users and
//! permissions changed through any node's API replicated to every node, a restarted node
//! catching up, and a node without a majority refusing changes with 503. In-process brokers
//! and real `warren` processes; short Raft timeouts (`--cluster-fast-timeouts`); every wait
//! is a condition with a deadline.

mod common;

use std::time::{Duration, Instant};

use common::TestBroker;
use serde_json::{Value, json};
use warren_server::http::client;

const SECRET: &str = "test-cluster-secret";

async fn http(
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

async fn api(port: u16, method: &str, path: &str, body: Option<Value>) -> client::Response {
    http(port, method, path, ("guest", "guest"), body).await
}

/// Polls `GET path` on `port` until `ok` holds of its status and JSON, failing after `secs`.
async fn wait_for(port: u16, path: &str, secs: u64, what: &str, ok: impl Fn(u16, &Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = api(port, "GET", path, None).await;
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if ok(r.status, &v) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {secs}s (last: {} {v})",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn running_members(v: &Value) -> usize {
    v.as_array()
        .map(|a| a.iter().filter(|n| n["running"] == true).count())
        .unwrap_or(0)
}

async fn start_node(name: &str, port: u16, seeds: &[u16]) -> TestBroker {
    let name = name.to_string();
    let seeds: Vec<String> = seeds.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    common::start_with(move |c| {
        c.node_name = name;
        c.cluster_listen = Some(format!("127.0.0.1:{port}"));
        c.cluster_seeds = seeds;
        c.cluster_secret = Some(SECRET.into());
        c.cluster_timeouts = warren_server::config::fast_cluster_timeouts();
    })
    .await
}

fn http_port(b: &TestBroker) -> u16 {
    b.running.http_addr.port()
}

async fn ctl(port: u16, args: &[&str]) -> Result<String, String> {
    let url = format!("http://127.0.0.1:{port}");
    let mut argv = vec!["warrenctl", "--url", &url];
    argv.extend_from_slice(args);
    warren_server::http::ctl::run_from(argv).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_form_one_cluster_and_replicate_vhosts_users_and_permissions() {
    let ports = [common::free_port(), common::free_port(), common::free_port()];
    let mut nodes = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let seeds: Vec<u16> = ports.iter().copied().filter(|q| q != p).collect();
        nodes.push(start_node(&format!("n{}@localhost", i + 1), *p, &seeds).await);
    }
    for n in &nodes {
        wait_for(http_port(n), "/api/nodes", 15, "three running members", |s, v| {
            s == 200 && running_members(v) == 3
        })
        .await;
    }
    // Each node reports itself under its configured name, with its own figures.
    let me = api(http_port(&nodes[1]), "GET", "/api/nodes/n2@localhost", None).await;
    assert_eq!(me.status, 200);
    assert!(me.json()["mem_used"].is_number());
    let status = ctl(http_port(&nodes[2]), &["cluster_status"]).await.unwrap();
    for n in ["n1@localhost", "n2@localhost", "n3@localhost"] {
        assert!(status.contains(n), "{status}");
    }
    assert_eq!(status.matches("running").count(), 3, "{status}");

    // Definitions made through node 1 appear on nodes 2 and 3.
    let n1 = http_port(&nodes[0]);
    assert_eq!(api(n1, "PUT", "/api/vhosts/replicated", None).await.status, 201);
    assert_eq!(api(n1, "PUT", "/api/vhosts/replicated", None).await.status, 204);
    let alice = json!({"password": "wonderland", "tags": "management"});
    assert_eq!(api(n1, "PUT", "/api/users/alice", Some(alice)).await.status, 201);
    let perm = json!({"configure": ".*", "write": ".*", "read": ".*"});
    let r = api(n1, "PUT", "/api/permissions/replicated/alice", Some(perm)).await;
    assert_eq!(r.status, 201);
    let bad = json!({"configure": "(", "write": ".*", "read": ".*"});
    let r = api(n1, "PUT", "/api/permissions/replicated/alice", Some(bad)).await;
    assert_eq!(r.status, 400);
    for n in &nodes[1..] {
        let p = http_port(n);
        wait_for(
            p,
            "/api/permissions/replicated/alice",
            10,
            "the permission replicated",
            |s, _| s == 200,
        )
        .await;
        assert_eq!(api(p, "GET", "/api/vhosts/replicated", None).await.status, 200);
        // The password hash is the proposer's: alice logs in on every node.
        let who = http(p, "GET", "/api/whoami", ("alice", "wonderland"), None).await;
        assert_eq!(who.status, 200, "{}", who.text());
        // The creating administrator got full permissions on the new vhost there too.
        assert_eq!(
            api(p, "GET", "/api/permissions/replicated/guest", None)
                .await
                .status,
            200
        );
    }
    // A deletion through node 2 reaches nodes 1 and 3; deleting again is a 404.
    let n2 = http_port(&nodes[1]);
    assert_eq!(api(n2, "DELETE", "/api/users/alice", None).await.status, 204);
    assert_eq!(
        api(n2, "DELETE", "/api/vhosts/replicated", None).await.status,
        204
    );
    assert_eq!(
        api(n2, "DELETE", "/api/vhosts/replicated", None).await.status,
        404
    );
    for n in [&nodes[0], &nodes[2]] {
        wait_for(
            http_port(n),
            "/api/vhosts/replicated",
            10,
            "the vhost deleted",
            |s, _| s == 404,
        )
        .await;
        assert_eq!(
            api(http_port(n), "GET", "/api/users/alice", None).await.status,
            404
        );
    }
    for n in nodes {
        n.running.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lone_node_joins_with_warrenctl_and_is_forgotten() {
    let (pa, pb) = (common::free_port(), common::free_port());
    let a = start_node("a@localhost", pa, &[]).await;
    let b = start_node("b@localhost", pb, &[]).await;
    let (ha, hb) = (http_port(&a), http_port(&b));
    // Each starts as a one-node cluster of itself.
    let s = api(hb, "GET", "/api/cluster", None).await.json();
    assert_eq!(s["members"].as_array().unwrap().len(), 1, "{s}");
    let out = ctl(hb, &["join_cluster", &format!("127.0.0.1:{pa}")]).await;
    assert!(out.is_ok(), "{out:?}");
    for p in [ha, hb] {
        wait_for(p, "/api/nodes", 10, "two running members", |s, v| {
            s == 200 && running_members(v) == 2
        })
        .await;
    }
    // The joined node takes the cluster's changes.
    assert_eq!(api(ha, "PUT", "/api/vhosts/after-join", None).await.status, 201);
    wait_for(
        hb,
        "/api/vhosts/after-join",
        10,
        "the vhost on the joined node",
        |s, _| s == 200,
    )
    .await;
    let out = ctl(ha, &["forget_cluster_node", "b@localhost"]).await;
    assert!(out.is_ok(), "{out:?}");
    wait_for(ha, "/api/nodes", 10, "one member", |s, v| {
        s == 200 && v.as_array().map(Vec::len) == Some(1)
    })
    .await;
    assert!(ctl(ha, &["forget_cluster_node", "nobody@nowhere"]).await.is_err());
    b.running.shutdown().await;
    a.running.shutdown().await;
}

#[tokio::test]
async fn a_node_without_clustering_is_its_own_one_member_cluster() {
    let b = common::start().await;
    let p = http_port(&b);
    let nodes = api(p, "GET", "/api/nodes", None).await.json();
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    assert_eq!(nodes[0]["name"], b.running.broker.config.node_name.as_str());
    assert!(nodes[0].get("cluster_address").is_none());
    let status = ctl(p, &["cluster_status"]).await.unwrap();
    assert!(status.contains(&b.running.broker.config.node_name), "{status}");
    let r = api(
        p,
        "POST",
        "/api/cluster/join",
        Some(json!({"address": "127.0.0.1:1"})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("clustering is off"), "{}", r.text());
    // Definitions change locally, as before clustering.
    assert_eq!(api(p, "PUT", "/api/vhosts/local", None).await.status, 201);
    b.running.shutdown().await;
}

/// Three `warren` processes: losing one keeps the cluster writable, the restarted node
/// catches up, and the survivor of two losses refuses changes with 503 in bounded time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_survive_one_kill_catch_up_after_restart_and_refuse_without_a_majority() {
    use common::process::Broker;
    let dirs = [
        common::tempdir::Dir::new(),
        common::tempdir::Dir::new(),
        common::tempdir::Dir::new(),
    ];
    let amqp = [common::free_port(), common::free_port(), common::free_port()];
    let http_ports = [common::free_port(), common::free_port(), common::free_port()];
    let cluster = [common::free_port(), common::free_port(), common::free_port()];
    let spawn = |i: usize| {
        let seeds: Vec<String> = (0..3)
            .filter(|j| *j != i)
            .map(|j| format!("127.0.0.1:{}", cluster[j]))
            .collect();
        let name = format!("p{}@localhost", i + 1);
        let listen = format!("127.0.0.1:{}", cluster[i]);
        let seeds = seeds.join(",");
        Broker::spawn(
            &dirs[i].path,
            amqp[i],
            &format!("127.0.0.1:{}", http_ports[i]),
            &[
                "--node-name",
                &name,
                "--cluster-listen",
                &listen,
                "--cluster-seeds",
                &seeds,
                "--cluster-secret",
                SECRET,
                "--cluster-fast-timeouts",
                "true",
            ],
        )
    };
    let mut procs: Vec<Option<Broker>> = (0..3).map(|i| Some(spawn(i))).collect();
    for p in http_ports {
        wait_for(p, "/api/nodes", 20, "three running members", |s, v| {
            s == 200 && running_members(v) == 3
        })
        .await;
    }
    // SIGKILL node 3: nodes 1 and 2 still take a vhost (retried across a re-election, if
    // node 3 led).
    drop(procs[2].take());
    let t = Instant::now();
    loop {
        let r = api(http_ports[0], "PUT", "/api/vhosts/after-kill", None).await;
        if r.status == 201 || r.status == 204 {
            break;
        }
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "two of three nodes never took the vhost"
        );
    }
    wait_for(
        http_ports[1],
        "/api/vhosts/after-kill",
        10,
        "the vhost on node 2",
        |s, _| s == 200,
    )
    .await;
    // Restarted on its data directory, node 3 catches up.
    procs[2] = Some(spawn(2));
    wait_for(
        http_ports[2],
        "/api/vhosts/after-kill",
        15,
        "node 3 catching up",
        |s, _| s == 200,
    )
    .await;
    // Kill two: the survivor refuses a change with 503 within the propose timeout, and still
    // answers reads.
    drop(procs[1].take());
    drop(procs[2].take());
    let t = Instant::now();
    let r = api(http_ports[0], "PUT", "/api/vhosts/no-majority", None).await;
    let took = t.elapsed();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "service_unavailable");
    assert!(
        r.json()["reason"].as_str().unwrap().contains("no quorum"),
        "{}",
        r.text()
    );
    assert!(took < Duration::from_secs(8), "503 after {took:?}");
    assert_eq!(
        api(http_ports[0], "GET", "/api/vhosts/after-kill", None)
            .await
            .status,
        200
    );
    assert_eq!(
        api(http_ports[0], "GET", "/api/vhosts/no-majority", None)
            .await
            .status,
        404
    );
}

/// A restarted clustered node does not replay what its broker already holds: the cluster
/// layer re-applies its log at every start, and an old vhost deletion replayed over a vhost
/// created again since would delete the queues declared in it meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_does_not_replay_an_old_vhost_deletion_over_newer_queues() {
    let dir = common::tempdir::Dir::new();
    let port = common::free_port();
    let config = || warren_server::Config {
        amqp_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        prometheus_listen: None,
        data_dir: dir.path.clone(),
        node_name: "solo@localhost".into(),
        cluster_listen: Some(format!("127.0.0.1:{port}")),
        cluster_secret: Some(SECRET.into()),
        cluster_timeouts: warren_server::config::fast_cluster_timeouts(),
        ..warren_server::Config::default()
    };
    let b = warren_server::start(config()).await.expect("starts");
    let h = b.http_addr.port();
    assert_eq!(api(h, "PUT", "/api/vhosts/again", None).await.status, 201);
    assert_eq!(api(h, "DELETE", "/api/vhosts/again", None).await.status, 204);
    assert_eq!(api(h, "PUT", "/api/vhosts/again", None).await.status, 201);
    let q = json!({"durable": true});
    assert_eq!(api(h, "PUT", "/api/queues/again/kept", Some(q)).await.status, 201);
    b.shutdown().await;
    let b = warren_server::start(config()).await.expect("restarts");
    let h = b.http_addr.port();
    // A new change commits after every older entry is applied (one log, in order).
    assert_eq!(api(h, "PUT", "/api/vhosts/marker", None).await.status, 201);
    assert_eq!(api(h, "GET", "/api/queues/again/kept", None).await.status, 200);
    b.shutdown().await;
}
