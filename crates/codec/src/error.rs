//! Codec errors: every decoding failure is typed and carries the AMQP reply code the spec
//! assigns to it, plus the class and method id of the frame being decoded where known.

use crate::reply::ReplyCode;

/// Why a payload could not be decoded (the detail behind a 502 SYNTAX_ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxReason {
    /// The payload ended before a field was complete.
    #[error("truncated field")]
    Truncated,
    /// A length prefix points past the end of its enclosing frame or table.
    #[error("length beyond the enclosing frame")]
    LengthOverrun,
    /// A short string that is not valid UTF-8.
    #[error("invalid UTF-8 in short string")]
    InvalidUtf8,
    /// A field-table or field-array value with an unknown type tag.
    #[error("unknown field value type tag")]
    BadTypeTag,
    /// Field tables nested deeper than [`crate::types::MAX_TABLE_DEPTH`].
    #[error("field tables nested too deeply")]
    TooDeep,
    /// Bytes left over after the last field of a method or header.
    #[error("trailing bytes after the last field")]
    TrailingBytes,
    /// A property-flags word with bits the class does not define.
    #[error("invalid property flags")]
    BadPropertyFlags,
}

/// A decoding or framing error, mapped to the reply code the broker must send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A frame whose size exceeds the negotiated `frame_max` (501).
    #[error("frame of {size} bytes exceeds frame_max {max}")]
    FrameTooLarge {
        /// The whole frame's size (payload + 8).
        size: u64,
        /// The negotiated limit.
        max: u32,
    },
    /// The frame-end octet is not 0xCE (501).
    #[error("frame end octet 0x{0:02x} is not 0xce")]
    BadFrameEnd(u8),
    /// An unknown frame type octet (501).
    #[error("unknown frame type {0}")]
    UnknownFrameType(u8),
    /// A malformed method or content header (502).
    #[error("syntax error in {class_id}.{method_id}: {reason}")]
    Syntax {
        /// Class id of the method (0 if unknown).
        class_id: u16,
        /// Method id of the method (0 if unknown, or a content header).
        method_id: u16,
        /// What was wrong.
        reason: SyntaxReason,
    },
    /// A class or method id that AMQP 0-9-1 does not define (540).
    #[error("unknown method {class_id}.{method_id}")]
    UnknownMethod {
        /// Class id received.
        class_id: u16,
        /// Method id received.
        method_id: u16,
    },
    /// A frame out of the method → header → body sequence (505).
    #[error("{0}")]
    UnexpectedFrame(&'static str),
    /// A content body longer than its header declared (501).
    #[error("content body of {received} bytes exceeds the declared {declared}")]
    BodyTooLong {
        /// Declared body size from the content header.
        declared: u64,
        /// Bytes received so far.
        received: u64,
    },
}

impl CodecError {
    /// The AMQP reply code this error must be reported with. All codec errors are connection
    /// errors (hard), as the spec says for framing problems.
    pub fn reply_code(&self) -> ReplyCode {
        match self {
            CodecError::FrameTooLarge { .. }
            | CodecError::BadFrameEnd(_)
            | CodecError::UnknownFrameType(_)
            | CodecError::BodyTooLong { .. } => ReplyCode::FrameError,
            CodecError::Syntax { .. } => ReplyCode::SyntaxError,
            CodecError::UnknownMethod { .. } => ReplyCode::NotImplemented,
            CodecError::UnexpectedFrame(_) => ReplyCode::UnexpectedFrame,
        }
    }

    /// Class and method id of the offending method, `(0, 0)` when not known.
    pub fn class_method(&self) -> (u16, u16) {
        match self {
            CodecError::Syntax {
                class_id, method_id, ..
            }
            | CodecError::UnknownMethod { class_id, method_id } => (*class_id, *method_id),
            _ => (0, 0),
        }
    }
}
