//! Routes: what a route matches and where it sends a request. Which route a request takes
//! is the index's job (`index.rs`).

mod index;

pub use index::{Rank, RouteTable, Weighed};

use crate::plugin::Chain;
use crate::upstream::Pool;
use http::{HeaderName, Method};
use regex::Regex;
use std::sync::Arc;

pub enum PathRule {
    Any,
    Exact(String),
    /// Matches whole segments: `/api` matches `/api`, `/api/` and `/api/x`, not `/apix`.
    Prefix(String),
    /// Must match the whole path.
    Regex(Regex),
}

pub struct Route {
    pub name: Arc<str>,
    pub priority: i64,
    pub hosts: Vec<String>,
    pub path: PathRule,
    pub methods: Vec<Method>,
    pub headers: Vec<(HeaderName, String)>,
    pub upstream: Option<Arc<Pool>>,
    pub max_body_bytes: Option<u64>,
    pub chain: Chain,
    /// Request count and duration handles, resolved once per snapshot.
    pub metrics: crate::metrics::RouteMetrics,
    /// The listeners (positions in `listeners`) that serve this route (`match.listeners`);
    /// empty: every listener.
    pub listeners: Vec<usize>,
}

impl Route {
    /// Whether the listener at position `listener` serves this route.
    pub fn served_on(&self, listener: usize) -> bool {
        self.listeners.is_empty() || self.listeners.contains(&listener)
    }
}

/// What a request offers to the matcher.
pub struct RequestKey<'a> {
    /// Lowercased, without the port.
    pub host: &'a str,
    /// Without the query string.
    pub path: &'a str,
    pub method: &'a Method,
    pub headers: &'a http::HeaderMap,
}

/// The host a request is for: lowercased, without the port and a trailing dot.
pub fn normalize_host(raw: &str) -> String {
    let h = if raw.starts_with('[') {
        // [::1]:8443
        match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        match raw.rfind(':') {
            Some(i) if raw[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &raw[..i],
            _ => raw,
        }
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_normalization() {
        assert_eq!(normalize_host("API.Example.com:8443"), "api.example.com");
        assert_eq!(normalize_host("[::1]:8443"), "[::1]");
        assert_eq!(normalize_host("example.com."), "example.com");
    }
}
