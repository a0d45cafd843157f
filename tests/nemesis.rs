//! The fault-test suite of quorum queues (issue 20): three real `warren` processes on
//! loopback whose every cluster link goes through a TCP proxy (`common::proxy`), one quorum
//! queue, publishers with confirms and manual-ack consumers on several nodes that reconnect
//! to another node when theirs fails, a checker recording every publish, confirm, delivery
//! and ack, and a nemesis that for a bounded run (`WARREN_NEMESIS_SECS`, default 30) injects
//! at random moments (seeded: `WARREN_NEMESIS_SEED` replays a schedule) one of: SIGKILL a
//! node and restart it on its data directory and ports; SIGSTOP a node for 1–3 s; cut every
//! link of a node, or one link, for 1–4 s. Then everything is healed, the consumers drain the
//! queue — which must happen within 40 s: every confirmed message delivered and the leader's
//! replica empty — and the checker asserts what quorum queues guarantee (see [`check`]). A
//! summary line gives the seed, the faults and the message counts.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{declare_quorum, group_leader, running_members, spawn_member_with, three, wait_for};
use common::process::Broker;
use common::proxy::Proxy;
use futures_lite::StreamExt;
use serde_json::Value;

const Q: &str = "qq.nemesis";
const PATH: &str = "/api/queues/%2F/qq.nemesis";
const PUBLISHERS: u32 = 2;
const CONSUMERS: u32 = 2;

/// A message: (publisher, sequence number); the body is `"{publisher} {session} {seq}"`.
type Id = (u32, u64);

/// What the publisher learnt of a publish.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    /// No answer (yet): the connection failed or the confirm timed out.
    Unknown,
    /// `basic.ack` received at that moment.
    Confirmed(Instant),
    /// `basic.nack`.
    Nacked,
}

struct Published {
    /// The publisher's connection (its n-th).
    session: u32,
    at: Instant,
    outcome: Outcome,
}

struct Delivered {
    id: Id,
    /// (consumer, its n-th consumer: a fresh connection, channel and `basic.consume`).
    consumer: (u32, u32),
    at: Instant,
    redelivered: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Kill,
    Pause,
    CutNode,
    CutLink,
}

/// A fault injected: when it was healed (`None`: still on).
struct Fault {
    end: Option<Instant>,
}

/// Everything the clients and the nemesis saw, with timestamps.
struct Log {
    /// When the run started (log times are printed from it).
    t0: Instant,
    published: HashMap<Id, Published>,
    deliveries: Vec<Delivered>,
    /// Acks sent (the `basic.ack` written to the connection): the message and when.
    acks: Vec<(Id, Instant)>,
    faults: Vec<Fault>,
    kinds: Vec<Kind>,
    /// Moments the queue was seen settled everywhere (see [`probe`]): (probe sent, answer in).
    quiet: Vec<(Instant, Instant)>,
}

struct Checker(Mutex<Log>);

impl Checker {
    fn new(t0: Instant) -> Checker {
        Checker(Mutex::new(Log {
            t0,
            published: HashMap::new(),
            deliveries: Vec::new(),
            acks: Vec::new(),
            faults: Vec::new(),
            kinds: Vec::new(),
            quiet: Vec::new(),
        }))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Log) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }
}

/// splitmix64: the nemesis' schedule from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

/// Three `warren` processes `n1..n3@localhost`, node i dialling node j through `proxies[i][j]`;
/// each process is killed when dropped (so is a stopped one: SIGKILL needs no SIGCONT).
struct Cluster {
    dirs: [common::tempdir::Dir; 3],
    amqp: [u16; 3],
    http: [u16; 3],
    cluster: [u16; 3],
    proxies: Vec<Vec<Option<Proxy>>>,
    procs: Mutex<Vec<Option<Broker>>>,
}

impl Cluster {
    async fn start() -> Arc<Cluster> {
        let cluster = three(common::free_port);
        let mut proxies = Vec::new();
        for i in 0..3 {
            let mut row = Vec::new();
            for (j, port) in cluster.iter().enumerate() {
                let to = format!("127.0.0.1:{port}").parse().unwrap();
                row.push(if i == j {
                    None
                } else {
                    Some(Proxy::start(to).await)
                });
            }
            proxies.push(row);
        }
        let c = Arc::new(Cluster {
            dirs: three(common::tempdir::Dir::new),
            amqp: three(common::free_port),
            http: three(common::free_port),
            cluster,
            proxies,
            procs: Mutex::new(vec![None, None, None]),
        });
        for i in 0..3 {
            c.restart(i).await;
        }
        for p in c.http {
            wait_for(p, "/api/nodes", 30, "three running members", |s, v| {
                s == 200 && running_members(v) == 3
            })
            .await;
        }
        c
    }

    fn url(&self, i: usize) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp[i])
    }

    /// Starts node `i`'s process (again) on its data directory and ports.
    async fn restart(self: &Arc<Self>, i: usize) {
        let c = self.clone();
        let b = tokio::task::spawn_blocking(move || {
            let via: Vec<String> = (0..3)
                .filter(|j| *j != i)
                .map(|j| {
                    let proxy = c.proxies[i][j].as_ref().unwrap();
                    format!("127.0.0.1:{}={}", c.cluster[j], proxy.addr)
                })
                .collect();
            let via = via.join(",");
            let extra = ["--cluster-dial-via", via.as_str()];
            spawn_member_with(
                "n",
                i,
                &c.dirs[i].path,
                (c.amqp[i], c.http[i]),
                &c.cluster,
                &extra,
            )
        })
        .await
        .expect("the node starts");
        self.procs.lock().unwrap()[i] = Some(b);
    }

    fn kill(&self, i: usize) {
        let b = self.procs.lock().unwrap()[i].take();
        drop(b);
    }

    /// Sends `signal` (`-STOP`, `-CONT`) to node `i`'s process.
    fn signal(&self, i: usize, signal: &str) {
        let pid = self.procs.lock().unwrap()[i].as_ref().map(|b| b.child.id());
        if let Some(pid) = pid {
            let ok = std::process::Command::new("kill")
                .args([signal, &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill {signal} {pid}");
        }
    }

    /// Cuts (`true`) or heals the links between nodes `i` and `j`, both directions.
    fn link(&self, i: usize, j: usize, cut: bool) {
        for (a, b) in [(i, j), (j, i)] {
            let p = self.proxies[a][b].as_ref().unwrap();
            if cut { p.cut() } else { p.heal() }
        }
    }

    fn heal_all(&self) {
        for i in 0..3 {
            for j in 0..3 {
                if i != j {
                    self.link(i, j, false);
                }
            }
        }
    }
}

/// Publisher `id`: bursts of 1–20 persistent messages with confirms (each burst's confirms
/// awaited up to 5 s), 20–250 ms apart, until `stop`; on any failure (connection refused or
/// lost, confirm timed out) it moves to the next node.
async fn publisher(c: Arc<Cluster>, log: Arc<Checker>, id: u32, stop: Arc<tokio::sync::Notify>) {
    let mut rng = Rng(u64::from(id) * 7919);
    let (mut node, mut session, mut seq) = (id as usize % 3, 0u32, 0u64);
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        session += 1;
        let url = c.url(node);
        tokio::select! {
            _ = &mut stopped => return,
            _ = publish_on(&url, &log, (id, session), &mut seq, &mut rng) => {}
        }
        node = (node + 1) % 3;
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// A connection to `url` (given up after 3 s) and a channel on it.
async fn channel_on(url: &str) -> Option<(lapin::Connection, lapin::Channel)> {
    let connect = lapin::Connection::connect(url, Default::default());
    let conn = tokio::time::timeout(Duration::from_secs(3), connect)
        .await
        .ok()?
        .ok()?;
    let ch = conn.create_channel().await.ok()?;
    Some((conn, ch))
}

/// One connection of publisher `id` (its `session`-th) to `url`, publishing until it fails.
async fn publish_on(
    url: &str,
    log: &Checker,
    (id, session): (u32, u32),
    seq: &mut u64,
    rng: &mut Rng,
) -> Option<()> {
    let (_conn, ch) = channel_on(url).await?;
    ch.confirm_select(Default::default()).await.ok()?;
    loop {
        let mut pending = Vec::new();
        for _ in 0..=rng.below(20) {
            *seq += 1;
            let body = format!("{id} {session} {seq}");
            let published = Published {
                session,
                at: Instant::now(),
                outcome: Outcome::Unknown,
            };
            log.with(|l| l.published.insert((id, *seq), published));
            let props = lapin::BasicProperties::default().with_delivery_mode(2);
            let sent = ch.basic_publish("".into(), Q.into(), Default::default(), body.as_bytes(), props);
            let confirm = tokio::time::timeout(Duration::from_secs(5), sent)
                .await
                .ok()?
                .ok()?;
            pending.push((*seq, confirm));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for (seq, confirm) in pending {
            let outcome = match tokio::time::timeout_at(deadline, confirm).await {
                Ok(Ok(c)) if c.is_ack() => Outcome::Confirmed(Instant::now()),
                Ok(Ok(_)) => Outcome::Nacked,
                _ => return None,
            };
            log.with(|l| l.published.get_mut(&(id, seq)).unwrap().outcome = outcome);
        }
        tokio::time::sleep(rng.millis(20, 250)).await;
    }
}

/// Consumer `id`: prefetch 50, manual acks, each delivery acked at once; when its consumer
/// ends (cancelled, connection lost) or nothing comes for 3 s it starts again on the next
/// node. Runs until aborted.
async fn consumer(c: Arc<Cluster>, log: Arc<Checker>, id: u32) {
    let (mut node, mut session) = (1 + id as usize % 3, 0u32);
    loop {
        session += 1;
        consume_on(&c.url(node % 3), &log, (id, session)).await;
        node = (node + 1) % 3;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One connection of consumer `id` (its `session`-th) to `url`, consuming until it fails.
async fn consume_on(url: &str, log: &Checker, (id, session): (u32, u32)) -> Option<()> {
    let (_conn, ch) = channel_on(url).await?;
    ch.basic_qos(50, Default::default()).await.ok()?;
    let tag = format!("c{id}");
    let consume = ch.basic_consume(
        Q.into(),
        tag.as_str().into(),
        Default::default(),
        Default::default(),
    );
    let mut deliveries = tokio::time::timeout(Duration::from_secs(3), consume)
        .await
        .ok()?
        .ok()?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(3), deliveries.next()).await;
        let d = next.ok()??.ok()?;
        let body = String::from_utf8_lossy(&d.data).to_string();
        let f: Vec<u64> = body.split(' ').filter_map(|x| x.parse().ok()).collect();
        assert_eq!(f.len(), 3, "a message of the test: {body:?}");
        let m = (f[0] as u32, f[2]);
        let delivered = Delivered {
            id: m,
            consumer: (id, session),
            at: Instant::now(),
            redelivered: d.redelivered,
        };
        log.with(|l| l.deliveries.push(delivered));
        let ack = d.ack(Default::default());
        tokio::time::timeout(Duration::from_secs(3), ack)
            .await
            .ok()?
            .ok()?;
        log.with(|l| l.acks.push((m, Instant::now())));
    }
}

/// The queue's group as the three nodes see it, if they all answer, agree on its leader, and
/// that leader's replica holds no message: the leader's index then.
async fn settled_everywhere(c: &Cluster) -> Option<usize> {
    let mut seen = Vec::new();
    for p in c.http {
        let url = format!("http://127.0.0.1:{p}{PATH}");
        let get = warren_server::http::client::request("GET", &url, Some(("guest", "guest")), None);
        let r = tokio::time::timeout(Duration::from_secs(1), get)
            .await
            .ok()?
            .ok()?;
        if r.status != 200 {
            return None;
        }
        seen.push(serde_json::from_slice::<Value>(&r.body).ok()?);
    }
    let leader = seen[0]["leader"].as_str()?;
    if seen.iter().any(|v| v["leader"].as_str() != Some(leader)) {
        return None;
    }
    let li = (0..3).find(|i| leader == format!("n{}@localhost", i + 1))?;
    (seen[li]["replica_messages"].as_u64()? == 0).then_some(li)
}

/// Records quiet points every 100 ms: moments at least 1 s after the last fault healed, with
/// no fault started meanwhile, when [`settled_everywhere`] holds. An ack sent before such a
/// probe was sent is **confirmed** by it: every node names the same leader, so it leads the
/// latest term, and its applied replica holds every entry committed before its term (it
/// committed `ReleaseAll` before serving) and every enqueue since (a message is delivered only
/// once its enqueue is committed); it holds no message, so the acked message's settle is
/// committed: no node can deliver it again.
async fn probe(c: Arc<Cluster>, log: Arc<Checker>) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sent = Instant::now();
        let calm = |l: &Log| {
            l.faults
                .last()
                .is_none_or(|f| f.end.is_some_and(|e| e + Duration::from_secs(1) < sent))
        };
        let faults = log.with(|l| calm(l).then_some(l.faults.len()));
        let Some(faults) = faults else { continue };
        if settled_everywhere(&c).await.is_some() {
            let back = Instant::now();
            log.with(|l| {
                if l.faults.len() == faults && calm(l) {
                    l.quiet.push((sent, back));
                }
            });
        }
    }
}

/// The fault schedule: until `until`, every 0.5–2 s one fault, healed before the next.
async fn nemesis(c: Arc<Cluster>, log: Arc<Checker>, mut rng: Rng, (t0, until): (Instant, Instant)) {
    while Instant::now() < until {
        tokio::time::sleep(rng.millis(500, 2000)).await;
        let kind = [Kind::Kill, Kind::Pause, Kind::CutNode, Kind::CutLink][rng.below(4) as usize];
        let n = rng.below(3) as usize;
        let other = (n + 1 + rng.below(2) as usize) % 3;
        log.with(|l| {
            l.kinds.push(kind);
            l.faults.push(Fault { end: None })
        });
        let at = t0.elapsed().as_secs_f64();
        eprintln!("nemesis: {at:.2} s: {kind:?} n{} (other n{})", n + 1, other + 1);
        match kind {
            Kind::Kill => {
                c.kill(n);
                tokio::time::sleep(rng.millis(300, 2500)).await;
                c.restart(n).await;
            }
            Kind::Pause => {
                c.signal(n, "-STOP");
                tokio::time::sleep(rng.millis(1000, 3000)).await;
                c.signal(n, "-CONT");
            }
            Kind::CutNode => {
                c.link(n, (n + 1) % 3, true);
                c.link(n, (n + 2) % 3, true);
                tokio::time::sleep(rng.millis(1000, 4000)).await;
                c.heal_all();
            }
            Kind::CutLink => {
                c.link(n, other, true);
                tokio::time::sleep(rng.millis(1000, 4000)).await;
                c.heal_all();
            }
        }
        log.with(|l| l.faults.last_mut().unwrap().end = Some(Instant::now()));
        eprintln!("nemesis: {:.2} s: healed", t0.elapsed().as_secs_f64());
    }
}

/// What the checker found: the figures and each violated guarantee's examples.
#[derive(Default, Debug)]
struct Findings {
    published: usize,
    confirmed: usize,
    nacked: usize,
    unknown: usize,
    deliveries: usize,
    distinct: usize,
    redelivered: usize,
    duplicates: usize,
    unflagged_duplicates: usize,
    acks: usize,
    confirmed_acks: usize,
    after_ack: usize,
    after_ack_unflagged: usize,
    quiet: usize,
    lost: Vec<Id>,
    out_of_order: Vec<String>,
    after_confirmed_ack: Vec<String>,
    /// Not drained 40 s after healing: what was left.
    stuck: Option<String>,
}

/// Of one publisher's messages a consumer got without `redelivered`: the last sequence
/// number per publisher session, and the latest-published one (when, which).
type Seen = (HashMap<u32, u64>, Option<(Instant, u64)>);

/// The guarantees, checked over the whole log:
///
/// 1. Every confirmed message was delivered at least once.
/// 2. Order. RabbitMQ promises order per publishing channel and receiving channel, and lets a
///    requeued (redelivered) message come back ahead of later ones; receipt times of two
///    consumers do not order the broker's dispatches, so order is checked within each
///    consumer (one connection, channel and `basic.consume`) over its deliveries without
///    `redelivered` — those come from the queue's ready messages, in queue order. Of two such
///    deliveries of one publisher, the later-published message may not come first if both
///    were published on the same connection (one channel), or if the earlier was confirmed
///    before the later was published (its enqueue is committed first, whatever the
///    connections). Nothing is claimed of messages that were redelivered.
/// 3. No delivery of a message after its ack was confirmed (see [`probe`]: received after the
///    first quiet point whose probe was sent after the ack). Deliveries after an unconfirmed
///    ack are at-least-once redeliveries: counted, with how many came without `redelivered`.
fn check(l: &Log) -> Findings {
    let mut f = Findings {
        published: l.published.len(),
        deliveries: l.deliveries.len(),
        acks: l.acks.len(),
        quiet: l.quiet.len(),
        ..Findings::default()
    };
    for p in l.published.values() {
        match p.outcome {
            Outcome::Confirmed(_) => f.confirmed += 1,
            Outcome::Nacked => f.nacked += 1,
            Outcome::Unknown => f.unknown += 1,
        }
    }
    let mut by_id: HashMap<Id, Vec<&Delivered>> = HashMap::new();
    for d in &l.deliveries {
        f.redelivered += usize::from(d.redelivered);
        let seen = by_id.entry(d.id).or_default();
        if !seen.is_empty() {
            f.duplicates += 1;
            f.unflagged_duplicates += usize::from(!d.redelivered);
        }
        seen.push(d);
    }
    f.distinct = by_id.len();
    // 1.
    let mut lost: Vec<Id> = l
        .published
        .iter()
        .filter(|(id, p)| matches!(p.outcome, Outcome::Confirmed(_)) && !by_id.contains_key(id))
        .map(|(id, _)| *id)
        .collect();
    lost.sort();
    for id in lost.iter().take(10) {
        let p = &l.published[id];
        if let Outcome::Confirmed(c) = p.outcome {
            eprintln!(
                "nemesis: lost {id:?}: published at {:.3} s (session {}), confirmed at {:.3} s",
                (p.at - l.t0).as_secs_f64(),
                p.session,
                (c - l.t0).as_secs_f64()
            );
        }
    }
    f.lost = lost;
    // 2. Per (consumer, publisher): the last sequence number per publisher session, and the
    // latest publish time so far.
    let mut state: HashMap<((u32, u32), u32), Seen> = HashMap::new();
    for d in l.deliveries.iter().filter(|d| !d.redelivered) {
        let Some(p) = l.published.get(&d.id) else {
            f.out_of_order
                .push(format!("{:?} delivered but never published", d.id));
            continue;
        };
        let (last, latest) = state.entry((d.consumer, d.id.0)).or_default();
        if let Some(prev) = last.get(&p.session)
            && *prev >= d.id.1
        {
            f.out_of_order.push(format!(
                "consumer {:?}: {:?} (publisher session {}) after seq {prev} of that session",
                d.consumer, d.id, p.session
            ));
        }
        if let (Outcome::Confirmed(c), Some((t, seq))) = (p.outcome, *latest)
            && c < t
        {
            f.out_of_order.push(format!(
                "consumer {:?}: {:?} (confirmed before seq {seq} was published) after it",
                d.consumer, d.id
            ));
        }
        last.insert(p.session, d.id.1);
        if latest.is_none_or(|(t, _)| t < p.at) {
            *latest = Some((p.at, d.id.1));
        }
    }
    // 3.
    for (id, acked) in &l.acks {
        let later = by_id[id].iter().filter(|d| d.at > *acked);
        let first_quiet = l.quiet.iter().find(|(sent, _)| sent > acked);
        f.confirmed_acks += usize::from(first_quiet.is_some());
        for d in later {
            match first_quiet {
                Some((_, back)) if d.at > *back => f.after_confirmed_ack.push(format!(
                    "{id:?} acked, the ack confirmed {:?} later, delivered again {:?} after the ack \
                     (redelivered={}, consumer {:?})",
                    *back - *acked,
                    d.at - *acked,
                    d.redelivered,
                    d.consumer
                )),
                _ => {
                    f.after_ack += 1;
                    f.after_ack_unflagged += usize::from(!d.redelivered);
                }
            }
        }
    }
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quorum_queue_guarantees_hold_under_kills_pauses_and_partitions() {
    let secs: u64 = std::env::var("WARREN_NEMESIS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let seed: u64 = std::env::var("WARREN_NEMESIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            t.as_nanos() as u64
        });
    eprintln!("nemesis: seed {seed} (replay with WARREN_NEMESIS_SEED={seed}), {secs} s of faults");
    // Setup and the final drain take well under a minute; the processes and proxies are
    // dropped (killed) on every way out, the timeout's included.
    let limit = Duration::from_secs(secs + 75);
    let t0 = Instant::now();
    let f = tokio::time::timeout(limit, run(seed, secs))
        .await
        .unwrap_or_else(|_| panic!("the nemesis run (seed {seed}) finished within {limit:?}"));
    let mut kinds: HashMap<Kind, usize> = HashMap::new();
    for k in &f.1 {
        *kinds.entry(*k).or_default() += 1;
    }
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort();
    let f = f.0;
    eprintln!(
        "nemesis summary: seed {seed}, {secs} s of faults, {:.1} s in all; faults {kinds:?}; \
         published {}, confirmed {}, nacked {}, unanswered {}; deliveries {} of {} messages, \
         {} flagged redelivered, {} duplicates ({} without redelivered); acks {}, {} confirmed \
         by {} quiet points; {} redeliveries after an unconfirmed ack ({} without redelivered)",
        t0.elapsed().as_secs_f64(),
        f.published,
        f.confirmed,
        f.nacked,
        f.unknown,
        f.deliveries,
        f.distinct,
        f.redelivered,
        f.duplicates,
        f.unflagged_duplicates,
        f.acks,
        f.confirmed_acks,
        f.quiet,
        f.after_ack,
        f.after_ack_unflagged
    );
    assert!(f.confirmed > 0, "nothing confirmed (seed {seed})");
    assert!(
        f.lost.is_empty(),
        "seed {seed}: {} confirmed messages never delivered: {:?}",
        f.lost.len(),
        &f.lost[..f.lost.len().min(10)]
    );
    assert!(
        f.out_of_order.is_empty(),
        "seed {seed}: {} order violations: {:#?}",
        f.out_of_order.len(),
        &f.out_of_order[..f.out_of_order.len().min(10)]
    );
    assert!(
        f.stuck.is_none(),
        "seed {seed}: the queue did not drain within 40 s of healing: {:?}",
        f.stuck
    );
    assert!(
        f.after_confirmed_ack.is_empty(),
        "seed {seed}: {} deliveries after a confirmed ack: {:#?}",
        f.after_confirmed_ack.len(),
        &f.after_confirmed_ack[..f.after_confirmed_ack.len().min(10)]
    );
}

/// The run: the cluster, the queue, the clients, `secs` of faults, healing and draining; the
/// checker's findings and the faults injected.
async fn run(seed: u64, secs: u64) -> (Findings, Vec<Kind>) {
    let c = Cluster::start().await;
    declare_quorum(&c.url(0), &c.http, Q, PATH).await;
    let t0 = Instant::now();
    let log = Arc::new(Checker::new(t0));
    let stop = Arc::new(tokio::sync::Notify::new());
    // Aborted when dropped, on every way out.
    let mut publishers = tokio::task::JoinSet::new();
    let mut others = tokio::task::JoinSet::new();
    for p in 0..PUBLISHERS {
        publishers.spawn(publisher(c.clone(), log.clone(), p + 1, stop.clone()));
    }
    for k in 0..CONSUMERS {
        others.spawn(consumer(c.clone(), log.clone(), k + 1));
    }
    others.spawn(probe(c.clone(), log.clone()));
    let until = Instant::now() + Duration::from_secs(secs);
    nemesis(c.clone(), log.clone(), Rng(seed), (t0, until)).await;
    // Heal: every link forwards, every process runs, a leader everyone agrees on.
    stop.notify_waiters();
    c.heal_all();
    while publishers.join_next().await.is_some() {}
    group_leader(&c.http, PATH, None).await;
    // Drain: every confirmed message delivered and the leader's replica empty (what it holds
    // but its queue does not serve would never drain).
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut stuck = None;
    loop {
        let undelivered = log.with(|l| {
            let seen: std::collections::HashSet<Id> = l.deliveries.iter().map(|d| d.id).collect();
            l.published
                .iter()
                .filter(|(id, p)| matches!(p.outcome, Outcome::Confirmed(_)) && !seen.contains(id))
                .count()
        });
        if undelivered == 0 && settled_everywhere(&c).await.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let mut shown = Vec::new();
            for p in c.http {
                let v = common::cluster::api(p, "GET", PATH, None).await;
                let v: Value = serde_json::from_slice(&v.body).unwrap_or(Value::Null);
                let keys = [
                    "leader",
                    "replica_messages",
                    "messages_ready",
                    "messages_unacknowledged",
                    "consumers",
                ];
                let node: Vec<String> = keys.iter().map(|k| format!("{k}={}", v[k])).collect();
                shown.push(node.join(" "));
            }
            stuck = Some(format!(
                "{undelivered} confirmed messages undelivered; the nodes show: {}",
                shown.join("; ")
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    others.abort_all();
    while others.join_next().await.is_some() {}
    let (mut findings, kinds) = log.with(|l| (check(l), l.kinds.clone()));
    findings.stuck = stuck;
    (findings, kinds)
}

/// The checker itself: each guarantee it asserts fails on a log that breaks it, and what
/// RabbitMQ allows (a redelivered message ahead of later ones, a redelivery after an
/// unconfirmed ack) passes.
#[test]
fn the_checker_flags_loss_reordering_and_redelivery_after_a_confirmed_ack() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let log = Checker::new(t0);
    log.with(|l| {
        for seq in 1..=4 {
            let p = Published {
                session: 1,
                at: at(seq),
                outcome: Outcome::Confirmed(at(5)),
            };
            l.published.insert((1, seq), p);
        }
        let delivered = |seq, consumer, ms, redelivered| Delivered {
            id: (1, seq),
            consumer,
            at: at(ms),
            redelivered,
        };
        // Consumer (1, 1): 2 before 1, both fresh — out of order.
        l.deliveries.push(delivered(2, (1, 1), 6, false));
        l.deliveries.push(delivered(1, (1, 1), 7, false));
        // Consumer (2, 1): 3, then 1 again flagged — allowed.
        l.deliveries.push(delivered(3, (2, 1), 8, false));
        l.deliveries.push(delivered(1, (2, 1), 9, true));
        l.acks.push(((1, 3), at(10)));
        // 2 acked and redelivered before any quiet point: at-least-once, counted.
        l.acks.push(((1, 2), at(11)));
        l.deliveries.push(delivered(2, (2, 3), 12, false));
        l.quiet.push((at(20), at(21)));
        // Another connection's 5, published after 1 was confirmed, before 1 — out of order;
        // its 6, published before 1 was confirmed, before 1 — allowed.
        for (seq, ms) in [(5, 40), (6, 3)] {
            let p = Published {
                session: 2,
                at: at(ms),
                outcome: Outcome::Unknown,
            };
            l.published.insert((1, seq), p);
        }
        l.deliveries.push(delivered(6, (3, 1), 41, false));
        l.deliveries.push(delivered(1, (3, 1), 42, false));
        l.deliveries.push(delivered(5, (3, 2), 43, false));
        l.deliveries.push(delivered(1, (3, 2), 44, false));
        // 3 again after its ack was confirmed at 21.
        l.deliveries.push(delivered(3, (2, 2), 30, true));
    });
    let f = log.with(|l| check(l));
    assert_eq!(f.lost, [(1, 4)]);
    assert_eq!(f.out_of_order.len(), 2, "{:?}", f.out_of_order);
    assert!(
        f.out_of_order[0].contains("consumer (1, 1)"),
        "{:?}",
        f.out_of_order
    );
    assert!(
        f.out_of_order[1].contains("consumer (3, 2)"),
        "{:?}",
        f.out_of_order
    );
    assert_eq!(f.after_confirmed_ack.len(), 1, "{:?}", f.after_confirmed_ack);
    assert!(f.after_confirmed_ack[0].starts_with("(1, 3)"));
    assert_eq!((f.after_ack, f.after_ack_unflagged), (1, 1));
    assert_eq!((f.confirmed, f.distinct, f.duplicates), (4, 5, 5));
}
