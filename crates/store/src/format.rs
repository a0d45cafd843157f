//! The on-disk encoding: file headers, record framing, the three record kinds and the
//! recovery scanner that tells a torn tail from corruption in the middle. This is the one place
//! that writes or parses bytes; docs/storage.md repeats the layout.
//!
//! # Files
//!
//! Every file starts with a 16-byte header:
//!
//! ```text
//! magic   [u8; 8]   b"WRNMSGS\0" (msgs.N), b"WRNACKS\0" (acks.N), b"WRNDEFS\0" (definitions)
//! version u32 LE    FORMAT_VERSION (1); a newer version is refused, never guessed at
//! flags   u32 LE    bit 0 (msgs.N only): deliveries of this segment's messages are recorded
//!                   (delivered records); other bits reserved (0)
//! ```
//!
//! # Records
//!
//! After the header the file is a sequence of records, each framed as
//!
//! ```text
//! len  u32 LE   length of `body` in bytes
//! crc  u32 LE   CRC32C over the 4 `len` bytes followed by `body`
//! body [u8; len]
//! ```
//!
//! so a flipped bit in the length is caught as well as one in the body. Bodies:
//!
//! - message (msgs.N): `seq u64 LE` then the payload (opaque; `len = 8 + payload`).
//! - ack (acks.N): `kind u8 = 1`, `offset u32 LE` — the message at byte `offset` of msgs.N is
//!   acked.
//! - counts (acks.N): `kind u8 = 2`, `offset u32 LE`, `delivery_count u32 LE`,
//!   `acquired_count u32 LE` — the latest counters of that message (last record wins).
//! - delivered (acks.N): `kind u8 = 3`, `offset u32 LE` — that message was handed to a
//!   consumer (ack required), so it comes back `redelivered` after a restart. Logs written
//!   before this record existed have none; see `QueueLog` for how they read.
//! - definition (definitions file): the opaque record the server encoded.
//! - queue index (`acks.index`, magic `WRNAIDX\0`): `segment u32 LE` — `acks.<segment>` was
//!   created; or `kind u8`, `segment u32 LE` with kind 1 — `msgs.<segment>` was created — or
//!   kind 2 — the broker removed `msgs.<segment>` (every message in it acked). Recovery tells a
//!   segment deleted behind the broker's back from one it removed itself by these records.
//!
//! A message's position ([`MsgPos`](crate::MsgPos)) is its segment number and the byte offset
//! of its record's `len` field.

use bytes::BufMut;

/// Length of every file header.
pub(crate) const HEADER_LEN: usize = 16;
/// Length of a record's frame (`len` + `crc`).
pub(crate) const FRAME_LEN: usize = 8;
/// The format version this code writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Largest record body accepted (1 GiB); larger lengths are treated as corruption.
pub(crate) const MAX_BODY: usize = 1 << 30;

/// Magic of message segments.
pub(crate) const MAGIC_MSGS: [u8; 8] = *b"WRNMSGS\0";
/// Magic of ack files.
pub(crate) const MAGIC_ACKS: [u8; 8] = *b"WRNACKS\0";
/// Magic of the definitions log.
pub(crate) const MAGIC_DEFS: [u8; 8] = *b"WRNDEFS\0";
/// Magic of a queue's ack-file index (`acks.index`: one record, `segment u32 LE`, per ack file
/// created), which lets recovery tell a deleted ack file from one never written.
pub(crate) const MAGIC_ACK_INDEX: [u8; 8] = *b"WRNAIDX\0";
/// Queue-index record kind (5-byte body): segment created.
pub(crate) const INDEX_SEGMENT_CREATED: u8 = 1;
/// Queue-index record kind (5-byte body): segment removed by the broker.
pub(crate) const INDEX_SEGMENT_REMOVED: u8 = 2;

/// Ack-file record kind: ack.
pub(crate) const KIND_ACK: u8 = 1;
/// Ack-file record kind: delivery counters.
pub(crate) const KIND_COUNTS: u8 = 2;
/// Ack-file record kind: the message was delivered.
pub(crate) const KIND_DELIVERED: u8 = 3;
/// Body length of an ack record (and of a delivered record).
pub(crate) const ACK_BODY_LEN: usize = 5;
/// Body length of a counts record.
pub(crate) const COUNTS_BODY_LEN: usize = 13;

/// Header flag of a message segment: its messages' deliveries are recorded.
pub(crate) const FLAG_DELIVERIES: u32 = 1;

/// Appends a file header with `magic`.
pub(crate) fn put_header(buf: &mut Vec<u8>, magic: [u8; 8]) {
    put_header_flags(buf, magic, 0);
}

/// Appends a file header with `magic` and `flags`.
pub(crate) fn put_header_flags(buf: &mut Vec<u8>, magic: [u8; 8], flags: u32) {
    buf.extend_from_slice(&magic);
    buf.put_u32_le(FORMAT_VERSION);
    buf.put_u32_le(flags);
}

/// The flags of a header already checked `Ok`.
pub(crate) fn header_flags(data: &[u8]) -> u32 {
    u32::from_le_bytes(data[12..16].try_into().expect("4 bytes"))
}

/// How a header check went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderCheck {
    /// Valid header of the expected kind and version.
    Ok,
    /// Shorter than a header and a prefix of a valid one (or zeros): a crash while creating
    /// the file; it holds no records.
    Incomplete,
    /// Wrong magic: not our file, or damaged.
    BadMagic,
    /// Our file, from an unknown format version.
    Version(u32),
}

/// Checks the header of a file whose full contents are `data`.
pub(crate) fn check_header(data: &[u8], magic: [u8; 8]) -> HeaderCheck {
    if data.len() < HEADER_LEN {
        let mut valid = Vec::with_capacity(HEADER_LEN);
        put_header(&mut valid, magic);
        // Flags (bytes 12..) may be set: compare magic and version only.
        let n = data.len().min(12);
        if data[..n] == valid[..n] || data.iter().all(|&b| b == 0) {
            return HeaderCheck::Incomplete;
        }
        return HeaderCheck::BadMagic;
    }
    if data[..8] != magic {
        return HeaderCheck::BadMagic;
    }
    let version = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return HeaderCheck::Version(version);
    }
    HeaderCheck::Ok
}

fn crc_of(len_bytes: [u8; 4], body_parts: &[&[u8]]) -> u32 {
    let mut crc = crc32c::crc32c(&len_bytes);
    for part in body_parts {
        crc = crc32c::crc32c_append(crc, part);
    }
    crc
}

/// Appends one framed record whose body is the concatenation of `parts`.
pub(crate) fn put_record(buf: &mut Vec<u8>, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let len_bytes = (len as u32).to_le_bytes();
    buf.reserve(FRAME_LEN + len);
    buf.extend_from_slice(&len_bytes);
    buf.put_u32_le(crc_of(len_bytes, parts));
    for p in parts {
        buf.extend_from_slice(p);
    }
}

/// Appends a message record.
pub(crate) fn put_message(buf: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    put_record(buf, &[&seq.to_le_bytes(), payload]);
}

/// Appends an ack record for the message at `offset`.
pub(crate) fn put_ack(buf: &mut Vec<u8>, offset: u32) {
    let mut body = [0u8; ACK_BODY_LEN];
    body[0] = KIND_ACK;
    body[1..5].copy_from_slice(&offset.to_le_bytes());
    put_record(buf, &[&body]);
}

/// Appends a delivered record for the message at `offset`.
pub(crate) fn put_delivered(buf: &mut Vec<u8>, offset: u32) {
    let mut body = [0u8; ACK_BODY_LEN];
    body[0] = KIND_DELIVERED;
    body[1..5].copy_from_slice(&offset.to_le_bytes());
    put_record(buf, &[&body]);
}

/// Appends a counts record for the message at `offset`.
pub(crate) fn put_counts(buf: &mut Vec<u8>, offset: u32, delivery: u32, acquired: u32) {
    let mut body = [0u8; COUNTS_BODY_LEN];
    body[0] = KIND_COUNTS;
    body[1..5].copy_from_slice(&offset.to_le_bytes());
    body[5..9].copy_from_slice(&delivery.to_le_bytes());
    body[9..13].copy_from_slice(&acquired.to_le_bytes());
    put_record(buf, &[&body]);
}

/// A decoded ack-file record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckRecord {
    /// The message at this offset is acked.
    Ack(u32),
    /// The message at this offset was delivered.
    Delivered(u32),
    /// Latest counters of the message at this offset.
    Counts {
        offset: u32,
        delivery: u32,
        acquired: u32,
    },
}

/// Decodes an ack-file record body.
pub(crate) fn decode_ack(body: &[u8]) -> Option<AckRecord> {
    let u32_at = |i: usize| u32::from_le_bytes(body[i..i + 4].try_into().expect("4 bytes"));
    match (body.first(), body.len()) {
        (Some(&KIND_ACK), ACK_BODY_LEN) => Some(AckRecord::Ack(u32_at(1))),
        (Some(&KIND_DELIVERED), ACK_BODY_LEN) => Some(AckRecord::Delivered(u32_at(1))),
        (Some(&KIND_COUNTS), COUNTS_BODY_LEN) => Some(AckRecord::Counts {
            offset: u32_at(1),
            delivery: u32_at(5),
            acquired: u32_at(9),
        }),
        _ => None,
    }
}

/// Splits a message body into `(seq, payload)`.
pub(crate) fn decode_message(body: &[u8]) -> Option<(u64, &[u8])> {
    let seq = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
    Some((seq, &body[8..]))
}

/// Verifies one record at the start of `data` (which may hold more bytes after it). Returns the
/// body's length if the frame is complete and its CRC matches.
pub(crate) fn verify_record(data: &[u8]) -> Result<usize, String> {
    if data.len() < FRAME_LEN {
        return Err("record frame cut short".into());
    }
    let len_bytes: [u8; 4] = data[0..4].try_into().expect("4 bytes");
    let len = u32::from_le_bytes(len_bytes) as usize;
    let crc = u32::from_le_bytes(data[4..8].try_into().expect("4 bytes"));
    if len > MAX_BODY {
        return Err(format!("record length {len} exceeds maximum"));
    }
    let Some(body) = data.get(FRAME_LEN..FRAME_LEN + len) else {
        return Err("record body cut short".into());
    };
    if crc_of(len_bytes, &[body]) != crc {
        return Err("CRC32C mismatch".into());
    }
    Ok(len)
}

/// A problem found while scanning a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanProblem {
    /// Byte offset of the bad record.
    pub(crate) offset: u64,
    /// What was wrong.
    pub(crate) reason: String,
    /// Bytes skipped from `offset` to the next good record (or to the end of the file).
    pub(crate) skipped: u64,
}

/// The outcome of scanning one file's records.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// `(offset, body range)` of every good record, in file order.
    pub(crate) records: Vec<(u32, std::ops::Range<usize>)>,
    /// Corruption before the tail: the bytes from the bad record to the next good one were
    /// skipped (or, when no good record follows and the damage does not look like a torn
    /// write, the rest of the file).
    pub(crate) problems: Vec<ScanProblem>,
    /// A torn tail starts here: no good record follows, so the file could be cut to this
    /// length (only the last file written may have one; the caller decides).
    pub(crate) torn_at: Option<u64>,
    /// Why the tail at `torn_at` is bad.
    pub(crate) torn_reason: String,
}

/// Whether a good record starts at `pos`: a frame whose length `valid_len` accepts, that fits
/// in `data`, is followed by the end of the file, zeros or another plausible frame, and whose
/// CRC matches. The cheap checks come first, so scanning a damaged region byte by byte costs
/// a CRC only where a record plausibly starts.
fn good_record_at(data: &[u8], pos: usize, valid_len: &impl Fn(usize) -> bool) -> bool {
    let end = data.len();
    if end - pos < FRAME_LEN {
        return false;
    }
    let len_bytes: [u8; 4] = data[pos..pos + 4].try_into().expect("4 bytes");
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_BODY || !valid_len(len) || pos + FRAME_LEN + len > end {
        return false;
    }
    let next = pos + FRAME_LEN + len;
    let plausible_next = next == end
        || data[next..(next + FRAME_LEN).min(end)].iter().all(|&b| b == 0)
        || (end - next >= FRAME_LEN && {
            let l = u32::from_le_bytes(data[next..next + 4].try_into().expect("4 bytes")) as usize;
            l <= MAX_BODY && valid_len(l) && next + FRAME_LEN + l <= end
        });
    if !plausible_next {
        return false;
    }
    let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().expect("4 bytes"));
    crc_of(len_bytes, &[&data[pos + FRAME_LEN..next]]) == crc
}

/// The first offset at or after `from` in `data` where a good record starts (see
/// `good_record_at`): where reading resumes after a damaged record.
pub(crate) fn next_good_record(data: &[u8], from: usize, valid_len: impl Fn(usize) -> bool) -> Option<usize> {
    (from..data.len()).find(|&p| good_record_at(data, p, &valid_len))
}

/// Scans the records of a file whose whole contents are `data` (header already checked).
/// `valid_len` says which body lengths the file kind allows.
///
/// A bad record (absurd length, frame past the end of the file, CRC mismatch) is never taken
/// to end the file while a good record follows it: scanning resynchronises on the next offset
/// where a complete, CRC-valid record starts, and reports the bytes in between as one problem —
/// so a corrupted length field costs the records it covers, not the rest of the file. When no
/// good record follows, a frame that runs past the end of the file, a CRC failure on the
/// record that ends the file, or zero bytes to the end, is a torn write (`torn_at`); any other
/// damage is a problem covering the rest of the file.
pub(crate) fn scan(data: &[u8], valid_len: impl Fn(usize) -> bool) -> Scan {
    let mut out = Scan::default();
    let mut pos = HEADER_LEN;
    let end = data.len();
    let zeros_from = |p: usize| data[p..].iter().all(|&b| b == 0);
    while pos < end {
        let why = match verify_record(&data[pos..]) {
            Ok(len) if valid_len(len) => {
                out.records
                    .push((pos as u32, pos + FRAME_LEN..pos + FRAME_LEN + len));
                pos += FRAME_LEN + len;
                continue;
            }
            Ok(len) => format!("invalid record length {len}"),
            Err(reason) => reason,
        };
        if let Some(next) = (pos + 1..end).find(|&p| good_record_at(data, p, &valid_len)) {
            out.problems.push(ScanProblem {
                offset: pos as u64,
                reason: format!("{why}; {} bytes skipped to the next good record", next - pos),
                skipped: (next - pos) as u64,
            });
            pos = next;
            continue;
        }
        let len = if end - pos >= 4 {
            u32::from_le_bytes(data[pos..pos + 4].try_into().expect("4 bytes")) as usize
        } else {
            0
        };
        let runs_past_end = end - pos < FRAME_LEN || pos + FRAME_LEN + len > end;
        let crc_at_end = pos + FRAME_LEN + len == end;
        if zeros_from(pos)
            || ((runs_past_end || crc_at_end) && len <= MAX_BODY && valid_len(len))
            || end - pos < FRAME_LEN
        {
            out.torn_at = Some(pos as u64);
            out.torn_reason = why;
        } else {
            out.problems.push(ScanProblem {
                offset: pos as u64,
                reason: format!("{why}; rest of file ({} bytes) skipped", end - pos),
                skipped: (end - pos) as u64,
            });
        }
        break;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        put_header(&mut buf, MAGIC_DEFS);
        for r in records {
            put_record(&mut buf, &[r]);
        }
        buf
    }

    #[test]
    fn scan_clean_file() {
        let data = file(&[b"a", b"bcd", b""]);
        assert_eq!(check_header(&data, MAGIC_DEFS), HeaderCheck::Ok);
        let s = scan(&data, |_| true);
        assert_eq!(s.records.len(), 3);
        assert_eq!(&data[s.records[1].1.clone()], b"bcd");
        assert!(s.problems.is_empty() && s.torn_at.is_none());
    }

    #[test]
    fn scan_torn_tails() {
        let data = file(&[b"hello", b"world"]);
        let second = HEADER_LEN + FRAME_LEN + 5;
        for cut in second + 1..data.len() {
            let s = scan(&data[..cut], |_| true);
            assert_eq!(s.records.len(), 1);
            assert_eq!(s.torn_at, Some(second as u64), "cut at {cut}");
        }
        let mut flipped = data.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(scan(&flipped, |_| true).torn_at, Some(second as u64));
        let mut zeros = data.clone();
        zeros.extend_from_slice(&[0; 100]);
        let s = scan(&zeros, |n| n > 0);
        assert_eq!((s.records.len(), s.torn_at), (2, Some(data.len() as u64)));
    }

    #[test]
    fn scan_middle_corruption_skips_one_record() {
        let mut data = file(&[b"one", b"two", b"three"]);
        data[HEADER_LEN + FRAME_LEN + 3 + FRAME_LEN] ^= 0xff; // body of "two"
        let s = scan(&data, |_| true);
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.problems.len(), 1);
        assert_eq!(s.problems[0].offset, (HEADER_LEN + FRAME_LEN + 3) as u64);
        assert!(s.torn_at.is_none());
    }

    #[test]
    fn header_checks() {
        let mut h = Vec::new();
        put_header(&mut h, MAGIC_MSGS);
        assert_eq!(check_header(&h[..5], MAGIC_MSGS), HeaderCheck::Incomplete);
        assert_eq!(check_header(&[], MAGIC_MSGS), HeaderCheck::Incomplete);
        assert_eq!(check_header(&h, MAGIC_ACKS), HeaderCheck::BadMagic);
        h[8] = 9;
        assert_eq!(check_header(&h, MAGIC_MSGS), HeaderCheck::Version(9));
    }

    #[test]
    fn ack_records_round_trip() {
        let mut buf = Vec::new();
        put_ack(&mut buf, 77);
        put_counts(&mut buf, 5, 3, 4);
        put_delivered(&mut buf, 9);
        assert_eq!(verify_record(&buf), Ok(ACK_BODY_LEN));
        let d = &buf[2 * FRAME_LEN + ACK_BODY_LEN + COUNTS_BODY_LEN..];
        assert_eq!(decode_ack(&d[8..]), Some(AckRecord::Delivered(9)));
        assert_eq!(decode_ack(&buf[8..8 + ACK_BODY_LEN]), Some(AckRecord::Ack(77)));
        let c = &buf[FRAME_LEN + ACK_BODY_LEN..];
        assert_eq!(
            decode_ack(&c[8..8 + COUNTS_BODY_LEN]),
            Some(AckRecord::Counts {
                offset: 5,
                delivery: 3,
                acquired: 4
            })
        );
    }
}
