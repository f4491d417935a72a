//! A chain of plugins and the one place that runs it.

use super::{Flow, Hooks, Plugin, RequestState, Response};
use bytes::Bytes;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use std::sync::Arc;

/// One configured plugin.
#[derive(Clone)]
pub struct ChainEntry {
    pub name: &'static str,
    pub plugin: Arc<dyn Plugin>,
}

/// The plugins of one chain (global, or a route's), in config order. Cloning is cheap.
#[derive(Clone, Default)]
pub struct Chain {
    entries: Arc<[ChainEntry]>,
    /// Each entry's [`Plugin::hooks`], asked once here rather than on every request.
    hooks: Arc<[Hooks]>,
    /// Every hook some entry implements.
    all: Hooks,
}

impl Chain {
    pub fn new(entries: Vec<ChainEntry>) -> Self {
        let hooks: Arc<[Hooks]> = entries.iter().map(|e| e.plugin.hooks()).collect();
        Chain {
            all: hooks.iter().fold(Hooks::NONE, |all, h| all | *h),
            hooks,
            entries: entries.into(),
        }
    }

    /// Starts every plugin of the chain ([`Plugin::start`]): its config went live.
    pub fn start(&self) {
        for e in self.entries.iter() {
            e.plugin.start();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[ChainEntry] {
        &self.entries
    }
}

/// The global chain followed by the route's; the order every hook runs in.
pub struct Chains<'a> {
    pub global: &'a Chain,
    pub route: Option<&'a Chain>,
}

impl<'a> Chains<'a> {
    /// Whether some plugin of either chain implements `hook`.
    pub fn implements(&self, hook: Hooks) -> bool {
        self.global.all.contains(hook) || self.route.is_some_and(|r| r.all.contains(hook))
    }

    /// The entries that implement `hook`, global chain first.
    fn iter(&self, hook: Hooks) -> impl Iterator<Item = &'a ChainEntry> {
        let with = move |chain: &'a Chain| {
            chain
                .entries
                .iter()
                .zip(chain.hooks.iter())
                .filter(move |(_, hooks)| hooks.contains(hook))
                .map(|(e, _)| e)
        };
        with(self.global).chain(self.route.into_iter().flat_map(with))
    }

    pub async fn early_request(&self, session: &mut Session, state: &mut RequestState) {
        for e in self.iter(Hooks::EARLY_REQUEST) {
            e.plugin.early_request(session, state).await;
        }
    }

    /// Runs request hooks until one answers; returns that plugin's name and answer.
    pub async fn request(
        &self,
        session: &mut Session,
        state: &mut RequestState,
    ) -> Option<(&'static str, Response)> {
        for e in self.iter(Hooks::REQUEST) {
            if let Flow::Respond(r) = e.plugin.request(session, state).await {
                return Some((e.name, r));
            }
        }
        None
    }

    /// Runs request body hooks on one piece until one answers; returns that plugin's name and
    /// answer.
    pub async fn request_body(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        state: &mut RequestState,
    ) -> Option<(&'static str, Response)> {
        for e in self.iter(Hooks::REQUEST_BODY) {
            let flow = e
                .plugin
                .request_body(session, body, end_of_stream, state)
                .await;
            if let Flow::Respond(r) = flow {
                return Some((e.name, r));
            }
        }
        None
    }

    pub async fn upstream_request(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        state: &mut RequestState,
    ) {
        for e in self.iter(Hooks::UPSTREAM_REQUEST) {
            e.plugin.upstream_request(session, req, state).await;
        }
    }

    pub async fn response(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        state: &mut RequestState,
    ) {
        for e in self.iter(Hooks::RESPONSE) {
            e.plugin.response(session, resp, state).await;
        }
    }

    pub fn response_body(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        eos: bool,
        state: &mut RequestState,
    ) {
        for e in self.iter(Hooks::RESPONSE_BODY) {
            e.plugin.response_body(session, body, eos, state);
        }
    }

    pub async fn log(&self, session: &Session, state: &RequestState) {
        for e in self.iter(Hooks::LOG) {
            e.plugin.log(session, state).await;
        }
    }
}
