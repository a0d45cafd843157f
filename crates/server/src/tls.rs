//! The AMQPS listener (issue 11): AMQP 0-9-1 over TLS on a second port (RabbitMQ's 5671),
//! with rustls. Enabled when `tls_cert` and `tls_key` (PEM files) are configured; with
//! `tls_ca`, clients may present certificates signed by that CA (verified when presented).
//! After the TLS handshake (bounded by the AMQP handshake timeout) the stream is split with
//! `tokio::io::split` and served by the same connection code as plain TCP.
//!
//! A client that presented a (verified) certificate is offered SASL EXTERNAL, RabbitMQ's
//! rabbitmq_auth_mechanism_ssl: the user name is the certificate subject's CN, or its whole
//! distinguished name with `ssl_cert_login_from = distinguished_name` ([`cert_login_name`]).
//! The PEM files are read, and the rustls configuration of inter-node TLS made, by
//! [`crate::pki`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::CertificateDer;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::broker::Broker;
use crate::config::{CertLoginFrom, Config};
use crate::pki::{add_ca_certificates, crypto_provider, read_identity};

/// Builds the rustls server configuration from the configured PEM files; `Ok(None)` when
/// TLS is not configured.
pub fn server_config(config: &Config) -> Result<Option<Arc<ServerConfig>>, String> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let (certs, key) = read_identity(cert, key)?;
    let provider = crypto_provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &config.tls_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            add_ca_certificates(&mut roots, ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| e.to_string())?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let sc = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not match: {e}"))?;
    Ok(Some(Arc::new(sc)))
}

/// Accepts TLS connections until `shutdown` turns true.
pub async fn serve(
    broker: Arc<Broker>,
    listener: tokio::net::TcpListener,
    tls: Arc<ServerConfig>,
    shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let mut stop = shutdown.clone();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let b = broker.clone();
                    let s = shutdown.clone();
                    let acceptor = acceptor.clone();
                    tasks.spawn(async move { handle(b, acceptor, stream, peer, s).await });
                }
                Err(e) => {
                    tracing::warn!("TLS accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

async fn handle(
    broker: Arc<Broker>,
    acceptor: TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let tls = match tokio::time::timeout(broker.config.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let cert_login = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| cert_login_name(c, broker.config.ssl_cert_login_from));
    let (rd, wr) = tokio::io::split(tls);
    crate::connection::handle_split(broker, rd, wr, peer, shutdown, cert_login).await
}

/// The user name an EXTERNAL login takes from a client certificate (already verified by the
/// TLS handshake), as RabbitMQ's `rabbit_ssl:peer_cert_auth_name`: the subject's common
/// names joined with `,`, or the subject as RabbitMQ formats a DN (RFC 4514 order, most
/// specific first: `CN=alice,O=Example,C=GB`). `Err` says why there is no name (logged;
/// the client sees the usual login refusal).
pub fn cert_login_name(cert: &CertificateDer<'_>, from: CertLoginFrom) -> Result<String, String> {
    let (_, x) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("cannot parse the client certificate: {e}"))?;
    let subject = x.subject();
    let name = match from {
        CertLoginFrom::CommonName => subject
            .iter_common_name()
            .map(|a| attribute_text(a).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(","),
        CertLoginFrom::DistinguishedName => {
            let rdns: Vec<String> = subject
                .iter_rdn()
                .map(|rdn| {
                    rdn.iter()
                        .map(|a| {
                            let oid = a.attr_type().to_id_string();
                            let key = DN_NAMES
                                .iter()
                                .find(|(o, _)| *o == oid)
                                .map_or(oid.as_str(), |(_, k)| k);
                            let value = match attribute_text(a) {
                                Some(v) => escape_rdn_value(&v),
                                None => format!("#{}", hex(a.attr_value().as_bytes())),
                            };
                            format!("{key}={value}")
                        })
                        .collect::<Vec<_>>()
                        .join("+")
                })
                .collect();
            rdns.into_iter().rev().collect::<Vec<_>>().join(",")
        }
    };
    if name.is_empty() {
        Err("no name found".into())
    } else {
        Ok(name)
    }
}

/// Attribute types RabbitMQ names in a formatted DN (`rabbit_cert_info:format_rdn`).
const DN_NAMES: [(&str, &str); 17] = [
    ("2.5.4.4", "SN"),
    ("2.5.4.42", "GIVENNAME"),
    ("2.5.4.43", "INITIALS"),
    ("2.5.4.44", "GENERATIONQUALIFIER"),
    ("2.5.4.3", "CN"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.12", "TITLE"),
    ("2.5.4.6", "C"),
    ("2.5.4.5", "SERIALNUMBER"),
    ("2.5.4.65", "PSEUDONYM"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("1.2.840.113549.1.9.1", "EMAILADDRESS"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

/// A string-typed attribute value (UTF8String, PrintableString, IA5String, …).
fn attribute_text(a: &x509_parser::x509::AttributeTypeAndValue<'_>) -> Option<String> {
    a.as_str().ok().map(str::to_string)
}

/// RabbitMQ's `escape_rdn_value`: `\` before `"+,;<>\`, a leading space or `#` and a trailing
/// space; other bytes outside printable ASCII as `\XX`.
fn escape_rdn_value(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = String::with_capacity(v.len());
    for (i, &b) in bytes.iter().enumerate() {
        let special = matches!(b, b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\')
            || (i == 0 && (b == b' ' || b == b'#'))
            || (i + 1 == bytes.len() && i > 0 && b == b' ');
        if special {
            out.push('\\');
            out.push(b as char);
        } else if !(32..126).contains(&b) {
            out.push_str(&format!("\\{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}
