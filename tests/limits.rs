//! Resource limits (issue 11): max connections (global and per user), max queues per vhost,
//! consumer timeout, frame_max negotiation, and bounded per-connection buffers for clients that
//! never read their socket.

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::raw::Raw;
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use warren_codec::methods::*;
use warren_codec::{Method, ShortStr, encode_basic_header, encode_body, encode_method};

#[tokio::test]
async fn max_connections_global_and_per_user() {
    let b = start_with(|c| c.max_connections = 3).await;
    let addr = b.running.amqp_addr;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(
            Raw::login(addr, "guest", "guest", "/")
                .await
                .expect("under the limit"),
        );
    }
    let (code, text) = Raw::login(addr, "guest", "guest", "/")
        .await
        .err()
        .expect("over the limit");
    assert_eq!(code, 530);
    assert_eq!(
        text,
        "NOT_ALLOWED - connection refused: node connection limit (3) is reached"
    );
    // Closing one makes room again.
    drop(open.pop());
    let mut again = None;
    for _ in 0..200 {
        if let Ok(r) = Raw::login(addr, "guest", "guest", "/").await {
            again = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a slot frees up when a connection closes");
    b.running.shutdown().await;

    let b = start_with(|c| c.max_connections_per_user = 2).await;
    let addr = b.running.amqp_addr;
    let _a = Raw::login(addr, "guest", "guest", "/").await.unwrap();
    let _b = Raw::login(addr, "guest", "guest", "/").await.unwrap();
    let (code, text) = Raw::login(addr, "guest", "guest", "/")
        .await
        .err()
        .expect("over the limit");
    assert_eq!(code, 530);
    assert_eq!(
        text,
        "NOT_ALLOWED - Connection refused for user 'guest': user connection limit (2) is reached"
    );
    b.running.shutdown().await;
}

#[tokio::test]
async fn max_queues_per_vhost() {
    let b = start_with(|c| c.max_queues_per_vhost = 2).await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "q1").await;
    declare(&ch, "q2").await;
    // Redeclaring an existing queue is fine at the limit.
    declare(&ch, "q1").await;
    let r = ch
        .queue_declare("q3".into(), Default::default(), FieldTable::default())
        .await;
    assert_code(
        r,
        406,
        "cannot declare queue 'q3': queue limit in vhost '/' (2) is reached",
    );
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete("q2".into(), Default::default()).await.unwrap();
    declare(&ch, "q3").await;
    b.running.shutdown().await;
}

/// The limit is the vhost's, whatever the door: the HTTP API and a definitions import are
/// refused past it as `queue.declare` is (they used to bypass it).
#[tokio::test]
async fn max_queues_per_vhost_holds_for_the_http_api_and_definitions_import() {
    use warren_server::http::client;
    let b = start_with(|c| c.max_queues_per_vhost = 2).await;
    let http = |method: &'static str, path: &str, body: Option<&str>| {
        let url = format!("http://{}{path}", b.running.http_addr);
        let body = body.map(|s| ("application/json", s.as_bytes().to_vec()));
        async move {
            client::request(method, &url, Some(("guest", "guest")), body)
                .await
                .unwrap()
        }
    };
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "q1").await;
    let r = http("PUT", "/api/queues/%2F/q2", Some(r#"{"durable":false}"#)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = http("PUT", "/api/queues/%2F/q3", Some(r#"{"durable":false}"#)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text()
            .contains("cannot declare queue 'q3': queue limit in vhost '/' (2) is reached"),
        "{}",
        r.text()
    );
    // An existing queue is still declarable at the limit.
    let r = http("PUT", "/api/queues/%2F/q1", Some(r#"{"durable":false}"#)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let defs = r#"{"queues":[
        {"name":"q2","vhost":"/","durable":false,"auto_delete":false,"arguments":{}},
        {"name":"d1","vhost":"/","durable":true,"auto_delete":false,"arguments":{}}]}"#;
    let r = http("POST", "/api/definitions", Some(defs)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("queue limit in vhost '/' (2) is reached"),
        "{}",
        r.text()
    );
    let names: Vec<String> = b
        .running
        .broker
        .vhost("/")
        .unwrap()
        .read_topology(|t| t.queues().map(|q| q.name.to_string()).collect());
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        !names.contains(&"q3".to_string()) && !names.contains(&"d1".to_string()),
        "{names:?}"
    );
    b.running.shutdown().await;
}

#[tokio::test]
async fn consumer_timeout_closes_the_channel_with_406() {
    let b = start_with(|c| c.consumer_timeout = Some(Duration::from_millis(1000))).await;
    let mut by = Bystander::new(&b).await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "slow").await;
    publish(&ch, "", "slow", b"m").await;
    let mut c = consume(&ch, "slow", "c").await;
    let d = next(&mut c).await;
    assert_eq!(d.data, b"m");
    let t0 = Instant::now();
    // Never acked: the channel is closed and the message goes back to the queue.
    let (code, text) = closed_with(&mut c).await;
    assert!(t0.elapsed() >= Duration::from_millis(500), "{:?}", t0.elapsed());
    assert_eq!(code, 406);
    assert_eq!(
        text,
        format!(
            "PRECONDITION_FAILED - delivery acknowledgement on channel {} timed out. Timeout value used: 1000 ms. \
             This timeout value can be configured, see consumers doc guide to learn more",
            ch.id()
        )
    );
    wait_until(5, "message requeued", || counts(&b, "slow") == (1, 0, 0)).await;
    // A consumer that acks in time is not affected.
    let ch2 = conn.create_channel().await.unwrap();
    let mut c2 = consume(&ch2, "slow", "c2").await;
    for _ in 0..3 {
        let d = next(&mut c2).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        d.ack(BasicAckOptions::default()).await.unwrap();
        publish(&ch2, "", "slow", b"again").await;
    }
    assert!(conn.status().connected());
    by.check().await;
}

#[tokio::test]
async fn frame_max_and_channel_max_are_negotiated_down() {
    let b = start_with(|c| {
        c.frame_max = 8192;
        c.channel_max = 4;
    })
    .await;
    let addr = b.running.amqp_addr;
    let mut r = Raw::handshake(addr, 0).await;
    assert_eq!(r.frame_max, 8192);
    for ch in 1..=4 {
        r.open_channel(ch).await;
    }
    r.send_method(5, ChannelOpen::default()).await;
    let (code, text) = r.expect_connection_close().await;
    assert_eq!(code, 530, "{text}");
    // A body split in frames of frame_max works; one frame over it is a 501.
    let mut r = Raw::handshake(addr, 0).await;
    r.open_channel(1).await;
    r.send_method(
        1,
        QueueDeclare {
            queue: ShortStr::from("fm"),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(
        r.next_method().await,
        Some((1, Method::QueueDeclareOk(_)))
    ));
    let mut f = BytesMut::new();
    encode_method(
        &mut f,
        1,
        &BasicPublish {
            routing_key: ShortStr::from("fm"),
            ..Default::default()
        },
    );
    encode_basic_header(&mut f, 1, 20_000, &Default::default());
    encode_body(&mut f, 1, &[1u8; 20_000], 8192);
    r.send(&f).await;
    wait_until(5, "20 kB message in 3 frames", || counts(&b, "fm").0 == 1).await;
    let mut f = BytesMut::new();
    encode_method(
        &mut f,
        1,
        &BasicPublish {
            routing_key: ShortStr::from("fm"),
            ..Default::default()
        },
    );
    encode_basic_header(&mut f, 1, 9000, &Default::default());
    encode_body(&mut f, 1, &[1u8; 9000], 0);
    r.send(&f).await;
    assert_eq!(r.expect_connection_close().await.0, 501);
    b.running.shutdown().await;
}

/// The RSS tests measure the whole test process: they run one at a time.
static RSS_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn rss_mb() -> f64 {
    warren_server::alarms::resident_memory() as f64 / 1e6
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_that_never_reads_does_not_grow_broker_memory() {
    let _one = RSS_LOCK.lock().await;
    let b = start().await;
    let mut by = Bystander::new(&b).await;
    // A no-ack consumer without prefetch that stops reading its socket.
    let mut r = Raw::handshake(b.running.amqp_addr, 0).await;
    r.open_channel(1).await;
    r.send_method(
        1,
        QueueDeclare {
            queue: ShortStr::from("flood"),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(
        r.next_method().await,
        Some((1, Method::QueueDeclareOk(_)))
    ));
    r.send_method(
        1,
        BasicConsume {
            queue: ShortStr::from("flood"),
            consumer_tag: ShortStr::from("c"),
            no_ack: true,
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(
        r.next_method().await,
        Some((1, Method::BasicConsumeOk(_)))
    ));

    const N: u32 = 500;
    const SIZE: usize = 100_000; // 50 MB in all
    let before = rss_mb();
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    let body = vec![7u8; SIZE];
    for _ in 0..N {
        ch.basic_publish(
            "".into(),
            "flood".into(),
            Default::default(),
            &body,
            Default::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    // Wait until the broker has stopped handing messages to the stuck consumer.
    let mut last = u32::MAX;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ready = counts(&b, "flood").0;
        if ready == last || Instant::now() > deadline {
            break;
        }
        last = ready;
    }
    let ready = counts(&b, "flood").0;
    let after = rss_mb();
    let handed = (N - ready) as usize * SIZE;
    println!(
        "never-reading consumer: {} of {N} messages left in the queue, {:.1} MB handed to its connection; \
         RSS {before:.1} MB -> {after:.1} MB (+{:.1} MB for 50 MB published)",
        ready,
        handed as f64 / 1e6,
        after - before
    );
    // What the connection took is bounded by its write backlog plus the kernel's socket buffers.
    assert!(
        handed < 24_000_000,
        "{handed} bytes handed to a client that does not read"
    );
    assert!(ready >= N / 2, "the queue holds the rest as ready messages");
    assert!(
        after - before < 50.0 + 80.0,
        "RSS grew by {:.1} MB",
        after - before
    );
    // The broker still serves everyone else, and the stuck client is still connected.
    by.check().await;
    assert_eq!(b.running.broker.connections().len(), 3);
    drop(r);
    wait_until(10, "stuck connection cleaned up", || {
        b.running.broker.connections().len() == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_its_replies_is_throttled_then_disconnected() {
    let _one = RSS_LOCK.lock().await;
    let b = start_with(|c| c.write_stall_timeout = Duration::from_secs(2)).await;
    let mut by = Bystander::new(&b).await;
    let mut r = Raw::handshake(b.running.amqp_addr, 0).await;
    r.open_channel(1).await;
    r.send_method(
        1,
        QueueDeclare {
            queue: ShortStr::from("amp"),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(
        r.next_method().await,
        Some((1, Method::QueueDeclareOk(_)))
    ));
    let mut f = BytesMut::new();
    encode_method(
        &mut f,
        1,
        &BasicPublish {
            routing_key: ShortStr::from("amp"),
            ..Default::default()
        },
    );
    encode_basic_header(&mut f, 1, 1_000_000, &Default::default());
    encode_body(&mut f, 1, &vec![3u8; 1_000_000], r.frame_max);
    r.send(&f).await;
    wait_until(5, "1 MB message queued", || counts(&b, "amp").0 == 1).await;
    // Each ~40-byte get + recover pair asks for the 1 MB message again: 2,000 of them would
    // be 2 GB of output if the broker kept reading a client that reads nothing.
    let before = rss_mb();
    let mut f = BytesMut::new();
    for _ in 0..2000 {
        encode_method(
            &mut f,
            1,
            &BasicGet {
                queue: ShortStr::from("amp"),
                no_ack: false,
                ..Default::default()
            },
        );
        encode_method(&mut f, 1, &BasicRecover { requeue: true });
    }
    let t0 = Instant::now();
    // The broker stops reading us, so this write may block: do it from a task.
    let (rd, mut wr) = r.stream.into_split();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = wr.write_all(&f).await;
        wr
    });
    let mut peak = 0f64;
    wait_until(15, "stuck client disconnected", || {
        peak = peak.max(rss_mb());
        b.running.broker.connections().len() == 1
    })
    .await;
    println!(
        "amplifying client disconnected after {:?}; RSS {before:.1} MB, peak {peak:.1} MB",
        t0.elapsed()
    );
    assert!(peak - before < 100.0, "RSS grew by {:.1} MB", peak - before);
    drop(rd);
    writer.abort();
    by.check().await;
    let _ = ShortStr::from("");
}
