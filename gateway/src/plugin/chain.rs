//! A chain of plugins and the one place that runs it.

use super::{Flow, Plugin, RequestState, Response};
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
}

impl Chain {
    pub fn new(entries: Vec<ChainEntry>) -> Self {
        Chain {
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
    fn iter(&self) -> impl Iterator<Item = &'a ChainEntry> {
        let route: &'a [ChainEntry] = match self.route {
            Some(c) => c.entries(),
            None => &[],
        };
        self.global.entries().iter().chain(route.iter())
    }

    pub async fn early_request(&self, session: &mut Session, state: &mut RequestState) {
        for e in self.iter() {
            e.plugin.early_request(session, state).await;
        }
    }

    /// Runs request hooks until one answers; returns that plugin's name and answer.
    pub async fn request(
        &self,
        session: &mut Session,
        state: &mut RequestState,
    ) -> Option<(&'static str, Response)> {
        for e in self.iter() {
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
        for e in self.iter() {
            e.plugin.upstream_request(session, req, state).await;
        }
    }

    pub async fn response(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        state: &mut RequestState,
    ) {
        for e in self.iter() {
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
        for e in self.iter() {
            e.plugin.response_body(session, body, eos, state);
        }
    }

    pub async fn log(&self, session: &Session, state: &RequestState) {
        for e in self.iter() {
            e.plugin.log(session, state).await;
        }
    }
}
