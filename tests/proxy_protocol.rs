//! PROXY protocol v1 and v2 on listeners with `proxy_protocol: true`, plain and TLS: what the
//! backend, the access log and the client see when a load balancer (or anyone else) puts a
//! header in front of the connection. The headers are written by hand, byte for byte, so the
//! test does not share a parser with the gateway.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------
// PROXY headers, by hand

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// `PROXY TCP4|TCP6 src dst sport dport\r\n`.
fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

/// A v2 header: signature, version 2 with `command` (0 LOCAL, 1 PROXY), the family/protocol
/// byte, the length, then `body` (address block and any TLVs).
fn v2_raw(command: u8, family_protocol: u8, body: &[u8]) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.push(0x20 | command);
    header.push(family_protocol);
    header.extend_from_slice(&(body.len() as u16).to_be_bytes());
    header.extend_from_slice(body);
    header
}

/// The address block of a TCP connection from `src` to `dst` (both IPv4 or both IPv6),
/// with its family/protocol byte.
fn v2_addresses(src: SocketAddr, dst: SocketAddr) -> (u8, Vec<u8>) {
    let mut body = Vec::new();
    let family_protocol = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&d.ip().octets());
            0x11 // AF_INET, STREAM
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&d.ip().octets());
            0x21 // AF_INET6, STREAM
        }
        _ => panic!("mixed address families"),
    };
    body.extend_from_slice(&src.port().to_be_bytes());
    body.extend_from_slice(&dst.port().to_be_bytes());
    (family_protocol, body)
}

/// A v2 PROXY header, optionally followed by TLVs (type, value) as load balancers send them
/// (HAProxy: PP2_TYPE_AUTHORITY 0x02; AWS NLB: 0xEA with the VPC endpoint id).
fn v2(src: SocketAddr, dst: SocketAddr, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let (family_protocol, mut body) = v2_addresses(src, dst);
    for (kind, value) in tlvs {
        body.push(*kind);
        body.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(value);
    }
    v2_raw(1, family_protocol, &body)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Where the headers say the clients come from (documentation ranges).
const CLIENT4: &str = "203.0.113.7:51000";
const CLIENT6: &str = "[2001:db8::7]:51001";
const LB4: &str = "192.0.2.1:443";
const LB6: &str = "[2001:db8::1]:443";

// ---------------------------------------------------------------------------------------
// The gateway under test

/// A gateway with a plain listener `plain` and a TLS listener `tls` (certificate for
/// `pp.test`), both with `proxy_protocol: true`, one route to `backend`, an access log on
/// stdout, and `server.trusted_proxies` as given (a YAML flow sequence).
struct Setup {
    site: TlsSite,
    gw: Gateway,
}

impl Setup {
    async fn start(trusted_proxies: &str) -> Setup {
        let site = TlsSite::new("proxy protocol CA", "pp.test");
        let gw = Config::admin_only()
            .server(&format!("trusted_proxies: {trusted_proxies}"))
            .listener("plain", "proxy_protocol: true")
            .listener(
                "tls",
                &format!("proxy_protocol: true, {}", tls(&[&site.cert], "")),
            )
            .app(&site.backend)
            .plugin("access_log: {}")
            .route("name: all, upstream: app")
            .start()
            .await;
        Setup { site, gw }
    }

    fn plain(&self) -> SocketAddr {
        self.gw.listener("plain")
    }

    fn tls(&self) -> SocketAddr {
        self.gw.listener("tls")
    }

    fn tls_opts(&self, alpn: &[&str]) -> TlsClientOpts {
        self.site.client(alpn)
    }

    /// Writes `header` on a new plain connection, then sends GET /pp with `headers` over
    /// HTTP/1.1 on it; returns what the backend saw.
    async fn via_plain(&self, header: &[u8], headers: &[(&str, &str)]) -> Value {
        let mut tcp = connect_tcp(self.plain()).await.unwrap();
        tcp.write_all(header).await.unwrap();
        let mut conn = HttpConn::h1_over(tcp, "pp.test", None).await.unwrap();
        let response = conn
            .request("GET", "/pp", headers, Body::empty())
            .await
            .unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()
    }

    /// Writes `header` on a new connection to the TLS listener, then does the handshake
    /// (offering `alpn`) and sends GET /pp with `headers`; returns what the backend saw.
    async fn via_tls(&self, header: &[u8], alpn: &[&str], headers: &[(&str, &str)]) -> Value {
        let mut tcp = connect_tcp(self.tls()).await.unwrap();
        tcp.write_all(header).await.unwrap();
        let tls = tls_handshake(tcp, "pp.test", &self.tls_opts(alpn))
            .await
            .unwrap();
        let mut conn = HttpConn::over_tls(tls, "pp.test").await.unwrap();
        let response = conn
            .request("GET", "/pp", headers, Body::empty())
            .await
            .unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()
    }
}

/// The client address the backend was told about: (X-Real-IP, X-Forwarded-For).
fn told(seen: &Value) -> (String, String) {
    let h = &seen["headers"];
    (
        h["x-real-ip"].as_str().unwrap_or_default().to_string(),
        h["x-forwarded-for"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn pair(real_ip: &str, xff: &str) -> (String, String) {
    (real_ip.to_string(), xff.to_string())
}

// ---------------------------------------------------------------------------------------
// A trusted load balancer

#[tokio::test]
async fn v1_and_v2_on_a_plain_listener_give_the_client_ip() {
    let s = Setup::start("[127.0.0.1/32]").await;

    // (what, the PROXY header, the client's own headers, the address the backend is told).
    // The client's own X-Forwarded-For is not believed: its source is not a trusted proxy.
    let tlvs: [(u8, &[u8]); 2] = [(0x02, b"pp.test"), (0xEA, b"\x01vpce-0123")];
    let cases: [(&str, Vec<u8>, Pairs, &str); 5] = [
        ("v1 TCP4", v1(sa(CLIENT4), sa(LB4)), &[], "203.0.113.7"),
        ("v1 TCP6", v1(sa(CLIENT6), sa(LB6)), &[], "2001:db8::7"),
        ("v2 IPv4", v2(sa(CLIENT4), sa(LB4), &[]), &[], "203.0.113.7"),
        (
            "v2 IPv6 with TLVs",
            v2(sa(CLIENT6), sa(LB6), &tlvs),
            &[],
            "2001:db8::7",
        ),
        (
            "spoofed X-Forwarded-For",
            v2(sa(CLIENT4), sa(LB4), &[]),
            &[("x-forwarded-for", "6.6.6.6")],
            "203.0.113.7",
        ),
    ];
    for (what, header, headers, client) in cases {
        let seen = s.via_plain(&header, headers).await;
        assert_eq!(told(&seen), pair(client, client), "{what}");
    }

    // A load balancer writes the header and the request in one segment: nothing after the
    // header may be lost, and every keep-alive request on the connection carries the address.
    for header in [v1(sa(CLIENT4), sa(LB4)), v2(sa(CLIENT4), sa(LB4), &[])] {
        let mut tcp = connect_tcp(s.plain()).await.unwrap();
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"GET /first HTTP/1.1\r\nHost: pp.test\r\n\r\n");
        tcp.write_all(&bytes).await.unwrap();
        let head = crate::common::backend::read_raw_head(&mut tcp)
            .await
            .unwrap();
        assert!(head.text.starts_with("HTTP/1.1 200"), "{}", head.text);
        let len: usize = head.header("content-length").unwrap().parse().unwrap();
        let mut body = head.rest.clone();
        body.resize(len, 0);
        tcp.read_exact(&mut body[head.rest.len()..]).await.unwrap();
        let first: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(first["path"], "/first");
        assert_eq!(
            told(&first),
            pair("203.0.113.7", "203.0.113.7"),
            "same segment"
        );

        tcp.write_all(b"GET /second HTTP/1.1\r\nHost: pp.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer =
            String::from_utf8_lossy(&read_to_close(&mut tcp, IO_TIMEOUT).await).into_owned();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("\"path\":\"/second\""), "{answer}");
        assert!(
            answer.contains("\"x-real-ip\":\"203.0.113.7\""),
            "keep-alive: {answer}"
        );
    }

    // The access log names the client from the header too.
    assert!(
        s.gw.wait_for_stdout("\"client_ip\":\"203.0.113.7\"", IO_TIMEOUT)
            .await,
        "access log: {}",
        s.gw.stdout_text()
    );
    // The writer batches lines, so wait for this one too rather than read at once.
    assert!(
        s.gw.wait_for_stdout("\"client_ip\":\"2001:db8::7\"", IO_TIMEOUT)
            .await,
        "{}",
        s.gw.stdout_text()
    );
}

#[tokio::test]
async fn v1_and_v2_on_a_tls_listener_give_the_client_ip() {
    let s = Setup::start("[127.0.0.1/32]").await;
    let h1 = ["http/1.1"];

    // (what, the PROXY header, the client's own headers, the address the backend is told)
    let cases: [(&str, Vec<u8>, Pairs, &str); 4] = [
        ("v1 TCP4", v1(sa(CLIENT4), sa(LB4)), &[], "203.0.113.7"),
        ("v1 TCP6", v1(sa(CLIENT6), sa(LB6)), &[], "2001:db8::7"),
        (
            "v2 IPv4 with a TLV",
            v2(sa(CLIENT4), sa(LB4), &[(0x02, b"pp.test")]),
            &[],
            "203.0.113.7",
        ),
        (
            "v2 IPv6, spoofed X-Forwarded-For",
            v2(sa(CLIENT6), sa(LB6), &[]),
            &[("x-forwarded-for", "6.6.6.6")],
            "2001:db8::7",
        ),
    ];
    for (what, header, headers, client) in cases {
        let seen = s.via_tls(&header, &h1, headers).await;
        assert_eq!(told(&seen), pair(client, client), "{what}");
        assert_eq!(seen["headers"]["x-forwarded-proto"], "https", "{what}");
    }

    // HTTP/2 (ALPN h2) takes the same way.
    let mut tcp = connect_tcp(s.tls()).await.unwrap();
    tcp.write_all(&v2(sa(CLIENT4), sa(LB4), &[])).await.unwrap();
    let tls = tls_handshake(tcp, "pp.test", &s.tls_opts(&["h2"]))
        .await
        .unwrap();
    assert_eq!(tls.alpn().as_deref(), Some("h2"));
    let mut conn = HttpConn::over_tls(tls, "pp.test").await.unwrap();
    for _ in 0..2 {
        let response = conn.get("/h2").await.unwrap();
        assert_eq!(response.version, "HTTP/2.0");
        assert_eq!(
            told(&response.json()),
            pair("203.0.113.7", "203.0.113.7"),
            "h2"
        );
    }
    assert!(
        s.gw.wait_for_stdout("\"client_ip\":\"2001:db8::7\"", IO_TIMEOUT)
            .await,
        "access log: {}",
        s.gw.stdout_text()
    );
}

/// A TLS listener reads the header with a few large reads and puts back what came after it
/// (there is no read buffer under TLS): the header arriving in one segment with the
/// ClientHello (as a load balancer that forwards at once sends them), and a v2 header with
/// TLVs longer than the first read, both leave the handshake intact and the source believed.
#[tokio::test]
async fn a_header_in_one_segment_with_the_handshake_or_longer_than_a_read() {
    use openssl::ssl::{SslConnector, SslMethod};
    use std::pin::Pin;
    let s = Setup::start("[127.0.0.1/32]").await;
    let long_tlv = vec![b'a'; 600];
    let cases = [
        ("v1", v1(sa(CLIENT4), sa(LB4)), "203.0.113.7"),
        ("v2", v2(sa(CLIENT6), sa(LB6), &[]), "2001:db8::7"),
        (
            "v2, 600-byte TLV",
            v2(sa(CLIENT4), sa(LB4), &[(0x02, &long_tlv)]),
            "203.0.113.7",
        ),
    ];
    for (what, header, client) in cases {
        let tcp = connect_tcp(s.tls()).await.unwrap();
        // Buffered below TLS: the header leaves together with the ClientHello.
        let mut raw = tokio::io::BufWriter::with_capacity(4096, tcp);
        raw.write_all(&header).await.unwrap();
        let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
        b.set_ca_file(s.site.ca.cert_path()).unwrap();
        b.set_alpn_protos(b"\x08http/1.1").unwrap();
        let ssl = b.build().configure().unwrap().into_ssl("pp.test").unwrap();
        let mut tls = tokio_openssl::SslStream::new(ssl, raw).unwrap();
        Pin::new(&mut tls)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{what}: handshake: {e}"));
        tls.write_all(b"GET /pp HTTP/1.1\r\nHost: pp.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        tls.flush().await.unwrap();
        let answer =
            String::from_utf8_lossy(&read_to_close(&mut tls, IO_TIMEOUT).await).into_owned();
        assert!(answer.starts_with("HTTP/1.1 200"), "{what}: {answer}");
        assert!(
            answer.contains(&format!("\"x-real-ip\":\"{client}\"")),
            "{what}: {answer}"
        );
    }
}

/// A trusted source in the header (a CDN in front of the load balancer, say) is one more
/// trusted hop: its X-Forwarded-For is believed up to the first untrusted address, and
/// extended with the source, as for a trusted TCP peer.
#[tokio::test]
async fn a_trusted_source_in_the_header_extends_the_forwarded_chain() {
    let s = Setup::start("[127.0.0.1/32, 10.0.0.0/8]").await;
    let header = v2(sa("10.1.2.3:40000"), sa("10.0.0.1:443"), &[]);
    let seen = s
        .via_plain(&header, &[("x-forwarded-for", "6.6.6.6, 198.51.100.9")])
        .await;
    assert_eq!(
        told(&seen),
        pair("198.51.100.9", "6.6.6.6, 198.51.100.9, 10.1.2.3")
    );
    let seen = s
        .via_tls(
            &v1(sa("10.1.2.3:40000"), sa("10.0.0.1:443")),
            &["http/1.1"],
            &[],
        )
        .await;
    assert_eq!(told(&seen), pair("10.1.2.3", "10.1.2.3"));
}

/// `UNKNOWN` (v1) and LOCAL (v2) are what a load balancer sends for its own health checks
/// and for connections it cannot describe: accepted, and the TCP peer is the client.
#[tokio::test]
async fn unknown_and_local_headers_leave_the_tcp_peer_as_the_client() {
    let s = Setup::start("[127.0.0.1/32]").await;
    let local_bare = v2_raw(0, 0x00, &[]);
    // LOCAL with an address block: the receiver must ignore the addresses.
    let (fp, body) = v2_addresses(sa(CLIENT4), sa(LB4));
    let local_with_addresses = v2_raw(0, fp, &body);
    // PROXY over AF_UNSPEC (HAProxy's answer for a client on a unix socket).
    let proxy_unspec = v2_raw(1, 0x00, &[]);
    let headers: [(&str, Vec<u8>); 5] = [
        ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n".to_vec()),
        (
            "v1 UNKNOWN with addresses",
            b"PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n".to_vec(),
        ),
        ("v2 LOCAL", local_bare),
        ("v2 LOCAL with addresses", local_with_addresses),
        ("v2 PROXY AF_UNSPEC", proxy_unspec),
    ];
    for (what, header) in &headers {
        let seen = s.via_plain(header, &[]).await;
        assert_eq!(told(&seen), pair("127.0.0.1", "127.0.0.1"), "plain, {what}");
        let seen = s.via_tls(header, &["http/1.1"], &[]).await;
        assert_eq!(told(&seen), pair("127.0.0.1", "127.0.0.1"), "tls, {what}");
    }
}

// ---------------------------------------------------------------------------------------
// Anyone else

/// From a peer outside `trusted_proxies` the header is read (so the connection still works)
/// but not believed, and neither is X-Forwarded-For.
#[tokio::test]
async fn an_untrusted_peer_is_not_believed() {
    let s = Setup::start("[10.0.0.0/8]").await;
    let spoof = [("x-forwarded-for", "6.6.6.6")];

    for header in [
        v1(sa(CLIENT4), sa(LB4)),
        v2(sa(CLIENT4), sa(LB4), &[]),
        v2(sa(CLIENT6), sa(LB6), &[]),
    ] {
        let seen = s.via_plain(&header, &spoof).await;
        assert_eq!(told(&seen), pair("127.0.0.1", "127.0.0.1"), "plain");
        let seen = s.via_tls(&header, &["http/1.1"], &spoof).await;
        assert_eq!(told(&seen), pair("127.0.0.1", "127.0.0.1"), "tls");
    }
    // Not even a header naming a trusted proxy as its source.
    let seen = s
        .via_plain(&v2(sa("10.1.2.3:40000"), sa("10.0.0.1:443"), &[]), &spoof)
        .await;
    assert_eq!(
        told(&seen),
        pair("127.0.0.1", "127.0.0.1"),
        "trusted-looking source"
    );

    // Logged, but once a minute per listener at most, not once per connection: whoever
    // sends these can open connections as fast as it likes.
    for listener in ["plain", "tls"] {
        let needle = format!("listener {listener}: PROXY header from untrusted peer");
        assert!(
            s.gw.wait_for_stderr(&needle, IO_TIMEOUT).await,
            "the ignored header is logged: {}",
            s.gw.stderr_text()
        );
        assert_eq!(
            s.gw.stderr_text().matches(&needle).count(),
            1,
            "{}",
            s.gw.stderr_text()
        );
    }
    assert!(
        !s.gw.stdout_text().contains("203.0.113.7"),
        "access log: {}",
        s.gw.stdout_text()
    );
    assert_eq!(s.site.backend.hits(), 7);
}

/// Writes `bytes` to a new connection and returns what came back before the gateway closed
/// it, and how long that took. Panics if the connection is still open after 8 s.
async fn refused(addr: SocketAddr, bytes: &[u8]) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut tcp = connect_tcp(addr).await.unwrap();
    let _ = tcp.write_all(bytes).await;
    let answer = read_to_close(&mut tcp, Duration::from_secs(8)).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "connection still open after {took:?} ({bytes:?})"
    );
    (answer, took)
}

#[tokio::test]
async fn connections_without_a_valid_header_are_closed_before_http() {
    let s = Setup::start("[127.0.0.1/32]").await;
    let (fp, body) = v2_addresses(sa(CLIENT4), sa(LB4));
    let mut bad_version = v2_raw(1, fp, &body);
    bad_version[12] = 0x11; // version 1 in the binary format does not exist
    let mut bad_family = v2_raw(1, fp, &body);
    bad_family[13] = 0x41;
    let short_block = v2_raw(1, 0x11, &body[..6]); // claims IPv4 but carries 6 bytes
    let too_long_v1 = format!("PROXY TCP4 {} 192.0.2.1 1 2\r\n", "1".repeat(120)).into_bytes();
    let request = b"GET /pp HTTP/1.1\r\nHost: pp.test\r\nConnection: close\r\n\r\n".to_vec();
    let with_request = |mut header: Vec<u8>| {
        header.extend_from_slice(&request);
        header
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("plain HTTP, no header", request.clone()),
        (
            "garbage",
            b"\x00\x01\x02 hello there, not a header\r\n\r\n".to_vec(),
        ),
        (
            "v1 with a bad address",
            with_request(b"PROXY TCP4 999.0.0.1 192.0.2.1 1 2\r\n".to_vec()),
        ),
        (
            "v1 with a bad family",
            with_request(b"PROXY TCP5 203.0.113.7 192.0.2.1 1 2\r\n".to_vec()),
        ),
        (
            "v1 without CRLF within 107 bytes",
            with_request(too_long_v1),
        ),
        ("v2 with version 1", with_request(bad_version)),
        ("v2 with an unknown family", with_request(bad_family)),
        ("v2 with a short address block", with_request(short_block)),
        (
            "a TLS ClientHello",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 and more".to_vec(),
        ),
    ];
    for (what, bytes) in &cases {
        let (answer, took) = refused(s.plain(), bytes).await;
        assert!(
            answer.is_empty(),
            "{what}: answered {:?}",
            String::from_utf8_lossy(&answer)
        );
        assert!(
            took < Duration::from_secs(4),
            "{what}: closed only after {took:?}"
        );
    }

    // On the TLS listener, a client starting the handshake without a header gets no handshake.
    let tcp = connect_tcp(s.tls()).await.unwrap();
    let handshake = tls_handshake(tcp, "pp.test", &s.tls_opts(&["http/1.1"])).await;
    assert!(
        handshake.is_err(),
        "a TLS handshake without a PROXY header succeeded"
    );
    for (what, bytes) in &cases[1..8] {
        let (answer, _) = refused(s.tls(), bytes).await;
        assert!(
            answer.is_empty(),
            "tls, {what}: answered {:?}",
            String::from_utf8_lossy(&answer)
        );
    }

    assert_eq!(
        s.site.backend.hits(),
        0,
        "a request reached the backend: {:?}",
        s.site.backend.seen_paths()
    );
    for listener in ["plain", "tls"] {
        let needle = format!("listener {listener}: closing connection");
        assert!(
            s.gw.wait_for_stderr(&needle, IO_TIMEOUT).await,
            "no {needle:?} logged: {}",
            s.gw.stderr_text()
        );
    }
    assert!(
        s.gw.stderr_text()
            .contains("did not start with a PROXY protocol header"),
        "{}",
        s.gw.stderr_text()
    );

    // The listener still serves a proper connection after all that.
    let seen = s.via_plain(&v1(sa(CLIENT4), sa(LB4)), &[]).await;
    assert_eq!(told(&seen).0, "203.0.113.7");
}

/// A client that connects and sends nothing (or half a header) does not hold a connection
/// open: it is closed after a bounded wait.
#[tokio::test]
async fn a_silent_or_partial_header_is_cut_off() {
    let s = Setup::start("[127.0.0.1/32]").await;
    let partial_v1 = b"PROXY TCP4 203.0.113.7".to_vec();
    let partial_v2 = V2_SIGNATURE[..8].to_vec();
    let (a, b, c, d) = tokio::join!(
        refused(s.plain(), b""),
        refused(s.tls(), b""),
        refused(s.plain(), &partial_v1),
        refused(s.tls(), &partial_v2),
    );
    for (answer, took) in [a, b, c, d] {
        assert!(answer.is_empty());
        assert!(
            took >= Duration::from_secs(2),
            "closed after {took:?}: too eager for a slow client"
        );
    }
    assert_eq!(s.site.backend.hits(), 0);
    for listener in ["plain", "tls"] {
        let needle = format!("listener {listener}: closing connection from");
        assert!(
            s.gw.wait_for_stderr(&needle, IO_TIMEOUT).await,
            "{}",
            s.gw.stderr_text()
        );
    }
    assert!(
        s.gw.stderr_text().contains("no PROXY header within"),
        "{}",
        s.gw.stderr_text()
    );
}

#[tokio::test]
async fn the_client_ip_from_the_header_reaches_ip_based_plugins() {
    // ip_filter decides on the client IP: the header's source, not the load balancer.
    let backend = Backend::http("app");
    let gw = Config::admin_only()
        .server("trusted_proxies: [127.0.0.1/32]")
        .listener("plain", "proxy_protocol: true")
        .app(&backend)
        .route("name: all, upstream: app, plugins: [ { ip_filter: { allow: [203.0.113.0/24] } } ]")
        .start()
        .await;
    let ask = |header: Vec<u8>| {
        let addr = gw.listener("plain");
        async move {
            let mut tcp = connect_tcp(addr).await.unwrap();
            tcp.write_all(&header).await.unwrap();
            tcp.write_all(b"GET / HTTP/1.1\r\nHost: pp.test\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::new();
            tokio::time::timeout(IO_TIMEOUT, tcp.read_to_end(&mut answer))
                .await
                .unwrap()
                .unwrap();
            String::from_utf8_lossy(&answer).into_owned()
        }
    };
    let allowed = ask(v2(sa(CLIENT4), sa(LB4), &[])).await;
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    let outsider = v2(
        SocketAddr::from((Ipv4Addr::new(198, 51, 100, 1), 5000)),
        SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 443)),
        &[],
    );
    let refused = ask(outsider).await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    let v6 = v2(
        SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7), 5000)),
        SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 443)),
        &[],
    );
    assert!(ask(v6).await.starts_with("HTTP/1.1 403"));
    assert_eq!(backend.hits(), 1);
}
