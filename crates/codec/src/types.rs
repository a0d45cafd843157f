//! AMQP primitive and field-table value types, with their decoders and encoders.
//!
//! Decoding works on a [`Reader`] over a `Bytes` payload: every length is checked against the
//! bytes actually present before anything is sliced or allocated, and long strings, byte arrays
//! and bodies come out as zero-copy `Bytes` slices of that payload. Primitives are read with
//! `split_first_chunk` (one length check, no parser-combinator `Result` plumbing).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::SyntaxReason;

/// A short string: at most 255 octets of UTF-8, cheaply clonable (shares its buffer).
pub type ShortStr = bytestring::ByteString;

/// A long string: any bytes, zero-copy.
pub type LongStr = Bytes;

/// Deepest nesting of field tables and arrays accepted by the decoder.
pub const MAX_TABLE_DEPTH: usize = 32;

/// A value inside a field table or field array, with RabbitMQ's type tags.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// `t`
    Bool(bool),
    /// `b`
    I8(i8),
    /// `B`
    U8(u8),
    /// `s` (RabbitMQ: signed 16-bit; decoded from `U` too)
    I16(i16),
    /// `u`
    U16(u16),
    /// `I`
    I32(i32),
    /// `i`
    U32(u32),
    /// `l` (RabbitMQ: signed 64-bit; decoded from `L` too)
    I64(i64),
    /// `f`
    F32(f32),
    /// `d`
    F64(f64),
    /// `D`: value / 10^scale
    Decimal {
        /// Number of decimal places.
        scale: u8,
        /// Unscaled value.
        value: i32,
    },
    /// `S`
    LongStr(Bytes),
    /// `A`
    Array(Vec<FieldValue>),
    /// `T`: seconds since the epoch
    Timestamp(u64),
    /// `F`
    Table(FieldTable),
    /// `V`
    Void,
    /// `x`
    ByteArray(Bytes),
}

impl FieldValue {
    /// The value as a signed integer, for any integer type.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            FieldValue::I8(v) => v.into(),
            FieldValue::U8(v) => v.into(),
            FieldValue::I16(v) => v.into(),
            FieldValue::U16(v) => v.into(),
            FieldValue::I32(v) => v.into(),
            FieldValue::U32(v) => v.into(),
            FieldValue::I64(v) => v,
            _ => return None,
        })
    }

    /// The value as bytes, for long strings and byte arrays.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            FieldValue::LongStr(b) | FieldValue::ByteArray(b) => Some(b),
            _ => None,
        }
    }

    /// The value as a UTF-8 string, for long strings that are valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::LongStr(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Builds a long-string value.
    pub fn str(s: &str) -> FieldValue {
        FieldValue::LongStr(Bytes::copy_from_slice(s.as_bytes()))
    }
}

/// An ordered field table. Order is kept as received (RabbitMQ treats tables as ordered lists);
/// lookups are linear, which is fastest for the handful of entries real tables carry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldTable(pub Vec<(ShortStr, FieldValue)>);

impl FieldTable {
    /// An empty table.
    pub fn new() -> Self {
        FieldTable(Vec::new())
    }

    /// The value under `key`, if any (the first one if a client sent duplicates).
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.0.iter().find(|(k, _)| &**k == key).map(|(_, v)| v)
    }

    /// Sets `key` to `value`, replacing an existing entry in place or appending.
    pub fn insert(&mut self, key: impl Into<ShortStr>, value: FieldValue) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// Removes every entry under `key`, returning the first value.
    pub fn remove(&mut self, key: &str) -> Option<FieldValue> {
        let pos = self.0.iter().position(|(k, _)| &**k == key)?;
        let v = self.0.remove(pos).1;
        self.0.retain(|(k, _)| &**k != key);
        Some(v)
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Iterates over the entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FieldValue)> {
        self.0.iter().map(|(k, v)| (&**k, v))
    }
}

/// A cursor over a payload. Every read is bounds-checked; slices share the payload's buffer.
#[derive(Debug)]
pub struct Reader<'a> {
    src: Src<'a>,
}

/// Where a [`Reader`] reads from.
#[derive(Debug)]
enum Src<'a> {
    /// A payload of its own: `rest` is the unread part of `base`, and strings are
    /// `slice_ref`s of `base` (one refcount increment each).
    Shared { base: &'a Bytes, rest: &'a [u8] },
    /// A frame read in place at the front of the connection's read buffer
    /// ([`Reader::in_place`]): `buf[pos..end]` is unread. A string is split off the front of
    /// `buf` (so `buf` advances as strings are taken and `pos`/`end` shift with it): the
    /// frame itself never gets a `Bytes` handle of its own, which saves a refcount increment
    /// and decrement per method and header frame, and frames with no strings (acks, most
    /// headers without string properties) touch no refcount at all.
    InPlace {
        buf: &'a mut BytesMut,
        pos: usize,
        end: usize,
    },
}

macro_rules! prim {
    ($name:ident, $ty:ty) => {
        #[doc = concat!("Reads a big-endian `", stringify!($ty), "`.")]
        #[inline]
        pub fn $name(&mut self) -> Result<$ty, SyntaxReason> {
            self.array().map(<$ty>::from_be_bytes)
        }
    };
}

impl<'a> Reader<'a> {
    /// A reader over the whole of `base`.
    pub fn new(base: &'a Bytes) -> Self {
        Reader {
            src: Src::Shared {
                base,
                rest: &base[..],
            },
        }
    }

    /// A reader over `buf[start..end]`, in place: taking a string or long string splits the
    /// buffer up to and including it off the front of `buf`. `end` must be within `buf`
    /// (anything else reads as truncated). After reading, [`Reader::in_place_end`] is where
    /// `end` has moved to.
    pub(crate) fn in_place(buf: &'a mut BytesMut, start: usize, end: usize) -> Self {
        let end = end.min(buf.len());
        Reader {
            src: Src::InPlace {
                buf,
                pos: start.min(end),
                end,
            },
        }
    }

    /// For an in-place reader, the end of its range in the buffer as it is now.
    pub(crate) fn in_place_end(&self) -> usize {
        match &self.src {
            Src::InPlace { end, .. } => *end,
            Src::Shared { .. } => 0,
        }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        match &self.src {
            Src::Shared { rest, .. } => rest.len(),
            Src::InPlace { pos, end, .. } => end - pos,
        }
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), SyntaxReason> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(SyntaxReason::TrailingBytes)
        }
    }

    /// The next `N` bytes, or `Truncated`.
    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], SyntaxReason> {
        match &mut self.src {
            Src::Shared { rest, .. } => match rest.split_first_chunk::<N>() {
                Some((a, r)) => {
                    *rest = r;
                    Ok(*a)
                }
                None => Err(SyntaxReason::Truncated),
            },
            Src::InPlace { buf, pos, end } => match buf.get(*pos..*end).and_then(|s| s.first_chunk::<N>()) {
                Some(a) => {
                    *pos += N;
                    Ok(*a)
                }
                None => Err(SyntaxReason::Truncated),
            },
        }
    }

    prim!(u8, u8);
    prim!(u16, u16);
    prim!(u32, u32);
    prim!(u64, u64);
    prim!(i8, i8);
    prim!(i16, i16);
    prim!(i32, i32);
    prim!(i64, i64);
    prim!(f32, f32);
    prim!(f64, f64);

    /// Takes `n` bytes as a zero-copy slice, failing (without allocating) if fewer remain.
    #[inline]
    pub fn take(&mut self, n: usize) -> Result<Bytes, SyntaxReason> {
        match &mut self.src {
            Src::Shared { base, rest } => {
                if n > rest.len() {
                    return Err(SyntaxReason::LengthOverrun);
                }
                let (s, r) = rest.split_at(n);
                *rest = r;
                Ok(base.slice_ref(s))
            }
            Src::InPlace { buf, pos, end } => {
                if n > *end - *pos {
                    return Err(SyntaxReason::LengthOverrun);
                }
                if n == 0 {
                    return Ok(Bytes::new());
                }
                // One split of `buf` (one refcount increment) up to the string's end; what
                // precedes the string is then trimmed off the split-off handle.
                let mut s = buf.split_to(*pos + n).freeze();
                s.advance(*pos);
                *end -= *pos + n;
                *pos = 0;
                Ok(s)
            }
        }
    }

    /// Takes all remaining bytes.
    pub fn take_rest(&mut self) -> Bytes {
        let n = self.remaining();
        self.take(n).unwrap_or_default()
    }

    /// A short string (1-octet length, UTF-8).
    ///
    /// A non-empty one shares the payload's buffer (one refcount increment: cheaper than
    /// allocating a copy, and `ShortStr` has no inline storage); an empty one (the default
    /// exchange, server-named queues, blank tags) is the static empty string and touches no
    /// refcount at all. `ByteString::try_from` validates UTF-8 (std's validator, which has an
    /// ASCII fast path; these strings are short).
    #[inline]
    pub fn shortstr(&mut self) -> Result<ShortStr, SyntaxReason> {
        let [len] = self.array::<1>()?;
        if len == 0 {
            return Ok(ShortStr::new());
        }
        let b = self.take(len as usize)?;
        ShortStr::try_from(b).map_err(|_| SyntaxReason::InvalidUtf8)
    }

    /// A long string (4-octet length, any bytes).
    pub fn longstr(&mut self) -> Result<Bytes, SyntaxReason> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// A field table.
    pub fn table(&mut self) -> Result<FieldTable, SyntaxReason> {
        self.table_at(0)
    }

    fn table_at(&mut self, depth: usize) -> Result<FieldTable, SyntaxReason> {
        if depth >= MAX_TABLE_DEPTH {
            return Err(SyntaxReason::TooDeep);
        }
        let body = self.longstr()?;
        let mut r = Reader::new(&body);
        let mut entries = Vec::new();
        while r.remaining() > 0 {
            let key = r.shortstr()?;
            let value = r.value_at(depth)?;
            entries.push((key, value));
        }
        Ok(FieldTable(entries))
    }

    fn array_at(&mut self, depth: usize) -> Result<Vec<FieldValue>, SyntaxReason> {
        if depth >= MAX_TABLE_DEPTH {
            return Err(SyntaxReason::TooDeep);
        }
        let body = self.longstr()?;
        let mut r = Reader::new(&body);
        let mut items = Vec::new();
        while r.remaining() > 0 {
            items.push(r.value_at(depth)?);
        }
        Ok(items)
    }

    /// A tagged field value.
    pub fn value(&mut self) -> Result<FieldValue, SyntaxReason> {
        self.value_at(0)
    }

    fn value_at(&mut self, depth: usize) -> Result<FieldValue, SyntaxReason> {
        Ok(match self.u8()? {
            b't' => FieldValue::Bool(self.u8()? != 0),
            b'b' => FieldValue::I8(self.i8()?),
            b'B' => FieldValue::U8(self.u8()?),
            b's' | b'U' => FieldValue::I16(self.i16()?),
            b'u' => FieldValue::U16(self.u16()?),
            b'I' => FieldValue::I32(self.i32()?),
            b'i' => FieldValue::U32(self.u32()?),
            b'l' | b'L' => FieldValue::I64(self.i64()?),
            b'f' => FieldValue::F32(self.f32()?),
            b'd' => FieldValue::F64(self.f64()?),
            b'D' => FieldValue::Decimal {
                scale: self.u8()?,
                value: self.i32()?,
            },
            b'S' => FieldValue::LongStr(self.longstr()?),
            b'A' => FieldValue::Array(self.array_at(depth + 1)?),
            b'T' => FieldValue::Timestamp(self.u64()?),
            b'F' => FieldValue::Table(self.table_at(depth + 1)?),
            b'V' => FieldValue::Void,
            b'x' => FieldValue::ByteArray(self.longstr()?),
            _ => return Err(SyntaxReason::BadTypeTag),
        })
    }
}

/// Writes a short string, truncating (at a char boundary) anything over 255 octets.
pub fn put_shortstr(out: &mut BytesMut, s: &str) {
    let mut n = s.len().min(255);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    out.put_u8(n as u8);
    out.put_slice(&s.as_bytes()[..n]);
}

/// Writes a long string.
pub fn put_longstr(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

/// Runs `f` to write a body, then back-patches the u32 length in front of it.
fn with_len_prefix(out: &mut BytesMut, f: impl FnOnce(&mut BytesMut)) {
    let at = out.len();
    out.put_u32(0);
    f(out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Writes a field table.
pub fn put_table(out: &mut BytesMut, t: &FieldTable) {
    with_len_prefix(out, |out| {
        for (k, v) in &t.0 {
            put_shortstr(out, k);
            put_value(out, v);
        }
    });
}

/// Writes a tagged field value with RabbitMQ's tags.
pub fn put_value(out: &mut BytesMut, v: &FieldValue) {
    match v {
        FieldValue::Bool(b) => {
            out.put_u8(b't');
            out.put_u8(*b as u8)
        }
        FieldValue::I8(x) => {
            out.put_u8(b'b');
            out.put_i8(*x)
        }
        FieldValue::U8(x) => {
            out.put_u8(b'B');
            out.put_u8(*x)
        }
        FieldValue::I16(x) => {
            out.put_u8(b's');
            out.put_i16(*x)
        }
        FieldValue::U16(x) => {
            out.put_u8(b'u');
            out.put_u16(*x)
        }
        FieldValue::I32(x) => {
            out.put_u8(b'I');
            out.put_i32(*x)
        }
        FieldValue::U32(x) => {
            out.put_u8(b'i');
            out.put_u32(*x)
        }
        FieldValue::I64(x) => {
            out.put_u8(b'l');
            out.put_i64(*x)
        }
        FieldValue::F32(x) => {
            out.put_u8(b'f');
            out.put_f32(*x)
        }
        FieldValue::F64(x) => {
            out.put_u8(b'd');
            out.put_f64(*x)
        }
        FieldValue::Decimal { scale, value } => {
            out.put_u8(b'D');
            out.put_u8(*scale);
            out.put_i32(*value)
        }
        FieldValue::LongStr(b) => {
            out.put_u8(b'S');
            put_longstr(out, b)
        }
        FieldValue::Array(items) => {
            out.put_u8(b'A');
            with_len_prefix(out, |out| {
                for item in items {
                    put_value(out, item);
                }
            })
        }
        FieldValue::Timestamp(t) => {
            out.put_u8(b'T');
            out.put_u64(*t)
        }
        FieldValue::Table(t) => {
            out.put_u8(b'F');
            put_table(out, t)
        }
        FieldValue::Void => out.put_u8(b'V'),
        FieldValue::ByteArray(b) => {
            out.put_u8(b'x');
            put_longstr(out, b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_claiming_4gib_is_an_error_not_an_allocation() {
        let payload = Bytes::from_static(&[0xff, 0xff, 0xff, 0xf0, 1, b'a', b'S']);
        let mut r = Reader::new(&payload);
        assert_eq!(r.table(), Err(SyntaxReason::LengthOverrun));
    }

    #[test]
    fn unknown_tag_rejected() {
        let payload = Bytes::from_static(&[0, 0, 0, 3, 1, b'a', b'Z']);
        assert_eq!(Reader::new(&payload).table(), Err(SyntaxReason::BadTypeTag));
    }

    #[test]
    fn deep_nesting_rejected() {
        let mut v = FieldValue::Void;
        for _ in 0..100 {
            v = FieldValue::Array(vec![v]);
        }
        let mut t = FieldTable::new();
        t.insert("deep", v);
        let mut out = BytesMut::new();
        put_table(&mut out, &t);
        let b = out.freeze();
        assert_eq!(Reader::new(&b).table(), Err(SyntaxReason::TooDeep));
    }

    #[test]
    fn invalid_utf8_shortstr() {
        let payload = Bytes::from_static(&[2, 0xc3, 0x28]);
        assert_eq!(Reader::new(&payload).shortstr(), Err(SyntaxReason::InvalidUtf8));
    }

    #[test]
    fn spec_only_tags_decode() {
        // 'U' as i16 and 'L' as i64, as a tolerant decoder should.
        let payload = Bytes::from_static(&[b'U', 0xff, 0xfe, b'L', 0, 0, 0, 0, 0, 0, 0, 7]);
        let mut r = Reader::new(&payload);
        assert_eq!(r.value(), Ok(FieldValue::I16(-2)));
        assert_eq!(r.value(), Ok(FieldValue::I64(7)));
    }

    #[test]
    fn shortstr_truncated_at_char_boundary() {
        let s = "é".repeat(200); // 400 bytes
        let mut out = BytesMut::new();
        put_shortstr(&mut out, &s);
        assert_eq!(out[0], 254);
        let b = out.freeze();
        assert!(Reader::new(&b).shortstr().is_ok());
    }
}
