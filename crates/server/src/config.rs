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
    /// Management HTTP listener address [default: 127.0.0.1:15672]
    #[arg(long, env = "WARREN_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
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
    /// Seconds a client has to finish the AMQP handshake [default: 10]
    #[arg(long, env = "WARREN_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: Option<u64>,
    /// URL (http://host:port/path) that queue alerts are POSTed to as JSON
    #[arg(long, env = "WARREN_ALERT_WEBHOOK")]
    pub alert_webhook: Option<String>,
}

/// The same settings as a TOML file (`amqp_listen = "0.0.0.0:5672"` …).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    amqp_listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    http_listen: Option<SocketAddr>,
    log_level: Option<String>,
    heartbeat: Option<u16>,
    frame_max: Option<u32>,
    channel_max: Option<u16>,
    max_message_size: Option<u64>,
    default_user: Option<String>,
    default_pass: Option<String>,
    guest_anywhere: Option<bool>,
    handshake_timeout: Option<u64>,
    alert_webhook: Option<String>,
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
    /// Handshake timeout.
    pub handshake_timeout: Duration,
    /// Webhook URL for queue alerts (plain HTTP).
    pub alert_webhook: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            amqp_listen: "0.0.0.0:5672".parse().expect("literal"),
            data_dir: PathBuf::from("./data"),
            http_listen: "127.0.0.1:15672".parse().expect("literal"),
            log_level: "info".into(),
            heartbeat: 60,
            frame_max: 131_072,
            channel_max: 2047,
            max_message_size: 128 * 1024 * 1024,
            default_user: "guest".into(),
            default_pass: "guest".into(),
            guest_anywhere: false,
            handshake_timeout: Duration::from_secs(10),
            alert_webhook: None,
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
        Ok(Config {
            amqp_listen: cli.amqp_listen.or(file.amqp_listen).unwrap_or(d.amqp_listen),
            data_dir: cli.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
            http_listen: cli.http_listen.or(file.http_listen).unwrap_or(d.http_listen),
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
            handshake_timeout: cli
                .handshake_timeout
                .or(file.handshake_timeout)
                .map(Duration::from_secs)
                .unwrap_or(d.handshake_timeout),
            alert_webhook: cli.alert_webhook.or(file.alert_webhook),
        })
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
        std::fs::write(&path, "bogus = 1\n").unwrap();
        let cli = Cli::parse_from(["warren", "--config", path.to_str().unwrap()]);
        assert!(Config::from_cli(cli).is_err());
    }
}
