//! Headers-exchange matching, with RabbitMQ's semantics.
//!
//! Modelled on RabbitMQ 3.13 / 4.x `rabbit_exchange_type_headers` (the map-based `match_all` /
//! `match_any` version) and `mc_amqpl:routing_headers/2`, which turns the message's header table
//! into a map of *untyped* values before matching.
//!
//! # Rules
//!
//! - `x-match` in the binding arguments selects the mode: `all` (also the default, and what
//!   any unrecognised value falls back to when matching — RabbitMQ's "legacy" behaviour for
//!   bindings created before validation existed), `any`, `all-with-x`, `any-with-x`.
//! - The `x-match` entry itself is never compared. Other binding entries whose key starts with
//!   `x-` are ignored in `all` / `any` mode and compared like any other entry in the `-with-x`
//!   modes.
//! - A binding entry of type void (`V`) matches when the header is present, whatever its value.
//! - Any other entry matches when the header is present and its value is equal (see below).
//! - `all`: every compared entry must match, so with no compared entries **every message
//!   matches** (even one without headers). `any`: at least one must match, so with no compared
//!   entries **nothing matches**.
//! - A message without a headers table is treated as having an empty one.
//! - If the message carries the same header key twice, the **last** occurrence counts
//!   (RabbitMQ folds the header list into a map). Duplicate keys in the binding arguments are
//!   each compared.
//!
//! # Value equality
//!
//! RabbitMQ drops the type tags of the message headers and compares the binding's value with
//! Erlang's exact equality `=:=` (`maps:get(K, Headers, undefined) =:= V`). Consequently:
//!
//! - **Integers of different widths and signedness match when their values are equal**:
//!   binding `I32(1)` matches header `I64(1)`, `U8(1)`, … (all decode to the Erlang integer 1).
//!   Timestamps are integers too, so `Timestamp(5)` and `I64(5)` match each other.
//! - Floats match floats of the same value whatever their width (`F32(1.5)` matches
//!   `F64(1.5)`; `F32(0.1)` does not match `F64(0.1)` since the widened `f32` differs). Floats are
//!   compared bit for bit, like `=:=` on OTP 27+ (so `0.0` and `-0.0` differ).
//! - An integer never matches a float (`1 =:= 1.0` is false), nor a string (`"1"`).
//! - Long strings (`S`) and byte arrays (`x`) are both Erlang binaries: equal bytes match.
//! - Booleans match booleans; decimals match decimals with the same scale and unscaled value.
//! - Arrays and tables keep their element type tags in RabbitMQ, so they match only an
//!   identical (same types, same order) array or table.
//! - A void header value matches only a void binding entry (presence).
//!
//! One deliberate divergence: RabbitMQ 4.x (`mc_amqpl:routing_value/2`) converts top-level
//! timestamp *headers* to milliseconds before matching but leaves binding values alone, so a
//! binding `Timestamp(t)` there no longer matches a header `Timestamp(t)`. Warren keeps seconds
//! on both sides (the pre-4.x behaviour), so identical timestamps match.

use warren_codec::types::{FieldTable, FieldValue};

/// The `x-match` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum XMatch {
    All,
    Any,
    AllWithX,
    AnyWithX,
}

impl XMatch {
    fn parse(v: &[u8]) -> Option<Self> {
        Some(match v {
            b"all" => XMatch::All,
            b"any" => XMatch::Any,
            b"all-with-x" => XMatch::AllWithX,
            b"any-with-x" => XMatch::AnyWithX,
            _ => return None,
        })
    }

    /// The mode of a binding: like RabbitMQ, anything but a valid long string means `all`.
    fn of(args: &FieldTable) -> Self {
        match args.get("x-match") {
            Some(FieldValue::LongStr(v)) => XMatch::parse(v).unwrap_or(XMatch::All),
            _ => XMatch::All,
        }
    }

    fn with_x(self) -> bool {
        matches!(self, XMatch::AllWithX | XMatch::AnyWithX)
    }
}

/// Whether a message with `headers` matches a headers-exchange binding with `binding_args`,
/// under RabbitMQ's rules (see the [module docs](self)).
pub fn headers_match(binding_args: &FieldTable, headers: Option<&FieldTable>) -> bool {
    let mode = XMatch::of(binding_args);
    let with_x = mode.with_x();
    let mut compared = binding_args.iter().filter(|(k, _)| {
        if with_x {
            *k != "x-match"
        } else {
            !k.starts_with("x-")
        }
    });
    let entry_matches = |(key, want): (&str, &FieldValue)| {
        let Some(got) = headers.and_then(|h| last_value(h, key)) else {
            return false;
        };
        matches!(want, FieldValue::Void) || values_match(want, got)
    };
    match mode {
        XMatch::All | XMatch::AllWithX => compared.all(entry_matches),
        XMatch::Any | XMatch::AnyWithX => compared.any(entry_matches),
    }
}

/// The value of the last entry under `key`, as RabbitMQ's header map would hold it.
fn last_value<'a>(table: &'a FieldTable, key: &str) -> Option<&'a FieldValue> {
    table.0.iter().rev().find(|(k, _)| &**k == key).map(|(_, v)| v)
}

/// A field value as RabbitMQ sees a routing header: the type tag gone, except inside arrays
/// and tables.
#[derive(PartialEq)]
enum Untyped<'a> {
    Int(i128),
    Float(u64),
    Binary(&'a [u8]),
    Bool(bool),
    Decimal(u8, i32),
    Void,
    Typed(&'a FieldValue),
}

fn untyped(v: &FieldValue) -> Untyped<'_> {
    match v {
        FieldValue::Timestamp(t) => Untyped::Int(i128::from(*t)),
        FieldValue::F32(f) => Untyped::Float(f64::from(*f).to_bits()),
        FieldValue::F64(f) => Untyped::Float(f.to_bits()),
        FieldValue::LongStr(b) | FieldValue::ByteArray(b) => Untyped::Binary(b),
        FieldValue::Bool(b) => Untyped::Bool(*b),
        FieldValue::Decimal { scale, value } => Untyped::Decimal(*scale, *value),
        FieldValue::Void => Untyped::Void,
        FieldValue::Array(_) | FieldValue::Table(_) => Untyped::Typed(v),
        _ => match v.as_i64() {
            Some(i) => Untyped::Int(i128::from(i)),
            None => Untyped::Typed(v),
        },
    }
}

/// RabbitMQ's `=:=` between a binding value and an (untyped) header value.
fn values_match(binding: &FieldValue, header: &FieldValue) -> bool {
    untyped(binding) == untyped(header)
}

/// Checks a headers-exchange binding's arguments as RabbitMQ's `validate_binding` does: `x-match`
/// may be absent, or a long string `all`, `any`, `all-with-x` or `any-with-x`.
///
/// The error is RabbitMQ's message text; the caller closes the channel with 406
/// PRECONDITION_FAILED and a reply text of `"PRECONDITION_FAILED - "` followed by it, e.g.
/// `PRECONDITION_FAILED - Invalid x-match field value <<"some">>; expected all, any, all-with-x,
/// or any-with-x`. Values are rendered the way Erlang's `~tp` prints them.
pub fn validate_binding_args(args: &FieldTable) -> Result<(), String> {
    match args.get("x-match") {
        None => Ok(()),
        Some(FieldValue::LongStr(v)) => match XMatch::parse(v) {
            Some(_) => Ok(()),
            None => Err(format!(
                "Invalid x-match field value {}; expected all, any, all-with-x, or any-with-x",
                erl_binary(v)
            )),
        },
        Some(other) => Err(format!(
            "Invalid x-match field type {} (value {}); expected longstr",
            type_atom(other),
            erl_value(other)
        )),
    }
}

/// RabbitMQ's type atom for a field value.
fn type_atom(v: &FieldValue) -> &'static str {
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

/// A field value's Erlang term as RabbitMQ holds it, printed like `~tp` (without line wrapping).
fn erl_value(v: &FieldValue) -> String {
    match v {
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::F32(f) => erl_float(f64::from(*f)),
        FieldValue::F64(f) => erl_float(*f),
        // RabbitMQ decodes the unscaled value as unsigned.
        FieldValue::Decimal { scale, value } => format!("{{{scale},{}}}", *value as u32),
        FieldValue::LongStr(b) | FieldValue::ByteArray(b) => erl_binary(b),
        FieldValue::Timestamp(t) => t.to_string(),
        FieldValue::Void => "undefined".to_owned(),
        FieldValue::Array(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|i| format!("{{{},{}}}", type_atom(i), erl_value(i)))
                .collect();
            format!("[{}]", items.join(","))
        }
        FieldValue::Table(t) => {
            let entries: Vec<String> = t
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{{{},{},{}}}",
                        erl_binary(k.as_bytes()),
                        type_atom(v),
                        erl_value(v)
                    )
                })
                .collect();
            format!("[{}]", entries.join(","))
        }
        other => other.as_i64().map(|i| i.to_string()).unwrap_or_default(),
    }
}

fn erl_float(f: f64) -> String {
    // Rust's shortest round-trip form agrees with Erlang's for ordinary values ("1.0", "0.1").
    format!("{f:?}")
}

/// A binary printed like Erlang's `~tp`: `<<"text">>`, `<<"tëxt"/utf8>>` or `<<1,2,3>>`.
fn erl_binary(b: &[u8]) -> String {
    if b.is_empty() {
        return "<<>>".to_owned();
    }
    let printable = |c: char| !c.is_control() || matches!(c, '\n' | '\r' | '\t');
    match std::str::from_utf8(b) {
        Ok(s) if s.chars().all(printable) => {
            let mut out = String::from("<<\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c => out.push(c),
                }
            }
            out.push('"');
            if !s.is_ascii() {
                out.push_str("/utf8");
            }
            out.push_str(">>");
            out
        }
        _ => {
            let bytes: Vec<String> = b.iter().map(|x| x.to_string()).collect();
            format!("<<{}>>", bytes.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn table(entries: &[(&str, FieldValue)]) -> FieldTable {
        FieldTable(entries.iter().map(|(k, v)| ((*k).into(), v.clone())).collect())
    }

    fn s(v: &str) -> FieldValue {
        FieldValue::str(v)
    }

    fn hm(binding: &[(&str, FieldValue)], headers: &[(&str, FieldValue)]) -> bool {
        headers_match(&table(binding), Some(&table(headers)))
    }

    #[test]
    fn all_is_the_default_and_requires_every_entry() {
        let b = [("a", s("1")), ("b", s("2"))];
        assert!(hm(&b, &[("a", s("1")), ("b", s("2"))]));
        assert!(hm(&b, &[("b", s("2")), ("z", s("x")), ("a", s("1"))]));
        assert!(!hm(&b, &[("a", s("1"))]));
        assert!(!hm(&b, &[("a", s("1")), ("b", s("3"))]));
        assert!(!headers_match(&table(&b), None));
        let explicit = [("x-match", s("all")), ("a", s("1")), ("b", s("2"))];
        assert!(hm(&explicit, &[("a", s("1")), ("b", s("2"))]));
        assert!(!hm(&explicit, &[("a", s("1"))]));
    }

    #[test]
    fn any_requires_one_entry() {
        let b = [("x-match", s("any")), ("a", s("1")), ("b", s("2"))];
        assert!(hm(&b, &[("a", s("1"))]));
        assert!(hm(&b, &[("a", s("0")), ("b", s("2"))]));
        assert!(!hm(&b, &[("a", s("0")), ("b", s("0"))]));
        assert!(!hm(&b, &[("c", s("1"))]));
        assert!(!headers_match(&table(&b), None));
    }

    #[test]
    fn no_compared_entries() {
        // all: vacuously true, even without headers; any: false.
        assert!(headers_match(&FieldTable::new(), None));
        assert!(hm(&[], &[("a", s("1"))]));
        assert!(hm(&[("x-match", s("all"))], &[]));
        assert!(hm(&[("x-match", s("all")), ("x-foo", s("1"))], &[]));
        assert!(hm(&[("x-match", s("all-with-x"))], &[]));
        assert!(!hm(&[("x-match", s("any"))], &[("a", s("1"))]));
        assert!(!headers_match(&table(&[("x-match", s("any"))]), None));
        assert!(!hm(
            &[("x-match", s("any")), ("x-foo", s("1"))],
            &[("x-foo", s("1"))]
        ));
        assert!(!hm(
            &[("x-match", s("any-with-x"))],
            &[("x-match", s("any-with-x"))]
        ));
    }

    #[test]
    fn x_keys_ignored_unless_with_x() {
        let all = [("x-foo", s("1")), ("a", s("1"))];
        assert!(hm(&all, &[("a", s("1"))]));
        assert!(hm(&all, &[("a", s("1")), ("x-foo", s("2"))]));
        let all_x = [("x-match", s("all-with-x")), ("x-foo", s("1")), ("a", s("1"))];
        assert!(!hm(&all_x, &[("a", s("1"))]));
        assert!(!hm(&all_x, &[("a", s("1")), ("x-foo", s("2"))]));
        assert!(hm(&all_x, &[("a", s("1")), ("x-foo", s("1"))]));
        let any = [("x-match", s("any")), ("x-foo", s("1")), ("a", s("1"))];
        assert!(!hm(&any, &[("x-foo", s("1"))]));
        let any_x = [("x-match", s("any-with-x")), ("x-foo", s("1")), ("a", s("1"))];
        assert!(hm(&any_x, &[("x-foo", s("1"))]));
        assert!(!hm(&any_x, &[("x-foo", s("2"))]));
        // Only the "x-" prefix counts: "x_foo" and "X-foo" are ordinary keys.
        assert!(!hm(&[("x_foo", s("1"))], &[]));
        assert!(!hm(&[("X-foo", s("1"))], &[]));
    }

    #[test]
    fn x_match_itself_is_never_compared() {
        // The header would not equal "all-with-x", yet the binding matches.
        let b = [("x-match", s("all-with-x")), ("a", s("1"))];
        assert!(hm(&b, &[("a", s("1")), ("x-match", s("any"))]));
        let b = [("x-match", s("any-with-x")), ("a", s("1"))];
        assert!(!hm(&b, &[("x-match", s("any-with-x"))]));
    }

    #[test]
    fn void_matches_presence() {
        let b = [("a", FieldValue::Void)];
        assert!(hm(&b, &[("a", s("anything"))]));
        assert!(hm(&b, &[("a", FieldValue::I32(7))]));
        assert!(hm(&b, &[("a", FieldValue::Void)]));
        assert!(hm(&b, &[("a", FieldValue::Array(vec![]))]));
        assert!(!hm(&b, &[("b", s("x"))]));
        assert!(!headers_match(&table(&b), None));
        let any = [("x-match", s("any")), ("a", FieldValue::Void), ("b", s("1"))];
        assert!(hm(&any, &[("a", FieldValue::Bool(false))]));
        // A void header value only satisfies a void (presence) binding entry.
        assert!(!hm(&[("a", s(""))], &[("a", FieldValue::Void)]));
        assert!(!hm(&[("a", FieldValue::Bool(false))], &[("a", FieldValue::Void)]));
    }

    #[test]
    fn integers_of_any_width_compare_by_value() {
        use FieldValue::*;
        assert!(hm(&[("n", I32(1))], &[("n", I64(1))]));
        assert!(hm(&[("n", I64(1))], &[("n", I32(1))]));
        assert!(hm(&[("n", U8(1))], &[("n", I16(1))]));
        assert!(hm(&[("n", I8(-1))], &[("n", I64(-1))]));
        assert!(hm(&[("n", U32(u32::MAX))], &[("n", I64(u32::MAX.into()))]));
        assert!(!hm(&[("n", U32(u32::MAX))], &[("n", I32(-1))]));
        assert!(!hm(&[("n", U8(255))], &[("n", I8(-1))]));
        assert!(hm(&[("t", Timestamp(5))], &[("t", Timestamp(5))]));
        assert!(hm(&[("t", Timestamp(5))], &[("t", I64(5))]));
        assert!(!hm(&[("n", I32(1))], &[("n", I32(2))]));
    }

    #[test]
    fn other_types_compare_like_erlang_exact_equality() {
        use FieldValue::*;
        // Integer vs float, integer vs string, integer vs bool: never equal.
        assert!(!hm(&[("n", I32(1))], &[("n", F64(1.0))]));
        assert!(!hm(&[("n", F64(1.0))], &[("n", I64(1))]));
        assert!(!hm(&[("n", I32(1))], &[("n", s("1"))]));
        assert!(!hm(&[("n", I8(1))], &[("n", Bool(true))]));
        // Floats of either width, by value.
        assert!(hm(&[("f", F32(1.5))], &[("f", F64(1.5))]));
        assert!(!hm(&[("f", F32(0.1))], &[("f", F64(0.1))]));
        assert!(hm(&[("f", F64(0.1))], &[("f", F64(0.1))]));
        // Strings and byte arrays are both binaries.
        assert!(hm(
            &[("s", s("abc"))],
            &[("s", ByteArray(Bytes::from_static(b"abc")))]
        ));
        assert!(!hm(&[("s", s("abc"))], &[("s", s("ABC"))]));
        assert!(hm(&[("s", s(""))], &[("s", s(""))]));
        assert!(hm(&[("b", Bool(true))], &[("b", Bool(true))]));
        assert!(!hm(&[("b", Bool(true))], &[("b", Bool(false))]));
        let d = |scale, value| Decimal { scale, value };
        assert!(hm(&[("d", d(2, 150))], &[("d", d(2, 150))]));
        assert!(!hm(&[("d", d(1, 15))], &[("d", d(2, 150))]));
        assert!(!hm(&[("d", d(0, 1))], &[("d", I32(1))]));
    }

    #[test]
    fn arrays_and_tables_compare_with_types() {
        use FieldValue::*;
        let a = |v: Vec<FieldValue>| Array(v);
        assert!(hm(
            &[("a", a(vec![I32(1), s("x")]))],
            &[("a", a(vec![I32(1), s("x")]))]
        ));
        assert!(!hm(&[("a", a(vec![I32(1)]))], &[("a", a(vec![I64(1)]))]));
        assert!(!hm(
            &[("a", a(vec![I32(1), I32(2)]))],
            &[("a", a(vec![I32(2), I32(1)]))]
        ));
        let t = |v: &[(&str, FieldValue)]| Table(table(v));
        assert!(hm(&[("t", t(&[("k", I32(1))]))], &[("t", t(&[("k", I32(1))]))]));
        assert!(!hm(&[("t", t(&[("k", I32(1))]))], &[("t", t(&[("k", U8(1))]))]));
        assert!(!hm(&[("t", t(&[]))], &[("t", a(vec![]))]));
    }

    #[test]
    fn duplicate_keys() {
        // Message headers: the last occurrence wins.
        assert!(hm(&[("a", s("2"))], &[("a", s("1")), ("a", s("2"))]));
        assert!(!hm(&[("a", s("1"))], &[("a", s("1")), ("a", s("2"))]));
        // Binding arguments: each entry is compared.
        assert!(!hm(&[("a", s("1")), ("a", s("2"))], &[("a", s("1"))]));
        assert!(hm(
            &[("x-match", s("any")), ("a", s("1")), ("a", s("2"))],
            &[("a", s("2"))]
        ));
    }

    #[test]
    fn invalid_x_match_falls_back_to_all_when_matching() {
        let b = [("x-match", s("ANY")), ("a", s("1")), ("b", s("2"))];
        assert!(!hm(&b, &[("a", s("1"))]));
        assert!(hm(&b, &[("a", s("1")), ("b", s("2"))]));
        let b = [("x-match", FieldValue::I32(1)), ("a", s("1")), ("b", s("2"))];
        assert!(!hm(&b, &[("a", s("1"))]));
        // The first x-match entry is the one that counts.
        let b = [
            ("x-match", s("any")),
            ("x-match", s("all")),
            ("a", s("1")),
            ("b", s("2")),
        ];
        assert!(hm(&b, &[("a", s("1"))]));
    }

    #[test]
    fn validation_accepts_the_four_modes_and_absence() {
        assert_eq!(validate_binding_args(&FieldTable::new()), Ok(()));
        assert_eq!(
            validate_binding_args(&table(&[("a", FieldValue::I32(1))])),
            Ok(())
        );
        for m in ["all", "any", "all-with-x", "any-with-x"] {
            assert_eq!(validate_binding_args(&table(&[("x-match", s(m))])), Ok(()), "{m}");
        }
        let bytes = FieldValue::ByteArray(Bytes::from_static(b"all"));
        assert!(validate_binding_args(&table(&[("x-match", bytes)])).is_err());
    }

    #[test]
    fn validation_error_texts() {
        let err = |v: FieldValue| validate_binding_args(&table(&[("x-match", v)])).unwrap_err();
        assert_eq!(
            err(s("some")),
            "Invalid x-match field value <<\"some\">>; expected all, any, all-with-x, or any-with-x"
        );
        assert_eq!(
            err(s("ALL")),
            "Invalid x-match field value <<\"ALL\">>; expected all, any, all-with-x, or any-with-x"
        );
        assert_eq!(
            err(s("")),
            "Invalid x-match field value <<>>; expected all, any, all-with-x, or any-with-x"
        );
        assert_eq!(
            err(s("tout\u{e9}")),
            "Invalid x-match field value <<\"tout\u{e9}\"/utf8>>; expected all, any, all-with-x, or any-with-x"
        );
        assert_eq!(
            err(FieldValue::LongStr(Bytes::from_static(&[0, 255]))),
            "Invalid x-match field value <<0,255>>; expected all, any, all-with-x, or any-with-x"
        );
        assert_eq!(
            err(FieldValue::I32(1)),
            "Invalid x-match field type signedint (value 1); expected longstr"
        );
        assert_eq!(
            err(FieldValue::Bool(true)),
            "Invalid x-match field type bool (value true); expected longstr"
        );
        assert_eq!(
            err(FieldValue::ByteArray(Bytes::from_static(b"all"))),
            "Invalid x-match field type binary (value <<\"all\">>); expected longstr"
        );
        assert_eq!(
            err(FieldValue::Void),
            "Invalid x-match field type void (value undefined); expected longstr"
        );
        assert_eq!(
            err(FieldValue::F64(1.0)),
            "Invalid x-match field type double (value 1.0); expected longstr"
        );
        assert_eq!(
            err(FieldValue::Array(vec![FieldValue::I8(1)])),
            "Invalid x-match field type array (value [{byte,1}]); expected longstr"
        );
    }
}
