//! Command-line flags (in the spirit of RabbitMQ's PerfTest) and the topology they imply:
//! queue names, which queue each producer and consumer uses, routing keys and bindings.

use clap::{Parser, ValueEnum};

use crate::uri::AmqpUri;

/// Exchange type the producers publish through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeType {
    /// The default exchange (or a named direct exchange): routing key = queue name.
    Direct,
    /// Every message to every queue.
    Fanout,
    /// Topic exchange with `--bindings` patterns spread over the queues.
    Topic,
}

/// How a rate-limited producer waits between messages (`--pacing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pacing {
    /// Woken by a thread ticking every `--pace-us` (writes what fell due since the last tick).
    Tick,
    /// Yield to the runtime until the next message is due (evenly spaced writes).
    Spin,
    /// Sleep on tokio's 1 ms timer (bursts of what fell due since the last tick).
    Timer,
}

/// `warren-perf` flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "warren-perf",
    version,
    about = "PerfTest-style AMQP 0-9-1 load generator (lean client on warren-codec)"
)]
pub struct PerfConfig {
    /// Broker URI: amqp://user:pass@host:port/vhost
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub uri: String,
    /// Broker URI for the producers' connections (default --uri). With --consumer-uri, a
    /// cluster's cross-node path: queues declared through --uri (their home), published to
    /// on one node, consumed on another
    #[arg(long)]
    pub producer_uri: Option<String>,
    /// Broker URI for the consumers' connections (default --uri)
    #[arg(long)]
    pub consumer_uri: Option<String>,
    /// Declare quorum queues (`x-queue-type: quorum`, durable), as PerfTest's --quorum-queue
    #[arg(long)]
    pub quorum_queue: bool,
    /// Producers, one connection each
    #[arg(short = 'x', long, default_value_t = 1)]
    pub producers: usize,
    /// Consumers, one connection each (consumer i reads queue i mod --queues)
    #[arg(short = 'y', long, default_value_t = 1)]
    pub consumers: usize,
    /// Queue name pattern; `%d` is replaced by the queue index (from 1)
    #[arg(long, default_value = "perf-%d")]
    pub queue_pattern: String,
    /// Number of queues
    #[arg(long, default_value_t = 1)]
    pub queues: usize,
    /// Message body size in bytes (at least 16: timestamp, producer id, sequence number)
    #[arg(short = 's', long, default_value_t = 16)]
    pub size: usize,
    /// Publish rate per producer, msg/s (0 = unlimited)
    #[arg(short = 'r', long, default_value_t = 0.0)]
    pub rate: f64,
    /// How a rate-limited producer (1,000 msg/s and up) waits for its next message: `tick`
    /// (a thread of its own wakes it every --pace-us, so each write carries what fell due
    /// since the last tick), `spin` (yield to the runtime until the next message is due: one
    /// message a write, evenly spaced, at the cost of a busy core, which a shared core
    /// punishes) or `timer` (tokio's 1 ms timer: a burst of rate/1000 messages a write, whose
    /// own queueing counts in the latency). Below 1,000 msg/s all use the timer.
    #[arg(long, value_enum, default_value_t = Pacing::Tick)]
    pub pacing: Pacing,
    /// With `--pacing tick`: microseconds between ticks
    #[arg(long, default_value_t = 50)]
    pub pace_us: u64,
    /// Outstanding publisher confirms per producer (0 = no confirms)
    #[arg(short = 'c', long, default_value_t = 0)]
    pub confirm: u64,
    /// Publish with delivery-mode 2
    #[arg(long)]
    pub persistent: bool,
    /// Declare the queues (and exchange) durable
    #[arg(long)]
    pub durable: bool,
    /// Consume with no-ack (auto-ack); otherwise acks are manual
    #[arg(short = 'a', long)]
    pub auto_ack: bool,
    /// basic.qos prefetch count per consumer (manual acks; 0 = unlimited)
    #[arg(short = 'q', long, default_value_t = 1000)]
    pub prefetch: u16,
    /// Ack with multiple=true once every N deliveries (pending acks are also flushed when
    /// deliveries pause)
    #[arg(long, default_value_t = 1)]
    pub multi_ack_every: u64,
    /// Exchange type
    #[arg(short = 't', long, value_enum, default_value_t = ExchangeType::Direct)]
    pub exchange_type: ExchangeType,
    /// Exchange name ("" = the default exchange for direct; default `perf-<type>` otherwise)
    #[arg(short = 'e', long)]
    pub exchange: Option<String>,
    /// Routing key for a direct exchange (default: the queue's name); for topic the publish key
    /// pattern, `%d` = key index (each key index i matches exactly binding i)
    #[arg(short = 'k', long)]
    pub routing_key: Option<String>,
    /// Topic binding pattern; `%d` = binding index. Binding i goes to queue i mod --queues
    #[arg(long, default_value = "perf.%d.*")]
    pub binding_pattern: String,
    /// Number of topic bindings (default: one per queue); producers cycle through the keys
    #[arg(long)]
    pub bindings: Option<usize>,
    /// Seconds of publishing (ignored when --pmessages is set and this is not)
    #[arg(short = 'z', long)]
    pub duration: Option<f64>,
    /// Messages per producer (alternative to --duration)
    #[arg(short = 'C', long)]
    pub pmessages: Option<u64>,
    /// Backlog mode: consumers start only after every producer has finished
    #[arg(long)]
    pub backlog: bool,
    /// Seconds the drain may go without progress before the rest counts as lost
    #[arg(long, default_value_t = 5.0)]
    pub drain_timeout: f64,
    /// Most messages encoded into one socket write
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// frame_max to ask for (the broker's, if lower, wins)
    #[arg(long, default_value_t = 131_072)]
    pub frame_max: u32,
    /// Runtime worker threads (1 = tokio current-thread runtime)
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Leave the queues (and exchange) in place at the end instead of deleting them
    #[arg(long)]
    pub keep_queues: bool,
    /// Print the final summary as one JSON object
    #[arg(long)]
    pub json: bool,
    /// No progress lines on stderr
    #[arg(long)]
    pub quiet: bool,
}

impl Default for PerfConfig {
    fn default() -> Self {
        PerfConfig::parse_from(["warren-perf"])
    }
}

/// Default seconds of publishing when neither --duration nor --pmessages is given.
pub const DEFAULT_DURATION: f64 = 10.0;

impl PerfConfig {
    /// Checks the combination of flags.
    pub fn validate(&self) -> Result<AmqpUri, String> {
        let uri = AmqpUri::parse(&self.uri)?;
        if self.queues == 0 {
            return Err("--queues must be at least 1".into());
        }
        if self.producers > u16::MAX as usize + 1 {
            return Err("at most 65536 producers".into());
        }
        if self.consumers > 0 && self.consumers < self.queues {
            return Err(format!(
                "{} consumers for {} queues: every queue needs a consumer (or use --consumers 0)",
                self.consumers, self.queues
            ));
        }
        if self.backlog && self.pmessages.is_none() {
            return Err("--backlog needs --pmessages".into());
        }
        if self.rate < 0.0 || !self.rate.is_finite() {
            return Err("--rate must be ≥ 0".into());
        }
        if self.pace_us == 0 {
            return Err("--pace-us must be at least 1".into());
        }
        if self.batch == 0 {
            return Err("--batch must be at least 1".into());
        }
        if self.exchange_type == ExchangeType::Direct
            && self.exchange.as_deref().unwrap_or("").is_empty()
            && self.routing_key.is_some()
        {
            return Err("--routing-key with the default exchange would bypass the queues".into());
        }
        Ok(uri)
    }

    /// The producers' and the consumers' broker URIs (each --uri unless given).
    pub fn role_uris(&self, default: &AmqpUri) -> Result<(AmqpUri, AmqpUri), String> {
        let parse = |u: &Option<String>| match u {
            Some(u) => AmqpUri::parse(u),
            None => Ok(default.clone()),
        };
        Ok((parse(&self.producer_uri)?, parse(&self.consumer_uri)?))
    }

    /// Whether queues are declared durable (quorum queues always are).
    pub fn durable_queues(&self) -> bool {
        self.durable || self.quorum_queue
    }

    /// Publishing time limit, if any.
    pub fn publish_duration(&self) -> Option<f64> {
        match (self.duration, self.pmessages) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_DURATION),
        }
    }

    /// Name of queue `i` (0-based; the pattern counts from 1).
    pub fn queue_name(&self, i: usize) -> String {
        self.queue_pattern.replace("%d", &(i + 1).to_string())
    }

    /// The exchange publishes go to ("" = default exchange).
    pub fn exchange_name(&self) -> String {
        match (&self.exchange, self.exchange_type) {
            (Some(e), _) => e.clone(),
            (None, ExchangeType::Direct) => String::new(),
            (None, ExchangeType::Fanout) => "perf-fanout".into(),
            (None, ExchangeType::Topic) => "perf-topic".into(),
        }
    }

    /// Number of topic bindings / keys.
    pub fn binding_count(&self) -> usize {
        self.bindings.unwrap_or(self.queues).max(1)
    }

    /// Delivery groups for the accounting: a fanout delivers one copy per queue, every other
    /// setup exactly one copy in total.
    pub fn groups(&self) -> usize {
        match self.exchange_type {
            ExchangeType::Fanout => self.queues,
            _ => 1,
        }
    }

    /// (queue index, routing key) bindings to declare.
    pub fn bindings_to_declare(&self) -> Vec<(usize, String)> {
        match self.exchange_type {
            ExchangeType::Direct if self.exchange_name().is_empty() => Vec::new(),
            ExchangeType::Direct => (0..self.queues)
                .map(|q| (q, self.routing_key.clone().unwrap_or_else(|| self.queue_name(q))))
                .collect(),
            ExchangeType::Fanout => (0..self.queues).map(|q| (q, String::new())).collect(),
            ExchangeType::Topic => (0..self.binding_count())
                .map(|b| {
                    (
                        b % self.queues,
                        self.binding_pattern.replace("%d", &b.to_string()),
                    )
                })
                .collect(),
        }
    }

    /// The routing keys producer `p` cycles through (sequence number `s` uses key `s mod len`).
    pub fn producer_keys(&self, p: usize) -> Vec<String> {
        match self.exchange_type {
            ExchangeType::Direct => {
                vec![
                    self.routing_key
                        .clone()
                        .unwrap_or_else(|| self.queue_name(p % self.queues)),
                ]
            }
            ExchangeType::Fanout => vec![self.routing_key.clone().unwrap_or_default()],
            ExchangeType::Topic => {
                let pat = self.routing_key.clone().unwrap_or_else(|| "perf.%d.x".into());
                (0..self.binding_count())
                    .map(|b| pat.replace("%d", &b.to_string()))
                    .collect()
            }
        }
    }

    /// Queue index consumer `c` reads.
    pub fn consumer_queue(&self, c: usize) -> usize {
        c % self.queues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> PerfConfig {
        PerfConfig::parse_from(std::iter::once("warren-perf").chain(args.iter().copied()))
    }

    #[test]
    fn topic_keys_match_one_binding_each() {
        let c = cfg(&[
            "-t",
            "topic",
            "--queues",
            "10",
            "--consumers",
            "10",
            "--bindings",
            "1000",
        ]);
        c.validate().unwrap();
        let b = c.bindings_to_declare();
        assert_eq!(b.len(), 1000);
        assert_eq!(b[13], (3, "perf.13.*".to_string()));
        let keys = c.producer_keys(0);
        assert_eq!(keys[13], "perf.13.x");
        assert_eq!(c.groups(), 1);
        assert_eq!(c.exchange_name(), "perf-topic");
    }

    #[test]
    fn direct_default_exchange_routes_by_queue_name() {
        let c = cfg(&["--queues", "2", "--consumers", "2", "-x", "3"]);
        assert_eq!(c.producer_keys(2), vec!["perf-1".to_string()]);
        assert!(c.bindings_to_declare().is_empty());
        assert_eq!(c.publish_duration(), Some(DEFAULT_DURATION));
    }

    #[test]
    fn rejects_queue_without_consumer() {
        assert!(cfg(&["--queues", "3", "--consumers", "2"]).validate().is_err());
        assert!(cfg(&["--queues", "3", "--consumers", "0"]).validate().is_ok());
        assert!(cfg(&["--backlog"]).validate().is_err());
        assert_eq!(cfg(&["-t", "fanout", "--queues", "50", "-y", "50"]).groups(), 50);
    }
}
