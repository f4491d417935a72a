//! The `routes` section: each route's match conditions, upstream and chain, in a table
//! indexed for lookup.

use crate::config::{Config, PathMatch, Problems};
use crate::plugin::Registry;
use crate::route::{PathRule, Route, RouteTable};
use crate::upstream::Pool;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

pub(super) fn compile(
    cfg: &Config,
    pools: &BTreeMap<String, Arc<Pool>>,
    registry: &Registry,
    base: &Path,
    p: &mut Problems,
) -> RouteTable {
    let mut routes = Vec::new();
    let mut names = HashSet::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        if r.name.is_empty() {
            p.add(format!("{at}.name"), "must not be empty");
        } else if !names.insert(r.name.clone()) {
            p.add(
                format!("{at}.name"),
                format!("duplicate route name {:?}", r.name),
            );
        }
        let upstream = match &r.upstream {
            Some(u) => match pools.get(u) {
                Some(pool) => Some(pool.clone()),
                None => {
                    if !cfg.upstreams.contains_key(u) {
                        p.add(format!("{at}.upstream"), format!("no upstream named {u:?}"));
                    }
                    None
                }
            },
            None => {
                if r.plugins.is_empty() {
                    p.add(
                        format!("{at}.upstream"),
                        "a route needs an upstream, or a plugin that answers (respond, redirect)",
                    );
                }
                None
            }
        };
        let mut hosts = Vec::new();
        for (j, h) in r.matches.hosts.iter().enumerate() {
            let h = h.trim().to_ascii_lowercase();
            let body = h.strip_prefix("*.").unwrap_or(&h);
            if body.is_empty() || body.contains('*') || body.contains('/') || body.contains(' ') {
                p.add(
                    format!("{at}.match.hosts[{j}]"),
                    format!("{h:?} is not a host name or *.suffix wildcard"),
                );
                continue;
            }
            hosts.push(h);
        }
        let path = match &r.matches.path {
            None => PathRule::Any,
            Some(pm) if pm.invalid().is_some() => {
                p.parsed(&format!("{at}.match.path"), pm);
                PathRule::Any
            }
            // "/api/" and "/api" differ: the first requires the slash.
            Some(pm) => match pm.get() {
                PathMatch::Prefix(s) => {
                    check_route_path(s, &format!("{at}.match.path.prefix"), cfg, p);
                    PathRule::Prefix(s.clone())
                }
                PathMatch::Exact(s) => {
                    check_route_path(s, &format!("{at}.match.path.exact"), cfg, p);
                    PathRule::Exact(s.clone())
                }
                PathMatch::Regex(s) => match regex::Regex::new(&format!("^(?:{s})$")) {
                    Ok(re) => PathRule::Regex(re),
                    Err(e) => {
                        let why = e
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or("")
                            .trim()
                            .to_string();
                        p.add(
                            format!("{at}.match.path.regex"),
                            format!("invalid regex {s:?}: {why}"),
                        );
                        PathRule::Any
                    }
                },
            },
        };
        let mut methods = Vec::new();
        for (j, m) in r.matches.methods.iter().enumerate() {
            match http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(m) => methods.push(m),
                Err(_) => p.add(
                    format!("{at}.match.methods[{j}]"),
                    format!("{m:?} is not an HTTP method"),
                ),
            }
        }
        let mut headers = Vec::new();
        for (k, v) in &r.matches.headers {
            match http::HeaderName::from_bytes(k.as_bytes()) {
                Ok(h) => headers.push((h, v.clone())),
                Err(_) => p.add(
                    format!("{at}.match.headers.{k}"),
                    format!("{k:?} is not a header name"),
                ),
            }
        }
        let mut listeners = Vec::new();
        match &r.matches.listeners {
            Some(names) if names.is_empty() => p.add(
                format!("{at}.match.listeners"),
                "names no listener, so the route would never be served (leave it out to serve it on every listener)",
            ),
            Some(names) => {
                for (j, n) in names.iter().enumerate() {
                    match cfg.listeners.iter().position(|l| l.name == *n) {
                        Some(k) if !listeners.contains(&k) => listeners.push(k),
                        Some(_) => {}
                        None => {
                            let known: Vec<&str> =
                                cfg.listeners.iter().map(|l| l.name.as_str()).collect();
                            p.add(
                                format!("{at}.match.listeners[{j}]"),
                                format!("no listener named {n:?} (listeners: {})", known.join(", ")),
                            )
                        }
                    }
                }
            }
            None => {}
        }
        let chain = super::chains::compile(
            &r.plugins,
            &format!("{at}.plugins"),
            Some(&r.name),
            registry,
            base,
            p,
        );
        routes.push(Route {
            name: r.name.as_str().into(),
            priority: r.priority,
            hosts,
            path,
            methods,
            headers,
            upstream,
            max_body_bytes: r.max_body_bytes,
            chain,
            metrics: crate::metrics::RouteMetrics::new(&r.name),
            listeners,
        });
    }
    RouteTable::new(routes, cfg.listeners.len())
}

/// Requests are matched by their normalized path without `;parameters` (gateway::net::path); a
/// route path spelled otherwise could never match, so it is refused with the spelling that
/// would.
fn check_route_path(s: &str, key: &str, cfg: &Config, p: &mut Problems) {
    match crate::net::path::normalize(s.as_bytes(), &cfg.server.path) {
        Err(e) => p.add(key, format!("{s:?} can never match: {}", e.reason())),
        Ok(n) if n.path != s => p.add(
            key,
            format!(
                "{s:?} is not in the normalized form requests are matched in: write {:?}",
                n.path
            ),
        ),
        Ok(n) if n.matching() != s => p.add(
            key,
            format!("{s:?} can never match: requests are matched without their ;parameters"),
        ),
        Ok(_) => {}
    }
}
