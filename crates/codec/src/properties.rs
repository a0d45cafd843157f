//! The content header frame: class id, weight, body size and the 14 `basic` properties with
//! their property-flags word (bit 15 = first property; bit 0 = continuation).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::SyntaxReason;
use crate::types::{FieldTable, Reader, ShortStr, put_shortstr, put_table};

/// The `basic` class content properties, in wire order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicProperties {
    /// MIME content type.
    pub content_type: Option<ShortStr>,
    /// MIME content encoding.
    pub content_encoding: Option<ShortStr>,
    /// Application headers.
    pub headers: Option<FieldTable>,
    /// 1 = transient, 2 = persistent.
    pub delivery_mode: Option<u8>,
    /// Priority 0-9 (0-255 on the wire).
    pub priority: Option<u8>,
    /// Correlation identifier.
    pub correlation_id: Option<ShortStr>,
    /// Address to reply to.
    pub reply_to: Option<ShortStr>,
    /// Per-message TTL in milliseconds, as a decimal string.
    pub expiration: Option<ShortStr>,
    /// Application message identifier.
    pub message_id: Option<ShortStr>,
    /// Message timestamp (seconds).
    pub timestamp: Option<u64>,
    /// Message type name.
    pub kind: Option<ShortStr>,
    /// Creating user id.
    pub user_id: Option<ShortStr>,
    /// Creating application id.
    pub app_id: Option<ShortStr>,
    /// Reserved; must be empty.
    pub cluster_id: Option<ShortStr>,
}

/// Names of the properties in wire order (flag bit = 15 - index).
pub const PROPERTY_NAMES: [&str; 14] = [
    "content-type",
    "content-encoding",
    "headers",
    "delivery-mode",
    "priority",
    "correlation-id",
    "reply-to",
    "expiration",
    "message-id",
    "timestamp",
    "type",
    "user-id",
    "app-id",
    "cluster-id",
];

const fn flag(index: u16) -> u16 {
    1 << (15 - index)
}

impl BasicProperties {
    /// Whether the message is persistent (delivery-mode 2).
    pub fn is_persistent(&self) -> bool {
        self.delivery_mode == Some(2)
    }

    /// The property-flags word for the properties that are set.
    pub fn flags(&self) -> u16 {
        let mut f = 0;
        let set = [
            self.content_type.is_some(),
            self.content_encoding.is_some(),
            self.headers.is_some(),
            self.delivery_mode.is_some(),
            self.priority.is_some(),
            self.correlation_id.is_some(),
            self.reply_to.is_some(),
            self.expiration.is_some(),
            self.message_id.is_some(),
            self.timestamp.is_some(),
            self.kind.is_some(),
            self.user_id.is_some(),
            self.app_id.is_some(),
            self.cluster_id.is_some(),
        ];
        for (i, s) in set.iter().enumerate() {
            if *s {
                f |= flag(i as u16);
            }
        }
        f
    }

    /// Decodes the flags word(s) and property list.
    #[inline]
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let mut p = BasicProperties::default();
        p.decode_into(r)?;
        Ok(p)
    }

    /// Decodes the flags word(s) and property list into `self`, which must be all-`None`.
    ///
    /// Writing the fields in place lets [`crate::frame::decode_frame`] decode straight into the
    /// `Frame` it returns: `BasicProperties` is 368 bytes, and returning it by value through
    /// `Result`s cost several `memcpy`s per content header.
    #[inline(always)]
    pub(crate) fn decode_into(&mut self, r: &mut Reader<'_>) -> Result<(), SyntaxReason> {
        let flags = r.u16()?;
        if flags & 0b10 != 0 {
            return Err(SyntaxReason::BadPropertyFlags);
        }
        let mut more = flags & 1 != 0;
        while more {
            // `basic` defines no properties beyond the first word.
            let next = r.u16()?;
            if next & !1 != 0 {
                return Err(SyntaxReason::BadPropertyFlags);
            }
            more = next & 1 != 0;
        }
        let has = |i: u16| flags & flag(i) != 0;
        let p = self;
        if has(0) {
            p.content_type = Some(r.shortstr()?);
        }
        if has(1) {
            p.content_encoding = Some(r.shortstr()?);
        }
        if has(2) {
            p.headers = Some(r.table()?);
        }
        if has(3) {
            p.delivery_mode = Some(r.u8()?);
        }
        if has(4) {
            p.priority = Some(r.u8()?);
        }
        if has(5) {
            p.correlation_id = Some(r.shortstr()?);
        }
        if has(6) {
            p.reply_to = Some(r.shortstr()?);
        }
        if has(7) {
            p.expiration = Some(r.shortstr()?);
        }
        if has(8) {
            p.message_id = Some(r.shortstr()?);
        }
        if has(9) {
            p.timestamp = Some(r.u64()?);
        }
        if has(10) {
            p.kind = Some(r.shortstr()?);
        }
        if has(11) {
            p.user_id = Some(r.shortstr()?);
        }
        if has(12) {
            p.app_id = Some(r.shortstr()?);
        }
        if has(13) {
            p.cluster_id = Some(r.shortstr()?);
        }
        Ok(())
    }

    /// Encodes the flags word and property list.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.flags());
        let s = |out: &mut BytesMut, v: &Option<ShortStr>| {
            if let Some(v) = v {
                put_shortstr(out, v)
            }
        };
        s(out, &self.content_type);
        s(out, &self.content_encoding);
        if let Some(h) = &self.headers {
            put_table(out, h);
        }
        if let Some(v) = self.delivery_mode {
            out.put_u8(v);
        }
        if let Some(v) = self.priority {
            out.put_u8(v);
        }
        s(out, &self.correlation_id);
        s(out, &self.reply_to);
        s(out, &self.expiration);
        s(out, &self.message_id);
        if let Some(v) = self.timestamp {
            out.put_u64(v);
        }
        s(out, &self.kind);
        s(out, &self.user_id);
        s(out, &self.app_id);
        s(out, &self.cluster_id);
    }
}

/// A content header frame's payload.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentHeader {
    /// Class of the method carrying the content (60 for basic).
    pub class_id: u16,
    /// Unused, always 0.
    pub weight: u16,
    /// Total body size across all body frames.
    pub body_size: u64,
    /// The properties.
    pub properties: BasicProperties,
}

impl ContentHeader {
    /// Decodes a whole content-header payload.
    #[inline]
    pub fn decode(payload: &Bytes) -> Result<Self, SyntaxReason> {
        let mut h = ContentHeader::empty();
        h.decode_into(&mut Reader::new(payload))?;
        Ok(h)
    }

    /// A header with every field zero and no properties: the starting point for
    /// [`ContentHeader::decode_into`].
    #[inline(always)]
    pub(crate) fn empty() -> Self {
        ContentHeader {
            class_id: 0,
            weight: 0,
            body_size: 0,
            properties: BasicProperties::default(),
        }
    }

    /// Decodes a whole content-header payload into `self` (fresh from [`ContentHeader::empty`]),
    /// in place; see [`BasicProperties::decode_into`].
    #[inline(always)]
    pub(crate) fn decode_into(&mut self, r: &mut Reader<'_>) -> Result<(), SyntaxReason> {
        self.class_id = r.u16()?;
        self.weight = r.u16()?;
        self.body_size = r.u64()?;
        self.properties.decode_into(r)?;
        r.finish()
    }

    /// Encodes the payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.class_id);
        out.put_u16(self.weight);
        out.put_u64(self.body_size);
        self.properties.encode(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_bits_match_spec_table() {
        let tsv = include_str!("../spec/amqp-0-9-1-basic-properties.tsv");
        for line in tsv.lines().skip(1) {
            let c: Vec<&str> = line.split('\t').collect();
            let index: u16 = c[0].parse().unwrap();
            assert_eq!(PROPERTY_NAMES[index as usize], c[1]);
            assert_eq!(flag(index), 1 << c[3].parse::<u16>().unwrap());
        }
    }

    #[test]
    fn continuation_word_with_bits_rejected() {
        let payload = Bytes::from_static(&[0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x01, 0x80, 0x00]);
        assert_eq!(
            ContentHeader::decode(&payload),
            Err(SyntaxReason::BadPropertyFlags)
        );
    }

    #[test]
    fn empty_continuation_word_accepted() {
        let payload = Bytes::from_static(&[0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0x00, 0x01, 0x00, 0x00]);
        let h = ContentHeader::decode(&payload).unwrap();
        assert_eq!(h.body_size, 5);
        assert_eq!(h.properties, BasicProperties::default());
    }
}
