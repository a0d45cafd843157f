//! Shared helpers for end-to-end tests: an in-process broker on 127.0.0.1 with an ephemeral
//! port, lapin connections, and waiting on conditions with a deadline (never bare sleeps).

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use warren_server::{Config, RunningBroker};

pub mod cluster;
pub mod proxy;

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
        prometheus_listen: Some("127.0.0.1:0".parse().unwrap()),
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

/// A free loopback port, for a listener bound later (a broker started as its own process, a
/// cluster port other nodes are told before it listens). Taken below Linux's ephemeral range
/// (32768–60999), from a sequence of this test process, so the source port of a connection
/// made meanwhile (a node dialling a seed not yet up) cannot take it, as a port the kernel
/// handed out for `127.0.0.1:0` and released could be; checked bindable.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id();
    let _ = NEXT.compare_exchange(u32::MAX, start % SPAN, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `VmRSS` or `VmHWM` (peak) of a process from `/proc/PID/status`, in MB (0 if unreadable).
pub fn proc_mem_mb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Declares a durable queue with `args`.
pub async fn declare_durable(ch: &lapin::Channel, name: &str, args: lapin::types::FieldTable) {
    ch.queue_declare(
        name.into(),
        lapin::options::QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .unwrap();
}

/// The message count of queue `name` (a passive declare).
pub async fn message_count(ch: &lapin::Channel, name: &str) -> u32 {
    ch.queue_declare(
        name.into(),
        lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        lapin::types::FieldTable::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("passive declare {name}: {e}"))
    .message_count()
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

/// The live queue `name` in vhost `/` of the test broker, if it exists.
pub fn queue(b: &TestBroker, name: &str) -> Option<std::sync::Arc<warren_server::queue::Queue>> {
    b.running.broker.vhost("/").expect("vhost /").queue(name)
}

/// (ready, unacked, consumers) of queue `name` as the broker sees it.
pub fn counts(b: &TestBroker, name: &str) -> (u32, u32, u32) {
    let c = queue(b, name)
        .unwrap_or_else(|| panic!("queue {name} exists"))
        .counts();
    (c.ready, c.unacked, c.consumers)
}

/// A field table from pairs.
pub fn table(entries: Vec<(&str, lapin::types::AMQPValue)>) -> lapin::types::FieldTable {
    let mut t = lapin::types::FieldTable::default();
    for (k, v) in entries {
        t.insert(k.into(), v);
    }
    t
}

/// A long-string field value.
pub fn lstr(s: &str) -> lapin::types::AMQPValue {
    lapin::types::AMQPValue::LongString(s.into())
}

/// Publishes without waiting for a confirm (panics if lapin refuses to send).
pub async fn publish(ch: &lapin::Channel, exchange: &str, key: &str, body: &[u8]) {
    publish_props(ch, exchange, key, body, lapin::BasicProperties::default()).await
}

/// Publishes with properties without waiting for a confirm.
pub async fn publish_props(
    ch: &lapin::Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    props: lapin::BasicProperties,
) {
    let _ = ch
        .basic_publish(
            exchange.into(),
            key.into(),
            lapin::options::BasicPublishOptions::default(),
            body,
            props,
        )
        .await
        .expect("publish sent");
}

/// Declares a plain (non-durable) queue.
pub async fn declare(ch: &lapin::Channel, name: &str) -> lapin::Queue {
    ch.queue_declare(
        name.into(),
        lapin::options::QueueDeclareOptions::default(),
        lapin::types::FieldTable::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("declare {name}: {e}"))
}

/// Starts a consumer with manual acks.
pub async fn consume(ch: &lapin::Channel, queue: &str, tag: &str) -> lapin::Consumer {
    ch.basic_consume(
        queue.into(),
        tag.into(),
        lapin::options::BasicConsumeOptions::default(),
        lapin::types::FieldTable::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("consume {queue}: {e}"))
}

/// The next delivery of a consumer (fails after 5 s, on an error or on cancellation).
pub async fn next(consumer: &mut lapin::Consumer) -> lapin::message::Delivery {
    use futures_lite::StreamExt;
    within(5, "a delivery", consumer.next())
        .await
        .expect("consumer not cancelled")
        .expect("delivery without error")
}

/// A consumer on a fresh exclusive server-named queue of `ch`: its stream reports the
/// channel's (or connection's) closing error, which lapin otherwise only hands to the next
/// operation on the channel.
pub async fn watch(ch: &lapin::Channel) -> lapin::Consumer {
    let q = ch
        .queue_declare(
            "".into(),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("declare watch queue");
    ch.basic_consume(
        q.name().clone(),
        "watch".into(),
        lapin::options::BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        lapin::types::FieldTable::default(),
    )
    .await
    .expect("watch consumer")
}

/// Waits until the watched channel closes with an error; returns (reply code, reply text).
pub async fn closed_with(watch: &mut lapin::Consumer) -> (u16, String) {
    use futures_lite::StreamExt;
    loop {
        match within(5, "the channel to close with an error", watch.next()).await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                return (
                    reply_code(&e).unwrap_or_else(|| panic!("not a protocol error: {e:?}")),
                    reply_text(&e),
                );
            }
            None => panic!("consumer ended without an error"),
        }
    }
}

/// Asserts that `r` failed with a protocol error `code` whose text contains `text`.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(r: Result<T, lapin::Error>, code: u16, text: &str) {
    match r {
        Ok(v) => panic!("expected error {code}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(reply_code(&e), Some(code), "wrong error: {e:?}");
            let t = reply_text(&e);
            assert!(t.contains(text), "reply text {t:?} does not contain {text:?}");
        }
    }
}

/// A well-behaved client opened before something misbehaves, to show the broker still serves
/// everyone else afterwards.
pub struct Bystander {
    pub conn: Connection,
    pub ch: lapin::Channel,
    pub queue: String,
    pub consumer: lapin::Consumer,
    n: u32,
}

impl Bystander {
    /// Connects, declares a private queue and consumes from it.
    pub async fn new(b: &TestBroker) -> Bystander {
        let conn = b.connect().await;
        let ch = conn.create_channel().await.expect("channel");
        let q = ch
            .queue_declare(
                "".into(),
                lapin::options::QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("declare");
        let queue = q.name().to_string();
        ch.confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .expect("confirm.select");
        let consumer = consume(&ch, &queue, "bystander").await;
        let mut by = Bystander {
            conn,
            ch,
            queue,
            consumer,
            n: 0,
        };
        by.check().await;
        by
    }

    /// Publishes (confirmed) and consumes (acked) a few messages.
    pub async fn check(&mut self) {
        for _ in 0..3 {
            self.n += 1;
            let body = format!("ping-{}", self.n);
            let confirm = within(
                5,
                "bystander publish",
                self.ch.basic_publish(
                    "".into(),
                    self.queue.as_str().into(),
                    lapin::options::BasicPublishOptions::default(),
                    body.as_bytes(),
                    lapin::BasicProperties::default(),
                ),
            )
            .await
            .expect("bystander publish")
            .await
            .expect("bystander confirm");
            assert!(confirm.is_ack());
            let d = next(&mut self.consumer).await;
            assert_eq!(d.data, body.as_bytes());
            d.ack(lapin::options::BasicAckOptions::default())
                .await
                .expect("bystander ack");
        }
        assert!(self.conn.status().connected());
    }
}

pub mod raw {
    //! A hand-driven AMQP client over a raw socket, built on warren_codec's encoders.

    use std::net::SocketAddr;
    use std::time::Duration;

    use bytes::{Bytes, BytesMut};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use warren_codec::frame::PROTOCOL_HEADER;
    use warren_codec::methods::*;
    use warren_codec::{FieldTable, Frame, Method, ShortStr, decode_frame, encode_method};

    /// A raw client connection.
    pub struct Raw {
        pub stream: TcpStream,
        buf: BytesMut,
        /// frame_max the server proposed in connection.tune.
        pub frame_max: u32,
        /// Seconds to wait for each read from the broker before failing the test.
        pub read_timeout: u64,
    }

    impl Raw {
        /// Opens the TCP connection (nothing sent yet).
        pub async fn connect(addr: SocketAddr) -> Raw {
            Raw::connect_within(addr, 5).await
        }

        /// [`Raw::connect`] allowing `secs` for the connect and for each later read (for tests
        /// that open thousands of connections at once on a loaded machine).
        pub async fn connect_within(addr: SocketAddr, secs: u64) -> Raw {
            let stream = super::within(secs, "tcp connect", TcpStream::connect(addr))
                .await
                .expect("tcp connect");
            Raw {
                stream,
                buf: BytesMut::with_capacity(64 * 1024),
                frame_max: 0,
                read_timeout: secs,
            }
        }

        /// Connects and runs the whole handshake (PLAIN guest/guest, vhost `/`), negotiating
        /// `heartbeat` seconds.
        pub async fn handshake(addr: SocketAddr, heartbeat: u16) -> Raw {
            Raw::handshake_with(addr, heartbeat, None).await
        }

        /// [`Raw::handshake`] answering tune with `channel_max` (None: the server's proposal).
        pub async fn handshake_with(addr: SocketAddr, heartbeat: u16, channel_max: Option<u16>) -> Raw {
            Raw::handshake_within(addr, heartbeat, channel_max, 5).await
        }

        /// [`Raw::handshake_with`] allowing `secs` per read (see [`Raw::connect_within`]).
        pub async fn handshake_within(
            addr: SocketAddr,
            heartbeat: u16,
            channel_max: Option<u16>,
            secs: u64,
        ) -> Raw {
            let mut r = Raw::connect_within(addr, secs).await;
            r.send(&PROTOCOL_HEADER).await;
            match r.next_method().await {
                Some((0, Method::ConnectionStart(_))) => {}
                other => panic!("expected connection.start, got {other:?}"),
            }
            r.send_method(
                0,
                ConnectionStartOk {
                    client_properties: FieldTable::new(),
                    mechanism: ShortStr::from("PLAIN"),
                    response: Bytes::from_static(b"\0guest\0guest"),
                    locale: ShortStr::from("en_US"),
                },
            )
            .await;
            let tune = match r.next_method().await {
                Some((0, Method::ConnectionTune(t))) => t,
                other => panic!("expected connection.tune, got {other:?}"),
            };
            r.frame_max = tune.frame_max;
            r.send_method(
                0,
                ConnectionTuneOk {
                    channel_max: channel_max.unwrap_or(tune.channel_max),
                    frame_max: tune.frame_max,
                    heartbeat,
                },
            )
            .await;
            r.send_method(
                0,
                ConnectionOpen {
                    virtual_host: ShortStr::from("/"),
                    ..Default::default()
                },
            )
            .await;
            match r.next_method().await {
                Some((0, Method::ConnectionOpenOk(_))) => {}
                other => panic!("expected connection.open-ok, got {other:?}"),
            }
            r
        }

        /// Connects and logs in as `user`/`pass` (PLAIN) on `vhost`; `Err((code, text))` if the
        /// broker closes the connection during the handshake.
        pub async fn login(
            addr: SocketAddr,
            user: &str,
            pass: &str,
            vhost: &str,
        ) -> Result<Raw, (u16, String)> {
            let mut r = Raw::connect(addr).await;
            r.send(&PROTOCOL_HEADER).await;
            match r.next_method().await {
                Some((0, Method::ConnectionStart(_))) => {}
                other => panic!("expected connection.start, got {other:?}"),
            }
            let mut caps = FieldTable::new();
            caps.insert(
                "authentication_failure_close",
                warren_codec::FieldValue::Bool(true),
            );
            let mut props = FieldTable::new();
            props.insert("capabilities", warren_codec::FieldValue::Table(caps));
            r.send_method(
                0,
                ConnectionStartOk {
                    client_properties: props,
                    mechanism: ShortStr::from("PLAIN"),
                    response: Bytes::from(format!("\0{user}\0{pass}")),
                    locale: ShortStr::from("en_US"),
                },
            )
            .await;
            let tune = match r.next_method().await {
                Some((0, Method::ConnectionTune(t))) => t,
                Some((0, Method::ConnectionClose(c))) => {
                    return Err((c.reply_code, c.reply_text.to_string()));
                }
                other => panic!("expected connection.tune, got {other:?}"),
            };
            r.frame_max = tune.frame_max;
            r.send_method(
                0,
                ConnectionTuneOk {
                    channel_max: tune.channel_max,
                    frame_max: tune.frame_max,
                    heartbeat: 0,
                },
            )
            .await;
            r.send_method(
                0,
                ConnectionOpen {
                    virtual_host: ShortStr::from(vhost),
                    ..Default::default()
                },
            )
            .await;
            match r.next_method().await {
                Some((0, Method::ConnectionOpenOk(_))) => Ok(r),
                Some((0, Method::ConnectionClose(c))) => Err((c.reply_code, c.reply_text.to_string())),
                other => panic!("expected connection.open-ok, got {other:?}"),
            }
        }

        /// Opens channel `ch`.
        pub async fn open_channel(&mut self, ch: u16) {
            self.send_method(ch, ChannelOpen::default()).await;
            match self.next_method().await {
                Some((c, Method::ChannelOpenOk(_))) if c == ch => {}
                other => panic!("expected channel.open-ok, got {other:?}"),
            }
        }

        /// Writes raw bytes.
        pub async fn send(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).await.expect("write");
        }

        /// Writes one method frame.
        pub async fn send_method(&mut self, ch: u16, m: impl Into<Method>) {
            let mut out = BytesMut::new();
            encode_method(&mut out, ch, &m.into());
            self.send(&out).await;
        }

        /// Writes several method frames in one write (so the broker reads them in one batch).
        pub async fn send_methods(&mut self, ms: Vec<(u16, Method)>) {
            let mut out = BytesMut::new();
            for (ch, m) in &ms {
                encode_method(&mut out, *ch, m);
            }
            self.send(&out).await;
        }

        /// Reads raw bytes until `n` are buffered or EOF; returns what was buffered.
        pub async fn read_raw(&mut self, n: usize) -> Vec<u8> {
            while self.buf.len() < n {
                let r = super::within(
                    self.read_timeout,
                    "bytes from the broker",
                    self.stream.read_buf(&mut self.buf),
                )
                .await;
                match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            self.buf.split().to_vec()
        }

        /// The next frame, or `None` at EOF (fails after 5 s).
        pub async fn next_frame(&mut self) -> Option<Frame> {
            loop {
                if let Some(f) = decode_frame(&mut self.buf, 0).expect("broker sent a valid frame") {
                    return Some(f);
                }
                let r = super::within(
                    self.read_timeout,
                    "a frame from the broker",
                    self.stream.read_buf(&mut self.buf),
                )
                .await;
                match r {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        }

        /// The next method frame, skipping heartbeats; `None` at EOF.
        pub async fn next_method(&mut self) -> Option<(u16, Method)> {
            loop {
                match self.next_frame().await? {
                    Frame::Method { channel, method } => return Some((channel, method)),
                    Frame::Heartbeat { .. } => continue,
                    other => panic!("unexpected frame from broker: {other:?}"),
                }
            }
        }

        /// Expects connection.close; answers close-ok and expects the broker to close the
        /// socket. Returns (reply code, reply text).
        pub async fn expect_connection_close(&mut self) -> (u16, String) {
            loop {
                match self.next_method().await {
                    Some((0, Method::ConnectionClose(c))) => {
                        self.send_method(0, ConnectionCloseOk {}).await;
                        self.expect_eof(5).await;
                        return (c.reply_code, c.reply_text.to_string());
                    }
                    Some(_) => continue,
                    None => panic!("socket closed without connection.close"),
                }
            }
        }

        /// Expects channel.close on `ch`; answers close-ok. Returns (reply code, reply text).
        pub async fn expect_channel_close(&mut self, ch: u16) -> (u16, String) {
            loop {
                match self.next_method().await {
                    Some((c, Method::ChannelClose(m))) if c == ch => {
                        self.send_method(ch, ChannelCloseOk {}).await;
                        return (m.reply_code, m.reply_text.to_string());
                    }
                    Some((0, Method::ConnectionClose(c))) => {
                        panic!("connection closed instead: {} {}", c.reply_code, c.reply_text)
                    }
                    Some(_) => continue,
                    None => panic!("socket closed without channel.close"),
                }
            }
        }

        /// Expects the broker to close the socket within `secs`, ignoring whatever it sends.
        pub async fn expect_eof(&mut self, secs: u64) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
            loop {
                self.buf.clear();
                match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                    Err(_) => panic!("broker did not close the socket within {secs}s"),
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    Ok(Ok(_)) => {}
                }
            }
        }
    }
}

pub mod pki {
    //! A CA and a server certificate made at test time (rcgen, ring provider).
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use rustls_pki_types::CertificateDer;

    pub struct Pki {
        pub ca: rcgen::Certificate,
        pub ca_key: KeyPair,
        /// A server certificate for `localhost` and `127.0.0.1`, signed by the CA.
        pub cert_pem: String,
        pub key_pem: String,
    }

    impl Pki {
        pub fn new(ca_name: &str) -> Pki {
            let ca_key = KeyPair::generate().unwrap();
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca_params.distinguished_name.push(DnType::CommonName, ca_name);
            let ca = ca_params.self_signed(&ca_key).unwrap();
            let key = KeyPair::generate().unwrap();
            let params =
                CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            Pki {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
                ca,
                ca_key,
            }
        }

        pub fn ca_der(&self) -> CertificateDer<'static> {
            self.ca.der().clone()
        }

        /// A rustls server configuration with the server certificate (ring provider).
        pub fn server_config(&self) -> std::sync::Arc<rustls::ServerConfig> {
            use rustls_pki_types::pem::PemObject;
            let certs = vec![CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()];
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap();
            std::sync::Arc::new(config)
        }
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

/// Real broker processes: [`spawn_listening`] for a broker whose log a test reads, and [`Warren`],
/// the real `warren` binary as its own process (so its memory is measured apart from the
/// test's clients), on free loopback ports with its own data directory; killed on drop.
pub mod process {
    use std::io::{BufRead, BufReader};
    use std::net::SocketAddr;
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    /// Starts `bin` with `args` and `extra` (logging at info to stdout) and waits up to 60 s for
    /// a stdout line containing `ready`; later lines are drained in the background and their
    /// receiver returned.
    pub fn spawn_listening(
        bin: &str,
        args: &[&str],
        extra: &[&str],
        ready: &str,
    ) -> (Child, std::sync::mpsc::Receiver<String>) {
        let mut child = Command::new(bin)
            .args(args)
            .args(extra)
            .env("WARREN_LOG_LEVEL", "info")
            // Not RabbitMQ's fixed 15692: brokers of parallel tests would collide.
            .env("WARREN_PROMETHEUS_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn broker");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let needle = ready.to_owned();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains(&needle) {
                    let _ = ready_tx.send(());
                }
                let _ = tx.send(line);
            }
        });
        if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            panic!("broker never printed {ready:?}");
        }
        (child, rx)
    }

    /// A `warren` process on a data directory its caller owns (to restart on it, kill it,
    /// damage it), with its AMQP port; killed on drop, so a failing test never leaves it
    /// behind.
    pub struct Broker {
        /// The process (tests SIGKILL it).
        pub child: Child,
        /// Its AMQP port on 127.0.0.1.
        pub port: u16,
    }

    impl Broker {
        /// Starts `warren` on `data`, AMQP on `port`, management API on `http`, plus `extra`
        /// flags, and waits until it logs that it listens.
        pub fn spawn(data: &std::path::Path, port: u16, http: &str, extra: &[&str]) -> Broker {
            let amqp = format!("127.0.0.1:{port}");
            let data = data.to_str().expect("utf-8 data dir");
            let (child, _) = spawn_listening(
                env!("CARGO_BIN_EXE_warren"),
                &["--amqp-listen", &amqp, "--http-listen", http, "--data-dir", data],
                extra,
                &format!("listening on {amqp}"),
            );
            Broker { child, port }
        }

        /// `amqp://guest:guest@…/%2f`.
        pub fn url(&self) -> String {
            format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
        }
    }

    impl Drop for Broker {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// A running `warren` process.
    pub struct Warren {
        child: std::process::Child,
        /// Its process id (for `/proc/PID/…`).
        pub pid: u32,
        /// AMQP listener.
        pub addr: SocketAddr,
        /// Management HTTP listener port.
        pub http_port: u16,
        _data: super::tempdir::Dir,
    }

    impl Warren {
        /// Starts `warren` with `args` added to its listen flags and waits until it accepts.
        pub async fn start(args: &[&str]) -> Warren {
            let data = super::tempdir::Dir::new();
            let (port, http_port) = (super::free_port(), super::free_port());
            let child = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
                .args(["--amqp-listen", &format!("127.0.0.1:{port}")])
                .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
                .args(["--prometheus-listen", "127.0.0.1:0"])
                .arg("--data-dir")
                .arg(&data.path)
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn warren");
            let w = Warren {
                pid: child.id(),
                child,
                addr: format!("127.0.0.1:{port}").parse().unwrap(),
                http_port,
                _data: data,
            };
            super::within(60, "the broker to listen", async {
                while tokio::net::TcpStream::connect(w.addr).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await;
            w
        }

        /// `amqp://guest:guest@…/%2f`.
        pub fn url(&self) -> String {
            format!("amqp://guest:guest@{}/%2f", self.addr)
        }

        /// A management API request as guest.
        pub async fn api(&self, method: &str, path: &str) -> warren_server::http::client::Response {
            warren_server::http::client::request(
                method,
                &format!("http://127.0.0.1:{}{path}", self.http_port),
                Some(("guest", "guest")),
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
        }

        /// Resident memory now, in MB.
        pub fn rss_mb(&self) -> f64 {
            super::proc_mem_mb(self.pid, "VmRSS")
        }

        /// Stops the process.
        pub fn kill(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for Warren {
        fn drop(&mut self) {
            self.kill();
        }
    }
}
