//! The message body layout every producer writes and every consumer reads: 16 bytes of
//! header, then zero padding up to `--size`.
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | send time, ns since the run's shared monotonic origin (big-endian u64) |
//! | 8..10 | producer id (u16) |
//! | 10..16 | per-producer sequence number (u48) |

/// Bytes of header at the front of every body; also the smallest body.
pub const BODY_HEADER: usize = 16;

/// Largest sequence number the 48-bit field holds.
pub const MAX_SEQ: u64 = (1 << 48) - 1;

/// What a body says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Send time, ns since the shared origin.
    pub sent_ns: u64,
    /// Producer id.
    pub producer: u16,
    /// Sequence number within that producer.
    pub seq: u64,
}

impl Stamp {
    /// The 16-byte header.
    pub fn encode(&self) -> [u8; BODY_HEADER] {
        let mut b = [0u8; BODY_HEADER];
        b[0..8].copy_from_slice(&self.sent_ns.to_be_bytes());
        b[8..10].copy_from_slice(&self.producer.to_be_bytes());
        b[10..16].copy_from_slice(&self.seq.to_be_bytes()[2..8]);
        b
    }

    /// Reads the header from the front of a body, if it is long enough.
    pub fn decode(body: &[u8]) -> Option<Stamp> {
        let b: &[u8; BODY_HEADER] = body.get(..BODY_HEADER)?.try_into().ok()?;
        let mut seq = [0u8; 8];
        seq[2..8].copy_from_slice(&b[10..16]);
        Some(Stamp {
            sent_ns: u64::from_be_bytes(b[0..8].try_into().ok()?),
            producer: u16::from_be_bytes([b[8], b[9]]),
            seq: u64::from_be_bytes(seq),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = Stamp {
            sent_ns: 0x0102_0304_0506_0708,
            producer: 513,
            seq: MAX_SEQ - 3,
        };
        assert_eq!(Stamp::decode(&s.encode()), Some(s));
        let mut long = s.encode().to_vec();
        long.extend_from_slice(&[0; 100]);
        assert_eq!(Stamp::decode(&long), Some(s));
        assert_eq!(Stamp::decode(&long[..15]), None);
    }
}
