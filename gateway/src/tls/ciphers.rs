//! The cipher suites a listener offers and in which order it picks one (docs/security.md,
//! "TLS"): the server's order, AES-128-GCM first, except that a client whose first choice is
//! ChaCha20 gets it.

use boring::ssl::{ClientHello, SslContextBuilder, SslRef};
use foreign_types::ForeignTypeRef;
use std::ffi::CStr;

/// TLS 1.2 suites: ECDHE only (forward secrecy), AEAD only, in the server's order.
const TLS12_CIPHERS: &CStr = c"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/// The same suites with ChaCha20 first, for a client that puts it first.
const TLS12_CHACHA_FIRST: &CStr = c"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";

const AES_128: u16 = boring_sys::SSL_CIPHER_AES_128_GCM_SHA256 as u16;
const AES_256: u16 = boring_sys::SSL_CIPHER_AES_256_GCM_SHA384 as u16;
const CHACHA: u16 = boring_sys::SSL_CIPHER_CHACHA20_POLY1305_SHA256 as u16;

/// TLS 1.3 suites in the server's order. BoringSSL's own server default lets the client's
/// order decide among all three, and OpenSSL-based clients list ChaCha20 before AES-128-GCM:
/// they would get ChaCha20, about half as fast as AES-GCM on a CPU with AES instructions.
const TLS13_ORDER: [u16; 3] = [AES_128, AES_256, CHACHA];
const TLS13_CHACHA_FIRST: [u16; 3] = [CHACHA, AES_128, AES_256];

/// TLS 1.2 ECDHE-{RSA,ECDSA}-CHACHA20-POLY1305 and TLS 1.3's ChaCha20 suite, as a
/// ClientHello lists them.
const CHACHA_SUITES: [u16; 3] = [0xcca8, 0xcca9, 0x1303];

/// Sets the listener's suites and their order, for every handshake.
pub(super) fn set_server_order(ctx: &mut SslContextBuilder) -> Result<(), String> {
    // SAFETY: the context is the one being built, not yet shared; BoringSSL copies the
    // string and the array.
    let set = unsafe {
        boring_sys::SSL_CTX_set_strict_cipher_list(ctx.as_ptr(), TLS12_CIPHERS.as_ptr()) == 1
            && boring_sys::SSL_CTX_set1_tls13_ciphers(
                ctx.as_ptr(),
                TLS13_ORDER.as_ptr(),
                std::ptr::null(),
                TLS13_ORDER.len(),
            ) == 1
    };
    set.then_some(())
        .ok_or_else(|| "cannot set the cipher suites".to_string())
}

/// Whether the client's first choice is a ChaCha20 suite: it then most likely has no AES
/// instructions (phones without them list ChaCha20 first), and ChaCha20 is faster for it.
/// GREASE values (RFC 8701) are skipped.
pub(super) fn client_prefers_chacha(hello: &ClientHello<'_>) -> bool {
    let first = hello
        .ciphers()
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .find(|&suite| !is_grease(suite));
    first.is_some_and(|suite| CHACHA_SUITES.contains(&suite))
}

/// Puts ChaCha20 first for this connection only (see [`client_prefers_chacha`]).
pub(super) fn prefer_chacha(ssl: &mut SslRef) -> bool {
    // SAFETY: the connection is live and borrowed for the call; BoringSSL copies both lists.
    unsafe {
        boring_sys::SSL_set_strict_cipher_list(ssl.as_ptr(), TLS12_CHACHA_FIRST.as_ptr()) == 1
            && boring_sys::SSL_set1_tls13_ciphers(
                ssl.as_ptr(),
                TLS13_CHACHA_FIRST.as_ptr(),
                std::ptr::null(),
                TLS13_CHACHA_FIRST.len(),
            ) == 1
    }
}

/// RFC 8701's reserved values: both bytes alike, each 0x?A.
fn is_grease(suite: u16) -> bool {
    let [hi, lo] = suite.to_be_bytes();
    hi == lo && hi & 0x0f == 0x0a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grease_values_are_recognised() {
        assert!(is_grease(0x0a0a) && is_grease(0xfafa));
        assert!(!is_grease(0x1303) && !is_grease(0x0a1a) && !is_grease(0xcca9));
    }
}
