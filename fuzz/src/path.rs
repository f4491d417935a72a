//! The `path` target: Portico's one reading of a request path (`gateway::net::path`).

use gateway::config::{EscapedSlashes, PathConfig};
use gateway::net::path::normalize;
use std::sync::OnceLock;

/// Route prefixes and exact paths the lookups choose among; `/admin` stands for a guarded
/// route beside a public catch-all.
const ROUTES: &[&str] = &[
    "{ name: admin, upstream: u, match: { path: { prefix: /admin } } }",
    "{ name: admin-x, upstream: u, match: { path: { exact: /admin/x } } }",
    "{ name: api, upstream: u, match: { path: { prefix: /api/ } } }",
    "{ name: dot, upstream: u, match: { path: { prefix: /a.b } } }",
    "{ name: tilde, upstream: u, match: { path: { prefix: /~u } } }",
    "{ name: public, upstream: u, match: { path: { prefix: / } } }",
];

/// The first byte picks the config; the rest is a path. Whatever is accepted must be a
/// fixed point, contain only canonical spellings, route as a backend that decodes
/// everything, drops `;parameters` and resolves dot segments (a servlet container) would
/// read it, and route exactly as its other spellings made from it do.
pub fn path(data: &[u8]) {
    let Some((&pick, raw)) = data.split_first() else { return };
    let cfg = PathConfig {
        merge_slashes: pick & 1 == 0,
        escaped_slashes: match (pick >> 1) % 3 {
            0 => EscapedSlashes::Reject,
            1 => EscapedSlashes::Keep,
            _ => EscapedSlashes::Decode,
        },
    };
    let Ok(n) = normalize(raw, &cfg) else { return };
    let (path, matching) = (n.path.as_ref(), n.matching());
    assert!(path.starts_with('/') && path.is_ascii(), "{path:?}");
    let again = normalize(path.as_bytes(), &cfg).unwrap_or_else(|e| panic!("{path:?} normalized is refused: {e:?}"));
    assert_eq!(again.path, path, "not a fixed point");
    assert_eq!(again.matching(), matching);
    for seg in path.split('/').skip(1) {
        assert!(seg != "." && seg != "..", "dot segment left in {path:?}");
    }
    if cfg.merge_slashes {
        assert!(!path.contains("//") && !matching.contains("//"), "{path:?} {matching:?}");
    }
    let mut i = 0;
    while let Some(at) = path[i..].find('%') {
        let esc = &path.as_bytes()[i + at..i + at + 3];
        let d = u8::from_str_radix(std::str::from_utf8(&esc[1..]).unwrap(), 16).unwrap();
        assert!(esc[1..].iter().all(|c| !c.is_ascii_lowercase()), "lower-case escape in {path:?}");
        assert!(!(d.is_ascii_alphanumeric() || b"-._~".contains(&d)), "escaped unreserved in {path:?}");
        i += at + 3;
    }

    let route = route_of(matching);
    if cfg.merge_slashes && cfg.escaped_slashes != EscapedSlashes::Keep {
        // A servlet container reading the request as sent, or as Portico forwards it, must
        // find the route Portico chose. (With `merge_slashes: false` or `escaped_slashes:
        // keep` a backend that merges slashes or decodes %2F reads another path: that is
        // what those settings mean, docs/configuration.md.)
        // The request as sent, only where `%2F` was refused: `decode` makes it a separator
        // before `;parameters` are read, which a servlet container does after.
        let sent: &[&[u8]] = match cfg.escaped_slashes {
            EscapedSlashes::Reject => &[raw, path.as_bytes()],
            _ => &[path.as_bytes()],
        };
        for &sent in sent {
            let read = servlet_reading(sent);
            assert_eq!(route_of(&read), route, "{:?} routes to {route:?}, a servlet container reads {read:?}", String::from_utf8_lossy(sent));
        }
    }
    for alt in respellings(path, pick, cfg.merge_slashes) {
        let other = normalize(alt.as_bytes(), &cfg).unwrap_or_else(|e| panic!("{alt:?} (of {path:?}) refused: {e:?}"));
        assert_eq!(other.path, path, "{alt:?}");
        assert_eq!(route_of(other.matching()), route, "{alt:?}");
    }
}

fn route_of(path: &str) -> Option<usize> {
    static SNAP: OnceLock<gateway::snapshot::Snapshot> = OnceLock::new();
    let snap = SNAP.get_or_init(|| {
        let routes: String = ROUTES.iter().map(|r| format!("  - {r}\n")).collect();
        let yaml = format!("listeners:\n  - {{ name: web, listen: \"127.0.0.1:1\" }}\nupstreams:\n  u: {{ backends: [ {{ addr: \"127.0.0.1:1\" }} ] }}\nroutes:\n{routes}");
        let src = gateway::config::load_str(&yaml, std::env::temp_dir()).unwrap();
        gateway::snapshot::compile(&src, &gateway::Registry::new(), &gateway::snapshot::HealthBook::default()).unwrap_or_else(|e| panic!("{e}"))
    });
    let headers = http::HeaderMap::new();
    snap.routes.lookup_index(0, &gateway::route::RequestKey { host: "t.test", path, method: &http::Method::GET, headers: &headers })
}

/// How a servlet container (Tomcat) reads a path: each segment's `;parameters` dropped from
/// the raw bytes, then every escape decoded, then empty and dot segments resolved.
fn servlet_reading(raw: &[u8]) -> String {
    let mut decoded = Vec::new();
    for (k, seg) in raw.split(|&c| c == b'/').enumerate().skip(1) {
        if k > 1 {
            decoded.push(b'/');
        }
        let seg = seg.split(|&c| c == b';').next().unwrap_or_default();
        let mut i = 0;
        while i < seg.len() {
            let escape = seg.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
            match (seg[i], escape) {
                (b'%', Some(d)) => {
                    decoded.push(d);
                    i += 3;
                }
                (c, _) => {
                    decoded.push(c);
                    i += 1;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&decoded);
    let segments: Vec<&str> = text.split('/').collect();
    let mut kept: Vec<&str> = Vec::new();
    for (k, &seg) in segments.iter().enumerate() {
        let last = k + 1 == segments.len();
        match seg {
            "." | ".." => {
                if seg == ".." {
                    kept.pop();
                }
                if last {
                    kept.push("");
                }
            }
            "" if !last => {}
            _ => kept.push(seg),
        }
    }
    format!("/{}", kept.join("/"))
}

/// Other spellings of a normalized path: unreserved characters escaped (lower- or
/// upper-case), `./`, `x/../` and their escaped forms inserted after a slash, a slash
/// doubled (when slashes are merged).
fn respellings(path: &str, seed: u8, merge: bool) -> Vec<String> {
    let mut escaped = String::new();
    let mut rest = path;
    let mut n = seed as usize;
    while let Some(c) = rest.chars().next() {
        if c == '%' {
            // An escape stays as it is.
            escaped.push_str(&rest[..3]);
            rest = &rest[3..];
            continue;
        }
        n += 1;
        match n % 3 {
            0 if c.is_ascii_alphanumeric() || "-._~".contains(c) => escaped.push_str(&format!("%{:02x}", c as u8)),
            1 if c.is_ascii_alphanumeric() || "-._~".contains(c) => escaped.push_str(&format!("%{:02X}", c as u8)),
            _ => escaped.push(c),
        }
        rest = &rest[1..];
    }
    let mut out = vec![
        escaped,
        path.replacen('/', "/./", 1),
        path.replacen('/', "/zz/../", 1),
        path.replacen('/', "/%2E/", 1),
        path.replacen('/', "/q/%2e%2E/", 1),
    ];
    if merge {
        out.push(path.replacen('/', "//", 1));
    }
    out
}
