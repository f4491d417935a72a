//! Request framing checks Portico makes on top of Pingora's HTTP/1 parser.
//!
//! Pingora (httparse) already refuses NUL and bare CR in header values, obsolete line folding,
//! whitespace before a header's colon, differing `Content-Length` values, a final
//! `Transfer-Encoding` other than `chunked`, `Transfer-Encoding` on HTTP/1.0 and an
//! absolute-form target whose authority differs from `Host`. It is lenient where a backend
//! may read the same bytes differently, which is what request smuggling feeds on: it accepts
//! bare LF line ends, a request with both `Content-Length` and `Transfer-Encoding` (it drops
//! the length and goes on with chunked), identical repeated lengths (`5, 5`), and
//! `Transfer-Encoding` values that only end in `chunked` (`gzip, chunked`, `chunked\x0c`),
//! which it forwards as they are. An edge refuses all of them: a real client never sends
//! them, and each is a known way to make two parsers disagree about where a request ends.

/// Why a request head is refused (the answer is 400, and the connection is closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BareLineFeed,
    BareCarriageReturn,
    ControlCharacter,
    LineFolding,
    MalformedHeaderLine,
    ContentLengthAndTransferEncoding,
    RepeatedContentLength,
    InvalidContentLength,
    RepeatedTransferEncoding,
    TransferEncodingNotChunked,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::BareLineFeed => "a line of the request head ends in LF without CR",
            Refusal::BareCarriageReturn => "a CR in the request head is not followed by LF",
            Refusal::ControlCharacter => "a control character in the request head",
            Refusal::LineFolding => "obsolete line folding in the request head",
            Refusal::MalformedHeaderLine => "a header line without a name and a colon",
            Refusal::ContentLengthAndTransferEncoding => {
                "both Content-Length and Transfer-Encoding"
            }
            Refusal::RepeatedContentLength => "more than one Content-Length",
            Refusal::InvalidContentLength => "a Content-Length that is not a plain number",
            Refusal::RepeatedTransferEncoding => "more than one Transfer-Encoding",
            Refusal::TransferEncodingNotChunked => {
                "a Transfer-Encoding other than exactly `chunked`"
            }
        }
    }
}

/// Checks an HTTP/1 request head exactly as received (request line, header lines and the
/// blank line; [`Refusal`] says what fails). A head that passes has CRLF line ends only, no
/// control characters but horizontal tab, at most one framing header, a `Content-Length` of
/// digits only, and a `Transfer-Encoding` of exactly `chunked` (lowercase, with at most
/// spaces around it: RFC 9112 allows other spellings, but a backend that compares them
/// differently than Portico would read the body as the next request, and no real client
/// sends them).
///
/// ```
/// use gateway::net::framing::{check_h1_head, Refusal};
/// assert_eq!(check_h1_head(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"), Ok(()));
/// let both = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
/// assert_eq!(check_h1_head(both), Err(Refusal::ContentLengthAndTransferEncoding));
/// ```
pub fn check_h1_head(raw: &[u8]) -> Result<(), Refusal> {
    // This runs on every HTTP/1 request: the bytes are looked at in one branch-free pass
    // (which the compiler vectorizes) and the lines found with `memchr`; only a head that
    // fails that pass is walked byte by byte, to name what is wrong with it.
    if !plain_bytes(raw) {
        name_bad_byte(raw)?;
    }
    // Empty lines before the request line are skipped, as httparse does (RFC 9112 2.2):
    // counted as the head's end, they would hide every header line after them.
    let mut rest = raw;
    let mut request_line_seen = false;
    let (mut lengths, mut encodings) = (0usize, 0usize);
    while !rest.is_empty() {
        let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let line = &rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        rest = rest.get(end + 1..).unwrap_or_default();
        if !request_line_seen {
            request_line_seen = !line.is_empty();
            continue;
        }
        if line.is_empty() {
            break; // the blank line ending the head
        }
        check_header_line(line, &mut lengths, &mut encodings)?;
    }
    match (lengths, encodings) {
        (l, e) if l > 0 && e > 0 => Err(Refusal::ContentLengthAndTransferEncoding),
        (l, _) if l > 1 => Err(Refusal::RepeatedContentLength),
        (_, e) if e > 1 => Err(Refusal::RepeatedTransferEncoding),
        _ => Ok(()),
    }
}

/// Whether `raw` has no control byte but tab, CR and LF, and every CR is right before an LF
/// and every LF right after a CR. Without branches or early exits, so that the compiler
/// turns the loop into vector instructions (16 bytes at a time).
fn plain_bytes(raw: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (raw.first(), raw.last()) else {
        return true;
    };
    let odd = |b: u8| {
        u8::from(b < 0x20) & u8::from(b != b'\t') & u8::from(b != b'\r') & u8::from(b != b'\n')
            | u8::from(b == 0x7f)
    };
    let mut bad = u8::from(first == b'\n') | u8::from(last == b'\r') | odd(last);
    for (&b, &next) in raw.iter().zip(&raw[1..]) {
        // A CR without its LF, or an LF without its CR.
        bad |= u8::from(b == b'\r') ^ u8::from(next == b'\n');
        bad |= odd(b);
    }
    bad == 0
}

/// The first bad byte of a head [`plain_bytes`] refused, as a [`Refusal`].
fn name_bad_byte(raw: &[u8]) -> Result<(), Refusal> {
    for (i, &b) in raw.iter().enumerate() {
        match b {
            b'\n' if i == 0 || raw[i - 1] != b'\r' => return Err(Refusal::BareLineFeed),
            b'\r' if raw.get(i + 1) != Some(&b'\n') => return Err(Refusal::BareCarriageReturn),
            b'\r' | b'\n' | b'\t' => {}
            0..=0x1f | 0x7f => return Err(Refusal::ControlCharacter),
            _ => {}
        }
    }
    Ok(())
}

/// One header line (without its CR LF): a name, a colon, and for the two framing headers a
/// value that has one reading.
fn check_header_line(
    line: &[u8],
    lengths: &mut usize,
    encodings: &mut usize,
) -> Result<(), Refusal> {
    if line[0] == b' ' || line[0] == b'\t' {
        return Err(Refusal::LineFolding);
    }
    let Some(colon) = memchr::memchr(b':', line) else {
        return Err(Refusal::MalformedHeaderLine);
    };
    let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
    if name.is_empty() || name.iter().any(|&b| b == b' ' || b == b'\t') {
        return Err(Refusal::MalformedHeaderLine);
    }
    if name.eq_ignore_ascii_case(b"content-length") {
        *lengths += 1;
        if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
            return Err(Refusal::InvalidContentLength);
        }
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        *encodings += 1;
        if value != b"chunked" {
            return Err(Refusal::TransferEncodingNotChunked);
        }
    }
    Ok(())
}

/// The length of the request line (without its CRLF, and without empty lines before it).
pub fn request_line_len(raw: &[u8]) -> usize {
    let start = raw
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(raw.len());
    raw[start..]
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(raw.len() - start)
}

/// Spaces around a framing header's value. RFC 9110 allows tabs too; here they stay in the
/// value and make it invalid, as a tab next to `chunked` is a known way to split parsers.
fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' '] = v {
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &str) -> Vec<u8> {
        format!("GET / HTTP/1.1\r\n{lines}\r\n").into_bytes()
    }

    #[test]
    fn plain_requests_pass() {
        assert_eq!(check_h1_head(&head("Host: a\r\n")), Ok(()));
        assert_eq!(
            check_h1_head(&head("Host: a\r\nX: caf\u{e9}\r\nY:\tt\r\n")),
            Ok(())
        );
        assert_eq!(
            check_h1_head(&head("Transfer-Encoding:  chunked \r\n")),
            Ok(())
        );
        assert_eq!(check_h1_head(&head("content-length:  12 \r\n")), Ok(()));
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        use Refusal::*;
        let cases: &[(&str, Refusal)] = &[
            (
                "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n",
                ContentLengthAndTransferEncoding,
            ),
            (
                "Content-Length: 1\r\nContent-Length: 1\r\n",
                RepeatedContentLength,
            ),
            ("Content-Length: 1, 1\r\n", InvalidContentLength),
            ("Content-Length: +1\r\n", InvalidContentLength),
            ("Content-Length: \r\n", InvalidContentLength),
            (
                "Transfer-Encoding: chunked, identity\r\n",
                TransferEncodingNotChunked,
            ),
            (
                "Transfer-Encoding: gzip, chunked\r\n",
                TransferEncodingNotChunked,
            ),
            ("Transfer-Encoding: chunked\x0c\r\n", ControlCharacter),
            (
                "Transfer-Encoding: \"chunked\"\r\n",
                TransferEncodingNotChunked,
            ),
            ("Transfer-Encoding: Chunked\r\n", TransferEncodingNotChunked),
            (
                "Transfer-Encoding:\tchunked\r\n",
                TransferEncodingNotChunked,
            ),
            ("Content-Length:\t1\r\n", InvalidContentLength),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                RepeatedTransferEncoding,
            ),
            ("X: a\r\n b\r\n", LineFolding),
            ("X: a\0b\r\n", ControlCharacter),
            ("Transfer-Encoding : chunked\r\n", MalformedHeaderLine),
            ("no colon\r\n", MalformedHeaderLine),
        ];
        for (lines, want) in cases {
            assert_eq!(check_h1_head(&head(lines)), Err(*want), "{lines:?}");
        }
        assert_eq!(
            check_h1_head(b"GET / HTTP/1.1\nHost: a\n\n"),
            Err(BareLineFeed)
        );
        assert_eq!(
            check_h1_head(b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"),
            Err(BareCarriageReturn)
        );
        // Found by fuzzing: empty lines before the request line must not end the head early.
        let hidden =
            b"\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(check_h1_head(hidden), Err(ContentLengthAndTransferEncoding));
    }

    /// The fast pass and the byte-by-byte walk must agree on every head: a head the fast
    /// pass refuses has a bad byte to name, and one it accepts has none.
    #[test]
    fn the_fast_pass_agrees_with_the_byte_walk() {
        use rand::{Rng, SeedableRng};
        let alphabet = b"\r\n\t\x00\x0b\x1f\x7f :aZ\x80\xff";
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        for _ in 0..200_000 {
            let len = rng.gen_range(0..12);
            let raw: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            assert_eq!(plain_bytes(&raw), name_bad_byte(&raw).is_ok(), "{raw:?}");
        }
    }

    #[test]
    fn request_line_length() {
        assert_eq!(
            request_line_len(b"GET /abc HTTP/1.1\r\nHost: a\r\n\r\n"),
            17
        );
        assert_eq!(request_line_len(b"\r\n\r\nGET /abc HTTP/1.1\r\n\r\n"), 17);
    }
}
