//! Fuzz target `frames`: arbitrary bytes into `decode_frame` (frame_max 131072) and a
//! `ContentAssembler` per channel, as a connection would feed them.
//!
//! The first input byte picks how the rest is cut into reads (1..=64 bytes, or all at once), so
//! the partial-buffer paths are exercised as well. Every decoded frame is also re-encoded: the
//! encoding of a decoded frame must decode again and re-encode to the same bytes (decoding
//! normalises a few things, such as `U`/`L` tags and unused bits, so the first re-encoding is the
//! reference, not the input).
#![no_main]

use std::collections::HashMap;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_codec::{ContentAssembler, Frame, decode_frame, encode_frame};

const FRAME_MAX: u32 = 131072;

fn check_reencoding(frame: &Frame) {
    let mut once = BytesMut::new();
    encode_frame(&mut once, frame);
    let reference = once.clone();
    let again = decode_frame(&mut once, 0)
        .expect("our own encoding decodes")
        .expect("our own encoding is a whole frame");
    assert!(once.is_empty(), "re-encoded frame decodes to exactly one frame");
    let mut twice = BytesMut::new();
    encode_frame(&mut twice, &again);
    assert_eq!(reference, twice, "encode(decode(encode(frame))) == encode(frame)");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let chunk = match mode % 65 {
        0 => data.len().max(1),
        n => n as usize,
    };
    let mut buf = BytesMut::new();
    let mut assemblers: HashMap<u16, ContentAssembler> = HashMap::new();
    for part in data.chunks(chunk) {
        buf.extend_from_slice(part);
        loop {
            match decode_frame(&mut buf, FRAME_MAX) {
                Ok(None) => break,
                Err(e) => {
                    let _ = (e.reply_code(), e.class_method(), e.to_string());
                    return;
                }
                Ok(Some(frame)) => {
                    check_reencoding(&frame);
                    if let Frame::Heartbeat { .. } = frame {
                        continue;
                    }
                    let assembler = assemblers.entry(frame.channel()).or_default();
                    if let Err(e) = assembler.handle(frame) {
                        let _ = (e.reply_code(), e.to_string());
                        return;
                    }
                }
            }
        }
    }
});
