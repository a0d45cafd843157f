//! Alert webhook delivery (issue 18): queue alert events ([`super::alerts`]) POSTed as JSON to
//! `--alert-webhook`, over plain HTTP or HTTPS, so Slack, PagerDuty, Alertmanager bridges and
//! any other `https://` receiver can be targeted.
//!
//! The client is hyper-util's (connection pooling, HTTP/1.1) behind hyper-rustls, with rustls'
//! `ring` provider as everywhere else in the broker ([`crate::pki::crypto_provider`]). Servers
//! are verified against the Mozilla root list (`webpki-roots`) plus, with
//! `--alert-webhook-ca FILE`, the CA certificates of a PEM bundle (a private CA).
//!
//! Each event is delivered by its own task, so a slow or dead receiver never holds up the alert
//! evaluator. An attempt is bounded by a connect timeout and a total timeout (request and
//! response); a failed attempt (connection error, timeout, 5xx, 408 or 429) is retried with
//! exponential backoff, up to [`RetryPolicy::attempts`] attempts. Other 4xx answers are final
//! (the receiver refused this payload; sending it again will not help). Credentials in the URL
//! (`https://user:pass@host/…`) are sent as basic auth and never logged.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::Config;

/// Timeouts and retries of a delivery.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (at least one).
    pub attempts: u32,
    /// Wait before the second attempt; doubled before each further one.
    pub initial_backoff: Duration,
    /// TCP connect timeout of one attempt (the TLS handshake counts toward `attempt_timeout`).
    pub connect_timeout: Duration,
    /// Total time of one attempt: connect, TLS, request and response.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(10),
        }
    }
}

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx at attempt `attempts`.
    Delivered {
        /// Attempts made.
        attempts: u32,
    },
    /// Given up after `attempts` attempts; `last` says why the last one failed.
    Failed {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

/// One attempt's failure, and whether another attempt may succeed.
struct AttemptError {
    retry: bool,
    msg: String,
}

/// The webhook endpoint and the client that posts to it.
pub struct Webhook {
    uri: Uri,
    /// The URL without credentials, for logs.
    shown: String,
    auth: Option<HeaderValue>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    policy: RetryPolicy,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.shown)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// The configured webhook (`Ok(None)` without `alert_webhook`); `Err` for a URL that is not
    /// `http://` or `https://` or an unreadable `alert_webhook_ca`, so the broker refuses to
    /// start rather than dropping every alert later.
    pub fn from_config(config: &Config) -> Result<Option<Arc<Webhook>>, String> {
        let Some(url) = &config.alert_webhook else {
            return Ok(None);
        };
        Webhook::new(url, config.alert_webhook_ca.as_deref(), RetryPolicy::default())
            .map(|w| Some(Arc::new(w)))
    }

    /// A webhook posting to `url`, trusting the public roots and the CAs in `ca` (PEM).
    pub fn new(url: &str, ca: Option<&Path>, policy: RetryPolicy) -> Result<Webhook, String> {
        let (uri, shown, auth) = parse_url(url)?;
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(ca) = ca {
            crate::pki::add_ca_certificates(&mut roots, ca).map_err(|e| format!("alert_webhook_ca: {e}"))?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(crate::pki::crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(policy.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Webhook {
            uri,
            shown,
            auth,
            client,
            policy: RetryPolicy {
                attempts: policy.attempts.max(1),
                ..policy
            },
        })
    }

    /// The URL, without credentials.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// Posts `body` (JSON), retrying as the policy says; logs the outcome.
    pub async fn deliver(&self, body: Bytes) -> Outcome {
        let mut backoff = self.policy.initial_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(body.clone()).await {
                Ok(()) => {
                    if attempt > 1 {
                        tracing::info!(url = %self.shown, attempt, "alert webhook delivered after retrying");
                    }
                    return Outcome::Delivered { attempts: attempt };
                }
                Err(e) if e.retry && attempt < self.policy.attempts => {
                    tracing::debug!(url = %self.shown, attempt, "alert webhook attempt failed, retrying in {backoff:?}: {}", e.msg);
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                }
                Err(e) => {
                    tracing::warn!(url = %self.shown, attempts = attempt, "alert webhook failed: {}", e.msg);
                    return Outcome::Failed {
                        attempts: attempt,
                        last: e.msg,
                    };
                }
            }
        }
    }

    async fn attempt(&self, body: Bytes) -> Result<(), AttemptError> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("warren/", env!("CARGO_PKG_VERSION")));
        if let Some(auth) = &self.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        let req = req.body(Full::new(body)).map_err(|e| AttemptError {
            retry: false,
            msg: format!("cannot build the request: {e}"),
        })?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| AttemptError {
                retry: true,
                msg: error_chain(&e),
            })?;
            let status = resp.status();
            // Read (a little of) the answer: it says why a receiver refused, and a fully read
            // response lets the connection go back to the pool.
            let text = match Limited::new(resp.into_body(), 1024).collect().await {
                Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
                Err(_) => String::new(),
            };
            Ok::<_, AttemptError>((status, text))
        };
        let (status, text) = tokio::time::timeout(self.policy.attempt_timeout, exchange)
            .await
            .map_err(|_| AttemptError {
                retry: true,
                msg: format!("no answer within {:?}", self.policy.attempt_timeout),
            })??;
        if status.is_success() {
            return Ok(());
        }
        Err(AttemptError {
            retry: retryable(status),
            msg: if text.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {text}")
            },
        })
    }
}

/// Whether an answer with this status may be followed by a successful retry.
fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// An error and its sources (hyper-util's errors say "client error (Connect)" and keep the
/// useful part, such as "connection refused" or the TLS alert, in the source chain).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// The request URI, the URL as logged (no credentials) and the basic-auth header of
/// credentials given in the URL.
fn parse_url(url: &str) -> Result<(Uri, String, Option<HeaderValue>), String> {
    let invalid = |why: &str| format!("invalid alert_webhook '{url}': {why}");
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("expected http://HOST[:PORT]/PATH or https://…"))?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(invalid("only http:// and https:// are supported"));
    }
    let path_at = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(path_at);
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let auth = match userinfo {
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let creds = format!("{}:{}", percent_decode(user), percent_decode(pass));
            let token = base64::engine::general_purpose::STANDARD.encode(creds);
            Some(HeaderValue::from_str(&format!("Basic {token}")).map_err(|e| invalid(&e.to_string()))?)
        }
        None => None,
    };
    let shown = format!("{scheme}://{host}{path}");
    let uri: Uri = shown.parse().map_err(|e| invalid(&format!("{e}")))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    Ok((uri, shown, auth))
}

/// Decodes `%XX` escapes (credentials in a URL); anything malformed is kept as is.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn webhook_urls() {
        let (uri, shown, auth) = parse_url("https://hooks.example.com/services/T/B?x=1").unwrap();
        assert_eq!(uri.scheme_str(), Some("https"));
        assert_eq!(uri.host(), Some("hooks.example.com"));
        assert_eq!(uri.path_and_query().unwrap().as_str(), "/services/T/B?x=1");
        assert_eq!(shown, "https://hooks.example.com/services/T/B?x=1");
        assert!(auth.is_none());
        let (uri, shown, auth) = parse_url("http://bot:s%40cret@127.0.0.1:9000/warren").unwrap();
        assert_eq!(uri.port_u16(), Some(9000));
        assert_eq!(shown, "http://127.0.0.1:9000/warren");
        // base64("bot:s@cret")
        assert_eq!(auth.unwrap(), "Basic Ym90OnNAY3JldA==");
        assert_eq!(parse_url("http://example").unwrap().0.path(), "/");
        for bad in [
            "ftp://x/",
            "example.com/hook",
            "https:///path",
            "http://user@/x",
            "http://a b/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert!(retryable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(!retryable(StatusCode::BAD_REQUEST));
        assert!(!retryable(StatusCode::NOT_FOUND));
    }

    #[test]
    fn webhook_ca_must_be_readable() {
        let e = Webhook::new(
            "https://127.0.0.1:1/",
            Some(Path::new("/nonexistent/warren-ca.pem")),
            RetryPolicy::default(),
        )
        .unwrap_err();
        assert!(e.contains("alert_webhook_ca"), "{e}");
    }

    /// A receiver answering each connection with the next status of `statuses` (the last one
    /// repeated); sends each request's body on the channel.
    async fn receiver(statuses: Vec<u16>) -> (String, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            for i in 0.. {
                let Ok((mut s, _)) = l.accept().await else { return };
                let status = statuses[i.min(statuses.len() - 1)];
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                let body = loop {
                    let n = s.read(&mut tmp).await.unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break Some(buf[end + 4..end + 4 + len].to_vec());
                    }
                };
                let reply =
                    format!("HTTP/1.1 {status} X\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope");
                s.write_all(reply.as_bytes()).await.ok();
                if let Some(b) = body {
                    let _ = tx.send(b);
                }
            }
        });
        (format!("http://{addr}/hook"), rx)
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(10),
            ..RetryPolicy::default()
        }
    }

    #[tokio::test]
    async fn webhook_retries_server_errors_then_delivers() {
        let (url, mut rx) = receiver(vec![500, 503, 200]).await;
        let w = Webhook::new(&url, None, quick()).unwrap();
        let out = w.deliver(Bytes::from_static(b"{\"a\":1}")).await;
        assert_eq!(out, Outcome::Delivered { attempts: 3 });
        for _ in 0..3 {
            assert_eq!(rx.recv().await.unwrap(), b"{\"a\":1}");
        }
    }

    #[tokio::test]
    async fn webhook_gives_up() {
        let (url, mut rx) = receiver(vec![500]).await;
        let w = Webhook::new(&url, None, quick()).unwrap();
        let out = w.deliver(Bytes::from_static(b"{}")).await;
        assert_eq!(
            out,
            Outcome::Failed {
                attempts: 3,
                last: "HTTP 500 Internal Server Error: nope".into()
            }
        );
        // A refusal of the payload is final.
        let (url, mut rx2) = receiver(vec![400, 200]).await;
        let w = Webhook::new(&url, None, quick()).unwrap();
        let out = w.deliver(Bytes::from_static(b"{}")).await;
        assert!(matches!(out, Outcome::Failed { attempts: 1, .. }), "{out:?}");
        assert!(rx2.recv().await.is_some());
        drop(rx.try_recv());
        // Nobody listening: connection errors are retried, then reported.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let w = Webhook::new(&format!("http://127.0.0.1:{port}/"), None, quick()).unwrap();
        match w.deliver(Bytes::from_static(b"{}")).await {
            Outcome::Failed { attempts: 3, last } => assert!(last.contains("onnect"), "{last}"),
            other => panic!("{other:?}"),
        }
    }
}
