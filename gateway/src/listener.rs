//! What happens to a connection before HTTP: the PROXY protocol header (on TLS listeners
//! before the handshake, on plain ones before the first request) and connection accounting.

use crate::metrics;
use crate::proxy::Gateway;
use crate::Shared;
use async_trait::async_trait;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora_core::listeners::PreTlsProcess;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest, Stream, UniqueID};
use pingora_core::server::ShutdownWatch;
use pingora_core::{Error, ErrorType, Result};
use pingora_proxy::HttpProxy;
use std::cell::Cell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

tokio::task_local! {
    /// Set by the proxy once a request head has been read on this connection's task: the
    /// header-timeout watchdog stops watching from then on.
    static HEAD_SEEN: Cell<bool>;
}

/// Called when a request head has been read completely.
pub(crate) fn head_received(session: &pingora_proxy::Session) {
    let _ = HEAD_SEEN.try_with(|seen| seen.set(true));
    // HTTP/2 requests run on tasks of their own: they reach the connection through its TLS
    // digest instead (plain listeners speak only HTTP/1).
    if let Some(conn) = tls_connection(session) {
        conn.first_request.store(true, Ordering::Relaxed);
    }
}

/// What Portico keeps about a TLS connection, attached at its handshake (see `tls.rs`) and
/// reachable from each of its requests, HTTP/2 streams included.
pub(crate) struct TlsConnection {
    /// Set once its first request head arrived.
    first_request: AtomicBool,
    /// The client's verified certificate, on a listener with `client_ca`.
    pub client_cert: Option<Arc<crate::client_cert::ClientCert>>,
}

impl TlsConnection {
    pub(crate) fn new(client_cert: Option<Arc<crate::client_cert::ClientCert>>) -> Self {
        TlsConnection {
            first_request: AtomicBool::new(false),
            client_cert,
        }
    }
}

pub(crate) fn tls_connection(session: &pingora_proxy::Session) -> Option<&TlsConnection> {
    session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .and_then(|t| t.extension.get::<TlsConnection>())
}

/// A client that sends nothing must not hold a connection open forever.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Reads one PROXY header (v1 or v2) from the start of a stream, without reading past it.
/// Returns the source address it names (`None` for `UNKNOWN`/`LOCAL`, such as a load
/// balancer's own health check).
pub async fn read_proxy_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> std::result::Result<Option<SocketAddr>, String> {
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

/// At most one log line per `every` seconds for one kind of event on one listener, so that
/// a flood of bad connections does not flood the log too; the lines left out are counted
/// and the next line says how many.
#[derive(Default)]
pub(crate) struct LogGate {
    /// When a line was last let through (seconds since the epoch).
    last: AtomicU64,
    /// Lines held back since.
    held: AtomicU64,
}

impl LogGate {
    /// `Some(n)`: log now, after `n` lines held back; `None`: hold this one back.
    fn pass(&self, every: u64) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.last.load(Ordering::Relaxed);
        if (last == 0 || now >= last + every)
            && self
                .last
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// A client that sends PROXY headers from outside `trusted_proxies` may open connections as
/// fast as it likes: one warning per listener per minute says so.
const UNTRUSTED_PROXY_WARN_EVERY: u64 = 60;

/// Replaces the connection's peer address with the PROXY header's source, but only when the
/// TCP peer is a trusted proxy; an untrusted peer's header is read and ignored.
fn adopt_source<T: GetSocketDigest + UniqueID + ?Sized>(
    shared: &Shared,
    listener: &str,
    untrusted_warning: &LogGate,
    stream: &mut T,
    source: Option<SocketAddr>,
) {
    let Some(digest) = stream.get_socket_digest() else {
        return;
    };
    let peer = digest.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
    let trusted = peer.is_some_and(|ip| shared.snapshot.load().is_trusted(ip));
    match (trusted, source) {
        (true, Some(src)) => {
            // On an L4 stream the unique id is its file descriptor.
            let fresh = SocketDigest::from_raw_fd(stream.id());
            let _ = fresh.peer_addr.set(Some(src.into()));
            if let Some(local) = digest.local_addr() {
                let _ = fresh.local_addr.set(Some(local.clone()));
            }
            stream.set_socket_digest(fresh);
        }
        (false, Some(_)) => {
            if let Some(held) = untrusted_warning.pass(UNTRUSTED_PROXY_WARN_EVERY) {
                let held = match held {
                    0 => String::new(),
                    n => format!("; {n} more since the last such line"),
                };
                log::warn!("listener {listener}: PROXY header from untrusted peer {peer:?} ignored (add it to server.trusted_proxies; logged at most once a minute{held})");
            }
        }
        _ => {}
    }
}

/// How long the PROXY header at the start of `buf` is: `Ok(None)` while more bytes are
/// needed to tell, an error as soon as `buf` cannot be the start of one. Only the framing;
/// [`read_proxy_header`] parses the header itself.
fn proxy_header_len(buf: &[u8]) -> std::result::Result<Option<usize>, String> {
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

/// [`read_proxy_header`] for a listener's raw connection, which has no read buffer (see
/// `endpoint` in server.rs): the header is read in a few large reads instead of a system
/// call per byte, and whatever came after it (the TLS handshake, or the first request) is
/// put back.
async fn read_proxy_header_unbuffered(
    stream: &mut L4Stream,
) -> std::result::Result<Option<SocketAddr>, String> {
    let mut buf = [0u8; 256];
    let mut have = 0;
    let total = loop {
        if let Some(total) = proxy_header_len(&buf[..have])? {
            break total;
        }
        // (A v1 header is known complete or too long within 107 bytes, a v2 header's length
        // within 16, so the buffer never fills up here.)
        let n = stream
            .read(&mut buf[have..])
            .await
            .map_err(|e| format!("reading PROXY header: {e}"))?;
        if n == 0 {
            return Err("reading PROXY header: the connection closed".into());
        }
        have += n;
    };
    let mut header = buf[..have.min(total)].to_vec();
    if total > have {
        // A v2 header longer than the buffer (many TLVs): the rest, and not a byte more.
        header.resize(total, 0);
        stream
            .read_exact(&mut header[have..])
            .await
            .map_err(|e| format!("reading PROXY header: {e}"))?;
    } else {
        stream.rewind(&buf[total..have]);
    }
    read_proxy_header(&mut &header[..]).await
}

/// The pre-TLS step of a TLS listener with `proxy_protocol: true`.
pub struct ProxyHeaderBeforeTls {
    pub listener: Arc<str>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) untrusted_warning: LogGate,
}

/// Reads the PROXY header from a new connection and adopts its source; the error (logged)
/// means the connection is closed.
async fn take_proxy_header(
    shared: &Shared,
    listener: &str,
    untrusted_warning: &LogGate,
    stream: &mut L4Stream,
) -> Result<()> {
    match tokio::time::timeout(PROXY_HEADER_TIMEOUT, read_proxy_header_unbuffered(stream)).await {
        Ok(Ok(source)) => {
            adopt_source(shared, listener, untrusted_warning, stream, source);
            Ok(())
        }
        Ok(Err(why)) => {
            log::warn!(
                "listener {listener}: closing connection from {:?}: {why}",
                stream
                    .get_socket_digest()
                    .and_then(|d| d.peer_addr().cloned())
            );
            Error::e_explain(ErrorType::InvalidHTTPHeader, why)
        }
        Err(_) => {
            log::warn!(
                "listener {listener}: closing connection from {:?}: no PROXY header within {PROXY_HEADER_TIMEOUT:?}",
                stream.get_socket_digest().and_then(|d| d.peer_addr().cloned())
            );
            Error::e_explain(ErrorType::ReadTimedout, "no PROXY header in time")
        }
    }
}

#[async_trait]
impl PreTlsProcess for ProxyHeaderBeforeTls {
    async fn process(&self, stream: &mut L4Stream) -> Result<()> {
        take_proxy_header(
            &self.shared,
            &self.listener,
            &self.untrusted_warning,
            stream,
        )
        .await
    }
}

/// The application of one listener: Pingora's HTTP proxy, plus what happens once per
/// connection (counting it, and the PROXY header on plain listeners).
pub struct ListenerApp {
    pub name: Arc<str>,
    pub proxy: Arc<HttpProxy<Gateway>>,
    /// Read a PROXY header first (plain listeners; TLS ones read it before the handshake).
    pub proxy_header: bool,
    /// Its limits (`server.limits`) are read from the current snapshot per connection.
    pub(crate) shared: Arc<Shared>,
    /// This listener's open connections, for `max_connections` and `max_connections_per_ip`.
    pub(crate) conns: ConnCounts,
    /// Set when the service stops (`cleanup`): connections waiting for a request close.
    pub(crate) closing: Closing,
    /// Paces the warning about PROXY headers from untrusted peers.
    pub(crate) untrusted_warning: LogGate,
}

/// Tells connections parked between requests (see [`ListenerApp::next_request`]) that the
/// service is stopping, as Pingora tells the ones it is reading a request head from.
#[derive(Default)]
pub(crate) struct Closing {
    closed: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Closing {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Resolves once `close` was called (also if it was before).
    async fn closed(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a `close` in between is not missed.
        notified.as_mut().enable();
        if !self.closed.load(Ordering::Acquire) {
            notified.await;
        }
    }
}

/// A TLS connection as Pingora's OpenSSL listener hands it over.
type TlsStream = pingora_core::protocols::tls::SslStream<L4Stream>;

extern "C" {
    /// OpenSSL: whether the connection holds unprocessed input, decrypted or not (with
    /// read-ahead a whole next record can sit in its buffer while the socket is empty).
    /// Not in `openssl-sys`; the library Pingora links provides it (OpenSSL >= 1.1.0).
    fn SSL_has_pending(ssl: *const std::ffi::c_void) -> std::ffi::c_int;
}

/// Whether Pingora carries bytes of the next request over from the previous one (pipelined
/// requests). Pingora 0.9.1 has no accessor for it, so this reads the settings' `Debug` form;
/// it runs only when a connection would otherwise be parked, and `tests/limits.rs`
/// (pipelining) fails if Pingora's format changes. An accessor in Pingora would replace it.
///
/// The form is read as it is written, piece by piece, and writing stops at the field's value:
/// no allocation and no formatting past it. `format!` and a substring search cost ~2.9k
/// instructions per parked request (`benches/profile.sh`), about 2% of a keep-alive request.
fn holds_pipelined_request(settings: &HttpPersistentSettings) -> bool {
    use std::fmt::Write;

    /// `DebugStruct` writes a field as its name, `": "`, then the value (an `Option`:
    /// `"Some"` or `"None"` first), each as its own piece.
    #[derive(Default)]
    struct Seek {
        at_field: bool,
        found: Option<bool>,
    }
    impl Write for Seek {
        fn write_str(&mut self, piece: &str) -> std::fmt::Result {
            if piece == "pipelined_prefix" {
                self.at_field = true;
            } else if self.at_field && piece != ": " {
                self.found = Some(piece.starts_with("Some"));
                return Err(std::fmt::Error); // the answer is known: stop formatting
            }
            Ok(())
        }
    }
    let mut seek = Seek::default();
    let _ = write!(seek, "{settings:?}");
    seek.found == Some(true)
}

fn tls_has_pending(tls: &TlsStream) -> bool {
    use foreign_types::ForeignTypeRef;
    // SAFETY: the pointer is the live `SSL` of this stream, borrowed for the call.
    unsafe { SSL_has_pending(tls.ssl().as_ptr() as *const std::ffi::c_void) == 1 }
}

/// The open connections of one listener, in all and by client address.
#[derive(Default)]
pub(crate) struct ConnCounts {
    total: AtomicUsize,
    /// Locked twice per connection (open, close), never per request.
    by_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Refusals are logged once per 10 s at most.
    warning: LogGate,
}

/// An admitted connection's place in [`ConnCounts`], given back on drop.
struct Admitted<'a> {
    counts: &'a ConnCounts,
    ip: Option<IpAddr>,
}

impl ConnCounts {
    /// Takes a place for a connection from `ip` (`None`: not counted per address), or says
    /// which limit is full.
    fn admit(
        &self,
        ip: Option<IpAddr>,
        max_total: usize,
        max_per_ip: usize,
    ) -> std::result::Result<Admitted<'_>, &'static str> {
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        // From here on, dropping the guard gives back what was taken.
        let mut admitted = Admitted {
            counts: self,
            ip: None,
        };
        if max_total > 0 && total > max_total {
            return Err("server.limits.max_connections");
        }
        if let Some(ip) = ip.filter(|_| max_per_ip > 0) {
            let mut by_ip = self.by_ip.lock().unwrap();
            let n = by_ip.entry(ip).or_insert(0);
            if *n >= max_per_ip {
                return Err("server.limits.max_connections_per_ip");
            }
            *n += 1;
            admitted.ip = Some(ip);
        }
        Ok(admitted)
    }

    fn should_warn(&self) -> bool {
        self.warning.pass(10).is_some()
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.counts.total.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.ip {
            let mut by_ip = self.counts.by_ip.lock().unwrap();
            if let Some(n) = by_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    by_ip.remove(&ip);
                }
            }
        }
    }
}

/// Decrements the connection gauge however the connection ends.
struct Open(prometheus::IntGauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Resolves when `limit` passes before a request head was read; never otherwise.
async fn head_watchdog(limit: Duration) {
    tokio::time::sleep(limit).await;
    if HEAD_SEEN.with(|seen| seen.get()) {
        std::future::pending::<()>().await;
    }
}

/// Resolves when `limit` passes before the first request of an HTTP/2 connection arrived
/// (a client that never sends its preface would otherwise hold the connection for good;
/// once requests came, Pingora's `h2_idle_timeout` closes it when it has none open).
async fn first_request_watchdog(
    limit: Duration,
    tls: Option<Arc<pingora_core::protocols::tls::SslDigest>>,
) {
    tokio::time::sleep(limit).await;
    if tls
        .as_ref()
        .and_then(|d| d.extension.get::<TlsConnection>())
        .is_none_or(|c| c.first_request.load(Ordering::Relaxed))
    {
        std::future::pending::<()>().await;
    }
}

/// The HTTP/2 settings of a listener: Pingora's bounded defaults (a 64 KiB header list,
/// among others) with `server.limits`' stream limits.
pub(crate) fn h2_options(
    limits: &crate::config::LimitsConfig,
) -> pingora_core::protocols::http::v2::server::H2Options {
    let mut options = pingora_core::protocols::http::v2::server::default_h2_options();
    options.max_concurrent_streams(limits.http2_max_concurrent_streams);
    // h2's answer to rapid reset: streams a client resets before they were taken up wait in
    // the accept queue without counting as open; past this many, GOAWAY ENHANCE_YOUR_CALM.
    options.max_pending_accept_reset_streams(limits.http2_max_pending_resets);
    options
}

impl ListenerApp {
    /// The session for the next request on an HTTP/1 connection: with what Pingora carried
    /// over from the previous one (`settings`), or set up for the connection's first.
    fn h1_session(
        &self,
        stream: Stream,
        settings: Option<HttpPersistentSettings>,
        shutdown: &ShutdownWatch,
        idle_timeout: Duration,
    ) -> ServerSession {
        let mut session = ServerSession::new_http1(stream);
        match settings {
            Some(settings) => HttpPersistentSettings::apply_to_session(settings, &mut session),
            None => {
                // Pipelined requests (sent before the previous answer came) are answered one
                // after another, in order (RFC 9112 9.3.2); without this Pingora refuses the
                // request whose successor arrived early with a 400, or drops the successor.
                // The setting carries over to the connection's later requests with the rest
                // of `settings`.
                session.set_pipelining_enabled(true);
                session.set_keepalive(if *shutdown.borrow() {
                    None
                } else {
                    Some(idle_timeout.as_secs().max(1))
                });
                session.set_keepalive_reuses_remaining(
                    self.proxy
                        .server_options()
                        .and_then(|o| o.keepalive_request_limit),
                );
            }
        }
        session
    }

    /// HTTP/1: one request after another on the connection, as Pingora's own loop does, but
    /// each head on a clock: the first must be complete within `header_timeout` of the
    /// connection's start, each later one within `idle_timeout` of the previous request's end.
    /// A slow head on a kept-alive connection holds it no longer than an idle one would.
    async fn serve_h1(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
        header_timeout: Duration,
        idle_timeout: Duration,
    ) {
        let mut deadline = Instant::now() + header_timeout;
        let mut settings = None;
        loop {
            let Some(next) = self.next_request(stream, deadline, settings.as_ref()).await else {
                return;
            };
            let limit = deadline.saturating_duration_since(Instant::now());
            // Boxed, with the session made inside: a request's state (~900 bytes, the session
            // among it) then exists only while the request is under way, instead of in the
            // future of every parked connection.
            let served = Box::pin(HEAD_SEEN.scope(Cell::new(false), async move {
                let session = self.h1_session(next, settings, shutdown, idle_timeout);
                tokio::select! {
                    r = self.proxy.process_new_http(session, shutdown) => Some(r),
                    _ = head_watchdog(limit) => None,
                }
            }));
            match served.await {
                Some(Some(reused)) => {
                    (stream, settings) = reused.consume();
                    deadline = Instant::now() + idle_timeout;
                }
                Some(None) => return,
                None => {
                    log::debug!(
                        "listener {}: no complete request head within {limit:?}, closing",
                        self.name
                    );
                    return;
                }
            }
        }
    }

    /// Waits, holding nothing but the connection, until its next request starts to arrive;
    /// `None` when it should close instead (the deadline passed, the client closed it, the
    /// service is stopping).
    ///
    /// Pingora allocates a request's state (~10 KiB of future and a 4 KiB head buffer) as soon
    /// as it starts waiting for the head, so an idle keep-alive connection would hold it the
    /// whole time. Here it is parked until bytes arrive. Those bytes are read from the socket
    /// and put back in front of it (Pingora's rewind buffer), so nothing is lost; on a busy
    /// connection the request is already there and this costs a copy of its TLS records, no
    /// extra system call. Neither kind of listener has a read buffer of its own in which
    /// bytes could hide (`endpoint` in server.rs); a TLS connection's OpenSSL buffer is
    /// checked.
    async fn next_request(
        &self,
        stream: Stream,
        deadline: Instant,
        settings: Option<&HttpPersistentSettings>,
    ) -> Option<Stream> {
        if stream.as_any().is::<TlsStream>() {
            let mut tls: Box<TlsStream> = stream.into_any().downcast().ok()?;
            if tls_has_pending(&tls) {
                return Some(tls);
            }
            return self
                .until_bytes(tls.get_mut(), deadline, settings)
                .await
                .then_some(tls as Stream);
        }
        if stream.as_any().is::<L4Stream>() {
            let mut raw: Box<L4Stream> = stream.into_any().downcast().ok()?;
            return self
                .until_bytes(&mut raw, deadline, settings)
                .await
                .then_some(raw as Stream);
        }
        Some(stream)
    }

    /// Waits until bytes arrive on the raw connection and puts them back in front of it;
    /// false when it should close instead (see [`ListenerApp::next_request`]).
    async fn until_bytes(
        &self,
        raw: &mut L4Stream,
        deadline: Instant,
        settings: Option<&HttpPersistentSettings>,
    ) -> bool {
        let mut idle = false;
        let arrived = std::future::poll_fn(|cx| {
            // Uninitialized: zeroing it would cost more than the read (it is polled on every
            // request, mostly finding the request there).
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
            let mut read = ReadBuf::uninit(&mut buf);
            match Pin::new(&mut *raw).poll_read(cx, &mut read) {
                // Nothing on the socket: the next request may still be there already, read
                // by Pingora with the previous one (pipelined) and handed on in `settings`.
                Poll::Pending if !idle => {
                    idle = true;
                    if settings.is_some_and(holds_pipelined_request) {
                        return Poll::Ready(true);
                    }
                    Poll::Pending
                }
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(())) if !read.filled().is_empty() => {
                    raw.rewind(read.filled());
                    Poll::Ready(true)
                }
                Poll::Ready(_) => Poll::Ready(false), // closed by the client, or broken
            }
        });
        tokio::select! {
            biased;
            arrived = arrived => arrived,
            _ = tokio::time::sleep_until(deadline.into()) => {
                log::debug!("listener {}: no request in time, closing", self.name);
                false
            }
            _ = self.closing.closed() => false,
        }
    }
}

#[async_trait]
impl ServerApp for ListenerApp {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let gauge = metrics::DOWNSTREAM_CONNECTIONS.with_label_values(&[&self.name]);
        gauge.inc();
        let _open = Open(gauge);
        if self.proxy_header {
            // A plain listener hands over the raw connection (TLS ones read the header before
            // the handshake, in `ProxyHeaderBeforeTls`).
            let Ok(mut raw) = stream.into_any().downcast::<L4Stream>() else {
                log::error!(
                    "listener {}: a PROXY header on a connection that is not plain TCP",
                    self.name
                );
                return None;
            };
            // Boxed, like the request below: its state (a read buffer among it) is needed
            // once, and inline it would size this future, which every idle connection keeps.
            Box::pin(take_proxy_header(
                &self.shared,
                &self.name,
                &self.untrusted_warning,
                &mut raw,
            ))
            .await
            .ok()?;
            stream = raw;
        }
        // One look at the config, keeping only figures: the snapshot or the limits themselves
        // would stay in this future, which a parked connection keeps.
        let (ip, max_connections, max_per_ip, header_timeout, idle_timeout) = {
            let snapshot = self.shared.snapshot.load();
            // Counted by the client's address: the PROXY header's source from a trusted
            // proxy, otherwise the peer. A trusted proxy's own connections carry many clients.
            let ip = stream
                .get_socket_digest()
                .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
                .map(crate::snapshot::canonical_ip)
                .filter(|ip| !snapshot.is_trusted(*ip));
            let limits = &snapshot.config.server.limits;
            (
                ip,
                limits.max_connections,
                limits.max_connections_per_ip,
                limits.header_timeout.get(),
                limits.idle_timeout.get(),
            )
        };
        let _admitted = match self.conns.admit(ip, max_connections, max_per_ip) {
            Ok(a) => a,
            Err(limit) => {
                if self.conns.should_warn() {
                    log::warn!("listener {}: closing a connection from {ip:?}: {limit} reached (logged once per 10 s)", self.name);
                }
                return None;
            }
        };
        let h2c = self.proxy.server_options().is_some_and(|o| o.h2c);
        if stream.selected_alpn_proto() == Some(pingora_core::protocols::ALPN::H2) || h2c {
            // HTTP/2 multiplexes requests on tasks of their own and has its own idle timer.
            let tls = stream.get_ssl_digest();
            tokio::select! {
                _ = self.proxy.process_new(stream, shutdown) => {}
                _ = first_request_watchdog(header_timeout, tls) => {
                    log::debug!("listener {}: no HTTP/2 request within {header_timeout:?}, closing", self.name);
                }
            }
        } else {
            self.serve_h1(stream, shutdown, header_timeout, idle_timeout)
                .await;
        }
        None
    }

    async fn cleanup(&self) {
        self.closing.close();
        self.proxy.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_gate_passes_one_line_per_period_and_counts_the_rest() {
        let gate = LogGate::default();
        assert_eq!(gate.pass(60), Some(0));
        for _ in 0..5 {
            assert_eq!(gate.pass(60), None);
        }
        // As if the period had passed.
        gate.last.fetch_sub(61, Ordering::Relaxed);
        assert_eq!(gate.pass(60), Some(5));
        assert_eq!(gate.pass(60), None);
    }

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
