//! Dead-lettering: rewriting a message as RabbitMQ does when it leaves a queue for its
//! dead-letter exchange — the `x-death` array (newest first, one entry per queue and reason,
//! `count` incremented on repeats), `x-first-death-*` / `x-last-death-*` headers, the routing
//! keys, `expiration` moved to `original-expiration` — and the cycle rule.

use std::sync::Arc;

use warren_codec::{FieldTable, FieldValue, ShortStr};

use crate::message::{Message, MessageRef};

/// Why a message was dead-lettered (RabbitMQ's reason strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadReason {
    /// basic.reject / basic.nack with requeue=false.
    Rejected,
    /// Per-message or per-queue TTL.
    Expired,
    /// Length limit (drop-head or reject-publish-dlx).
    Maxlen,
    /// Delivery limit exceeded.
    DeliveryLimit,
}

impl DeadReason {
    /// The reason as written in `x-death`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Rejected => "rejected",
            DeadReason::Expired => "expired",
            DeadReason::Maxlen => "maxlen",
            DeadReason::DeliveryLimit => "delivery_limit",
        }
    }

    /// All reasons, for metrics.
    pub const ALL: [DeadReason; 4] = [
        DeadReason::Rejected,
        DeadReason::Expired,
        DeadReason::Maxlen,
        DeadReason::DeliveryLimit,
    ];
}

/// Where a dead-lettered message goes.
#[derive(Debug, Clone)]
pub struct DeadLetterTarget<'a> {
    /// The dead-letter exchange.
    pub exchange: &'a str,
    /// `x-dead-letter-routing-key`, if set.
    pub routing_key: Option<&'a str>,
}

fn str_val(s: &str) -> FieldValue {
    FieldValue::str(s)
}

/// Rewrites `msg` for dead-lettering from `queue` for `reason` at `now_secs`.
/// Returns the new message and the routing keys to route it with.
pub fn dead_letter(
    msg: &Message,
    reason: DeadReason,
    queue: &str,
    now_secs: u64,
    target: &DeadLetterTarget<'_>,
) -> (MessageRef, Vec<ShortStr>) {
    let mut props = msg.properties.clone();
    let mut headers = props.headers.take().unwrap_or_default();
    // Original routing keys: the routing key plus CC (BCC is never recorded).
    let mut original_keys = vec![str_val(&msg.routing_key)];
    if let Some(FieldValue::Array(cc)) = headers.get("CC") {
        original_keys.extend(cc.iter().cloned());
    }
    if !msg.dead_lettered {
        // A client-supplied history is not ours: start afresh (RabbitMQ 4.x).
        for h in [
            "x-first-death-exchange",
            "x-first-death-queue",
            "x-first-death-reason",
            "x-last-death-exchange",
            "x-last-death-queue",
            "x-last-death-reason",
        ] {
            headers.remove(h);
        }
    }
    let mut deaths: Vec<FieldValue> = match headers.remove("x-death") {
        Some(FieldValue::Array(items)) if msg.dead_lettered => items,
        _ => Vec::new(),
    };
    let same = deaths.iter().position(|d| match d {
        FieldValue::Table(t) => {
            t.get("queue").and_then(|v| v.as_str()) == Some(queue)
                && t.get("reason").and_then(|v| v.as_str()) == Some(reason.as_str())
        }
        _ => false,
    });
    match same {
        Some(i) => {
            let mut entry = deaths.remove(i);
            if let FieldValue::Table(t) = &mut entry {
                let count = t.get("count").and_then(|v| v.as_i64()).unwrap_or(0) + 1;
                t.insert("count", FieldValue::I64(count));
            }
            deaths.insert(0, entry);
        }
        None => {
            let mut t = FieldTable::new();
            if let Some(exp) = &props.expiration {
                t.insert("original-expiration", str_val(exp));
            }
            t.insert("count", FieldValue::I64(1));
            t.insert("reason", str_val(reason.as_str()));
            t.insert("queue", str_val(queue));
            t.insert("time", FieldValue::Timestamp(now_secs));
            t.insert("exchange", str_val(&msg.exchange));
            t.insert("routing-keys", FieldValue::Array(original_keys));
            deaths.insert(0, FieldValue::Table(t));
        }
    }
    if headers.get("x-first-death-reason").is_none() {
        headers.insert("x-first-death-exchange", str_val(&msg.exchange));
        headers.insert("x-first-death-queue", str_val(queue));
        headers.insert("x-first-death-reason", str_val(reason.as_str()));
    }
    headers.insert("x-last-death-exchange", str_val(&msg.exchange));
    headers.insert("x-last-death-queue", str_val(queue));
    headers.insert("x-last-death-reason", str_val(reason.as_str()));
    headers.insert("x-death", FieldValue::Array(deaths));
    headers.remove("BCC");
    let keys = match target.routing_key {
        Some(k) => {
            headers.remove("CC");
            vec![ShortStr::from(k)]
        }
        None => {
            let mut keys = vec![msg.routing_key.clone()];
            if let Some(FieldValue::Array(cc)) = headers.get("CC") {
                keys.extend(cc.iter().filter_map(|v| v.as_str()).map(ShortStr::from));
            }
            keys
        }
    };
    // Delivery counters belong to the source queue, not the message.
    headers.remove("x-delivery-count");
    headers.remove("x-acquired-count");
    props.expiration = None;
    props.headers = Some(headers);
    let out = Message {
        exchange: ShortStr::from(target.exchange),
        routing_key: keys[0].clone(),
        properties: props,
        body: msg.body.clone(),
        dead_lettered: true,
    };
    (Arc::new(out), keys)
}

/// RabbitMQ's cycle rule: a dead-lettered message must not re-enter `queue` if `queue` is
/// already in its death history and no death in the history was a rejection.
pub fn is_cycle(msg: &Message, queue: &str) -> bool {
    if !msg.dead_lettered {
        return false;
    }
    let Some(FieldValue::Array(deaths)) = msg.header("x-death") else {
        return false;
    };
    let mut seen = false;
    for d in deaths {
        if let FieldValue::Table(t) = d {
            if t.get("reason").and_then(|v| v.as_str()) == Some("rejected") {
                return false;
            }
            if t.get("queue").and_then(|v| v.as_str()) == Some(queue) {
                seen = true;
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use warren_codec::BasicProperties;

    fn msg() -> Message {
        let props = BasicProperties {
            expiration: Some("5000".into()),
            ..Default::default()
        };
        Message::new("ex", "rk", props, Bytes::from_static(b"body"))
    }

    fn deaths(m: &Message) -> Vec<FieldTable> {
        match m.header("x-death") {
            Some(FieldValue::Array(a)) => a
                .iter()
                .map(|v| match v {
                    FieldValue::Table(t) => t.clone(),
                    _ => panic!(),
                })
                .collect(),
            _ => panic!("no x-death"),
        }
    }

    #[test]
    fn first_death_writes_full_entry() {
        let target = DeadLetterTarget {
            exchange: "dlx",
            routing_key: None,
        };
        let (m, keys) = dead_letter(&msg(), DeadReason::Rejected, "q", 1000, &target);
        assert_eq!(keys, vec![ShortStr::from("rk")]);
        assert_eq!(&*m.exchange, "dlx");
        assert_eq!(m.properties.expiration, None);
        let d = deaths(&m);
        assert_eq!(d.len(), 1);
        let e = &d[0];
        let names: Vec<&str> = e.iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                "original-expiration",
                "count",
                "reason",
                "queue",
                "time",
                "exchange",
                "routing-keys"
            ]
        );
        assert_eq!(e.get("count"), Some(&FieldValue::I64(1)));
        assert_eq!(e.get("reason").unwrap().as_str(), Some("rejected"));
        assert_eq!(e.get("time"), Some(&FieldValue::Timestamp(1000)));
        assert_eq!(e.get("original-expiration").unwrap().as_str(), Some("5000"));
        assert_eq!(m.header("x-first-death-queue").unwrap().as_str(), Some("q"));
        assert_eq!(
            m.header("x-last-death-reason").unwrap().as_str(),
            Some("rejected")
        );
    }

    #[test]
    fn repeated_death_increments_count_and_moves_to_front() {
        let t = DeadLetterTarget {
            exchange: "dlx",
            routing_key: Some("retry"),
        };
        let (m1, k) = dead_letter(&msg(), DeadReason::Rejected, "q", 1, &t);
        assert_eq!(k, vec![ShortStr::from("retry")]);
        let (m2, _) = dead_letter(&m1, DeadReason::Expired, "wait", 2, &t);
        let (m3, _) = dead_letter(&m2, DeadReason::Rejected, "q", 3, &t);
        let d = deaths(&m3);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].get("queue").unwrap().as_str(), Some("q"));
        assert_eq!(d[0].get("count"), Some(&FieldValue::I64(2)));
        assert_eq!(d[0].get("time"), Some(&FieldValue::Timestamp(1)));
        assert_eq!(d[1].get("queue").unwrap().as_str(), Some("wait"));
        assert_eq!(m3.header("x-first-death-queue").unwrap().as_str(), Some("q"));
        assert_eq!(m3.header("x-last-death-queue").unwrap().as_str(), Some("q"));
        assert_eq!(
            m3.header("x-last-death-reason").unwrap().as_str(),
            Some("rejected")
        );
    }

    #[test]
    fn client_supplied_x_death_is_replaced_not_incremented() {
        let t = DeadLetterTarget {
            exchange: "dlx",
            routing_key: None,
        };
        let (dead, _) = dead_letter(&msg(), DeadReason::Rejected, "q", 1, &t);
        // A client republishes the dead letter as a new message.
        let mut republished = (*dead).clone();
        republished.dead_lettered = false;
        assert!(!is_cycle(&republished, "q"));
        let (again, _) = dead_letter(&republished, DeadReason::Rejected, "q", 2, &t);
        let d = deaths(&again);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].get("count"), Some(&FieldValue::I64(1)));
        assert_eq!(d[0].get("time"), Some(&FieldValue::Timestamp(2)));
    }

    #[test]
    fn cycle_without_rejection_is_detected() {
        let t = DeadLetterTarget {
            exchange: "dlx",
            routing_key: None,
        };
        let (m, _) = dead_letter(&msg(), DeadReason::Expired, "a", 1, &t);
        assert!(is_cycle(&m, "a"));
        assert!(!is_cycle(&m, "b"));
        let (m, _) = dead_letter(&m, DeadReason::Rejected, "b", 1, &t);
        assert!(!is_cycle(&m, "a"));
    }
}
