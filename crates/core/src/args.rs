//! Queue arguments (`x-message-ttl`, `x-dead-letter-exchange`, `x-max-length`, `x-overflow`,
//! `x-delivery-limit`, `x-delayed-retry-*`, `x-message-group-header`, `x-deduplication-*`, …): parsing, type validation with RabbitMQ's
//! error texts, and the equivalence check used when a queue is redeclared.

use warren_codec::{FieldTable, FieldValue, ShortStr};

use crate::dedup::{self, IdSource};
use crate::error::{AmqpError, AmqpResult};

/// What happens when a queue is full (`x-overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop (dead-letter) the oldest ready message.
    #[default]
    DropHead,
    /// Refuse the new message (basic.nack to confirm-mode publishers).
    RejectPublish,
    /// Refuse and dead-letter the new message.
    RejectPublishDlx,
}

/// Which returns count towards `x-delivery-limit` (`x-delivery-limit-counts`, our extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitCounts {
    /// Failed deliveries only (RabbitMQ 4.3: reject with requeue, consumer lost).
    #[default]
    Failed,
    /// Every return to the queue, nack included (RabbitMQ 4.0–4.2).
    All,
}

/// Which returns are delayed (`x-delayed-retry-type`, RabbitMQ 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetryType {
    /// No delay.
    #[default]
    Disabled,
    /// Every return.
    All,
    /// Failed deliveries only.
    Failed,
    /// Returns that were not failures (nack with requeue).
    Returned,
}

/// Delayed-retry settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DelayedRetry {
    /// Which returns are delayed.
    pub kind: RetryType,
    /// `x-delayed-retry-min` (ms).
    pub min_ms: u64,
    /// `x-delayed-retry-max` (ms).
    pub max_ms: u64,
    /// `x-delayed-retry-multiplier` (our extension): exponential instead of linear.
    pub multiplier: Option<f64>,
}

impl DelayedRetry {
    /// The delay before the `count`-th redelivery (count ≥ 1).
    pub fn delay_ms(&self, count: u32) -> u64 {
        let count = count.max(1);
        let d = match self.multiplier {
            Some(m) => (self.min_ms as f64) * m.powi(count as i32 - 1),
            None => (self.min_ms as f64) * count as f64,
        };
        if d.is_finite() {
            (d as u64).min(self.max_ms)
        } else {
            self.max_ms
        }
    }
}

/// Parsed queue arguments.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueArgs {
    /// `x-message-ttl` (ms).
    pub message_ttl: Option<u64>,
    /// `x-expires` (ms).
    pub expires: Option<u64>,
    /// `x-max-length`.
    pub max_length: Option<u64>,
    /// `x-max-length-bytes`.
    pub max_length_bytes: Option<u64>,
    /// `x-overflow`.
    pub overflow: Overflow,
    /// `x-dead-letter-exchange`.
    pub dead_letter_exchange: Option<ShortStr>,
    /// `x-dead-letter-routing-key`.
    pub dead_letter_routing_key: Option<ShortStr>,
    /// `x-dead-letter-strategy` is `at-most-once` (the default for a durable queue here is
    /// at-least-once; see the server's dead-lettering).
    pub dead_letter_at_most_once: bool,
    /// `x-delivery-limit` (None = unlimited).
    pub delivery_limit: Option<u32>,
    /// `x-delivery-limit-counts`.
    pub limit_counts: LimitCounts,
    /// `x-delayed-retry-*`.
    pub delayed_retry: Option<DelayedRetry>,
    /// `x-single-active-consumer`.
    pub single_active_consumer: bool,
    /// `x-max-priority`.
    pub max_priority: Option<u8>,
    /// `x-queue-type` is `quorum`.
    pub quorum: bool,
    /// `x-message-group-header` (our extension): the header whose value groups messages.
    pub message_group_header: Option<ShortStr>,
    /// `x-deduplication-window` (ms) and where ids come from (`x-deduplication-header`, our
    /// extension).
    pub deduplication: Option<(u64, IdSource)>,
}

/// RabbitMQ's name for a field value's type, used in error texts.
pub fn type_name(v: &FieldValue) -> &'static str {
    match v {
        FieldValue::Bool(_) => "bool",
        FieldValue::I8(_) => "byte",
        FieldValue::U8(_) => "unsignedbyte",
        FieldValue::I16(_) => "short",
        FieldValue::U16(_) => "unsignedshort",
        FieldValue::I32(_) => "signedint",
        FieldValue::U32(_) => "unsignedint",
        FieldValue::I64(_) => "long",
        FieldValue::F32(_) => "float",
        FieldValue::F64(_) => "double",
        FieldValue::Decimal { .. } => "decimal",
        FieldValue::LongStr(_) => "longstr",
        FieldValue::Array(_) => "array",
        FieldValue::Timestamp(_) => "timestamp",
        FieldValue::Table(_) => "table",
        FieldValue::Void => "void",
        FieldValue::ByteArray(_) => "binary",
    }
}

/// A numeric field value as a number: every AMQP integer type, `f`, `d` and `D` (decimal,
/// which Python clients send for `Decimal`). `None` for other types.
pub fn number(v: &FieldValue) -> Option<f64> {
    match *v {
        FieldValue::F32(f) => Some(f.into()),
        FieldValue::F64(f) => Some(f),
        FieldValue::Decimal { scale, value } => Some(f64::from(value) / 10f64.powi(scale.into())),
        ref other => other.as_i64().map(|i| i as f64),
    }
}

/// A numeric field value where an integer is meant: every AMQP integer type, and `f`, `d`
/// and `D` holding a whole number (`2.0`). `Err` is the `{…}` reason of RabbitMQ's
/// invalid-arg text: `{unacceptable_type,T}` for a non-number, `{value_not_integral,V}` for
/// a fraction.
pub fn integer(v: &FieldValue) -> Result<i64, String> {
    // 2^63: the first f64 past i64::MAX.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    let whole = match *v {
        FieldValue::F32(_) | FieldValue::F64(_) => number(v)
            .filter(|f| f.fract() == 0.0 && (-LIMIT..LIMIT).contains(f))
            .map(|f| f as i64),
        FieldValue::Decimal { scale, value } => match 10i64.checked_pow(scale.into()) {
            Some(p) if i64::from(value) % p == 0 => Some(i64::from(value) / p),
            None if value == 0 => Some(0),
            _ => None,
        },
        ref other => match other.as_i64() {
            Some(i) => return Ok(i),
            None => return Err(format!("{{unacceptable_type,{}}}", type_name(other))),
        },
    };
    whole.ok_or_else(|| format!("{{value_not_integral,{}}}", render(v)))
}

/// Whether two values are the same number whatever their types (`10` ≡ `10.0` ≡ decimal 10).
pub fn same_number(a: &FieldValue, b: &FieldValue) -> bool {
    match (integer(a), integer(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => matches!((number(a), number(b)), (Some(x), Some(y)) if x == y),
    }
}

/// A value rendered for error texts.
pub fn render(v: &FieldValue) -> String {
    match v {
        FieldValue::LongStr(b) | FieldValue::ByteArray(b) => String::from_utf8_lossy(b).into_owned(),
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::F32(f) => f.to_string(),
        FieldValue::F64(f) => f.to_string(),
        FieldValue::Decimal { .. } => number(v).unwrap_or_default().to_string(),
        other => other
            .as_i64()
            .map(|i| i.to_string())
            .unwrap_or_else(|| format!("{other:?}")),
    }
}

/// Arguments whose values must match on redeclare (RabbitMQ's consistent-args list).
pub const EQUIVALENCE_ARGS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-type",
    "x-single-active-consumer",
    "x-delivery-limit",
    "x-delivery-limit-counts",
    "x-delayed-retry-type",
    "x-delayed-retry-min",
    "x-delayed-retry-max",
    "x-delayed-retry-multiplier",
    "x-message-group-header",
    "x-deduplication-window",
    "x-deduplication-header",
];

/// Arguments RabbitMQ 3.10 refuses on a quorum queue (`invalid arg 'x-queue-mode' for queue
/// 'q' in vhost '/' of queue type rabbit_quorum_queue`, checked side by side): classic and stream
/// queue arguments. Warren's own extensions (deduplication, message groups, delayed retry) are
/// not among them: they work on quorum queues too. Nor is `x-max-priority`, which RabbitMQ 4.3
/// takes on a quorum queue (strict priorities, at most [`QUORUM_MAX_PRIORITY`]).
const NOT_FOR_QUORUM: &[&str] = &[
    "x-queue-mode",
    "x-queue-master-locator",
    "x-queue-version",
    "x-max-age",
    "x-initial-cluster-size",
    "x-stream-max-segment-size-bytes",
];

/// The highest priority level of a quorum queue (RabbitMQ 4.3: levels 0–31, higher priorities
/// count as 31): a larger `x-max-priority` is taken as this.
pub const QUORUM_MAX_PRIORITY: u8 = 31;

/// Arguments RabbitMQ 3.10 refuses on a classic queue: quorum and stream queue arguments, except
/// those Warren gives classic queues too (`x-delivery-limit`, `x-dead-letter-strategy`; see
/// docs/compatibility.md).
const NOT_FOR_CLASSIC: &[&str] = &[
    "x-quorum-initial-group-size",
    "x-queue-leader-locator",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-age",
    "x-initial-cluster-size",
    "x-stream-max-segment-size-bytes",
];

fn invalid(arg: &str, queue: &str, vhost: &str, why: String) -> AmqpError {
    AmqpError::precondition(format!(
        "invalid arg '{arg}' for queue '{queue}' in vhost '{vhost}': {why}"
    ))
}

impl QueueArgs {
    /// Parses and validates `x-…` queue arguments. Unknown arguments are ignored, as RabbitMQ.
    pub fn parse(args: &FieldTable, queue: &str, vhost: &str) -> AmqpResult<QueueArgs> {
        let mut q = QueueArgs::default();
        // A non-negative integer of any numeric type (RabbitMQ's check_non_neg_int_arg).
        let int = |name: &str| -> AmqpResult<Option<u64>> {
            match args.get(name).map(integer) {
                None => Ok(None),
                Some(Ok(i)) if i >= 0 => Ok(Some(i as u64)),
                Some(Ok(i)) => Err(invalid(name, queue, vhost, format!("{{value_negative,{i}}}"))),
                Some(Err(why)) => Err(invalid(name, queue, vhost, why)),
            }
        };
        let string = |name: &str| -> AmqpResult<Option<ShortStr>> {
            match args.get(name) {
                None => Ok(None),
                Some(v) => match v.as_str() {
                    Some(s) if s.len() <= 255 => Ok(Some(ShortStr::from(s))),
                    _ => Err(invalid(
                        name,
                        queue,
                        vhost,
                        format!("{{unacceptable_type,{}}}", type_name(v)),
                    )),
                },
            }
        };
        q.message_ttl = int("x-message-ttl")?;
        q.expires = int("x-expires")?;
        if q.expires == Some(0) {
            return Err(invalid("x-expires", queue, vhost, "{value_zero,0}".into()));
        }
        q.max_length = int("x-max-length")?;
        q.max_length_bytes = int("x-max-length-bytes")?;
        q.overflow = match string("x-overflow")?.as_deref() {
            None | Some("drop-head") => Overflow::DropHead,
            Some("reject-publish") => Overflow::RejectPublish,
            Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
            Some(other) => {
                return Err(invalid(
                    "x-overflow",
                    queue,
                    vhost,
                    format!("{{invalid_value,{other}}}"),
                ));
            }
        };
        q.dead_letter_exchange = string("x-dead-letter-exchange")?;
        q.dead_letter_routing_key = string("x-dead-letter-routing-key")?;
        if q.dead_letter_routing_key.is_some() && q.dead_letter_exchange.is_none() {
            return Err(AmqpError::precondition(format!(
                "invalid arg 'x-dead-letter-routing-key' for queue '{queue}' in vhost '{vhost}': \
                 Key x-dead-letter-exchange should be specified"
            )));
        }
        q.dead_letter_at_most_once = match string("x-dead-letter-strategy")?.as_deref() {
            None | Some("at-least-once") => false,
            Some("at-most-once") => true,
            Some(other) => {
                return Err(invalid(
                    "x-dead-letter-strategy",
                    queue,
                    vhost,
                    format!("{{invalid_value,{other}}}"),
                ));
            }
        };
        q.quorum = match string("x-queue-type")?.as_deref() {
            None | Some("classic") => false,
            Some("quorum") => true,
            Some(other) => {
                return Err(invalid(
                    "x-queue-type",
                    queue,
                    vhost,
                    format!("{{unsupported_queue_type,{other}}}"),
                ));
            }
        };
        q.delivery_limit = match args.get("x-delivery-limit").map(integer) {
            None => q.quorum.then_some(20),
            Some(Ok(i)) if i < 0 => None,
            Some(Ok(i)) => Some(i.min(u32::MAX as i64) as u32),
            Some(Err(why)) => return Err(invalid("x-delivery-limit", queue, vhost, why)),
        };
        q.limit_counts = match string("x-delivery-limit-counts")?.as_deref() {
            None | Some("failed") => LimitCounts::Failed,
            Some("all") => LimitCounts::All,
            Some(other) => {
                return Err(invalid(
                    "x-delivery-limit-counts",
                    queue,
                    vhost,
                    format!("{{invalid_value,{other}}}"),
                ));
            }
        };
        let kind = match string("x-delayed-retry-type")?.as_deref() {
            None | Some("disabled") => RetryType::Disabled,
            Some("all") => RetryType::All,
            Some("failed") => RetryType::Failed,
            Some("returned") => RetryType::Returned,
            Some(other) => {
                return Err(invalid(
                    "x-delayed-retry-type",
                    queue,
                    vhost,
                    format!("{{invalid_value,{other}}}"),
                ));
            }
        };
        let min = int("x-delayed-retry-min")?;
        let max = int("x-delayed-retry-max")?;
        let multiplier = match args.get("x-delayed-retry-multiplier") {
            None => None,
            Some(v) => match number(v) {
                Some(f) if f >= 1.0 && f.is_finite() => Some(f),
                _ => {
                    return Err(invalid(
                        "x-delayed-retry-multiplier",
                        queue,
                        vhost,
                        format!("{{invalid_value,{}}}", render(v)),
                    ));
                }
            },
        };
        if kind != RetryType::Disabled {
            let min_ms = min.unwrap_or(1000);
            q.delayed_retry = Some(DelayedRetry {
                kind,
                min_ms,
                max_ms: max.unwrap_or(min_ms.saturating_mul(60)).max(min_ms),
                multiplier,
            });
        }
        q.single_active_consumer = match args.get("x-single-active-consumer") {
            None => false,
            Some(FieldValue::Bool(b)) => *b,
            Some(v) => {
                return Err(invalid(
                    "x-single-active-consumer",
                    queue,
                    vhost,
                    format!("{{unacceptable_type,{}}}", type_name(v)),
                ));
            }
        };
        q.max_priority = match int("x-max-priority")? {
            None => None,
            Some(p) if p <= 255 => Some(p as u8),
            Some(p) => {
                return Err(invalid(
                    "x-max-priority",
                    queue,
                    vhost,
                    format!("{{max_value_exceeded,{p}}}"),
                ));
            }
        };
        if q.quorum {
            q.max_priority = q.max_priority.map(|p| p.min(QUORUM_MAX_PRIORITY));
        }
        q.message_group_header = string("x-message-group-header")?;
        if q.message_group_header.as_deref() == Some("") {
            return Err(invalid(
                "x-message-group-header",
                queue,
                vhost,
                "{invalid_value,}".into(),
            ));
        }
        q.deduplication = dedup::parse_args(args).map_err(|(arg, why)| invalid(arg, queue, vhost, why))?;
        Ok(q)
    }

    /// Checks a client's declaration (`queue.declare`, `PUT /api/queues/…`) as RabbitMQ 3.10
    /// does beyond [`QueueArgs::parse`] (orders checked side by side with pika): the values of
    /// the arguments the queue's type takes, `x-queue-leader-locator`'s among them for a quorum
    /// queue, then an argument RabbitMQ knows for another queue type only (its value never
    /// looked at), all before a quorum queue's properties. Not applied to declarations read
    /// back from a definitions log or a Raft log: earlier builds accepted such arguments, and
    /// those queues must come back.
    pub fn check_declared(args: &FieldTable, queue: &str, vhost: &str) -> AmqpResult<()> {
        let quorum = args.get("x-queue-type").and_then(|v| v.as_str()) == Some("quorum");
        let (foreign, queue_type) = if quorum {
            (NOT_FOR_QUORUM, "rabbit_quorum_queue")
        } else {
            (NOT_FOR_CLASSIC, "rabbit_classic_queue")
        };
        let mut own = args.clone();
        for arg in foreign {
            own.remove(arg);
        }
        QueueArgs::parse(&own, queue, vhost)?;
        if let Some(v) = own.get("x-queue-leader-locator") {
            match v.as_str() {
                Some("client-local" | "balanced" | "random" | "least-leaders") => {}
                Some(_) => {
                    let why = "invalid_queue_locator_arg".to_string();
                    return Err(invalid("x-queue-leader-locator", queue, vhost, why));
                }
                None => {
                    let why = format!("{{unacceptable_type,{}}}", type_name(v));
                    return Err(invalid("x-queue-leader-locator", queue, vhost, why));
                }
            }
        }
        if let Some((arg, _)) = args.iter().find(|(k, _)| foreign.contains(k)) {
            return Err(AmqpError::precondition(format!(
                "invalid arg '{arg}' for queue '{queue}' in vhost '{vhost}' of queue type {queue_type}"
            )));
        }
        Ok(())
    }
}

/// Checks a redeclare's arguments against the existing queue's (RabbitMQ's consistent-args rule,
/// with `x-queue-type` `classic` equal to absent).
pub fn check_equivalent(
    current: &FieldTable,
    received: &FieldTable,
    queue: &str,
    vhost: &str,
) -> AmqpResult<()> {
    for name in EQUIVALENCE_ARGS {
        let norm = |t: &FieldTable| -> Option<FieldValue> {
            match t.get(name) {
                Some(v) if *name == "x-queue-type" && v.as_str() == Some("classic") => None,
                other => other.cloned(),
            }
        };
        let (c, r) = (norm(current), norm(received));
        let same = match (&c, &r) {
            (Some(a), Some(b)) => a == b || same_number(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            let desc = |v: &Option<FieldValue>| match v {
                None => "none".to_string(),
                Some(v) => format!("the value '{}' of type '{}'", render(v), type_name(v)),
            };
            return Err(AmqpError::precondition(format!(
                "inequivalent arg '{name}' for queue '{queue}' in vhost '{vhost}': received {} but current is {}",
                desc(&r),
                desc(&c)
            )));
        }
    }
    Ok(())
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

    #[test]
    fn string_max_length_is_406() {
        let e = QueueArgs::parse(&table(&[("x-max-length", FieldValue::str("10"))]), "q", "/").unwrap_err();
        assert_eq!(e.code.code(), 406);
        assert!(e.text.contains("x-max-length"), "{}", e.text);
    }

    #[test]
    fn arguments_of_another_queue_type_are_refused_with_rabbitmqs_texts() {
        let quorum = |k: &str, v: FieldValue| {
            QueueArgs::check_declared(
                &table(&[("x-queue-type", FieldValue::str("quorum")), (k, v)]),
                "q",
                "/",
            )
        };
        let text = |r: AmqpResult<()>| {
            let e = r.unwrap_err();
            assert_eq!(e.code.code(), 406);
            e.text
        };
        assert_eq!(
            text(quorum("x-queue-mode", FieldValue::str("lazy"))),
            "invalid arg 'x-queue-mode' for queue 'q' in vhost '/' of queue type rabbit_quorum_queue"
        );
        // A foreign argument's value is not looked at; the values of the type's own are, first.
        assert!(
            text(quorum("x-max-age", FieldValue::I64(-1))).ends_with("of queue type rabbit_quorum_queue")
        );
        let both = table(&[
            ("x-queue-type", FieldValue::str("quorum")),
            ("x-queue-mode", FieldValue::str("lazy")),
            ("x-message-ttl", FieldValue::I64(-1)),
        ]);
        assert_eq!(
            text(QueueArgs::check_declared(&both, "q", "/")),
            "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}"
        );
        assert_eq!(
            text(quorum("x-queue-leader-locator", FieldValue::str("min-masters"))),
            "invalid arg 'x-queue-leader-locator' for queue 'q' in vhost '/': invalid_queue_locator_arg"
        );
        assert_eq!(
            text(quorum("x-queue-leader-locator", FieldValue::I32(5))),
            "invalid arg 'x-queue-leader-locator' for queue 'q' in vhost '/': {unacceptable_type,signedint}"
        );
        for ok in ["client-local", "balanced", "random", "least-leaders"] {
            quorum("x-queue-leader-locator", FieldValue::str(ok)).unwrap();
        }
        // Warren's extensions and unknown arguments stay accepted on both types.
        quorum("x-deduplication-window", FieldValue::I64(1000)).unwrap();
        quorum("x-foo", FieldValue::str("bar")).unwrap();
        let classic = |k: &str, v: FieldValue| QueueArgs::check_declared(&table(&[(k, v)]), "q", "/");
        assert_eq!(
            text(classic("x-quorum-initial-group-size", FieldValue::I64(3))),
            "invalid arg 'x-quorum-initial-group-size' for queue 'q' in vhost '/' of queue type rabbit_classic_queue"
        );
        assert_eq!(
            text(classic("x-queue-leader-locator", FieldValue::str("client-local"))),
            "invalid arg 'x-queue-leader-locator' for queue 'q' in vhost '/' of queue type rabbit_classic_queue"
        );
        classic("x-delivery-limit", FieldValue::I64(5)).unwrap();
        classic("x-dead-letter-strategy", FieldValue::str("at-least-once")).unwrap();
        classic("x-max-priority", FieldValue::I64(5)).unwrap();
        // Declarations read back (no check_declared) keep what earlier builds accepted.
        let recorded = table(&[
            ("x-queue-type", FieldValue::str("quorum")),
            ("x-queue-mode", FieldValue::str("lazy")),
        ]);
        assert!(QueueArgs::parse(&recorded, "q", "/").unwrap().quorum);
    }

    #[test]
    fn a_quorum_queue_takes_x_max_priority_up_to_31_levels_as_rabbitmq_4_3() {
        let quorum = |p: i64| {
            let t = table(&[
                ("x-queue-type", FieldValue::str("quorum")),
                ("x-max-priority", FieldValue::I64(p)),
            ]);
            QueueArgs::check_declared(&t, "q", "/")?;
            QueueArgs::parse(&t, "q", "/").map(|a| a.max_priority)
        };
        assert_eq!(quorum(5).unwrap(), Some(5));
        assert_eq!(quorum(31).unwrap(), Some(31));
        assert_eq!(quorum(255).unwrap(), Some(QUORUM_MAX_PRIORITY));
        let e = quorum(256).unwrap_err();
        assert_eq!(
            e.text,
            "invalid arg 'x-max-priority' for queue 'q' in vhost '/': {max_value_exceeded,256}"
        );
        let classic = table(&[("x-max-priority", FieldValue::I64(255))]);
        assert_eq!(
            QueueArgs::parse(&classic, "q", "/").unwrap().max_priority,
            Some(255)
        );
    }

    #[test]
    fn quorum_defaults_to_limit_20_and_minus_one_disables() {
        let q = QueueArgs::parse(&table(&[("x-queue-type", FieldValue::str("quorum"))]), "q", "/").unwrap();
        assert_eq!(q.delivery_limit, Some(20));
        let q = QueueArgs::parse(
            &table(&[
                ("x-queue-type", FieldValue::str("quorum")),
                ("x-delivery-limit", FieldValue::I64(-1)),
            ]),
            "q",
            "/",
        )
        .unwrap();
        assert_eq!(q.delivery_limit, None);
    }

    #[test]
    fn retry_delays_linear_and_exponential() {
        let lin = DelayedRetry {
            kind: RetryType::All,
            min_ms: 100,
            max_ms: 350,
            multiplier: None,
        };
        assert_eq!([1, 2, 3, 4].map(|n| lin.delay_ms(n)), [100, 200, 300, 350]);
        let exp = DelayedRetry {
            multiplier: Some(2.0),
            max_ms: 1000,
            ..lin
        };
        assert_eq!(
            [1, 2, 3, 4, 5].map(|n| exp.delay_ms(n)),
            [100, 200, 400, 800, 1000]
        );
    }

    #[test]
    fn equivalence_ignores_classic_type_and_int_width() {
        let a = table(&[("x-message-ttl", FieldValue::I32(1000))]);
        let b = table(&[
            ("x-message-ttl", FieldValue::I64(1000)),
            ("x-queue-type", FieldValue::str("classic")),
        ]);
        check_equivalent(&a, &b, "q", "/").unwrap();
        let c = table(&[("x-message-ttl", FieldValue::I64(2000))]);
        let e = check_equivalent(&a, &c, "q", "/").unwrap_err();
        assert_eq!(e.code.code(), 406);
        assert!(
            e.text
                .starts_with("inequivalent arg 'x-message-ttl' for queue 'q'"),
            "{}",
            e.text
        );
    }
}
