//! The plugin API: what a plugin is, how it is configured, and how chains of them run.
//!
//! A plugin is a type implementing [`Plugin`]: every hook is optional and named after the
//! moment it runs. Its config is a serde struct, checked when the config is loaded (never
//! per request). A binary registers plugins by name in a [`Registry`], which is how a user's
//! own plugin sits next to the built-ins:
//!
//! ```ignore
//! let mut registry = gateway::Registry::new();
//! plugins::register_builtins(&mut registry);
//! registry.register::<MyPlugin>();
//! gateway::run(registry);
//! ```

pub mod brotli_end;
mod chain;
pub use chain::Chains;
mod registry;
mod state;
pub mod testing;

pub use brotli_end::BrotliEnd;
pub use chain::{Chain, ChainEntry};
pub use registry::{BuildContext, PluginConfig, Registry};
pub use state::{ClientCert, RateLimitStatus, RequestState};

use async_trait::async_trait;
use bytes::Bytes;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

/// The outcome of a plugin's request hook: go on with the chain, or answer the client now.
///
/// The chain runner alone decides what runs next, from this value.
#[derive(Debug)]
pub enum Flow {
    /// Run the next plugin, then proxy to the upstream.
    Continue,
    /// Answer with this response; later plugins and the upstream never see the request.
    Respond(Response),
}

/// A response a plugin makes itself (a refusal, a redirect, a fixed answer).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Response {
    /// A response with a short text body.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: body.into(),
        }
    }

    /// A response without a body.
    pub fn empty(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A plugin. Every hook has a default that does nothing, so a plugin writes only what it
/// needs. Hooks run in chain order: the global chain first, then the route's.
///
/// ```
/// use gateway::plugin::{Flow, Plugin, PluginConfig, BuildContext, RequestState, Response};
/// use gateway::Session;
///
/// /// Refuses requests without an `X-Tenant` header.
/// struct RequireTenant;
///
/// #[async_trait::async_trait]
/// impl Plugin for RequireTenant {
///     async fn request(&self, session: &mut Session, _state: &mut RequestState) -> Flow {
///         if session.req_header().headers.contains_key("x-tenant") {
///             Flow::Continue
///         } else {
///             Flow::Respond(Response::text(400, "X-Tenant is required\n"))
///         }
///     }
/// }
///
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct RequireTenantConfig {}
///
/// impl PluginConfig for RequireTenant {
///     const NAME: &'static str = "require_tenant";
///     type Config = RequireTenantConfig;
///     fn build(_config: Self::Config, _cx: &BuildContext) -> Result<Self, String> {
///         Ok(RequireTenant)
///     }
/// }
/// ```
#[async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// Runs first, as soon as the request head is read and the route is chosen, before
    /// Pingora's own modules see the request. The place to switch on response compression
    /// (`session.downstream_compression`). Cannot answer; use [`Plugin::request`] for that.
    async fn early_request(&self, _session: &mut Session, _state: &mut RequestState) {}

    /// Runs once per request, before the upstream is chosen. Return [`Flow::Respond`] to
    /// answer now: the chain stops and nothing reaches the upstream.
    async fn request(&self, _session: &mut Session, _state: &mut RequestState) -> Flow {
        Flow::Continue
    }

    /// Runs on each piece of the request body as it is read from the client, before the
    /// piece goes to the upstream; `end_of_stream` is set on the last call (a request without
    /// a body gets one call, with `None` and `end_of_stream` set). Only for requests that are
    /// proxied: an answer from [`Plugin::request`] (or Portico's own) leaves the body unread.
    ///
    /// The piece may be changed or replaced (`None`: nothing of it is sent), or the request
    /// answered with [`Flow::Respond`]: nothing more of the body is forwarded, the client gets
    /// the answer with `Connection: close`, and the chain stops. By then the upstream has the
    /// request head and the pieces before this one, and sees its connection closed without the
    /// rest: answer early (or buffer the body in the request's state and pass it on at the
    /// end) when the backend must not see a part of a refused body.
    ///
    /// Each piece reaches the hooks once: when a failed attempt is retried on another backend,
    /// Portico resends what it read without calling the hooks again, and a request whose body
    /// a hook changed is not retried once its body started to go out.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use gateway::{Flow, Hooks, Plugin, RequestState, Response, Session};
    ///
    /// /// Refuses bodies that say "forbidden" (a word split across two pieces is found too).
    /// struct NoForbidden;
    ///
    /// /// The end of the previous piece, kept for the next one.
    /// #[derive(Clone)]
    /// struct Tail(Vec<u8>);
    ///
    /// #[async_trait::async_trait]
    /// impl Plugin for NoForbidden {
    ///     fn hooks(&self) -> Hooks {
    ///         Hooks::REQUEST_BODY
    ///     }
    ///
    ///     async fn request_body(
    ///         &self,
    ///         _session: &mut Session,
    ///         body: &mut Option<Bytes>,
    ///         _end_of_stream: bool,
    ///         state: &mut RequestState,
    ///     ) -> Flow {
    ///         let Some(piece) = body else { return Flow::Continue };
    ///         let mut seen = state.extensions.remove::<Tail>().map_or(Vec::new(), |t| t.0);
    ///         seen.extend_from_slice(piece);
    ///         if seen.windows(9).any(|w| w == b"forbidden") {
    ///             return Flow::Respond(Response::text(422, "no forbidden words\n"));
    ///         }
    ///         let keep = seen.len().saturating_sub(8);
    ///         state.extensions.insert(Tail(seen.split_off(keep)));
    ///         Flow::Continue
    ///     }
    /// }
    ///
    /// // Driven with the test kit (`gateway::plugin::testing`): the word split across pieces.
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use gateway::plugin::testing::TestRequest;
    /// let head = b"POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 14\r\n\r\n";
    /// let mut t = TestRequest::new(head).await;
    /// let (session, state) = (&mut t.session, &mut t.state);
    /// let mut piece = Some(Bytes::from_static(b"is forb"));
    /// let flow = NoForbidden.request_body(session, &mut piece, false, state).await;
    /// assert!(matches!(flow, Flow::Continue));
    /// let mut piece = Some(Bytes::from_static(b"idden!"));
    /// let Flow::Respond(answer) = NoForbidden.request_body(session, &mut piece, true, state).await
    /// else {
    ///     panic!("a forbidden word split across two pieces went through");
    /// };
    /// assert_eq!(answer.status, 422);
    /// # });
    /// ```
    async fn request_body(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        _state: &mut RequestState,
    ) -> Flow {
        Flow::Continue
    }

    /// Runs on the request about to be sent to the upstream (once per attempt, so also on a
    /// retry): add or remove headers, rewrite the path.
    async fn upstream_request(
        &self,
        _session: &mut Session,
        _upstream: &mut RequestHeader,
        _state: &mut RequestState,
    ) {
    }

    /// Runs on the response headers before they go to the client, for upstream answers
    /// and for answers Portico or a plugin made.
    async fn response(
        &self,
        _session: &mut Session,
        _response: &mut ResponseHeader,
        _state: &mut RequestState,
    ) {
    }

    /// Runs on each piece of the response body (`None` when a piece was consumed).
    fn response_body(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        _state: &mut RequestState,
    ) {
    }

    /// Runs once when the request is over, whatever its outcome; `state` holds the status,
    /// byte count and timings.
    async fn log(&self, _session: &Session, _state: &RequestState) {}

    /// The hooks this plugin implements; a chain calls only these. Read once, when the
    /// chain is built. Calling an async hook allocates its future even when the hook does
    /// nothing, and a request would otherwise call every hook of every plugin in its chains.
    /// The default, [`Hooks::ALL`], is always right; leave a hook out only if it keeps its
    /// do-nothing default.
    ///
    /// ```ignore
    /// fn hooks(&self) -> Hooks {
    ///     Hooks::REQUEST | Hooks::RESPONSE
    /// }
    /// ```
    fn hooks(&self) -> Hooks {
        Hooks::ALL
    }

    /// Starts what the plugin runs in the background (a writer thread, a refresh task).
    /// Called once, when the config holding this plugin goes live: at start, in the process
    /// that serves (after `-d`'s fork), and after each reload that is applied. Never when a
    /// config is only checked (`portico -t`) or a reload is refused, so
    /// [`PluginConfig::build`] stays free of side effects: it checks the config and
    /// prepares, `start` sets things running, and `Drop` (when the last request on the
    /// config is over) stops them. The default does nothing.
    ///
    /// ```
    /// use gateway::Plugin;
    /// use std::sync::{mpsc, Mutex};
    ///
    /// /// Hands lines to a writer thread, started only once the config is live.
    /// struct Lines {
    ///     tx: mpsc::SyncSender<String>,
    ///     rx: Mutex<Option<mpsc::Receiver<String>>>,
    /// }
    ///
    /// impl Plugin for Lines {
    ///     fn start(&self) {
    ///         if let Some(rx) = self.rx.lock().unwrap().take() {
    ///             // Ends when the plugin (the sender) is dropped.
    ///             std::thread::spawn(move || rx.iter().for_each(|line| println!("{line}")));
    ///         }
    ///     }
    /// }
    /// ```
    fn start(&self) {}
}

/// A set of [`Plugin`] hooks, for [`Plugin::hooks`] (`Hooks::REQUEST | Hooks::RESPONSE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hooks(u8);

impl Hooks {
    pub const EARLY_REQUEST: Hooks = Hooks(1);
    pub const REQUEST: Hooks = Hooks(1 << 1);
    pub const UPSTREAM_REQUEST: Hooks = Hooks(1 << 2);
    pub const RESPONSE: Hooks = Hooks(1 << 3);
    pub const RESPONSE_BODY: Hooks = Hooks(1 << 4);
    pub const LOG: Hooks = Hooks(1 << 5);
    pub const REQUEST_BODY: Hooks = Hooks(1 << 6);
    pub const ALL: Hooks = Hooks((1 << 7) - 1);
    /// No hook: a plugin that only runs in the background (see [`Plugin::start`]).
    pub const NONE: Hooks = Hooks(0);

    /// Whether every hook of `other` is in this set.
    pub const fn contains(self, other: Hooks) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Hooks {
    type Output = Hooks;

    fn bitor(self, other: Hooks) -> Hooks {
        Hooks(self.0 | other.0)
    }
}
