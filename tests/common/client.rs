//! Clients: TLS with every knob a gateway test needs, HTTP/1.1 and HTTP/2 on top of it,
//! plain HTTP, and raw sockets for hostile input and WebSockets.
//!
//! Every call is bounded by [`IO_TIMEOUT`]. Failures are errors rather than panics, so that a
//! test expecting a refusal can assert `is_err()`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use http::{Request, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssl::nid::Nid;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

pub use openssl::ssl::SslVersion;

use super::backend::{read_raw_head, websocket_accept};
use super::{within, Body, CertFiles, PatternCheck, Result, IO_TIMEOUT};

// ---------------------------------------------------------------------------------------
// TLS

/// How a test's TLS client behaves. The default trusts nothing and verifies nothing, offers
/// no ALPN and lets OpenSSL pick the versions.
#[derive(Clone, Debug, Default)]
pub struct TlsClientOpts {
    /// The trusted CA file; `None` turns certificate and host name verification off.
    pub ca: Option<PathBuf>,
    /// ALPN protocols offered, in order of preference; empty offers none.
    pub alpn: Vec<String>,
    pub min_version: Option<SslVersion>,
    pub max_version: Option<SslVersion>,
    /// A client certificate for mTLS.
    pub client_cert: Option<CertFiles>,
}

impl TlsClientOpts {
    /// Verifies the server's chain against `ca` and its name against the SNI.
    pub fn trusting(ca: impl AsRef<Path>) -> Self {
        TlsClientOpts {
            ca: Some(ca.as_ref().to_path_buf()),
            ..Default::default()
        }
    }

    /// Accepts any certificate.
    pub fn insecure() -> Self {
        TlsClientOpts::default()
    }

    pub fn alpn(mut self, protocols: &[&str]) -> Self {
        self.alpn = protocols.iter().map(|p| p.to_string()).collect();
        self
    }

    pub fn versions(mut self, min: SslVersion, max: SslVersion) -> Self {
        self.min_version = Some(min);
        self.max_version = Some(max);
        self
    }

    /// Offers exactly one protocol version, e.g. `SslVersion::TLS1_1` to check a refusal.
    pub fn only(self, version: SslVersion) -> Self {
        self.versions(version, version)
    }

    pub fn client_cert(mut self, cert: &CertFiles) -> Self {
        self.client_cert = Some(cert.clone());
        self
    }

    fn connector(&self) -> Result<SslConnector> {
        let mut builder = SslConnector::builder(SslMethod::tls_client())?;
        match &self.ca {
            Some(ca) => builder.set_ca_file(ca)?,
            None => builder.set_verify(SslVerifyMode::NONE),
        }
        if !self.alpn.is_empty() {
            let mut wire = Vec::new();
            for protocol in &self.alpn {
                wire.push(u8::try_from(protocol.len())?);
                wire.extend_from_slice(protocol.as_bytes());
            }
            builder.set_alpn_protos(&wire)?;
        }
        builder.set_min_proto_version(self.min_version)?;
        builder.set_max_proto_version(self.max_version)?;
        // OpenSSL 3 refuses TLS 1.0/1.1 at its default security level (they sign with
        // SHA-1). A test forcing an old version wants it offered, so the gateway's refusal
        // is what is being tested, not our own client's.
        let old = |v: Option<SslVersion>| {
            v.is_some_and(|v| v == SslVersion::TLS1 || v == SslVersion::TLS1_1)
        };
        if old(self.min_version) || old(self.max_version) {
            builder.set_cipher_list("DEFAULT:@SECLEVEL=0")?;
            builder.set_security_level(0);
        }
        if let Some(cert) = &self.client_cert {
            builder.set_certificate_chain_file(&cert.cert)?;
            builder.set_private_key_file(&cert.key, SslFiletype::PEM)?;
            builder.check_private_key()?;
        }
        Ok(builder.build())
    }
}

/// A finished TLS handshake: what was negotiated, and the stream to go on with.
pub struct TlsConn {
    stream: SslStream<TcpStream>,
}

/// A snapshot of what a TLS handshake negotiated.
#[derive(Clone, Debug)]
pub struct TlsInfo {
    /// `"TLSv1.3"`, `"TLSv1.2"`, ...
    pub version: String,
    pub alpn: Option<String>,
    /// The DNS subject alternative names of the server's certificate.
    pub peer_dns_names: Vec<String>,
    /// The subject CN of the server's certificate.
    pub peer_cn: Option<String>,
}

impl TlsConn {
    pub fn version(&self) -> &'static str {
        self.stream.ssl().version_str()
    }

    pub fn alpn(&self) -> Option<String> {
        let protocol = self.stream.ssl().selected_alpn_protocol()?;
        Some(String::from_utf8_lossy(protocol).into_owned())
    }

    pub fn peer_dns_names(&self) -> Vec<String> {
        let Some(cert) = self.stream.ssl().peer_certificate() else {
            return Vec::new();
        };
        let Some(names) = cert.subject_alt_names() else {
            return Vec::new();
        };
        names
            .iter()
            .filter_map(|name| name.dnsname().map(str::to_string))
            .collect()
    }

    pub fn peer_cn(&self) -> Option<String> {
        let cert = self.stream.ssl().peer_certificate()?;
        let cn = cert.subject_name().entries_by_nid(Nid::COMMONNAME).next()?;
        cn.data().to_string().ok()
    }

    pub fn info(&self) -> TlsInfo {
        TlsInfo {
            version: self.version().to_string(),
            alpn: self.alpn(),
            peer_dns_names: self.peer_dns_names(),
            peer_cn: self.peer_cn(),
        }
    }

    pub fn stream(&mut self) -> &mut SslStream<TcpStream> {
        &mut self.stream
    }

    pub fn into_stream(self) -> SslStream<TcpStream> {
        self.stream
    }
}

/// Connects to `addr` and does a TLS handshake with `sni` (`""` sends no SNI; with a CA
/// configured, the certificate must then still be valid, but its name is not checked).
pub async fn tls_connect(addr: SocketAddr, sni: &str, opts: &TlsClientOpts) -> Result<TlsConn> {
    let tcp = connect_tcp(addr).await?;
    tls_handshake(tcp, sni, opts).await
}

/// The TLS handshake over an already connected socket, e.g. after writing a PROXY header.
pub async fn tls_handshake(tcp: TcpStream, sni: &str, opts: &TlsClientOpts) -> Result<TlsConn> {
    let mut config = opts.connector()?.configure()?;
    let ssl = if sni.is_empty() {
        config.set_use_server_name_indication(false);
        config.set_verify_hostname(false);
        config.into_ssl("no-sni.invalid")?
    } else {
        if opts.ca.is_none() {
            config.set_verify_hostname(false);
        }
        config.into_ssl(sni)?
    };
    let mut stream = SslStream::new(ssl, tcp)?;
    within(IO_TIMEOUT, "TLS handshake", async {
        Pin::new(&mut stream)
            .connect()
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        Ok(())
    })
    .await?;
    Ok(TlsConn { stream })
}

pub async fn connect_tcp(addr: SocketAddr) -> Result<TcpStream> {
    within(IO_TIMEOUT, "TCP connect", async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    })
    .await
}

// ---------------------------------------------------------------------------------------
// HTTP

/// A complete HTTP response.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// `"HTTP/1.1"`, `"HTTP/2.0"`, ...
    pub version: String,
    /// In order received; names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Header (or label) pairs as a table of cases holds them.
pub type Pairs<'a> = &'a [(&'a str, &'a str)];

/// The first value of header `name` (any case) among `headers`.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Every value of header `name` (any case), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body in the message when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }
}

enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

/// One client connection carrying any number of requests in turn (keep-alive on HTTP/1.1,
/// one stream after another on HTTP/2).
pub struct HttpConn {
    sender: Sender,
    /// The Host header (HTTP/1.1) or :authority (HTTP/2) sent unless a request sets its own.
    host: String,
    tls: Option<TlsInfo>,
}

impl HttpConn {
    /// HTTP/1.1 over plain TCP; the default Host is `addr`.
    pub async fn plain(addr: SocketAddr) -> Result<HttpConn> {
        let tcp = connect_tcp(addr).await?;
        HttpConn::h1_over(tcp, &addr.to_string(), None).await
    }

    /// TLS with `opts` (its ALPN list as given), then HTTP/2 if the server chose h2, else
    /// HTTP/1.1. The default Host / :authority is the SNI (or `addr` without SNI).
    pub async fn tls(addr: SocketAddr, sni: &str, opts: &TlsClientOpts) -> Result<HttpConn> {
        let conn = tls_connect(addr, sni, opts).await?;
        let host = if sni.is_empty() {
            addr.to_string()
        } else {
            sni.to_string()
        };
        HttpConn::over_tls(conn, &host).await
    }

    /// HTTP over a finished TLS handshake: HTTP/2 if ALPN chose h2, else HTTP/1.1.
    pub async fn over_tls(conn: TlsConn, host: &str) -> Result<HttpConn> {
        let info = conn.info();
        if info.alpn.as_deref() == Some("h2") {
            HttpConn::h2_over(conn.into_stream(), host, Some(info)).await
        } else {
            HttpConn::h1_over(conn.into_stream(), host, Some(info)).await
        }
    }

    /// HTTP/1.1 over any connected stream.
    pub async fn h1_over<IO>(io: IO, host: &str, tls: Option<TlsInfo>) -> Result<HttpConn>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = within(IO_TIMEOUT, "HTTP/1.1 handshake", async {
            Ok(http1::handshake(TokioIo::new(io)).await?)
        })
        .await?;
        // The connection task ends by itself when the sender is dropped or the peer closes.
        tokio::spawn(connection);
        Ok(HttpConn {
            sender: Sender::H1(sender),
            host: host.to_string(),
            tls,
        })
    }

    /// HTTP/2 over any connected stream (after ALPN h2, or h2c with prior knowledge).
    pub async fn h2_over<IO>(io: IO, host: &str, tls: Option<TlsInfo>) -> Result<HttpConn>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = within(IO_TIMEOUT, "HTTP/2 handshake", async {
            Ok(http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await?)
        })
        .await?;
        tokio::spawn(connection);
        Ok(HttpConn {
            sender: Sender::H2(sender),
            host: host.to_string(),
            tls,
        })
    }

    /// Another handle on the same HTTP/2 connection, whose requests are streams beside this
    /// one's (`None` on HTTP/1.1, which has one request at a time).
    pub fn another_stream(&self) -> Option<HttpConn> {
        match &self.sender {
            Sender::H1(_) => None,
            Sender::H2(sender) => Some(HttpConn {
                sender: Sender::H2(sender.clone()),
                host: self.host.clone(),
                tls: self.tls.clone(),
            }),
        }
    }

    pub fn version(&self) -> Version {
        match self.sender {
            Sender::H1(_) => Version::HTTP_11,
            Sender::H2(_) => Version::HTTP_2,
        }
    }

    /// What TLS negotiated, when this connection is over TLS.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    pub async fn get(&mut self, path: &str) -> Result<Response> {
        self.request("GET", path, &[], Body::empty()).await
    }

    /// One request, its response read whole; all of it within [`IO_TIMEOUT`].
    /// A `host` entry in `headers` replaces the default Host (on HTTP/2 it is sent as a
    /// plain header; the :authority stays the connection's).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Result<Response> {
        let request = self.build(method, path, headers, body.into())?;
        within(IO_TIMEOUT, &format!("{method} {path}"), async {
            let response = self.send(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes().to_vec();
            Ok(Response {
                status: parts.status.as_u16(),
                version: format!("{:?}", parts.version),
                headers: parts
                    .headers
                    .iter()
                    .map(|(name, value)| {
                        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                        (name.as_str().to_string(), value)
                    })
                    .collect(),
                body,
            })
        })
        .await
    }

    /// GETs `path` (a backend's `/bytes/N`) and checks the body against the pattern as it
    /// streams in, without keeping it: returns (bytes received, whether the status was 200
    /// and every byte matched). A transfer cut short is reported as `ok == false`, not as an
    /// error. Each chunk must arrive within [`IO_TIMEOUT`]; the whole may take longer.
    pub async fn download_pattern(&mut self, path: &str) -> Result<(u64, bool)> {
        let request = self.build("GET", path, &[], Body::empty())?;
        let response = within(
            IO_TIMEOUT,
            &format!("GET {path} (head)"),
            self.send(request),
        )
        .await?;
        let status_ok = response.status() == 200;
        let mut body = response.into_body();
        let mut check = PatternCheck::new();
        loop {
            match tokio::time::timeout(IO_TIMEOUT, body.frame()).await {
                Err(_) => return Err(format!("GET {path}: no data for {IO_TIMEOUT:?}").into()),
                Ok(None) => break,
                Ok(Some(Err(_))) => return Ok((check.len(), false)),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        check.update(&data);
                    }
                }
            }
        }
        Ok((check.len(), status_ok && check.ok()))
    }

    fn build(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<Request<Body>> {
        let mut builder = Request::builder().method(method);
        match self.sender {
            Sender::H1(_) => {
                builder = builder.uri(path);
                if !headers
                    .iter()
                    .any(|(name, _)| name.eq_ignore_ascii_case("host"))
                {
                    builder = builder.header("host", &self.host);
                }
            }
            // hyper takes :scheme and :authority from the URI; HTTP/2 has no Host header.
            Sender::H2(_) => {
                builder = builder
                    .uri(format!("https://{}{path}", self.host))
                    .version(Version::HTTP_2)
            }
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        Ok(builder.body(body)?)
    }

    async fn send(&mut self, request: Request<Body>) -> Result<http::Response<Incoming>> {
        Ok(match &mut self.sender {
            Sender::H1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
            Sender::H2(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
        })
    }
}

/// One HTTP/1.1 request over TLS on a fresh connection (ALPN offers only http/1.1 whatever
/// `opts` says). The Host header is `sni` unless `headers` has one.
pub async fn https_request(
    addr: SocketAddr,
    sni: &str,
    opts: &TlsClientOpts,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Result<Response> {
    let opts = opts.clone().alpn(&["http/1.1"]);
    let mut conn = HttpConn::tls(addr, sni, &opts).await?;
    conn.request(method, path, headers, body).await
}

pub async fn https_get(
    addr: SocketAddr,
    sni: &str,
    opts: &TlsClientOpts,
    path: &str,
) -> Result<Response> {
    https_request(addr, sni, opts, "GET", path, &[], Body::empty()).await
}

/// One HTTP/1.1 request over plain TCP on a fresh connection (Host: `addr` unless given).
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Result<Response> {
    HttpConn::plain(addr)
        .await?
        .request(method, path, headers, body)
        .await
}

pub async fn http_get(addr: SocketAddr, path: &str) -> Result<Response> {
    http_request(addr, "GET", path, &[], Body::empty()).await
}

/// One HTTP/2 GET over TLS with ALPN h2 only; fails unless the server chose h2.
/// `authority` becomes the :authority (there is no Host header).
pub async fn h2_request(
    addr: SocketAddr,
    sni: &str,
    opts: &TlsClientOpts,
    authority: &str,
    path: &str,
) -> Result<Response> {
    let conn = tls_connect(addr, sni, &opts.clone().alpn(&["h2"])).await?;
    if conn.alpn().as_deref() != Some("h2") {
        return Err(format!("server did not negotiate h2 (ALPN: {:?})", conn.alpn()).into());
    }
    HttpConn::over_tls(conn, authority).await?.get(path).await
}

/// [`HttpConn::download_pattern`] over a fresh HTTP/1.1-over-TLS connection.
pub async fn https_download(
    addr: SocketAddr,
    sni: &str,
    opts: &TlsClientOpts,
    path: &str,
) -> Result<(u64, bool)> {
    let opts = opts.clone().alpn(&["http/1.1"]);
    HttpConn::tls(addr, sni, &opts)
        .await?
        .download_pattern(path)
        .await
}

/// [`HttpConn::download_pattern`] over a fresh plain HTTP/1.1 connection.
pub async fn http_download(addr: SocketAddr, path: &str) -> Result<(u64, bool)> {
    HttpConn::plain(addr).await?.download_pattern(path).await
}

// ---------------------------------------------------------------------------------------
// Raw sockets

/// Any bidirectional byte stream (plain TCP or TLS).
pub trait RawIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> RawIo for T {}

pub type RawStream = Box<dyn RawIo>;

/// A plain TCP connection, or with `tls_sni` a TLS one (no verification, ALPN http/1.1).
pub async fn raw_connect(addr: SocketAddr, tls_sni: Option<&str>) -> Result<RawStream> {
    let tcp = connect_tcp(addr).await?;
    Ok(match tls_sni {
        None => Box::new(tcp),
        Some(sni) => {
            let opts = TlsClientOpts::insecure().alpn(&["http/1.1"]);
            Box::new(tls_handshake(tcp, sni, &opts).await?.into_stream())
        }
    })
}

/// Reads until the peer closes (or resets), an error, or `limit` passes: what arrived by
/// then, and whether the peer closed.
pub async fn read_until_close<R: AsyncRead + Unpin + ?Sized>(
    stream: &mut R,
    limit: Duration,
) -> (Vec<u8>, bool) {
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (received, true),
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
            Err(_) => return (received, false),
        }
    }
}

/// [`read_until_close`]'s bytes.
pub async fn read_to_close<R: AsyncRead + Unpin + ?Sized>(
    stream: &mut R,
    limit: Duration,
) -> Vec<u8> {
    read_until_close(stream, limit).await.0
}

/// Slowloris: writes `line` every `every`, at most `times` times, until the peer closes the
/// connection (a failed write, or the end of its stream). `Some(time since the first line)`
/// when it closed, `None` when it was still open after the last line.
pub async fn dribble_until_closed<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    line: &[u8],
    every: Duration,
    times: usize,
) -> Option<Duration> {
    let start = std::time::Instant::now();
    for _ in 0..times {
        tokio::time::sleep(every).await;
        let sent = stream.write_all(line).await.is_ok() && stream.flush().await.is_ok();
        if !sent || read_until_close(stream, Duration::from_millis(1)).await.1 {
            return Some(start.elapsed());
        }
    }
    None
}

/// What came back from a raw exchange.
#[derive(Debug)]
pub struct Exchange {
    pub bytes: Vec<u8>,
    /// The peer closed (or reset) the connection before the wait ran out.
    pub closed: bool,
    pub elapsed: Duration,
}

impl Exchange {
    /// The status of the first response, if one came.
    pub fn status(&self) -> Option<u16> {
        statuses(&self.bytes).first().copied()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// The status of every HTTP/1 response in `bytes` (a response line at its start or after a
/// CRLF).
pub fn statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    for (i, _) in text.match_indices("HTTP/1.") {
        if i == 0 || text[..i].ends_with("\r\n") {
            if let Some(code) = text.get(i + 9..i + 12).and_then(|c| c.parse().ok()) {
                out.push(code);
            }
        }
    }
    out
}

/// Sends exactly `bytes` (over TLS with ALPN http/1.1 when `tls_sni` is given) and collects
/// the answer until the peer closes the connection or `limit` passes. For hostile input:
/// nothing is parsed or fixed up. Panics only when it cannot connect.
pub async fn exchange(
    addr: SocketAddr,
    bytes: &[u8],
    tls_sni: Option<&str>,
    limit: Duration,
) -> Exchange {
    let start = std::time::Instant::now();
    let mut stream = raw_connect(addr, tls_sni)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    // A peer may close before taking everything: what it answered still counts.
    let _ = tokio::time::timeout(IO_TIMEOUT, stream.write_all(bytes)).await;
    let _ = tokio::time::timeout(IO_TIMEOUT, stream.flush()).await;
    let (bytes, closed) = read_until_close(&mut stream, limit).await;
    Exchange {
        bytes,
        closed,
        elapsed: start.elapsed(),
    }
}

/// [`exchange`] with 3 s to answer, its bytes.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], tls_sni: Option<&str>) -> Vec<u8> {
    exchange(addr, bytes, tls_sni, Duration::from_secs(3))
        .await
        .bytes
}

/// The key [`ws_connect`] sends (the example key of RFC 6455).
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A WebSocket handshake on a new connection: fails unless the answer is 101 with the right
/// `Sec-WebSocket-Accept`. Returns the stream, now carrying raw bytes both ways, and the
/// response head as text.
pub async fn ws_connect(
    addr: SocketAddr,
    host: &str,
    path: &str,
    tls_sni: Option<&str>,
) -> Result<(RawStream, String)> {
    let mut stream = raw_connect(addr, tls_sni).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    within(IO_TIMEOUT, "WebSocket request", async {
        stream.write_all(request.as_bytes()).await?;
        Ok(stream.flush().await?)
    })
    .await?;
    // The server sends nothing after the 101 until we do, so no echo data is lost here.
    let head = read_raw_head(&mut stream).await?;
    let status_ok = head.text.starts_with("HTTP/1.1 101");
    if !status_ok || head.header("sec-websocket-accept") != Some(websocket_accept(WS_KEY).as_str())
    {
        return Err(format!("WebSocket upgrade refused:\n{}", head.text).into());
    }
    Ok((stream, head.text))
}
