//! AMQPS (issue 11): a self-signed CA and a server certificate generated in the test, the
//! broker's TLS listener, and a raw tokio-rustls client that runs the AMQP handshake with
//! warren_codec, declares a queue, publishes and gets the message back over TLS. Plain TCP
//! keeps working beside it, and a client that does not trust the CA is refused.

mod common;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_codec::frame::PROTOCOL_HEADER;
use warren_codec::methods::*;
use warren_codec::{
    FieldTable, Frame, Method, ShortStr, decode_frame, encode_basic_header, encode_body, encode_method,
};

struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "warren test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn client_config(trust: Option<CertificateDer<'static>>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = trust {
        roots.add(ca).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

struct TlsClient {
    s: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    buf: BytesMut,
}

impl TlsClient {
    async fn send(&mut self, ch: u16, m: impl Into<Method>) {
        let mut out = BytesMut::new();
        encode_method(&mut out, ch, &m.into());
        self.s.write_all(&out).await.unwrap();
    }

    async fn frame(&mut self) -> Frame {
        loop {
            if let Some(f) = decode_frame(&mut self.buf, 0).unwrap() {
                return f;
            }
            let n = common::within(5, "a frame over TLS", self.s.read_buf(&mut self.buf))
                .await
                .unwrap();
            assert!(n > 0, "EOF over TLS");
        }
    }

    async fn method(&mut self) -> Method {
        loop {
            if let Frame::Method { method, .. } = self.frame().await {
                return method;
            }
        }
    }
}

#[tokio::test]
async fn amqp_over_tls() {
    let p = pki();
    let dir = common::tempdir::Dir::new();
    let (cert, key, ca) = (
        dir.path.join("cert.pem"),
        dir.path.join("key.pem"),
        dir.path.join("ca.pem"),
    );
    std::fs::write(&cert, &p.cert_pem).unwrap();
    std::fs::write(&key, &p.key_pem).unwrap();
    std::fs::write(&ca, &p.ca_pem).unwrap();
    let b = common::start_with(|c| {
        c.tls_listen = "127.0.0.1:0".parse().unwrap();
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.tls_ca = Some(ca);
    })
    .await;
    let tls_addr = b.running.tls_addr.expect("TLS listener");
    let mut by = common::Bystander::new(&b).await;

    let connector = tokio_rustls::TlsConnector::from(client_config(Some(p.ca_der.clone())));
    let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    let s = common::within(
        5,
        "TLS handshake",
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .expect("TLS handshake with the test CA");
    let mut c = TlsClient {
        s,
        buf: BytesMut::new(),
    };
    c.s.write_all(&PROTOCOL_HEADER).await.unwrap();
    assert!(matches!(c.method().await, Method::ConnectionStart(_)));
    c.send(
        0,
        ConnectionStartOk {
            client_properties: FieldTable::new(),
            mechanism: ShortStr::from("PLAIN"),
            response: Bytes::from_static(b"\0guest\0guest"),
            locale: ShortStr::from("en_US"),
        },
    )
    .await;
    let Method::ConnectionTune(t) = c.method().await else {
        panic!("expected tune")
    };
    c.send(
        0,
        ConnectionTuneOk {
            channel_max: t.channel_max,
            frame_max: t.frame_max,
            heartbeat: 0,
        },
    )
    .await;
    c.send(
        0,
        ConnectionOpen {
            virtual_host: ShortStr::from("/"),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(c.method().await, Method::ConnectionOpenOk(_)));
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
        }
        .into(),
    );
    encode_basic_header(&mut f, 1, body.len() as u64, &Default::default());
    encode_body(&mut f, 1, &body, t.frame_max);
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
    let untrusting = tokio_rustls::TlsConnector::from(client_config(None));
    let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    let r = common::within(
        5,
        "TLS handshake",
        untrusting.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await;
    assert!(r.is_err(), "untrusted certificate accepted");
    // Plain AMQP still works beside TLS.
    by.check().await;
    b.running.shutdown().await;
}
