//! Frames: the protocol header, the 7-byte frame header, frame-end checking, and decoding and
//! encoding of method, content-header, body and heartbeat frames.
//!
//! [`decode_frame`] peeks the header, rejects a size over `frame_max` *before* buffering the
//! payload, waits until the whole frame is buffered, then consumes it from the read buffer:
//! body frames are split off as zero-copy slices of the read buffer; method and header frames
//! are parsed in place, with only their strings split off (zero-copy too).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::CodecError;
use crate::generated::{Method, MethodArgs};
use crate::properties::{BasicProperties, ContentHeader};
use crate::types::Reader;

/// The protocol header a 0-9-1 client sends first.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";
/// Method frame type.
pub const FRAME_METHOD: u8 = 1;
/// Content header frame type.
pub const FRAME_HEADER: u8 = 2;
/// Content body frame type.
pub const FRAME_BODY: u8 = 3;
/// Heartbeat frame type.
pub const FRAME_HEARTBEAT: u8 = 8;
/// Frame-end octet.
pub const FRAME_END: u8 = 0xCE;
/// Smallest frame_max a peer may negotiate, and the limit before tuning.
pub const FRAME_MIN_SIZE: u32 = 4096;
/// Header (7) plus frame-end (1).
pub const FRAME_OVERHEAD: usize = 8;
/// Most `decode_frame` reserves ahead for a partly buffered frame.
const MAX_RESERVE: usize = 1 << 20;

/// What the first 8 bytes of a connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolHeader {
    /// `AMQP 0-0-9-1`: go ahead.
    Amqp091,
    /// Some other protocol or version: reply with our header and close (spec §4.2.2).
    Unsupported,
}

/// Classifies the protocol header.
pub fn classify_protocol_header(bytes: &[u8; 8]) -> ProtocolHeader {
    if *bytes == PROTOCOL_HEADER {
        ProtocolHeader::Amqp091
    } else {
        ProtocolHeader::Unsupported
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A method frame.
    Method {
        /// Channel number.
        channel: u16,
        /// The method.
        method: Method,
    },
    /// A content header frame.
    Header {
        /// Channel number.
        channel: u16,
        /// The header, boxed: its properties are 384 bytes, and unboxed they made every frame
        /// (bodies and methods too) that size, copied with a `memcpy` at each move on the way
        /// from the decoder through the assembler to the channel.
        header: Box<ContentHeader>,
    },
    /// A content body frame; the payload is a slice of the read buffer.
    Body {
        /// Channel number.
        channel: u16,
        /// The bytes.
        body: Bytes,
    },
    /// A heartbeat frame (channel should be 0).
    Heartbeat {
        /// Channel number as received.
        channel: u16,
    },
}

impl Frame {
    /// The frame's channel number.
    pub fn channel(&self) -> u16 {
        match self {
            Frame::Method { channel, .. }
            | Frame::Header { channel, .. }
            | Frame::Body { channel, .. }
            | Frame::Heartbeat { channel } => *channel,
        }
    }
}

/// Decodes one frame from the front of `buf`, if a whole one is buffered.
///
/// `frame_max` is the negotiated limit on the whole frame (0 = no limit). Returns `Ok(None)`
/// when more bytes are needed (and reserves room for the rest of the frame).
pub fn decode_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, CodecError> {
    if buf.len() < 7 {
        return Ok(None);
    }
    let kind = buf[0];
    if !matches!(kind, FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT) {
        return Err(CodecError::UnknownFrameType(kind));
    }
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
    let total = size + FRAME_OVERHEAD;
    if frame_max != 0 && total as u64 > frame_max as u64 {
        return Err(CodecError::FrameTooLarge {
            size: total as u64,
            max: frame_max,
        });
    }
    if buf.len() < total {
        // Never reserve more than MAX_RESERVE on the peer's say-so (frame_max 0 allows 4 GiB).
        buf.reserve((total - buf.len()).min(MAX_RESERVE));
        return Ok(None);
    }
    if buf[total - 1] != FRAME_END {
        return Err(CodecError::BadFrameEnd(buf[total - 1]));
    }
    match kind {
        FRAME_HEARTBEAT => {
            // Nothing to keep: skip it without splitting the buffer.
            buf.advance(total);
            Ok(Some(Frame::Heartbeat { channel }))
        }
        // Method and header frames are parsed in place in `buf` (see `Reader::in_place`): only
        // their strings are split off as `Bytes`, the frame gets no handle of its own. Each
        // arm builds its variant directly in the returned value: `Frame` is 392 bytes (the
        // content header's properties), and returning it through `decode_payload(..).map(Some)`
        // moved every frame, bodies included, through two `Result`s with a `memcpy` each.
        FRAME_METHOD => {
            let mut r = Reader::in_place(buf, 7, 7 + size);
            let method = Method::decode_reader(&mut r);
            let end = r.in_place_end();
            // Past the frame-end octet (checked above), which `end` now points at.
            buf.advance((end + 1).min(buf.len()));
            match method {
                Ok(method) => Ok(Some(Frame::Method { channel, method })),
                Err(e) => Err(e),
            }
        }
        FRAME_HEADER => decode_header_frame(channel, buf, size),
        _ => {
            // A body: one split (one refcount increment), zero-copy; the header and frame-end
            // octet are trimmed off the split-off handle, which is pointer arithmetic.
            let mut body = buf.split_to(total).freeze();
            body.advance(7);
            body.truncate(size);
            Ok(Some(Frame::Body { channel, body }))
        }
    }
}

/// Decodes a content header frame (whole, at the front of `buf`) in place, straight into the
/// returned frame (one return value, so it is written in place rather than moved out of
/// nested `Result`s), and consumes it from `buf`.
fn decode_header_frame(channel: u16, buf: &mut BytesMut, size: usize) -> Result<Option<Frame>, CodecError> {
    // For the error only; `buf` holds the whole frame (`size + 8` bytes).
    let class_id = if size >= 2 {
        u16::from_be_bytes([buf[7], buf[8]])
    } else {
        0
    };
    let mut out = Ok(Some(Frame::Header {
        channel,
        header: Box::new(ContentHeader::empty()),
    }));
    let mut r = Reader::in_place(buf, 7, 7 + size);
    if let Ok(Some(Frame::Header { header, .. })) = &mut out
        && let Err(reason) = header.decode_into(&mut r)
    {
        out = Err(header_error(class_id, reason));
    }
    let end = r.in_place_end();
    buf.advance((end + 1).min(buf.len()));
    out
}

/// The error for a content header that failed to decode.
#[cold]
fn header_error(class_id: u16, reason: crate::error::SyntaxReason) -> CodecError {
    CodecError::Syntax {
        class_id,
        method_id: 0,
        reason,
    }
}

/// Decodes a frame payload of a known type.
#[inline]
pub fn decode_payload(kind: u8, channel: u16, payload: Bytes) -> Result<Frame, CodecError> {
    Ok(match kind {
        FRAME_METHOD => Frame::Method {
            channel,
            method: Method::decode(&payload)?,
        },
        FRAME_HEADER => Frame::Header {
            channel,
            header: Box::new(ContentHeader::decode(&payload).map_err(|reason| {
                let class_id = match payload.get(..2) {
                    Some(&[a, b]) => u16::from_be_bytes([a, b]),
                    _ => 0,
                };
                header_error(class_id, reason)
            })?),
        },
        FRAME_BODY => Frame::Body {
            channel,
            body: payload,
        },
        FRAME_HEARTBEAT => Frame::Heartbeat { channel },
        other => return Err(CodecError::UnknownFrameType(other)),
    })
}

/// Writes a frame around a payload written by `f`, back-patching the size.
fn put_frame(out: &mut BytesMut, kind: u8, channel: u16, f: impl FnOnce(&mut BytesMut)) {
    out.put_u8(kind);
    out.put_u16(channel);
    let at = out.len();
    out.put_u32(0);
    f(out);
    let size = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
    out.put_u8(FRAME_END);
}

/// Encodes a method frame.
pub fn encode_method(out: &mut BytesMut, channel: u16, method: &impl MethodArgs) {
    put_frame(out, FRAME_METHOD, channel, |o| {
        o.put_u16(method.class_id());
        o.put_u16(method.method_id());
        method.encode_args(o);
    });
}

/// Encodes a content header frame.
pub fn encode_header(out: &mut BytesMut, channel: u16, header: &ContentHeader) {
    put_frame(out, FRAME_HEADER, channel, |o| header.encode(o));
}

/// Encodes a `basic` content header from its parts, without building a [`ContentHeader`].
pub fn encode_basic_header(out: &mut BytesMut, channel: u16, body_size: u64, properties: &BasicProperties) {
    put_frame(out, FRAME_HEADER, channel, |o| {
        o.put_u16(60);
        o.put_u16(0);
        o.put_u64(body_size);
        properties.encode(o);
    });
}

/// Encodes a body as as many body frames as `frame_max` requires (`frame_max - 8` bytes of
/// payload each; 0 = no limit). An empty body writes no frames, as the spec says.
pub fn encode_body(out: &mut BytesMut, channel: u16, body: &[u8], frame_max: u32) {
    let chunk = if frame_max == 0 {
        usize::MAX
    } else {
        (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1)
    };
    for part in body.chunks(chunk) {
        out.reserve(part.len() + FRAME_OVERHEAD);
        out.put_u8(FRAME_BODY);
        out.put_u16(channel);
        out.put_u32(part.len() as u32);
        out.put_slice(part);
        out.put_u8(FRAME_END);
    }
}

/// The 8-byte heartbeat frame.
pub const HEARTBEAT_FRAME: [u8; 8] = [FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END];

/// Encodes any frame. Body frames are written as one frame whatever their size: split bodies
/// with [`encode_body`].
pub fn encode_frame(out: &mut BytesMut, frame: &Frame) {
    match frame {
        Frame::Method { channel, method } => encode_method(out, *channel, method),
        Frame::Header { channel, header } => encode_header(out, *channel, header),
        Frame::Body { channel, body } => put_frame(out, FRAME_BODY, *channel, |o| o.put_slice(body)),
        Frame::Heartbeat { channel } => put_frame(out, FRAME_HEARTBEAT, *channel, |_| {}),
    }
}

/// Encodes a whole content-bearing command: method, header, body frames.
pub fn encode_content(
    out: &mut BytesMut,
    channel: u16,
    method: &Method,
    header: &ContentHeader,
    body: &[u8],
    frame_max: u32,
) {
    encode_method(out, channel, method);
    encode_header(out, channel, header);
    encode_body(out, channel, body, frame_max);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generated::{BasicAck, BasicPublish};

    /// Frames and assembled commands move by value from the decoder through the assembler to
    /// the channel; up to 128 bytes a move is register moves, over it a `memcpy` call (about 33
    /// per published message when `Method` was 136 bytes). A method struct larger than
    /// `basic.publish` must be boxed in `Method` (codegen's `BOX_OVER`).
    #[test]
    fn frames_and_commands_are_small_enough_to_move_without_memcpy() {
        assert!(
            std::mem::size_of::<Method>() <= 80,
            "Method is {} bytes",
            std::mem::size_of::<Method>()
        );
        assert!(
            std::mem::size_of::<Frame>() <= 128,
            "Frame is {} bytes",
            std::mem::size_of::<Frame>()
        );
        let command = std::mem::size_of::<crate::assembler::Command>();
        assert!(command <= 128, "Command is {command} bytes");
    }

    #[test]
    fn strings_and_bodies_are_slices_of_the_read_buffer() {
        let mut wire = BytesMut::new();
        let publish = Method::from(BasicPublish {
            exchange: "amq.direct".into(),
            routing_key: "rk".into(),
            ..Default::default()
        });
        let header = ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: 3,
            properties: BasicProperties {
                content_type: Some("text/plain".into()),
                ..Default::default()
            },
        };
        encode_content(&mut wire, 1, &publish, &header, b"abc", 0);
        encode_method(&mut wire, 1, &BasicAck::default());
        let mut buf = BytesMut::from(&wire[..]);
        let region = in_region(buf.as_ptr() as usize, buf.len());
        let Some(Frame::Method {
            method: Method::BasicPublish(p),
            ..
        }) = decode_frame(&mut buf, 0).unwrap()
        else {
            panic!("method")
        };
        assert_eq!((&*p.exchange, &*p.routing_key), ("amq.direct", "rk"));
        assert!(region(p.exchange.as_bytes()) && region(p.routing_key.as_bytes()));
        let Some(Frame::Header { header: h, .. }) = decode_frame(&mut buf, 0).unwrap() else {
            panic!("header")
        };
        assert_eq!(*h, header);
        assert!(region(h.properties.content_type.as_ref().unwrap().as_bytes()));
        let Some(Frame::Body { body, .. }) = decode_frame(&mut buf, 0).unwrap() else {
            panic!("body")
        };
        assert_eq!(&body[..], b"abc");
        assert!(region(&body));
        assert_eq!(
            decode_frame(&mut buf, 0).unwrap(),
            Some(Frame::Method {
                channel: 1,
                method: BasicAck::default().into()
            })
        );
        assert!(buf.is_empty());
    }

    /// Whether a slice lies within `[start, start + len)`.
    fn in_region(start: usize, len: usize) -> impl Fn(&[u8]) -> bool {
        move |s: &[u8]| {
            let p = s.as_ptr() as usize;
            p >= start && p + s.len() <= start + len
        }
    }

    #[test]
    fn a_malformed_method_or_header_frame_is_consumed_whole() {
        // basic.publish whose routing-key length runs past the payload, then a heartbeat.
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[1, 0, 1, 0, 0, 0, 9, 0, 60, 0, 40, 0, 0, 1, b'x', 200, FRAME_END]);
        // A content header of 1 byte (too short for its class id).
        buf.extend_from_slice(&[2, 0, 1, 0, 0, 0, 1, 0, FRAME_END]);
        buf.extend_from_slice(&HEARTBEAT_FRAME);
        assert!(matches!(
            decode_frame(&mut buf, 0),
            Err(CodecError::Syntax {
                class_id: 60,
                method_id: 40,
                ..
            })
        ));
        assert!(matches!(
            decode_frame(&mut buf, 0),
            Err(CodecError::Syntax { class_id: 0, .. })
        ));
        assert_eq!(
            decode_frame(&mut buf, 0),
            Ok(Some(Frame::Heartbeat { channel: 0 }))
        );
        assert!(buf.is_empty());
    }
}
