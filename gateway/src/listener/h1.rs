//! HTTP/1: one request after another on a connection, each head on a clock, and the
//! connection parked between requests holding nothing but itself.

use super::app::ListenerApp;
use super::watchdog::head_watchdog;
use crate::net::connection;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Sleep;

/// A TLS connection as Pingora's BoringSSL listener hands it over.
type TlsStream = pingora_core::protocols::tls::SslStream<L4Stream>;

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

/// Whether the connection holds input the library has taken from the socket but not handed
/// on, decrypted or not (part of a record, or what is left of one).
fn tls_has_pending(tls: &TlsStream) -> bool {
    use foreign_types::ForeignTypeRef;
    // SAFETY: the pointer is the live `SSL` of this stream, borrowed for the call.
    unsafe { boring_sys::SSL_has_pending(tls.ssl().as_ptr()) == 1 }
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
    ///
    /// One timer serves the connection's whole life: waiting for a request and waiting for its
    /// head end at the same deadline, and moving a deadline later is one atomic
    /// compare-exchange in tokio's timer, where a timer made and dropped per wait takes the
    /// timer's lock twice (`benches/README.md`, optimisation log).
    pub(super) async fn serve_h1(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
        header_timeout: Duration,
        idle_timeout: Duration,
    ) {
        let clock = tokio::time::sleep(header_timeout);
        tokio::pin!(clock);
        let mut within = header_timeout;
        let mut settings = None;
        loop {
            let Some(next) = self
                .next_request(stream, clock.as_mut(), settings.as_ref())
                .await
            else {
                return;
            };
            // Boxed, with the session made inside: a request's state (~900 bytes, the session
            // among it) then exists only while the request is under way, instead of in the
            // future of every parked connection.
            let head_clock = clock.as_mut();
            let served = Box::pin(connection::watch_head(async move {
                let session = self.h1_session(next, settings, shutdown, idle_timeout);
                tokio::select! {
                    r = self.proxy.process_new_http(session, shutdown) => Some(r),
                    _ = head_watchdog(head_clock) => None,
                }
            }));
            match served.await {
                Some(Some(reused)) => {
                    (stream, settings) = reused.consume();
                    clock
                        .as_mut()
                        .reset(tokio::time::Instant::now() + idle_timeout);
                    within = idle_timeout;
                }
                Some(None) => return,
                None => {
                    log::debug!(
                        "listener {}: no complete request head within {within:?}, closing",
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
    /// bytes could hide (`endpoint` in runtime/services.rs); a TLS connection's library buffer is
    /// checked.
    async fn next_request(
        &self,
        stream: Stream,
        deadline: Pin<&mut Sleep>,
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
        deadline: Pin<&mut Sleep>,
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
            _ = deadline => {
                log::debug!("listener {}: no request in time, closing", self.name);
                false
            }
            _ = self.closing.closed() => false,
        }
    }
}
