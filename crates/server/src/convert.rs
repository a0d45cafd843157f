//! JSON ⇄ AMQP conversions in RabbitMQ's management-API style: field tables (queue and
//! binding arguments, message headers including `x-death`) and basic properties.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::{Map, Number, Value, json};
use warren_codec::{BasicProperties, FieldTable, FieldValue, ShortStr};

/// A field value as JSON (timestamps as integer seconds, decimals as numbers, binary that is
/// not UTF-8 as base64).
pub fn value_to_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::Bool(b) => Value::Bool(*b),
        FieldValue::F32(f) => Number::from_f64(*f as f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        FieldValue::F64(f) => Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null),
        FieldValue::Decimal { scale, value } => Number::from_f64(*value as f64 / 10f64.powi(*scale as i32))
            .map(Value::Number)
            .unwrap_or(Value::Null),
        FieldValue::LongStr(b) | FieldValue::ByteArray(b) => match std::str::from_utf8(b) {
            Ok(s) => Value::String(s.to_string()),
            Err(_) => Value::String(STANDARD.encode(b)),
        },
        FieldValue::Array(items) => Value::Array(items.iter().map(value_to_json).collect()),
        FieldValue::Timestamp(t) => json!(t),
        FieldValue::Table(t) => table_to_json(t),
        FieldValue::Void => Value::Null,
        other => other.as_i64().map(|i| json!(i)).unwrap_or(Value::Null),
    }
}

/// A field table as a JSON object (keys in table order).
pub fn table_to_json(t: &FieldTable) -> Value {
    let mut m = Map::new();
    for (k, v) in t.iter() {
        m.insert(k.to_string(), value_to_json(v));
    }
    Value::Object(m)
}

/// A JSON value as a field value, as RabbitMQ converts management-API input: integers become
/// `long`, other numbers `double`, strings `longstr`, objects tables, arrays arrays.
pub fn json_to_value(v: &Value) -> FieldValue {
    match v {
        Value::Null => FieldValue::Void,
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => FieldValue::I64(i),
            None => FieldValue::F64(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => FieldValue::str(s),
        Value::Array(items) => FieldValue::Array(items.iter().map(json_to_value).collect()),
        Value::Object(_) => FieldValue::Table(json_to_table(v).unwrap_or_default()),
    }
}

/// A JSON object (or null/absent) as a field table.
pub fn json_to_table(v: &Value) -> Result<FieldTable, String> {
    match v {
        Value::Null => Ok(FieldTable::new()),
        Value::Object(m) => {
            let mut t = FieldTable::new();
            for (k, v) in m {
                if k.len() > 255 {
                    return Err(format!("field name too long: {k}"));
                }
                t.insert(k.as_str(), json_to_value(v));
            }
            Ok(t)
        }
        other => Err(format!("expected a JSON object, got {other}")),
    }
}

/// Basic properties with RabbitMQ's JSON names (`delivery_mode`, `headers`, …); absent
/// properties are left out.
pub fn props_to_json(p: &BasicProperties) -> Value {
    let mut m = Map::new();
    let mut s = |k: &str, v: &Option<ShortStr>| {
        if let Some(v) = v {
            m.insert(k.into(), Value::String(v.to_string()));
        }
    };
    s("content_type", &p.content_type);
    s("content_encoding", &p.content_encoding);
    s("correlation_id", &p.correlation_id);
    s("reply_to", &p.reply_to);
    s("expiration", &p.expiration);
    s("message_id", &p.message_id);
    s("type", &p.kind);
    s("user_id", &p.user_id);
    s("app_id", &p.app_id);
    s("cluster_id", &p.cluster_id);
    if let Some(h) = &p.headers {
        m.insert("headers".into(), table_to_json(h));
    }
    if let Some(d) = p.delivery_mode {
        m.insert("delivery_mode".into(), json!(d));
    }
    if let Some(x) = p.priority {
        m.insert("priority".into(), json!(x));
    }
    if let Some(t) = p.timestamp {
        m.insert("timestamp".into(), json!(t));
    }
    Value::Object(m)
}

/// Basic properties from RabbitMQ's JSON (`{"delivery_mode":2,"headers":{…}}`).
pub fn json_to_props(v: &Value) -> Result<BasicProperties, String> {
    let mut p = BasicProperties::default();
    let Some(m) = v.as_object() else {
        return if v.is_null() {
            Ok(p)
        } else {
            Err("properties must be an object".into())
        };
    };
    for (k, v) in m {
        let text = || -> Result<ShortStr, String> {
            match v {
                Value::String(s) if s.len() <= 255 => Ok(ShortStr::from(s.as_str())),
                Value::Number(n) => Ok(ShortStr::from(n.to_string())),
                _ => Err(format!("invalid value for property {k}")),
            }
        };
        let int = || {
            v.as_u64()
                .ok_or_else(|| format!("invalid value for property {k}"))
        };
        match k.as_str() {
            "content_type" => p.content_type = Some(text()?),
            "content_encoding" => p.content_encoding = Some(text()?),
            "correlation_id" => p.correlation_id = Some(text()?),
            "reply_to" => p.reply_to = Some(text()?),
            "expiration" => p.expiration = Some(text()?),
            "message_id" => p.message_id = Some(text()?),
            "type" => p.kind = Some(text()?),
            "user_id" => p.user_id = Some(text()?),
            "app_id" => p.app_id = Some(text()?),
            "cluster_id" => p.cluster_id = Some(text()?),
            "headers" => p.headers = Some(json_to_table(v)?),
            "delivery_mode" => p.delivery_mode = Some(int()?.min(255) as u8),
            "priority" => p.priority = Some(int()?.min(255) as u8),
            "timestamp" => p.timestamp = Some(int()?),
            other => return Err(format!("unknown property {other}")),
        }
    }
    Ok(p)
}

/// A payload from `{payload, payload_encoding}` ("string" or "base64").
pub fn decode_payload(payload: &str, encoding: &str) -> Result<Bytes, String> {
    match encoding {
        "" | "string" => Ok(Bytes::copy_from_slice(payload.as_bytes())),
        "base64" => STANDARD
            .decode(payload)
            .map(Bytes::from)
            .map_err(|e| format!("invalid base64 payload: {e}")),
        other => Err(format!("unknown payload_encoding {other}")),
    }
}

/// A body as `(payload, payload_encoding)`: "string" when `encoding` is "auto" and the body
/// is UTF-8, else "base64".
pub fn encode_payload(body: &[u8], encoding: &str) -> (String, &'static str) {
    if encoding != "base64"
        && let Ok(s) = std::str::from_utf8(body)
    {
        return (s.to_string(), "string");
    }
    (STANDARD.encode(body), "base64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip_through_json() {
        let v = json!({"x-max-length": 10, "x-dead-letter-exchange": "dlx", "f": 1.5, "b": true,
                       "nested": {"a": [1, "two"]}});
        let t = json_to_table(&v).unwrap();
        assert_eq!(t.get("x-max-length"), Some(&FieldValue::I64(10)));
        assert_eq!(table_to_json(&t), v);
    }

    #[test]
    fn properties_round_trip() {
        let v = json!({"delivery_mode": 2, "headers": {"k": "v"}, "message_id": "m1", "priority": 3});
        let p = json_to_props(&v).unwrap();
        assert_eq!(p.delivery_mode, Some(2));
        assert_eq!(props_to_json(&p), v);
        assert!(json_to_props(&json!({"bogus": 1})).is_err());
    }

    #[test]
    fn payload_encodings() {
        assert_eq!(encode_payload(b"hi", "auto"), ("hi".into(), "string"));
        assert_eq!(encode_payload(&[0xff], "auto").1, "base64");
        assert_eq!(&decode_payload("aGk=", "base64").unwrap()[..], b"hi");
    }
}

/// RabbitMQ's lenient JSON for request bodies: rabbitmqadmin v1 sends every value as a string
/// (`"durable":"true"`, `"count":"5"`), which RabbitMQ's management API accepts. Used as
/// `#[serde(deserialize_with = …)]` on the body fields that take a boolean or a count.
pub mod lenient {
    use serde::de::{Deserialize, Deserializer, Error};
    use serde_json::Value;

    /// `true` / `false`, or the strings `"true"` / `"false"`.
    pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(b) => Ok(b),
            Value::String(s) if s == "true" => Ok(true),
            Value::String(s) if s == "false" => Ok(false),
            other => Err(D::Error::custom(format!("expected a boolean, got {other}"))),
        }
    }

    /// A non-negative integer, or a string holding one.
    pub fn usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        let v = Value::deserialize(d)?;
        count(&v).ok_or_else(|| D::Error::custom(format!("expected a non-negative integer, got {v}")))
    }

    /// As [`usize`], `null` or absent being `None` (use with `#[serde(default)]`).
    pub fn opt_usize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            v => count(&v)
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("expected a non-negative integer, got {v}"))),
        }
    }

    fn count(v: &Value) -> Option<usize> {
        match v {
            Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    #[cfg(test)]
    mod tests {
        use serde::Deserialize;

        #[derive(Deserialize)]
        struct B {
            #[serde(default, deserialize_with = "super::bool")]
            flag: bool,
            #[serde(default, deserialize_with = "super::opt_usize")]
            n: Option<usize>,
        }

        fn parse(s: &str) -> Result<B, serde_json::Error> {
            serde_json::from_str(s)
        }

        #[test]
        fn strings_and_natives_are_both_accepted() {
            let b = parse(r#"{"flag":"true","n":"5"}"#).unwrap();
            assert!(b.flag);
            assert_eq!(b.n, Some(5));
            let b = parse(r#"{"flag":false,"n":7}"#).unwrap();
            assert!(!b.flag);
            assert_eq!(b.n, Some(7));
            let b = parse("{}").unwrap();
            assert!(!b.flag);
            assert_eq!(b.n, None);
            assert!(parse(r#"{"flag":"yes"}"#).is_err());
            assert!(parse(r#"{"n":"-1"}"#).is_err());
            assert!(parse(r#"{"n":1.5}"#).is_err());
        }
    }
}
