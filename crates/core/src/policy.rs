//! Policies: RabbitMQ's way to set optional arguments on groups of queues by name
//! (`PUT /api/policies/{vhost}/{name}`), as pure logic.
//!
//! A [`Policy`] has a name, a regex `pattern` matched *unanchored* against queue names (as
//! Erlang's `re:run`; the `regex` crate's syntax, which lacks PCRE's look-around and
//! back-references), `apply-to` (`queues`, `classic_queues`, `quorum_queues`, `streams`,
//! `exchanges`, `all`), a `priority` and a `definition` (policy keys without the `x-` prefix,
//! validated with RabbitMQ's rules and error texts by [`Policy::new`]).
//!
//! At most one policy applies to a queue: the matching one with the highest priority
//! ([`queue_policy`]). RabbitMQ leaves ties undefined; Warren picks the lexicographically
//! smallest name, so the choice is stable.
//!
//! The queue's effective arguments are its declared `x-arguments` merged with that policy's
//! definition ([`effective_arguments`]), with the rules of RabbitMQ's
//! `rabbit_amqqueue_process:process_args_policy` and `rabbit_quorum_queue`:
//! - `message-ttl`, `expires`, `max-length`, `max-length-bytes`: the lower value applies;
//! - `delivery-limit`: the lower value, but a negative value (unlimited) loses to a limit;
//! - `overflow`: the queue argument wins, except on quorum queues where the policy wins;
//! - everything else (`dead-letter-exchange`, `dead-letter-routing-key`,
//!   `dead-letter-strategy`, `queue-leader-locator` and Warren's `delivery-limit-counts` and `delayed-retry-*`): the
//!   queue argument wins.
//!
//! Keys accepted but without effect on queues: `queue-mode`, `queue-version`,
//! `alternate-exchange` (exchange policies are stored, not applied), `max-in-memory-length`,
//! `max-in-memory-bytes`, `initial-cluster-size`, `target-group-size`,
//! `max-age`, `stream-max-segment-size-bytes`, and RabbitMQ 3.x's classic mirroring keys
//! (`ha-mode`, `ha-params`, `ha-sync-mode`, `ha-sync-batch-size`, `ha-promote-on-*`,
//! `queue-master-locator`), which exported definitions files often carry. What a queue type
//! fixes at declaration
//! (`x-queue-type`, `x-max-priority`, `x-single-active-consumer`, message groups,
//! deduplication) cannot be set by a policy, as in RabbitMQ.

use std::cmp::Ordering;
use std::fmt;

use regex::Regex;
use warren_codec::{FieldTable, FieldValue};

use crate::args::{QueueArgs, integer, number};
use crate::error::AmqpResult;

/// What a policy applies to (`apply-to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApplyTo {
    /// Queues and exchanges (the default).
    #[default]
    All,
    /// Every queue.
    Queues,
    /// Queues declared without `x-queue-type` or with `classic`.
    ClassicQueues,
    /// Queues declared with `x-queue-type: quorum`.
    QuorumQueues,
    /// Streams (Warren has none: matches nothing).
    Streams,
    /// Exchanges only.
    Exchanges,
}

impl ApplyTo {
    /// Parses RabbitMQ's `apply-to` value.
    pub fn parse(s: &str) -> Result<ApplyTo, PolicyError> {
        Ok(match s {
            "all" => ApplyTo::All,
            "queues" => ApplyTo::Queues,
            "classic_queues" => ApplyTo::ClassicQueues,
            "quorum_queues" => ApplyTo::QuorumQueues,
            "streams" => ApplyTo::Streams,
            "exchanges" => ApplyTo::Exchanges,
            other => {
                return Err(PolicyError(format!(
                    "apply-to '{other}' unrecognised; should be one of: 'queues', 'classic_queues', \
                     'quorum_queues', 'streams', 'exchanges', or 'all'"
                )));
            }
        })
    }

    /// RabbitMQ's name for it.
    pub fn name(self) -> &'static str {
        match self {
            ApplyTo::All => "all",
            ApplyTo::Queues => "queues",
            ApplyTo::ClassicQueues => "classic_queues",
            ApplyTo::QuorumQueues => "quorum_queues",
            ApplyTo::Streams => "streams",
            ApplyTo::Exchanges => "exchanges",
        }
    }

    /// Whether it covers a queue of this type.
    pub fn covers_queue(self, quorum: bool) -> bool {
        match self {
            ApplyTo::All | ApplyTo::Queues => true,
            ApplyTo::ClassicQueues => !quorum,
            ApplyTo::QuorumQueues => quorum,
            ApplyTo::Streams | ApplyTo::Exchanges => false,
        }
    }

    /// Whether it covers exchanges.
    pub fn covers_exchanges(self) -> bool {
        matches!(self, ApplyTo::All | ApplyTo::Exchanges)
    }
}

/// A refused policy, with RabbitMQ's validation text (without the "Validation failed"
/// preamble, which [`PolicyError::rabbit_text`] adds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(pub String);

impl PolicyError {
    /// The text RabbitMQ's management API puts in the 400 `reason`.
    pub fn rabbit_text(&self) -> String {
        format!("Validation failed\n\n{}\n", self.0)
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyError {}

/// How a policy value and a declared argument combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Merge {
    /// The lower value applies.
    Min,
    /// Like `Min`, but a negative value (unlimited) loses to a limit.
    DeliveryLimit,
    /// The declared argument wins.
    ArgWins,
    /// The declared argument wins on classic queues, the policy on quorum queues.
    Overflow,
}

/// How a definition value is validated.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// An integer ≥ the bound.
    IntAtLeast(i64),
    /// Any integer.
    Int,
    /// A string.
    Str,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// One of these integers.
    IntOneOf(&'static [i64]),
    /// A number ≥ 1 (integer or float).
    Multiplier,
    /// Anything (keys Warren accepts and ignores without a RabbitMQ rule to copy).
    Any,
}

/// A definition key: its queue argument (if it has an effect on queues), merge rule, check and
/// RabbitMQ's error text ("~p is not a valid …").
struct Key {
    name: &'static str,
    arg: Option<(&'static str, Merge)>,
    check: Check,
    what: &'static str,
}

const KEYS: &[Key] = &[
    Key {
        name: "dead-letter-exchange",
        arg: Some(("x-dead-letter-exchange", Merge::ArgWins)),
        check: Check::Str,
        what: "dead letter exchange name",
    },
    Key {
        name: "dead-letter-routing-key",
        arg: Some(("x-dead-letter-routing-key", Merge::ArgWins)),
        check: Check::Str,
        what: "dead letter routing key",
    },
    Key {
        name: "dead-letter-strategy",
        arg: Some(("x-dead-letter-strategy", Merge::ArgWins)),
        check: Check::OneOf(&["at-most-once", "at-least-once"]),
        what: "dead letter strategy",
    },
    Key {
        name: "message-ttl",
        arg: Some(("x-message-ttl", Merge::Min)),
        check: Check::IntAtLeast(0),
        what: "message TTL",
    },
    Key {
        name: "expires",
        arg: Some(("x-expires", Merge::Min)),
        check: Check::IntAtLeast(1),
        what: "queue expiry",
    },
    Key {
        name: "max-length",
        arg: Some(("x-max-length", Merge::Min)),
        check: Check::IntAtLeast(0),
        what: "maximum length",
    },
    Key {
        name: "max-length-bytes",
        arg: Some(("x-max-length-bytes", Merge::Min)),
        check: Check::IntAtLeast(0),
        what: "maximum length in bytes",
    },
    Key {
        name: "overflow",
        arg: Some(("x-overflow", Merge::Overflow)),
        check: Check::OneOf(&["drop-head", "reject-publish", "reject-publish-dlx"]),
        what: "overflow value",
    },
    Key {
        name: "delivery-limit",
        arg: Some(("x-delivery-limit", Merge::DeliveryLimit)),
        check: Check::Int,
        what: "delivery limit",
    },
    // Warren's extensions, as policy keys (queue argument names without `x-`).
    Key {
        name: "delivery-limit-counts",
        arg: Some(("x-delivery-limit-counts", Merge::ArgWins)),
        check: Check::OneOf(&["failed", "all"]),
        what: "delivery limit count mode",
    },
    Key {
        name: "delayed-retry-type",
        arg: Some(("x-delayed-retry-type", Merge::ArgWins)),
        check: Check::OneOf(&["disabled", "all", "failed", "returned"]),
        what: "delayed retry type",
    },
    Key {
        name: "delayed-retry-min",
        arg: Some(("x-delayed-retry-min", Merge::ArgWins)),
        check: Check::IntAtLeast(0),
        what: "delayed retry minimum",
    },
    Key {
        name: "delayed-retry-max",
        arg: Some(("x-delayed-retry-max", Merge::ArgWins)),
        check: Check::IntAtLeast(0),
        what: "delayed retry maximum",
    },
    Key {
        name: "delayed-retry-multiplier",
        arg: Some(("x-delayed-retry-multiplier", Merge::ArgWins)),
        check: Check::Multiplier,
        what: "delayed retry multiplier",
    },
    // Accepted (RabbitMQ knows them), no effect on Warren's queues.
    Key {
        name: "queue-mode",
        arg: None,
        check: Check::OneOf(&["default", "lazy"]),
        what: "queue-mode value",
    },
    Key {
        name: "queue-version",
        arg: None,
        check: Check::IntOneOf(&[1, 2]),
        what: "queue version",
    },
    Key {
        name: "alternate-exchange",
        arg: None,
        check: Check::Str,
        what: "alternate exchange name",
    },
    Key {
        name: "max-in-memory-length",
        arg: None,
        check: Check::IntAtLeast(0),
        what: "maximum memory in bytes",
    },
    Key {
        name: "max-in-memory-bytes",
        arg: None,
        check: Check::IntAtLeast(0),
        what: "maximum memory in bytes",
    },
    Key {
        name: "queue-leader-locator",
        arg: Some(("x-queue-leader-locator", Merge::ArgWins)),
        check: Check::OneOf(&["client-local", "balanced", "random", "least-leaders"]),
        what: "queue leader locator value",
    },
    Key {
        name: "initial-cluster-size",
        arg: None,
        check: Check::IntAtLeast(0),
        what: "cluster size",
    },
    Key {
        name: "target-group-size",
        arg: None,
        check: Check::IntAtLeast(0),
        what: "target group size",
    },
    Key {
        name: "max-age",
        arg: None,
        check: Check::Str,
        what: "max age",
    },
    Key {
        name: "stream-max-segment-size-bytes",
        arg: None,
        check: Check::Any,
        what: "segment size",
    },
    // Classic queue mirroring (RabbitMQ 3.x, removed in 4.0): meaningless on one node, but
    // common in exported definitions files, so accepted.
    Key {
        name: "ha-mode",
        arg: None,
        check: Check::OneOf(&["all", "exactly", "nodes"]),
        what: "ha-mode value",
    },
    Key {
        name: "ha-params",
        arg: None,
        check: Check::Any,
        what: "ha-params value",
    },
    Key {
        name: "ha-sync-mode",
        arg: None,
        check: Check::OneOf(&["manual", "automatic"]),
        what: "ha-sync-mode value",
    },
    Key {
        name: "ha-sync-batch-size",
        arg: None,
        check: Check::IntAtLeast(1),
        what: "ha-sync-batch-size value",
    },
    Key {
        name: "ha-promote-on-shutdown",
        arg: None,
        check: Check::OneOf(&["when-synced", "always"]),
        what: "ha-promote-on-shutdown value",
    },
    Key {
        name: "ha-promote-on-failure",
        arg: None,
        check: Check::OneOf(&["when-synced", "always"]),
        what: "ha-promote-on-failure value",
    },
    Key {
        name: "queue-master-locator",
        arg: None,
        check: Check::OneOf(&["min-masters", "client-local", "random"]),
        what: "queue-master-locator value",
    },
];

fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// A value as Erlang's `~p` prints it in RabbitMQ's validation errors (`<<"abc">>`, `-1`).
fn erl(v: &FieldValue) -> String {
    match v {
        FieldValue::LongStr(b) | FieldValue::ByteArray(b) => {
            format!("<<\"{}\">>", String::from_utf8_lossy(b))
        }
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::F32(f) => f.to_string(),
        FieldValue::F64(f) => f.to_string(),
        FieldValue::Decimal { .. } => crate::args::render(v),
        FieldValue::Void => "null".into(),
        FieldValue::Array(items) => format!("[{}]", items.iter().map(erl).collect::<Vec<_>>().join(",")),
        FieldValue::Table(t) => format!(
            "#{{{}}}",
            t.iter()
                .map(|(k, v)| format!("<<\"{k}\">> => {}", erl(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other
            .as_i64()
            .map(|i| i.to_string())
            .unwrap_or_else(|| format!("{other:?}")),
    }
}

fn check_value(k: &Key, v: &FieldValue) -> Result<(), PolicyError> {
    let ok = match k.check {
        Check::IntAtLeast(min) => integer(v).is_ok_and(|i| i >= min),
        Check::Int => integer(v).is_ok(),
        Check::Str => v.as_str().is_some_and(|s| s.len() <= 255),
        Check::OneOf(allowed) => v.as_str().is_some_and(|s| allowed.contains(&s)),
        Check::IntOneOf(allowed) => integer(v).is_ok_and(|i| allowed.contains(&i)),
        Check::Multiplier => number(v).is_some_and(|f| f >= 1.0 && f.is_finite()),
        Check::Any => true,
    };
    if ok {
        Ok(())
    } else {
        Err(PolicyError(format!("{} is not a valid {}", erl(v), k.what)))
    }
}

/// One policy of a vhost.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Name (unique in its vhost).
    pub name: String,
    /// The regex, as given.
    pub pattern: String,
    regex: Regex,
    /// What it applies to.
    pub apply_to: ApplyTo,
    /// Higher wins.
    pub priority: i64,
    /// Policy keys (no `x-` prefix) and values, validated.
    pub definition: FieldTable,
}

impl PartialEq for Policy {
    fn eq(&self, other: &Policy) -> bool {
        self.name == other.name
            && self.pattern == other.pattern
            && self.apply_to == other.apply_to
            && self.priority == other.priority
            && self.definition == other.definition
    }
}

impl Policy {
    /// Validates and builds a policy (RabbitMQ's `rabbit_policy` and `rabbit_policies`
    /// validation: the pattern compiles, the definition is not empty, every key is known and
    /// every value has the right type and range).
    pub fn new(
        name: &str,
        pattern: &str,
        apply_to: ApplyTo,
        priority: i64,
        definition: FieldTable,
    ) -> Result<Policy, PolicyError> {
        if name.is_empty() || name.len() > 255 {
            return Err(PolicyError(format!("invalid policy name '{name}'")));
        }
        let regex =
            Regex::new(pattern).map_err(|e| PolicyError(format!("pattern should be a valid regex ({e})")))?;
        if definition.is_empty() {
            return Err(PolicyError("no policy provided".into()));
        }
        let mut unknown = Vec::new();
        for (k, v) in definition.iter() {
            match key(k) {
                Some(spec) => check_value(spec, v)?,
                None => unknown.push(format!("{{<<\"{k}\">>,{}}}", erl(v))),
            }
        }
        if !unknown.is_empty() {
            return Err(PolicyError(format!(
                "[{}] are not recognised policy settings",
                unknown.join(",")
            )));
        }
        let p = Policy {
            name: name.to_string(),
            pattern: pattern.to_string(),
            regex,
            apply_to,
            priority,
            definition,
        };
        // The keys that become queue arguments must also pass the queue-argument rules (for
        // instance `delayed-retry-max` below `delayed-retry-min` is fine, a string TTL not).
        let mut args = p.queue_arguments();
        if args.get("x-dead-letter-exchange").is_none() {
            args.remove("x-dead-letter-routing-key");
        }
        QueueArgs::parse(&args, "(policy)", "(policy)").map_err(|e| PolicyError(e.text))?;
        Ok(p)
    }

    /// Whether the policy applies to queue `name` (its declared type: `quorum`).
    pub fn matches_queue(&self, name: &str, quorum: bool) -> bool {
        self.apply_to.covers_queue(quorum) && self.regex.is_match(name)
    }

    /// Whether the policy applies to exchange `name`.
    pub fn matches_exchange(&self, name: &str) -> bool {
        self.apply_to.covers_exchanges() && self.regex.is_match(name)
    }

    /// The definition's keys that Warren accepts but that change nothing (`ha-mode`,
    /// `queue-mode`, `alternate-exchange`, …), for import warnings.
    pub fn ineffective_keys(&self) -> Vec<&str> {
        self.definition
            .iter()
            .filter(|(k, _)| key(k).is_some_and(|k| k.arg.is_none()))
            .map(|(k, _)| k)
            .collect()
    }

    /// The definition's keys that act on queues, as `x-` queue arguments.
    pub fn queue_arguments(&self) -> FieldTable {
        let mut t = FieldTable::new();
        for (k, v) in self.definition.iter() {
            if let Some((arg, _)) = key(k).and_then(|k| k.arg) {
                t.insert(arg, v.clone());
            }
        }
        t
    }
}

/// Whether declared arguments make a quorum queue.
pub fn is_quorum(declared: &FieldTable) -> bool {
    declared.get("x-queue-type").and_then(FieldValue::as_str) == Some("quorum")
}

/// The policy that applies to queue `name`: the matching one with the highest priority, the
/// smallest name among equals.
pub fn queue_policy<'a>(policies: &'a [Policy], name: &str, declared: &FieldTable) -> Option<&'a Policy> {
    let quorum = is_quorum(declared);
    policies
        .iter()
        .filter(|p| p.matches_queue(name, quorum))
        .min_by(|a, b| match b.priority.cmp(&a.priority) {
            Ordering::Equal => a.name.cmp(&b.name),
            o => o,
        })
}

/// The policy that applies to exchange `name` (same choice as [`queue_policy`]).
pub fn exchange_policy<'a>(policies: &'a [Policy], name: &str) -> Option<&'a Policy> {
    policies
        .iter()
        .filter(|p| p.matches_exchange(name))
        .min_by(|a, b| match b.priority.cmp(&a.priority) {
            Ordering::Equal => a.name.cmp(&b.name),
            o => o,
        })
}

/// A queue's declared arguments merged with its policy's definition (see the module
/// documentation for the rules). Without a policy: the declared arguments.
pub fn effective_arguments(policy: Option<&Policy>, declared: &FieldTable) -> FieldTable {
    let mut out = declared.clone();
    let Some(p) = policy else { return out };
    let quorum = is_quorum(declared);
    for (k, v) in p.definition.iter() {
        let Some((arg, merge)) = key(k).and_then(|k| k.arg) else {
            continue;
        };
        let merged = match (declared.get(arg), merge) {
            (None, _) => v.clone(),
            (Some(d), Merge::Min) => match (integer(d), integer(v)) {
                (Ok(a), Ok(b)) if b < a => v.clone(),
                _ => d.clone(),
            },
            (Some(d), Merge::DeliveryLimit) => match (integer(d), integer(v)) {
                (Ok(a), Ok(b)) if (a < 0 || b < 0) && b > a => v.clone(),
                (Ok(a), Ok(b)) if a >= 0 && b >= 0 && b < a => v.clone(),
                _ => d.clone(),
            },
            (Some(_), Merge::Overflow) if quorum => v.clone(),
            (Some(d), Merge::ArgWins | Merge::Overflow) => d.clone(),
        };
        out.insert(arg, merged);
    }
    // A routing key without an exchange (policy key alone) has nothing to route through.
    if out.get("x-dead-letter-exchange").is_none() {
        out.remove("x-dead-letter-routing-key");
    }
    out
}

/// A queue's effective parsed arguments under the vhost's `policies`, and the policy applied.
/// Fails only if the merged arguments do not parse (the caller keeps the declared ones).
pub fn effective_queue_args<'a>(
    policies: &'a [Policy],
    name: &str,
    vhost: &str,
    declared: &FieldTable,
) -> (Option<&'a Policy>, AmqpResult<QueueArgs>) {
    let p = queue_policy(policies, name, declared);
    let args = effective_arguments(p, declared);
    (p, QueueArgs::parse(&args, name, vhost))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, FieldValue)]) -> FieldTable {
        let mut t = FieldTable::new();
        for (k, v) in entries {
            t.insert(*k, v.clone());
        }
        t
    }

    fn policy(name: &str, pattern: &str, priority: i64, def: &[(&str, FieldValue)]) -> Policy {
        Policy::new(name, pattern, ApplyTo::Queues, priority, table(def)).unwrap()
    }

    fn s(v: &str) -> FieldValue {
        FieldValue::str(v)
    }

    #[test]
    fn pattern_is_unanchored_and_apply_to_filters_types() {
        let p = policy("p", "orders", 0, &[("max-length", FieldValue::I64(1))]);
        assert!(p.matches_queue("orders", false));
        assert!(p.matches_queue("eu.orders.v2", false));
        assert!(!p.matches_queue("payments", false));
        let anchored = policy("a", "^orders$", 0, &[("max-length", FieldValue::I64(1))]);
        assert!(!anchored.matches_queue("eu.orders", false));
        let classic = Policy::new(
            "c",
            ".*",
            ApplyTo::ClassicQueues,
            0,
            table(&[("max-length", FieldValue::I64(1))]),
        )
        .unwrap();
        assert!(classic.matches_queue("q", false));
        assert!(!classic.matches_queue("q", true));
        let x = Policy::new(
            "x",
            ".*",
            ApplyTo::Exchanges,
            0,
            table(&[("alternate-exchange", s("ae"))]),
        )
        .unwrap();
        assert!(!x.matches_queue("q", false));
        assert!(x.matches_exchange("amq.direct"));
        assert_eq!(ApplyTo::parse("quorum_queues").unwrap(), ApplyTo::QuorumQueues);
        assert!(ApplyTo::parse("topics").unwrap_err().0.contains("unrecognised"));
    }

    #[test]
    fn highest_priority_wins_and_ties_go_to_the_smallest_name() {
        let ps = vec![
            policy("low", "^q", 1, &[("max-length", FieldValue::I64(1))]),
            policy("high", "^q", 5, &[("max-length", FieldValue::I64(2))]),
            policy("other", "^z", 9, &[("max-length", FieldValue::I64(3))]),
        ];
        let none = FieldTable::new();
        assert_eq!(queue_policy(&ps, "q1", &none).unwrap().name, "high");
        assert!(queue_policy(&ps, "a", &none).is_none());
        let ties = vec![
            policy("b", ".*", 0, &[("max-length", FieldValue::I64(1))]),
            policy("a", ".*", 0, &[("max-length", FieldValue::I64(2))]),
        ];
        assert_eq!(queue_policy(&ties, "q", &none).unwrap().name, "a");
        let negative = vec![
            policy("blanket", ".*", -1, &[("max-length", FieldValue::I64(1))]),
            policy("zero", ".*", 0, &[("max-length", FieldValue::I64(2))]),
        ];
        assert_eq!(queue_policy(&negative, "q", &none).unwrap().name, "zero");
    }

    #[test]
    fn policy_fills_in_missing_arguments() {
        let p = policy(
            "dlx",
            ".*",
            0,
            &[
                ("dead-letter-exchange", s("dlx")),
                ("dead-letter-routing-key", s("dead")),
                ("message-ttl", FieldValue::I64(500)),
                ("queue-mode", s("lazy")),
            ],
        );
        let (applied, args) = effective_queue_args(std::slice::from_ref(&p), "q", "/", &FieldTable::new());
        assert_eq!(applied.unwrap().name, "dlx");
        let args = args.unwrap();
        assert_eq!(args.dead_letter_exchange.as_deref(), Some("dlx"));
        assert_eq!(args.dead_letter_routing_key.as_deref(), Some("dead"));
        assert_eq!(args.message_ttl, Some(500));
    }

    #[test]
    fn numeric_limits_take_the_lower_value_others_keep_the_argument() {
        let p = policy(
            "p",
            ".*",
            0,
            &[
                ("max-length", FieldValue::I64(10)),
                ("max-length-bytes", FieldValue::I64(5000)),
                ("message-ttl", FieldValue::I64(1000)),
                ("expires", FieldValue::I64(60_000)),
                ("dead-letter-exchange", s("policy-dlx")),
                ("overflow", s("reject-publish")),
            ],
        );
        let declared = table(&[
            ("x-max-length", FieldValue::I32(5)),
            ("x-max-length-bytes", FieldValue::I64(100_000)),
            ("x-message-ttl", FieldValue::I64(100)),
            ("x-expires", FieldValue::I64(120_000)),
            ("x-dead-letter-exchange", s("arg-dlx")),
            ("x-overflow", s("drop-head")),
        ]);
        let t = effective_arguments(Some(&p), &declared);
        assert_eq!(t.get("x-max-length").and_then(FieldValue::as_i64), Some(5));
        assert_eq!(
            t.get("x-max-length-bytes").and_then(FieldValue::as_i64),
            Some(5000)
        );
        assert_eq!(t.get("x-message-ttl").and_then(FieldValue::as_i64), Some(100));
        assert_eq!(t.get("x-expires").and_then(FieldValue::as_i64), Some(60_000));
        assert_eq!(
            t.get("x-dead-letter-exchange").and_then(FieldValue::as_str),
            Some("arg-dlx")
        );
        assert_eq!(
            t.get("x-overflow").and_then(FieldValue::as_str),
            Some("drop-head")
        );
        // On a quorum queue the policy's overflow wins.
        let mut q = declared.clone();
        q.insert("x-queue-type", s("quorum"));
        let t = effective_arguments(Some(&p), &q);
        assert_eq!(
            t.get("x-overflow").and_then(FieldValue::as_str),
            Some("reject-publish")
        );
        // Without a policy the declared arguments stand.
        assert_eq!(effective_arguments(None, &declared), declared);
    }

    #[test]
    fn delivery_limit_prefers_a_limit_over_unlimited() {
        let limit = |pol: i64, arg: Option<i64>| {
            let p = policy("p", ".*", 0, &[("delivery-limit", FieldValue::I64(pol))]);
            let declared = match arg {
                Some(a) => table(&[("x-delivery-limit", FieldValue::I64(a))]),
                None => FieldTable::new(),
            };
            QueueArgs::parse(&effective_arguments(Some(&p), &declared), "q", "/")
                .unwrap()
                .delivery_limit
        };
        assert_eq!(limit(5, Some(10)), Some(5));
        assert_eq!(limit(10, Some(5)), Some(5));
        assert_eq!(limit(5, Some(-1)), Some(5));
        assert_eq!(limit(-1, Some(7)), Some(7));
        assert_eq!(limit(3, None), Some(3));
    }

    #[test]
    fn extensions_apply_and_routing_key_alone_is_dropped() {
        let p = policy(
            "retry",
            ".*",
            0,
            &[
                ("delayed-retry-type", s("failed")),
                ("delayed-retry-min", FieldValue::I64(100)),
                ("delayed-retry-multiplier", FieldValue::F64(2.0)),
                ("dead-letter-routing-key", s("k")),
            ],
        );
        let t = effective_arguments(Some(&p), &FieldTable::new());
        assert!(t.get("x-dead-letter-routing-key").is_none());
        let a = QueueArgs::parse(&t, "q", "/").unwrap();
        let r = a.delayed_retry.unwrap();
        assert_eq!((r.min_ms, r.multiplier), (100, Some(2.0)));
    }

    fn queue_with(n: u8) -> crate::queue::QueueState {
        let mut q = crate::queue::QueueState::new("q", QueueArgs::default());
        let mut fx = crate::queue::Effects::default();
        for i in 0..n {
            let m = crate::Message::new("", "q", Default::default(), bytes::Bytes::from(vec![i]));
            q.publish(std::sync::Arc::new(m), 1_000, None, &mut fx);
        }
        q
    }

    fn args_of(p: &Policy) -> QueueArgs {
        QueueArgs::parse(&effective_arguments(Some(p), &FieldTable::new()), "q", "/").unwrap()
    }

    #[test]
    fn reconfigure_trims_a_live_queue_with_drop_head() {
        use crate::deadletter::DeadReason;
        let mut q = queue_with(5);
        let p = policy(
            "p",
            ".*",
            0,
            &[
                ("max-length", FieldValue::I64(2)),
                ("dead-letter-exchange", s("dlx")),
            ],
        );
        let mut fx = crate::queue::Effects::default();
        q.reconfigure(args_of(&p), 2_000, &mut fx);
        assert_eq!(q.message_count(), 2);
        let dropped: Vec<u8> = fx.dead_letters.iter().map(|(m, _)| m.body[0]).collect();
        assert_eq!(dropped, [0, 1, 2], "oldest first");
        assert!(fx.dead_letters.iter().all(|(_, r)| *r == DeadReason::Maxlen));
        let (d, left) = q
            .get(
                crate::ids::ChannelKey::new(crate::ids::ConnId(0), 1),
                true,
                2_000,
                &mut fx,
            )
            .unwrap();
        assert_eq!((d.msg.body[0], left), (3, 1));
        // Clearing the policy lifts the limit and the dead-letter exchange.
        q.reconfigure(QueueArgs::default(), 2_000, &mut fx);
        assert_eq!(q.args(), &QueueArgs::default());
    }

    #[test]
    fn reconfigure_with_reject_publish_keeps_messages_and_refuses_new_ones() {
        use crate::queue::Published;
        let mut q = queue_with(3);
        let p = policy(
            "p",
            ".*",
            0,
            &[
                ("max-length", FieldValue::I64(1)),
                ("overflow", s("reject-publish")),
            ],
        );
        let mut fx = crate::queue::Effects::default();
        q.reconfigure(args_of(&p), 2_000, &mut fx);
        assert_eq!(q.message_count(), 3);
        assert!(fx.dead_letters.is_empty());
        let m = crate::Message::new("", "q", Default::default(), bytes::Bytes::from_static(b"x"));
        assert_eq!(
            q.publish(std::sync::Arc::new(m), 2_000, None, &mut fx),
            Published::Rejected
        );
    }

    #[test]
    fn reconfigure_ttl_applies_to_new_messages_and_keeps_fixed_settings() {
        let declared = QueueArgs {
            max_priority: Some(5),
            ..Default::default()
        };
        let mut q = crate::queue::QueueState::new("q", declared);
        let mut fx = crate::queue::Effects::default();
        let old = crate::Message::new("", "q", Default::default(), bytes::Bytes::from_static(b"old"));
        q.publish(std::sync::Arc::new(old), 1_000, None, &mut fx);
        let p = policy("p", ".*", 0, &[("message-ttl", FieldValue::I64(100))]);
        q.reconfigure(args_of(&p), 1_000, &mut fx);
        assert_eq!(
            q.args().max_priority,
            Some(5),
            "a policy cannot change x-max-priority"
        );
        let new = crate::Message::new("", "q", Default::default(), bytes::Bytes::from_static(b"new"));
        q.publish(std::sync::Arc::new(new), 1_000, None, &mut fx);
        assert_eq!(q.next_deadline(), None, "the old head has no expiry");
        q.tick(5_000, &mut fx);
        assert_eq!(q.message_count(), 2, "expiry is checked at the head, as RabbitMQ");
        let (d, _) = q
            .get(
                crate::ids::ChannelKey::new(crate::ids::ConnId(0), 1),
                true,
                5_000,
                &mut fx,
            )
            .unwrap();
        assert_eq!(&d.msg.body[..], b"old");
        q.tick(5_000, &mut fx);
        assert_eq!(
            q.message_count(),
            0,
            "the new message expired under the policy's TTL"
        );
    }

    #[test]
    fn mirroring_keys_from_3x_exports_are_accepted_without_effect() {
        let p = policy(
            "ha-all",
            ".*",
            0,
            &[
                ("ha-mode", s("all")),
                ("ha-sync-mode", s("automatic")),
                ("max-length", FieldValue::I64(9)),
            ],
        );
        assert_eq!(p.ineffective_keys(), ["ha-mode", "ha-sync-mode"]);
        assert_eq!(
            p.queue_arguments(),
            table(&[("x-max-length", FieldValue::I64(9))])
        );
        let e = Policy::new("p", ".*", ApplyTo::All, 0, table(&[("ha-mode", s("some"))])).unwrap_err();
        assert_eq!(e.0, "<<\"some\">> is not a valid ha-mode value");
    }

    #[test]
    fn validation_errors_read_like_rabbitmq() {
        let bad =
            |def: &[(&str, FieldValue)]| Policy::new("p", ".*", ApplyTo::All, 0, table(def)).unwrap_err().0;
        assert_eq!(
            bad(&[("max-length", s("ten"))]),
            "<<\"ten\">> is not a valid maximum length"
        );
        assert_eq!(
            bad(&[("message-ttl", FieldValue::I64(-1))]),
            "-1 is not a valid message TTL"
        );
        assert_eq!(
            bad(&[("expires", FieldValue::I64(0))]),
            "0 is not a valid queue expiry"
        );
        assert_eq!(
            bad(&[("overflow", s("explode"))]),
            "<<\"explode\">> is not a valid overflow value"
        );
        assert_eq!(
            bad(&[("dead-letter-exchange", FieldValue::I64(1))]),
            "1 is not a valid dead letter exchange name"
        );
        assert_eq!(
            bad(&[("bogus", s("x"))]),
            "[{<<\"bogus\">>,<<\"x\">>}] are not recognised policy settings"
        );
        assert_eq!(bad(&[]), "no policy provided");
        assert!(bad(&[("delayed-retry-multiplier", FieldValue::F64(0.5))]).contains("multiplier"));
        let e = Policy::new(
            "p",
            "(",
            ApplyTo::All,
            0,
            table(&[("max-length", FieldValue::I64(1))]),
        )
        .unwrap_err();
        assert!(e.0.starts_with("pattern should be a valid regex"), "{e}");
        assert_eq!(e.rabbit_text(), format!("Validation failed\n\n{}\n", e.0));
    }
}
