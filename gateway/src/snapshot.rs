//! A compiled config: everything the request path reads, built and checked off the request
//! path, then swapped in whole. Requests that started on an older snapshot keep it.

use crate::config::{
    self, Balance, Config, ConfigError, ConfigErrors, Problems, Source, UpstreamConfig,
};
use crate::plugin::{BuildContext, Chain, ChainEntry, Registry};
use crate::route::{PathRule, Route, RouteTable};
use crate::tls::{self, CertStore};
use crate::upstream::{Backend, Endpoint, Health, Pool};
use arc_swap::ArcSwap;
use ipnet::IpNet;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::CertKey;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub struct Snapshot {
    pub version: String,
    pub loaded_at: SystemTime,
    pub config: Config,
    pub routes: RouteTable,
    pub pools: BTreeMap<String, Arc<Pool>>,
    pub global: Chain,
    /// Certificates per listener name.
    pub certs: HashMap<String, Arc<CertStore>>,
    /// `tls.acme` per listener name, checked and with its paths resolved.
    pub acme: HashMap<String, crate::acme::AcmeConfig>,
    pub trusted_proxies: Vec<IpNet>,
    pub request_id_header: http::HeaderName,
    /// The same name as the config spells it, which is how HTTP/1 peers see it written (a
    /// `HeaderName` would be written lowercase, and re-cased into a new buffer per request).
    pub request_id_wire: bytes::Bytes,
    /// Whether each listener (by position in `config.listeners`) asks for client
    /// certificates (`tls.client_ca`): there Portico alone writes `X-Forwarded-Client-Cert`.
    pub mtls: Vec<bool>,
    /// What is valid but likely not meant (`portico -t` prints them, a start or reload logs
    /// them).
    pub warnings: Vec<ConfigError>,
}

impl Snapshot {
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) compare as the IPv4 address they carry.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Health records by (upstream, backend address, backup), kept across reloads.
#[derive(Default)]
pub struct HealthBook {
    records: Mutex<HashMap<(String, String, bool), Arc<Health>>>,
}

impl HealthBook {
    fn get(&self, upstream: &str, addr: &str, backup: bool, checked: bool) -> Arc<Health> {
        self.records
            .lock()
            .unwrap()
            .entry((upstream.to_string(), addr.to_string(), backup))
            .or_insert_with(|| Arc::new(Health::new(checked)))
            .clone()
    }
}

/// Checks a parsed config and compiles it. Every error is collected, not just the first.
pub fn compile(
    src: &Source,
    registry: &Registry,
    health: &HealthBook,
) -> Result<Snapshot, ConfigErrors> {
    let cfg = &src.config;
    let mut p = Problems::new(&src.lines);
    let base = src.base_dir.as_path();

    check_server(cfg, &mut p);
    let certs = compile_listeners(cfg, base, &mut p);
    let acme = crate::acme::check_listeners(cfg, base, &mut p);
    let pools = compile_upstreams(cfg, base, health, &mut p);
    let global = compile_chain(&cfg.plugins, "plugins", None, registry, base, &mut p);
    let routes = compile_routes(cfg, &pools, registry, base, &mut p);
    let trusted_proxies = cfg
        .server
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match parse_cidr(s) {
            Ok(n) => Some(n),
            Err(e) => {
                p.add(format!("server.trusted_proxies[{i}]"), e);
                None
            }
        })
        .collect();
    let request_id_header =
        match http::HeaderName::from_bytes(cfg.server.request_id_header.as_bytes()) {
            Ok(h) => h,
            Err(_) => {
                p.add(
                    "server.request_id_header",
                    format!(
                        "{:?} is not a valid header name",
                        cfg.server.request_id_header
                    ),
                );
                http::HeaderName::from_static("x-request-id")
            }
        };
    p.into_result()?;
    let warnings = config::warnings(cfg, base, &src.lines);
    Ok(Snapshot {
        version: src.version.clone(),
        loaded_at: SystemTime::now(),
        config: cfg.clone(),
        routes,
        pools,
        global,
        certs,
        acme,
        trusted_proxies,
        request_id_wire: bytes::Bytes::from(cfg.server.request_id_header.clone()),
        request_id_header,
        mtls: cfg
            .listeners
            .iter()
            .map(|l| l.tls.as_ref().is_some_and(|t| t.client_ca.is_some()))
            .collect(),
        warnings,
    })
}

/// A CIDR, or a bare address meaning just that address.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR such as 10.0.0.0/8 or an IP address"))
}

fn check_server(cfg: &Config, p: &mut Problems) {
    if cfg.server.threads == Some(0) {
        p.add("server.threads", "must be at least 1");
    }
    if let Some(t) = &cfg.server.tracing {
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            p.add("server.tracing.sample_ratio", "must be between 0 and 1");
        }
        if t.max_queue == 0 {
            p.add("server.tracing.max_queue", "must be at least 1");
        }
        if !t.otlp.endpoint.starts_with("http://") {
            p.add(
                "server.tracing.otlp.endpoint",
                format!("{:?} is not an http:// address", t.otlp.endpoint),
            );
        }
    }
    if cfg.server.upstream_keepalive_pool == 0 {
        // Pingora's pool cannot be turned off by size: at 0 it warns on every request.
        p.add("server.upstream_keepalive_pool", "must be at least 1");
    }
    let no_token = cfg.admin.token.as_deref().unwrap_or("").is_empty();
    if cfg.admin.protect_metrics && no_token {
        p.add(
            "admin.protect_metrics",
            "is true but admin.token is not set: /metrics would need a token there is none of",
        );
    }
    match cfg.admin.listen.parse::<SocketAddr>() {
        Ok(addr) => {
            if !addr.ip().is_loopback() && no_token {
                p.add(
                    "admin.token",
                    format!("the admin listener {addr} is not on loopback, so a token is required"),
                );
            }
        }
        Err(_) => p.add(
            "admin.listen",
            format!(
                "{:?} is not an address such as 127.0.0.1:9901",
                cfg.admin.listen
            ),
        ),
    }
    if cfg.listeners.is_empty() {
        p.add("listeners", "at least one listener is required");
    }
}

fn compile_listeners(
    cfg: &Config,
    base: &Path,
    p: &mut Problems,
) -> HashMap<String, Arc<CertStore>> {
    let mut certs = HashMap::new();
    let mut names = HashSet::new();
    let mut addrs = HashMap::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        let at = format!("listeners[{i}]");
        if l.name.is_empty() {
            p.add(format!("{at}.name"), "must not be empty");
        } else if !names.insert(l.name.clone()) {
            p.add(
                format!("{at}.name"),
                format!("duplicate listener name {:?}", l.name),
            );
        }
        match l.listen.parse::<SocketAddr>() {
            Ok(a) => {
                if let Some(prev) = addrs.insert(a, i) {
                    p.add(
                        format!("{at}.listen"),
                        format!("{a} is already used by listeners[{prev}]"),
                    );
                }
                if a.ip() == std::net::Ipv4Addr::UNSPECIFIED
                    && a.port()
                        == cfg
                            .admin
                            .listen
                            .parse::<SocketAddr>()
                            .map(|s| s.port())
                            .unwrap_or(0)
                {
                    p.add(format!("{at}.listen"), "overlaps the admin listener's port");
                }
            }
            Err(_) => p.add(
                format!("{at}.listen"),
                format!("{:?} is not an address such as 0.0.0.0:8443", l.listen),
            ),
        }
        if l.redirect_https.is_some() && l.tls.is_some() {
            p.add(
                format!("{at}.redirect_https"),
                "a TLS listener cannot also redirect to https",
            );
        }
        let Some(t) = &l.tls else { continue };
        if !matches!(t.min_version.as_str(), "1.2" | "1.3") {
            p.add(
                format!("{at}.tls.min_version"),
                format!(
                    "{:?} is not supported: use \"1.2\" or \"1.3\"",
                    t.min_version
                ),
            );
        }
        for (j, a) in t.alpn.iter().enumerate() {
            if a != "h2" && a != "http/1.1" {
                p.add(
                    format!("{at}.tls.alpn[{j}]"),
                    format!("{a:?} is not supported: use h2 and/or http/1.1"),
                );
            }
        }
        if t.alpn.is_empty() {
            p.add(format!("{at}.tls.alpn"), "must name at least one protocol");
        }
        let client_auth = match (&t.client_ca, t.client_auth) {
            (Some(ca), mode) => {
                let path = config::resolve(base, ca);
                match crate::client_auth::ClientAuth::load(&path, mode.unwrap_or_default()) {
                    Ok(auth) => Some(Arc::new(auth)),
                    Err(e) => {
                        p.add(format!("{at}.tls.client_ca"), e);
                        None
                    }
                }
            }
            (None, Some(_)) => {
                p.add(
                    format!("{at}.tls.client_auth"),
                    "client_auth needs client_ca (the CA that client certificates are checked against)",
                );
                None
            }
            (None, None) => None,
        };
        if t.certificates.is_empty() && t.acme.is_none() {
            p.add(
                format!("{at}.tls.certificates"),
                "at least one certificate is required (or acme)",
            );
        }
        let mut loaded = Vec::new();
        for (j, c) in t.certificates.iter().enumerate() {
            let cert = config::resolve(base, &c.cert);
            let key = config::resolve(base, &c.key);
            if c.generate_if_missing && !cert.exists() && !key.exists() {
                if let Err(e) = tls::generate_dev_cert(&cert, &key) {
                    p.add(format!("{at}.tls.certificates[{j}]"), e);
                    continue;
                }
            }
            let staple = c.ocsp_staple.as_ref().map(|f| config::resolve(base, f));
            match tls::load_certified_key(&cert, &key)
                .and_then(|ck| tls::with_ocsp_staple(ck, staple.as_deref()))
            {
                Ok(ck) => loaded.push(ck),
                Err(e) => p.add(format!("{at}.tls.certificates[{j}]"), e),
            }
        }
        if !loaded.is_empty() || t.acme.is_some() {
            let store = CertStore::new(loaded).with_client_auth(client_auth);
            certs.insert(l.name.clone(), Arc::new(store));
        }
    }
    certs
}

fn compile_upstreams(
    cfg: &Config,
    base: &Path,
    health: &HealthBook,
    p: &mut Problems,
) -> BTreeMap<String, Arc<Pool>> {
    let mut pools = BTreeMap::new();
    for (name, u) in &cfg.upstreams {
        let at = format!("upstreams.{name}");
        if let Some(pool) = compile_pool(name, u, &at, base, health, p) {
            pools.insert(name.clone(), Arc::new(pool));
        }
    }
    pools
}

fn compile_pool(
    name: &str,
    u: &UpstreamConfig,
    at: &str,
    base: &Path,
    health: &HealthBook,
    p: &mut Problems,
) -> Option<Pool> {
    let before = p.is_empty();
    if u.backends.is_empty() {
        p.add(format!("{at}.backends"), "at least one backend is required");
    }
    match (u.balance, u.hash_key.as_deref()) {
        (Balance::ConsistentHash, None) => {}
        (Balance::ConsistentHash, Some(k)) => {
            let ok = matches!(k, "client_ip" | "path")
                || k.strip_prefix("header:")
                    .is_some_and(|h| http::HeaderName::from_bytes(h.as_bytes()).is_ok())
                || k.strip_prefix("cookie:").is_some_and(|c| !c.is_empty());
            if !ok {
                p.add(
                    format!("{at}.hash_key"),
                    format!("{k:?} is not one of client_ip, header:NAME, cookie:NAME, path"),
                );
            }
        }
        (_, Some(_)) => p.add(
            format!("{at}.hash_key"),
            "hash_key is only used with balance: consistent_hash",
        ),
        _ => {}
    }
    let refresh = u.dns_refresh.get();
    if !refresh.is_zero() && refresh < std::time::Duration::from_secs(1) {
        // DNS answers live for whole seconds; asking more often only loads the resolver.
        p.add(
            format!("{at}.dns_refresh"),
            "must be 0 (resolve only at load) or at least 1s",
        );
    }
    if let Some(hc) = &u.health_check {
        if hc.interval.get() < crate::upstream::check_min_interval() {
            p.add(
                format!("{at}.health_check.interval"),
                "must be at least 100ms",
            );
        }
        if hc.healthy_after == 0 || hc.unhealthy_after == 0 {
            p.add(
                format!("{at}.health_check"),
                "healthy_after and unhealthy_after must be at least 1",
            );
        }
        if !hc.path.starts_with('/') {
            p.add(format!("{at}.health_check.path"), "must start with /");
        }
    }
    if let Some(h) = &u.host {
        if http::HeaderValue::from_str(h).is_err() {
            p.add(
                format!("{at}.host"),
                format!("{h:?} is not a valid Host value"),
            );
        }
    }

    // The TLS pieces every backend's peer shares.
    let mut ca = None;
    let mut client = None;
    if let Some(t) = &u.tls {
        if let Some(c) = &t.ca {
            let path = config::resolve(base, c);
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|pem| {
                    pingora_core::tls::x509::X509::stack_from_pem(&pem).map_err(|e| e.to_string())
                }) {
                Ok(v) if !v.is_empty() => ca = Some(Arc::new(v.into_boxed_slice())),
                Ok(_) => p.add(
                    format!("{at}.tls.ca"),
                    format!("{} holds no PEM certificate", path.display()),
                ),
                Err(e) => p.add(
                    format!("{at}.tls.ca"),
                    format!("cannot read {}: {e}", path.display()),
                ),
            }
        }
        match (&t.client_cert, &t.client_key) {
            (Some(c), Some(k)) => {
                match tls::load_certified_key(&config::resolve(base, c), &config::resolve(base, k))
                {
                    Ok(ck) => client = Some(Arc::new(CertKey::new(ck.chain, ck.key))),
                    Err(e) => p.add(format!("{at}.tls.client_cert"), e),
                }
            }
            (None, None) => {}
            _ => p.add(
                format!("{at}.tls"),
                "client_cert and client_key go together",
            ),
        }
    }

    let mut backends = Vec::new();
    let mut seen = HashSet::new();
    let checked = u.health_check.is_some();
    for (backup, list, key) in [
        (false, &u.backends, "backends"),
        (true, &u.backup, "backup"),
    ] {
        for (i, b) in list.iter().enumerate() {
            let bat = format!("{at}.{key}[{i}]");
            if !seen.insert(b.addr.clone()) {
                p.add(
                    format!("{bat}.addr"),
                    format!("duplicate backend {:?}", b.addr),
                );
                continue;
            }
            if b.weight == 0 || b.weight > 1000 {
                p.add(format!("{bat}.weight"), "must be between 1 and 1000");
            }
            let socket = match crate::upstream::resolve(&b.addr) {
                Ok(s) => s,
                Err(e) => {
                    p.add(format!("{bat}.addr"), e);
                    continue;
                }
            };
            let host_part = b
                .addr
                .rsplit_once(':')
                .map(|(h, _)| h.trim_matches(['[', ']']))
                .unwrap_or(&b.addr);
            let mut peer = match &u.tls {
                Some(t) => {
                    // An empty SNI would silently switch verification off in Pingora, so
                    // fall back to the backend's host name or address.
                    let sni = t.sni.clone().unwrap_or_else(|| host_part.to_string());
                    let mut peer = match &client {
                        Some(ck) => HttpPeer::new_mtls(socket, sni, ck.clone()),
                        None => HttpPeer::new(socket, true, sni),
                    };
                    peer.options.verify_cert = t.verify;
                    peer.options.verify_hostname = t.verify;
                    peer.options.ca = ca.clone();
                    peer
                }
                None => HttpPeer::new(socket, false, String::new()),
            };
            peer.options.connection_timeout = Some(u.timeouts.connect.get());
            peer.options.total_connection_timeout = Some(u.timeouts.connect.get() * 2);
            peer.options.read_timeout = Some(u.timeouts.read.get());
            peer.options.write_timeout = Some(u.timeouts.write.get());
            peer.options.idle_timeout = Some(u.timeouts.idle.get());
            if u.http2 {
                // Prior knowledge without TLS (h2c), ALPN h2 with TLS: gRPC needs HTTP/2 end to end.
                peer.options.set_http_version(2, 2);
            }
            let h = health.get(name, &b.addr, backup, checked);
            crate::metrics::set_backend_health(
                name,
                &b.addr,
                h.state() == crate::upstream::State::Healthy,
            );
            backends.push(Backend {
                addr: b.addr.as_str().into(),
                endpoint: ArcSwap::from_pointee(Endpoint::new(socket, peer)),
                weight: b.weight.max(1),
                backup,
                health: h,
                inflight: Default::default(),
            });
        }
    }
    if before && !p.is_empty() {
        return None;
    }
    Some(Pool::new(
        name.into(),
        backends,
        u.balance,
        u.hash_key.clone(),
        u.retries,
        u.passive.clone(),
        u.health_check.clone(),
        u.dns_refresh.get(),
        u.host.clone(),
    ))
}

fn compile_chain(
    list: &[serde_yaml::Value],
    at: &str,
    route: Option<&str>,
    registry: &Registry,
    base: &Path,
    p: &mut Problems,
) -> Chain {
    let mut entries = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let item_at = format!("{at}[{i}]");
        let Some(map) = item.as_mapping().filter(|m| m.len() == 1) else {
            p.add(item_at, "a plugin is written as `- name: { config }`");
            continue;
        };
        let (k, v) = map.iter().next().expect("one entry");
        let Some(name) = k.as_str() else {
            p.add(item_at, "a plugin name must be a string");
            continue;
        };
        let cx = BuildContext::new(base.to_path_buf(), route.map(str::to_string));
        match registry.build(name, v.clone(), &cx) {
            Ok((name, plugin)) => entries.push(ChainEntry { name, plugin }),
            Err(e) => {
                let whose = match route {
                    Some(r) => format!("route {r:?}, plugin {name}"),
                    None => format!("global plugin {name}"),
                };
                p.add(format!("{item_at}.{name}"), format!("{whose}: {e}"));
            }
        }
    }
    Chain::new(entries)
}

fn compile_routes(
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
            Some(pm) => match (&pm.prefix, &pm.exact, &pm.regex) {
                (Some(s), None, None) | (None, Some(s), None) if !s.starts_with('/') => {
                    p.add(
                        format!("{at}.match.path"),
                        format!("{s:?} must start with /"),
                    );
                    PathRule::Any
                }
                // "/api/" and "/api" differ: the first requires the slash.
                (Some(s), None, None) => {
                    check_route_path(s, &format!("{at}.match.path.prefix"), cfg, p);
                    PathRule::Prefix(s.clone())
                }
                (None, Some(s), None) => {
                    check_route_path(s, &format!("{at}.match.path.exact"), cfg, p);
                    PathRule::Exact(s.clone())
                }
                (None, None, Some(s)) => match regex::Regex::new(&format!("^(?:{s})$")) {
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
                _ => {
                    p.add(
                        format!("{at}.match.path"),
                        "give exactly one of prefix, exact or regex",
                    );
                    PathRule::Any
                }
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
        let chain = compile_chain(
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

/// Requests are matched by their normalized path without `;parameters` (gateway::path); a
/// route path spelled otherwise could never match, so it is refused with the spelling that
/// would.
fn check_route_path(s: &str, key: &str, cfg: &Config, p: &mut Problems) {
    match crate::path::normalize(s.as_bytes(), &cfg.server.path) {
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
