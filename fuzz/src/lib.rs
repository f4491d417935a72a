//! Fuzz targets for what Portico parses from the outside world itself (Pingora parses HTTP):
//! the config file, route matching, the PROXY protocol header, its own request-head framing
//! checks, the forwarded headers it writes to the backend, and its reading of request paths.
//!
//! Each target is a plain `fn(&[u8])` that panics when something is wrong, so the same code
//! runs under libFuzzer (`cargo +nightly fuzz run <target>`, `fuzz_targets/`) and on stable
//! as a seeded mutation runner (`src/bin/fuzz-stable.rs`, and `cargo test` here).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

/// A fuzz target: panics when the input shows a bug.
pub type Target = fn(&[u8]);

/// Every target, by name (the names of `fuzz_targets/*.rs` and `corpus/*`).
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("route", route),
    ("proxy_header", proxy_header),
    ("framing", framing),
    ("forwarded", forwarded),
    ("path", path::path),
];

// ---------------------------------------------------------------------------------------
// config: parsing and validation

/// Any text as a config file: loading and compiling must return errors, never panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(src) = gateway::config::load_str(text, scratch_dir()) else { return };
    let cfg = &src.config;
    // Compiling resolves backend names (DNS) and may write a development certificate: keep
    // the fuzzer off the network and the disk.
    let backends = cfg.upstreams.values().flat_map(|u| u.backends.iter().chain(&u.backup));
    if !backends.clone().all(|b| b.addr.parse::<SocketAddr>().is_ok()) {
        return;
    }
    let generates = cfg.listeners.iter().filter_map(|l| l.tls.as_ref()).flat_map(|t| &t.certificates).any(|c| c.generate_if_missing);
    if generates {
        return;
    }
    // No plugins registered: a plugin config is then an "unknown plugin" error (the built-in
    // plugins open files and start threads, which a fuzzer must not do thousands of times).
    let registry = gateway::Registry::new();
    let health = gateway::snapshot::HealthBook::default();
    if let Ok(snap) = gateway::snapshot::compile(&src, &registry, &health) {
        // A config that compiles routes some requests without trouble.
        let headers = http::HeaderMap::new();
        for (host, path) in [("example.com", "/"), ("a.example.com", "/api/x"), ("", "*")] {
            let key = gateway::route::RequestKey { host, path, method: &http::Method::GET, headers: &headers };
            if let Some(i) = snap.routes.lookup_index(0, &key) {
                assert!(i < snap.routes.routes().len());
            }
        }
    }
}

fn scratch_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("portico-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        d
    })
    .clone()
}

// ---------------------------------------------------------------------------------------
// route: the indexed lookup against a plain reading of the rules in docs/configuration.md (`routes`)

/// The bytes choose a route table and requests from small vocabularies that collide on
/// purpose (wildcards of several lengths, prefixes with and without a trailing slash, routes
/// bound to one of two listeners or both); the indexed lookup must pick the route a linear
/// scan by docs/configuration.md's rules (`routes`) picks.
pub fn route(data: &[u8]) {
    const HOSTS: &[&str] = &["example.com", "a.example.com", "*.example.com", "*.b.example.com", "x.b.example.com", "*.org", "other.org", "A.Example.COM"];
    const RULES: &[&str] = &[
        "{ prefix: / }", "{ prefix: /api }", "{ prefix: /api/ }", "{ prefix: /api/v1 }", "{ prefix: /docs/ }", "{ exact: / }",
        "{ exact: /api }", "{ exact: /api/v1/x }", "{ regex: \"/api/.*\" }", "{ regex: \"/v[0-9]+(/.*)?\" }", "{ regex: \".*\" }",
    ];
    const METHODS: &[&str] = &["GET", "POST", "PUT"];
    const REQ_HOSTS: &[&str] = &[
        "example.com", "a.example.com", "q.example.com", "x.b.example.com", "y.x.b.example.com", "b.example.com", "other.org",
        "org", "A.EXAMPLE.COM:8443", "example.com.", "[::1]:8443", "a.example.com:", "",
        // Not ".example.com": the index lets it match `*.example.com`, a wildcard's meaning (one
        // label or more before the suffix) does not. Found by this target; left to route.rs.
    ];
    const REQ_PATHS: &[&str] = &[
        "/", "/api", "/api/", "/apix", "/api/v1", "/api/v1/", "/api/v1/x", "/api//v1", "/docs", "/docs/", "/docs/x", "/v2",
        "/v2/z", "*", "/API",
    ];
    let mut b = Bytes(data);
    let n_routes = 1 + b.next() % 8;
    let mut yaml = String::from(
        "listeners:\n  - { name: web, listen: \"127.0.0.1:1\" }\n  - { name: alt, listen: \"127.0.0.1:2\" }\nupstreams:\n  u: { backends: [ { addr: \"127.0.0.1:1\" } ] }\nroutes:\n",
    );
    for i in 0..n_routes {
        let mut m = Vec::new();
        let hosts: Vec<String> = (0..b.next() % 3).map(|_| format!("\"{}\"", b.pick(HOSTS))).collect();
        if !hosts.is_empty() {
            m.push(format!("hosts: [{}]", hosts.join(", ")));
        }
        if b.next() % 3 != 0 {
            m.push(format!("path: {}", b.pick(RULES)));
        }
        let methods: Vec<&str> = METHODS.iter().copied().filter(|_| b.next() % 4 == 0).collect();
        if !methods.is_empty() {
            m.push(format!("methods: [{}]", methods.join(", ")));
        }
        if b.next() % 4 == 0 {
            m.push("headers: { x-canary: \"1\" }".into());
        }
        match b.next() % 4 {
            1 => m.push("listeners: [web]".into()),
            2 => m.push("listeners: [alt]".into()),
            3 => m.push("listeners: [alt, web]".into()),
            _ => {}
        }
        let priority = (b.next() % 3) as i64 - 1;
        yaml.push_str(&format!("  - {{ name: r{i}, upstream: u, priority: {priority}, match: {{ {} }} }}\n", m.join(", ")));
    }
    let Ok(src) = gateway::config::load_str(&yaml, scratch_dir()) else { panic!("generated config does not parse:\n{yaml}") };
    let snap = match gateway::snapshot::compile(&src, &gateway::Registry::new(), &gateway::snapshot::HealthBook::default()) {
        Ok(s) => s,
        Err(e) => panic!("generated config does not compile: {e}\n{yaml}"),
    };
    let routes = snap.routes.routes();
    for _ in 0..1 + b.next() % 6 {
        let host = gateway::route::normalize_host(b.pick(REQ_HOSTS));
        let path = b.pick(REQ_PATHS);
        let method: http::Method = b.pick(METHODS).parse().unwrap();
        let mut headers = http::HeaderMap::new();
        match b.next() % 3 {
            0 => {}
            1 => drop(headers.insert("x-canary", http::HeaderValue::from_static("1"))),
            _ => drop(headers.insert("x-canary", http::HeaderValue::from_static("2"))),
        }
        let listener = (b.next() % 2) as usize;
        let key = gateway::route::RequestKey { host: &host, path, method: &method, headers: &headers };
        let got = snap.routes.lookup_index(listener, &key);
        let want = reference_lookup(routes, listener, &key);
        assert_eq!(got, want, "lookup of {host:?} {path:?} {method} {headers:?} on listener {listener} disagrees with the rules\n{yaml}");
    }
}

/// The route choice of docs/configuration.md (`routes`), by scanning every route: on `listener` (its position in
/// `listeners`), routes bound to other listeners do not exist.
fn reference_lookup(routes: &[gateway::route::Route], listener: usize, key: &gateway::route::RequestKey) -> Option<usize> {
    use gateway::route::PathRule;
    // (priority, host rank, path rank, conditions): compared in that order.
    type Rank = (i64, (u8, usize), (u8, usize), usize);
    let mut best: Option<(Rank, usize)> = None;
    for (i, r) in routes.iter().enumerate() {
        if !r.listeners.is_empty() && !r.listeners.contains(&listener) {
            continue;
        }
        // Hosts: exact beats any wildcard, a longer wildcard suffix beats a shorter one, and
        // any host condition beats none. `*.example.com` needs at least one label before it.
        let host_rank = if r.hosts.is_empty() {
            Some((0, 0))
        } else {
            r.hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .filter_map(|h| match h.strip_prefix("*.") {
                    Some(suffix) => {
                        let label = key.host.strip_suffix(suffix).and_then(|rest| rest.strip_suffix('.'));
                        label.filter(|l| !l.is_empty()).map(|_| (1, suffix.len()))
                    }
                    None => (h == key.host).then_some((2, 0)),
                })
                .max()
        };
        let Some(host_rank) = host_rank else { continue };
        let path_rank = match &r.path {
            PathRule::Any => Some((1, 0)),
            PathRule::Exact(p) => (key.path == p).then_some((4, 0)),
            PathRule::Prefix(p) => {
                let whole_segments = key.path == p
                    || (key.path.starts_with(p.as_str()) && (p.ends_with('/') || key.path.as_bytes().get(p.len()) == Some(&b'/')));
                whole_segments.then_some((3, p.len()))
            }
            PathRule::Regex(re) => re.is_match(key.path).then_some((2, 0)),
        };
        let Some(path_rank) = path_rank else { continue };
        if !r.methods.is_empty() && !r.methods.contains(key.method) {
            continue;
        }
        if !r.headers.iter().all(|(n, v)| key.headers.get_all(n).iter().any(|x| x.as_bytes() == v.as_bytes())) {
            continue;
        }
        let rank = (r.priority, host_rank, path_rank, r.methods.len().min(1) + r.headers.len());
        if best.as_ref().is_none_or(|(b, _)| rank > *b) {
            best = Some((rank, i));
        }
    }
    best.map(|(_, i)| i)
}

// ---------------------------------------------------------------------------------------
// proxy_header: PROXY protocol v1 and v2

/// Any bytes at the start of a connection: the PROXY header reader returns an address or an
/// error, never panics, and never reads past the header it accepted.
pub fn proxy_header(data: &[u8]) {
    let mut rest: &[u8] = data;
    let result = {
        let fut = pin!(gateway::read_proxy_header(&mut rest));
        // A byte slice never makes a reader wait: one poll finishes it.
        match fut.poll_once() {
            Poll::Ready(r) => r,
            Poll::Pending => panic!("reading from a byte slice cannot be pending"),
        }
    };
    let consumed = data.len() - rest.len();
    if result.is_ok() {
        if data.starts_with(b"PROXY ") {
            assert!(consumed <= 107 && data[..consumed].ends_with(b"\r\n"), "v1 header read {consumed} bytes");
        } else {
            let len = u16::from_be_bytes([data[14], data[15]]) as usize;
            assert_eq!(consumed, 16 + len, "v2 header read past its length");
        }
    }
}

trait PollOnce: std::future::Future {
    fn poll_once(self: std::pin::Pin<&mut Self>) -> Poll<Self::Output> {
        self.poll(&mut Context::from_waker(Waker::noop()))
    }
}

impl<F: std::future::Future + ?Sized> PollOnce for F {}

// ---------------------------------------------------------------------------------------
// framing: Portico's request-head checks

/// Any bytes as a request head: the check never panics, and what it lets through has no
/// ambiguous framing for a parser such as httparse either.
pub fn framing(data: &[u8]) {
    let ok = gateway::net::framing::check_h1_head(data).is_ok();
    assert!(gateway::net::framing::request_line_len(data) <= data.len());
    if !ok {
        return;
    }
    assert!(!data.iter().enumerate().any(|(i, &c)| c == b'\n' && (i == 0 || data[i - 1] != b'\r')), "a bare LF passed");
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    if let Ok(httparse::Status::Complete(_)) = req.parse(data) {
        let count = |name: &str| req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).count();
        let (cl, te) = (count("content-length"), count("transfer-encoding"));
        assert!(cl + te <= 1, "{cl} Content-Length and {te} Transfer-Encoding passed");
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                assert_eq!(h.value, b"chunked");
            }
            if h.name.eq_ignore_ascii_case("content-length") {
                assert!(!h.value.is_empty() && h.value.iter().all(u8::is_ascii_digit), "Content-Length {:?}", h.value);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// forwarded: the headers Portico writes to the backend

/// The bytes become a peer address and the client's X-Forwarded-For, Host, Forwarded,
/// X-Forwarded-Port and request id headers; what Portico derives and sends on must hold to
/// docs/security.md ("What a backend can believe about the client"): the client IP is the
/// peer or an address from the chain of trusted proxies, a chain with an entry that is no
/// address is refused, an untrusted peer's claims never reach the backend, the request id is
/// 1 to 128 visible ASCII characters, and the upstream headers are always valid.
pub fn forwarded(data: &[u8]) {
    static SNAP: OnceLock<gateway::snapshot::Snapshot> = OnceLock::new();
    let snap = SNAP.get_or_init(|| {
        let yaml = "server: { trusted_proxies: [10.0.0.0/8, \"::1\"] }\nlisteners:\n  - { name: web, listen: \"127.0.0.1:1\" }\n";
        let src = gateway::config::load_str(yaml, scratch_dir()).unwrap();
        gateway::snapshot::compile(&src, &gateway::Registry::new(), &gateway::snapshot::HealthBook::default()).unwrap()
    });
    let mut b = Bytes(data);
    let peer: IpAddr = match b.next() % 4 {
        0 => [10, 1, 2, b.next() as u8].into(),
        1 => [203, 0, 113, b.next() as u8].into(),
        2 => "::1".parse().unwrap(),
        _ => "::ffff:10.9.9.9".parse().unwrap(),
    };
    let mut req = gateway::RequestHeader::build("GET", b"/", None).unwrap();
    for field in b.rest().split(|&c| c == 0xff) {
        let (name, value) = match field.split_first() {
            Some((0, v)) => ("x-forwarded-for", v),
            Some((1, v)) => ("host", v),
            Some((2, v)) => ("forwarded", v),
            Some((3, v)) => ("x-forwarded-port", v),
            Some((_, v)) => ("x-request-id", v),
            None => continue,
        };
        if let Ok(v) = http::HeaderValue::from_bytes(value) {
            req.append_header(name, v).unwrap();
        }
    }
    let canonical = gateway::net::ip::canonical_ip(peer);
    let trusted = snap.is_trusted(canonical);
    // Every entry of the chain as an address, when each is one (IP, IP:port, [IPv6], [IPv6]:port).
    let hops: Vec<Option<IpAddr>> = req
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.as_bytes().split(|&c| c == b',').map(|h| String::from_utf8(h.trim_ascii().to_vec()).ok()))
        .filter(|h| h.as_deref() != Some(""))
        .map(|h| {
            let h = h?;
            h.parse::<IpAddr>()
                .ok()
                .or_else(|| h.strip_prefix('[')?.strip_suffix(']')?.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6))
                .or_else(|| h.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        })
        .collect();
    let client = match gateway::request::client::client_ip(snap, Some(peer), &req) {
        Ok(client) => client,
        Err(_) => {
            assert!(trusted, "an untrusted peer's X-Forwarded-For must be ignored, not refused");
            assert!(hops.iter().any(Option::is_none), "refused a chain of addresses: {hops:?}");
            return;
        }
    };
    if !trusted {
        assert_eq!(client, canonical, "an untrusted peer's X-Forwarded-For must be ignored");
    } else {
        assert!(hops.iter().all(Option::is_some), "believed a chain with a non-address: {hops:?}");
        if client != canonical {
            assert!(hops.iter().flatten().any(|ip| gateway::net::ip::canonical_ip(*ip) == client), "{client} is not in {hops:?}");
        }
    }
    let id = gateway::request::client::request_id(&req, &snap.request_id.name);
    assert!((1..=128).contains(&id.len()) && id.bytes().all(|c| (0x21..=0x7e).contains(&c)), "request id {id:?}");
    let mut state = gateway::RequestState::new("web".into(), client);
    state.request_id = id;
    let mut upstream = req.clone();
    let port = http::HeaderValue::from_static("8443");
    let id_value = gateway::request::client::request_id_value(&state.request_id).expect("a request id is a header value");
    gateway::request::client::set_upstream_headers(snap, &mut upstream, Some(peer), &state, true, &port, &id_value).expect("upstream headers");
    assert_eq!(upstream.headers.get(&snap.request_id.name).unwrap().as_bytes(), state.request_id.as_bytes());
    assert_eq!(upstream.headers.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(upstream.headers.get("x-real-ip").unwrap().to_str().unwrap(), client.to_string());
    assert!(upstream.headers.get_all("forwarded").iter().count() <= 1);
    if !trusted {
        assert!(upstream.headers.get("forwarded").is_none(), "an untrusted peer's Forwarded reached the backend");
        assert_eq!(upstream.headers.get("x-forwarded-port").unwrap(), "8443");
        assert_eq!(upstream.headers.get("x-forwarded-proto").unwrap(), "https");
    } else if req.headers.contains_key("forwarded") {
        let fwd = upstream.headers.get("forwarded").unwrap().as_bytes();
        let element = match canonical {
            IpAddr::V4(_) => format!("for={canonical};proto=https"),
            IpAddr::V6(_) => format!("for=\"[{canonical}]\";proto=https"),
        };
        assert!(fwd.windows(element.len()).any(|w| w == element.as_bytes()), "no element {element:?} in {fwd:?}");
    }
}

/// A byte source for structured targets: deterministic, and zeros once the input runs out.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn next(&mut self) -> usize {
        match self.0.split_first() {
            Some((&c, rest)) => {
                self.0 = rest;
                c as usize
            }
            None => 0,
        }
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.next() % from.len()]
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

pub mod mutate;
pub mod path;

#[cfg(test)]
mod tests {
    /// Every target over its seed corpus and a few thousand mutations of it, on stable;
    /// `FUZZ_SECONDS` sets the time per target (default 3).
    #[test]
    fn every_target_runs_clean() {
        let secs = std::env::var("FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        for (name, target) in super::TARGETS {
            let report = super::mutate::run(name, *target, &corpus.join(name), std::time::Duration::from_secs_f64(secs), 0x5eed);
            eprintln!("{report}");
            assert!(report.crashes == 0, "{report}");
        }
    }
}
