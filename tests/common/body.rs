//! Request/response bodies, and the deterministic byte pattern used for large transfers.
//!
//! Byte `i` of a pattern stream is `(i % 251) as u8`. 251 is prime, so the pattern does not
//! line up with power-of-two buffer or chunk sizes: a dropped, duplicated or reordered chunk
//! anywhere in a proxy shows up as a mismatch instead of passing by coincidence.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::{Frame, SizeHint};

/// Size of the chunks a pattern body is produced in.
pub const PATTERN_CHUNK: usize = 64 * 1024;

/// Byte `i` of the pattern.
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// `len` bytes of the pattern starting at stream offset `offset`.
pub fn pattern_chunk(offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| pattern_byte(offset + i)).collect()
}

/// FNV-1a, 64 bit: a checksum that can be computed incrementally over a stream, so the
/// backends can report what they received without keeping it.
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a64(u64);

impl Fnv1a64 {
    pub fn new() -> Self {
        Fnv1a64(0xcbf2_9ce4_8422_2325)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The checksum as 16 lowercase hex digits, as backends report it in `body_fnv`.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

impl Default for Fnv1a64 {
    fn default() -> Self {
        Fnv1a64::new()
    }
}

/// The `body_fnv` a backend reports for exactly these bytes.
pub fn fnv1a64_hex(bytes: &[u8]) -> String {
    let mut fnv = Fnv1a64::new();
    fnv.update(bytes);
    fnv.hex()
}

/// The `body_fnv` a backend reports after receiving `len` bytes of the pattern.
pub fn pattern_fnv_hex(len: u64) -> String {
    let mut fnv = Fnv1a64::new();
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(PATTERN_CHUNK as u64) as usize;
        fnv.update(&pattern_chunk(offset, n));
        offset += n as u64;
    }
    fnv.hex()
}

/// Incrementally checks a received stream against the pattern.
#[derive(Debug)]
pub struct PatternCheck {
    len: u64,
    ok: bool,
}

impl PatternCheck {
    pub fn new() -> Self {
        PatternCheck { len: 0, ok: true }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        if self.ok {
            self.ok = bytes
                .iter()
                .enumerate()
                .all(|(i, &b)| b == pattern_byte(self.len + i as u64));
        }
        self.len += bytes.len() as u64;
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether every byte seen so far matched the pattern.
    pub fn ok(&self) -> bool {
        self.ok
    }
}

impl Default for PatternCheck {
    fn default() -> Self {
        PatternCheck::new()
    }
}

/// A body of `total` pattern bytes, produced lazily one [`PATTERN_CHUNK`] at a time, so that
/// a test can send or serve gigabytes with constant memory.
pub struct PatternBody {
    sent: u64,
    total: u64,
    /// Whether the length is announced up front (Content-Length) or not (HTTP/1.1 chunked).
    announce_len: bool,
}

impl hyper::body::Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent >= self.total {
            return Poll::Ready(None);
        }
        let n = (self.total - self.sent).min(PATTERN_CHUNK as u64) as usize;
        let chunk = pattern_chunk(self.sent, n);
        self.sent += n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.total
    }

    fn size_hint(&self) -> SizeHint {
        if self.announce_len {
            SizeHint::with_exact(self.total - self.sent)
        } else {
            SizeHint::default()
        }
    }
}

/// A request or response body for the harness's clients and backends.
///
/// Converts from `&str`, `String`, `&[u8]`, `b"..."`, `Vec<u8>` and `Bytes`, so that a test
/// can pass a literal; [`Body::pattern`] streams large bodies.
pub struct Body(BoxBody<Bytes, Infallible>);

impl Body {
    pub fn empty() -> Body {
        Body(Empty::new().boxed())
    }

    /// `len` pattern bytes sent with a Content-Length.
    pub fn pattern(len: u64) -> Body {
        Body(
            PatternBody {
                sent: 0,
                total: len,
                announce_len: true,
            }
            .boxed(),
        )
    }

    /// `len` pattern bytes without a length up front (chunked transfer encoding on HTTP/1.1).
    pub fn pattern_chunked(len: u64) -> Body {
        Body(
            PatternBody {
                sent: 0,
                total: len,
                announce_len: false,
            }
            .boxed(),
        )
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Body {
        if bytes.is_empty() {
            // No body at all rather than a zero-length one: hyper then sends no
            // Content-Length on a GET.
            Body::empty()
        } else {
            Body(Full::new(bytes).boxed())
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Body {
        Bytes::from(bytes).into()
    }
}

impl From<&[u8]> for Body {
    fn from(bytes: &[u8]) -> Body {
        Bytes::copy_from_slice(bytes).into()
    }
}

impl<const N: usize> From<&[u8; N]> for Body {
    fn from(bytes: &[u8; N]) -> Body {
        Bytes::copy_from_slice(bytes).into()
    }
}

impl From<&str> for Body {
    fn from(text: &str) -> Body {
        Bytes::copy_from_slice(text.as_bytes()).into()
    }
}

impl From<String> for Body {
    fn from(text: String) -> Body {
        Bytes::from(text).into()
    }
}
