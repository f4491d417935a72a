//! Per-request state: what the gateway knows about a request, and what plugins leave for
//! each other and for the access log.

pub use crate::tls::ClientCert;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Everything known about one request, handed to every plugin hook.
#[derive(Debug)]
pub struct RequestState {
    /// The request id (the client's own, or a new one), also sent to the upstream and back.
    pub request_id: String,
    /// The client address after PROXY-protocol and trusted-proxy resolution.
    pub client_ip: IpAddr,
    /// The name of the listener the request came in on.
    pub listener: Arc<str>,
    /// The host the request was for, lowercased and without a port.
    pub host: String,
    /// The matched route's name; `None` when no route matched.
    pub route: Option<Arc<str>>,
    /// The route's upstream pool, when it has one.
    pub upstream: Option<Arc<str>>,
    /// The backend that served (or last failed) the request, `host:port`.
    pub backend: Option<Arc<str>>,
    /// Wall-clock time the request started.
    pub started_at: SystemTime,
    pub(crate) started: Instant,
    /// Time from the first upstream connect attempt to the upstream's response header.
    pub upstream_time: Option<Duration>,
    pub(crate) upstream_started: Option<Instant>,
    /// The status the client got (0 until a response was written).
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// Values plugins leave for later plugins and the access log, such as JWT claims.
    vars: Vec<(String, String)>,
    /// The tightest rate limit the request was counted under, for the `RateLimit-Limit` and
    /// `RateLimit-Remaining` response headers: a limiter's request hook sets it (keeping the
    /// one with the fewest requests remaining), its response hook writes it. A field rather
    /// than an `extensions` entry because it is set on every request that passes a limit,
    /// and the first `extensions` insert of a request allocates a map.
    pub rate_limit: Option<RateLimitStatus>,
    /// Typed values plugins leave for each other.
    pub extensions: http::Extensions,
    /// The client's certificate, on a listener with `tls.client_ca` when the client sent one
    /// (it has been verified against the CA: with `client_auth: optional` a client may send
    /// none, never an invalid one). `None` elsewhere. Read once per connection and shared by
    /// its requests.
    ///
    /// ```
    /// use gateway::{Flow, Plugin, RequestState, Response, Session};
    ///
    /// /// Lets through only clients whose certificate names the billing service.
    /// struct BillingOnly;
    ///
    /// #[async_trait::async_trait]
    /// impl Plugin for BillingOnly {
    ///     async fn request(&self, _session: &mut Session, state: &mut RequestState) -> Flow {
    ///         match &state.client_cert {
    ///             Some(cert) if cert.uris.iter().any(|u| u == "spiffe://example.org/billing") => {
    ///                 state.set_var("client", cert.subject.clone());
    ///                 Flow::Continue
    ///             }
    ///             Some(_) => Flow::Respond(Response::text(403, "Forbidden\n")),
    ///             None => Flow::Respond(Response::text(401, "a client certificate is required\n")),
    ///         }
    ///     }
    /// }
    /// ```
    pub client_cert: Option<Arc<ClientCert>>,
    /// With `server.tracing`: the trace id and the request's server span id, in hex.
    pub trace: Option<(String, String)>,
}

/// A rate limit as the client is told about it; see [`RequestState::rate_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitStatus {
    /// Requests allowed at once (`RateLimit-Limit`).
    pub limit: u64,
    /// Requests left right now (`RateLimit-Remaining`).
    pub remaining: u64,
}

impl RequestState {
    pub fn new(listener: Arc<str>, client_ip: IpAddr) -> Self {
        RequestState {
            request_id: String::new(),
            client_ip,
            listener,
            host: String::new(),
            route: None,
            upstream: None,
            backend: None,
            started_at: SystemTime::now(),
            started: Instant::now(),
            upstream_time: None,
            upstream_started: None,
            status: 0,
            bytes_sent: 0,
            vars: Vec::new(),
            trace: None,
            rate_limit: None,
            extensions: http::Extensions::new(),
            client_cert: None,
        }
    }

    /// Time since the request started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Sets a named value for later plugins (replacing an earlier one of that name).
    pub fn set_var(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.vars.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name, value)),
        }
    }

    /// A value set by an earlier plugin.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value set by plugins, in the order set.
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }
}
