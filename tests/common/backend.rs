//! Upstream servers that run inside the test process and report what reached them.
//!
//! They run on a harness-owned background runtime rather than the test's own: a test that
//! blocks its thread (waiting on the gateway process, `#[tokio::test]`'s single-threaded
//! runtime busy in a client call) can then never starve the backends the gateway talks to.
//! For the same reason the constructors are plain functions: the listener is bound before
//! they return, so its port can go straight into a gateway config.
//!
//! The HTTP backends answer every request with 200 and a JSON description of it:
//!
//! ```json
//! { "backend": "a", "method": "POST", "path": "/x?y=1", "authority": null,
//!   "version": "HTTP/1.1", "headers": { "host": "api.test", "x-many": "1, 2" },
//!   "body_len": 5, "body_fnv": "a430d84680aabd0b", "body": "hello",
//!   "conn": 1, "sni": "api.test", "client_cn": null }
//! ```
//!
//! `body` is the request body when it is UTF-8 of at most [`ECHO_BODY_MAX`] bytes, else
//! null; `conn` numbers the TCP connections this backend accepted (1, 2, ...), which shows
//! whether the gateway reuses upstream connections; `sni` and `client_cn` are what a TLS
//! backend saw in the handshake. Every answer also carries an `X-Backend: <name>` header.
//!
//! Special paths: `/status/NNN` answers that status, `/sleep/MS` waits MS milliseconds
//! first, `/bytes/N` streams N pattern bytes (see `body.rs`; add `?chunked` to leave out the
//! Content-Length), and `/healthz` answers 200 "ok", or 503 after `set_healthy(false)`.
//! Health checks are counted apart ([`Backend::health_checks`]) from the other requests
//! ([`Backend::hits`], [`Backend::seen_paths`]), so that the active checks of a gateway do
//! not disturb tests counting where traffic went.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use openssl::nid::Nid;
use openssl::ssl::{
    self, AlpnError, NameType, Ssl, SslAcceptor, SslFiletype, SslMethod, SslVerifyMode,
};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_openssl::SslStream;

use super::{Body, CertFiles, Fnv1a64, IO_TIMEOUT};

/// Request bodies up to this size are echoed back in the `body` field when they are UTF-8.
pub const ECHO_BODY_MAX: usize = 4096;

/// The path answered as a health check.
pub const HEALTH_PATH: &str = "/healthz";

/// What a backend has seen; shared between its handle and its connections.
#[derive(Default)]
struct Stats {
    hits: AtomicU64,
    health_checks: AtomicU64,
    connections: AtomicU64,
    unhealthy: AtomicBool,
    seen_paths: Mutex<Vec<String>>,
}

impl Stats {
    fn record_hit(&self, path_and_query: &str) {
        self.hits.fetch_add(1, Ordering::SeqCst);
        self.seen_paths
            .lock()
            .unwrap()
            .push(path_and_query.to_string());
    }
}

#[derive(Clone)]
enum Kind {
    Http,
    Https(SslAcceptor),
    WebSocketEcho,
    ResetAfterBody,
}

/// A running backend. Dropping it stops it too, without waiting.
pub struct Backend {
    name: String,
    addr: SocketAddr,
    stats: Arc<Stats>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Backend {
    /// HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on an ephemeral port.
    pub fn http(name: &str) -> Backend {
        Backend::http_on(name, 0)
    }

    /// [`Backend::http`] on a given port, e.g. to restart a stopped backend in place.
    pub fn http_on(name: &str, port: u16) -> Backend {
        Backend::start(name, [127, 0, 0, 1].into(), port, Kind::Http)
    }

    /// [`Backend::http`] on another loopback address (any of 127.0.0.0/8), e.g. for a name
    /// that moves from one address to another with the same port.
    pub fn http_at(name: &str, ip: IpAddr, port: u16) -> Backend {
        Backend::start(name, ip, port, Kind::Http)
    }

    /// HTTPS with the given certificate; ALPN offers h2 and http/1.1.
    pub fn https(name: &str, cert: &CertFiles) -> Backend {
        Backend::https_on(name, 0, cert)
    }

    pub fn https_on(name: &str, port: u16, cert: &CertFiles) -> Backend {
        Backend::start(
            name,
            [127, 0, 0, 1].into(),
            port,
            Kind::Https(tls_acceptor(cert, None)),
        )
    }

    /// HTTPS that requires a client certificate issued by the CA in `client_ca`.
    pub fn https_mtls(name: &str, cert: &CertFiles, client_ca: &Path) -> Backend {
        Backend::start(
            name,
            [127, 0, 0, 1].into(),
            0,
            Kind::Https(tls_acceptor(cert, Some(client_ca))),
        )
    }

    /// Answers a WebSocket upgrade with 101 and then echoes every byte back (no framing).
    /// A request without `Upgrade: websocket` gets 400.
    pub fn websocket_echo(name: &str) -> Backend {
        Backend::start(name, [127, 0, 0, 1].into(), 0, Kind::WebSocketEcho)
    }

    /// Reads one whole request (head and Content-Length or chunked body), counts it, then
    /// resets the connection without answering: a backend that fails mid-request.
    pub fn reset_after_body(name: &str) -> Backend {
        Backend::start(name, [127, 0, 0, 1].into(), 0, Kind::ResetAfterBody)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests received, health checks excluded.
    pub fn hits(&self) -> u64 {
        self.stats.hits.load(Ordering::SeqCst)
    }

    /// Requests to [`HEALTH_PATH`] received.
    pub fn health_checks(&self) -> u64 {
        self.stats.health_checks.load(Ordering::SeqCst)
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> u64 {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// Path and query of every request received, in order, health checks excluded.
    pub fn seen_paths(&self) -> Vec<String> {
        self.stats.seen_paths.lock().unwrap().clone()
    }

    /// Makes [`HEALTH_PATH`] answer 200 (`true`) or 503 (`false`).
    pub fn set_healthy(&self, healthy: bool) {
        self.stats.unhealthy.store(!healthy, Ordering::SeqCst);
    }

    /// Stops listening and drops every live connection; returns once the port is free.
    pub async fn stop(&mut self) {
        // Closing the channel (send or drop) tells the accept loop to stop.
        self.shutdown.take();
        if let Some(task) = self.task.take() {
            if tokio::time::timeout(IO_TIMEOUT, task).await.is_err() {
                panic!("backend {} did not stop within {IO_TIMEOUT:?}", self.name);
            }
        }
    }

    fn start(name: &str, ip: IpAddr, port: u16, kind: Kind) -> Backend {
        let listener = std::net::TcpListener::bind((ip, port))
            .unwrap_or_else(|e| panic!("backend {name}: cannot bind {ip}:{port}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("listener address");
        let stats = Arc::new(Stats::default());
        let (shutdown, shutdown_rx) = oneshot::channel();
        let name = name.to_string();
        let task = server_runtime().spawn(accept_loop(
            listener,
            kind,
            name.clone(),
            stats.clone(),
            shutdown_rx,
        ));
        Backend {
            name,
            addr,
            stats,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }
}

/// The runtime all backends run on (see the module documentation for why).
fn server_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-backend")
            .enable_all()
            .build()
            .expect("backend runtime")
    })
}

fn tls_acceptor(cert: &CertFiles, client_ca: Option<&Path>) -> SslAcceptor {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("TLS acceptor");
    builder
        .set_private_key_file(&cert.key, SslFiletype::PEM)
        .expect("backend key");
    builder
        .set_certificate_chain_file(&cert.cert)
        .expect("backend cert");
    builder
        .check_private_key()
        .expect("backend key matches cert");
    builder.set_alpn_select_callback(|_, offered| {
        ssl::select_next_proto(b"\x02h2\x08http/1.1", offered).ok_or(AlpnError::NOACK)
    });
    if let Some(ca) = client_ca {
        builder.set_ca_file(ca).expect("client CA file");
        builder.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    builder.build()
}

async fn accept_loop(
    listener: std::net::TcpListener,
    kind: Kind,
    name: String,
    stats: Arc<Stats>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = TcpListener::from_std(listener).expect("register listener");
    // Connections live in this set so that stopping can drop them all.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let conn = Conn {
                        id: stats.connections.fetch_add(1, Ordering::SeqCst) + 1,
                        backend: name.clone(),
                        stats: stats.clone(),
                        sni: None,
                        client_cn: None,
                    };
                    conns.spawn(serve(kind.clone(), tcp, conn));
                }
                // E.g. out of file descriptors: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// What a request handler knows about its connection.
#[derive(Clone)]
struct Conn {
    id: u64,
    backend: String,
    stats: Arc<Stats>,
    sni: Option<String>,
    client_cn: Option<String>,
}

async fn serve(kind: Kind, tcp: TcpStream, mut conn: Conn) {
    match kind {
        Kind::Http => serve_http(tcp, conn).await,
        Kind::Https(acceptor) => {
            let Ok(tls) = tls_accept(&acceptor, tcp).await else {
                return; // a refused handshake is the expected outcome of some tests
            };
            conn.sni = tls
                .ssl()
                .servername(NameType::HOST_NAME)
                .map(str::to_string);
            conn.client_cn = tls.ssl().peer_certificate().and_then(|cert| {
                let cn = cert.subject_name().entries_by_nid(Nid::COMMONNAME).next()?;
                cn.data().to_string().ok()
            });
            serve_http(tls, conn).await
        }
        Kind::WebSocketEcho => websocket_echo(tcp, conn).await,
        Kind::ResetAfterBody => reset_after_body(tcp, conn).await,
    }
}

async fn tls_accept(acceptor: &SslAcceptor, tcp: TcpStream) -> super::Result<SslStream<TcpStream>> {
    let mut tls = SslStream::new(Ssl::new(acceptor.context())?, tcp)?;
    tokio::time::timeout(IO_TIMEOUT, Pin::new(&mut tls).accept()).await??;
    Ok(tls)
}

async fn serve_http<IO>(io: IO, conn: Conn)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| answer(req, conn.clone()));
    // auto: HTTP/1.1, or HTTP/2 when the connection starts with its preface (ALPN h2, h2c).
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await;
}

async fn answer(req: Request<Incoming>, conn: Conn) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();

    if path == HEALTH_PATH {
        conn.stats.health_checks.fetch_add(1, Ordering::SeqCst);
        return Ok(if conn.stats.unhealthy.load(Ordering::SeqCst) {
            reply(
                &conn,
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "unhealthy\n".into(),
            )
        } else {
            reply(&conn, StatusCode::OK, "text/plain", "ok\n".into())
        });
    }
    conn.stats.record_hit(&path_and_query);

    let (parts, body) = req.into_parts();
    let received = match read_body(body).await {
        Ok(received) => received,
        Err(e) => {
            let text = format!("request body failed: {e}\n");
            return Ok(reply(
                &conn,
                StatusCode::BAD_REQUEST,
                "text/plain",
                text.into(),
            ));
        }
    };

    if let Some(n) = path
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        let chunked = parts
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "chunked"));
        let body = if chunked {
            Body::pattern_chunked(n)
        } else {
            Body::pattern(n)
        };
        return Ok(reply(
            &conn,
            StatusCode::OK,
            "application/octet-stream",
            body,
        ));
    }
    if let Some(ms) = path
        .strip_prefix("/sleep/")
        .and_then(|ms| ms.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = path
        .strip_prefix("/status/")
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK);

    let mut headers = Map::new();
    for name in parts.headers.keys() {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        headers.insert(name.as_str().to_string(), Value::String(values.join(", ")));
    }
    let description = json!({
        "backend": conn.backend,
        "method": parts.method.as_str(),
        "path": path_and_query,
        "authority": parts.uri.authority().map(|a| a.as_str()),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_len": received.len,
        "body_fnv": received.fnv.hex(),
        "body": received.text,
        "conn": conn.id,
        "sni": conn.sni,
        "client_cn": conn.client_cn,
    });
    // These statuses must not carry a body.
    let body = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Body::empty()
    } else {
        format!("{description}\n").into()
    };
    Ok(reply(&conn, status, "application/json", body))
}

fn reply(conn: &Conn, status: StatusCode, content_type: &str, body: Body) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header("x-backend", conn.backend.as_str())
        .body(body)
        .expect("valid response")
}

/// A request body as the backend reports it.
struct Received {
    len: u64,
    fnv: Fnv1a64,
    text: Option<String>,
}

/// Reads a body to its end, keeping only its length, checksum and (when small) its text.
async fn read_body(mut body: Incoming) -> super::Result<Received> {
    let mut received = Received {
        len: 0,
        fnv: Fnv1a64::new(),
        text: None,
    };
    let mut small = Vec::new();
    while let Some(frame) = tokio::time::timeout(IO_TIMEOUT, body.frame()).await? {
        if let Ok(data) = frame?.into_data() {
            received.len += data.len() as u64;
            received.fnv.update(&data);
            if received.len <= ECHO_BODY_MAX as u64 {
                small.extend_from_slice(&data);
            }
        }
    }
    if received.len <= ECHO_BODY_MAX as u64 {
        received.text = String::from_utf8(small).ok();
    }
    Ok(received)
}

/// A request head read off a raw socket, for the backends that do not use hyper.
pub(crate) struct RawHead {
    pub method: String,
    pub path: String,
    /// Lowercased names, values trimmed.
    pub headers: Vec<(String, String)>,
    /// Bytes read past the end of the head (the start of a body, or pipelined data).
    pub rest: Vec<u8>,
    /// The head itself, for error messages.
    pub text: String,
}

impl RawHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        super::find_header(&self.headers, name)
    }
}

/// Reads up to the blank line ending an HTTP/1 head (at most 64 KiB, within [`IO_TIMEOUT`]).
pub(crate) async fn read_raw_head<R: AsyncRead + Unpin>(io: &mut R) -> super::Result<RawHead> {
    const MAX_HEAD: usize = 64 * 1024;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err("request head too large".into());
        }
        let n = tokio::time::timeout(IO_TIMEOUT, io.read(&mut chunk)).await??;
        if n == 0 {
            return Err("connection closed before the end of the head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let path = request_line.next().unwrap_or_default().to_string();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    Ok(RawHead {
        method,
        path,
        headers,
        rest: buf[end..].to_vec(),
        text,
    })
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (RFC 6455 section 4.2.2).
pub fn websocket_accept(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    openssl::base64::encode_block(&openssl::sha::sha1(format!("{key}{GUID}").as_bytes()))
}

async fn websocket_echo(mut tcp: TcpStream, conn: Conn) {
    let Ok(head) = read_raw_head(&mut tcp).await else {
        return;
    };
    conn.stats.record_hit(&head.path);
    let key = head.header("sec-websocket-key").unwrap_or_default();
    let is_upgrade = head
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    if !is_upgrade || key.is_empty() {
        let refusal = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let _ = tcp.write_all(refusal.as_bytes()).await;
        return;
    }
    let switching = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nX-Backend: {}\r\n\r\n",
        websocket_accept(key),
        conn.backend
    );
    if tcp.write_all(switching.as_bytes()).await.is_err()
        || tcp.write_all(&head.rest).await.is_err()
    {
        return;
    }
    // Echo until the peer closes; no timeout, a stop() ends it.
    let (mut reader, mut writer) = tcp.split();
    let _ = tokio::io::copy(&mut reader, &mut writer).await;
}

async fn reset_after_body(mut tcp: TcpStream, conn: Conn) {
    let Ok(head) = read_raw_head(&mut tcp).await else {
        return;
    };
    let mut body = head.rest.clone();
    let content_length = head
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|te| te.contains("chunked"));
    let complete = |body: &[u8]| match content_length {
        Some(len) => body.len() >= len,
        None if chunked => body.ends_with(b"0\r\n\r\n"),
        None => true,
    };
    let mut chunk = [0u8; 16 * 1024];
    while !complete(&body) {
        match tokio::time::timeout(IO_TIMEOUT, tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => body.extend_from_slice(&chunk[..n]),
            _ => return, // the peer gave up first: not a request this backend received
        }
    }
    conn.stats.record_hit(&head.path);
    // Linger 0 turns the close into a RST. (Deprecated in tokio because a non-zero linger
    // blocks on drop; a zero one does not.)
    #[allow(deprecated)]
    let _ = tcp.set_linger(Some(Duration::ZERO));
    drop(tcp);
}
