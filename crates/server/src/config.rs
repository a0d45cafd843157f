//! Broker configuration: command-line flags, `WARREN_<NAME>` environment variables and an
//! optional TOML file (`--config`), in that order of precedence, over RabbitMQ's defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// Command-line flags (each also readable from `WARREN_<NAME>`).
#[derive(Debug, Parser, Default)]
#[command(
    name = "warren",
    version,
    about = "Warren: an AMQP 0-9-1 message broker, a drop-in for RabbitMQ"
)]
pub struct Cli {
    /// AMQP listener address [default: 0.0.0.0:5672]
    #[arg(long, env = "WARREN_AMQP_LISTEN")]
    pub amqp_listen: Option<SocketAddr>,
    /// Data directory [default: ./data]
    #[arg(long, env = "WARREN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Check this data directory offline (it must not be in use), report damage, change
    /// nothing, and exit: 0 clean, 1 problems found, 2 cannot check
    #[arg(long, value_name = "DIR")]
    pub check_data_dir: Option<PathBuf>,
    /// Management HTTP listener address [default: 127.0.0.1:15672]
    #[arg(long, env = "WARREN_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Prometheus listener (RabbitMQ's rabbitmq_prometheus port: `/metrics`, `/metrics/per-object`, `/metrics/detailed`, no authentication); `off` or empty disables it [default: 127.0.0.1:15692]
    #[arg(long, env = "WARREN_PROMETHEUS_LISTEN")]
    pub prometheus_listen: Option<String>,
    /// TOML configuration file
    #[arg(long, env = "WARREN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax) [default: info]
    #[arg(long, env = "WARREN_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Heartbeat interval proposed to clients, seconds (0 disables) [default: 60]
    #[arg(long, env = "WARREN_HEARTBEAT")]
    pub heartbeat: Option<u16>,
    /// Largest frame accepted, bytes [default: 131072]
    #[arg(long, env = "WARREN_FRAME_MAX")]
    pub frame_max: Option<u32>,
    /// Highest channel number [default: 2047]
    #[arg(long, env = "WARREN_CHANNEL_MAX")]
    pub channel_max: Option<u16>,
    /// Largest message body accepted, bytes [default: 134217728]
    #[arg(long, env = "WARREN_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<u64>,
    /// Default user created on first start [default: guest]
    #[arg(long, env = "WARREN_DEFAULT_USER")]
    pub default_user: Option<String>,
    /// Default user's password [default: guest]
    #[arg(long, env = "WARREN_DEFAULT_PASS")]
    pub default_pass: Option<String>,
    /// Let `guest` log in from any address, not only loopback
    #[arg(long, env = "WARREN_GUEST_ANYWHERE")]
    pub guest_anywhere: Option<bool>,
    /// Serve `/metrics` without authentication (as RabbitMQ's Prometheus plugin on its own port); otherwise it needs a `monitoring` or `administrator` user [default: false]
    #[arg(long, env = "WARREN_METRICS_PUBLIC")]
    pub metrics_public: Option<bool>,
    /// Seconds a client has to finish the AMQP handshake [default: 10]
    #[arg(long, env = "WARREN_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: Option<u64>,
    /// URL (http:// or https://host:port/path) that queue alerts are POSTed to as JSON
    #[arg(long, env = "WARREN_ALERT_WEBHOOK")]
    pub alert_webhook: Option<String>,
    /// PEM CA bundle trusted for https:// alert webhooks, besides the built-in public roots
    #[arg(long, env = "WARREN_ALERT_WEBHOOK_CA", value_name = "FILE")]
    pub alert_webhook_ca: Option<PathBuf>,
    /// Memory alarm threshold as a fraction of RAM (RabbitMQ's vm_memory_high_watermark) [default: 0.4]
    #[arg(long, env = "WARREN_MEMORY_HIGH_WATERMARK")]
    pub memory_high_watermark: Option<f64>,
    /// Memory alarm threshold in bytes (overrides the fraction)
    #[arg(long, env = "WARREN_MEMORY_LIMIT")]
    pub memory_limit: Option<u64>,
    /// Disk alarm when free space under the data dir drops below this many bytes [default: 50000000]
    #[arg(long, env = "WARREN_DISK_FREE_LIMIT")]
    pub disk_free_limit: Option<u64>,
    /// Most client connections at once, 0 = unlimited [default: 0]
    #[arg(long, env = "WARREN_MAX_CONNECTIONS")]
    pub max_connections: Option<u32>,
    /// Most connections of one user at once, 0 = unlimited [default: 0]
    #[arg(long, env = "WARREN_MAX_CONNECTIONS_PER_USER")]
    pub max_connections_per_user: Option<u32>,
    /// Most queues in one vhost, 0 = unlimited [default: 0]
    #[arg(long, env = "WARREN_MAX_QUEUES_PER_VHOST")]
    pub max_queues_per_vhost: Option<u32>,
    /// A delivery unacked this long closes its channel with 406 (RabbitMQ's consumer_timeout), 0 = never [default: 1800000]
    #[arg(long, env = "WARREN_CONSUMER_TIMEOUT_MS")]
    pub consumer_timeout_ms: Option<u64>,
    /// Seconds a client may leave the broker's output to it unread past the hard cap before it is disconnected [default: 30]
    #[arg(long, env = "WARREN_WRITE_STALL_TIMEOUT")]
    pub write_stall_timeout: Option<u64>,
    /// AMQPS (TLS) listener address, used when --tls-cert and --tls-key are set [default: 0.0.0.0:5671]
    #[arg(long, env = "WARREN_TLS_LISTEN")]
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain of the TLS listener
    #[arg(long, env = "WARREN_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the TLS listener
    #[arg(long, env = "WARREN_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: when set, TLS clients may present certificates signed by it (EXTERNAL)
    #[arg(long, env = "WARREN_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// User name of an EXTERNAL (client certificate) login: the subject's CN or its full DN (RabbitMQ's ssl_cert_login_from) [default: common_name]
    #[arg(long, env = "WARREN_SSL_CERT_LOGIN_FROM", value_enum)]
    pub ssl_cert_login_from: Option<CertLoginFrom>,
    /// This node's name, unique in a cluster; shown by the management API and Prometheus [default: warren@<hostname>]
    #[arg(long, env = "WARREN_NODE_NAME")]
    pub node_name: Option<String>,
    /// Inter-node (cluster) listener; giving it or --cluster-seeds turns clustering on. Without either no cluster port is bound [default when clustering: 0.0.0.0:25672]
    #[arg(long, env = "WARREN_CLUSTER_LISTEN", value_name = "HOST:PORT")]
    pub cluster_listen: Option<String>,
    /// Cluster addresses of the other initial members, comma-separated (turns clustering on)
    #[arg(long, env = "WARREN_CLUSTER_SEEDS", value_name = "HOST:PORT,...")]
    pub cluster_seeds: Option<String>,
    /// Shared secret authenticating cluster nodes to each other (RabbitMQ's Erlang cookie); required when clustering
    #[arg(long, env = "WARREN_CLUSTER_SECRET")]
    pub cluster_secret: Option<String>,
    /// File holding the cluster secret (trailing whitespace ignored), instead of --cluster-secret
    #[arg(long, env = "WARREN_CLUSTER_SECRET_FILE", value_name = "FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// How long a definitions change (a declaration through AMQP or the management API, a user …) waits for a majority of the cluster to commit it before it fails (AMQP: 541 INTERNAL_ERROR, HTTP: 503), in milliseconds [default: 10000]
    #[arg(long, env = "WARREN_CLUSTER_OPERATION_TIMEOUT", value_name = "MS")]
    pub cluster_operation_timeout: Option<u64>,
    /// Inter-node traffic over mutual TLS with the node's --tls-cert/--tls-key, peers verified against --tls-ca (required then) [default: true when --tls-cert and --tls-key are set]
    #[arg(long, env = "WARREN_CLUSTER_TLS", value_name = "BOOL")]
    pub cluster_tls: Option<bool>,
    /// Name every peer's certificate must carry (a DNS SAN) under inter-node TLS, instead of the host of the address the peer is dialled at (an IP address then needs an IP SAN)
    #[arg(long, env = "WARREN_CLUSTER_TLS_SERVER_NAME", value_name = "NAME")]
    pub cluster_tls_server_name: Option<String>,
    /// Testing only: short Raft timeouts (elections in under a second, proposals give up after 2 s)
    #[arg(long, env = "WARREN_CLUSTER_FAST_TIMEOUTS", hide = true)]
    pub cluster_fast_timeouts: Option<bool>,
    /// Testing only: `PEER=VIA,…` — dial VIA whenever the peer at PEER is dialled (fault tests
    /// put a TCP proxy there to cut links between `warren` processes)
    #[arg(
        long,
        env = "WARREN_CLUSTER_DIAL_VIA",
        hide = true,
        value_name = "HOST:PORT=HOST:PORT,..."
    )]
    pub cluster_dial_via: Option<String>,
}

/// Which part of a TLS client certificate's subject an EXTERNAL login takes as the user name
/// (RabbitMQ's `ssl_cert_login_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertLoginFrom {
    /// The subject's common name (CN); several CNs are joined with `,`, as RabbitMQ does.
    #[default]
    #[value(name = "common_name")]
    CommonName,
    /// The whole subject as an RFC 4514 string (`CN=alice,O=Example,C=GB`), as RabbitMQ
    /// formats it.
    #[value(name = "distinguished_name")]
    DistinguishedName,
}

/// The same settings as a TOML file (`amqp_listen = "0.0.0.0:5672"` …).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    amqp_listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    http_listen: Option<SocketAddr>,
    prometheus_listen: Option<String>,
    log_level: Option<String>,
    heartbeat: Option<u16>,
    frame_max: Option<u32>,
    channel_max: Option<u16>,
    max_message_size: Option<u64>,
    default_user: Option<String>,
    default_pass: Option<String>,
    guest_anywhere: Option<bool>,
    metrics_public: Option<bool>,
    handshake_timeout: Option<u64>,
    alert_webhook: Option<String>,
    alert_webhook_ca: Option<PathBuf>,
    memory_high_watermark: Option<f64>,
    memory_limit: Option<u64>,
    disk_free_limit: Option<u64>,
    max_connections: Option<u32>,
    max_connections_per_user: Option<u32>,
    max_queues_per_vhost: Option<u32>,
    consumer_timeout_ms: Option<u64>,
    write_stall_timeout: Option<u64>,
    tls_listen: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    ssl_cert_login_from: Option<CertLoginFrom>,
    node_name: Option<String>,
    cluster_listen: Option<String>,
    cluster_seeds: Option<String>,
    cluster_secret: Option<String>,
    cluster_secret_file: Option<PathBuf>,
    cluster_operation_timeout: Option<u64>,
    cluster_tls: Option<bool>,
    cluster_tls_server_name: Option<String>,
}

/// Effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// AMQP listener.
    pub amqp_listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Management HTTP listener.
    pub http_listen: SocketAddr,
    /// Prometheus listener (None: disabled).
    pub prometheus_listen: Option<SocketAddr>,
    /// Log filter.
    pub log_level: String,
    /// Proposed heartbeat (s).
    pub heartbeat: u16,
    /// frame_max.
    pub frame_max: u32,
    /// channel_max.
    pub channel_max: u16,
    /// Largest body.
    pub max_message_size: u64,
    /// Default user.
    pub default_user: String,
    /// Default password.
    pub default_pass: String,
    /// Whether `guest` may log in from non-loopback addresses.
    pub guest_anywhere: bool,
    /// `/metrics` without authentication (otherwise `monitoring` or `administrator`).
    pub metrics_public: bool,
    /// Handshake timeout.
    pub handshake_timeout: Duration,
    /// Webhook URL for queue alerts (`http://` or `https://`).
    pub alert_webhook: Option<String>,
    /// Extra CA (PEM) trusted for an `https://` alert webhook.
    pub alert_webhook_ca: Option<PathBuf>,
    /// Memory alarm threshold as a fraction of RAM.
    pub memory_high_watermark: f64,
    /// Memory alarm threshold in bytes (overrides the fraction).
    pub memory_limit: Option<u64>,
    /// Disk alarm threshold (free bytes).
    pub disk_free_limit: u64,
    /// Most client connections at once (0 = unlimited).
    pub max_connections: u32,
    /// Most connections of one user at once (0 = unlimited).
    pub max_connections_per_user: u32,
    /// Most queues per vhost (0 = unlimited).
    pub max_queues_per_vhost: u32,
    /// RabbitMQ's `consumer_timeout` (None = never).
    pub consumer_timeout: Option<Duration>,
    /// How long the output to a client may stay over the hard cap before it is disconnected.
    pub write_stall_timeout: Duration,
    /// AMQPS listener (used when `tls_cert` and `tls_key` are set).
    pub tls_listen: SocketAddr,
    /// PEM certificate chain.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle for client certificates.
    pub tls_ca: Option<PathBuf>,
    /// The user name of an EXTERNAL login.
    pub ssl_cert_login_from: CertLoginFrom,
    /// This node's name (`warren@<hostname>` by default): the management API's and
    /// Prometheus' node, and the node's identity in a cluster.
    pub node_name: String,
    /// The cluster listener; `None`: clustering is off (no cluster port, no Raft).
    pub cluster_listen: Option<String>,
    /// The other initial members' cluster addresses.
    pub cluster_seeds: Vec<String>,
    /// The cluster secret (required when `cluster_listen` is set).
    pub cluster_secret: Option<String>,
    /// Inter-node TLS: `None` means on exactly when `tls_cert` and `tls_key` are set
    /// ([`Config::cluster_tls_on`]).
    pub cluster_tls: Option<bool>,
    /// The name peers' certificates are verified against under inter-node TLS; `None`: the
    /// host of the address dialled.
    pub cluster_tls_server_name: Option<String>,
    /// Raft timing (tests shorten it; `--cluster-fast-timeouts`).
    pub cluster_timeouts: warren_cluster::Timeouts,
    /// Testing only (no flag): dial the second address whenever a peer at the first is
    /// dialled (partition tests put a TCP proxy there).
    pub cluster_dial_via: Vec<(String, String)>,
    /// The filesystem of the message store (tests inject `warren_store::FaultyFs`; `None` = the
    /// real one). Not a flag.
    pub store_fs: Option<std::sync::Arc<dyn warren_store::FileSystem>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            amqp_listen: "0.0.0.0:5672".parse().expect("literal"),
            data_dir: PathBuf::from("./data"),
            http_listen: "127.0.0.1:15672".parse().expect("literal"),
            prometheus_listen: Some("127.0.0.1:15692".parse().expect("literal")),
            log_level: "info".into(),
            heartbeat: 60,
            frame_max: 131_072,
            channel_max: 2047,
            max_message_size: 128 * 1024 * 1024,
            default_user: "guest".into(),
            default_pass: "guest".into(),
            guest_anywhere: false,
            metrics_public: false,
            handshake_timeout: Duration::from_secs(10),
            alert_webhook: None,
            alert_webhook_ca: None,
            memory_high_watermark: 0.4,
            memory_limit: None,
            disk_free_limit: 50_000_000,
            max_connections: 0,
            max_connections_per_user: 0,
            max_queues_per_vhost: 0,
            consumer_timeout: Some(Duration::from_millis(1_800_000)),
            write_stall_timeout: Duration::from_secs(30),
            tls_listen: "0.0.0.0:5671".parse().expect("literal"),
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            ssl_cert_login_from: CertLoginFrom::CommonName,
            node_name: default_node_name(),
            cluster_listen: None,
            cluster_seeds: Vec::new(),
            cluster_secret: None,
            cluster_tls: None,
            cluster_tls_server_name: None,
            cluster_timeouts: warren_cluster::Timeouts::default(),
            cluster_dial_via: Vec::new(),
            store_fs: None,
        }
    }
}

impl Config {
    /// Merges flags/env over the file over the defaults.
    pub fn from_cli(cli: Cli) -> Result<Config, String> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text).map_err(|e| format!("invalid {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let d = Config::default();
        let cluster_seeds: Vec<String> = cli
            .cluster_seeds
            .or(file.cluster_seeds)
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let cluster_listen = cli.cluster_listen.or(file.cluster_listen);
        let cluster_listen = match cluster_listen {
            Some(l) => Some(l),
            None if !cluster_seeds.is_empty() => Some(DEFAULT_CLUSTER_LISTEN.to_string()),
            None => None,
        };
        let cluster_secret = match (
            cli.cluster_secret.or(file.cluster_secret),
            cli.cluster_secret_file.or(file.cluster_secret_file),
        ) {
            (Some(s), _) => Some(s),
            (None, Some(path)) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read cluster secret file {}: {e}", path.display()))?
                    .trim_end()
                    .to_string(),
            ),
            (None, None) => None,
        };
        let cluster_dial_via = match cli.cluster_dial_via.as_deref() {
            Some(list) => parse_dial_via(list)?,
            None => Vec::new(),
        };
        let mut cluster_timeouts = if cli.cluster_fast_timeouts.unwrap_or(false) {
            fast_cluster_timeouts()
        } else {
            d.cluster_timeouts.clone()
        };
        if let Some(ms) = cli.cluster_operation_timeout.or(file.cluster_operation_timeout) {
            if ms == 0 {
                return Err("cluster_operation_timeout must be at least 1 ms".into());
            }
            cluster_timeouts.propose = Duration::from_millis(ms);
        }
        let config = Config {
            amqp_listen: cli.amqp_listen.or(file.amqp_listen).unwrap_or(d.amqp_listen),
            data_dir: cli.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
            http_listen: cli.http_listen.or(file.http_listen).unwrap_or(d.http_listen),
            prometheus_listen: match cli.prometheus_listen.or(file.prometheus_listen) {
                Some(v) => parse_optional_listen("prometheus_listen", &v)?,
                None => d.prometheus_listen,
            },
            log_level: cli.log_level.or(file.log_level).unwrap_or(d.log_level),
            heartbeat: cli.heartbeat.or(file.heartbeat).unwrap_or(d.heartbeat),
            frame_max: cli.frame_max.or(file.frame_max).unwrap_or(d.frame_max).max(4096),
            channel_max: cli.channel_max.or(file.channel_max).unwrap_or(d.channel_max),
            max_message_size: cli
                .max_message_size
                .or(file.max_message_size)
                .unwrap_or(d.max_message_size),
            default_user: cli.default_user.or(file.default_user).unwrap_or(d.default_user),
            default_pass: cli.default_pass.or(file.default_pass).unwrap_or(d.default_pass),
            guest_anywhere: cli
                .guest_anywhere
                .or(file.guest_anywhere)
                .unwrap_or(d.guest_anywhere),
            metrics_public: cli
                .metrics_public
                .or(file.metrics_public)
                .unwrap_or(d.metrics_public),
            handshake_timeout: cli
                .handshake_timeout
                .or(file.handshake_timeout)
                .map(Duration::from_secs)
                .unwrap_or(d.handshake_timeout),
            alert_webhook: cli.alert_webhook.or(file.alert_webhook),
            alert_webhook_ca: cli.alert_webhook_ca.or(file.alert_webhook_ca),
            memory_high_watermark: cli
                .memory_high_watermark
                .or(file.memory_high_watermark)
                .unwrap_or(d.memory_high_watermark),
            memory_limit: cli.memory_limit.or(file.memory_limit),
            disk_free_limit: cli
                .disk_free_limit
                .or(file.disk_free_limit)
                .unwrap_or(d.disk_free_limit),
            max_connections: cli
                .max_connections
                .or(file.max_connections)
                .unwrap_or(d.max_connections),
            max_connections_per_user: cli
                .max_connections_per_user
                .or(file.max_connections_per_user)
                .unwrap_or(d.max_connections_per_user),
            max_queues_per_vhost: cli
                .max_queues_per_vhost
                .or(file.max_queues_per_vhost)
                .unwrap_or(d.max_queues_per_vhost),
            consumer_timeout: match cli.consumer_timeout_ms.or(file.consumer_timeout_ms) {
                Some(0) => None,
                Some(ms) => Some(Duration::from_millis(ms)),
                None => d.consumer_timeout,
            },
            write_stall_timeout: cli
                .write_stall_timeout
                .or(file.write_stall_timeout)
                .map(Duration::from_secs)
                .unwrap_or(d.write_stall_timeout),
            tls_listen: cli.tls_listen.or(file.tls_listen).unwrap_or(d.tls_listen),
            tls_cert: cli.tls_cert.or(file.tls_cert),
            tls_key: cli.tls_key.or(file.tls_key),
            tls_ca: cli.tls_ca.or(file.tls_ca),
            ssl_cert_login_from: cli
                .ssl_cert_login_from
                .or(file.ssl_cert_login_from)
                .unwrap_or(d.ssl_cert_login_from),
            node_name: cli.node_name.or(file.node_name).unwrap_or(d.node_name),
            cluster_listen,
            cluster_seeds,
            cluster_secret,
            cluster_tls: cli.cluster_tls.or(file.cluster_tls),
            cluster_tls_server_name: cli.cluster_tls_server_name.or(file.cluster_tls_server_name),
            cluster_timeouts,
            cluster_dial_via,
            store_fs: None,
        };
        config.check_cluster()?;
        Ok(config)
    }

    /// Whether this node runs the cluster layer (`--cluster-listen` or `--cluster-seeds`).
    pub fn clustering(&self) -> bool {
        self.cluster_listen.is_some()
    }

    /// Whether inter-node traffic runs over TLS: clustering is on, and `--cluster-tls` says so
    /// or (by default) the node has a TLS certificate and key.
    pub fn cluster_tls_on(&self) -> bool {
        self.clustering()
            && self
                .cluster_tls
                .unwrap_or(self.tls_cert.is_some() && self.tls_key.is_some())
    }

    /// Refuses a clustering configuration without a secret, or with an empty node name, or
    /// inter-node TLS without a certificate, key and CA to verify peers with.
    pub fn check_cluster(&self) -> Result<(), String> {
        if self.cluster_tls_on() {
            if self.tls_cert.is_none() || self.tls_key.is_none() {
                return Err(
                    "--cluster-tls needs the node's certificate and key: --tls-cert and --tls-key".into(),
                );
            }
            if self.tls_ca.is_none() {
                return Err(
                    "inter-node TLS (on by default with --tls-cert and --tls-key when clustering) \
                     verifies peers against a CA: give --tls-ca, or turn it off with --cluster-tls false"
                        .into(),
                );
            }
        }
        if self.node_name.trim().is_empty() {
            return Err("node_name must not be empty".into());
        }
        if self.clustering() && self.cluster_secret.as_deref().unwrap_or("").is_empty() {
            return Err(
                "clustering (--cluster-listen or --cluster-seeds) needs a shared secret: \
                 --cluster-secret or --cluster-secret-file (WARREN_CLUSTER_SECRET)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// RabbitMQ's inter-node (distribution) port, Warren's cluster listener when clustering is on
/// and no `--cluster-listen` is given.
pub const DEFAULT_CLUSTER_LISTEN: &str = "0.0.0.0:25672";

/// `warren@<hostname>`: the host name from the kernel (`/proc/sys/kernel/hostname`), else
/// `$HOSTNAME`, else `localhost`.
pub fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".to_string());
    format!("warren@{host}")
}

/// `--cluster-dial-via`'s `PEER=VIA,…` pairs.
fn parse_dial_via(list: &str) -> Result<Vec<(String, String)>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((peer, via)) if !peer.is_empty() && !via.is_empty() => {
                Ok((peer.to_string(), via.to_string()))
            }
            _ => Err(format!(
                "invalid --cluster-dial-via entry {pair:?}: expected PEER=VIA"
            )),
        })
        .collect()
}

/// The short Raft timing of `--cluster-fast-timeouts` (tests on loopback): heartbeats every
/// 50 ms, elections after 300–600 ms of silence, proposals given up (503) after 2 s.
pub fn fast_cluster_timeouts() -> warren_cluster::Timeouts {
    warren_cluster::Timeouts {
        heartbeat: Duration::from_millis(50),
        election_min: Duration::from_millis(300),
        election_max: Duration::from_millis(600),
        rpc: Duration::from_millis(500),
        connect: Duration::from_millis(500),
        propose: Duration::from_secs(2),
        retry: Duration::from_millis(100),
    }
}

/// A listen address that may be turned off: `off` or empty disables it.
fn parse_optional_listen(what: &str, v: &str) -> Result<Option<SocketAddr>, String> {
    match v.trim() {
        "" | "off" => Ok(None),
        a => a
            .parse()
            .map(Some)
            .map_err(|e| format!("invalid {what} '{a}': {e} (HOST:PORT, or off)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("warren-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("warren.toml");
        std::fs::write(&path, "heartbeat = 5\nframe_max = 65536\n").unwrap();
        let cli = Cli::parse_from(["warren", "--config", path.to_str().unwrap(), "--heartbeat", "7"]);
        let c = Config::from_cli(cli).unwrap();
        assert_eq!(c.heartbeat, 7);
        assert_eq!(c.frame_max, 65536);
        assert_eq!(c.channel_max, 2047);
        assert_eq!(c.amqp_listen.port(), 5672);
        std::fs::write(&path, "ssl_cert_login_from = \"distinguished_name\"\n").unwrap();
        let cli = Cli::parse_from(["warren", "--config", path.to_str().unwrap()]);
        assert_eq!(
            Config::from_cli(cli).unwrap().ssl_cert_login_from,
            CertLoginFrom::DistinguishedName
        );
        let cli = Cli::parse_from(["warren", "--ssl-cert-login-from", "common_name"]);
        assert_eq!(
            Config::from_cli(cli).unwrap().ssl_cert_login_from,
            CertLoginFrom::CommonName
        );
        assert_eq!(c.prometheus_listen, Some("127.0.0.1:15692".parse().unwrap()));
        let cli = Cli::parse_from(["warren", "--prometheus-listen", "off"]);
        assert_eq!(Config::from_cli(cli).unwrap().prometheus_listen, None);
        let cli = Cli::parse_from(["warren", "--prometheus-listen", "0.0.0.0:9419"]);
        assert_eq!(
            Config::from_cli(cli).unwrap().prometheus_listen,
            Some("0.0.0.0:9419".parse().unwrap())
        );
        std::fs::write(&path, "prometheus_listen = \"\"\n").unwrap();
        let cli = Cli::parse_from(["warren", "--config", path.to_str().unwrap()]);
        assert_eq!(Config::from_cli(cli).unwrap().prometheus_listen, None);
        let cli = Cli::parse_from(["warren", "--prometheus-listen", "nowhere"]);
        assert!(Config::from_cli(cli).is_err());
        std::fs::write(&path, "alert_webhook_ca = \"/etc/warren/hooks-ca.pem\"\n").unwrap();
        let cli = Cli::parse_from(["warren", "--config", path.to_str().unwrap()]);
        assert_eq!(
            Config::from_cli(cli).unwrap().alert_webhook_ca,
            Some(PathBuf::from("/etc/warren/hooks-ca.pem"))
        );
        let cli = Cli::parse_from(["warren", "--alert-webhook-ca", "/tmp/ca.pem"]);
        assert_eq!(
            Config::from_cli(cli).unwrap().alert_webhook_ca,
            Some(PathBuf::from("/tmp/ca.pem"))
        );
        // Clustering is off without cluster flags; seeds alone turn it on at RabbitMQ's 25672;
        // it needs a secret (flag, file or TOML).
        assert!(!c.clustering());
        assert!(c.node_name.starts_with("warren@"));
        let cli = Cli::parse_from(["warren", "--cluster-seeds", "a:25672, b:25672"]);
        assert!(Config::from_cli(cli).unwrap_err().contains("cluster-secret"));
        std::fs::write(dir.join("secret"), "s3cret\n").unwrap();
        let secret_file = dir.join("secret");
        let cli = Cli::parse_from([
            "warren",
            "--cluster-seeds",
            "a:25672, b:25672",
            "--cluster-secret-file",
            secret_file.to_str().unwrap(),
            "--node-name",
            "n1@a",
        ]);
        let c = Config::from_cli(cli).unwrap();
        assert!(c.clustering());
        assert_eq!(c.cluster_listen.as_deref(), Some(DEFAULT_CLUSTER_LISTEN));
        assert_eq!(c.cluster_seeds, ["a:25672", "b:25672"]);
        assert_eq!(c.cluster_secret.as_deref(), Some("s3cret"));
        assert_eq!(c.node_name, "n1@a");
        assert!(c.cluster_dial_via.is_empty());
        let via = |v: &str| Cli::parse_from(["warren", "--cluster-secret", "s", "--cluster-dial-via", v]);
        let c = Config::from_cli(via("a:1=127.0.0.1:9, b:2=127.0.0.1:8")).unwrap();
        assert_eq!(
            c.cluster_dial_via,
            [
                ("a:1".to_string(), "127.0.0.1:9".to_string()),
                ("b:2".into(), "127.0.0.1:8".into())
            ]
        );
        assert!(Config::from_cli(via("a:1")).unwrap_err().contains("PEER=VIA"));
        std::fs::write(
            &path,
            "node_name = \"n2@b\"\ncluster_listen = \"127.0.0.1:25000\"\ncluster_secret = \"x\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["warren", "--config", path.to_str().unwrap()]);
        let c = Config::from_cli(cli).unwrap();
        assert_eq!(c.cluster_listen.as_deref(), Some("127.0.0.1:25000"));
        assert!(c.cluster_seeds.is_empty());
        assert_eq!(c.node_name, "n2@b");
        std::fs::write(&path, "bogus = 1\n").unwrap();
        let cli = Cli::parse_from(["warren", "--config", path.to_str().unwrap()]);
        assert!(Config::from_cli(cli).is_err());
    }

    #[test]
    fn inter_node_tls_is_on_with_a_certificate_needs_a_ca_and_can_be_turned_off() {
        let cluster = [
            "warren",
            "--cluster-listen",
            "127.0.0.1:0",
            "--cluster-secret",
            "s",
        ];
        let with = |extra: &[&str]| {
            let args: Vec<&str> = cluster.iter().chain(extra).copied().collect();
            Config::from_cli(Cli::parse_from(args))
        };
        let cert = ["--tls-cert", "c.pem", "--tls-key", "k.pem"];
        assert!(!with(&[]).unwrap().cluster_tls_on());
        // A certificate turns it on, and then a CA is required to verify peers.
        let e = with(&cert).unwrap_err();
        assert!(e.contains("--tls-ca") && e.contains("--cluster-tls false"), "{e}");
        let mut full: Vec<&str> = cert.to_vec();
        full.extend(["--tls-ca", "ca.pem"]);
        let c = with(&full).unwrap();
        assert!(c.cluster_tls_on());
        assert_eq!(c.cluster_tls_server_name, None);
        full.extend(["--cluster-tls-server-name", "warren.internal"]);
        assert_eq!(
            with(&full).unwrap().cluster_tls_server_name.as_deref(),
            Some("warren.internal")
        );
        // Off explicitly: AMQPS without a CA and plain inter-node links.
        let mut off: Vec<&str> = cert.to_vec();
        off.extend(["--cluster-tls", "false"]);
        assert!(!with(&off).unwrap().cluster_tls_on());
        // On explicitly without a certificate is refused.
        let e = with(&["--cluster-tls", "true"]).unwrap_err();
        assert!(e.contains("--tls-cert"), "{e}");
        // Without clustering the setting is moot.
        let c = Config::from_cli(Cli::parse_from(["warren", "--tls-cert", "c", "--tls-key", "k"])).unwrap();
        assert!(!c.cluster_tls_on());
    }
}
