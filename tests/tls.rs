//! AMQPS (issue 11): a CA, a server certificate and client certificates generated in the test,
//! the broker's TLS listener, and
//! - a raw tokio-rustls client that runs the AMQP handshake with warren_codec, declares a
//!   queue, publishes and gets the message back over TLS (plain TCP keeps working beside it,
//!   and a client that does not trust the CA is refused);
//! - SASL EXTERNAL with client certificates (RabbitMQ's rabbitmq_auth_mechanism_ssl): offered
//!   only to TLS clients that presented a verified certificate, the user name is the subject's
//!   CN, unknown users and certificates from other CAs are refused;
//! - lapin over TLS (PLAIN and EXTERNAL), through `lapin::Connection::connector`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use common::pki::Pki;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_codec::frame::PROTOCOL_HEADER;
use warren_codec::methods::*;
use warren_codec::{
    FieldTable, FieldValue, Frame, Method, ShortStr, decode_frame, encode_basic_header, encode_body,
    encode_method,
};
use warren_server::config::CertLoginFrom;

impl Pki {
    /// A client certificate with this subject, signed by the CA.
    fn client(&self, subject: &[(DnType, &str)]) -> Identity {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // Not rcgen's default CN: exactly this subject, in this order.
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in subject {
            params.distinguished_name.push(t.clone(), *v);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        Identity {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }
}

struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn client_config(trust: Option<CertificateDer<'static>>, id: Option<&Identity>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = trust {
        roots.add(ca).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match id {
        Some(id) => b
            .with_client_auth_cert(vec![id.cert.clone()], id.key.clone_key())
            .unwrap(),
        None => b.with_no_client_auth(),
    })
}

/// A broker with a TLS listener using `p`'s server certificate and accepting client
/// certificates signed by `p`'s CA (the PEM files live in the returned directory).
async fn tls_broker(p: &Pki) -> (common::TestBroker, common::tempdir::Dir) {
    let dir = common::tempdir::Dir::new();
    let (cert, key, ca) = (
        dir.path.join("cert.pem"),
        dir.path.join("key.pem"),
        dir.path.join("ca.pem"),
    );
    std::fs::write(&cert, &p.cert_pem).unwrap();
    std::fs::write(&key, &p.key_pem).unwrap();
    std::fs::write(&ca, p.ca.pem()).unwrap();
    let b = common::start_with(|c| {
        c.tls_listen = "127.0.0.1:0".parse().unwrap();
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.tls_ca = Some(ca);
    })
    .await;
    (b, dir)
}

type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn tls_connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> std::io::Result<TlsStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    common::within(
        5,
        "TLS handshake",
        tokio_rustls::TlsConnector::from(config).connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
}

struct TlsClient {
    s: TlsStream,
    buf: BytesMut,
}

impl TlsClient {
    fn new(s: TlsStream) -> TlsClient {
        TlsClient {
            s,
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, ch: u16, m: impl Into<Method>) {
        let mut out = BytesMut::new();
        encode_method(&mut out, ch, &m.into());
        self.s.write_all(&out).await.unwrap();
    }

    /// The next frame; `None` on EOF or a TLS error (e.g. the server refused our certificate).
    async fn try_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = decode_frame(&mut self.buf, 0).unwrap() {
                return Some(f);
            }
            match common::within(5, "a frame over TLS", self.s.read_buf(&mut self.buf)).await {
                Ok(n) if n > 0 => {}
                _ => return None,
            }
        }
    }

    async fn frame(&mut self) -> Frame {
        self.try_frame().await.expect("EOF over TLS")
    }

    async fn method(&mut self) -> Method {
        loop {
            if let Frame::Method { method, .. } = self.frame().await {
                return method;
            }
        }
    }

    /// Sends the protocol header; returns the mechanisms of connection.start.
    async fn start(&mut self) -> String {
        self.s.write_all(&PROTOCOL_HEADER).await.unwrap();
        match self.method().await {
            Method::ConnectionStart(s) => String::from_utf8(s.mechanisms.to_vec()).unwrap(),
            other => panic!("expected connection.start, got {other:?}"),
        }
    }

    /// start-ok with `mechanism` (announcing authentication_failure_close), tune-ok, open
    /// `/`: `Err((code, text))` if the broker closes the connection instead.
    async fn login(&mut self, mechanism: &str, response: &'static [u8]) -> Result<(), (u16, String)> {
        let mut caps = FieldTable::new();
        caps.insert("authentication_failure_close", FieldValue::Bool(true));
        let mut props = FieldTable::new();
        props.insert("capabilities", FieldValue::Table(caps));
        self.send(
            0,
            ConnectionStartOk {
                client_properties: props,
                mechanism: ShortStr::from(mechanism),
                response: Bytes::from_static(response),
                locale: ShortStr::from("en_US"),
            },
        )
        .await;
        let t = match self.method().await {
            Method::ConnectionTune(t) => t,
            Method::ConnectionClose(c) => return Err(self.close_ok(c).await),
            other => panic!("expected tune, got {other:?}"),
        };
        self.send(
            0,
            ConnectionTuneOk {
                channel_max: t.channel_max,
                frame_max: t.frame_max,
                heartbeat: 0,
            },
        )
        .await;
        self.send(
            0,
            ConnectionOpen {
                virtual_host: ShortStr::from("/"),
                ..Default::default()
            },
        )
        .await;
        match self.method().await {
            Method::ConnectionOpenOk(_) => Ok(()),
            Method::ConnectionClose(c) => Err(self.close_ok(c).await),
            other => panic!("expected open-ok, got {other:?}"),
        }
    }

    /// Answers the broker's connection.close; returns its code and text.
    async fn close_ok(&mut self, c: ConnectionClose) -> (u16, String) {
        self.send(0, ConnectionCloseOk {}).await;
        (c.reply_code, c.reply_text.to_string())
    }

    /// Closes the connection cleanly.
    async fn close(mut self) {
        self.send(0, ConnectionClose::default()).await;
        assert!(matches!(self.method().await, Method::ConnectionCloseOk(_)));
    }
}

#[tokio::test]
async fn amqp_over_tls() {
    let p = Pki::new("warren test CA");
    let (b, _dir) = tls_broker(&p).await;
    let tls_addr = b.running.tls_addr.expect("TLS listener");
    let mut by = common::Bystander::new(&b).await;

    let s = tls_connect(tls_addr, client_config(Some(p.ca_der()), None))
        .await
        .expect("TLS handshake with the test CA");
    let mut c = TlsClient::new(s);
    assert_eq!(
        c.start().await,
        "PLAIN AMQPLAIN",
        "no EXTERNAL without a client certificate"
    );
    c.login("PLAIN", b"\0guest\0guest").await.expect("PLAIN over TLS");
    let frame_max = b.running.broker.config.frame_max;
    c.send(1, ChannelOpen::default()).await;
    assert!(matches!(c.method().await, Method::ChannelOpenOk(_)));
    c.send(
        1,
        QueueDeclare {
            queue: ShortStr::from("tls-q"),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(c.method().await, Method::QueueDeclareOk(_)));
    // A message larger than one frame, to cross TLS records.
    let body = vec![42u8; 300_000];
    let mut f = BytesMut::new();
    encode_method(
        &mut f,
        1,
        &BasicPublish {
            routing_key: ShortStr::from("tls-q"),
            ..Default::default()
        },
    );
    encode_basic_header(&mut f, 1, body.len() as u64, &Default::default());
    encode_body(&mut f, 1, &body, frame_max);
    c.s.write_all(&f).await.unwrap();
    common::wait_until(5, "message queued over TLS", || {
        common::counts(&b, "tls-q").0 == 1
    })
    .await;
    c.send(
        1,
        BasicGet {
            queue: ShortStr::from("tls-q"),
            no_ack: true,
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(c.method().await, Method::BasicGetOk(_)));
    let mut got = Vec::new();
    while got.len() < body.len() {
        match c.frame().await {
            Frame::Header { .. } => {}
            Frame::Body { body, .. } => got.extend_from_slice(&body),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, body);
    c.send(0, ConnectionClose::default()).await;
    assert!(matches!(c.method().await, Method::ConnectionCloseOk(_)));

    // A client that does not trust the broker's CA fails the handshake.
    let r = tls_connect(tls_addr, client_config(None, None)).await;
    assert!(r.is_err(), "untrusted certificate accepted");
    // Plain AMQP still works beside TLS.
    by.check().await;
    b.running.shutdown().await;
}

const LOGIN_REFUSED: &str = "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL. For details see the broker logfile.";
const EXTERNAL_INVALID: &str = "COMMAND_INVALID - invalid authentication mechanism 'EXTERNAL'";

#[tokio::test]
async fn external_login_with_client_certificates() {
    let p = Pki::new("warren test CA");
    let (b, _dir) = tls_broker(&p).await;
    let tls_addr = b.running.tls_addr.expect("TLS listener");
    // A user without a password (RabbitMQ's passwordless user) that may use `/`.
    b.running.broker.put_user(warren_server::auth::User {
        name: "cert-user".into(),
        password_hash: String::new(),
        tags: vec![],
    });
    b.running
        .broker
        .set_permission("cert-user", "/", warren_server::auth::Permission::all())
        .unwrap();
    let ca = p.ca_der();

    // CN of a known user: EXTERNAL is offered (after PLAIN and AMQPLAIN) and logs it in.
    let known = p.client(&[
        (DnType::CountryName, "GB"),
        (DnType::OrganizationName, "Warren Test"),
        (DnType::CommonName, "cert-user"),
    ]);
    let mut c = TlsClient::new(
        tls_connect(tls_addr, client_config(Some(ca.clone()), Some(&known)))
            .await
            .expect("handshake with a client certificate"),
    );
    assert_eq!(c.start().await, "PLAIN AMQPLAIN EXTERNAL");
    c.login("EXTERNAL", b"").await.expect("EXTERNAL login");
    assert!(
        b.running
            .broker
            .connections()
            .iter()
            .any(|x| x.info.lock().user == "cert-user"),
        "the connection runs as the certificate's CN"
    );
    c.send(1, ChannelOpen::default()).await;
    assert!(matches!(c.method().await, Method::ChannelOpenOk(_)));
    c.close().await;
    // The same certificate may still log in with a password as someone else.
    let mut c = TlsClient::new(
        tls_connect(tls_addr, client_config(Some(ca.clone()), Some(&known)))
            .await
            .unwrap(),
    );
    c.start().await;
    c.login("PLAIN", b"\0guest\0guest")
        .await
        .expect("PLAIN beside EXTERNAL");
    c.close().await;

    // The DN as RabbitMQ formats it, for ssl_cert_login_from = distinguished_name.
    assert_eq!(
        warren_server::tls::cert_login_name(&known.cert, CertLoginFrom::DistinguishedName).unwrap(),
        "CN=cert-user,O=Warren Test,C=GB"
    );
    assert_eq!(
        warren_server::tls::cert_login_name(&known.cert, CertLoginFrom::CommonName).unwrap(),
        "cert-user"
    );
    let odd = p.client(&[
        (DnType::CommonName, "a,b+c"),
        (DnType::OrganizationalUnitName, " x"),
    ]);
    assert_eq!(
        warren_server::tls::cert_login_name(&odd.cert, CertLoginFrom::DistinguishedName).unwrap(),
        "OU=\\ x,CN=a\\,b\\+c"
    );
    let nameless = p.client(&[(DnType::OrganizationName, "Warren Test")]);
    assert!(warren_server::tls::cert_login_name(&nameless.cert, CertLoginFrom::CommonName).is_err());

    // CN of no user: 403, RabbitMQ's login refusal.
    let unknown = p.client(&[(DnType::CommonName, "nobody")]);
    let mut c = TlsClient::new(
        tls_connect(tls_addr, client_config(Some(ca.clone()), Some(&unknown)))
            .await
            .unwrap(),
    );
    assert_eq!(c.start().await, "PLAIN AMQPLAIN EXTERNAL");
    let (code, text) = c.login("EXTERNAL", b"").await.err().expect("refused");
    assert_eq!((code, text.as_str()), (403, LOGIN_REFUSED));
    // A certificate without a CN: refused the same way.
    let mut c = TlsClient::new(
        tls_connect(tls_addr, client_config(Some(ca.clone()), Some(&nameless)))
            .await
            .unwrap(),
    );
    c.start().await;
    let (code, text) = c.login("EXTERNAL", b"").await.err().expect("refused");
    assert_eq!((code, text.as_str()), (403, LOGIN_REFUSED));

    // TLS without a client certificate: EXTERNAL is not offered, and asking for it is
    // RabbitMQ's 503 for a mechanism not offered on this socket.
    let mut c = TlsClient::new(
        tls_connect(tls_addr, client_config(Some(ca.clone()), None))
            .await
            .unwrap(),
    );
    assert_eq!(c.start().await, "PLAIN AMQPLAIN");
    let (code, text) = c.login("EXTERNAL", b"").await.err().expect("refused");
    assert_eq!((code, text.as_str()), (503, EXTERNAL_INVALID));

    // Plain TCP: the same.
    let mut r = common::raw::Raw::connect(b.running.amqp_addr).await;
    r.send(&PROTOCOL_HEADER).await;
    match r.next_method().await {
        Some((0, Method::ConnectionStart(s))) => assert_eq!(&s.mechanisms[..], b"PLAIN AMQPLAIN"),
        other => panic!("expected connection.start, got {other:?}"),
    }
    r.send_method(
        0,
        ConnectionStartOk {
            client_properties: FieldTable::new(),
            mechanism: ShortStr::from("EXTERNAL"),
            response: Bytes::new(),
            locale: ShortStr::from("en_US"),
        },
    )
    .await;
    let (code, text) = r.expect_connection_close().await;
    assert_eq!((code, text.as_str()), (503, EXTERNAL_INVALID));
    r.send_method(0, ConnectionCloseOk {}).await;

    // A certificate from another CA never gets to AMQP.
    let other = Pki::new("another CA").client(&[(DnType::CommonName, "cert-user")]);
    match tls_connect(tls_addr, client_config(Some(ca.clone()), Some(&other))).await {
        Err(_) => {}
        // TLS 1.3: the client finishes before the server checks its certificate; the server's
        // alert arrives on the first read.
        Ok(s) => {
            let mut c = TlsClient::new(s);
            let _ = c.s.write_all(&PROTOCOL_HEADER).await;
            assert!(
                c.try_frame().await.is_none(),
                "a foreign certificate was accepted"
            );
        }
    }
    b.running.shutdown().await;
}

/// lapin over TLS: lapin's own TLS features are off (see Cargo.toml), so the test gives it a
/// runtime whose "TCP stream" is a tokio-rustls stream and connects with
/// `Connection::connector`.
mod lapin_tls {
    use std::io::{self, Read, Write};
    use std::net::SocketAddr;
    use std::os::fd::{AsFd, AsRawFd};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use async_compat::Compat;
    use async_rs::traits::Reactor;
    use async_rs::util::RuntimeParts;
    use async_rs::{Runtime, Tokio};
    use futures_lite::Stream;
    use rustls_pki_types::ServerName;

    /// async-rs' tokio reactor, except that connecting means TCP + a TLS handshake.
    #[derive(Clone)]
    pub struct TlsReactor {
        tokio: Tokio,
        handle: tokio::runtime::Handle,
        connector: tokio_rustls::TlsConnector,
    }

    impl std::fmt::Debug for TlsReactor {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("TlsReactor")
        }
    }

    impl Reactor for TlsReactor {
        type TcpStream = Compat<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
        type Sleep = <Tokio as Reactor>::Sleep;

        fn register<H: Read + Write + AsFd + AsRawFd + Send + 'static>(
            &self,
            socket: H,
        ) -> io::Result<impl futures_lite::AsyncRead + futures_lite::AsyncWrite + Send + Unpin + 'static>
        {
            self.tokio.register(socket)
        }

        fn sleep(&self, dur: Duration) -> Self::Sleep {
            self.tokio.sleep(dur)
        }

        fn interval(&self, dur: Duration) -> impl Stream<Item = Instant> + Send + 'static {
            self.tokio.interval(dur)
        }

        fn tcp_connect_addr(
            &self,
            addr: SocketAddr,
        ) -> impl Future<Output = io::Result<Self::TcpStream>> + Send + 'static {
            let (handle, connector) = (self.handle.clone(), self.connector.clone());
            async move {
                // On the test's runtime, whichever executor polls this.
                handle
                    .spawn(async move {
                        let tcp = tokio::net::TcpStream::connect(addr).await?;
                        tcp.set_nodelay(true)?;
                        let name = ServerName::try_from("localhost").expect("literal");
                        Ok(Compat::new(connector.connect(name, tcp).await?))
                    })
                    .await
                    .map_err(io::Error::other)?
            }
        }
    }

    /// Connects lapin to `uri` (an `amqps://…@localhost:PORT/…` URI) over TLS at `addr`.
    pub async fn connect(
        uri: &str,
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> lapin::Result<lapin::Connection> {
        let reactor = TlsReactor {
            tokio: Tokio::current(),
            handle: tokio::runtime::Handle::current(),
            connector: tokio_rustls::TlsConnector::from(config),
        };
        let runtime = Runtime::new(RuntimeParts::new(Tokio::current(), reactor));
        let uri: lapin::uri::AMQPUri = uri.parse().map_err(io::Error::other)?;
        lapin::Connection::connector(
            uri,
            runtime,
            async move |_uri, rt| {
                Ok(lapin::tcp::AsyncTcpStream::Plain(
                    rt.tcp_connect_addr(addr).await?,
                ))
            },
            lapin::ConnectionProperties::default(),
        )
        .await
    }
}

#[tokio::test]
async fn lapin_over_tls() {
    use lapin::options::*;
    let p = Pki::new("warren test CA");
    let (b, _dir) = tls_broker(&p).await;
    let tls_addr = b.running.tls_addr.expect("TLS listener");
    let port = tls_addr.port();

    // PLAIN over TLS: declare, publish with confirms, consume.
    let conn = lapin_tls::connect(
        &format!("amqps://guest:guest@localhost:{port}/%2f"),
        tls_addr,
        client_config(Some(p.ca_der()), None),
    )
    .await
    .expect("lapin connects over TLS");
    let ch = conn.create_channel().await.unwrap();
    common::declare(&ch, "lapin-tls").await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for i in 0..50u32 {
        let confirm = ch
            .basic_publish(
                "".into(),
                "lapin-tls".into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                lapin::BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack());
    }
    let mut consumer = common::consume(&ch, "lapin-tls", "c").await;
    for i in 0..50u32 {
        let d = common::next(&mut consumer).await;
        assert_eq!(d.data, i.to_be_bytes());
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    conn.close(200, "bye".into()).await.unwrap();

    // EXTERNAL with a client certificate whose CN is guest (guest may connect from loopback).
    let id = p.client(&[(DnType::CommonName, "guest")]);
    let conn = lapin_tls::connect(
        &format!("amqps://localhost:{port}/%2f?auth_mechanism=external"),
        tls_addr,
        client_config(Some(p.ca_der()), Some(&id)),
    )
    .await
    .expect("lapin logs in with EXTERNAL");
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            "lapin-tls".into(),
            QueueDeclareOptions::default(),
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 0);
    assert!(
        b.running
            .broker
            .connections()
            .iter()
            .any(|x| x.info.lock().user == "guest")
    );
    conn.close(200, "bye".into()).await.unwrap();
    b.running.shutdown().await;
}
