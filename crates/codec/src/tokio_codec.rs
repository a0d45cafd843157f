//! A thin tokio-util `Decoder`/`Encoder` over [`decode_frame`] and [`encode_frame`].

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::error::CodecError;
use crate::frame::{Frame, decode_frame, encode_frame};

/// Frame codec for `tokio_util::codec::Framed`. The protocol header is not handled here.
#[derive(Debug, Clone, Copy)]
pub struct AmqpCodec {
    /// Negotiated frame_max (0 = unlimited).
    pub frame_max: u32,
}

impl Decoder for AmqpCodec {
    type Item = Frame;
    type Error = CodecIoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecIoError> {
        Ok(decode_frame(src, self.frame_max)?)
    }
}

impl Encoder<&Frame> for AmqpCodec {
    type Error = CodecIoError;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), CodecIoError> {
        encode_frame(dst, item);
        Ok(())
    }
}

/// A codec error or an IO error from the transport.
#[derive(Debug, thiserror::Error)]
pub enum CodecIoError {
    /// Protocol error.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Transport error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
