//! A lean AMQP 0-9-1 client on `warren-codec`: a raw tokio `TcpStream`, the handshake
//! (protocol header, start-ok PLAIN, tune-ok, open), synchronous request/reply for setup, and a
//! zero-copy frame scanner for the hot paths ([`scan_frames`]), which walks every complete
//! frame in a read buffer without splitting it.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_codec::frame::{FRAME_END, FRAME_HEARTBEAT, FRAME_METHOD, HEARTBEAT_FRAME, PROTOCOL_HEADER};
use warren_codec::methods::*;
use warren_codec::{FieldTable, FieldValue, Frame, Method, decode_frame, encode_method};

use crate::uri::AmqpUri;

/// Errors are reported as text: a benchmark only needs to say what went wrong.
pub type Result<T> = std::result::Result<T, String>;

/// Read buffer capacity of hot-path connections.
pub const READ_BUF: usize = 1 << 20;

/// A connection after the handshake, before it is split for the hot path.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes read, not yet decoded.
    pub rbuf: BytesMut,
    /// Scratch for outgoing frames.
    pub wbuf: BytesMut,
    /// Negotiated frame_max.
    pub frame_max: u32,
}

/// A frame borrowed from the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    /// Frame type (1 method, 2 header, 3 body, 8 heartbeat).
    pub kind: u8,
    /// Channel number.
    pub channel: u16,
    /// The payload, without header and frame-end.
    pub payload: &'a [u8],
}

impl FrameRef<'_> {
    /// (class id, method id) of a method frame.
    pub fn method_id(&self) -> Option<(u16, u16)> {
        if self.kind != FRAME_METHOD || self.payload.len() < 4 {
            return None;
        }
        let p = self.payload;
        Some((u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])))
    }

    /// Full decode of a method frame through the codec (slow path: rare methods only).
    pub fn decode_method(&self) -> Result<Method> {
        Method::decode(&Bytes::copy_from_slice(self.payload)).map_err(|e| format!("decode: {e}"))
    }
}

/// Calls `f` for every complete frame at the front of `buf` and returns the bytes consumed
/// (the caller advances the buffer). Stops early when `f` returns an error.
pub fn scan_frames(buf: &[u8], mut f: impl FnMut(FrameRef<'_>) -> Result<()>) -> Result<usize> {
    let mut pos = 0;
    while buf.len() - pos >= 7 {
        let h = &buf[pos..];
        let size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]) as usize;
        let total = size + 8;
        if h.len() < total {
            break;
        }
        if h[total - 1] != FRAME_END {
            return Err(format!("bad frame end {:#x}", h[total - 1]));
        }
        f(FrameRef {
            kind: h[0],
            channel: u16::from_be_bytes([h[1], h[2]]),
            payload: &h[7..7 + size],
        })?;
        pos += total;
    }
    Ok(pos)
}

/// Error text for a broker-initiated channel.close or connection.close, if `m` is one.
pub fn close_reason(m: &Method) -> Option<String> {
    match m {
        Method::ChannelClose(c) => Some(format!(
            "channel closed by broker: {} {}",
            c.reply_code, c.reply_text
        )),
        Method::ConnectionClose(c) => Some(format!(
            "connection closed by broker: {} {}",
            c.reply_code, c.reply_text
        )),
        _ => None,
    }
}

impl Conn {
    /// Connects and performs the handshake; `name` goes into the client properties.
    pub async fn connect(uri: &AmqpUri, frame_max: u32, name: &str) -> Result<Conn> {
        let stream = TcpStream::connect((uri.host.as_str(), uri.port))
            .await
            .map_err(|e| format!("connect {}:{}: {e}", uri.host, uri.port))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut c = Conn {
            stream,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::with_capacity(64 * 1024),
            frame_max: 4096,
        };
        c.stream
            .write_all(&PROTOCOL_HEADER)
            .await
            .map_err(|e| e.to_string())?;
        match c.next_method(0).await? {
            Method::ConnectionStart(s) => {
                let mechs = String::from_utf8_lossy(&s.mechanisms).to_string();
                if !mechs.split(' ').any(|m| m == "PLAIN") {
                    return Err(format!("broker does not offer PLAIN: {mechs}"));
                }
            }
            other => return Err(format!("expected connection.start, got {other:?}")),
        }
        let mut caps = FieldTable::new();
        for cap in [
            "publisher_confirms",
            "consumer_cancel_notify",
            "basic.nack",
            "connection.blocked",
        ] {
            caps.insert(cap, FieldValue::Bool(true));
        }
        let mut props = FieldTable::new();
        props.insert("product", FieldValue::str("warren-perf"));
        props.insert("connection_name", FieldValue::str(name));
        props.insert("capabilities", FieldValue::Table(caps));
        let response = format!("\0{}\0{}", uri.user, uri.pass);
        c.send(
            0,
            ConnectionStartOk {
                client_properties: props,
                mechanism: "PLAIN".into(),
                response: Bytes::from(response),
                locale: "en_US".into(),
            },
        )
        .await?;
        let tune = match c.next_method(0).await? {
            Method::ConnectionTune(t) => t,
            other => return Err(close_reason(&other).unwrap_or(format!("expected tune, got {other:?}"))),
        };
        let fm = match (tune.frame_max, frame_max) {
            (0, x) | (x, 0) => x,
            (a, b) => a.min(b),
        };
        c.send(
            0,
            ConnectionTuneOk {
                channel_max: tune.channel_max,
                frame_max: fm,
                heartbeat: 0,
            },
        )
        .await?;
        c.frame_max = fm;
        let open = c
            .rpc(
                0,
                ConnectionOpen {
                    virtual_host: uri.vhost.as_str().into(),
                    ..Default::default()
                },
            )
            .await?;
        if !matches!(open, Method::ConnectionOpenOk(_)) {
            return Err(format!("expected open-ok, got {open:?}"));
        }
        Ok(c)
    }

    /// Writes one method frame.
    pub async fn send(&mut self, channel: u16, method: impl Into<Method>) -> Result<()> {
        self.wbuf.clear();
        encode_method(&mut self.wbuf, channel, &method.into());
        self.stream
            .write_all(&self.wbuf)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// Reads frames until a method frame arrives on `channel` (heartbeats answered, content
    /// frames skipped); a broker close of this channel or the connection is an error.
    pub async fn next_method(&mut self, channel: u16) -> Result<Method> {
        loop {
            let frame = decode_frame(&mut self.rbuf, 0).map_err(|e| format!("decode: {e}"))?;
            match frame {
                Some(Frame::Method { channel: ch, method }) => {
                    if let Some(reason) = close_reason(&method) {
                        return Err(reason);
                    }
                    if ch == channel {
                        return Ok(method);
                    }
                }
                Some(Frame::Heartbeat { .. }) => {
                    self.stream
                        .write_all(&HEARTBEAT_FRAME)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Some(_) => {}
                None => {
                    let n = self
                        .stream
                        .read_buf(&mut self.rbuf)
                        .await
                        .map_err(|e| format!("read: {e}"))?;
                    if n == 0 {
                        return Err("connection closed by broker".into());
                    }
                }
            }
        }
    }

    /// Sends a method and waits for the next method on the same channel.
    pub async fn rpc(&mut self, channel: u16, method: impl Into<Method>) -> Result<Method> {
        self.send(channel, method).await?;
        self.next_method(channel).await
    }

    /// Opens channel `ch`.
    pub async fn open_channel(&mut self, ch: u16) -> Result<()> {
        match self.rpc(ch, ChannelOpen::default()).await? {
            Method::ChannelOpenOk(_) => Ok(()),
            other => Err(format!("expected channel.open-ok, got {other:?}")),
        }
    }

    /// Closes the connection politely (waits up to a second for close-ok).
    pub async fn close(mut self) {
        let _ = self
            .send(
                0,
                ConnectionClose {
                    reply_code: 200,
                    reply_text: "bye".into(),
                    ..Default::default()
                },
            )
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match self.stream.read_buf(&mut self.rbuf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let mut done = false;
                        let n = scan_frames(&self.rbuf, |f| {
                            done |= f.method_id() == Some((10, 51));
                            Ok(())
                        })
                        .unwrap_or(self.rbuf.len());
                        self.rbuf.advance(n);
                        if done {
                            return;
                        }
                    }
                }
            }
        })
        .await;
    }

    /// Answers a heartbeat frame kind if needed (hot paths ignore everything but this).
    pub fn is_heartbeat(kind: u8) -> bool {
        kind == FRAME_HEARTBEAT
    }
}
