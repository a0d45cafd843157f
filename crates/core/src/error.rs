//! The broker's error type: an AMQP reply code, RabbitMQ's reply text, and the class and
//! method that caused it. Soft codes close the channel, hard codes the connection.

use warren_codec::ReplyCode;

/// An AMQP-level error, ready to be sent as `channel.close` or `connection.close`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} - {text}", code.name())]
pub struct AmqpError {
    /// Reply code.
    pub code: ReplyCode,
    /// Reply text without the `NAME - ` prefix (added by [`AmqpError::reply_text`]).
    pub text: String,
    /// Class id of the method that failed (0 if none).
    pub class_id: u16,
    /// Method id of the method that failed (0 if none).
    pub method_id: u16,
}

/// Result alias for broker operations.
pub type AmqpResult<T> = Result<T, AmqpError>;

impl AmqpError {
    /// An error with the given code and text.
    pub fn new(code: ReplyCode, text: impl Into<String>) -> Self {
        AmqpError {
            code,
            text: text.into(),
            class_id: 0,
            method_id: 0,
        }
    }

    /// Attaches the failing method's ids (keeps ids already set).
    pub fn with_method(mut self, class_id: u16, method_id: u16) -> Self {
        if self.class_id == 0 {
            self.class_id = class_id;
            self.method_id = method_id;
        }
        self
    }

    /// 404 NOT_FOUND.
    pub fn not_found(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::NotFound, text)
    }

    /// 406 PRECONDITION_FAILED.
    pub fn precondition(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::PreconditionFailed, text)
    }

    /// 403 ACCESS_REFUSED.
    pub fn access_refused(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::AccessRefused, text)
    }

    /// 405 RESOURCE_LOCKED.
    pub fn resource_locked(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::ResourceLocked, text)
    }

    /// 503 COMMAND_INVALID.
    pub fn command_invalid(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::CommandInvalid, text)
    }

    /// 504 CHANNEL_ERROR.
    pub fn channel_error(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::ChannelError, text)
    }

    /// 530 NOT_ALLOWED.
    pub fn not_allowed(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::NotAllowed, text)
    }

    /// 540 NOT_IMPLEMENTED.
    pub fn not_implemented(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::NotImplemented, text)
    }

    /// 541 INTERNAL_ERROR.
    pub fn internal(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::InternalError, text)
    }

    /// Whether this error closes the connection rather than the channel.
    pub fn is_hard(&self) -> bool {
        self.code.is_hard()
    }

    /// The reply text as RabbitMQ sends it: `NOT_FOUND - no queue 'q' in vhost '/'`.
    pub fn reply_text(&self) -> String {
        format!("{} - {}", self.code.name(), self.text)
    }
}

impl From<warren_codec::CodecError> for AmqpError {
    fn from(e: warren_codec::CodecError) -> Self {
        let (class_id, method_id) = e.class_method();
        AmqpError {
            code: e.reply_code(),
            text: e.to_string(),
            class_id,
            method_id,
        }
    }
}
