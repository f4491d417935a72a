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
}

impl Chain {
    pub fn new(entries: Vec<ChainEntry>) -> Self {
        Chain {
            hooks: entries.iter().map(|e| e.plugin.hooks()).collect(),
            entries: entries.into(),
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
