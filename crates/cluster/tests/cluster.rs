//! In-process cluster tests: real nodes on 127.0.0.1 ephemeral ports, each with its own data
//! directory; every wait polls a condition against a deadline.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use warren_cluster::{Apply, Cluster, ClusterConfig, ClusterError, Timeouts};

/// Records every applied command in order; its snapshot is the whole list.
#[derive(Default)]
struct Recorder {
    cmds: Mutex<Vec<Vec<u8>>>,
    restores: AtomicUsize,
}

impl Recorder {
    fn cmds(&self) -> Vec<Vec<u8>> {
        self.cmds.lock().clone()
    }
}

impl Apply for Recorder {
    fn apply(&self, _index: u64, cmd: &[u8]) -> Vec<u8> {
        self.cmds.lock().push(cmd.to_vec());
        [b"ok:".as_slice(), cmd].concat()
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for c in self.cmds.lock().iter() {
            out.extend_from_slice(&(c.len() as u32).to_le_bytes());
            out.extend_from_slice(c);
        }
        out
    }

    fn restore(&self, mut snap: &[u8]) {
        self.restores.fetch_add(1, Ordering::SeqCst);
        let mut cmds = Vec::new();
        while snap.len() >= 4 {
            let len = u32::from_le_bytes(snap[..4].try_into().unwrap()) as usize;
            cmds.push(snap[4..4 + len].to_vec());
            snap = &snap[4 + len..];
        }
        *self.cmds.lock() = cmds;
    }
}

const SECRET: &[u8] = b"the cookie";

fn timeouts() -> Timeouts {
    Timeouts {
        heartbeat: Duration::from_millis(50),
        election_min: Duration::from_millis(300),
        election_max: Duration::from_millis(600),
        // Generous for a loaded CI machine; the heartbeat bounds append-entries calls anyway.
        rpc: Duration::from_secs(1),
        connect: Duration::from_secs(1),
        propose: Duration::from_secs(5),
        retry: Duration::from_millis(100),
    }
}

fn config(name: &str, listen: &str, seeds: &[&str], dir: &Path) -> ClusterConfig {
    let mut c = ClusterConfig::new(name, listen, SECRET, dir.join(name));
    c.seeds = seeds.iter().map(|s| s.to_string()).collect();
    c.timeouts = timeouts();
    c
}

struct Node {
    cluster: Cluster,
    rec: Arc<Recorder>,
}

async fn start(config: ClusterConfig) -> Node {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let rec = Arc::new(Recorder::default());
    let cluster = Cluster::start(config, rec.clone()).await.expect("start");
    Node { cluster, rec }
}

/// Polls `cond` every 20 ms until it holds or `within` passes (then panics with `what`).
async fn wait_for<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every node sees all of `nodes` as voters and agrees on one leader.
async fn wait_formed(nodes: &[&Node]) {
    let ids: Vec<u64> = nodes.iter().map(|n| n.cluster.node_id()).collect();
    wait_for("the cluster to form", Duration::from_secs(15), || async {
        let mut leaders = Vec::new();
        for n in nodes {
            let st = n.cluster.status().await;
            let mut voters = st.voters();
            voters.sort();
            let mut want = ids.clone();
            want.sort();
            if voters != want {
                return false;
            }
            leaders.push(st.leader);
        }
        leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0])
    })
    .await;
}

async fn leader_index(nodes: &[&Node]) -> usize {
    let st = nodes[0].cluster.status().await;
    let leader = st.leader.expect("a leader");
    nodes
        .iter()
        .position(|n| n.cluster.node_id() == leader)
        .expect("leader is one of the nodes")
}

/// A started with no seeds, B and C with A as their seed: they join A's cluster.
async fn three_joined(dir: &Path) -> [Node; 3] {
    let a = start(config("warren@a", "127.0.0.1:0", &[], dir)).await;
    let seeds = [a.cluster.addr()];
    let b = start(config("warren@b", "127.0.0.1:0", &seeds, dir)).await;
    let c = start(config("warren@c", "127.0.0.1:0", &seeds, dir)).await;
    wait_formed(&[&a, &b, &c]).await;
    [a, b, c]
}

async fn stop_all_but(nodes: &[Node], keep: usize) {
    for (i, n) in nodes.iter().enumerate() {
        if i != keep {
            n.cluster.shutdown().await;
        }
    }
}

/// Free loopback ports for nodes that must know each other's address before starting. Taken
/// below Linux's ephemeral range (32768–60999), from a sequence of this test process: a port
/// the kernel handed out for `127.0.0.1:0` and released could become the source port of a
/// node's connection to a seed not yet up, and the seed then could not bind it.
fn free_addrs(n: usize) -> Vec<String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id();
    let _ = NEXT.compare_exchange(u32::MAX, start % SPAN, Ordering::SeqCst, Ordering::SeqCst);
    let mut addrs = Vec::new();
    while addrs.len() < n {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            addrs.push(format!("127.0.0.1:{port}"));
        }
    }
    addrs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_and_a_follower_proposal_applies_everywhere_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = free_addrs(3);
    let names = ["warren@a", "warren@b", "warren@c"];
    let mut nodes = Vec::new();
    for i in 0..3 {
        let seeds: Vec<&str> = (0..3).filter(|&j| j != i).map(|j| addrs[j].as_str()).collect();
        nodes.push(start(config(names[i], &addrs[i], &seeds, dir.path())).await);
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_formed(&refs).await;

    let leader = leader_index(&refs).await;
    let follower = &nodes[(leader + 1) % 3];
    let other = &nodes[(leader + 2) % 3];
    let mut want = Vec::new();
    for i in 0..10 {
        let cmd = format!("declare {i}").into_bytes();
        // Alternate between the two followers: both forward to the leader.
        let via = if i % 2 == 0 { follower } else { other };
        let resp = via
            .cluster
            .propose(cmd.clone())
            .await
            .expect("propose on a follower");
        assert_eq!(resp, [b"ok:".as_slice(), &cmd].concat());
        // Read-your-writes on the proposing node: applied there before propose returns.
        assert!(
            via.rec.cmds().contains(&cmd),
            "not yet applied where it was proposed"
        );
        want.push(cmd);
    }
    wait_for(
        "every node to apply the 10 commands",
        Duration::from_secs(10),
        || async { nodes.iter().all(|n| n.rec.cmds().len() == want.len()) },
    )
    .await;
    for n in &nodes {
        assert_eq!(
            n.rec.cmds(),
            want,
            "{} applied a different sequence",
            n.cluster.node_name()
        );
    }

    // Concurrent proposals through one follower (several in flight on its control links):
    // each applied once, in one order on every node.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let cluster = follower.cluster.clone();
        tasks.spawn(async move { cluster.propose(format!("burst {i}")).await });
    }
    for r in tasks.join_all().await {
        r.expect("concurrent propose");
    }
    wait_for(
        "every node to apply the burst",
        Duration::from_secs(10),
        || async { nodes.iter().all(|n| n.rec.cmds().len() == 30) },
    )
    .await;
    let order = nodes[0].rec.cmds();
    for n in &nodes {
        assert_eq!(n.rec.cmds(), order);
    }
    for i in 0..20 {
        let c = format!("burst {i}").into_bytes();
        assert_eq!(order.iter().filter(|x| **x == c).count(), 1);
    }

    let st = follower.cluster.status().await;
    assert_eq!(st.members.len(), 3);
    assert!(st.members.iter().all(|m| m.reachable && m.voter), "{st:?}");
    let names: Vec<&str> = nodes.iter().map(|n| n.cluster.node_name()).collect();
    assert!(st.leader_name().is_some_and(|l| names.contains(&l)), "{st:?}");
    assert!(st.term >= 1);
    // Every member reports the same last applied index once the log has settled.
    wait_for(
        "members' last applied indexes to agree",
        Duration::from_secs(10),
        || async {
            let st = follower.cluster.status().await;
            let first = st.members[0].last_applied;
            first.is_some_and(|i| i >= 30) && st.members.iter().all(|m| m.last_applied == first)
        },
    )
    .await;
    for n in &nodes {
        n.cluster.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_catches_up_by_snapshot_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    // A and B snapshot every 10 entries and keep no log behind it; C never snapshots itself,
    // so whatever it restores after its restart came from the leader.
    let snappy = |mut c: ClusterConfig| {
        c.snapshot_threshold = 10;
        c.logs_to_keep = 0;
        c
    };
    let a = start(snappy(config("warren@a", "127.0.0.1:0", &[], dir.path()))).await;
    let seeds = [a.cluster.addr()];
    let b = start(snappy(config("warren@b", "127.0.0.1:0", &seeds, dir.path()))).await;
    let c_config = config("warren@c", "127.0.0.1:0", &seeds, dir.path());
    let c = start(c_config.clone()).await;
    wait_formed(&[&a, &b, &c]).await;

    for i in 0..5 {
        b.cluster
            .propose(format!("before {i}"))
            .await
            .expect("propose with all three up");
    }
    wait_for("C to apply the first 5", Duration::from_secs(10), || async {
        c.rec.cmds().len() == 5
    })
    .await;
    let c_addr = c.cluster.addr().to_string();
    c.cluster.shutdown().await;
    drop(c);

    // Two of three still commit.
    for i in 0..30 {
        let via = if i % 2 == 0 { &a } else { &b };
        via.cluster
            .propose(format!("after {i}"))
            .await
            .expect("propose with C down");
    }
    let want = a.rec.cmds();
    assert_eq!(want.len(), 35);

    let mut c_config = c_config;
    c_config.listen = c_addr;
    let c = start(c_config).await;
    wait_for("C to catch up", Duration::from_secs(15), || async {
        c.rec.cmds() == want
    })
    .await;
    assert!(
        c.rec.restores.load(Ordering::SeqCst) >= 1,
        "C caught up without a snapshot"
    );
    // And it follows new commands too.
    c.cluster
        .propose("after restart")
        .await
        .expect("propose on restarted C");
    wait_for(
        "all three to apply the last command",
        Duration::from_secs(10),
        || async { [&a, &b, &c].iter().all(|n| n.rec.cmds().len() == 36) },
    )
    .await;
    assert_eq!(a.rec.cmds(), c.rec.cmds());
    for n in [&a, &b, &c] {
        n.cluster.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_node_of_three_refuses_with_no_quorum_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_joined(dir.path()).await;
    nodes[0]
        .cluster
        .propose("one")
        .await
        .expect("propose with a quorum");

    // Stop the leader and one follower: the surviving follower must notice the leader is gone
    // and still not commit alone.
    let refs: Vec<&Node> = nodes.iter().collect();
    let survivor = (leader_index(&refs).await + 1) % 3;
    stop_all_but(&nodes, survivor).await;
    let started = Instant::now();
    let r = nodes[survivor].cluster.propose("two").await;
    let took = started.elapsed();
    assert!(matches!(r, Err(ClusterError::NoQuorum)), "{r:?}");
    assert!(
        took < timeouts().propose + Duration::from_secs(2),
        "took {took:?}"
    );
    assert!(!nodes[survivor].rec.cmds().contains(&b"two".to_vec()));
    let st = nodes[survivor].cluster.status().await;
    assert_eq!(st.members.iter().filter(|m| m.reachable).count(), 1, "{st:?}");
    nodes[survivor].cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_alone_refuses_with_no_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_joined(dir.path()).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let leader = leader_index(&refs).await;
    stop_all_but(&nodes, leader).await;
    let started = Instant::now();
    let r = nodes[leader].cluster.propose("lost").await;
    assert!(matches!(r, Err(ClusterError::NoQuorum)), "{r:?}");
    assert!(started.elapsed() < timeouts().propose + Duration::from_secs(2));
    nodes[leader].cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(config("warren@a", "127.0.0.1:0", &[], dir.path())).await;
    let mut intruder_config = config("warren@x", "127.0.0.1:0", &[], dir.path());
    intruder_config.secret = b"not the cookie".to_vec();
    let x = start(intruder_config).await;
    let r = x.cluster.join(a.cluster.addr()).await;
    assert!(matches!(r, Err(ClusterError::AuthRefused { .. })), "{r:?}");
    // A pristine intruder with A as its seed never gets in either.
    let mut seeded = config("warren@y", "127.0.0.1:0", &[a.cluster.addr()], dir.path());
    seeded.secret = b"guess".to_vec();
    let y = start(seeded).await;
    let st = a.cluster.status().await;
    assert_eq!(st.members.len(), 1, "{st:?}");
    a.cluster
        .propose("still fine")
        .await
        .expect("A alone is a one-node cluster");
    assert_eq!(y.rec.cmds().len(), 0);
    for n in [&a, &x, &y] {
        n.cluster.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_and_forget_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(config("warren@a", "127.0.0.1:0", &[], dir.path())).await;
    a.cluster
        .propose("first")
        .await
        .expect("one-node cluster commits alone");
    // B started alone (a one-node cluster of its own, no commands): it resets and joins A.
    let b = start(config("warren@b", "127.0.0.1:0", &[], dir.path())).await;
    b.cluster.join(a.cluster.addr()).await.expect("join");
    wait_formed(&[&a, &b]).await;
    wait_for("B to get A's history", Duration::from_secs(10), || async {
        b.rec.cmds() == vec![b"first".to_vec()]
    })
    .await;
    // A clustered node may not join another cluster, nor a lone node with data of its own,
    // even right after a restart, before it has applied that data again.
    assert!(matches!(
        a.cluster.join(b.cluster.addr()).await,
        Err(ClusterError::Invalid(_))
    ));
    let d_config = config("warren@d", "127.0.0.1:0", &[], dir.path());
    let d = start(d_config.clone()).await;
    d.cluster.propose("mine").await.expect("a lone node commits");
    assert!(matches!(
        d.cluster.join(a.cluster.addr()).await,
        Err(ClusterError::Invalid(_))
    ));
    d.cluster.shutdown().await;
    drop(d);
    let d = start(d_config).await;
    assert!(matches!(
        d.cluster.join(a.cluster.addr()).await,
        Err(ClusterError::Invalid(_))
    ));
    d.cluster.shutdown().await;

    let c = start(config("warren@c", "127.0.0.1:0", &[], dir.path())).await;
    c.cluster
        .join(b.cluster.addr())
        .await
        .expect("join through a follower's address");
    wait_formed(&[&a, &b, &c]).await;

    // Forget C from B (forwarded to the leader wherever it is).
    b.cluster.forget("warren@c").await.expect("forget");
    wait_formed(&[&a, &b]).await;
    let st = a.cluster.status().await;
    assert!(st.members.iter().all(|m| m.name != "warren@c"), "{st:?}");
    assert!(matches!(
        a.cluster.forget("warren@nobody").await,
        Err(ClusterError::Invalid(_))
    ));
    a.cluster.propose("after forget").await.expect("two nodes commit");
    for n in [&a, &b, &c] {
        n.cluster.shutdown().await;
    }

    // A restarted member is never reset by a join, even one whose cluster holds no command yet
    // and before Raft has loaded its membership.
    let x = start(config("warren@x", "127.0.0.1:0", &[], dir.path())).await;
    let y_config = config("warren@y", "127.0.0.1:0", &[], dir.path());
    let y = start(y_config.clone()).await;
    y.cluster.join(x.cluster.addr()).await.expect("join");
    y.cluster.shutdown().await;
    drop(y);
    let y = start(y_config).await;
    let r = y.cluster.join(x.cluster.addr()).await;
    assert!(matches!(r, Err(ClusterError::Invalid(_))), "{r:?}");
    for n in [&x, &y] {
        n.cluster.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_node_cluster_restarts_with_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config("warren@solo", "127.0.0.1:0", &[], dir.path());
    let a = start(cfg.clone()).await;
    for i in 0..3 {
        let resp = a
            .cluster
            .propose(format!("def {i}"))
            .await
            .expect("a lone node commits");
        assert_eq!(resp, format!("ok:def {i}").into_bytes());
    }
    let want = a.rec.cmds();
    a.cluster.shutdown().await;
    drop(a);

    let a = start(cfg).await;
    let leader = a
        .cluster
        .wait_for_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    assert_eq!(leader, a.cluster.node_id());
    wait_for(
        "the history to be applied again",
        Duration::from_secs(5),
        || async { a.rec.cmds() == want },
    )
    .await;
    a.cluster.propose("def 3").await.expect("commits after restart");
    assert_eq!(a.rec.cmds().len(), 4);
    let st = a.cluster.status().await;
    assert_eq!((st.members.len(), st.leader), (1, Some(a.cluster.node_id())));
    a.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restarted_at_a_new_address_is_found_again() {
    let dir = tempfile::tempdir().unwrap();
    let [a, b, c] = three_joined(dir.path()).await;
    a.cluster.propose("one").await.expect("propose");
    let c_config = config("warren@c", "127.0.0.1:0", &[a.cluster.addr()], dir.path());
    let old_addr = c.cluster.addr().to_string();
    c.cluster.shutdown().await;
    drop(c);
    b.cluster.propose("two").await.expect("two of three commit");

    // Port 0: the restarted C listens somewhere else than the membership says.
    let c = start(c_config).await;
    assert_ne!(c.cluster.addr(), old_addr);
    wait_for(
        "C to be reachable at its new address and caught up",
        Duration::from_secs(15),
        || async {
            let st = a.cluster.status().await;
            let recorded = st
                .members
                .iter()
                .find(|m| m.name == "warren@c")
                .map(|m| m.addr.clone());
            recorded.as_deref() == Some(c.cluster.addr()) && c.rec.cmds() == a.rec.cmds()
        },
    )
    .await;
    c.cluster.propose("three").await.expect("C proposes again");
    for n in [&a, &b, &c] {
        n.cluster.shutdown().await;
    }
}

/// Per-queue groups beside the metadata group: two groups on the same three nodes, their RPCs
/// multiplexed over the nodes' links; each group replicates only its own writes, a write on a
/// follower names the leader, and when a group's leader node stops, the other two elect a new
/// leader that has every committed write and takes new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_share_the_links_replicate_apart_and_survive_their_leader() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_joined(dir.path()).await;
    let names: Vec<String> = ["warren@a", "warren@b", "warren@c"].map(String::from).to_vec();
    let mut recs: Vec<Vec<Arc<Recorder>>> = Vec::new();
    for g in ["qq:/:one", "qq:/:two"] {
        let mut per_node = Vec::new();
        for n in &nodes {
            let rec = Arc::new(Recorder::default());
            n.cluster
                .start_group(g, &names, rec.clone(), true)
                .await
                .expect("start group");
            per_node.push(rec);
        }
        recs.push(per_node);
    }
    let t = Duration::from_secs(5);
    for (gi, g) in ["qq:/:one", "qq:/:two"].into_iter().enumerate() {
        let l = group_leader(&nodes, &names, g).await;
        for i in 0..20 {
            let cmd = format!("{g} {i}").into_bytes();
            let answer = nodes[l]
                .cluster
                .group_write(g, cmd.clone(), t)
                .await
                .expect("write");
            assert_eq!(answer, [b"ok:".as_slice(), &cmd].concat());
        }
        let f = (l + 1) % 3;
        match nodes[f].cluster.group_write(g, b"x".to_vec(), t).await {
            Err(ClusterError::NotLeader { leader }) => assert_eq!(leader.as_deref(), Some(names[l].as_str())),
            other => panic!("a follower's write: {other:?}"),
        }
        wait_for("every member to apply the group's 20 writes", t, || async {
            recs[gi].iter().all(|r| r.cmds().len() == 20)
        })
        .await;
    }
    // Each group holds only its own commands; the metadata group none of them.
    assert!(recs[0][0].cmds().iter().all(|c| c.starts_with(b"qq:/:one")));
    assert!(nodes[0].rec.cmds().is_empty());

    // Stop the leader node of group one: the others elect a leader with all 20 writes.
    let l = group_leader(&nodes, &names, "qq:/:one").await;
    nodes[l].cluster.shutdown().await;
    let stopped = Instant::now();
    let rest: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    let new = loop {
        let st = nodes[rest[0]].cluster.group_status("qq:/:one").unwrap();
        if let Some(name) = st.leader.filter(|n| *n != names[l]) {
            break names.iter().position(|n| *n == name).unwrap();
        }
        assert!(stopped.elapsed() < Duration::from_secs(10), "no new leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    nodes[new]
        .cluster
        .group_write("qq:/:one", b"qq:/:one after".to_vec(), t)
        .await
        .expect("write on the new leader");
    eprintln!(
        "group one: new leader writes {:?} after its old leader stopped",
        stopped.elapsed()
    );
    wait_for("the survivors to apply 21 writes", t, || async {
        rest.iter().all(|&i| recs[0][i].cmds().len() == 21)
    })
    .await;
    for i in rest {
        nodes[i].cluster.shutdown().await;
    }
}

/// The index of the node every member agrees leads `g` (waits up to 10 s).
async fn group_leader(nodes: &[Node], names: &[String], g: &str) -> usize {
    members_leader(nodes, names, g, names).await
}

/// The index of the node that every one of `members` (names, sorted; the group's voters)
/// agrees leads `g` (waits up to 10 s).
async fn members_leader(nodes: &[Node], names: &[String], g: &str, members: &[String]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st: Vec<_> = nodes
            .iter()
            .zip(names)
            .filter(|(_, name)| members.contains(name))
            .filter_map(|(n, _)| n.cluster.group_status(g))
            .collect();
        if st.len() == members.len() && st[0].leader.is_some() && st.iter().all(|s| s.leader == st[0].leader)
        {
            let name = st[0].leader.clone().unwrap();
            assert_eq!(st[0].members, members);
            return names.iter().position(|n| *n == name).unwrap();
        }
        assert!(Instant::now() < deadline, "no agreed leader for {g}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 20 (grow/shrink, the cluster layer): a group of two members on a three-node cluster
/// grows onto the third (a pristine member joins, the leader adds it as a learner that catches
/// up, then as a voter), which then holds every write; shrunk again, it is no longer a voter.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_grows_onto_a_third_node_which_catches_up_and_shrinks_back() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_joined(dir.path()).await;
    let names: Vec<String> = ["warren@a", "warren@b", "warren@c"].map(String::from).to_vec();
    let g = "qq:/:grow";
    let recs: Vec<Arc<Recorder>> = (0..3).map(|_| Arc::new(Recorder::default())).collect();
    for i in 0..2 {
        nodes[i]
            .cluster
            .start_group(g, &names[..2], recs[i].clone(), i == 0)
            .await
            .expect("start group");
    }
    let t = Duration::from_secs(5);
    let l = members_leader(&nodes, &names, g, &names[..2]).await;
    for i in 0..10 {
        nodes[l]
            .cluster
            .group_write(g, format!("w{i}").into_bytes(), t)
            .await
            .expect("write");
    }
    // Not the leader: refused, naming it.
    let f = 1 - l;
    match nodes[f].cluster.grow_group(g, &names[2], t).await {
        Err(ClusterError::NotLeader { leader }) => assert_eq!(leader.as_deref(), Some(names[l].as_str())),
        other => panic!("a follower's grow: {other:?}"),
    }
    nodes[2]
        .cluster
        .join_group(g, recs[2].clone())
        .await
        .expect("join");
    let started = Instant::now();
    nodes[l].cluster.grow_group(g, &names[2], t).await.expect("grow");
    eprintln!("group grown onto a third node in {:?}", started.elapsed());
    nodes[l]
        .cluster
        .group_write(g, b"after".to_vec(), t)
        .await
        .expect("write");
    wait_for("the new member to apply all 11 writes", t, || async {
        recs[2].cmds().len() == 11
    })
    .await;
    wait_for("every member to see three voters", t, || async {
        nodes
            .iter()
            .all(|n| n.cluster.group_status(g).is_some_and(|s| s.members == names))
    })
    .await;
    // Shrunk back: two voters again, and the group still commits.
    let l = group_leader(&nodes, &names, g).await;
    let gone = if l == 2 { 0 } else { 2 };
    nodes[l]
        .cluster
        .shrink_group(g, &names[gone], t)
        .await
        .expect("shrink");
    let kept: Vec<String> = names.iter().filter(|n| **n != names[gone]).cloned().collect();
    wait_for("the leader to see two voters", t, || async {
        nodes[l]
            .cluster
            .group_status(g)
            .is_some_and(|s| s.members == kept)
    })
    .await;
    nodes[l]
        .cluster
        .group_write(g, b"shrunk".to_vec(), t)
        .await
        .expect("write after shrink");
    for n in &nodes {
        n.cluster.shutdown().await;
    }
}
