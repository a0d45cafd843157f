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
    /// Header and body, for basic.publish / return / deliver / get-ok.
    pub content: Option<(ContentHeader, Bytes)>,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Idle,
    /// A content method arrived; its header is next.
    Header(Method),
    /// Header arrived; body frames until `body_size` bytes.
    Body {
        method: Method,
        header: ContentHeader,
        first: Option<Bytes>,
        gathered: BytesMut,
        received: u64,
    },
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
#[derive(Debug, Default)]
pub struct ContentAssembler {
    state: State,
}

impl ContentAssembler {
    /// A new, idle assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether it is in the middle of a content-bearing command.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// The content method waiting for its header (to check size limits against it), if any.
    pub fn pending_method(&self) -> Option<&Method> {
        match &self.state {
            State::Header(m) | State::Body { method: m, .. } => Some(m),
            State::Idle => None,
        }
    }

    /// Feeds one frame of this channel (heartbeats never come here).
    pub fn handle(&mut self, frame: Frame) -> Result<Assembled, CodecError> {
        match (std::mem::take(&mut self.state), frame) {
            (State::Idle, Frame::Method { method, .. }) => {
                if method.has_content() {
                    self.state = State::Header(method);
                    Ok(Assembled::Pending)
                } else {
                    Ok(Assembled::Command(Command {
                        method,
                        content: None,
                    }))
                }
            }
            (State::Idle, Frame::Header { .. }) => Err(CodecError::UnexpectedFrame(
                "content header frame without a method",
            )),
            (State::Idle, Frame::Body { .. }) => {
                Err(CodecError::UnexpectedFrame("content body frame without a method"))
            }
            (State::Header(_), Frame::Method { .. }) => Err(CodecError::UnexpectedFrame(
                "expected content header, got a method frame",
            )),
            (State::Header(_), Frame::Body { .. }) => Err(CodecError::UnexpectedFrame(
                "expected content header, got a body frame",
            )),
            (State::Header(method), Frame::Header { header, .. }) => {
                if header.class_id != method.class_id() {
                    return Err(CodecError::UnexpectedFrame(
                        "content header class does not match its method",
                    ));
                }
                if header.body_size == 0 {
                    return Ok(Assembled::Command(Command {
                        method,
                        content: Some((header, Bytes::new())),
                    }));
                }
                self.state = State::Body {
                    method,
                    header,
                    first: None,
                    gathered: BytesMut::new(),
                    received: 0,
                };
                Ok(Assembled::Pending)
            }
            (State::Body { .. }, Frame::Method { .. }) => Err(CodecError::UnexpectedFrame(
                "expected content body, got a method frame",
            )),
            (State::Body { .. }, Frame::Header { .. }) => Err(CodecError::UnexpectedFrame(
                "expected content body, got a content header",
            )),
            (
                State::Body {
                    method,
                    header,
                    mut first,
                    mut gathered,
                    received,
                },
                Frame::Body { body, .. },
            ) => {
                let received = received + body.len() as u64;
                if received > header.body_size {
                    return Err(CodecError::BodyTooLong {
                        declared: header.body_size,
                        received,
                    });
                }
                if first.is_none() && gathered.is_empty() {
                    first = Some(body);
                } else {
                    if let Some(f) = first.take() {
                        gathered.reserve(header.body_size.min(MAX_PREALLOC) as usize);
                        gathered.extend_from_slice(&f);
                    }
                    gathered.extend_from_slice(&body);
                }
                if received == header.body_size {
                    let body = match first {
                        Some(f) => f,
                        None => gathered.freeze(),
                    };
                    return Ok(Assembled::Command(Command {
                        method,
                        content: Some((header, body)),
                    }));
                }
                self.state = State::Body {
                    method,
                    header,
                    first,
                    gathered,
                    received,
                };
                Ok(Assembled::Pending)
            }
            (state, Frame::Heartbeat { .. }) => {
                self.state = state;
                Ok(Assembled::Pending)
            }
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
            header: ContentHeader {
                class_id: 60,
                weight: 0,
                body_size: size,
                properties: BasicProperties::default(),
            },
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
