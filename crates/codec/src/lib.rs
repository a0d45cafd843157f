//! # warren-codec
//!
//! The AMQP 0-9-1 wire format as RabbitMQ speaks it, with no IO (sans-IO): frames, all 66
//! methods (including RabbitMQ's extensions), content headers with the 14 `basic` properties,
//! field tables and arrays with RabbitMQ's type tags, reply codes, and a per-channel content
//! assembler. Decoding never panics and never allocates from an unchecked length; bodies are
//! zero-copy `Bytes` slices of the read buffer.
//!
//! ## Layout
//! - [`types`]: short/long strings, field values and tables, the bounds-checked [`Reader`].
//! - [`properties`]: [`BasicProperties`] and the [`ContentHeader`] frame payload.
//! - [`generated`]: one struct per method and the [`Method`] enum, generated from
//!   `spec/amqp-0-9-1-methods.tsv` by `codegen/generate.py`.
//! - [`frame`]: protocol header, [`Frame`], [`decode_frame`] and the encoders.
//! - [`assembler`]: method → header → bodies into one [`Command`].
//! - [`reply`]: [`ReplyCode`] with soft/hard classification.
//! - [`error`]: [`CodecError`], carrying the reply code and class/method ids.
//! - `tokio_codec` (feature `tokio`): a tokio-util `Decoder`/`Encoder`.

#![warn(missing_docs)]

pub mod assembler;
pub mod error;
pub mod frame;
pub mod generated;
pub mod properties;
pub mod reply;
#[cfg(feature = "tokio")]
pub mod tokio_codec;
pub mod types;

pub use assembler::{Assembled, Command, ContentAssembler};
pub use error::{CodecError, SyntaxReason};
pub use frame::{
    Frame, ProtocolHeader, classify_protocol_header, decode_frame, encode_basic_header, encode_body,
    encode_content, encode_frame, encode_header, encode_method,
};
pub use generated::{Method, MethodArgs};
pub use properties::{BasicProperties, ContentHeader};
pub use reply::ReplyCode;
pub use types::{FieldTable, FieldValue, LongStr, Reader, ShortStr};

/// All method structs, for `use warren_codec::methods::*`.
pub mod methods {
    pub use crate::generated::*;
}
