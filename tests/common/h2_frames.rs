//! HTTP/2 written and read frame by frame, for what a well-behaved client library refuses
//! to send (connection-specific headers, a burst of streams reset at once, ...): a minimal
//! framing with literal HPACK, and a reader that acknowledges the server's SETTINGS.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{tls_connect, RawStream, TlsClientOpts};

pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const ACK: u8 = 0x1;

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn hpack_int(out: &mut Vec<u8>, first: u8, prefix_bits: u8, mut n: usize) {
    let max = (1usize << prefix_bits) - 1;
    if n < max {
        out.push(first | n as u8);
        return;
    }
    out.push(first | max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

/// A header as an HPACK "literal without indexing, new name", no Huffman: any bytes at all.
pub fn hpack_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// A request header block: the four pseudo-headers, then `extra`.
pub fn request_block(
    method: &str,
    path: &str,
    authority: &str,
    extra: &[(&[u8], &[u8])],
) -> Vec<u8> {
    let mut b = Vec::new();
    hpack_literal(&mut b, b":method", method.as_bytes());
    hpack_literal(&mut b, b":scheme", b"https");
    hpack_literal(&mut b, b":path", path.as_bytes());
    hpack_literal(&mut b, b":authority", authority.as_bytes());
    for (n, v) in extra {
        hpack_literal(&mut b, n, v);
    }
    b
}

/// A frame as received.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        self.payload
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
    }

    /// The `:status` of a response HEADERS frame, when HPACK put it in the static table or as
    /// a literal with the static `:status` name (how h2 encodes every status).
    pub fn status(&self) -> Option<u16> {
        if self.kind != HEADERS {
            return None;
        }
        let mut p = &self.payload[..];
        if self.flags & 0x8 != 0 {
            let pad = *p.first()? as usize;
            p = p.get(1..p.len().checked_sub(pad)?)?;
        }
        if self.flags & 0x20 != 0 {
            p = p.get(5..)?;
        }
        let first = *p.first()?;
        let indexed = [
            (0x88, 200),
            (0x89, 204),
            (0x8a, 206),
            (0x8b, 304),
            (0x8c, 400),
            (0x8d, 404),
            (0x8e, 500),
        ];
        if let Some((_, s)) = indexed.iter().find(|(b, _)| *b == first) {
            return Some(*s);
        }
        // Literal with an indexed name 8..=14 (`:status`), 4-bit or 6-bit prefix.
        let name = if first & 0xc0 == 0x40 {
            first & 0x3f
        } else {
            first & 0x0f
        };
        if (8..=14).contains(&name) {
            let len = *p.get(1)? as usize & 0x7f;
            return std::str::from_utf8(p.get(2..2 + len)?).ok()?.parse().ok();
        }
        None
    }
}

/// TLS with ALPN h2 only; fails unless the gateway chose h2.
pub async fn h2_connect(addr: SocketAddr, sni: &str) -> RawStream {
    let conn = tls_connect(addr, sni, &TlsClientOpts::insecure().alpn(&["h2"]))
        .await
        .expect("TLS handshake");
    assert_eq!(
        conn.alpn().as_deref(),
        Some("h2"),
        "the gateway must negotiate h2"
    );
    Box::new(conn.into_stream())
}

/// The client preface and an empty SETTINGS frame.
pub async fn h2_start<S: AsyncWrite + Unpin + ?Sized>(stream: &mut S) {
    let mut hello = H2_PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    stream.write_all(&hello).await.expect("write preface");
}

/// Reads frames until `done` says so, the connection closes, or `limit` passes; SETTINGS
/// from the server are acknowledged. Returns the frames and whether the connection closed.
pub async fn h2_read<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    limit: Duration,
    mut done: impl FnMut(&Frame) -> bool,
) -> (Vec<Frame>, bool) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        while buf.len() >= 9 {
            let len = (buf[0] as usize) << 16 | (buf[1] as usize) << 8 | buf[2] as usize;
            if buf.len() < 9 + len {
                break;
            }
            let f = Frame {
                kind: buf[3],
                flags: buf[4],
                stream: u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff,
                payload: buf[9..9 + len].to_vec(),
            };
            buf.drain(..9 + len);
            if f.kind == SETTINGS && f.flags & ACK == 0 {
                let _ = stream.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
            }
            let stop = done(&f);
            frames.push(f);
            if stop {
                return (frames, false);
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (frames, true),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return (frames, false),
        }
    }
}
