//! AMQP 0-9-1 reply codes with their spec names and soft (channel) / hard (connection)
//! classification.

/// A reply code from the spec's constants table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ReplyCode {
    /// 200
    ReplySuccess = 200,
    /// 311 (soft)
    ContentTooLarge = 311,
    /// 312 (soft)
    NoRoute = 312,
    /// 313 (soft)
    NoConsumers = 313,
    /// 320 (hard)
    ConnectionForced = 320,
    /// 402 (hard)
    InvalidPath = 402,
    /// 403 (soft)
    AccessRefused = 403,
    /// 404 (soft)
    NotFound = 404,
    /// 405 (soft)
    ResourceLocked = 405,
    /// 406 (soft)
    PreconditionFailed = 406,
    /// 501 (hard)
    FrameError = 501,
    /// 502 (hard)
    SyntaxError = 502,
    /// 503 (hard)
    CommandInvalid = 503,
    /// 504 (hard)
    ChannelError = 504,
    /// 505 (hard)
    UnexpectedFrame = 505,
    /// 506 (hard)
    ResourceError = 506,
    /// 530 (hard)
    NotAllowed = 530,
    /// 540 (hard)
    NotImplemented = 540,
    /// 541 (hard)
    InternalError = 541,
}

/// Every reply code, in ascending order.
pub const ALL_REPLY_CODES: [ReplyCode; 19] = [
    ReplyCode::ReplySuccess,
    ReplyCode::ContentTooLarge,
    ReplyCode::NoRoute,
    ReplyCode::NoConsumers,
    ReplyCode::ConnectionForced,
    ReplyCode::InvalidPath,
    ReplyCode::AccessRefused,
    ReplyCode::NotFound,
    ReplyCode::ResourceLocked,
    ReplyCode::PreconditionFailed,
    ReplyCode::FrameError,
    ReplyCode::SyntaxError,
    ReplyCode::CommandInvalid,
    ReplyCode::ChannelError,
    ReplyCode::UnexpectedFrame,
    ReplyCode::ResourceError,
    ReplyCode::NotAllowed,
    ReplyCode::NotImplemented,
    ReplyCode::InternalError,
];

impl ReplyCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// Looks a numeric code up.
    pub fn from_code(code: u16) -> Option<ReplyCode> {
        ALL_REPLY_CODES.iter().copied().find(|c| c.code() == code)
    }

    /// The spec's name, as RabbitMQ prefixes reply texts with it (`NOT_FOUND`).
    pub fn name(self) -> &'static str {
        match self {
            ReplyCode::ReplySuccess => "REPLY_SUCCESS",
            ReplyCode::ContentTooLarge => "CONTENT_TOO_LARGE",
            ReplyCode::NoRoute => "NO_ROUTE",
            ReplyCode::NoConsumers => "NO_CONSUMERS",
            ReplyCode::ConnectionForced => "CONNECTION_FORCED",
            ReplyCode::InvalidPath => "INVALID_PATH",
            ReplyCode::AccessRefused => "ACCESS_REFUSED",
            ReplyCode::NotFound => "NOT_FOUND",
            ReplyCode::ResourceLocked => "RESOURCE_LOCKED",
            ReplyCode::PreconditionFailed => "PRECONDITION_FAILED",
            ReplyCode::FrameError => "FRAME_ERROR",
            ReplyCode::SyntaxError => "SYNTAX_ERROR",
            ReplyCode::CommandInvalid => "COMMAND_INVALID",
            ReplyCode::ChannelError => "CHANNEL_ERROR",
            ReplyCode::UnexpectedFrame => "UNEXPECTED_FRAME",
            ReplyCode::ResourceError => "RESOURCE_ERROR",
            ReplyCode::NotAllowed => "NOT_ALLOWED",
            ReplyCode::NotImplemented => "NOT_IMPLEMENTED",
            ReplyCode::InternalError => "INTERNAL_ERROR",
        }
    }

    /// Hard errors close the connection; soft errors close only the channel.
    pub fn is_hard(self) -> bool {
        matches!(
            self,
            ReplyCode::ConnectionForced
                | ReplyCode::InvalidPath
                | ReplyCode::FrameError
                | ReplyCode::SyntaxError
                | ReplyCode::CommandInvalid
                | ReplyCode::ChannelError
                | ReplyCode::UnexpectedFrame
                | ReplyCode::ResourceError
                | ReplyCode::NotAllowed
                | ReplyCode::NotImplemented
                | ReplyCode::InternalError
        )
    }

    /// Soft errors close the channel (`channel.close`).
    pub fn is_soft(self) -> bool {
        !self.is_hard() && self != ReplyCode::ReplySuccess
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks names, values and classes against the spec's constants table.
    #[test]
    fn matches_spec_constants_table() {
        let tsv = include_str!("../spec/amqp-0-9-1-constants.tsv");
        let mut seen = 0;
        for line in tsv.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            let (name, value, class) = (cols[0], cols[1].parse::<u16>().unwrap(), cols[2]);
            if class == "frame-type" || name == "FRAME_MIN_SIZE" || name == "FRAME_END" {
                continue;
            }
            let code = ReplyCode::from_code(value).unwrap_or_else(|| panic!("missing {name}"));
            assert_eq!(code.name(), name);
            match class {
                "hard-error" => assert!(code.is_hard(), "{name}"),
                "soft-error" => assert!(code.is_soft(), "{name}"),
                _ => assert_eq!(code, ReplyCode::ReplySuccess),
            }
            seen += 1;
        }
        assert_eq!(seen, ALL_REPLY_CODES.len());
    }
}
