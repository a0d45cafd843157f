//! Content assembly: a sans-IO state machine per channel that turns a content-bearing method,
//! its content header and N body frames into one [`Command`] with a `Bytes` body.
//!
//! A body that arrives in one frame is passed through without a copy; a body split over several
//! frames is gathered into one buffer sized from the (already limit-checked) header.

use bytes::{Bytes, BytesMut};

use crate::error::CodecError;
use crate::frame::Frame;
use crate::generated::Method;
use crate::properties::ContentHeader;

/// Most the assembler preallocates for a split body: the declared size is the peer's word.
const MAX_PREALLOC: u64 = 1 << 20;

/// A complete command: a method and, for content-bearing methods, its header and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The method.
    pub method: Method,
    /// Header and body, for basic.publish / return / deliver / get-ok. The header stays in
    /// the box the decoder built it in (see [`Frame::Header`]).
    pub content: Option<(Box<ContentHeader>, Bytes)>,
}

/// What the assembler produced from one frame.
#[derive(Debug, PartialEq)]
pub enum Assembled {
    /// More frames are needed.
    Pending,
    /// A whole command.
    Command(Command),
}

/// Per-channel content assembler.
///
/// The state lives in separate fields rather than one enum taken out and put back per frame:
/// each frame then writes only what it changes (a method, a header pointer, a body handle)
/// instead of moving a 200-byte state through the match, which cost a `memcpy` or two per
/// frame on the publish path.
#[derive(Debug, Default)]
pub struct ContentAssembler {
    /// The content method in progress: its header is next while `header` is `None`.
    method: Option<Method>,
    /// Its header, once received: body frames follow until `received == body_size`.
    header: Option<Box<ContentHeader>>,
    /// The first body frame, passed through without a copy if it is the only one.
    first: Option<Bytes>,
    /// A body split over several frames, gathered.
    gathered: BytesMut,
    /// Body bytes received so far.
    received: u64,
}

impl ContentAssembler {
    /// A new, idle assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether it is in the middle of a content-bearing command.
    pub fn is_idle(&self) -> bool {
        self.method.is_none()
    }

    /// The content method waiting for its header (to check size limits against it), if any.
    pub fn pending_method(&self) -> Option<&Method> {
        self.method.as_ref()
    }

    /// Back to idle (after a command completed or a frame out of order).
    fn reset(&mut self) {
        self.method = None;
        self.header = None;
        self.first = None;
        self.gathered = BytesMut::new();
        self.received = 0;
    }

    /// An out-of-order frame: the command in progress is dropped.
    #[cold]
    fn unexpected(&mut self, what: &'static str) -> Result<Assembled, CodecError> {
        self.reset();
        Err(CodecError::UnexpectedFrame(what))
    }

    /// Feeds one frame of this channel (heartbeats never come here).
    pub fn handle(&mut self, frame: Frame) -> Result<Assembled, CodecError> {
        match frame {
            Frame::Method { method, .. } => match (&self.method, &self.header) {
                (None, _) if method.has_content() => {
                    self.method = Some(method);
                    Ok(Assembled::Pending)
                }
                (None, _) => Ok(Assembled::Command(Command {
                    method,
                    content: None,
                })),
                (Some(_), None) => self.unexpected("expected content header, got a method frame"),
                (Some(_), Some(_)) => self.unexpected("expected content body, got a method frame"),
            },
            Frame::Header { header, .. } => match (&self.method, &self.header) {
                (None, _) => self.unexpected("content header frame without a method"),
                (Some(_), Some(_)) => self.unexpected("expected content body, got a content header"),
                (Some(m), None) if header.class_id != m.class_id() => {
                    self.unexpected("content header class does not match its method")
                }
                (Some(_), None) if header.body_size == 0 => match self.method.take() {
                    Some(method) => Ok(Assembled::Command(Command {
                        method,
                        content: Some((header, Bytes::new())),
                    })),
                    None => self.unexpected("content header frame without a method"),
                },
                (Some(_), None) => {
                    self.header = Some(header);
                    Ok(Assembled::Pending)
                }
            },
            Frame::Body { body, .. } => self.body(body),
            Frame::Heartbeat { .. } => Ok(Assembled::Pending),
        }
    }

    /// A body frame: gathered, and the command returned once the declared size is complete.
    fn body(&mut self, body: Bytes) -> Result<Assembled, CodecError> {
        let declared = match (&self.method, &self.header) {
            (Some(_), Some(h)) => h.body_size,
            (None, _) => return self.unexpected("content body frame without a method"),
            (Some(_), None) => return self.unexpected("expected content header, got a body frame"),
        };
        let received = self.received + body.len() as u64;
        if received > declared {
            self.reset();
            return Err(CodecError::BodyTooLong { declared, received });
        }
        if self.first.is_none() && self.gathered.is_empty() {
            self.first = Some(body);
        } else {
            if let Some(f) = self.first.take() {
                self.gathered.reserve(declared.min(MAX_PREALLOC) as usize);
                self.gathered.extend_from_slice(&f);
            }
            self.gathered.extend_from_slice(&body);
        }
        self.received = received;
        if received < declared {
            return Ok(Assembled::Pending);
        }
        let body = match self.first.take() {
            Some(f) => f,
            None => std::mem::take(&mut self.gathered).freeze(),
        };
        self.received = 0;
        match (self.method.take(), self.header.take()) {
            (Some(method), Some(header)) => Ok(Assembled::Command(Command {
                method,
                content: Some((header, body)),
            })),
            _ => self.unexpected("content body frame without a method"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generated::{BasicPublish, ChannelOpen};
    use crate::properties::BasicProperties;

    fn publish() -> Frame {
        Frame::Method {
            channel: 1,
            method: BasicPublish::default().into(),
        }
    }
    fn header(size: u64) -> Frame {
        Frame::Header {
            channel: 1,
            header: Box::new(ContentHeader {
                class_id: 60,
                weight: 0,
                body_size: size,
                properties: BasicProperties::default(),
            }),
        }
    }
    fn body(b: &'static [u8]) -> Frame {
        Frame::Body {
            channel: 1,
            body: Bytes::from_static(b),
        }
    }

    #[test]
    fn assembles_multi_frame_body() {
        let mut a = ContentAssembler::new();
        assert_eq!(a.handle(publish()).unwrap(), Assembled::Pending);
        assert_eq!(a.handle(header(6)).unwrap(), Assembled::Pending);
        assert_eq!(a.handle(body(b"abc")).unwrap(), Assembled::Pending);
        match a.handle(body(b"def")).unwrap() {
            Assembled::Command(c) => assert_eq!(&c.content.unwrap().1[..], b"abcdef"),
            other => panic!("{other:?}"),
        }
        assert!(a.is_idle());
    }

    #[test]
    fn single_body_frame_is_not_copied() {
        let mut a = ContentAssembler::new();
        a.handle(publish()).unwrap();
        a.handle(header(3)).unwrap();
        let b = Bytes::from_static(b"xyz");
        let ptr = b.as_ptr();
        match a.handle(Frame::Body { channel: 1, body: b }).unwrap() {
            Assembled::Command(c) => assert_eq!(c.content.unwrap().1.as_ptr(), ptr),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn zero_size_body_completes_at_header() {
        let mut a = ContentAssembler::new();
        a.handle(publish()).unwrap();
        assert!(matches!(a.handle(header(0)).unwrap(), Assembled::Command(_)));
    }

    #[test]
    fn out_of_order_frames_are_505() {
        let mut a = ContentAssembler::new();
        assert_eq!(a.handle(header(1)).unwrap_err().reply_code().code(), 505);
        let mut a = ContentAssembler::new();
        assert_eq!(a.handle(body(b"x")).unwrap_err().reply_code().code(), 505);
        let mut a = ContentAssembler::new();
        a.handle(publish()).unwrap();
        let open = Frame::Method {
            channel: 1,
            method: ChannelOpen::default().into(),
        };
        assert_eq!(a.handle(open).unwrap_err().reply_code().code(), 505);
    }

    #[test]
    fn body_longer_than_declared_is_501() {
        let mut a = ContentAssembler::new();
        a.handle(publish()).unwrap();
        a.handle(header(2)).unwrap();
        assert_eq!(a.handle(body(b"abc")).unwrap_err().reply_code().code(), 501);
    }
}
