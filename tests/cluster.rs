//! Clustering end to end (issue 19): brokers on loopback forming one Raft cluster,
//! membership through the management API and `warrenctl`, vhosts, users and permissions
//! changed through any node's API replicated to every node, a restarted node catching up, and
//! a node without a majority refusing changes with 503. Slice 2: exchanges, durable queues
//! (with their home node), bindings and policies declared over AMQP or the API replicated the
//! same way, publishes forwarded to remote queues' home nodes (confirms, order, a fanout over
//! three nodes, nacks while the home is down), consumers on another node than their queue
//! (prefetch, acks, requeues, basic.get, cancelled when the home goes or the link is cut), dead
//! letters to another node, and a node partitioned away by TCP proxies
//! (`common::proxy`) refusing declarations (541 over AMQP, 503 over HTTP) while the majority
//! goes on, then catching up once healed. Inter-node TLS: three nodes with certificates forming a
//! cluster, replicating and forwarding over mutual TLS, a plaintext peer and certificates of
//! another CA refused at the cluster port. Issue 20: quorum queues' Raft groups, their
//! confirmed messages surviving the loss (shutdown or SIGKILL) of the leader's node, and no
//! confirm without a majority; a group grown onto another node and shrunk (`add_member`, `grow`,
//! `delete_member`, `shrink`); a definitions import on one node reaching every node. In-process brokers and real `warren` processes;
//! short Raft timeouts (`--cluster-fast-timeouts`); every wait is a condition with a deadline.

mod common;

use std::time::{Duration, Instant};

use common::TestBroker;
use common::cluster::{
    SECRET, api, declare_quorum, group_leader, http, running_members, spawn_member, three, wait_for,
};
use serde_json::{Value, json};

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
    let dirs = three(common::tempdir::Dir::new);
    let (amqp, http_ports, cluster) = (
        three(common::free_port),
        three(common::free_port),
        three(common::free_port),
    );
    let spawn = |i: usize| spawn_member("p", i, &dirs[i].path, amqp[i], http_ports[i], &cluster);
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

/// The configuration of in-process cluster node `name` on data directory `dir`, cluster port
/// `port`, with `seeds` and `dial_via` (proxies between nodes).
fn node_config(
    name: &str,
    dir: &std::path::Path,
    port: u16,
    seeds: &[u16],
    dial_via: Vec<(String, String)>,
) -> warren_server::Config {
    warren_server::Config {
        amqp_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        prometheus_listen: None,
        data_dir: dir.to_path_buf(),
        node_name: name.into(),
        cluster_listen: Some(format!("127.0.0.1:{port}")),
        cluster_seeds: seeds.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
        cluster_secret: Some(SECRET.into()),
        cluster_timeouts: warren_server::config::fast_cluster_timeouts(),
        cluster_dial_via: dial_via,
        ..warren_server::Config::default()
    }
}

/// Restarts node `i` (of cluster ports `ports`) named `name` on its data directory `dir`, with
/// the others as seeds.
async fn relaunch(name: &str, dir: common::tempdir::Dir, ports: &[u16], i: usize) -> TestBroker {
    let seeds: Vec<u16> = ports.iter().copied().filter(|p| *p != ports[i]).collect();
    launch(node_config(name, &dir.path, ports[i], &seeds, vec![]), dir).await
}

/// Starts a node of `node_config` on `dir` (kept by the caller, to restart on it).
async fn launch(config: warren_server::Config, dir: common::tempdir::Dir) -> TestBroker {
    let running = warren_server::start(config).await.expect("node starts");
    let url = format!("amqp://guest:guest@{}/%2f", running.amqp_addr);
    TestBroker {
        url,
        running,
        data_dir: dir,
    }
}

async fn amqp_channel(b: &TestBroker) -> (lapin::Connection, lapin::Channel) {
    let c = b.connect().await;
    let ch = c.create_channel().await.unwrap();
    (c, ch)
}

/// Declares durable exchange `name` of `kind` on `ch`.
async fn durable_x(ch: &lapin::Channel, name: &str, kind: lapin::ExchangeKind) -> Result<(), lapin::Error> {
    let opts = lapin::options::ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(name.into(), kind, opts, no_args()).await
}

/// Declares durable exchange `name` on node `b` until it is accepted (a declaration refused
/// while a new leader is elected closes its connection with 541: a new one is opened), failing
/// after 15 s; the connection and channel it was accepted on.
async fn accepted(
    b: &TestBroker,
    name: &str,
    kind: lapin::ExchangeKind,
) -> (lapin::Connection, lapin::Channel) {
    let t = Instant::now();
    loop {
        let (c, ch) = amqp_channel(b).await;
        match durable_x(&ch, name, kind.clone()).await {
            Ok(()) => return (c, ch),
            Err(e) => {
                assert_eq!(common::reply_code(&e), Some(541), "{e:?}");
                assert!(t.elapsed() < Duration::from_secs(15), "{name} never accepted");
            }
        }
    }
}

/// Waits until every node of `nodes` sees them all running.
async fn all_running(nodes: &[TestBroker]) {
    for n in nodes {
        wait_for(http_port(n), "/api/nodes", 15, "every member running", |s, v| {
            s == 200 && running_members(v) == nodes.len()
        })
        .await;
    }
}

fn no_args() -> lapin::types::FieldTable {
    lapin::types::FieldTable::default()
}

/// Waits until every node in `ports` answers `path` with status `want`.
async fn everywhere(ports: &[u16], path: &str, want: u16, what: &str) {
    for p in ports {
        wait_for(*p, path, 10, what, |s, _| s == want).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topology_declared_over_amqp_replicates_and_a_restarted_node_catches_up() {
    let ports = [common::free_port(), common::free_port(), common::free_port()];
    let mut nodes = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let seeds: Vec<u16> = ports.iter().copied().filter(|q| q != p).collect();
        let dir = common::tempdir::Dir::new();
        let config = node_config(&format!("t{}@localhost", i + 1), &dir.path, *p, &seeds, vec![]);
        nodes.push(launch(config, dir).await);
    }
    all_running(&nodes).await;
    let (h1, h2, h3) = (http_port(&nodes[0]), http_port(&nodes[1]), http_port(&nodes[2]));

    // Over AMQP on node 1: two exchanges, a durable queue, a queue and an exchange binding.
    let (_c1, ch1) = amqp_channel(&nodes[0]).await;
    durable_x(&ch1, "x.rep", lapin::ExchangeKind::Topic)
        .await
        .unwrap();
    durable_x(&ch1, "x.dst", lapin::ExchangeKind::Fanout)
        .await
        .unwrap();
    common::declare_durable(&ch1, "q.rep", no_args()).await;
    ch1.queue_bind(
        "q.rep".into(),
        "x.rep".into(),
        "a.#".into(),
        Default::default(),
        no_args(),
    )
    .await
    .unwrap();
    ch1.exchange_bind(
        "x.dst".into(),
        "x.rep".into(),
        "b.#".into(),
        Default::default(),
        no_args(),
    )
    .await
    .unwrap();
    // Redeclaring is fine (equivalent), a non-equivalent redeclare is the usual 406.
    common::declare_durable(&ch1, "q.rep", no_args()).await;
    // A policy through node 1's API.
    let policy = json!({"pattern": "^q\\.rep$", "definition": {"max-length": 10}, "apply-to": "queues"});
    assert_eq!(
        api(h1, "PUT", "/api/policies/%2F/p.rep", Some(policy))
            .await
            .status,
        201
    );

    for p in [h2, h3] {
        wait_for(
            p,
            "/api/policies/%2F/p.rep",
            10,
            "the policy replicated",
            |s, _| s == 200,
        )
        .await;
        wait_for(
            p,
            "/api/bindings/%2F/e/x.rep/e/x.dst",
            10,
            "the exchange binding",
            |s, v| {
                s == 200
                    && v.as_array()
                        .is_some_and(|a| a.len() == 1 && a[0]["routing_key"] == "b.#")
            },
        )
        .await;
        let x = api(p, "GET", "/api/exchanges/%2F/x.rep", None).await;
        assert_eq!(x.status, 200);
        assert_eq!(x.json()["type"], "topic");
        let q = api(p, "GET", "/api/queues/%2F/q.rep", None).await;
        assert_eq!(q.status, 200, "{}", q.text());
        assert_eq!(q.json()["node"], "t1@localhost", "{}", q.text());
        assert_eq!(q.json()["durable"], true);
        let qs = api(p, "GET", "/api/queues", None).await.json();
        assert!(
            qs.as_array()
                .unwrap()
                .iter()
                .any(|q| q["name"] == "q.rep" && q["node"] == "t1@localhost"),
            "{qs}"
        );
        let b = api(p, "GET", "/api/bindings/%2F/e/x.rep/q/q.rep", None)
            .await
            .json();
        assert_eq!(b[0]["routing_key"], "a.#", "{b}");
    }
    // Node 1 is the home: it holds the messages.
    common::publish(&ch1, "x.rep", "a.1", b"home").await;
    wait_for(
        h1,
        "/api/queues/%2F/q.rep",
        10,
        "the message on the home node",
        |s, v| s == 200 && v["messages"] == 1,
    )
    .await;

    // Node 2 forwards a publish routed to node 1's queue there.
    let (_c2, ch2) = amqp_channel(&nodes[1]).await;
    common::publish(&ch2, "x.rep", "a.2", b"forwarded").await;
    wait_for(
        h1,
        "/api/queues/%2F/q.rep",
        10,
        "the forwarded message on the home node",
        |s, v| s == 200 && v["messages"] == 2,
    )
    .await;
    // A basic.get on node 2 is answered by node 1 (rejected with requeue: it stays there).
    let (_c2b, ch2) = amqp_channel(&nodes[1]).await;
    let got = ch2
        .basic_get("q.rep".into(), Default::default())
        .await
        .unwrap()
        .expect("a message from node 1");
    assert_eq!(got.delivery.data, b"home");
    assert_eq!(got.message_count, 1);
    got.delivery
        .acker
        .reject(lapin::options::BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    // A passive or equivalent redeclare of the remote queue on node 2 is answered with the
    // home's counts.
    let ch2 = _c2b.create_channel().await.unwrap();
    common::declare_durable(&ch2, "q.rep", no_args()).await;
    assert_eq!(common::message_count(&ch2, "q.rep").await, 2);
    assert_eq!(
        api(h1, "GET", "/api/queues/%2F/q.rep", None).await.json()["messages"],
        2
    );

    // Node 3 goes down; node 1 changes the topology meanwhile; node 3 restarts and catches up.
    let n3 = nodes.pop().unwrap();
    let TestBroker {
        running, data_dir, ..
    } = n3;
    running.shutdown().await;
    // If node 3 led the cluster, the survivors elect a leader first (the declarations below
    // would otherwise wait on an election, timed under load, instead of testing catch-up).
    wait_for(h1, "/api/cluster", 15, "a leader among nodes 1 and 2", |s, v| {
        s == 200 && v["leader"].is_string() && v["leader"] != "t3@localhost"
    })
    .await;
    durable_x(&ch1, "x.later", lapin::ExchangeKind::Direct)
        .await
        .unwrap();
    common::declare_durable(&ch1, "q.later", no_args()).await;
    ch1.queue_unbind("q.rep".into(), "x.rep".into(), "a.#".into(), no_args())
        .await
        .unwrap();
    ch1.exchange_delete("x.dst".into(), Default::default())
        .await
        .unwrap();
    assert_eq!(
        api(h1, "DELETE", "/api/policies/%2F/p.rep", None).await.status,
        204
    );
    let t = Instant::now();
    let n3 = relaunch("t3@localhost", data_dir, &ports, 2).await;
    let h3 = http_port(&n3);
    // The policy's deletion was the last change (node 3 had the policy before it went down):
    // once it is gone there, every earlier change is applied too (one log, in order).
    wait_for(h3, "/api/policies/%2F/p.rep", 15, "node 3 catching up", |s, _| {
        s == 404
    })
    .await;
    let caught_up = t.elapsed();
    let q = api(h3, "GET", "/api/queues/%2F/q.later", None).await;
    assert_eq!(q.json()["node"], "t1@localhost", "{}", q.text());
    for (path, want) in [
        ("/api/exchanges/%2F/x.later", 200),
        ("/api/exchanges/%2F/x.dst", 404),
        ("/api/queues/%2F/q.rep", 200),
    ] {
        assert_eq!(api(h3, "GET", path, None).await.status, want, "{path}");
    }
    let b = api(h3, "GET", "/api/bindings/%2F/e/x.rep/q/q.rep", None)
        .await
        .json();
    assert_eq!(b, json!([]), "{b}");

    // Deletions over AMQP replicate.
    ch1.queue_delete("q.rep".into(), Default::default())
        .await
        .unwrap();
    ch1.exchange_delete("x.rep".into(), Default::default())
        .await
        .unwrap();
    everywhere(&[h2, h3], "/api/queues/%2F/q.rep", 404, "the queue deleted").await;
    everywhere(&[h2, h3], "/api/exchanges/%2F/x.rep", 404, "the exchange deleted").await;
    eprintln!("node 3 restarted and caught up in {caught_up:?}");
    n3.running.shutdown().await;
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// Three in-process nodes with a TCP proxy on every directed cluster link: node 3 is
/// partitioned away in both directions. It refuses declarations (AMQP: 541 INTERNAL_ERROR
/// after the operation timeout, closing the connection; HTTP: 503) while nodes 1 and 2 go on
/// accepting them; once healed, node 3 has every definition the majority made and none of
/// those it refused.
/// Three in-process nodes named `{prefix}1@localhost`… whose every directed cluster link goes
/// through a TCP proxy (`proxies[i][j]`: node i's link to node j), all running.
async fn proxied_nodes(prefix: &str) -> (Vec<TestBroker>, Vec<Vec<Option<common::proxy::Proxy>>>) {
    use common::proxy::Proxy;
    let ports = [common::free_port(), common::free_port(), common::free_port()];
    // proxies[i][j]: node i's link to node j.
    let mut proxies: Vec<Vec<Option<Proxy>>> = Vec::new();
    for i in 0..3 {
        let mut row = Vec::new();
        for (j, p) in ports.iter().enumerate() {
            row.push(if i == j {
                None
            } else {
                Some(Proxy::start(format!("127.0.0.1:{p}").parse().unwrap()).await)
            });
        }
        proxies.push(row);
    }
    let mut nodes = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let seeds: Vec<u16> = ports.iter().copied().filter(|q| q != p).collect();
        let via: Vec<(String, String)> = (0..3)
            .filter(|j| *j != i)
            .map(|j| {
                let proxy = proxies[i][j].as_ref().unwrap();
                (format!("127.0.0.1:{}", ports[j]), proxy.addr.to_string())
            })
            .collect();
        let dir = common::tempdir::Dir::new();
        let config = node_config(
            &format!("{prefix}{}@localhost", i + 1),
            &dir.path,
            *p,
            &seeds,
            via,
        );
        nodes.push(launch(config, dir).await);
    }
    all_running(&nodes).await;
    (nodes, proxies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_minority_refuses_declarations_and_catches_up_when_healed() {
    use common::proxy::Proxy;
    let (nodes, proxies) = proxied_nodes("m").await;
    let (h1, h3) = (http_port(&nodes[0]), http_port(&nodes[2]));
    let (_c, ch) = amqp_channel(&nodes[0]).await;
    durable_x(&ch, "x.before", lapin::ExchangeKind::Direct)
        .await
        .unwrap();
    wait_for(
        h3,
        "/api/exchanges/%2F/x.before",
        10,
        "x.before on node 3",
        |s, _| s == 200,
    )
    .await;

    // Partition node 3 away, both directions.
    let links = |f: &dyn Fn(&Proxy)| {
        for (i, j) in [(2, 0), (2, 1), (0, 2), (1, 2)] {
            f(proxies[i][j].as_ref().unwrap());
        }
    };
    links(&|p| p.cut());

    // The minority refuses: AMQP exchange.declare closes the connection with 541 within the
    // operation timeout (2 s with fast timeouts), HTTP answers 503.
    let t = Instant::now();
    let (c3, ch3) = amqp_channel(&nodes[2]).await;
    let r = durable_x(&ch3, "x.minority", lapin::ExchangeKind::Direct).await;
    let refused_in = t.elapsed();
    common::assert_code(r, 541, "metadata store operation timed out");
    assert!(
        refused_in < Duration::from_secs(8),
        "refused after {refused_in:?}"
    );
    assert!(!c3.status().connected());
    let (_c3, ch3) = amqp_channel(&nodes[2]).await;
    common::assert_code(
        ch3.queue_declare(
            "q.minority".into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            no_args(),
        )
        .await,
        541,
        "Could not declare queue 'q.minority' in vhost '/' on node 'm3@localhost'",
    );
    let r = api(
        h3,
        "PUT",
        "/api/exchanges/%2F/x.minority-http",
        Some(json!({"type": "direct"})),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text());
    // Node-local things still work there: a non-durable exclusive queue.
    let (_c3, ch3) = amqp_channel(&nodes[2]).await;
    ch3.queue_declare(
        "".into(),
        lapin::options::QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        no_args(),
    )
    .await
    .unwrap();

    // The majority keeps accepting (retried across a re-election if node 3 led).
    let (_c1, ch1) = accepted(&nodes[0], "x.majority", lapin::ExchangeKind::Fanout).await;
    common::declare_durable(&ch1, "q.majority", no_args()).await;
    ch1.queue_bind(
        "q.majority".into(),
        "x.majority".into(),
        "".into(),
        Default::default(),
        no_args(),
    )
    .await
    .unwrap();
    let r = api(
        h1,
        "PUT",
        "/api/queues/%2F/q.majority-http",
        Some(json!({"durable": true})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        api(h3, "GET", "/api/exchanges/%2F/x.majority", None).await.status,
        404,
        "the minority cannot have heard of it"
    );

    // Heal: node 3 gets everything the majority made and nothing it refused.
    let t = Instant::now();
    links(&|p| p.heal());
    // The last change the majority made (one log: everything before it is there too).
    wait_for(
        h3,
        "/api/queues/%2F/q.majority-http",
        20,
        "node 3 healed",
        |s, v| s == 200 && v["node"] == "m1@localhost",
    )
    .await;
    let b = api(h3, "GET", "/api/bindings/%2F/e/x.majority/q/q.majority", None)
        .await
        .json();
    assert_eq!(b.as_array().map(Vec::len), Some(1), "{b}");
    let healed_in = t.elapsed();
    for (path, want) in [
        ("/api/exchanges/%2F/x.before", 200),
        ("/api/exchanges/%2F/x.majority", 200),
        ("/api/queues/%2F/q.majority", 200),
        ("/api/queues/%2F/q.majority-http", 200),
        ("/api/exchanges/%2F/x.minority", 404),
        ("/api/exchanges/%2F/x.minority-http", 404),
        ("/api/queues/%2F/q.minority", 404),
    ] {
        for h in [h1, h3] {
            assert_eq!(api(h, "GET", path, None).await.status, want, "{path} on {h}");
        }
    }
    // And it accepts declarations again.
    accepted(&nodes[2], "x.after", lapin::ExchangeKind::Direct).await;
    wait_for(
        h1,
        "/api/exchanges/%2F/x.after",
        10,
        "x.after on node 1",
        |s, _| s == 200,
    )
    .await;
    eprintln!("minority refused in {refused_in:?}; healed in {healed_in:?}");
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// Three in-process nodes on fresh data directories, no proxies, all running.
async fn three_nodes(prefix: &str) -> (Vec<TestBroker>, [u16; 3]) {
    three_nodes_with(prefix, |_| {}).await
}

/// [`three_nodes`], each node's configuration changed by `f` first.
async fn three_nodes_with(
    prefix: &str,
    f: impl Fn(&mut warren_server::Config),
) -> (Vec<TestBroker>, [u16; 3]) {
    let (nodes, ports) = n_nodes_with::<3>(prefix, f).await;
    (nodes, ports)
}

/// `N` nodes named `{prefix}1@localhost`… forming one cluster, each node's configuration
/// changed by `f` first.
async fn n_nodes_with<const N: usize>(
    prefix: &str,
    f: impl Fn(&mut warren_server::Config),
) -> (Vec<TestBroker>, [u16; N]) {
    let ports: [u16; N] = std::array::from_fn(|_| common::free_port());
    let mut nodes = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let seeds: Vec<u16> = ports.iter().copied().filter(|q| q != p).collect();
        let dir = common::tempdir::Dir::new();
        let mut config = node_config(
            &format!("{prefix}{}@localhost", i + 1),
            &dir.path,
            *p,
            &seeds,
            vec![],
        );
        f(&mut config);
        nodes.push(launch(config, dir).await);
    }
    all_running(&nodes).await;
    (nodes, ports)
}

/// Publishes `bodies` (persistent) to `exchange`/`key` on `ch` (in confirm mode) and returns
/// how many were acked and how many nacked.
async fn publish_confirmed(
    ch: &lapin::Channel,
    exchange: &str,
    key: &str,
    bodies: &[String],
) -> (usize, usize) {
    let mut pending = Vec::new();
    for b in bodies {
        let c = ch
            .basic_publish(
                exchange.into(),
                key.into(),
                Default::default(),
                b.as_bytes(),
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish sent");
        pending.push(c);
    }
    let (mut acked, mut nacked) = (0, 0);
    for c in pending {
        let c = common::within(15, "a confirm", c).await.expect("confirm");
        if c.is_ack() {
            acked += 1;
        } else if c.is_nack() {
            nacked += 1;
        } else {
            panic!("{c:?}");
        }
    }
    (acked, nacked)
}

/// Consumes `n` messages of `queue` on `ch` (auto-ack) and returns their bodies; then checks
/// the queue is empty.
async fn drain(ch: &lapin::Channel, queue: &str, n: usize) -> Vec<String> {
    let opts = lapin::options::BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut c = ch
        .basic_consume(queue.into(), "".into(), opts, no_args())
        .await
        .unwrap_or_else(|e| panic!("consume {queue}: {e}"));
    let mut got = Vec::new();
    while got.len() < n {
        let d = common::next(&mut c).await;
        got.push(String::from_utf8(d.data).unwrap());
    }
    ch.basic_cancel(c.tag(), Default::default()).await.unwrap();
    assert_eq!(common::message_count(ch, queue).await, 0, "{queue} has more");
    got
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishes_on_any_node_reach_queues_homed_on_others_with_confirms_in_order() {
    let (nodes, _) = three_nodes("f").await;
    let hs: Vec<u16> = nodes.iter().map(http_port).collect();
    // q.one lives on node 1, q.two on node 2, q.three on node 3; x.fan reaches all three.
    let mut chans = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let (c, ch) = amqp_channel(n).await;
        common::declare_durable(&ch, ["q.one", "q.two", "q.three"][i], no_args()).await;
        chans.push((c, ch));
    }
    let ch1 = &chans[0].1;
    durable_x(ch1, "x.fan", lapin::ExchangeKind::Fanout)
        .await
        .unwrap();
    for q in ["q.one", "q.two", "q.three"] {
        ch1.queue_bind(q.into(), "x.fan".into(), "".into(), Default::default(), no_args())
            .await
            .unwrap();
    }
    for q in ["q.one", "q.two", "q.three"] {
        let path = format!("/api/bindings/%2F/e/x.fan/q/{q}");
        for h in &hs {
            wait_for(*h, &path, 10, "the binding everywhere", |s, v| {
                s == 200 && v.as_array().is_some_and(|a| !a.is_empty())
            })
            .await;
        }
    }

    // Node 2 publishes to node 1's queue through the default exchange: every message acked,
    // then consumed on node 1 in order, exactly once.
    let (_p2, pub2) = amqp_channel(&nodes[1]).await;
    pub2.confirm_select(Default::default()).await.unwrap();
    let n = 2000;
    let t = Instant::now();
    assert_eq!(
        publish_confirmed(&pub2, "", "q.one", &numbered("d", n)).await,
        (n, 0)
    );
    let forwarded_in = t.elapsed();
    assert_eq!(drain(ch1, "q.one", n).await, numbered("d", n));

    // The fanout from every node reaches the queues of all three nodes.
    let m = 300;
    for (i, n) in nodes.iter().enumerate() {
        let (_c, ch) = amqp_channel(n).await;
        ch.confirm_select(Default::default()).await.unwrap();
        let bodies = numbered(&format!("fan{i}"), m);
        assert_eq!(
            publish_confirmed(&ch, "x.fan", "", &bodies).await,
            (m, 0),
            "from node {i}"
        );
        for (j, q) in ["q.one", "q.two", "q.three"].iter().enumerate() {
            assert_eq!(drain(&chans[j].1, q, m).await, bodies, "{q} from node {i}");
        }
    }
    eprintln!("{n} persistent messages forwarded node 2 -> node 1 with confirms in {forwarded_in:?}");
    for n in nodes {
        n.running.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishes_to_a_down_home_node_are_nacked_and_work_again_when_it_returns() {
    let (mut nodes, ports) = three_nodes("g").await;
    let h2 = http_port(&nodes[1]);
    let (_c1, ch1) = amqp_channel(&nodes[0]).await;
    common::declare_durable(&ch1, "q.home1", no_args()).await;
    wait_for(h2, "/api/queues/%2F/q.home1", 10, "q.home1 on node 2", |s, _| {
        s == 200
    })
    .await;
    let (_c2, pub2) = amqp_channel(&nodes[1]).await;
    pub2.confirm_select(Default::default()).await.unwrap();
    assert_eq!(
        publish_confirmed(&pub2, "", "q.home1", &numbered("before", 10)).await,
        (10, 0)
    );

    // Node 1 goes down: publishes from node 2 are nacked (not returned, not lost silently)
    // within the cluster operation timeout.
    drop((_c1, ch1));
    let n1 = nodes.remove(0);
    let TestBroker {
        running, data_dir, ..
    } = n1;
    running.shutdown().await;
    let t = Instant::now();
    assert_eq!(
        publish_confirmed(&pub2, "", "q.home1", &numbered("down", 10)).await,
        (0, 10)
    );
    let nacked_in = t.elapsed();
    assert!(nacked_in < Duration::from_secs(5), "nacked after {nacked_in:?}");

    // Node 1 returns: the same channel's publishes are acked again and node 1 has exactly the
    // acked ones, in order.
    let seeds = [ports[1], ports[2]];
    let n1 = launch(
        node_config("g1@localhost", &data_dir.path, ports[0], &seeds, vec![]),
        data_dir,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (acked, _) = publish_confirmed(&pub2, "", "q.home1", &["probe".to_string()]).await;
        if acked == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 1 never took forwarded publishes again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        publish_confirmed(&pub2, "", "q.home1", &numbered("after", 10)).await,
        (10, 0)
    );
    let (_c1, ch1) = amqp_channel(&n1).await;
    let mut want = numbered("before", 10);
    want.push("probe".into());
    want.extend(numbered("after", 10));
    assert_eq!(drain(&ch1, "q.home1", want.len()).await, want);
    eprintln!("publishes to a down home node nacked in {nacked_in:?}");
    n1.running.shutdown().await;
    for n in nodes {
        n.running.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_on_another_node_keeps_prefetch_acks_requeues_and_is_cancelled_when_the_home_goes() {
    use futures_lite::StreamExt;
    let (mut nodes, ports) = three_nodes("c").await;
    let h2 = http_port(&nodes[1]);
    let (_c1, ch1) = amqp_channel(&nodes[0]).await;
    common::declare_durable(&ch1, "q.c", no_args()).await;
    wait_for(h2, "/api/queues/%2F/q.c", 10, "q.c on node 2", |s, _| s == 200).await;
    for i in 0..20 {
        common::publish(&ch1, "", "q.c", format!("m-{i}").as_bytes()).await;
    }
    let home = &nodes[0];
    common::wait_until(10, "20 ready on the home", || {
        common::counts(home, "q.c") == (20, 0, 0)
    })
    .await;

    // Node 2 consumes with prefetch 5: never more than 5 unacked on the home.
    let (c2, ch2) = amqp_channel(&nodes[1]).await;
    ch2.basic_qos(5, Default::default()).await.unwrap();
    let mut consumer = common::consume(&ch2, "q.c", "remote").await;
    let mut first = Vec::new();
    for _ in 0..5 {
        first.push(common::next(&mut consumer).await);
    }
    let bodies: Vec<String> = first
        .iter()
        .map(|d| String::from_utf8(d.data.clone()).unwrap())
        .collect();
    assert_eq!(bodies, numbered("m", 5));
    common::wait_until(5, "5 unacked, 1 consumer", || {
        common::counts(home, "q.c") == (15, 5, 1)
    })
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), consumer.next())
            .await
            .is_err(),
        "a sixth delivery beyond prefetch 5"
    );
    for d in &first {
        d.acker.ack(Default::default()).await.unwrap();
    }
    let mut second = Vec::new();
    for _ in 0..5 {
        second.push(common::next(&mut consumer).await);
    }
    assert_eq!(String::from_utf8(second[0].data.clone()).unwrap(), "m-5");
    assert!(!second[0].redelivered);
    // A nack with requeue comes back redelivered.
    second[0]
        .acker
        .nack(lapin::options::BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let again = common::next(&mut consumer).await;
    assert_eq!(String::from_utf8(again.data.clone()).unwrap(), "m-5");
    assert!(again.redelivered);
    // A multiple ack covers m-6..m-9 (m-5's first delivery was nacked).
    second[4]
        .acker
        .ack(lapin::options::BasicAckOptions { multiple: true })
        .await
        .unwrap();
    again.acker.ack(Default::default()).await.unwrap();
    // Five more unacked, then the channel closes: they are requeued on the home, redelivered.
    for _ in 0..5 {
        common::next(&mut consumer).await;
    }
    common::wait_until(5, "m-10..m-14 unacked", || {
        common::counts(home, "q.c") == (5, 5, 1)
    })
    .await;
    ch2.close(200, "bye".into()).await.unwrap();
    common::wait_until(5, "requeued on channel close", || {
        common::counts(home, "q.c") == (10, 0, 0)
    })
    .await;
    let d = ch1
        .basic_get("q.c".into(), Default::default())
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(String::from_utf8(d.delivery.data.clone()).unwrap(), "m-10");
    assert!(d.delivery.redelivered);
    d.delivery
        .acker
        .reject(lapin::options::BasicRejectOptions { requeue: true })
        .await
        .unwrap();

    // basic.get from node 2: the requeued m-10, redelivered; acked there.
    let (_cg, chg) = amqp_channel(&nodes[1]).await;
    let g = chg
        .basic_get("q.c".into(), Default::default())
        .await
        .unwrap()
        .expect("a message from node 1");
    assert_eq!(String::from_utf8(g.delivery.data.clone()).unwrap(), "m-10");
    assert!(g.delivery.redelivered);
    assert_eq!(g.message_count, 9);
    common::wait_until(5, "the get unacked on the home", || {
        common::counts(home, "q.c") == (9, 1, 0)
    })
    .await;
    g.delivery.acker.ack(Default::default()).await.unwrap();
    common::wait_until(5, "the get acked on the home", || {
        common::counts(home, "q.c") == (9, 0, 0)
    })
    .await;
    // A passive declare on node 2 answers the home's counts.
    assert_eq!(common::message_count(&chg, "q.c").await, 9);
    drop((_cg, chg));

    // The home node goes down: node 2 cancels the consumer (basic.cancel).
    let ch2 = c2.create_channel().await.unwrap();
    let mut consumer = common::consume(&ch2, "q.c", "doomed").await;
    common::next(&mut consumer).await;
    common::wait_until(5, "the consumer on the home", || {
        common::counts(home, "q.c").2 == 1
    })
    .await;
    drop((_c1, ch1));
    let n1 = nodes.remove(0);
    let TestBroker {
        running, data_dir, ..
    } = n1;
    let t = Instant::now();
    running.shutdown().await;
    let end = common::within(10, "the consumer cancelled", async {
        loop {
            match consumer.next().await {
                None => return,
                Some(_) => continue,
            }
        }
    })
    .await;
    let _: () = end;
    let cancelled_in = t.elapsed();
    eprintln!("remote consumer cancelled {cancelled_in:?} after its home node stopped");

    // The home returns (the transient messages are gone with it): node 2 consumes again and
    // new publishes arrive.
    let seeds = [ports[1], ports[2]];
    let n1 = launch(
        node_config("c1@localhost", &data_dir.path, ports[0], &seeds, vec![]),
        data_dir,
    )
    .await;
    let (_c1, ch1) = amqp_channel(&n1).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut consumer = loop {
        let ch = c2.create_channel().await.unwrap();
        match ch
            .basic_consume("q.c".into(), "back".into(), Default::default(), no_args())
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                assert_eq!(common::reply_code(&e), Some(404), "{e:?}");
                assert!(Instant::now() < deadline, "never consumed again: {e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let chg = c2.create_channel().await.unwrap();
    let empty = chg.basic_get("q.c".into(), Default::default()).await.unwrap();
    assert!(empty.is_none(), "basic.get-empty from node 1");
    common::publish(&ch1, "", "q.c", b"after").await;
    let d = common::next(&mut consumer).await;
    assert_eq!(d.data, b"after");
    n1.running.shutdown().await;
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// A backlog larger than what a queue hands a remote channel at once (its stand-in's pending
/// limit) drains to an auto-ack consumer on another node after publishing has stopped: the
/// op link's verdicts, not new publishes, wake the queue again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_auto_ack_consumer_on_another_node_drains_a_backlog_after_publishing_stops() {
    let (nodes, hs, _c1, ch1) = homed_on_node_1("b", "q.backlog").await;
    wait_for(
        hs[1],
        "/api/queues/%2F/q.backlog",
        10,
        "q.backlog on node 2",
        |s, _| s == 200,
    )
    .await;
    ch1.confirm_select(Default::default()).await.unwrap();
    let n = 6000;
    assert_eq!(
        publish_confirmed(&ch1, "", "q.backlog", &numbered("b", n)).await,
        (n, 0)
    );
    let (_c2, ch2) = amqp_channel(&nodes[1]).await;
    assert_eq!(drain(&ch2, "q.backlog", n).await, numbered("b", n));
    for n in nodes {
        n.running.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_reach_a_queue_of_another_node() {
    let (mut nodes, ports) = three_nodes("d").await;
    let h1 = http_port(&nodes[0]);
    let (_c2, ch2) = declared_on(&nodes[1], "q.dlq", h1).await;
    let (_c1, ch1) = amqp_channel(&nodes[0]).await;
    let args = common::table(vec![
        ("x-dead-letter-exchange", common::lstr("")),
        ("x-dead-letter-routing-key", common::lstr("q.dlq")),
    ]);
    common::declare_durable(&ch1, "q.src", args).await;
    let n = 50;
    let persistent = || lapin::BasicProperties::default().with_delivery_mode(2);
    for b in numbered("dl", n) {
        common::publish(&ch1, "", "q.src", b.as_bytes()).await;
    }
    // Rejected on node 1 without requeue: dead-lettered into node 2's queue, in order.
    let mut c = common::consume(&ch1, "q.src", "rejecter").await;
    let reject = lapin::options::BasicRejectOptions { requeue: false };
    for _ in 0..n {
        let d = common::next(&mut c).await;
        d.acker.reject(reject).await.unwrap();
    }
    let got = drain(&ch2, "q.dlq", n).await;
    assert_eq!(got, numbered("dl", n));

    // At-least-once: node 2 down while node 1 dead-letters 10 persistent messages to it; they
    // are retried (not dropped) and reach node 2's queue when it is back.
    drop((_c2, ch2));
    let TestBroker {
        running, data_dir, ..
    } = nodes.remove(1);
    running.shutdown().await;
    for b in numbered("down", 10) {
        common::publish_props(&ch1, "", "q.src", b.as_bytes(), persistent()).await;
    }
    for _ in 0..10 {
        let d = common::next(&mut c).await;
        d.acker.reject(reject).await.unwrap();
    }
    let t = Instant::now();
    let n2 = relaunch("d2@localhost", data_dir, &ports, 1).await;
    wait_for(
        http_port(&n2),
        "/api/queues/%2F/q.dlq",
        15,
        "the retried dead letters on node 2",
        |s, v| s == 200 && v["messages"] == 10,
    )
    .await;
    let retried_in = t.elapsed();
    let (_c2, ch2) = amqp_channel(&n2).await;
    // Each retried separately: all of them, not necessarily in order.
    let mut got = drain(&ch2, "q.dlq", 10).await;
    got.sort();
    assert_eq!(got, numbered("down", 10));
    let m = &nodes[0].running.broker.metrics;
    let dropped = m.dead_letter_dropped.load(std::sync::atomic::Ordering::Relaxed)
        + m.forward_dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(dropped, 0);
    eprintln!("dead letters for a down node delivered {retried_in:?} after its restart began");
    nodes.push(n2);
    for n in nodes {
        n.running.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_link_nacks_forwarded_publishes_cancels_remote_consumers_and_heals() {
    use futures_lite::StreamExt;
    let (nodes, proxies) = proxied_nodes("k").await;
    let (h2, home) = (http_port(&nodes[1]), &nodes[0]);
    let (_c1, ch1) = amqp_channel(home).await;
    common::declare_durable(&ch1, "q.k", no_args()).await;
    wait_for(h2, "/api/queues/%2F/q.k", 10, "q.k on node 2", |s, _| s == 200).await;
    for b in numbered("k", 3) {
        common::publish(&ch1, "", "q.k", b.as_bytes()).await;
    }
    let (c2, pub2) = amqp_channel(&nodes[1]).await;
    pub2.confirm_select(Default::default()).await.unwrap();
    let ch2 = c2.create_channel().await.unwrap();
    let mut consumer = common::consume(&ch2, "q.k", "cut").await;
    for _ in 0..3 {
        common::next(&mut consumer).await;
    }
    common::wait_until(5, "3 unacked on the home", || {
        common::counts(home, "q.k") == (0, 3, 1)
    })
    .await;

    // Cut node 1 <-> node 2 (both still reach node 3: the cluster keeps its majority).
    let link = |f: &dyn Fn(&common::proxy::Proxy)| {
        for (i, j) in [(0, 1), (1, 0)] {
            f(proxies[i][j].as_ref().unwrap());
        }
    };
    link(&|p| p.cut());
    let t = Instant::now();
    assert_eq!(
        publish_confirmed(&pub2, "", "q.k", &numbered("cut", 5)).await,
        (0, 5)
    );
    let nacked_in = t.elapsed();
    common::within(10, "the remote consumer cancelled", async {
        while consumer.next().await.is_some() {}
    })
    .await;
    let cancelled_in = t.elapsed();
    // The home requeues what node 2's channel held (redelivered), once node 2 stops answering.
    common::wait_until(10, "requeued on the home", || {
        common::counts(home, "q.k") == (3, 0, 0)
    })
    .await;
    let requeued_in = t.elapsed();

    link(&|p| p.heal());
    let deadline = Instant::now() + Duration::from_secs(15);
    while publish_confirmed(&pub2, "", "q.k", &["probe".to_string()])
        .await
        .0
        != 1
    {
        assert!(Instant::now() < deadline, "forwarding never resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ch2 = c2.create_channel().await.unwrap();
    let mut consumer = common::consume(&ch2, "q.k", "healed").await;
    let d = common::next(&mut consumer).await;
    assert_eq!(d.data, b"k-0");
    assert!(d.redelivered);
    eprintln!(
        "link cut: publishes nacked in {nacked_in:?}, consumer cancelled in {cancelled_in:?}, \
         unacked requeued in {requeued_in:?}"
    );
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// `GET path` on `port` as JSON (200 expected).
async fn get_json(port: u16, path: &str) -> Value {
    let r = api(port, "GET", path, None).await;
    assert_eq!(r.status, 200, "GET {path}: {}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).expect("JSON")
}

/// Waits until queue `q` of vhost `/` holds `messages`, `unacked` of them unacknowledged, as
/// the API on `port` shows it.
async fn holds(port: u16, q: &str, messages: u64, unacked: u64) {
    let path = format!("/api/queues/%2F/{q}");
    wait_for(
        port,
        &path,
        10,
        &format!("{q}: {messages} messages, {unacked} unacked"),
        |s, v| s == 200 && v["messages"] == messages && v["messages_unacknowledged"] == unacked,
    )
    .await;
}

/// Three nodes (their HTTP ports) and durable queue `queue` declared on node 1 (through the
/// connection and channel returned).
async fn homed_on_node_1(
    prefix: &str,
    queue: &str,
) -> (Vec<TestBroker>, Vec<u16>, lapin::Connection, lapin::Channel) {
    let (nodes, _) = three_nodes(prefix).await;
    let hs: Vec<u16> = nodes.iter().map(http_port).collect();
    let (c1, ch1) = amqp_channel(&nodes[0]).await;
    common::declare_durable(&ch1, queue, no_args()).await;
    (nodes, hs, c1, ch1)
}

/// Declares durable queue `queue` on node `home` (through the connection and channel
/// returned) and waits until the node with HTTP port `seen_on` has it.
async fn declared_on(home: &TestBroker, queue: &str, seen_on: u16) -> (lapin::Connection, lapin::Channel) {
    let (c, ch) = amqp_channel(home).await;
    common::declare_durable(&ch, queue, no_args()).await;
    let path = format!("/api/queues/%2F/{queue}");
    wait_for(
        seen_on,
        &path,
        10,
        &format!("{queue} on the other node"),
        |s, _| s == 200,
    )
    .await;
    (c, ch)
}

/// The item of listing `v` whose `field` is `value`.
fn item<'a>(v: &'a Value, field: &str, value: &str) -> Option<&'a Value> {
    v.as_array()?.iter().find(|i| i[field] == value)
}

/// Node 1's connection as node `port` lists it, and its name as a path segment.
async fn node_1s_connection(port: u16) -> (Value, String) {
    let conns = get_json(port, "/api/connections").await;
    let conn = item(&conns, "node", "l1@localhost")
        .expect("node 1's connection")
        .clone();
    let name = conn["name"]
        .as_str()
        .unwrap()
        .replace(' ', "%20")
        .replace('>', "%3E");
    (conn, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_are_cluster_wide_with_each_items_node_and_its_home_figures() {
    // Node 1: a durable queue holding 7 messages, 2 of them unacked by its 1 consumer, and an
    // exclusive (node-local) queue.
    let (mut nodes, hs, c1, ch1) = homed_on_node_1("l", "q.l1").await;
    let excl = lapin::options::QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    ch1.queue_declare("q.excl".into(), excl, no_args()).await.unwrap();
    for i in 0..7 {
        common::publish(&ch1, "", "q.l1", format!("m{i}").as_bytes()).await;
    }
    ch1.basic_qos(2, Default::default()).await.unwrap();
    let _consumer = common::consume(&ch1, "q.l1", "tag.l1").await;
    holds(hs[0], "q.l1", 7, 2).await;

    // Nodes 2 and 3 list it with node 1's figures and name.
    let t = Instant::now();
    for h in &hs[1..] {
        let q = get_json(*h, "/api/queues/%2F/q.l1").await;
        let want = [
            ("messages", 7),
            ("messages_ready", 5),
            ("messages_unacknowledged", 2),
            ("consumers", 1),
        ];
        for (f, n) in want {
            assert_eq!(q[f], n, "{f} of {q}");
        }
        assert_eq!(
            (q["node"].as_str(), q["state"].as_str()),
            (Some("l1@localhost"), Some("running"))
        );
        for path in ["/api/queues", "/api/queues/%2F"] {
            let all = get_json(*h, path).await;
            let q = item(&all, "name", "q.l1").expect("q.l1 listed");
            assert_eq!(
                (q["messages"].as_u64(), q["consumers"].as_u64()),
                (Some(7), Some(1))
            );
            let e = item(&all, "name", "q.excl").expect("node 1's exclusive queue listed");
            assert_eq!(e["node"], "l1@localhost");
        }
        // One connection of another node, by name, and its channels.
        let (conn, name) = node_1s_connection(*h).await;
        let one = get_json(*h, &format!("/api/connections/{name}")).await;
        assert_eq!(
            (&one["name"], &one["node"]),
            (&conn["name"], &conn["node"]),
            "{one}"
        );
        let its = get_json(*h, &format!("/api/connections/{name}/channels")).await;
        assert_eq!(its.as_array().map(|a| a.len()), Some(1), "{its}");
        assert_eq!(its[0]["connection_details"]["name"], conn["name"], "{its}");
        let missing = api(*h, "GET", "/api/connections/no%20such", None).await;
        assert_eq!(missing.status, 404);
        let chans = get_json(*h, "/api/channels").await;
        let ch = item(&chans, "node", "l1@localhost").expect("node 1's channel");
        assert_eq!(
            (ch["consumer_count"].as_u64(), ch["prefetch_count"].as_u64()),
            (Some(1), Some(2))
        );
        let consumers = get_json(*h, "/api/consumers/%2F").await;
        let c = item(&consumers, "consumer_tag", "tag.l1").expect("node 1's consumer");
        assert_eq!(
            (c["queue"]["name"].as_str(), c["node"].as_str()),
            (Some("q.l1"), Some("l1@localhost"))
        );
        let o = get_json(*h, "/api/overview").await;
        assert_eq!(o["queue_totals"]["messages"], 7, "{o}");
        assert_eq!(o["object_totals"]["queues"], 2, "{o}");
        assert_eq!(o["object_totals"]["consumers"], 1, "{o}");
        assert!(o["object_totals"]["connections"].as_u64() >= Some(1), "{o}");
        let ns = get_json(*h, "/api/nodes").await;
        assert_eq!(ns.as_array().map(|a| a.len()), Some(3));
        for n in ns.as_array().unwrap() {
            assert_eq!(n["running"], true, "{n}");
            for f in ["uptime", "mem_used", "disk_free", "fd_used"] {
                assert!(n[f].as_u64().is_some_and(|x| x > 0), "{f} of {n}");
            }
        }
    }
    let listed_in = t.elapsed();

    // Operators' requests about node 1's objects work through the others: a message get
    // (requeued), closing its connection.
    let get = json!({"count": 2, "ackmode": "ack_requeue_true", "encoding": "auto"});
    let got = api(hs[1], "POST", "/api/queues/%2F/q.l1/get", Some(get.clone())).await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let got: Value = serde_json::from_slice(&got.body).unwrap();
    let payloads: Vec<&str> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].as_str().unwrap())
        .collect();
    assert_eq!(payloads, ["m2", "m3"], "{got}");
    holds(hs[0], "q.l1", 7, 2).await;
    let mut watch = common::watch(&ch1).await;
    let (_, name) = node_1s_connection(hs[2]).await;
    let closed = http(
        hs[2],
        "DELETE",
        &format!("/api/connections/{name}"),
        ("guest", "guest"),
        None,
    )
    .await;
    assert_eq!(closed.status, 204);
    assert_eq!(common::closed_with(&mut watch).await.0, 320);

    // Node 1 goes down: its queue is listed as `down` (and node 1 as not running) within a
    // deadline, never a hung request.
    drop((c1, ch1));
    let n1 = nodes.remove(0);
    n1.running.shutdown().await;
    let t = Instant::now();
    wait_for(
        hs[1],
        "/api/queues/%2F/q.l1",
        10,
        "q.l1 down on node 2",
        |s, v| s == 200 && v["state"] == "down" && v["node"] == "l1@localhost",
    )
    .await;
    let all = get_json(hs[2], "/api/queues").await;
    assert_eq!(
        item(&all, "name", "q.l1").map(|q| q["state"].clone()),
        Some(json!("down"))
    );
    assert!(item(&all, "name", "q.excl").is_none(), "{all}");
    let ns = get_json(hs[2], "/api/nodes").await;
    assert_eq!(
        item(&ns, "name", "l1@localhost").map(|n| n["running"].clone()),
        Some(json!(false))
    );
    let down_in = t.elapsed();
    let got = api(hs[1], "POST", "/api/queues/%2F/q.l1/get", Some(get)).await;
    assert_eq!(got.status, 503, "{}", String::from_utf8_lossy(&got.body));
    eprintln!("cluster-wide listings on nodes 2 and 3 in {listed_in:?}; node 1's queue down in {down_in:?}");
    for n in nodes {
        n.running.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_and_conditional_delete_of_a_remote_queue_are_answered_by_its_home() {
    // Node 1: q.p1 with 4 messages and a consumer holding one of them.
    let (mut nodes, hs, _c1, ch1) = homed_on_node_1("p", "q.p1").await;
    common::declare_durable(&ch1, "q.p2", no_args()).await;
    for i in 0..4 {
        common::publish(&ch1, "", "q.p1", format!("m{i}").as_bytes()).await;
    }
    let cch = _c1.create_channel().await.unwrap();
    cch.basic_qos(1, Default::default()).await.unwrap();
    let _consumer = common::consume(&cch, "q.p1", "tag.p1").await;
    holds(hs[0], "q.p1", 4, 1).await;
    everywhere(&hs, "/api/queues/%2F/q.p2", 200, "q.p2 everywhere").await;

    // From node 2 (AMQP) and node 3 (HTTP): if-unused and if-empty checked by the home.
    let (c2, _) = amqp_channel(&nodes[1]).await;
    let del = |if_unused, if_empty| lapin::options::QueueDeleteOptions {
        if_unused,
        if_empty,
        ..Default::default()
    };
    let ch = c2.create_channel().await.unwrap();
    common::assert_code(
        ch.queue_delete("q.p1".into(), del(true, false)).await,
        406,
        "in use",
    );
    let ch = c2.create_channel().await.unwrap();
    common::assert_code(
        ch.queue_delete("q.p1".into(), del(false, true)).await,
        406,
        "is not empty",
    );
    let r = api(hs[2], "DELETE", "/api/queues/%2F/q.p1?if-unused=true", None).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("in use"), "{}", r.text());
    let r = api(hs[2], "DELETE", "/api/queues/%2F/q.p1?if-empty=true", None).await;
    assert_eq!(r.status, 400, "{}", r.text());

    // The consumer leaves (its message requeued); node 2 purges: the home's count.
    cch.close(200, "bye".into()).await.unwrap();
    let ch = c2.create_channel().await.unwrap();
    let t = Instant::now();
    assert_eq!(
        ch.queue_purge("q.p1".into(), Default::default()).await.unwrap(),
        4
    );
    let purged_in = t.elapsed();
    assert_eq!(common::message_count(&ch1, "q.p1").await, 0);
    // HTTP purge on node 3.
    common::publish(&ch1, "", "q.p1", b"again").await;
    wait_for(hs[0], "/api/queues/%2F/q.p1", 10, "1 message", |s, v| {
        s == 200 && v["messages"] == 1
    })
    .await;
    assert_eq!(
        api(hs[2], "DELETE", "/api/queues/%2F/q.p1/contents", None)
            .await
            .status,
        204
    );
    assert_eq!(common::message_count(&ch1, "q.p1").await, 0);
    // Unused and empty now: deleted from node 2, everywhere.
    assert_eq!(ch.queue_delete("q.p1".into(), del(true, true)).await.unwrap(), 0);
    everywhere(&hs, "/api/queues/%2F/q.p1", 404, "q.p1 deleted everywhere").await;

    // Node 1 down: purge and conditional delete of its queue fail with RabbitMQ 4's 404.
    drop((_c1, ch1));
    let n1 = nodes.remove(0);
    n1.running.shutdown().await;
    let down = "home node 'p1@localhost' of durable queue 'q.p2' in vhost '/' is down or inaccessible";
    let ch = c2.create_channel().await.unwrap();
    common::assert_code(ch.queue_purge("q.p2".into(), Default::default()).await, 404, down);
    let ch = c2.create_channel().await.unwrap();
    common::assert_code(ch.queue_delete("q.p2".into(), del(true, false)).await, 404, down);
    let r = api(hs[2], "DELETE", "/api/queues/%2F/q.p2/contents", None).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("is down or inaccessible"), "{}", r.text());
    eprintln!("remote queue purged from node 2 in {purged_in:?}");
    for n in nodes {
        n.running.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publisher_faster_than_its_forwarding_link_is_parked_with_the_link_bounded() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (nodes, proxies) = proxied_nodes("b").await;
    let _home = declared_on(&nodes[0], "q.bp", http_port(&nodes[1])).await;
    let f2 = || nodes[1].running.broker.forwarder().expect("clustered");
    let bound = warren_server::forward::LINK_MAX_BYTES;

    // Node 2's link to node 1 stands still; a publisher on node 2 sends 25 MB to node 1's queue.
    proxies[1][0].as_ref().unwrap().stall();
    let (c2, pub2) = amqp_channel(&nodes[1]).await;
    let (n, size) = (400usize, 64 * 1024);
    let sent = Arc::new(AtomicUsize::new(0));
    let count = sent.clone();
    let publisher = tokio::spawn(async move {
        let body = vec![b'x'; size];
        for _ in 0..n {
            common::publish(&pub2, "", "q.bp", &body).await;
            count.fetch_add(1, Ordering::Relaxed);
        }
        (c2, pub2)
    });
    // It is parked (its connection in `flow`) with the link's bytes at the bound, not beyond.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut max = 0;
    while !nodes[1]
        .running
        .broker
        .connections()
        .iter()
        .any(|c| c.state(now_ms()) == "flow")
    {
        max = max.max(f2().link_bytes("b1@localhost"));
        assert!(
            Instant::now() < deadline,
            "never parked ({} sent)",
            sent.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let parked_at = sent.load(Ordering::Relaxed);
    for _ in 0..50 {
        max = max.max(f2().link_bytes("b1@localhost"));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        max <= bound + size + 1024,
        "link held {max} bytes (bound {bound})"
    );
    assert!(parked_at < n, "all {n} published before the link filled");
    // Healed: the rest goes through.
    proxies[1][0].as_ref().unwrap().heal();
    let _kept = common::within(20, "the publisher to finish", publisher)
        .await
        .unwrap();
    wait_for(
        http_port(&nodes[0]),
        "/api/queues/%2F/q.bp",
        20,
        "messages on node 1",
        |s, v| s == 200 && v["messages"].as_u64() > Some(0),
    )
    .await;
    eprintln!(
        "forwarding link held at most {max} bytes (bound {bound}); publisher parked after {parked_at} of {n} 64 KiB messages"
    );
    for n in nodes {
        n.running.shutdown().await;
    }
}

fn now_ms() -> u64 {
    now_us() / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_durable_auto_delete_queue_left_by_its_last_consumer_is_deleted_on_every_node() {
    let (nodes, _) = three_nodes("a").await;
    let hs: Vec<u16> = nodes.iter().map(http_port).collect();
    let (_c1, ch1) = amqp_channel(&nodes[0]).await;
    let opts = lapin::options::QueueDeclareOptions {
        durable: true,
        auto_delete: true,
        ..Default::default()
    };
    for q in ["q.ad.local", "q.ad.remote"] {
        ch1.queue_declare(q.into(), opts, no_args()).await.unwrap();
        everywhere(&hs, &format!("/api/queues/%2F/{q}"), 200, "declared everywhere").await;
    }
    // The last consumer leaves on the home node, and on another node (a proxy consumer).
    let (_c2, ch2) = amqp_channel(&nodes[1]).await;
    for (ch, q) in [(&ch1, "q.ad.local"), (&ch2, "q.ad.remote")] {
        let c = common::consume(ch, q, "only").await;
        ch.basic_cancel(c.tag(), Default::default()).await.unwrap();
        let t = Instant::now();
        everywhere(
            &hs,
            &format!("/api/queues/%2F/{q}"),
            404,
            "auto-deleted everywhere",
        )
        .await;
        eprintln!("{q} auto-deleted on every node in {:?}", t.elapsed());
    }
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// Quorum queues, first slice (issue 20): a quorum queue declared on node 1 gets a Raft group
/// on all three nodes, shown by every node's `/api/queues` as `leader` and `members`; a
/// non-durable quorum declaration is refused with RabbitMQ's 406; the declaring node leads; when
/// the leader's node stops, the two others elect a new leader of the queue's group, and when it
/// restarts, it resumes its member from disk and follows that leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quorum_queue_gets_a_raft_group_on_three_nodes_that_elects_a_new_leader() {
    let (mut nodes, ports) = three_nodes("qq").await;
    let names: Vec<String> = (1..=3).map(|i| format!("qq{i}@localhost")).collect();
    let (_c1, ch1) = amqp_channel(&nodes[0]).await;
    let quorum = common::table(vec![("x-queue-type", common::lstr("quorum"))]);
    let opts = lapin::options::QueueDeclareOptions::default();
    let refused = ch1
        .queue_declare("qq.transient".into(), opts, quorum.clone())
        .await;
    common::assert_code(
        refused,
        406,
        "invalid property 'non-durable' for queue 'qq.transient' in vhost '/'",
    );
    let (_c1, ch1) = amqp_channel(&nodes[0]).await;
    common::declare_durable(&ch1, "qq.orders", quorum).await;
    let path = "/api/queues/%2F/qq.orders";
    let mut leader = String::new();
    for n in &nodes {
        wait_for(
            http_port(n),
            path,
            15,
            "the group's leader and members",
            |s, v| {
                s == 200 && v["type"] == "quorum" && v["members"] == json!(names) && v["leader"].is_string()
            },
        )
        .await;
        let v: Value = serde_json::from_slice(&api(http_port(n), "GET", path, None).await.body).unwrap();
        let l = v["leader"].as_str().unwrap().to_string();
        assert!(leader.is_empty() || leader == l, "nodes disagree on the leader");
        leader = l;
    }
    // RabbitMQ's default leader locator (`client-local`): the declaring node leads.
    assert_eq!(leader, names[0], "the declaring node leads the new queue's group");
    let gone = names.iter().position(|n| *n == leader).unwrap();
    let TestBroker {
        running, data_dir, ..
    } = nodes.remove(gone);
    running.shutdown().await;
    let t = Instant::now();
    for n in &nodes {
        wait_for(http_port(n), path, 15, "a new leader", |s, v| {
            s == 200 && v["leader"].is_string() && v["leader"] != json!(leader)
        })
        .await;
    }
    eprintln!(
        "quorum queue group: new leader seen on both survivors {:?} after the old leader's node stopped",
        t.elapsed()
    );
    // The stopped node restarts: it resumes its member of the group from disk and follows
    // the new leader.
    let seeds: Vec<u16> = ports.iter().copied().filter(|p| *p != ports[gone]).collect();
    let config = node_config(&names[gone], &data_dir.path, ports[gone], &seeds, vec![]);
    nodes.push(launch(config, data_dir).await);
    let survivor: Value =
        serde_json::from_slice(&api(http_port(&nodes[0]), "GET", path, None).await.body).unwrap();
    let new_leader = survivor["leader"].clone();
    wait_for(http_port(&nodes[2]), path, 15, "the restarted member", |s, v| {
        s == 200 && v["members"] == json!(names) && v["leader"] == new_leader
    })
    .await;
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// Persistent messages forwarded from node 1 into node 2's durable queue and consumed with
/// automatic acknowledgement (on node 2, then through node 1) stay consumed across node 2's
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwarded_messages_consumed_on_their_home_stay_consumed_across_its_restart() {
    let (mut nodes, ports) = three_nodes("r").await;
    let h1 = http_port(&nodes[0]);
    let (c2, ch2) = declared_on(&nodes[1], "q.home2", h1).await;
    let (_c1, ch1) = amqp_channel(&nodes[0]).await;
    ch1.confirm_select(Default::default()).await.unwrap();
    assert_eq!(
        publish_confirmed(&ch1, "", "q.home2", &numbered("r", 50)).await,
        (50, 0)
    );
    assert_eq!(drain(&ch2, "q.home2", 50).await, numbered("r", 50));
    assert_eq!(
        publish_confirmed(&ch1, "", "q.home2", &numbered("s", 50)).await,
        (50, 0)
    );
    assert_eq!(drain(&ch1, "q.home2", 50).await, numbered("s", 50));
    drop((c2, ch2));
    let TestBroker {
        running, data_dir, ..
    } = nodes.remove(1);
    running.shutdown().await;
    let n2 = relaunch("r2@localhost", data_dir, &ports, 1).await;
    let (_c2, ch2) = amqp_channel(&n2).await;
    let left = common::message_count(&ch2, "q.home2").await;
    if left > 0 {
        let got = drain(&ch2, "q.home2", left as usize).await;
        panic!("{left} back after the restart: {got:?}");
    }
    nodes.push(n2);
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// A quorum queue `q` declared on three new nodes named `{prefix}1..3@localhost`, once they
/// agree on its group's leader (`path`: its API path): the nodes, the leader, its index, the
/// nodes' cluster ports.
async fn quorum_queue_on_three_nodes(
    prefix: &str,
    q: &str,
    path: &str,
) -> (Vec<TestBroker>, String, usize, [u16; 3]) {
    let (nodes, ports) = three_nodes(prefix).await;
    let https: Vec<u16> = nodes.iter().map(http_port).collect();
    let leader = declare_quorum(&nodes[0].url, &https, q, path).await;
    let li = (1..=3)
        .position(|i| format!("{prefix}{i}@localhost") == leader)
        .expect("a member leads");
    (nodes, leader, li, ports)
}

/// Publishes `body` persistently to queue `queue` on `ch`: its confirm to await.
async fn publish_persistent(ch: &lapin::Channel, queue: &str, body: &str) -> lapin::PublisherConfirm {
    let props = lapin::BasicProperties::default().with_delivery_mode(2);
    ch.basic_publish(
        "".into(),
        queue.into(),
        Default::default(),
        body.as_bytes(),
        props,
    )
    .await
    .expect("publish sent")
}

/// Publishes `{prefix}-{i}` (persistent, to queue `queue`) on `ch` (in confirm mode) for
/// i = 0, 1, … until one is acked, each confirm awaited up to 5 s; the acked body goes to
/// `acked`, the others to `nacked`. Fails after `secs`.
async fn publish_until_confirmed(
    ch: &lapin::Channel,
    queue: &str,
    prefix: &str,
    secs: u64,
    acked: &mut Vec<String>,
    nacked: &mut std::collections::HashSet<String>,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    for i in 0.. {
        assert!(Instant::now() < deadline, "a confirmed publish within {secs}s");
        let body = format!("{prefix}-{i}");
        let sent = publish_persistent(ch, queue, &body).await;
        match tokio::time::timeout(Duration::from_secs(5), sent).await {
            Ok(Ok(c)) if c.is_ack() => {
                acked.push(body);
                return;
            }
            _ => {
                nacked.insert(body);
                // Not at full speed while the cluster fails over.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A manual-ack consumer of `queue` on the node at `url` that received its first delivery: consumes
/// again (on a fresh channel) until one arrives, for up to `secs`.
async fn first_delivery(
    url: &str,
    queue: &str,
    secs: u64,
) -> (lapin::Connection, lapin::Consumer, lapin::message::Delivery) {
    use futures_lite::StreamExt;
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        assert!(
            Instant::now() < deadline,
            "a delivery on a survivor within {secs}s"
        );
        let c = lapin::Connection::connect(url, Default::default())
            .await
            .expect("connect");
        let ch = c.create_channel().await.unwrap();
        ch.basic_qos(50, Default::default()).await.unwrap();
        let Ok(mut consumer) = ch
            .basic_consume(queue.into(), "after".into(), Default::default(), no_args())
            .await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await {
            return (c, consumer, d);
        }
        // Whatever this consumer still gets goes back to the queue.
        let _ = c.close(200, "retry".into()).await;
    }
}

/// Acks `first` and `consumer`'s next deliveries until `n` arrived whose bodies are not in
/// `nacked` (a publish nacked on a timeout may still have committed): those bodies in order,
/// and how many deliveries were flagged redelivered.
async fn ack_until(
    first: lapin::message::Delivery,
    consumer: &mut lapin::Consumer,
    nacked: &std::collections::HashSet<String>,
    n: usize,
) -> (Vec<String>, usize) {
    let (mut got, mut redelivered) = (Vec::new(), 0);
    let mut d = first;
    loop {
        let body = String::from_utf8(d.data.clone()).unwrap();
        redelivered += usize::from(d.redelivered);
        d.ack(Default::default()).await.unwrap();
        if !nacked.contains(&body) {
            got.push(body);
        }
        if got.len() >= n {
            return (got, redelivered);
        }
        d = common::next(consumer).await;
    }
}

/// One node of the quorum failover scenario: its AMQP URL and management port.
#[derive(Clone)]
struct At {
    url: String,
    http: u16,
}

impl At {
    async fn channel(&self) -> (lapin::Connection, lapin::Channel) {
        let c = lapin::Connection::connect(&self.url, Default::default())
            .await
            .expect("connect");
        let ch = c.create_channel().await.unwrap();
        (c, ch)
    }
}

/// The quorum failover scenario of issue 20 on three nodes `at` whose group leader is node
/// `li` (`leader`): 1,000 persistent messages published with confirms on a node that is not
/// the leader's, 100 consumed and acked on the other one; then `stop` stops the leader's node.
/// A new leader takes over and a consumer on a survivor gets every confirmed, unacked message
/// exactly once and in publish order (none of the acked ones), and publishing on both
/// survivors goes on. Prints the unavailability window. Returns the new leader and the
/// consumer (on the survivors' `s`-th node), still consuming.
async fn lose_the_leader<F: std::future::Future<Output = ()>>(
    at: &[At],
    (leader, li): (&str, usize),
    (q, path): (&str, &str),
    stop: F,
) -> (String, usize, lapin::Connection, lapin::Consumer) {
    let others: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    let (pi, si) = (others[0], others[1]);
    let (_pc, pch) = at[pi].channel().await;
    pch.confirm_select(Default::default()).await.unwrap();
    let mut expected: Vec<String> = Vec::new();
    let mut nacked = std::collections::HashSet::new();
    // Served once the leader's node took over.
    publish_until_confirmed(&pch, q, "warm", 15, &mut expected, &mut nacked).await;
    let bodies = numbered("m", 1000);
    let t = Instant::now();
    assert_eq!(publish_confirmed(&pch, "", q, &bodies).await, (1000, 0));
    eprintln!(
        "quorum queue: 1000 confirmed persistent publishes through a follower's node in {:?}",
        t.elapsed()
    );
    expected.extend(bodies);
    // 100 consumed and acked on the other survivor.
    let (_sc, sch) = at[si].channel().await;
    sch.basic_qos(20, Default::default()).await.unwrap();
    let mut c = sch
        .basic_consume(q.into(), "first".into(), Default::default(), no_args())
        .await
        .unwrap();
    for want in expected.drain(..100) {
        let d = common::next(&mut c).await;
        assert_eq!(String::from_utf8_lossy(&d.data), want);
        d.ack(Default::default()).await.unwrap();
    }
    // The acks are committed (the leader's replica applied them).
    wait_for(at[li].http, path, 15, "the acks committed", |s, v| {
        s == 200 && v["replica_messages"] == json!(expected.len())
    })
    .await;
    stop.await;
    let t0 = Instant::now();
    publish_until_confirmed(&pch, q, "after", 30, &mut expected, &mut nacked).await;
    let to_publish = t0.elapsed();
    let survivors: Vec<u16> = others.iter().map(|i| at[*i].http).collect();
    let new_leader = group_leader(&survivors, path, Some(leader)).await;
    let (c2conn, mut c2, first) = first_delivery(&at[si].url, q, 30).await;
    let to_deliver = t0.elapsed();
    eprintln!(
        "quorum queue failover: leader {leader} stopped; new leader {new_leader}; first confirmed \
         publish on a survivor after {to_publish:?}, first delivery on a survivor after {to_deliver:?} \
         ({} publishes nacked meanwhile)",
        nacked.len()
    );
    let (got, redelivered) = ack_until(first, &mut c2, &nacked, expected.len()).await;
    assert_eq!(got.len(), expected.len());
    if let Some(i) = (0..got.len()).find(|i| got[*i] != expected[*i]) {
        panic!(
            "every confirmed, unacked message once, in publish order: at {i} got {:?}, expected {:?}",
            &got[i..(i + 5).min(got.len())],
            &expected[i..(i + 5).min(expected.len())]
        );
    }
    eprintln!(
        "quorum queue failover: {} messages delivered after it ({redelivered} flagged redelivered)",
        got.len()
    );
    // Publishing on both survivors goes on.
    let (_sc2, sch2) = at[si].channel().await;
    sch2.confirm_select(Default::default()).await.unwrap();
    let more_p = numbered("more-p", 10);
    let more_s = numbered("more-s", 10);
    assert_eq!(publish_confirmed(&pch, "", q, &more_p).await, (10, 0));
    assert_eq!(publish_confirmed(&sch2, "", q, &more_s).await, (10, 0));
    let mut more = Vec::new();
    while more.len() < 20 {
        let d = common::next(&mut c2).await;
        more.push(String::from_utf8(d.data.clone()).unwrap());
        d.ack(Default::default()).await.unwrap();
    }
    assert_eq!(more, [more_p, more_s].concat());
    (new_leader, si, c2conn, c2)
}

/// Issue 20: a quorum queue's confirmed messages survive losing the node of its group's
/// leader, which serves the queue ([`lose_the_leader`], in-process nodes, the leader's node
/// shut down); the old leader's node, restarted, follows the new leader and forwards to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quorum_queues_confirmed_messages_survive_losing_its_leaders_node() {
    let (q, path) = ("qq.survive", "/api/queues/%2F/qq.survive");
    let (mut nodes, leader, li, ports) = quorum_queue_on_three_nodes("qs", q, path).await;
    let at: Vec<At> = nodes
        .iter()
        .map(|n| At {
            url: n.url.clone(),
            http: http_port(n),
        })
        .collect();
    let TestBroker {
        running, data_dir, ..
    } = nodes.remove(li);
    let (new_leader, _, _c2conn, mut c2) =
        lose_the_leader(&at, (&leader, li), (q, path), running.shutdown()).await;
    // The old leader's node comes back: it follows the new leader and forwards to it.
    let back = relaunch(&leader, data_dir, &ports, li).await;
    wait_for(
        http_port(&back),
        path,
        15,
        "the returned member following",
        |s, v| s == 200 && v["leader"] == json!(new_leader),
    )
    .await;
    publish_then_consume_it(&back, q, "back", &mut c2, &Default::default()).await;
    back.running.shutdown().await;
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// Issue 20, RabbitMQ 4.3's quorum queue priorities: a quorum queue declared with
/// `x-max-priority` delivers strictly by priority (a priority above the queue's maximum counts
/// as the maximum), in publish order within a priority, through another node, and still so
/// when a new leader rebuilds the queue from its replica after the old leader's node stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quorum_queue_with_max_priority_delivers_by_priority_through_a_failover() {
    use futures_lite::StreamExt;
    let (q, path) = ("qq.prio", "/api/queues/%2F/qq.prio");
    let (mut nodes, _ports) = three_nodes("qp").await;
    let https: Vec<u16> = nodes.iter().map(http_port).collect();
    let (_c0, ch0) = amqp_channel(&nodes[0]).await;
    let args = common::table(vec![
        ("x-queue-type", common::lstr("quorum")),
        ("x-max-priority", lapin::types::AMQPValue::LongInt(10)),
    ]);
    common::declare_durable(&ch0, q, args).await;
    let leader = group_leader(&https, path, None).await;
    let li = (1..=3)
        .position(|i| format!("qp{i}@localhost") == leader)
        .expect("a member leads");
    let (pi, si) = ((li + 1) % 3, (li + 2) % 3);
    // 400 messages of 8 KiB (3.2 MB: more than a serving handle holds of a FIFO queue's
    // backlog) through a follower's node: priorities 0, 3, 7 and 200 (above the maximum 10) in
    // turn, every fifth without a priority.
    let pad = "x".repeat(8 << 10);
    let name = |d: &lapin::message::Delivery| {
        let b = String::from_utf8_lossy(&d.data);
        b.split(':').next().unwrap_or_default().to_string()
    };
    let (_pc, pch) = amqp_channel(&nodes[pi]).await;
    pch.confirm_select(Default::default()).await.unwrap();
    let level = |i: usize| -> Option<u8> {
        if i % 5 == 4 {
            None
        } else {
            Some([0, 3, 7, 200][i % 4])
        }
    };
    let mut pending = Vec::new();
    for i in 0..400 {
        let mut props = lapin::BasicProperties::default().with_delivery_mode(2);
        if let Some(p) = level(i) {
            props = props.with_priority(p);
        }
        let body = format!("m{i}:{pad}");
        let c = pch
            .basic_publish("".into(), q.into(), Default::default(), body.as_bytes(), props)
            .await
            .expect("publish sent");
        pending.push(c);
    }
    for c in pending {
        let c = common::within(15, "a confirm", c).await.expect("confirm");
        assert!(c.is_ack(), "{c:?}");
    }
    // Highest first, publish order within a priority; 200 counts as 10, none as 0.
    let mut expected: Vec<usize> = (0..400).collect();
    expected.sort_by_key(|i| std::cmp::Reverse(level(*i).unwrap_or(0).min(10)));
    let expected: Vec<String> = expected.into_iter().map(|i| format!("m{i}")).collect();
    // The first 50 consumed and acked on the third node, with more out unacked (prefetch 10).
    let (_sc, sch) = amqp_channel(&nodes[si]).await;
    sch.basic_qos(10, Default::default()).await.unwrap();
    let mut c = sch
        .basic_consume(q.into(), "first".into(), Default::default(), no_args())
        .await
        .unwrap();
    for want in &expected[..50] {
        let d = common::next(&mut c).await;
        assert_eq!(name(&d), *want);
        d.ack(Default::default()).await.unwrap();
    }
    wait_for(https[li], path, 15, "the acks committed", |s, v| {
        s == 200 && v["replica_messages"] == json!(350)
    })
    .await;
    // The leader's node stops; the new leader rebuilds the queue from its replica.
    let TestBroker { running, .. } = nodes.remove(li);
    running.shutdown().await;
    let si = if si > li { si - 1 } else { si };
    let (_c2conn, mut c2, first) = first_delivery(&nodes[si].url, q, 30).await;
    let mut got = vec![name(&first)];
    first.ack(Default::default()).await.unwrap();
    while got.len() < 350 {
        let d = common::next(&mut c2).await;
        got.push(name(&d));
        d.ack(Default::default()).await.unwrap();
    }
    if let Some(i) = (0..350).find(|i| got[*i] != expected[50 + *i]) {
        panic!(
            "by priority after the failover: at {i} got {:?}, expected {:?}",
            &got[i..(i + 5).min(350)],
            &expected[50 + i..(55 + i).min(400)]
        );
    }
    // Nothing more: every message once.
    let extra = tokio::time::timeout(Duration::from_millis(300), c2.next()).await;
    assert!(extra.is_err(), "no message twice: {extra:?}");
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// Publishes `{prefix}-i` on node `at` until one is confirmed, then acks `consumer`'s
/// deliveries up to that one: none may come before it but publishes that were nacked (here
/// or in `nacked`: a nack on timeout may still have committed).
async fn publish_then_consume_it(
    at: &TestBroker,
    q: &str,
    prefix: &str,
    consumer: &mut lapin::Consumer,
    nacked: &std::collections::HashSet<String>,
) {
    let (_c, ch) = amqp_channel(at).await;
    ch.confirm_select(Default::default()).await.unwrap();
    let (mut acked, mut refused) = (Vec::new(), std::collections::HashSet::new());
    publish_until_confirmed(&ch, q, prefix, 15, &mut acked, &mut refused).await;
    loop {
        let d = common::next(consumer).await;
        let body = String::from_utf8(d.data.clone()).unwrap();
        d.ack(Default::default()).await.unwrap();
        if body == acked[0] {
            break;
        }
        assert!(
            refused.contains(&body) || nacked.contains(&body),
            "unexpected {body} before {}",
            acked[0]
        );
    }
}

/// Issue 20 with real `warren` processes: the leader's node is SIGKILLed ([`lose_the_leader`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_queues_confirmed_messages_survive_a_sigkill_of_its_leaders_node() {
    use common::process::Broker;
    let (q, path) = ("qq.killed", "/api/queues/%2F/qq.killed");
    let dirs = three(common::tempdir::Dir::new);
    let (http_ports, cluster) = (three(common::free_port), three(common::free_port));
    let mut procs: Vec<Option<Broker>> = (0..3)
        .map(|i| {
            let amqp = common::free_port();
            Some(spawn_member("k", i, &dirs[i].path, amqp, http_ports[i], &cluster))
        })
        .collect();
    for p in http_ports {
        wait_for(p, "/api/nodes", 20, "three running members", |s, v| {
            s == 200 && running_members(v) == 3
        })
        .await;
    }
    let at: Vec<At> = (0..3)
        .map(|i| At {
            url: procs[i].as_ref().expect("running").url(),
            http: http_ports[i],
        })
        .collect();
    let leader = declare_quorum(&at[0].url, &http_ports, q, path).await;
    let li = (1..=3)
        .position(|i| format!("k{i}@localhost") == leader)
        .expect("a member leads");
    let killed = procs[li].take();
    lose_the_leader(&at, (&leader, li), (q, path), async move { drop(killed) }).await;
}

/// Issue 20: with only one of a quorum queue's three members up (its group's leader's node
/// here), a publish to the queue is not confirmed: it is nacked (or never confirmed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quorum_queue_without_a_majority_confirms_no_publish() {
    let (q, path) = ("qq.minority", "/api/queues/%2F/qq.minority");
    let (mut nodes, _leader, li, _) = quorum_queue_on_three_nodes("qm", q, path).await;
    let lone = nodes.remove(li);
    let (_c, ch) = amqp_channel(&lone).await;
    ch.confirm_select(Default::default()).await.unwrap();
    let (mut acked, mut nacked) = (Vec::new(), std::collections::HashSet::new());
    publish_until_confirmed(&ch, q, "before", 15, &mut acked, &mut nacked).await;
    for n in nodes {
        n.running.shutdown().await;
    }
    for i in 0..3 {
        let sent = publish_persistent(&ch, q, &format!("alone-{i}")).await;
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(8), sent).await {
            Ok(Ok(c)) => assert!(!c.is_ack(), "a publish confirmed without a majority: {c:?}"),
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => {}
        }
        eprintln!(
            "quorum queue without a majority: publish {i} not confirmed (answered or given up after {:?})",
            t.elapsed()
        );
    }
    lone.running.shutdown().await;
}

/// A client that declares a quorum queue and publishes at once (the usual start-up) gets
/// every publish confirmed and delivered: `declare-ok` comes once the node can take them (it
/// serves the queue or knows its leader), as RabbitMQ's comes once the Ra cluster started.
/// Before, the first publishes were nacked (with confirms) or dropped (without) for a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_right_after_a_quorum_queue_is_declared_are_taken() {
    let (nodes, _) = three_nodes("qd").await;
    for (i, b) in nodes.iter().enumerate() {
        let q = format!("qq.fresh.{i}");
        let (_c, ch) = amqp_channel(b).await;
        let t = Instant::now();
        let quorum = common::table(vec![("x-queue-type", common::lstr("quorum"))]);
        common::declare_durable(&ch, &q, quorum).await;
        let declared = t.elapsed();
        let unconfirmed = numbered("plain", 50);
        for body in &unconfirmed {
            publish_persistent(&ch, &q, body).await;
        }
        ch.confirm_select(Default::default()).await.unwrap();
        let bodies = numbered("confirmed", 200);
        assert_eq!(
            publish_confirmed(&ch, "", &q, &bodies).await,
            (200, 0),
            "declared on node {}",
            i + 1
        );
        eprintln!(
            "quorum queue declared on node {} in {declared:?}; 250 publishes taken",
            i + 1
        );
        let got = drain(&ch, &q, 250).await;
        assert_eq!(got, [unconfirmed, bodies].concat(), "declared on node {}", i + 1);
    }
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// Credit flow reaches quorum queues: a publisher on the leader's node that outruns the
/// queue's manual-ack consumer parks (its connection enters flow) instead of growing the
/// backlog without bound, and every message arrives in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publisher_outrunning_a_quorum_queues_consumer_is_paced_by_credit_flow() {
    use futures_lite::StreamExt;
    let (nodes, _) = three_nodes("qf").await;
    let (_c, ch) = amqp_channel(&nodes[0]).await;
    let quorum = common::table(vec![("x-queue-type", common::lstr("quorum"))]);
    common::declare_durable(&ch, "qq.flow", quorum).await;
    let hs: Vec<u16> = nodes.iter().map(http_port).collect();
    let leader = group_leader(&hs, "/api/queues/%2F/qq.flow", None).await;
    let b = nodes
        .iter()
        .find(|n| n.running.broker.config.node_name == leader)
        .expect("the leader is one of the nodes");
    let metrics = b.running.broker.metrics.clone();
    let flows_before = metrics.flow_entered.load(std::sync::atomic::Ordering::Relaxed);

    let (_cc, cch) = amqp_channel(b).await;
    // Slow by its prefetch: at most 10 out per Raft round (each delivery waits for its
    // `Deliver` record), while the publisher sends without waiting.
    cch.basic_qos(10, Default::default()).await.unwrap();
    let mut consumer = common::consume(&cch, "qq.flow", "slow").await;
    let n = 20_000;
    let reader = tokio::spawn(async move {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let d = common::within(30, "a delivery", consumer.next())
                .await
                .expect("consumer not cancelled")
                .expect("delivery");
            got.push(String::from_utf8(d.data.clone()).unwrap());
            if got.len() % 5 == 0 {
                d.ack(lapin::options::BasicAckOptions { multiple: true })
                    .await
                    .unwrap();
            }
        }
        got
    });
    let (_pc, pch) = amqp_channel(b).await;
    let bodies = numbered("f", n);
    for body in &bodies {
        pch.basic_publish(
            "".into(),
            "qq.flow".into(),
            Default::default(),
            body.as_bytes(),
            Default::default(),
        )
        .await
        .expect("publish sent");
    }
    let got = common::within(90, "every message consumed", reader)
        .await
        .unwrap();
    assert_eq!(got, bodies);
    let flows = metrics.flow_entered.load(std::sync::atomic::Ordering::Relaxed) - flows_before;
    assert!(flows > 0, "the publisher never entered flow");
    eprintln!("{n} messages through a quorum queue; the publisher entered flow {flows} times");
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// The parts of node `port`'s definitions export an import makes (RabbitMQ's format, each
/// list sorted by the exporter), without the default user.
async fn definitions(port: u16) -> Value {
    let all = get_json(port, "/api/definitions").await;
    let keys = [
        "vhosts",
        "users",
        "permissions",
        "topic_permissions",
        "parameters",
        "global_parameters",
        "policies",
        "exchanges",
        "queues",
        "bindings",
    ];
    let mut parts: serde_json::Map<String, Value> =
        keys.iter().map(|k| (k.to_string(), all[*k].clone())).collect();
    // Every node salts its own default user's hash.
    if let Some(users) = parts.get_mut("users").and_then(Value::as_array_mut) {
        users.retain(|u| u["name"] != "guest");
    }
    Value::Object(parts)
}

/// A definitions import (`POST /api/definitions`) on node 2 goes through the cluster: the
/// vhost, user (with its RabbitMQ password hash), permissions, topic permission, limits,
/// policy, exchange, durable queue (homed on node 2), binding and cluster name reach nodes 1
/// and 3, whose exports then equal node 2's; the user logs in over AMQP on node 3 and
/// publishes through the imported binding to the queue on node 2. Without a majority, an
/// import is refused with 503, as every definitions change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_definitions_import_on_one_node_reaches_every_node() {
    let (mut nodes, _) = three_nodes("d").await;
    let hs: Vec<u16> = nodes.iter().map(http_port).collect();
    let hash = warren_server::auth::hash_password("imported-secret");
    let doc = json!({
        "rabbit_version": "3.13.7",
        "vhosts": [{"name": "imported", "limits": [], "metadata": {"description": "", "tags": []}}],
        "users": [{"name": "importer", "password_hash": hash,
                   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["management"],
                   "limits": {}}],
        "permissions": [{"user": "importer", "vhost": "imported",
                         "configure": ".*", "write": ".*", "read": ".*"}],
        "topic_permissions": [{"user": "importer", "vhost": "imported", "exchange": "x.imported",
                               "write": "^k", "read": ".*"}],
        "parameters": [{"vhost": "imported", "component": "vhost-limits", "name": "limits",
                        "value": {"max-queues": 50}}],
        "global_parameters": [{"name": "cluster_name", "value": "imported-cluster"}],
        "policies": [{"vhost": "imported", "name": "cap", "pattern": "^q\\.", "apply-to": "queues",
                      "priority": 1, "definition": {"max-length": 100}}],
        "exchanges": [{"name": "x.imported", "vhost": "imported", "type": "topic", "durable": true,
                       "auto_delete": false, "internal": false, "arguments": {}}],
        "queues": [{"name": "q.imported", "vhost": "imported", "durable": true,
                    "auto_delete": false, "arguments": {"x-max-priority": 5}}],
        "bindings": [{"source": "x.imported", "vhost": "imported", "destination": "q.imported",
                      "destination_type": "queue", "routing_key": "k.#", "arguments": {}}],
    });
    let t = Instant::now();
    let r = api(hs[1], "POST", "/api/definitions", Some(doc)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let imported = t.elapsed();
    let want = definitions(hs[1]).await;
    for key in [
        "vhosts",
        "permissions",
        "topic_permissions",
        "parameters",
        "policies",
    ] {
        assert!(
            want[key].to_string().contains("\"imported\""),
            "{key}: {}",
            want[key]
        );
    }
    assert!(want["users"].to_string().contains(&hash), "{}", want["users"]);
    for key in ["exchanges", "queues", "bindings"] {
        assert_eq!(
            want[key].as_array().map(Vec::len),
            Some(1),
            "{key}: {}",
            want[key]
        );
    }
    assert_eq!(want["global_parameters"][0]["value"], "imported-cluster");
    for (i, p) in [(0, hs[0]), (2, hs[2])] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = definitions(p).await;
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} has node 2's definitions within 10 s:\n{got}\nwant\n{want}",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "node {} listed every imported definition {:?} after the import was sent (the import took {imported:?})",
            i + 1,
            t.elapsed()
        );
        // The queue's home is the importing node.
        let q = get_json(p, "/api/queues/imported/q.imported").await;
        assert_eq!(q["node"], "d2@localhost", "{q}");
    }

    // The imported user logs in on node 3 and publishes through the imported binding.
    let url = format!(
        "amqp://importer:imported-secret@{}/imported",
        nodes[2].running.amqp_addr
    );
    let c = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .expect("the imported user logs in on node 3");
    let ch = c.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    let confirm = ch
        .basic_publish(
            "x.imported".into(),
            "k.1".into(),
            Default::default(),
            b"through the import",
            Default::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack(), "{confirm:?}");
    wait_for(
        hs[1],
        "/api/queues/imported/q.imported",
        10,
        "the message in the imported queue on node 2",
        |s, v| s == 200 && v["messages"] == 1,
    )
    .await;
    drop(c);

    // Without a majority, an import changes nothing and answers 503.
    nodes.remove(2).running.shutdown().await;
    nodes.remove(0).running.shutdown().await;
    let late = json!({"vhosts": [{"name": "late"}]});
    let t = Instant::now();
    let r = api(hs[1], "POST", "/api/definitions", Some(late)).await;
    assert_eq!(r.status, 503, "{}", r.text());
    eprintln!(
        "without a majority, the import was refused with 503 in {:?}",
        t.elapsed()
    );
    assert_eq!(api(hs[1], "GET", "/api/vhosts/late", None).await.status, 404);
    let r = api(
        hs[1],
        "POST",
        "/api/definitions/imported",
        Some(json!({"queues": [{"name": "q.late", "durable": true}]})),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text());
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// PEM files of a [`common::pki::Pki`] (the node certificate, its key, the CA) in a directory
/// kept as long as this value.
struct TlsFiles {
    dir: common::tempdir::Dir,
}

impl TlsFiles {
    fn new(p: &common::pki::Pki) -> TlsFiles {
        let dir = common::tempdir::Dir::new();
        std::fs::write(dir.path.join("cert.pem"), &p.cert_pem).unwrap();
        std::fs::write(dir.path.join("key.pem"), &p.key_pem).unwrap();
        std::fs::write(dir.path.join("ca.pem"), p.ca.pem()).unwrap();
        TlsFiles { dir }
    }

    /// Gives `c` the certificate, key and CA (inter-node TLS then defaults to on), with the
    /// AMQPS listener on a free loopback port.
    fn apply(&self, c: &mut warren_server::Config) {
        c.tls_listen = "127.0.0.1:0".parse().unwrap();
        c.tls_cert = Some(self.dir.path.join("cert.pem"));
        c.tls_key = Some(self.dir.path.join("key.pem"));
        c.tls_ca = Some(self.dir.path.join("ca.pem"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_with_certificates_cluster_replicate_and_forward_over_tls() {
    let pki = common::pki::Pki::new("warren cluster CA");
    let files = TlsFiles::new(&pki);
    let (nodes, ports) = three_nodes_with("tls", |c| files.apply(c)).await;
    // Every node's cluster port speaks TLS only (the links above formed over it).
    for p in ports {
        assert!(cluster_greeting(p, tls_client(&pki, Some(&pki))).await.is_ok());
    }
    // A queue declared on node 1 is replicated to every node.
    let (_c1, ch1) = amqp_channel(&nodes[0]).await;
    common::declare_durable(&ch1, "q.tls", no_args()).await;
    let hs: Vec<u16> = nodes.iter().map(http_port).collect();
    everywhere(&hs, "/api/queues/%2F/q.tls", 200, "q.tls everywhere").await;
    // Node 2 publishes to it (forwarded to node 1 over TLS): all confirmed, consumed in order.
    let (_c2, ch2) = amqp_channel(&nodes[1]).await;
    ch2.confirm_select(Default::default()).await.unwrap();
    let bodies = numbered("tls", 500);
    assert_eq!(publish_confirmed(&ch2, "", "q.tls", &bodies).await, (500, 0));
    assert_eq!(drain(&ch1, "q.tls", 500).await, bodies);
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// Microseconds since the epoch (publish→delivery latency across the test's tasks).
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Issue 20, a measurement (run on demand: `--ignored`): end-to-end publish→delivery latency
/// of a quorum queue on three in-process nodes, 3,000 persistent messages published with
/// confirms (windows of 100) on the leader's node and consumed there with manual acks
/// (prefetch 100). Prints p50/p99/max and the time for all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn quorum_queue_publish_to_delivery_latency() {
    const N: usize = 3000;
    let (q, path) = ("qq.latency", "/api/queues/%2F/qq.latency");
    let (nodes, _leader, li, _) = quorum_queue_on_three_nodes("ql", q, path).await;
    let (_cc, cch) = amqp_channel(&nodes[li]).await;
    cch.basic_qos(100, Default::default()).await.unwrap();
    let mut consumer = cch
        .basic_consume(q.into(), "lat".into(), Default::default(), no_args())
        .await
        .unwrap();
    let (_pc, pch) = amqp_channel(&nodes[li]).await;
    pch.confirm_select(Default::default()).await.unwrap();
    let t = Instant::now();
    let publisher = tokio::spawn(async move {
        for w in 0..N / 100 {
            let bodies: Vec<String> = (0..100)
                .map(|i| format!("{}-{}", w * 100 + i, now_us()))
                .collect();
            assert_eq!(publish_confirmed(&pch, "", q, &bodies).await, (100, 0));
        }
    });
    let mut lat = Vec::with_capacity(N);
    for i in 0..N {
        let d = common::next(&mut consumer).await;
        let body = String::from_utf8(d.data.clone()).unwrap();
        let (n, sent) = body.split_once('-').unwrap();
        assert_eq!(n.parse::<usize>().unwrap(), i, "in order");
        lat.push(now_us().saturating_sub(sent.parse().unwrap()));
        d.ack(Default::default()).await.unwrap();
    }
    let all = t.elapsed();
    publisher.await.unwrap();
    lat.sort_unstable();
    let ms = |us: u64| us as f64 / 1000.0;
    eprintln!(
        "quorum queue publish→delivery latency over {N} messages: p50 {:.2} ms, p99 {:.2} ms, \
         max {:.2} ms; all delivered in {all:?}",
        ms(lat[N / 2]),
        ms(lat[N * 99 / 100]),
        ms(lat[N - 1])
    );
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// A rustls client trusting `trust`'s CA, presenting `id`'s certificate (if any).
fn tls_client(
    trust: &common::pki::Pki,
    id: Option<&common::pki::Pki>,
) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.ca_der()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    std::sync::Arc::new(match id {
        Some(id) => {
            let cert = rustls_pki_types::CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).unwrap();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap();
            b.with_client_auth_cert(vec![cert], key).unwrap()
        }
        None => b.with_no_client_auth(),
    })
}

/// Opens a TLS session of `client` to the cluster port `port` and reads the length of the
/// node's first frame (its handshake challenge, sent once the peer is accepted): `Err` if the
/// node refuses the session. Bounded by 10 s.
async fn cluster_greeting(port: u16, client: std::sync::Arc<rustls::ClientConfig>) -> std::io::Result<u32> {
    use tokio::io::AsyncReadExt;
    common::within(10, "a TLS session with the cluster port", async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut s = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await?;
        s.read_u32().await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_node_refuses_plaintext_peers_and_certificates_of_another_ca() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = common::pki::Pki::new("warren cluster CA");
    let other = common::pki::Pki::new("another CA");
    let files = TlsFiles::new(&pki);
    let port = common::free_port();
    let dir = common::tempdir::Dir::new();
    let mut config = node_config("tls-lone@localhost", &dir.path, port, &[], vec![]);
    files.apply(&mut config);
    let node = launch(config, dir).await;

    // A peer with a certificate of the cluster CA gets the (small) handshake challenge.
    let len = cluster_greeting(port, tls_client(&pki, Some(&pki)))
        .await
        .unwrap();
    assert!(len > 0 && len < 256, "{len}");
    // Mutual TLS: no client certificate, or one of another CA, is refused.
    assert!(cluster_greeting(port, tls_client(&pki, None)).await.is_err());
    assert!(
        cluster_greeting(port, tls_client(&pki, Some(&other)))
            .await
            .is_err()
    );
    // A peer that trusts only another CA refuses the node's certificate.
    assert!(
        cluster_greeting(port, tls_client(&other, Some(&other)))
            .await
            .is_err()
    );

    // A plaintext peer sending the cluster handshake (a length-prefixed frame) gets no
    // challenge and no Accept: at most a TLS alert record (type 21), then the node closes.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut frame = 66u32.to_be_bytes().to_vec();
    frame.extend([1u8; 66]);
    tcp.write_all(&frame).await.unwrap();
    let mut answer = Vec::new();
    common::within(
        10,
        "the node closing a plaintext peer",
        tcp.read_to_end(&mut answer),
    )
    .await
    .ok();
    assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");
    node.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "measurement: cargo test --test cluster forwarded_publish_throughput -- --ignored --nocapture"]
async fn forwarded_publish_throughput_plain_and_tls() {
    let pki = common::pki::Pki::new("warren cluster CA");
    let files = TlsFiles::new(&pki);
    let n = 20_000;
    let mut report = Vec::new();
    for tls in [false, true, false, true, false, true] {
        let prefix = if tls { "mt" } else { "mp" };
        let (nodes, _) = three_nodes_with(prefix, |c| {
            if tls {
                files.apply(c)
            }
        })
        .await;
        let (_c1, ch1) = amqp_channel(&nodes[0]).await;
        common::declare_durable(&ch1, "q.bench", no_args()).await;
        everywhere(
            &[http_port(&nodes[1])],
            "/api/queues/%2F/q.bench",
            200,
            "q.bench on node 2",
        )
        .await;
        let (_c2, ch2) = amqp_channel(&nodes[1]).await;
        ch2.confirm_select(Default::default()).await.unwrap();
        let bodies: Vec<String> = (0..n).map(|i| format!("{i:0>1000}")).collect();
        let t = Instant::now();
        assert_eq!(publish_confirmed(&ch2, "", "q.bench", &bodies).await, (n, 0));
        let secs = t.elapsed().as_secs_f64();
        report.push(format!(
            "{}: {n} persistent 1 KB messages node 2 -> node 1, confirmed, in {secs:.2} s = {:.0} msg/s",
            if tls { "TLS  " } else { "plain" },
            n as f64 / secs
        ));
        for n in nodes {
            n.running.shutdown().await;
        }
    }
    for r in report {
        eprintln!("{r}");
    }
}

/// Issue 20: a minority partition of a quorum queue delivers nothing. Three in-process nodes
/// with proxied links; consumer A on the group leader's node (prefetch 1, manual acks) has
/// taken some messages and holds one unacked when the leader's node is cut off from both
/// others, so no delivery to A is in flight at the cut: A then acks what it holds, and must
/// receive nothing more (its node cannot commit the `Deliver` record a delivery needs). The
/// majority elects a leader and serves a consumer B on a survivor every confirmed message A did
/// not ack before the cut (the held one flagged redelivered, no other), and publishes made
/// there. Healed, the old leader's node follows the new leader; nothing acked comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quorum_queues_minority_side_delivers_nothing_and_heals_without_loss() {
    use futures_lite::StreamExt;
    let (q, path) = ("qq.part", "/api/queues/%2F/qq.part");
    let (nodes, proxies) = proxied_nodes("qp").await;
    let https: Vec<u16> = nodes.iter().map(http_port).collect();
    let leader = declare_quorum(&nodes[0].url, &https, q, path).await;
    let li = (1..=3)
        .position(|i| format!("qp{i}@localhost") == leader)
        .expect("a member leads");
    let others: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    let (pi, si) = (others[0], others[1]);
    let (_pc, pch) = amqp_channel(&nodes[pi]).await;
    pch.confirm_select(Default::default()).await.unwrap();
    let (mut expected, mut nacked) = (Vec::new(), std::collections::HashSet::new());
    publish_until_confirmed(&pch, q, "warm", 15, &mut expected, &mut nacked).await;
    let before = numbered("m", 300);
    assert_eq!(publish_confirmed(&pch, "", q, &before).await, (300, 0));
    expected.extend(before);

    // A: prefetch 1, acks each delivery 10 ms after it, unless told to hold it.
    let (_ac, ach) = amqp_channel(&nodes[li]).await;
    ach.basic_qos(1, Default::default()).await.unwrap();
    let mut a = ach
        .basic_consume(q.into(), "a".into(), Default::default(), no_args())
        .await
        .unwrap();
    let got_a: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let (hold, mut held) = tokio::sync::watch::channel(false);
    let (acked_tx, acked_rx) = tokio::sync::watch::channel(0usize);
    let recorder = got_a.clone();
    let a_task = tokio::spawn(async move {
        let mut acked = 0;
        loop {
            let d = match a.next().await {
                Some(Ok(d)) => d,
                end => {
                    eprintln!("A's consumer ended: {end:?}");
                    break;
                }
            };
            recorder
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&d.data).into_owned());
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = held.wait_for(|h| !*h).await;
            if d.ack(Default::default()).await.is_err() {
                break;
            }
            acked += 1;
            let _ = acked_tx.send(acked);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while got_a.lock().unwrap().len() < 20 {
        assert!(
            Instant::now() < deadline,
            "A gets 20 deliveries within 15 s: got {}; leader {leader}, now {}",
            got_a.lock().unwrap().len(),
            get_json(https[li], path).await
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    hold.send(true).unwrap();
    // A holds its last delivery unacked (prefetch 1: nothing else is on its way); its acks so
    // far are committed (a survivor's replica applied them).
    let deadline = Instant::now() + Duration::from_secs(15);
    while got_a.lock().unwrap().len() != *acked_rx.borrow() + 1 {
        assert!(Instant::now() < deadline, "A holds one delivery within 15 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let acked_by_a = *acked_rx.borrow();
    let held_msg = got_a.lock().unwrap()[acked_by_a].clone();
    assert_eq!(got_a.lock().unwrap()[..acked_by_a], expected[..acked_by_a]);
    let left = expected.len() - acked_by_a;
    wait_for(https[si], path, 15, "A's acks committed", |s, v| {
        s == 200 && v["replica_messages"] == json!(left)
    })
    .await;

    // Cut the leader's node off from both others; A acks what it holds and goes on consuming.
    let links = [(li, pi), (li, si), (pi, li), (si, li)];
    for (i, j) in links {
        proxies[i][j].as_ref().unwrap().cut();
    }
    let cut_at = Instant::now();
    hold.send(false).unwrap();
    let a_at_cut = got_a.lock().unwrap().len();

    // The majority elects a leader and serves: B on a survivor gets every confirmed message A
    // did not ack before the cut, only the one A held flagged redelivered, and those published
    // on the majority side.
    let new_leader = group_leader(&[https[pi], https[si]], path, Some(&leader)).await;
    publish_until_confirmed(&pch, q, "during", 30, &mut expected, &mut nacked).await;
    let during = numbered("d", 20);
    assert_eq!(publish_confirmed(&pch, "", q, &during).await, (20, 0));
    expected.extend(during);
    let want: std::collections::HashSet<String> = expected[acked_by_a..].iter().cloned().collect();
    let (_bc, mut b, first) = first_delivery(&nodes[si].url, q, 30).await;
    let mut got_b = std::collections::HashSet::new();
    let mut d = first;
    loop {
        let body = String::from_utf8(d.data.clone()).unwrap();
        assert_eq!(d.redelivered, body == held_msg, "redelivered flag of {body}");
        d.ack(Default::default()).await.unwrap();
        if !nacked.contains(&body) {
            assert!(want.contains(&body), "{body} delivered on the majority side");
            assert!(got_b.insert(body.clone()), "{body} twice");
        }
        if got_b.len() == want.len() {
            break;
        }
        d = common::next(&mut b).await;
    }
    let served_in = cut_at.elapsed();

    // Heal: the old leader's node follows the new leader; nothing acked comes back (the next
    // delivery is a publish made after the heal, bar nacked publishes that did commit).
    for (i, j) in links {
        proxies[i][j].as_ref().unwrap().heal();
    }
    let healed = Instant::now();
    group_leader(&https, path, Some(&leader)).await;
    publish_then_consume_it(&nodes[li], q, "end", &mut b, &nacked).await;
    let a_total = got_a.lock().unwrap().len();
    let watched = cut_at.elapsed();
    assert_eq!(
        a_total,
        a_at_cut,
        "A received {:?} after its node was cut off",
        &got_a.lock().unwrap()[a_at_cut..]
    );
    eprintln!(
        "quorum queue partition: A acked {acked_by_a} before the cut, nothing delivered to A in \
         the {watched:?} after it; new leader {new_leader} served all {} messages on the majority \
         side {served_in:?} after the cut; healed, the old leader's node forwarded a publish \
         served {:?} after the heal",
        want.len(),
        healed.elapsed()
    );
    a_task.abort();
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// Issue 20, management: the leader's node shows a quorum queue's `online` members (those its
/// leader heard from within an election timeout) and each member's lag behind the leader's
/// log (`member_lag`). With a follower's node stopped, it leaves `online` and its lag grows as
/// publishes commit without it; restarted, it catches up (lag 0) and is online again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quorum_queues_online_members_and_their_lag_show_a_stopped_member() {
    let (q, path) = ("qq.lag", "/api/queues/%2F/qq.lag");
    let (mut nodes, leader, li, ports) = quorum_queue_on_three_nodes("qg", q, path).await;
    let names: Vec<String> = (1..=3).map(|i| format!("qg{i}@localhost")).collect();
    let lh = http_port(&nodes[li]);
    let caught_up = |want_online: Vec<String>| {
        move |s: u16, v: &Value| {
            s == 200
                && v["online"] == json!(want_online)
                && v["member_lag"]
                    .as_object()
                    .is_some_and(|m| m.len() == 3 && m.values().all(|l| l == &json!(0)))
        }
    };
    wait_for(
        lh,
        path,
        15,
        "all three online, none behind",
        caught_up(names.clone()),
    )
    .await;
    // A follower's node stops; 50 publishes commit without it.
    let fi = (0..3).find(|i| *i != li).unwrap();
    let TestBroker {
        running, data_dir, ..
    } = nodes.remove(fi);
    running.shutdown().await;
    let (_c, ch) = amqp_channel(&nodes[if li > fi { li - 1 } else { li }]).await;
    ch.confirm_select(Default::default()).await.unwrap();
    assert_eq!(publish_confirmed(&ch, "", q, &numbered("lag", 50)).await, (50, 0));
    let up: Vec<String> = names.iter().filter(|n| **n != names[fi]).cloned().collect();
    wait_for(lh, path, 15, "the stopped member offline and behind", |s, v| {
        s == 200
            && v["online"] == json!(up)
            && v["member_lag"][&names[fi]].as_u64().is_some_and(|l| l >= 1)
            && up.iter().all(|n| v["member_lag"][n] == json!(0))
    })
    .await;
    let v = get_json(lh, path).await;
    eprintln!(
        "quorum queue {q} (leader {leader}) with {} stopped: online {}, member_lag {}",
        names[fi], v["online"], v["member_lag"]
    );
    // Restarted, it catches up and is online again.
    let back = relaunch(&names[fi], data_dir, &ports, fi).await;
    wait_for(
        lh,
        path,
        15,
        "the restarted member caught up",
        caught_up(names.clone()),
    )
    .await;
    back.running.shutdown().await;
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// Issue 20, the last guarantee: a quorum queue's group grows onto a node that was not a
/// member (RabbitMQ's `rabbitmq-queues add_member` / `grow`, through the management API and
/// `warrenctl`), whose replica catches up with every confirmed message; the grown group then
/// survives losing one of its original members (the leader's node), serving every confirmed
/// message from the survivors; and shrinks (`delete_member` / `shrink`) down to one member,
/// the last of which cannot be removed. Errors as RabbitMQ's API (404 unknown queue, 400 …).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quorum_queue_grown_onto_a_third_node_survives_losing_an_original_member_and_shrinks() {
    const N: usize = 2000;
    let (mut nodes, _ports) = three_nodes("gw").await;
    let names: Vec<String> = (1..=3).map(|i| format!("gw{i}@localhost")).collect();
    let https: Vec<u16> = nodes.iter().map(http_port).collect();
    let (q, path) = ("qq.grow", "/api/queues/%2F/qq.grow");
    let add = "/api/queues/quorum/%2F/qq.grow/replicas/add";
    let delete = "/api/queues/quorum/%2F/qq.grow/replicas/delete";
    // Two members: the declaring node 1 and node 2 (the next by name).
    let (_c1, ch1) = amqp_channel(&nodes[0]).await;
    let two = || {
        common::table(vec![
            ("x-queue-type", common::lstr("quorum")),
            ("x-quorum-initial-group-size", lapin::types::AMQPValue::LongInt(2)),
        ])
    };
    common::declare_durable(&ch1, q, two()).await;
    common::declare_durable(&ch1, "qq.grow2", two()).await;
    common::declare_durable(&ch1, "classic.q", no_args()).await;
    let originals = json!([names[0], names[1]]);
    for h in &https[..2] {
        wait_for(*h, path, 15, "two members", |s, v| {
            s == 200 && v["members"] == originals && v["leader"].is_string()
        })
        .await;
    }
    ch1.confirm_select(Default::default()).await.unwrap();
    let bodies = numbered("grow", N);
    assert_eq!(publish_confirmed(&ch1, "", q, &bodies).await, (N, 0));
    assert_eq!(
        publish_confirmed(&ch1, "", "qq.grow2", &numbered("g2", 10)).await,
        (10, 0)
    );

    // Refusals.
    wait_for(
        https[2],
        "/api/queues/%2F/classic.q",
        15,
        "classic.q known",
        |s, _| s == 200,
    )
    .await;
    let node3 = json!({"node": names[2]});
    let refusals = [
        (
            add,
            json!({"node": "nobody@nowhere"}),
            400,
            "is not a cluster member",
        ),
        (
            "/api/queues/quorum/%2F/nope/replicas/add",
            node3.clone(),
            404,
            "Not Found",
        ),
        (
            "/api/queues/quorum/%2F/classic.q/replicas/add",
            node3.clone(),
            400,
            "is not a quorum queue",
        ),
    ];
    for (p, body, status, reason) in refusals {
        let r = api(https[2], "POST", p, Some(body)).await;
        assert_eq!(r.status, status, "{p}: {}", r.text());
        assert!(r.text().contains(reason), "{p}: {}", r.text());
    }
    let user = json!({"password": "pw", "tags": "management"});
    assert!(api(https[0], "PUT", "/api/users/mgr", Some(user)).await.status < 300);
    wait_for(https[2], "/api/users/mgr", 15, "the user replicated", |s, _| {
        s == 200
    })
    .await;
    let r = http(https[2], "POST", add, ("mgr", "pw"), Some(node3.clone())).await;
    assert_eq!(r.status, 401, "not an administrator: {}", r.text());

    // Grown through node 3, which is not a member (the request reaches the group's leader).
    let t = Instant::now();
    let r = api(https[2], "POST", add, Some(node3.clone())).await;
    assert_eq!(r.status, 204, "add_member: {}", r.text());
    let grow_took = t.elapsed();
    let all = json!(names);
    for h in &https {
        wait_for(*h, path, 15, "three members everywhere", |s, v| {
            s == 200 && v["members"] == all
        })
        .await;
    }
    let leader = group_leader(&https, path, None).await;
    let li = names.iter().position(|n| *n == leader).unwrap();
    // The leader's view: node 3 online and holding the whole log.
    wait_for(https[li], path, 15, "all three online and caught up", |s, v| {
        s == 200
            && v["online"] == all
            && v["member_lag"]
                .as_object()
                .is_some_and(|m| m.len() == 3 && m.values().all(|l| l == &json!(0)))
    })
    .await;
    let caught_up = t.elapsed();
    // Again: already a member, nothing to do (as RabbitMQ).
    assert_eq!(api(https[0], "POST", add, Some(node3.clone())).await.status, 204);
    // `warrenctl grow`: qq.grow2 grows, qq.grow is skipped.
    let out = ctl(https[0], &["grow", &names[2], "all"]).await.expect("grow");
    eprintln!("{out}");
    let line = |out: &str, name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .map(str::to_string)
    };
    assert!(
        line(&out, "qq.grow2").is_some_and(|l| l.ends_with(" ok")),
        "{out}"
    );
    assert!(
        line(&out, "qq.grow").is_some_and(|l| l.contains("skipped")),
        "{out}"
    );
    wait_for(
        https[0],
        "/api/queues/%2F/qq.grow2",
        15,
        "qq.grow2 grown",
        |s, v| s == 200 && v["members"] == all,
    )
    .await;
    eprintln!(
        "add_member of {} to a two-member group holding {N} messages: answered in {grow_took:?}, \
         leader showing it online with lag 0 after {caught_up:?}",
        names[2]
    );

    // An original member goes (the leader's node, if an original member leads): the grown
    // group keeps a majority and serves every confirmed message.
    let vi = if li < 2 { li } else { 0 };
    let victim = names[vi].clone();
    let TestBroker { running, .. } = nodes.remove(vi);
    running.shutdown().await;
    let t = Instant::now();
    let survivors: Vec<u16> = https.iter().copied().filter(|h| *h != https[vi]).collect();
    let new_leader = group_leader(&survivors, path, Some(&victim)).await;
    eprintln!("new leader {new_leader} {:?} after {victim} stopped", t.elapsed());
    // The other original member.
    let oi = 1 - vi;
    let at = nodes.iter().position(|n| http_port(n) == https[oi]).unwrap();
    let (_co, cho) = amqp_channel(&nodes[at]).await;
    wait_for(
        https[oi],
        path,
        15,
        "every message served after the loss",
        |s, v| s == 200 && v["messages"] == json!(N),
    )
    .await;

    // Shrunk: the stopped node (warrenctl), then the other original member (the leader's
    // self-removal, if it leads): node 3 alone, which must hold every confirmed message.
    let out = ctl(https[oi], &["delete_member", q, &victim])
        .await
        .expect("delete_member");
    assert!(out.contains("Removing a replica"), "{out}");
    let rest = json!([names[oi], names[2]]);
    wait_for(https[2], path, 15, "the stopped member removed", |s, v| {
        s == 200 && v["members"] == rest
    })
    .await;
    let t = Instant::now();
    let r = api(https[2], "DELETE", delete, Some(json!({"node": names[oi]}))).await;
    assert_eq!(r.status, 202, "delete_member: {}", r.text());
    eprintln!(
        "{} (leader: {}) removed in {:?}",
        names[oi],
        new_leader == names[oi],
        t.elapsed()
    );
    wait_for(https[2], path, 15, "node 3 the only member", |s, v| {
        s == 200 && v["members"] == json!([names[2]]) && v["leader"] == json!(names[2])
    })
    .await;
    // The removed member stopped and its files are gone (qq.grow2's stay).
    let groups = nodes[at].data_dir.path.join("cluster").join("groups");
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::fs::read_dir(&groups).map_or(0, |d| d.count()) != 1 {
        assert!(Instant::now() < deadline, "the removed member's files deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut got = drain(&cho, q, N).await;
    got.sort();
    let mut want = bodies.clone();
    want.sort();
    assert_eq!(got, want, "every confirmed message from the grown member");
    let r = api(https[oi], "DELETE", delete, Some(json!({"node": names[2]}))).await;
    assert_eq!(r.status, 400, "the last member: {}", r.text());
    assert!(r.text().contains("last member"), "{}", r.text());
    cho.confirm_select(Default::default()).await.unwrap();
    assert_eq!(
        publish_confirmed(&cho, "", q, &numbered("after", 10)).await,
        (10, 0)
    );
    assert_eq!(drain(&cho, q, 10).await, numbered("after", 10));
    // `warrenctl shrink` of the stopped node: out of qq.grow2 too (no longer in qq.grow),
    // once qq.grow2 has a leader again (the stopped node may have led it).
    let p2 = "/api/queues/%2F/qq.grow2";
    group_leader(&survivors, p2, Some(&victim)).await;
    let out = ctl(https[2], &["shrink", &victim]).await.expect("shrink");
    eprintln!("{out}");
    assert!(out.contains("Shrinking quorum queues"), "{out}");
    assert!(
        line(&out, "qq.grow2").is_some_and(|l| l.ends_with(" ok")),
        "{out}"
    );
    assert!(line(&out, "qq.grow").is_none(), "{out}");
    // A leader removing itself (qq.grow2, on the two survivors now): the other member takes
    // over and serves its messages; the removed node forwards to it.
    let l2 = group_leader(&survivors, p2, Some(&victim)).await;
    let (l2i, other) = (
        names.iter().position(|n| *n == l2).unwrap(),
        if l2 == names[2] {
            names[oi].clone()
        } else {
            names[2].clone()
        },
    );
    let t = Instant::now();
    let delete2 = "/api/queues/quorum/%2F/qq.grow2/replicas/delete";
    let r = api(https[l2i], "DELETE", delete2, Some(json!({"node": l2}))).await;
    assert_eq!(r.status, 202, "the leader's delete_member: {}", r.text());
    let removed_in = t.elapsed();
    let oth = names.iter().position(|n| *n == other).unwrap();
    wait_for(https[oth], p2, 15, "the other member alone, leading", |s, v| {
        s == 200 && v["members"] == json!([other]) && v["leader"] == json!(other)
    })
    .await;
    eprintln!(
        "leader {l2} removed itself in {removed_in:?}; {other} leads alone after {:?}",
        t.elapsed()
    );
    let at2 = nodes.iter().position(|n| http_port(n) == https[l2i]).unwrap();
    let (_c2, ch2) = amqp_channel(&nodes[at2]).await;
    assert_eq!(drain(&ch2, "qq.grow2", 10).await, numbered("g2", 10));
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// A header of `p` as an integer (`x-delivery-count`, `count` of an `x-death` entry).
fn int_header(t: Option<&lapin::types::AMQPValue>) -> Option<i64> {
    use lapin::types::AMQPValue;
    match t? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        other => panic!("not an integer: {other:?}"),
    }
}

/// A string header.
fn str_header(t: Option<&lapin::types::AMQPValue>) -> String {
    use lapin::types::AMQPValue;
    match t {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.to_string(),
        other => panic!("not a string: {other:?}"),
    }
}

/// The only `x-death` entry of `d`: its reason, queue and count.
fn only_death(d: &lapin::message::Delivery) -> (String, String, Option<i64>) {
    use lapin::types::AMQPValue;
    let headers = d.properties.headers().clone().expect("headers");
    let Some(AMQPValue::FieldArray(a)) = headers.inner().get("x-death").cloned() else {
        panic!("no x-death in {headers:?}");
    };
    assert_eq!(a.as_slice().len(), 1, "one x-death entry: {a:?}");
    let AMQPValue::FieldTable(t) = &a.as_slice()[0] else {
        panic!("x-death entry is not a table: {a:?}");
    };
    let m = t.inner();
    (
        str_header(m.get("reason")),
        str_header(m.get("queue")),
        int_header(m.get("count")),
    )
}

/// Issue 20: what Warren's queues do keeps working on a quorum queue served through its group,
/// and what it removed stays removed after a failover. On three nodes, four quorum queues
/// declared on node 1 (so led there): a poison message fetched and rejected (requeue) through
/// node 2 carries RabbitMQ's `x-delivery-count` (absent, 1, 2) and past `x-delivery-limit` 2 is
/// dead-lettered (reason `delivery_limit`) into a quorum dead-letter queue; a message past its
/// queue's `x-message-ttl` is dead-lettered as `expired`; `x-max-length` 2 with
/// `x-overflow: reject-publish` nacks the third publish. Once the sources' groups committed
/// the removals (the leader's replicas empty), node 1 stops: on the new leaders the sources
/// hold nothing again, the capped queue its two messages, and the dead-letter queue both dead
/// letters with their `x-death`, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quorum_queues_delivery_limit_ttl_and_overflow_hold_across_a_failover() {
    use lapin::options::{BasicGetOptions, BasicRejectOptions};
    let (mut nodes, _ports) = three_nodes("qf").await;
    let https: Vec<u16> = nodes.iter().map(http_port).collect();
    let (_c1, ch1) = amqp_channel(&nodes[0]).await;
    let quorum = |extra: Vec<(&str, lapin::types::AMQPValue)>| {
        let mut args = vec![("x-queue-type", common::lstr("quorum"))];
        args.extend(extra);
        common::table(args)
    };
    let to_dlq = || {
        vec![
            ("x-dead-letter-exchange", common::lstr("")),
            ("x-dead-letter-routing-key", common::lstr("qf.dlq")),
        ]
    };
    let path = |q: &str| format!("/api/queues/%2F/{q}");
    common::declare_durable(&ch1, "qf.dlq", quorum(vec![])).await;
    let mut poison = to_dlq();
    poison.push(("x-delivery-limit", lapin::types::AMQPValue::LongInt(2)));
    common::declare_durable(&ch1, "qf.poison", quorum(poison)).await;
    let mut ttl = to_dlq();
    ttl.push(("x-message-ttl", lapin::types::AMQPValue::LongInt(200)));
    common::declare_durable(&ch1, "qf.ttl", quorum(ttl)).await;
    let capped = vec![
        ("x-max-length", lapin::types::AMQPValue::LongInt(2)),
        ("x-overflow", common::lstr("reject-publish")),
    ];
    common::declare_durable(&ch1, "qf.capped", quorum(capped)).await;
    for q in ["qf.dlq", "qf.poison", "qf.ttl", "qf.capped"] {
        assert_eq!(
            group_leader(&https, &path(q), None).await,
            "qf1@localhost",
            "the declaring node leads {q}"
        );
    }
    // Published through node 3, fetched and rejected through node 2.
    let (_c3, ch3) = amqp_channel(&nodes[2]).await;
    ch3.confirm_select(Default::default()).await.unwrap();
    assert_eq!(
        publish_confirmed(&ch3, "", "qf.poison", &["poison".into()]).await,
        (1, 0)
    );
    let (_c2, ch2) = amqp_channel(&nodes[1]).await;
    let mut counts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while counts.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "three deliveries of the poison message: {counts:?}"
        );
        let got = ch2
            .basic_get("qf.poison".into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap();
        let Some(m) = got else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        assert_eq!(m.delivery.data, b"poison");
        assert_eq!(m.delivery.redelivered, !counts.is_empty());
        counts.push(int_header(
            m.delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("x-delivery-count")),
        ));
        m.delivery
            .reject(BasicRejectOptions { requeue: true })
            .await
            .unwrap();
    }
    assert_eq!(counts, [None, Some(1), Some(2)]);
    // Expired, then the overflow.
    assert_eq!(
        publish_confirmed(&ch3, "", "qf.ttl", &["stale".into()]).await,
        (1, 0)
    );
    let three: Vec<String> = numbered("c", 3);
    assert_eq!(publish_confirmed(&ch3, "", "qf.capped", &three).await, (2, 1));
    // The removals are committed: the leader's replicas.
    let h1 = http_port(&nodes[0]);
    for (q, n) in [("qf.poison", 0), ("qf.ttl", 0), ("qf.capped", 2), ("qf.dlq", 2)] {
        wait_for(h1, &path(q), 15, &format!("{q}'s replica holding {n}"), |s, v| {
            s == 200 && v["replica_messages"] == json!(n)
        })
        .await;
    }
    let TestBroker { running, .. } = nodes.remove(0);
    running.shutdown().await;
    let survivors: Vec<u16> = nodes.iter().map(http_port).collect();
    for q in ["qf.dlq", "qf.poison", "qf.ttl", "qf.capped"] {
        group_leader(&survivors, &path(q), Some("qf1@localhost")).await;
    }
    let (_c2, ch2) = amqp_channel(&nodes[0]).await;
    let mut dead = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while dead.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "both dead letters after the failover: {dead:?}"
        );
        match ch2
            .basic_get("qf.dlq".into(), BasicGetOptions { no_ack: true })
            .await
        {
            Ok(Some(m)) => dead.push((
                String::from_utf8(m.delivery.data.clone()).unwrap(),
                only_death(&m.delivery),
            )),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert_eq!(
        dead,
        [
            (
                "poison".to_string(),
                ("delivery_limit".to_string(), "qf.poison".to_string(), Some(1))
            ),
            (
                "stale".to_string(),
                ("expired".to_string(), "qf.ttl".to_string(), Some(1))
            ),
        ]
    );
    for (q, n) in [("qf.dlq", 0), ("qf.poison", 0), ("qf.ttl", 0), ("qf.capped", 2)] {
        assert_eq!(common::message_count(&ch2, q).await, n, "{q} after the failover");
    }
    let mut kept = Vec::new();
    while let Some(m) = ch2
        .basic_get("qf.capped".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        kept.push(String::from_utf8(m.delivery.data.clone()).unwrap());
    }
    assert_eq!(kept, numbered("c", 2));
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// Issue 20: single active consumer and deduplication on quorum queues served through their
/// groups (three nodes, both queues declared on node 1, so led there). Of two consumers on the
/// other nodes only the first registered receives; once it acked everything and cancelled, the
/// second gets what is published next, and only that. Repeats of a message id within
/// `x-deduplication-window` are confirmed but not enqueued; after the leader's node stops, the
/// new leader (its queue rebuilt from its replica) still drops a repeat of an id it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_active_consumer_and_deduplication_work_on_quorum_queues_and_dedup_survives_a_failover() {
    use lapin::options::{BasicCancelOptions, BasicGetOptions};
    use lapin::types::AMQPValue;
    let (mut nodes, _ports) = three_nodes("qd").await;
    let https: Vec<u16> = nodes.iter().map(http_port).collect();
    let (_c1, ch1) = amqp_channel(&nodes[0]).await;
    let quorum =
        |extra: (&str, AMQPValue)| common::table(vec![("x-queue-type", common::lstr("quorum")), extra]);
    let path = |q: &str| format!("/api/queues/%2F/{q}");
    common::declare_durable(
        &ch1,
        "qd.sac",
        quorum(("x-single-active-consumer", AMQPValue::Boolean(true))),
    )
    .await;
    common::declare_durable(
        &ch1,
        "qd.dedup",
        quorum(("x-deduplication-window", AMQPValue::LongInt(60_000))),
    )
    .await;
    for q in ["qd.sac", "qd.dedup"] {
        assert_eq!(group_leader(&https, &path(q), None).await, "qd1@localhost");
    }
    // Single active consumer: A on node 2 registers first, B on node 3 second.
    let (_c2, ch2) = amqp_channel(&nodes[1]).await;
    let (_c3, ch3) = amqp_channel(&nodes[2]).await;
    for ch in [&ch2, &ch3] {
        ch.basic_qos(20, Default::default()).await.unwrap();
    }
    let mut a = ch2
        .basic_consume("qd.sac".into(), "a".into(), Default::default(), no_args())
        .await
        .unwrap();
    let mut b = ch3
        .basic_consume("qd.sac".into(), "b".into(), Default::default(), no_args())
        .await
        .unwrap();
    ch1.confirm_select(Default::default()).await.unwrap();
    let first = numbered("s", 10);
    assert_eq!(publish_confirmed(&ch1, "", "qd.sac", &first).await, (10, 0));
    for want in &first {
        let d = common::next(&mut a).await;
        assert_eq!(
            String::from_utf8_lossy(&d.data),
            *want,
            "the active consumer gets all, in order"
        );
        d.ack(Default::default()).await.unwrap();
    }
    ch2.basic_cancel("a".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    let next = numbered("t", 5);
    assert_eq!(publish_confirmed(&ch1, "", "qd.sac", &next).await, (5, 0));
    for want in &next {
        let d = common::next(&mut b).await;
        assert_eq!(
            String::from_utf8_lossy(&d.data),
            *want,
            "the second consumer gets only what came after the hand-over"
        );
        d.ack(Default::default()).await.unwrap();
    }
    // Deduplication by message id, through node 3.
    let (_c3, ch3) = amqp_channel(&nodes[2]).await;
    ch3.confirm_select(Default::default()).await.unwrap();
    let with_id = |id: &str| {
        lapin::BasicProperties::default()
            .with_message_id(id.into())
            .with_delivery_mode(2)
    };
    for (id, body) in [
        ("pay-1", "one"),
        ("pay-1", "one"),
        ("pay-2", "two"),
        ("pay-1", "one"),
    ] {
        let confirm = ch3
            .basic_publish(
                "".into(),
                "qd.dedup".into(),
                Default::default(),
                body.as_bytes(),
                with_id(id),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack(), "a repeat is confirmed too");
    }
    wait_for(
        http_port(&nodes[0]),
        &path("qd.dedup"),
        15,
        "the leader's replica holding 2",
        |s, v| s == 200 && v["replica_messages"] == json!(2),
    )
    .await;
    let TestBroker { running, .. } = nodes.remove(0);
    running.shutdown().await;
    let survivors: Vec<u16> = nodes.iter().map(http_port).collect();
    group_leader(&survivors, &path("qd.dedup"), Some("qd1@localhost")).await;
    let (_c2, ch2) = amqp_channel(&nodes[0]).await;
    ch2.confirm_select(Default::default()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(
            Instant::now() < deadline,
            "a confirmed repeat on the new leader within 15s"
        );
        let sent = ch2
            .basic_publish(
                "".into(),
                "qd.dedup".into(),
                Default::default(),
                b"one",
                with_id("pay-1"),
            )
            .await
            .unwrap();
        if matches!(tokio::time::timeout(Duration::from_secs(5), sent).await, Ok(Ok(c)) if c.is_ack()) {
            break;
        }
    }
    let mut held = Vec::new();
    while let Some(m) = ch2
        .basic_get("qd.dedup".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        held.push(String::from_utf8(m.delivery.data.clone()).unwrap());
    }
    assert_eq!(held, ["one", "two"], "the repeat after the failover was dropped");
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// Issue 20: message groups (`x-message-group-header`) on a quorum queue served through its
/// group, a backlog of 4 groups consumed on the two nodes that do not lead it (prefetch 10
/// each): each group's messages arrive in
/// publish order, never two of a group out at once (the next goes out only once the previous
/// one's ack reached the leader), and every message arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn message_groups_on_a_quorum_queue_keep_one_in_flight_per_group_in_order() {
    use futures_lite::StreamExt;
    use std::collections::{HashMap, HashSet};
    const GROUPS: usize = 4;
    const PER_GROUP: usize = 15;
    let (nodes, _ports) = three_nodes("qg").await;
    let https: Vec<u16> = nodes.iter().map(http_port).collect();
    let (_c1, ch1) = amqp_channel(&nodes[0]).await;
    let args = common::table(vec![
        ("x-queue-type", common::lstr("quorum")),
        ("x-message-group-header", common::lstr("order-id")),
    ]);
    common::declare_durable(&ch1, "qg.orders", args).await;
    group_leader(&https, "/api/queues/%2F/qg.orders", None).await;
    // The backlog first, every publish confirmed: the consumers start on all of it.
    ch1.confirm_select(Default::default()).await.unwrap();
    let mut confirms = Vec::new();
    for k in 0..PER_GROUP {
        for g in 0..GROUPS {
            let props = lapin::BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(common::table(vec![("order-id", common::lstr(&format!("g{g}")))]));
            let body = format!("{g}:{k}");
            confirms.push(
                ch1.basic_publish(
                    "".into(),
                    "qg.orders".into(),
                    Default::default(),
                    body.as_bytes(),
                    props,
                )
                .await
                .unwrap(),
            );
        }
    }
    for c in confirms {
        assert!(c.await.unwrap().is_ack());
    }
    #[derive(Default)]
    struct Seen {
        in_flight: HashSet<usize>,
        next: HashMap<usize, usize>,
        got: usize,
        violations: Vec<String>,
    }
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
    let mut held = Vec::new();
    for (i, n) in nodes[1..].iter().enumerate() {
        let (c, ch) = amqp_channel(n).await;
        ch.basic_qos(10, Default::default()).await.unwrap();
        let mut consumer = ch
            .basic_consume(
                "qg.orders".into(),
                format!("c{i}").as_str().into(),
                Default::default(),
                no_args(),
            )
            .await
            .unwrap();
        let seen = seen.clone();
        held.push((c, ch));
        tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                let text = String::from_utf8(d.data.clone()).unwrap();
                let (g, k) = text.split_once(':').unwrap();
                let (g, k): (usize, usize) = (g.parse().unwrap(), k.parse().unwrap());
                {
                    let mut s = seen.lock().unwrap();
                    if !s.in_flight.insert(g) {
                        s.violations.push(format!("two of group {g} out at once"));
                    }
                    let want = s.next.get(&g).copied().unwrap_or(0);
                    if k != want {
                        s.violations.push(format!("group {g}: got {k}, expected {want}"));
                    }
                    s.next.insert(g, k + 1);
                }
                tokio::task::yield_now().await;
                {
                    let mut s = seen.lock().unwrap();
                    s.in_flight.remove(&g);
                    s.got += 1;
                }
                d.ack(Default::default()).await.unwrap();
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (got, violations) = {
            let s = seen.lock().unwrap();
            (s.got, s.violations.clone())
        };
        assert!(violations.is_empty(), "{violations:?}");
        if got == GROUPS * PER_GROUP {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "all {} delivered within 20s: {got}",
            GROUPS * PER_GROUP
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(common::message_count(&ch1, "qg.orders").await, 0);
    drop(held);
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// A node outside a quorum queue's group (a four-node cluster, three members) follows the
/// group's leader: when the leader's node goes, its publishes are nacked until it finds the
/// new leader, then confirmed again; every confirmed message is then consumed through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_outside_a_quorum_queues_group_follows_its_leader_through_a_failover() {
    let (q, path) = ("qq.outside", "/api/queues/%2F/qq.outside");
    let (mut nodes, _ports) = n_nodes_with::<4>("qo", |_| {}).await;
    let https: Vec<u16> = nodes.iter().map(http_port).collect();
    let (_c1, ch1) = amqp_channel(&nodes[0]).await;
    let three = common::table(vec![
        ("x-queue-type", common::lstr("quorum")),
        ("x-quorum-initial-group-size", lapin::types::AMQPValue::LongInt(3)),
    ]);
    common::declare_durable(&ch1, q, three).await;
    // Members: the declaring node 1 and the next two by name; node 4 is outside.
    let members = json!(["qo1@localhost", "qo2@localhost", "qo3@localhost"]);
    let leader = group_leader(&https[..3], path, None).await;
    wait_for(https[0], path, 15, "three members", |s, v| {
        s == 200 && v["members"] == members
    })
    .await;
    let li = (1..=3)
        .position(|i| format!("qo{i}@localhost") == leader)
        .expect("a member leads");
    let (_c4, ch4) = amqp_channel(&nodes[3]).await;
    ch4.confirm_select(Default::default()).await.unwrap();
    let mut expected = numbered("before", 100);
    assert_eq!(publish_confirmed(&ch4, "", q, &expected).await, (100, 0));
    nodes.remove(li).running.shutdown().await;
    let t0 = Instant::now();
    let mut nacked = std::collections::HashSet::new();
    publish_until_confirmed(&ch4, q, "after", 30, &mut expected, &mut nacked).await;
    eprintln!(
        "outside the group: first confirmed publish {:?} after the leader {leader} stopped ({} nacked meanwhile)",
        t0.elapsed(),
        nacked.len()
    );
    let more = numbered("more", 100);
    assert_eq!(publish_confirmed(&ch4, "", q, &more).await, (100, 0));
    expected.extend(more);
    // Consumed through the outside node: every confirmed message once, in publish order.
    let (_cc, mut consumer, d) = first_delivery(&nodes[2].url, q, 30).await;
    let (got, _) = ack_until(d, &mut consumer, &nacked, expected.len()).await;
    assert_eq!(got, expected);
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// A member removed from a quorum queue's group while its node was down (`delete_member`)
/// finds out when the node comes back: seeing no leader, it asks the group's leader for the
/// members, stops its stale member, deletes its files and forwards to the leader, so its
/// clients publish and consume as on any node outside the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_removed_while_its_node_was_down_leaves_the_group_when_it_returns() {
    let (q, path) = ("qq.stale", "/api/queues/%2F/qq.stale");
    let (mut nodes, leader, li, ports) = quorum_queue_on_three_nodes("qs", q, path).await;
    let names: Vec<String> = (1..=3).map(|i| format!("qs{i}@localhost")).collect();
    let https: Vec<u16> = nodes.iter().map(http_port).collect();
    let (_c, ch) = amqp_channel(&nodes[li]).await;
    ch.confirm_select(Default::default()).await.unwrap();
    let mut expected = numbered("before", 100);
    assert_eq!(publish_confirmed(&ch, "", q, &expected).await, (100, 0));
    // A member other than the leader goes down and is removed meanwhile.
    let vi = (0..3).find(|i| *i != li).unwrap();
    let TestBroker {
        running, data_dir, ..
    } = nodes.remove(vi);
    running.shutdown().await;
    let delete = "/api/queues/quorum/%2F/qq.stale/replicas/delete";
    let r = api(https[li], "DELETE", delete, Some(json!({"node": names[vi]}))).await;
    assert_eq!(r.status, 202, "delete_member: {}", r.text());
    let rest: Vec<&String> = names.iter().filter(|n| **n != names[vi]).collect();
    wait_for(https[li], path, 15, "the member removed", |s, v| {
        s == 200 && v["members"] == json!(rest)
    })
    .await;
    // It comes back with its stale member's files.
    let groups = data_dir.path.join("cluster").join("groups");
    assert_eq!(std::fs::read_dir(&groups).map_or(0, |d| d.count()), 1);
    let back = relaunch(&names[vi], data_dir, &ports, vi).await;
    let t = Instant::now();
    let deadline = t + Duration::from_secs(30);
    while std::fs::read_dir(&groups).map_or(0, |d| d.count()) != 0 {
        assert!(
            Instant::now() < deadline,
            "the stale member's files deleted within 30s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "stale member of {leader}'s group left {:?} after its node restarted",
        t.elapsed()
    );
    // Its clients publish and consume through the leader.
    let (_cb, chb) = amqp_channel(&back).await;
    chb.confirm_select(Default::default()).await.unwrap();
    let after = numbered("after", 100);
    assert_eq!(publish_confirmed(&chb, "", q, &after).await, (100, 0));
    expected.extend(after);
    assert_eq!(drain(&chb, q, expected.len()).await, expected);
    back.running.shutdown().await;
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// `x-queue-leader-locator: balanced` places a new quorum queue's leader on the member leading
/// the fewest queues (the declaring node on a tie), where `client-local` (the default) places
/// it on the declaring node: four queues declared through node 1, three of them balanced, get
/// leaders on nodes 1, 2, 3 and 1. A policy's `queue-leader-locator` does the same for queues
/// declared without the argument.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn balanced_leader_locator_spreads_quorum_queue_leaders_over_the_nodes() {
    let (nodes, _ports) = three_nodes("lb").await;
    let https: Vec<u16> = nodes.iter().map(http_port).collect();
    let (_c, ch) = amqp_channel(&nodes[0]).await;
    let mut leaders = Vec::new();
    for (q, locator) in [
        ("lb.0", None),
        ("lb.1", Some("balanced")),
        ("lb.2", Some("balanced")),
        ("lb.3", Some("balanced")),
    ] {
        let mut args = vec![("x-queue-type", common::lstr("quorum"))];
        if let Some(l) = locator {
            args.push(("x-queue-leader-locator", common::lstr(l)));
        }
        common::declare_durable(&ch, q, common::table(args)).await;
        let path = format!("/api/queues/%2F/{q}");
        leaders.push(group_leader(&https, &path, None).await);
    }
    assert_eq!(
        leaders,
        ["lb1@localhost", "lb2@localhost", "lb3@localhost", "lb1@localhost"],
        "client-local, then balanced three times"
    );
    // The policy key `queue-leader-locator` places queues declared without the argument; the
    // argument wins over it (RabbitMQ's `rabbit_queue_location`).
    let policy = json!({"pattern": "^lb\\.p", "apply-to": "quorum_queues",
                        "definition": {"queue-leader-locator": "balanced"}});
    let r = api(https[0], "PUT", "/api/policies/%2F/spread", Some(policy)).await;
    assert!(r.status == 201 || r.status == 204, "policy: {}", r.text());
    let mut placed = Vec::new();
    for (q, locator) in [("lb.p4", None), ("lb.p5", Some("client-local"))] {
        let mut args = vec![("x-queue-type", common::lstr("quorum"))];
        if let Some(l) = locator {
            args.push(("x-queue-leader-locator", common::lstr(l)));
        }
        common::declare_durable(&ch, q, common::table(args)).await;
        placed.push(group_leader(&https, &format!("/api/queues/%2F/{q}"), None).await);
    }
    assert_eq!(
        placed,
        ["lb2@localhost", "lb1@localhost"],
        "balanced by policy (nodes 2 and 3 lead fewest; by name), then client-local by argument"
    );
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// A replica's scratch copy of a paged backlog is a cache: when its files are damaged, the
/// leader reads each record back from the group's Raft log instead, and serves every
/// confirmed message once, in order (issue 20: no confirmed message lost to a damaged file).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_damaged_scratch_copy_of_a_quorum_queues_backlog_is_read_back_from_the_raft_log() {
    let (q, path) = ("qq.scratch", "/api/queues/%2F/qq.scratch");
    let (nodes, _leader, li, _ports) = quorum_queue_on_three_nodes("qd", q, path).await;
    let bodies: Vec<String> = (0..4000)
        .map(|i| format!("{i:06}-{}", "x".repeat(1017)))
        .collect();
    let (_c, ch) = amqp_channel(&nodes[li]).await;
    ch.confirm_select(Default::default()).await.unwrap();
    assert_eq!(publish_confirmed(&ch, "", q, &bodies).await, (4000, 0));
    wait_for(
        http_port(&nodes[li]),
        path,
        15,
        "the leader's backlog paged out",
        |s, v| {
            s == 200
                && v["messages_paged_out"].as_u64().is_some_and(|n| n > 1500)
                && v["replica_messages_on_disk"].as_u64().is_some_and(|n| n > 1500)
        },
    )
    .await;
    // Every scratch segment of the leader's node is overwritten (records and CRCs alike).
    let mut damaged = 0;
    let mut dirs = vec![nodes[li].data_dir.path.join("transient")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("msgs."))
            {
                let len = std::fs::metadata(&p).unwrap().len();
                let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                std::os::unix::fs::FileExt::write_all_at(&f, &vec![0xA5; len as usize], 0).unwrap();
                damaged += 1;
            }
        }
    }
    assert!(damaged > 0, "the leader's replica has scratch segments");
    let got = drain(&ch, q, 4000).await;
    assert_eq!(got.len(), bodies.len());
    if let Some(i) = (0..got.len()).find(|i| got[*i] != bodies[*i]) {
        panic!("every message once, in publish order: first difference at {i}");
    }
    let v = api(http_port(&nodes[li]), "GET", path, None).await.json();
    assert!(
        v["replica_records_recovered"].as_u64().is_some_and(|n| n > 1500),
        "records read back from the Raft log: {}",
        v["replica_records_recovered"]
    );
    for n in nodes {
        n.running.shutdown().await;
    }
}

/// Issue 20: a quorum queue's backlog pages to disk. 5,000 persistent 1 KiB messages with no
/// consumer: the serving node holds no more of them in memory than any queue's budget (the
/// rest `messages_paged_out`, read back from its replica), and every member's replica keeps
/// the records beyond its own budget on disk. Its leader's node goes; the new leader (whose
/// replica paged as a follower) serves every message once, in publish order, and once the
/// queue is drained its replica holds nothing in memory or on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quorum_queues_backlog_pages_to_disk_and_drains_in_order_after_a_failover() {
    let (q, path) = ("qq.paging", "/api/queues/%2F/qq.paging");
    let (mut nodes, leader, li, _ports) = quorum_queue_on_three_nodes("qp", q, path).await;
    let bodies: Vec<String> = (0..5000)
        .map(|i| format!("{i:06}-{}", "x".repeat(1017)))
        .collect();
    {
        let (_c, ch) = amqp_channel(&nodes[li]).await;
        ch.confirm_select(Default::default()).await.unwrap();
        assert_eq!(publish_confirmed(&ch, "", q, &bodies).await, (5000, 0));
    }
    let paged = |s: u16, v: &Value| {
        s == 200
            && v["messages"] == json!(5000)
            && v["replica_messages"] == json!(5000)
            && v["messages_paged_out"].as_u64().is_some_and(|n| n > 2000)
            && v["messages_ready_ram"].as_u64().is_some_and(|n| n <= 2048)
            && v["replica_messages_on_disk"].as_u64().is_some_and(|n| n > 2000)
            && v["replica_memory_bytes"].as_u64().is_some_and(|n| n <= 256 << 10)
    };
    wait_for(
        http_port(&nodes[li]),
        path,
        15,
        "the leader's backlog paged out",
        paged,
    )
    .await;
    nodes.remove(li).running.shutdown().await;
    let https: Vec<u16> = nodes.iter().map(http_port).collect();
    let new_leader = group_leader(&https, path, Some(&leader)).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    let ni = others
        .iter()
        .position(|i| new_leader == format!("qp{}@localhost", i + 1))
        .expect("a survivor leads");
    // It serves the backlog from a replica that paged as a follower, and pages in turn.
    let new_paged = |s: u16, v: &Value| {
        s == 200
            && v["messages"] == json!(5000)
            && v["messages_paged_out"].as_u64().is_some_and(|n| n > 2000)
            && v["replica_messages_on_disk"].as_u64().is_some_and(|n| n > 2000)
    };
    wait_for(
        https[ni],
        path,
        15,
        "the new leader serving a paged backlog",
        new_paged,
    )
    .await;
    let (_c, ch) = amqp_channel(&nodes[0]).await;
    let got = drain(&ch, q, 5000).await;
    assert_eq!(got.len(), bodies.len());
    if let Some(i) = (0..got.len()).find(|i| got[*i] != bodies[*i]) {
        panic!("every message once, in publish order: first difference at {i}");
    }
    for n in &nodes {
        // Both survivors are members: each shows its own replica, emptied.
        wait_for(http_port(n), path, 15, "the replicas emptied", |s, v| {
            s == 200
                && v["replica_messages"] == json!(0)
                && v["replica_messages_on_disk"] == json!(0)
                && v["replica_memory_bytes"] == json!(0)
        })
        .await;
    }
    for n in nodes {
        n.running.shutdown().await;
    }
}
