//! Dead-letter queues: which queues are DLQs (some queue dead-letters into them), and
//! reprocessing (`POST /api/queues/{vhost}/{name}/move`).
//!
//! A queue is a DLQ when a message dead-lettered by some queue can reach it: routed through
//! that queue's `x-dead-letter-exchange` with its `x-dead-letter-routing-key` when it has one,
//! otherwise any queue bound (directly or through exchange-to-exchange bindings) to the DLX.
//!
//! Moving is at-least-once: each message is taken from the DLQ unacked, published to its
//! target (the queue named in `x-first-death-queue`, through the default exchange, or a given
//! exchange and routing key) with headers and body unchanged, and only then acked. A message
//! whose target is missing or refuses it is returned to the DLQ and reported.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use warren_codec::{FieldValue, ShortStr};
use warren_core::Message;
use warren_core::queue::{ChannelKey, Return};

use crate::queue::Queue;
use crate::util::now_ms;
use crate::vhost::VHost;

/// Names of the DLQs of a vhost, from every queue's effective dead-letter target (declared
/// or set by a policy). Takes the vhost's locks itself.
pub fn vhost_dead_letter_queues(v: &VHost) -> HashSet<String> {
    v.dead_letter_queues()
}

fn header_str(m: &Message, key: &str) -> Option<String> {
    m.header(key).and_then(|v| v.as_str()).map(str::to_string)
}

/// The `x-death` history's total count (sum of each entry's `count`).
pub fn death_count(m: &Message) -> i64 {
    match m.header("x-death") {
        Some(FieldValue::Array(items)) => items
            .iter()
            .filter_map(|i| match i {
                FieldValue::Table(t) => t.get("count").and_then(|c| c.as_i64()),
                _ => None,
            })
            .sum(),
        _ => 0,
    }
}

/// Where to move messages to, instead of their `x-first-death-queue`.
#[derive(Debug, Deserialize, Clone)]
pub struct MoveTarget {
    /// Exchange (`""` or `amq.default` for the default exchange).
    #[serde(default)]
    pub exchange: String,
    /// Routing key (defaults to the message's own).
    pub routing_key: Option<String>,
}

/// `POST …/move` body.
#[derive(Debug, Deserialize, Clone, Default)]
pub struct MoveRequest {
    /// Most messages to move (default: all, up to 100,000).
    #[serde(default, deserialize_with = "crate::convert::lenient::opt_usize")]
    pub count: Option<usize>,
    /// Only report what would move.
    #[serde(default, deserialize_with = "crate::convert::lenient::bool")]
    pub dry_run: bool,
    /// Explicit target.
    pub target: Option<MoveTarget>,
}

/// Moves messages out of `dlq` (see the module doc). Returns the JSON report.
pub fn move_messages(v: &Arc<VHost>, dlq: &Arc<Queue>, req: &MoveRequest, key: ChannelKey) -> Value {
    let limit = req.count.unwrap_or(100_000).min(100_000);
    let mut taken = Vec::new();
    while taken.len() < limit {
        match dlq.get(key, false) {
            Some((d, _)) => taken.push(d),
            None => break,
        }
    }
    let mut groups: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut moved = 0u64;
    let mut failed = Vec::new();
    let mut back = Vec::new();
    let mut acked = Vec::new();
    for d in &taken {
        let m = &d.msg;
        let reason = header_str(m, "x-first-death-reason").unwrap_or_else(|| "unknown".into());
        let origin = header_str(m, "x-first-death-queue").unwrap_or_default();
        *groups.entry((reason, origin.clone())).or_default() += 1;
        if req.dry_run {
            back.push(d.seq);
            continue;
        }
        let (exchange, routing_key) = match &req.target {
            Some(t) => {
                let x = if t.exchange == "amq.default" {
                    ""
                } else {
                    t.exchange.as_str()
                };
                (
                    x.to_string(),
                    t.routing_key.clone().unwrap_or_else(|| m.routing_key.to_string()),
                )
            }
            None => (String::new(), origin.clone()),
        };
        let fail = |why: String| json!({"routing_key": m.routing_key.to_string(), "x-first-death-queue": origin, "reason": why});
        if routing_key.is_empty() && req.target.is_none() {
            failed.push(fail("no x-first-death-queue header".into()));
            back.push(d.seq);
            continue;
        }
        let exists = v.read_topology(|t| {
            if exchange.is_empty() {
                t.queue(&routing_key).is_some()
            } else {
                t.exchange(&exchange).is_some()
            }
        });
        if !exists {
            let what = if exchange.is_empty() {
                format!("target queue '{routing_key}' does not exist")
            } else {
                format!("target exchange '{exchange}' does not exist")
            };
            failed.push(fail(what));
            back.push(d.seq);
            continue;
        }
        let msg = Arc::new(Message {
            exchange: ShortStr::from(exchange.as_str()),
            routing_key: ShortStr::from(routing_key.as_str()),
            properties: m.properties.clone(),
            body: m.body.clone(),
            dead_lettered: m.dead_lettered,
        });
        let ttl = msg.expiration_ms().ok().flatten();
        let published = v.publish(msg.clone(), ttl, now_ms()).map(|mut o| {
            o.replicate_unconfirmed(&msg, ttl);
            o
        });
        match published {
            Ok(o) if o.enqueued > 0 => {
                moved += 1;
                acked.push(d.seq);
            }
            Ok(o) if o.rejected > 0 => {
                failed.push(fail("target queue refused the message (x-overflow)".into()));
                back.push(d.seq);
            }
            Ok(o) if !o.remote.is_empty() => {
                failed.push(fail(
                    "routed to a queue of another cluster node: move it there".into(),
                ));
                back.push(d.seq);
            }
            Ok(_) => {
                failed.push(fail("unroutable".into()));
                back.push(d.seq);
            }
            Err(e) => {
                failed.push(fail(e.reply_text()));
                back.push(d.seq);
            }
        }
    }
    if !acked.is_empty() {
        dlq.ack(&acked);
    }
    if !back.is_empty() {
        dlq.reject(&back, Some(Return::Returned));
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|((reason, queue), count)| json!({"reason": reason, "queue": queue, "count": count}))
        .collect();
    json!({
        "dry_run": req.dry_run,
        "examined": taken.len(),
        "moved": moved,
        "would_move": if req.dry_run { taken.len() } else { 0 },
        "failed": failed,
        "groups": groups,
        "remaining": dlq.counts().ready,
    })
}
