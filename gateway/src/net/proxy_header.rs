//! The PROXY protocol header (v1 text, v2 binary) that a load balancer puts in front of a
//! connection: how long it is, and the client address it names. Only parsing; reading it off
//! a listener's connection is `listener::proxy_header`'s job.

use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12 bytes a v2 header starts with.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Reads one PROXY header (v1 or v2) from the start of a stream, without reading past it.
/// Returns the source address it names (`None` for `UNKNOWN`/`LOCAL`, such as a load
/// balancer's own health check).
pub async fn read_proxy_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, String> {
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head[..6])
        .await
        .map_err(|e| format!("reading PROXY header: {e}"))?;
    if &head[..6] == b"PROXY " {
        // v1: one text line of at most 107 bytes; read byte by byte so nothing past the
        // CRLF is consumed. (Listeners call this on the header already framed in memory by
        // `read_proxy_header_unbuffered`, so these are not system calls.)
        let mut line = head[..6].to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= 107 {
                return Err("PROXY v1 header longer than 107 bytes".into());
            }
            line.push(
                stream
                    .read_u8()
                    .await
                    .map_err(|e| format!("reading PROXY header: {e}"))?,
            );
        }
        let header = ppp::v1::Header::try_from(&line[..])
            .map_err(|e| format!("invalid PROXY v1 header: {e:?}"))?;
        return Ok(match header.addresses {
            ppp::v1::Addresses::Tcp4(a) => {
                Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
            }
            ppp::v1::Addresses::Tcp6(a) => {
                Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
            }
            ppp::v1::Addresses::Unknown => None,
        });
    }
    stream
        .read_exact(&mut head[6..])
        .await
        .map_err(|e| format!("reading PROXY header: {e}"))?;
    if &head != V2_SIGNATURE {
        return Err("the connection did not start with a PROXY protocol header".into());
    }
    let mut rest = [0u8; 4];
    stream
        .read_exact(&mut rest)
        .await
        .map_err(|e| format!("reading PROXY header: {e}"))?;
    let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
    let mut full = Vec::with_capacity(16 + len);
    full.extend_from_slice(&head);
    full.extend_from_slice(&rest);
    full.resize(16 + len, 0);
    stream
        .read_exact(&mut full[16..])
        .await
        .map_err(|e| format!("reading PROXY header: {e}"))?;
    let header = ppp::v2::Header::try_from(&full[..])
        .map_err(|e| format!("invalid PROXY v2 header: {e:?}"))?;
    // LOCAL (a load balancer's own health check) means "use the real connection endpoints",
    // whatever address block it carries (the spec says to ignore it).
    if header.command == ppp::v2::Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        ppp::v2::Addresses::IPv4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        ppp::v2::Addresses::IPv6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        _ => None,
    })
}

/// How long the PROXY header at the start of `buf` is: `Ok(None)` while more bytes are
/// needed to tell, an error as soon as `buf` cannot be the start of one. Only the framing;
/// [`read_proxy_header`] parses the header itself.
pub fn proxy_header_len(buf: &[u8]) -> Result<Option<usize>, String> {
    const V1: &[u8] = b"PROXY ";
    let n = buf.len();
    if buf.starts_with(V1) {
        return match buf[..n.min(107)].windows(2).position(|w| w == b"\r\n") {
            Some(i) => Ok(Some(i + 2)),
            None if n >= 107 => Err("PROXY v1 header longer than 107 bytes".into()),
            None => Ok(None),
        };
    }
    let sig = &V2_SIGNATURE[..n.min(12)];
    if buf[..sig.len()] != *sig && !V1.starts_with(&buf[..n.min(V1.len())]) {
        return Err("the connection did not start with a PROXY protocol header".into());
    }
    if n < 16 {
        return Ok(None);
    }
    Ok(Some(16 + u16::from_be_bytes([buf[14], buf[15]]) as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_header_len_frames_v1_and_v2_and_refuses_anything_else() {
        let v1 = b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 443\r\n\x16\x03\x01";
        for n in 0..41 {
            assert_eq!(proxy_header_len(&v1[..n]), Ok(None), "v1, {n} bytes");
        }
        assert_eq!(proxy_header_len(&v1[..41]), Ok(Some(41)));
        assert_eq!(proxy_header_len(v1), Ok(Some(41)));
        let long = [b"PROXY ".as_slice(), &[b'1'; 101]].concat();
        assert!(proxy_header_len(&long).is_err(), "no CRLF within 107 bytes");

        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
        v2.extend_from_slice(&[0; 12]);
        v2.extend_from_slice(b"\x16\x03\x01");
        for n in 0..16 {
            assert_eq!(proxy_header_len(&v2[..n]), Ok(None), "v2, {n} bytes");
        }
        assert_eq!(proxy_header_len(&v2[..16]), Ok(Some(28)));
        assert_eq!(proxy_header_len(&v2), Ok(Some(28)));

        for junk in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"\x16\x03\x01\x02\x00",
            b"PROXX",
            b"\r\n\r\n\0\r\nQUIZ",
        ] {
            assert!(proxy_header_len(junk).is_err(), "{junk:?}");
        }
    }
}
