//! `portico -c FILE --explain 'METHOD URL'`: how one request would be handled, without
//! starting anything. The request goes through the server's own reading of the target
//! (`net::request_target::read`, which normalizes the path as docs/security.md describes) and the
//! server's own route table (`RouteTable::lookup_index`), so the answer is the one a running
//! gateway with this config gives. `RouteTable::weigh` lists the other candidates from the
//! same index walk, to say why the chosen route beat them (docs/configuration.md, "Routes").

use crate::request::client as forwarded;
use crate::route::{PathRule, Rank, RequestKey, Route, Weighed};
use crate::snapshot::Snapshot;
use pingora_http::RequestHeader;
use serde_json::{json, Value};
use std::fmt::Write;
use std::net::IpAddr;

/// The request to explain, from the command line.
#[derive(Default)]
pub struct Request {
    /// `METHOD URL`: the URL absolute (`http://host/path?q`) or a path with `-H 'Host: ...'`.
    pub line: String,
    pub headers: Vec<String>,
    pub listener: Option<String>,
    pub client_ip: Option<String>,
    pub json: bool,
}

/// The exit status when a route would take the request.
const MATCHED: i32 = 0;
/// The exit status when none would (the request is answered by Portico itself: 404, or a
/// refusal such as 400, or the listener's https redirect).
const UNMATCHED: i32 = 3;

/// Prints the explanation and exits: 0 when a route matches, 3 when none would, 2 when the
/// request given cannot be read.
pub fn run(snap: &Snapshot, req: &Request) -> ! {
    match explain(snap, req) {
        Ok((matched, out)) => {
            print!("{out}");
            std::process::exit(if matched { MATCHED } else { UNMATCHED })
        }
        Err(e) => {
            eprintln!("--explain: {e}");
            std::process::exit(2)
        }
    }
}

/// What would happen: the text (or JSON) to print and whether a route matched.
fn explain(snap: &Snapshot, args: &Request) -> Result<(bool, String), String> {
    let (method, url) = args
        .line
        .trim()
        .split_once(char::is_whitespace)
        .ok_or("give 'METHOD URL', e.g. 'GET http://example.com/api'")?;
    let url = url.trim();
    let listeners = &snap.config.listeners;
    let (listener, lconf) = match &args.listener {
        Some(name) => listeners
            .iter()
            .enumerate()
            .find(|(_, l)| &l.name == name)
            .ok_or_else(|| format!("no listener {name:?} in the config"))?,
        None => listeners.iter().enumerate().next().ok_or("no listeners")?,
    };
    let peer: IpAddr = match &args.client_ip {
        Some(ip) => ip
            .parse()
            .map_err(|_| format!("--client-ip {ip:?} is not an address"))?,
        None => IpAddr::from([127, 0, 0, 1]),
    };

    let mut req = RequestHeader::build(method, url.as_bytes(), None)
        .map_err(|e| format!("{method} {url}: {e}"))?;
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("-H {h:?} is not 'Name: value'"))?;
        req.append_header(name.trim().to_string(), value.trim())
            .map_err(|e| format!("-H {h:?}: {e}"))?;
    }
    // A client sends an absolute URL's host as `Host` too.
    if req.headers.get(http::header::HOST).is_none() {
        if let Some(authority) = url
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""))
        {
            req.insert_header(http::header::HOST, authority)
                .map_err(|e| format!("host {authority:?}: {e}"))?;
            // Origin-form, as a client sends it with Host: what a server reads most.
            let target = &url[url.find("://").unwrap() + 3 + authority.len()..];
            let target = if target.is_empty() { "/" } else { target };
            if target.starts_with('/') {
                req.set_raw_path(target.as_bytes())
                    .map_err(|e| format!("{url}: {e}"))?;
            }
        }
    }
    let sent = url.to_string();
    let client_ip = forwarded::client_ip(snap, Some(peer), &req)
        .map_err(|_| "an X-Forwarded-For entry from a trusted proxy is not an address")?;

    let mut e = Explanation {
        snap: Some(snap),
        method: method.to_string(),
        sent,
        listener: lconf.name.clone(),
        client_ip: Some(client_ip),
        ..Default::default()
    };
    if let Some(port) = lconf.redirect_https {
        e.answer = Some(format!(
            "308: listener {} redirects every request to https (port {port})",
            lconf.name
        ));
        return Ok(e.finish(args.json));
    }
    let reading = match crate::net::request_target::read(&mut req, &snap.config.server.path) {
        Ok(r) => r,
        Err(refusal) => {
            e.answer = Some(format!("400: {}", refusal.reason()));
            return Ok(e.finish(args.json));
        }
    };
    e.host = reading.host.clone();
    e.target = String::from_utf8_lossy(req.raw_path()).into_owned();
    let key = RequestKey {
        host: &reading.host,
        path: reading.matching.as_deref().unwrap_or(req.uri.path()),
        method: &req.method,
        headers: &req.headers,
    };
    e.matching = key.path.to_string();
    e.chosen = snap.routes.lookup_index(listener, &key);
    e.weighed = snap.routes.weigh(listener, &key);
    e.unserved = (0..snap.routes.routes().len())
        .filter(|&i| !snap.routes.routes()[i].served_on(listener))
        .collect();
    if e.chosen.is_none() {
        e.answer = Some("404: no route matches this request".into());
    }
    Ok(e.finish(args.json))
}

#[derive(Default)]
struct Explanation<'a> {
    snap: Option<&'a Snapshot>,
    method: String,
    /// The target as the client sends it.
    sent: String,
    listener: String,
    client_ip: Option<IpAddr>,
    /// What the request was read as.
    host: String,
    target: String,
    matching: String,
    chosen: Option<usize>,
    weighed: Vec<Weighed>,
    /// Routes bound to other listeners.
    unserved: Vec<usize>,
    /// Portico's own answer when no route takes the request.
    answer: Option<String>,
}

impl<'a> Explanation<'a> {
    fn routes(&self) -> &'a [Route] {
        self.snap.unwrap().routes.routes()
    }

    /// The plugins that would run, in order: the global chain, then the route's.
    fn plugins(&self) -> Vec<String> {
        let snap = self.snap.unwrap();
        let global = snap.global.entries().iter().map(|p| p.name.to_string());
        let route = self
            .chosen
            .into_iter()
            .flat_map(|i| self.routes()[i].chain.entries())
            .map(|p| p.name.to_string());
        global.chain(route).collect()
    }

    /// Why the chosen route beat `other`, or why `other` is out.
    fn verdict(&self, other: &Weighed) -> String {
        let routes = self.routes();
        if !other.conditions_match {
            return format!("out: {}", unmet(&routes[other.route]));
        }
        let Some(chosen) = self.chosen else {
            return "out".into();
        };
        if other.route == chosen {
            return "chosen".into();
        }
        let best = self
            .weighed
            .iter()
            .find(|w| w.route == chosen)
            .unwrap()
            .rank;
        let r = other.rank;
        let why = if best.priority != r.priority {
            format!("lower priority ({} < {})", r.priority, best.priority)
        } else if best.host != r.host {
            format!(
                "less specific host ({} < {})",
                host_kind(r.host, &routes[other.route]),
                host_kind(best.host, &routes[chosen])
            )
        } else if best.path != r.path {
            format!(
                "less specific path ({} < {})",
                path_kind(&routes[other.route].path),
                path_kind(&routes[chosen].path)
            )
        } else if best.conditions != r.conditions {
            format!(
                "fewer method/header conditions ({} < {})",
                r.conditions, best.conditions
            )
        } else {
            format!("equal rank, later in the file (routes[{}])", other.route)
        };
        format!("lost to {}: {why}", routes[chosen].name)
    }

    fn finish(self, json: bool) -> (bool, String) {
        let matched = self.chosen.is_some();
        let out = if json { self.json() } else { self.text() };
        (matched, out)
    }

    fn json(&self) -> String {
        let routes = self.routes();
        let route = self.chosen.map(|i| &routes[i]);
        let upstream = route.and_then(|r| r.upstream.as_ref());
        let value = json!({
            "request": {
                "method": self.method,
                "target": self.sent,
                "listener": self.listener,
                "client_ip": self.client_ip.map(|ip| ip.to_string()),
            },
            "normalized": {
                "host": self.host,
                "target": self.target,
                "path": self.matching,
            },
            "route": route.map(|r| r.name.to_string()),
            "answer": self.answer,
            "candidates": self.weighed.iter().map(|w| {
                let r = &routes[w.route];
                json!({
                    "route": r.name.to_string(),
                    "index": w.route,
                    "rank": rank_json(&w.rank, r),
                    "conditions_match": w.conditions_match,
                    "verdict": self.verdict(w),
                })
            }).collect::<Vec<Value>>(),
            "other_listeners": self.unserved.iter().map(|&i| routes[i].name.to_string()).collect::<Vec<_>>(),
            "plugins": self.plugins(),
            "upstream": upstream.map(|p| p.name.to_string()),
            "backends": upstream.map(|p| p.backends.iter().map(|b| json!({
                "addr": b.addr.to_string(),
                "weight": b.weight,
                "backup": b.backup,
            })).collect::<Vec<_>>()),
        });
        format!("{value:#}\n")
    }

    fn text(&self) -> String {
        let routes = self.routes();
        let mut o = String::new();
        let client = self.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
        let _ = writeln!(
            o,
            "request:    {} {} on listener {} from {client}",
            self.method, self.sent, self.listener
        );
        if !self.target.is_empty() {
            let _ = writeln!(
                o,
                "normalized: host {:?}, target {:?}, routes match the path {:?}",
                self.host, self.target, self.matching
            );
        }
        match self.chosen {
            Some(i) => {
                let _ = writeln!(o, "route:      {} (routes[{i}])", routes[i].name);
            }
            None => {
                let _ = writeln!(o, "route:      none");
            }
        }
        if let Some(answer) = &self.answer {
            let _ = writeln!(o, "answer:     {answer}");
        }
        if !self.weighed.is_empty() {
            let _ = writeln!(o, "candidates (host and path match; best first):");
            let mut sorted = self.weighed.clone();
            sorted.sort_by(|a, b| {
                (b.conditions_match, b.rank)
                    .cmp(&(a.conditions_match, a.rank))
                    .then(a.route.cmp(&b.route))
            });
            for w in &sorted {
                let r = &routes[w.route];
                let _ = writeln!(
                    o,
                    "  {} {} (routes[{}]): priority {}, host {}, path {}, {} condition(s): {}",
                    if Some(w.route) == self.chosen {
                        "*"
                    } else {
                        "-"
                    },
                    r.name,
                    w.route,
                    w.rank.priority,
                    host_kind(w.rank.host, r),
                    path_kind(&r.path),
                    w.rank.conditions,
                    self.verdict(w)
                );
            }
        }
        if !self.unserved.is_empty() {
            let names: Vec<&str> = self.unserved.iter().map(|&i| &*routes[i].name).collect();
            let _ = writeln!(o, "not on this listener: {}", names.join(", "));
        }
        let plugins = self.plugins();
        let _ = writeln!(
            o,
            "plugins:    {}",
            if plugins.is_empty() {
                "none".to_string()
            } else {
                plugins.join(" -> ")
            }
        );
        let upstream = self.chosen.and_then(|i| routes[i].upstream.as_ref());
        match upstream {
            Some(pool) => {
                let _ = writeln!(
                    o,
                    "upstream:   {} (balance {}, retries {})",
                    pool.name,
                    balance_name(pool.balance),
                    pool.retries
                );
                for b in &pool.backends {
                    let _ = writeln!(
                        o,
                        "  backend {} weight {}{}",
                        b.addr,
                        b.weight,
                        if b.backup { " (backup)" } else { "" }
                    );
                }
            }
            None if self.chosen.is_some() => {
                let _ = writeln!(o, "upstream:   none (a plugin answers)");
            }
            None => {}
        }
        o
    }
}

/// A balance as the config spells it.
fn balance_name(b: crate::config::Balance) -> &'static str {
    use crate::config::Balance;
    match b {
        Balance::RoundRobin => "round_robin",
        Balance::Random => "random",
        Balance::LeastConn => "least_conn",
        Balance::ConsistentHash => "consistent_hash",
    }
}

/// The method and header conditions a route has that the request does not meet.
fn unmet(r: &Route) -> String {
    let mut parts = Vec::new();
    if !r.methods.is_empty() {
        let m: Vec<&str> = r.methods.iter().map(|m| m.as_str()).collect();
        parts.push(format!("methods {}", m.join("|")));
    }
    for (name, value) in &r.headers {
        parts.push(format!("{name}: {value}"));
    }
    format!("its conditions ({}) do not all hold", parts.join(", "))
}

/// The host rule that put a route among the candidates, from its host rank.
fn host_kind(rank: u32, r: &Route) -> String {
    match rank {
        0 => "any".into(),
        n if n >= 1 << 31 => "exact".into(),
        n => r
            .hosts
            .iter()
            .find(|h| h.starts_with('*') && h.len() == n as usize)
            .map_or_else(|| "wildcard".into(), |h| format!("wildcard {h}")),
    }
}

fn path_kind(p: &PathRule) -> String {
    match p {
        PathRule::Any => "any".into(),
        PathRule::Exact(s) => format!("exact {s}"),
        PathRule::Prefix(s) => format!("prefix {s}"),
        PathRule::Regex(re) => format!("regex {}", re.as_str()),
    }
}

fn rank_json(rank: &Rank, r: &Route) -> Value {
    json!({
        "priority": rank.priority,
        "host": host_kind(rank.host, r),
        "path": path_kind(&r.path),
        "conditions": rank.conditions,
    })
}
