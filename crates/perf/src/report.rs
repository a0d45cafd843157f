//! The final summary of a run: a serde-serialisable [`Report`] (one JSON object with
//! `--json`) and its human-readable table.

use std::fmt::{self, Write as _};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50_us: f64,
    /// 95th percentile.
    pub p95_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl Latency {
    /// Percentiles of a histogram of nanoseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            p50_us: us(h.value_at_quantile(0.50)),
            p95_us: us(h.value_at_quantile(0.95)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1000.0,
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Broker (password left out).
    pub uri: String,
    /// Short description of the scenario flags.
    pub scenario: String,
    /// Producers.
    pub producers: usize,
    /// Consumers.
    pub consumers: usize,
    /// Queues.
    pub queues: usize,
    /// Body bytes per message.
    pub size: usize,
    /// Seconds from the first publish to the last.
    pub publish_seconds: f64,
    /// Seconds from the start of consumption (first publish, or drain start in backlog mode)
    /// to the last delivery.
    pub consume_seconds: f64,
    /// Messages published.
    pub published: u64,
    /// Publishes acked by the broker (0 without confirms).
    pub confirmed: u64,
    /// Publishes nacked.
    pub nacked: u64,
    /// Messages returned as unroutable.
    pub returned: u64,
    /// Deliveries, duplicates included.
    pub consumed: u64,
    /// Deliveries expected (published × copies per message); 0 without consumers.
    pub expected: u64,
    /// Expected deliveries never seen by the end of the drain (None without consumers).
    pub lost: Option<u64>,
    /// Lost deliveries whose publish the broker had confirmed.
    pub lost_confirmed: Option<u64>,
    /// Repeated deliveries not flagged redelivered.
    pub duplicated: u64,
    /// Deliveries flagged redelivered.
    pub redelivered: u64,
    /// New sequence numbers seen after a higher one (informational: several queues or
    /// consumers interleave).
    pub out_of_order: u64,
    /// Bodies that did not carry a valid stamp.
    pub corrupt: u64,
    /// Publish rate, msg/s.
    pub publish_rate: f64,
    /// Confirm rate, msg/s (over the publish time).
    pub confirm_rate: f64,
    /// Delivery rate, msg/s.
    pub consume_rate: f64,
    /// Deliveries received while the producers ran, per second of publishing (0 in backlog
    /// mode, where consumers start afterwards).
    pub consume_rate_while_publishing: f64,
    /// End-to-end latency, publish (stamp) to delivery parsed.
    pub latency: Latency,
    /// warren-perf's own CPU time, seconds (user + system).
    pub tool_cpu_seconds: f64,
    /// Wall-clock seconds of the whole run (setup excluded).
    pub wall_seconds: f64,
    /// tool_cpu_seconds / wall_seconds: 1.0 = one core busy.
    pub tool_cpu_utilisation: f64,
    /// Tool CPU per message handled (published + consumed), ns.
    pub tool_cpu_ns_per_msg: f64,
    /// Share of each CPU's time the hypervisor took during the run (cpu0 first, 0.0–1.0):
    /// time in which neither the broker nor warren-perf could run on it.
    pub machine_steal: Vec<f64>,
    /// The largest of `machine_steal`: one number, for scripts that read single JSON fields
    /// (compare.sh's `steal` column and `--max-steal`).
    pub machine_steal_max: f64,
    /// Errors from producers and consumers.
    pub errors: Vec<String>,
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        let _ = writeln!(s, "warren-perf  {}  {}", self.uri, self.scenario);
        let _ = writeln!(
            s,
            "published   {:>13} msg  {:>11} msg/s  ({:.2} s)",
            thousands(self.published),
            thousands(self.publish_rate as u64),
            self.publish_seconds
        );
        let _ = writeln!(
            s,
            "confirmed   {:>13} msg  {:>11} msg/s  (nacked {}, returned {})",
            thousands(self.confirmed),
            thousands(self.confirm_rate as u64),
            self.nacked,
            self.returned
        );
        let _ = writeln!(
            s,
            "consumed    {:>13} msg  {:>11} msg/s  ({:.2} s, expected {})",
            thousands(self.consumed),
            thousands(self.consume_rate as u64),
            self.consume_seconds,
            thousands(self.expected)
        );
        if self.consume_rate_while_publishing > 0.0 {
            let _ = writeln!(
                s,
                "consumed while publishing      {:>11} msg/s",
                thousands(self.consume_rate_while_publishing as u64)
            );
        }
        let l = &self.latency;
        let _ = writeln!(
            s,
            "latency µs  p50 {:.0}  p95 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}  mean {:.0}",
            l.p50_us, l.p95_us, l.p99_us, l.p999_us, l.max_us, l.mean_us
        );
        let opt = |v: Option<u64>| v.map_or("n/a".to_string(), thousands);
        let _ = writeln!(
            s,
            "LOST {} (confirmed {})  DUPLICATED {}  redelivered {}  out-of-order {}  corrupt {}",
            opt(self.lost),
            opt(self.lost_confirmed),
            self.duplicated,
            self.redelivered,
            self.out_of_order,
            self.corrupt
        );
        let _ = writeln!(
            s,
            "tool cpu    {:.2} s over {:.2} s = {:.2} core, {:.0} ns per message (published + consumed)",
            self.tool_cpu_seconds, self.wall_seconds, self.tool_cpu_utilisation, self.tool_cpu_ns_per_msg
        );
        if !self.machine_steal.is_empty() {
            let _ = writeln!(
                s,
                "steal       {} of the run taken by the hypervisor",
                crate::stats::format_steal(&self.machine_steal)
            );
        }
        for e in &self.errors {
            let _ = writeln!(s, "error: {e}");
        }
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn percentiles_in_microseconds() {
        let mut h = crate::stats::histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let l = Latency::from_histogram(&h);
        assert!((l.p50_us - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.max_us - 1000.0).abs() < 1.0, "{l:?}");
        let json = serde_json::to_string(&Report::default()).unwrap();
        assert!(json.contains("\"lost\":null"));
    }
}
