//! Publish deduplication (`x-deduplication-window`, our extension, SQS FIFO's idea).
//!
//! A [`DedupWindow`] remembers the ids of accepted messages for `window_ms` after their
//! *first* acceptance (a duplicate does not extend the window, as in SQS). The id is the
//! `message-id` property, or the string value of the header named by
//! `x-deduplication-header`; a message without an id is never a duplicate.
//!
//! Storage is a `HashMap<id, expiry>` plus a `VecDeque<(expiry, id)>` in acceptance order,
//! which is also expiry order because the window is fixed: pruning pops from the front, so
//! every operation is O(1) amortised. The window is bounded by [`DedupWindow::MAX_IDS`]: past
//! that the oldest ids are forgotten early (a duplicate of a forgotten id is accepted again),
//! which keeps memory bounded whatever the publish rate.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use warren_codec::{BasicProperties, FieldTable, FieldValue};

use crate::args::{integer, render};

/// Where the deduplication id comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdSource {
    /// The `message-id` property (the default).
    MessageId,
    /// A header's value (strings as they are, integers in decimal).
    Header(String),
}

impl IdSource {
    /// The id of a message with these properties, if it has one.
    pub fn id_of(&self, props: &BasicProperties) -> Option<Bytes> {
        match self {
            IdSource::MessageId => props
                .message_id
                .as_ref()
                .map(|s| Bytes::copy_from_slice(s.as_bytes())),
            IdSource::Header(h) => header_key(props.headers.as_ref()?.get(h)?),
        }
    }
}

/// A header value as a grouping / deduplication key: long strings and byte arrays as their
/// bytes, integers in decimal; other types (tables, arrays, floats, void) are not keys.
pub fn header_key(v: &FieldValue) -> Option<Bytes> {
    match v {
        FieldValue::LongStr(b) | FieldValue::ByteArray(b) => Some(b.clone()),
        FieldValue::Timestamp(t) => Some(Bytes::from(t.to_string())),
        other => other.as_i64().map(|i| Bytes::from(i.to_string())),
    }
}

/// Parses `x-deduplication-window` / `x-deduplication-header` from an argument table.
/// `Ok(None)` when there is no window. Errors are the `{…}` part of RabbitMQ's invalid-arg
/// texts: (argument name, reason).
pub fn parse_args(args: &FieldTable) -> Result<Option<(u64, IdSource)>, (&'static str, String)> {
    let window = match args.get("x-deduplication-window").map(integer) {
        None => None,
        Some(Ok(i)) if i >= 1 => Some(i as u64),
        Some(Ok(i)) => return Err(("x-deduplication-window", format!("{{value_too_small,{i}}}"))),
        Some(Err(why)) => return Err(("x-deduplication-window", why)),
    };
    let source = match args.get("x-deduplication-header") {
        None => IdSource::MessageId,
        Some(v) => match v.as_str() {
            Some(s) if !s.is_empty() && s.len() <= 255 => IdSource::Header(s.to_string()),
            _ => {
                return Err((
                    "x-deduplication-header",
                    format!("{{invalid_value,{}}}", render(v)),
                ));
            }
        },
    };
    Ok(window.map(|w| (w, source)))
}

/// The ids seen in the last `window_ms`.
#[derive(Debug, Clone)]
pub struct DedupWindow {
    window_ms: u64,
    source: IdSource,
    seen: HashMap<Bytes, u64>,
    order: VecDeque<(u64, Bytes)>,
    max_ids: usize,
}

impl DedupWindow {
    /// The most ids one window remembers.
    pub const MAX_IDS: usize = 1_000_000;

    /// An empty window.
    pub fn new(window_ms: u64, source: IdSource) -> DedupWindow {
        DedupWindow {
            window_ms,
            source,
            seen: HashMap::new(),
            order: VecDeque::new(),
            max_ids: Self::MAX_IDS,
        }
    }

    /// The same with a smaller bound (tests).
    pub fn with_max_ids(mut self, max_ids: usize) -> DedupWindow {
        self.max_ids = max_ids.max(1);
        self
    }

    /// The window's length (ms).
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// Where ids come from.
    pub fn source(&self) -> &IdSource {
        &self.source
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Forgets ids whose window ended at or before `now`.
    pub fn prune(&mut self, now: u64) {
        while let Some((at, _)) = self.order.front() {
            if *at > now {
                break;
            }
            if let Some((at, id)) = self.order.pop_front()
                && self.seen.get(&id) == Some(&at)
            {
                self.seen.remove(&id);
            }
        }
    }

    /// Whether a message with these properties is a duplicate at `now` (read-only).
    pub fn is_duplicate(&self, props: &BasicProperties, now: u64) -> bool {
        match self.source.id_of(props) {
            Some(id) => self.seen.get(&id).is_some_and(|&at| at > now),
            None => false,
        }
    }

    /// Remembers the id of an accepted message (no-op without an id or when it is remembered
    /// already).
    pub fn record(&mut self, props: &BasicProperties, now: u64) {
        if let Some(id) = self.source.id_of(props) {
            self.record_id(id, now);
        }
    }

    /// Remembers `id` as accepted at `now`.
    pub fn record_id(&mut self, id: Bytes, now: u64) {
        self.prune(now);
        if self.seen.contains_key(&id) {
            return;
        }
        let at = now.saturating_add(self.window_ms);
        self.seen.insert(id.clone(), at);
        self.order.push_back((at, id));
        while self.seen.len() > self.max_ids {
            let Some((at, old)) = self.order.pop_front() else {
                break;
            };
            if self.seen.get(&old) == Some(&at) {
                self.seen.remove(&old);
            }
        }
    }

    /// Checks and records in one step: `true` if the message is a duplicate (and so must be
    /// dropped), `false` if it is new (and is now remembered).
    pub fn check_and_record(&mut self, props: &BasicProperties, now: u64) -> bool {
        self.prune(now);
        let Some(id) = self.source.id_of(props) else {
            return false;
        };
        if self.seen.contains_key(&id) {
            return true;
        }
        self.record_id(id, now);
        false
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.seen.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_codec::ShortStr;

    fn mid(id: &str) -> BasicProperties {
        BasicProperties {
            message_id: Some(ShortStr::from(id)),
            ..Default::default()
        }
    }

    #[test]
    fn duplicates_within_window_only() {
        let mut w = DedupWindow::new(100, IdSource::MessageId);
        assert!(!w.check_and_record(&mid("a"), 0));
        assert!(w.check_and_record(&mid("a"), 50));
        assert!(w.check_and_record(&mid("a"), 99));
        // The window counts from the first acceptance, not from the duplicates.
        assert!(!w.check_and_record(&mid("a"), 100));
        assert!(w.check_and_record(&mid("a"), 150));
        assert!(!w.check_and_record(&mid("b"), 150));
        assert!(!w.check_and_record(&BasicProperties::default(), 150));
        assert!(!w.check_and_record(&BasicProperties::default(), 150));
    }

    #[test]
    fn header_source_and_bound() {
        let mut h = FieldTable::new();
        h.insert("order", FieldValue::I32(7));
        let p = BasicProperties {
            headers: Some(h),
            ..Default::default()
        };
        let mut w = DedupWindow::new(1000, IdSource::Header("order".into())).with_max_ids(2);
        assert!(!w.check_and_record(&p, 0));
        assert!(w.is_duplicate(&p, 1));
        assert!(!w.check_and_record(&mid("x"), 1), "no header → no id");
        w.record_id(Bytes::from_static(b"1"), 2);
        w.record_id(Bytes::from_static(b"2"), 3);
        assert_eq!(w.len(), 2);
        assert!(!w.is_duplicate(&p, 4), "oldest id evicted by the bound");
    }

    #[test]
    fn parse_validates() {
        let mut t = FieldTable::new();
        assert_eq!(parse_args(&t), Ok(None));
        t.insert("x-deduplication-window", FieldValue::I32(0));
        assert!(parse_args(&t).is_err());
        let mut t = FieldTable::new();
        t.insert("x-deduplication-window", FieldValue::I64(5000));
        t.insert("x-deduplication-header", FieldValue::str("idem"));
        assert_eq!(parse_args(&t), Ok(Some((5000, IdSource::Header("idem".into())))));
    }
}
