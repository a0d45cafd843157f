//! Frames: the protocol header, the 7-byte frame header, frame-end checking, and decoding and
//! encoding of method, content-header, body and heartbeat frames.
//!
//! [`decode_frame`] peeks the header, rejects a size over `frame_max` *before* buffering the
//! payload, waits until the whole frame is buffered, then splits it off the read buffer: body
//! frames are zero-copy slices of the read buffer.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::CodecError;
use crate::generated::Method;
use crate::properties::{BasicProperties, ContentHeader};

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
        /// The header.
        header: ContentHeader,
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
    buf.advance(7);
    let payload = buf.split_to(size).freeze();
    buf.advance(1);
    decode_payload(kind, channel, payload).map(Some)
}

/// Decodes a frame payload of a known type.
pub fn decode_payload(kind: u8, channel: u16, payload: Bytes) -> Result<Frame, CodecError> {
    Ok(match kind {
        FRAME_METHOD => Frame::Method {
            channel,
            method: Method::decode(&payload)?,
        },
        FRAME_HEADER => Frame::Header {
            channel,
            header: ContentHeader::decode(&payload).map_err(|reason| {
                let class_id = if payload.len() >= 2 {
                    u16::from_be_bytes([payload[0], payload[1]])
                } else {
                    0
                };
                CodecError::Syntax {
                    class_id,
                    method_id: 0,
                    reason,
                }
            })?,
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
pub fn encode_method(out: &mut BytesMut, channel: u16, method: &Method) {
    put_frame(out, FRAME_METHOD, channel, |o| method.encode(o));
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
