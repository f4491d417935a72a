//! The route table: which route a request takes, found without scanning every route.
//!
//! Routes are indexed by host (exact names, then wildcard suffixes, then routes without
//! hosts) and within each host bucket by path (exact paths and prefixes in hash maps, keyed by
//! the request path's segment boundaries). A lookup costs one hash probe per host label and
//! per path segment, plus the regex routes of the buckets it touches, however many routes
//! there are. Within one bucket's list the routes are kept best first, so a lookup stops at
//! the first whose method and header conditions match instead of visiting them all (a table
//! with hundreds of host-less catch-all routes would otherwise be scanned on every request).
//!
//! A route bound to listeners (`match.listeners`) is simply absent from the other listeners'
//! index: each distinct set of served routes has its own, so a binding costs a lookup nothing.

use super::{PathRule, RequestKey, Route};
use std::cmp::Ordering;
use std::collections::HashMap;

/// The index maps: aHash (keyed per process, so still resistant to crafted keys) hashes the
/// request's host and path prefixes several times faster than SipHash, and a lookup hashes
/// one key per host label and per path segment.
type Map<V> = HashMap<String, V, ahash::RandomState>;

/// One host bucket's routes by path rule. Every list is in rank order (see
/// [`PathIndex::sort`]): within a list host and path rank are equal, so the first route
/// whose conditions match is the list's best.
#[derive(Default)]
struct PathIndex {
    exact: Map<Vec<Candidate>>,
    prefix: Map<Vec<Candidate>>,
    /// The lengths the prefixes have: a segment boundary of the request path is looked up
    /// only where some prefix is that long (one probe per path instead of two per segment,
    /// which matters once the maps outgrow the CPU caches).
    prefix_lens: PrefixLens,
    /// The same for exact paths.
    exact_lens: PrefixLens,
    regex: Vec<Candidate>,
    any: Vec<Candidate>,
}

/// A route in an index list, with what ranking it needs: a lookup in a big table then
/// touches the route itself only when it has method or header conditions to check (each
/// touch is a likely cache miss once the table outgrows the CPU caches).
#[derive(Clone, Copy)]
struct Candidate {
    route: usize,
    priority: i64,
    path: (u8, usize),
    conditions: u32,
}

impl Candidate {
    fn rank(&self, host: u32) -> Rank {
        Rank {
            priority: self.priority,
            host,
            path: self.path,
            conditions: self.conditions,
        }
    }

    fn new(route: &Route, i: usize) -> Self {
        Candidate {
            route: i,
            priority: route.priority,
            path: path_rank(&route.path),
            conditions: conditions(route),
        }
    }
}

/// A set of string lengths: a bit each below 256, and one flag for anything longer.
#[derive(Default)]
struct PrefixLens {
    bits: [u64; 4],
    long: bool,
}

impl PrefixLens {
    fn insert(&mut self, n: usize) {
        match n {
            0..=255 => self.bits[n / 64] |= 1 << (n % 64),
            _ => self.long = true,
        }
    }

    fn contains(&self, n: usize) -> bool {
        match n {
            0..=255 => self.bits[n / 64] & (1 << (n % 64)) != 0,
            _ => self.long,
        }
    }
}

impl PathIndex {
    fn insert(&mut self, route: &Route, i: usize) {
        let c = Candidate::new(route, i);
        match &route.path {
            PathRule::Any => self.any.push(c),
            PathRule::Exact(p) => {
                self.exact_lens.insert(p.len());
                self.exact.entry(p.clone()).or_default().push(c)
            }
            PathRule::Prefix(p) => {
                self.prefix_lens.insert(p.len());
                self.prefix.entry(p.clone()).or_default().push(c)
            }
            PathRule::Regex(_) => self.regex.push(c),
        }
    }

    /// Puts every list best first: higher priority, then more conditions, then file order.
    fn sort(&mut self) {
        let best_first = |a: &Candidate, b: &Candidate| {
            b.priority
                .cmp(&a.priority)
                .then(b.conditions.cmp(&a.conditions))
                .then(a.route.cmp(&b.route))
        };
        for v in self.exact.values_mut().chain(self.prefix.values_mut()) {
            v.sort_by(best_first);
        }
        self.regex.sort_by(best_first);
        self.any.sort_by(best_first);
    }

    /// Offers `f` the routes of this bucket whose path rule matches `path`, best first within
    /// each list; `f` returns true when it took the route (its conditions matched), which
    /// ends that list.
    fn for_each_match(&self, routes: &[Route], path: &str, f: &mut impl FnMut(&Candidate) -> bool) {
        fn first(v: &[Candidate], f: &mut impl FnMut(&Candidate) -> bool) {
            for c in v {
                if f(c) {
                    break;
                }
            }
        }
        if self.exact_lens.contains(path.len()) {
            if let Some(v) = self.exact.get(path) {
                first(v, f);
            }
        }
        if !self.prefix.is_empty() {
            // Every prefix that ends on a segment boundary of `path`, with and without the
            // trailing slash, and the whole path.
            for (i, b) in path.bytes().enumerate() {
                if b == b'/' {
                    if i > 0 && self.prefix_lens.contains(i) {
                        if let Some(v) = self.prefix.get(&path[..i]) {
                            first(v, f);
                        }
                    }
                    if i + 1 < path.len() && self.prefix_lens.contains(i + 1) {
                        if let Some(v) = self.prefix.get(&path[..=i]) {
                            first(v, f);
                        }
                    }
                }
            }
            if self.prefix_lens.contains(path.len()) {
                if let Some(v) = self.prefix.get(path) {
                    first(v, f);
                }
            }
        }
        for c in &self.regex {
            if let PathRule::Regex(re) = &routes[c.route].path {
                if re.is_match(path) && f(c) {
                    break;
                }
            }
        }
        first(&self.any, f);
    }
}

pub struct RouteTable {
    routes: Vec<Route>,
    /// One index per distinct set of routes a listener serves: listeners that serve the same
    /// routes share one (with no `match.listeners` anywhere, every listener shares the
    /// first). Each is the whole table's index over its routes, so a lookup on any listener
    /// costs what it would cost without bindings; the memory is one index per distinct set,
    /// usually one or two.
    indexes: Vec<Index>,
    /// A listener's position in `listeners` to its index in `indexes`.
    by_listener: Vec<usize>,
}

/// The routes one set of listeners serves, by host and path.
#[derive(Default)]
struct Index {
    exact_hosts: Map<PathIndex>,
    /// Keyed by the suffix including its leading dot: `.example.com`.
    wildcard_hosts: Map<PathIndex>,
    /// The lengths the wildcard suffixes have: a request host's suffixes are looked up only
    /// where one could match (`.com` and `.example.com` are usually not there), which saves
    /// a probe of a big map, likely a cache miss, per dot.
    wildcard_lens: PrefixLens,
    any_host: PathIndex,
}

impl RouteTable {
    /// The table of `routes` for a config with `listeners` listeners; a route's
    /// [`Route::listeners`] are positions below that.
    pub fn new(routes: Vec<Route>, listeners: usize) -> Self {
        // Listeners that serve the same bound routes serve the same routes.
        let mut sets: HashMap<Vec<usize>, usize> = HashMap::new();
        let mut indexes = Vec::new();
        let mut by_listener = Vec::new();
        for l in 0..listeners.max(1) {
            let bound: Vec<usize> = (0..routes.len())
                .filter(|&i| routes[i].listeners.contains(&l))
                .collect();
            let next = sets.len();
            let at = *sets.entry(bound).or_insert(next);
            if at == next {
                indexes.push(Index::new(&routes, |r| r.served_on(l)));
            }
            by_listener.push(at);
        }
        RouteTable {
            routes,
            indexes,
            by_listener,
        }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for this request on `listener` (its position in `listeners`), in the order
    /// docs/configuration.md gives: priority, host specificity, path specificity, number of
    /// conditions, then file order. Routes bound to other listeners do not exist here.
    pub fn lookup(&self, listener: usize, key: &RequestKey) -> Option<&Route> {
        self.lookup_index(listener, key).map(|i| &self.routes[i])
    }

    /// Like [`RouteTable::lookup`], returning the route's position in `routes()`.
    pub fn lookup_index(&self, listener: usize, key: &RequestKey) -> Option<usize> {
        let index = &self.indexes[*self.by_listener.get(listener)?];
        index.lookup(self, key)
    }
}

impl Index {
    fn new(routes: &[Route], served: impl Fn(&Route) -> bool) -> Self {
        let mut t = Index::default();
        for (i, r) in routes.iter().enumerate().filter(|(_, r)| served(r)) {
            if r.hosts.is_empty() {
                t.any_host.insert(r, i);
            }
            for h in &r.hosts {
                match h.strip_prefix('*') {
                    Some(suffix) => {
                        t.wildcard_lens.insert(suffix.len());
                        t.wildcard_hosts
                            .entry(suffix.to_string())
                            .or_default()
                            .insert(r, i)
                    }
                    None => t.exact_hosts.entry(h.clone()).or_default().insert(r, i),
                }
            }
        }
        for idx in t
            .exact_hosts
            .values_mut()
            .chain(t.wildcard_hosts.values_mut())
        {
            idx.sort();
        }
        t.any_host.sort();
        t
    }

    fn lookup(&self, table: &RouteTable, key: &RequestKey) -> Option<usize> {
        let routes = &table.routes;
        let mut best: Option<(Rank, usize)> = None;
        // Returns whether the route's conditions matched (then it was weighed).
        self.visit(routes, key, &mut |c: &Candidate, host_rank: u32| {
            let i = c.route;
            if c.conditions > 0 && !table.conditions_match(&routes[i], key) {
                return false;
            }
            let rank = c.rank(host_rank);
            let better = match &best {
                None => true,
                // Equal ranks keep the earlier route: candidates arrive out of file order.
                Some((b, bi)) => match rank.cmp(b) {
                    Ordering::Greater => true,
                    Ordering::Equal => i < *bi,
                    Ordering::Less => false,
                },
            };
            if better {
                best = Some((rank, i));
            }
            true
        });
        best.map(|(_, i)| i)
    }

    /// Calls `consider` with each route whose host and path rules match `key`, and the rank
    /// its host gives it. Within one index list it stops at the first route for which
    /// `consider` returns true (the lists are best first).
    fn visit(
        &self,
        routes: &[Route],
        key: &RequestKey,
        consider: &mut impl FnMut(&Candidate, u32) -> bool,
    ) {
        if let Some(idx) = self.exact_hosts.get(key.host) {
            // Exact hosts outrank every wildcard: 2^31 plus the length keeps the order.
            idx.for_each_match(routes, key.path, &mut |c| consider(c, 1 << 31));
        }
        if !self.wildcard_hosts.is_empty() {
            for (pos, b) in key.host.bytes().enumerate() {
                // pos > 0: a wildcard stands for at least one label, so `.example.com`
                // itself is not covered by `*.example.com`.
                if b == b'.' && pos > 0 && self.wildcard_lens.contains(key.host.len() - pos) {
                    let suffix = &key.host[pos..];
                    if let Some(idx) = self.wildcard_hosts.get(suffix) {
                        idx.for_each_match(routes, key.path, &mut |c| {
                            consider(c, 1 + suffix.len() as u32)
                        });
                    }
                }
            }
        }
        self.any_host
            .for_each_match(routes, key.path, &mut |c| consider(c, 0));
    }
}

/// How one route whose host and path rules match a request ranks for it: what
/// `portico --explain` shows. The fields compare in this order, then file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    pub priority: i64,
    /// 0: the route names no host; 1 + the suffix length: a wildcard; 2^31: exact.
    pub host: u32,
    /// (4 exact, 3 prefix, 2 regex, 1 any; the prefix's length).
    pub path: (u8, usize),
    /// Method and header conditions (methods count once).
    pub conditions: u32,
}

/// A route that was weighed for a request ([`RouteTable::weigh`]).
#[derive(Debug, Clone, Copy)]
pub struct Weighed {
    /// Its position in [`RouteTable::routes`].
    pub route: usize,
    pub rank: Rank,
    /// Whether its method and header conditions hold; a route whose conditions fail is out.
    pub conditions_match: bool,
}

impl RouteTable {
    /// Every route on `listener` whose host and path rules match `key`, found by the same
    /// index walk as [`RouteTable::lookup`], with its rank (for `portico --explain`; not for
    /// the request path, which stops at each list's first match).
    pub fn weigh(&self, listener: usize, key: &RequestKey) -> Vec<Weighed> {
        let mut out = Vec::new();
        let Some(&at) = self.by_listener.get(listener) else {
            return out;
        };
        self.indexes[at].visit(&self.routes, key, &mut |c: &Candidate, host: u32| {
            // A route listed under several hosts is weighed once, at its best host.
            let weighed = Weighed {
                route: c.route,
                rank: c.rank(host),
                conditions_match: c.conditions == 0
                    || self.conditions_match(&self.routes[c.route], key),
            };
            match out.iter_mut().find(|w: &&mut Weighed| w.route == c.route) {
                Some(w) if w.rank < weighed.rank => *w = weighed,
                Some(_) => {}
                None => out.push(weighed),
            }
            false
        });
        out.sort_by_key(|w| w.route);
        out
    }
}

impl RouteTable {
    fn conditions_match(&self, r: &Route, key: &RequestKey) -> bool {
        if !r.methods.is_empty() && !r.methods.iter().any(|m| m == key.method) {
            return false;
        }
        r.headers.iter().all(|(name, want)| {
            key.headers
                .get_all(name)
                .iter()
                .any(|v| v.as_bytes() == want.as_bytes())
        })
    }
}

/// How many method and header conditions a route has, for ranking (methods count once).
fn conditions(r: &Route) -> u32 {
    (r.methods.len().min(1) + r.headers.len()) as u32
}

fn path_rank(p: &PathRule) -> (u8, usize) {
    match p {
        PathRule::Exact(_) => (4, 0),
        PathRule::Prefix(s) => (3, s.len()),
        PathRule::Regex(_) => (2, 0),
        PathRule::Any => (1, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::Chain;
    use http::{HeaderName, Method};

    fn route(name: &str, hosts: &[&str], path: PathRule, priority: i64) -> Route {
        Route {
            name: name.into(),
            priority,
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            path,
            methods: vec![],
            headers: vec![],
            upstream: None,
            max_body_bytes: None,
            chain: Chain::default(),
            metrics: crate::metrics::RouteMetrics::new(name),
            listeners: vec![],
        }
    }

    fn find<'a>(t: &'a RouteTable, host: &str, path: &str) -> Option<&'a str> {
        let h = http::HeaderMap::new();
        t.lookup(
            0,
            &RequestKey {
                host,
                path,
                method: &Method::GET,
                headers: &h,
            },
        )
        .map(|r| &*r.name)
    }

    #[test]
    fn specificity_order() {
        let t = RouteTable::new(
            vec![
                route("any", &[], PathRule::Any, 0),
                route("wild", &["*.example.com"], PathRule::Any, 0),
                route("wild-long", &["*.api.example.com"], PathRule::Any, 0),
                route("exact", &["www.example.com"], PathRule::Any, 0),
                route("prefix", &[], PathRule::Prefix("/api".into()), 0),
                route("prefix-long", &[], PathRule::Prefix("/api/v2".into()), 0),
                route("exact-path", &[], PathRule::Exact("/api/v2/x".into()), 0),
                route("prio", &[], PathRule::Prefix("/urgent".into()), 5),
            ],
            1,
        );
        assert_eq!(find(&t, "other.org", "/"), Some("any"));
        assert_eq!(find(&t, "a.example.com", "/"), Some("wild"));
        assert_eq!(find(&t, "x.api.example.com", "/"), Some("wild-long"));
        assert_eq!(find(&t, "example.com", "/"), Some("any"));
        assert_eq!(
            find(&t, ".example.com", "/"),
            Some("any"),
            "a wildcard needs a label"
        );
        assert_eq!(find(&t, "www.example.com", "/api"), Some("exact"));
        assert_eq!(find(&t, "other.org", "/api/x"), Some("prefix"));
        assert_eq!(find(&t, "other.org", "/apix"), Some("any"));
        assert_eq!(find(&t, "other.org", "/api/v2/y"), Some("prefix-long"));
        assert_eq!(find(&t, "other.org", "/api/v2/x"), Some("exact-path"));
        assert_eq!(find(&t, "www.example.com", "/urgent/now"), Some("prio"));
    }

    #[test]
    fn best_of_many_catch_alls_by_priority_then_conditions_then_order() {
        let mut post = route("post", &[], PathRule::Any, 0);
        post.methods = vec![Method::POST];
        let mut canary = route("canary", &[], PathRule::Any, 1);
        canary.headers = vec![(HeaderName::from_static("x-canary"), "1".into())];
        let mut routes = vec![
            post,
            route("first", &[], PathRule::Any, 0),
            route("second", &[], PathRule::Any, 0),
            canary,
        ];
        // Hundreds of equal catch-alls after them change nothing.
        routes.extend((0..500).map(|i| route(&format!("filler{i}"), &[], PathRule::Any, 0)));
        let t = RouteTable::new(routes, 1);
        let lookup = |method: Method, canary: bool| {
            let mut h = http::HeaderMap::new();
            if canary {
                h.insert("x-canary", "1".parse().unwrap());
            }
            let key = RequestKey {
                host: "a.example.com",
                path: "/",
                method: &method,
                headers: &h,
            };
            t.lookup(0, &key).map(|r| r.name.to_string())
        };
        assert_eq!(lookup(Method::GET, false).as_deref(), Some("first"));
        assert_eq!(lookup(Method::POST, false).as_deref(), Some("post"));
        assert_eq!(lookup(Method::POST, true).as_deref(), Some("canary"));
    }

    #[test]
    fn a_route_bound_to_listeners_exists_only_there() {
        let bound = |name, listeners: Vec<usize>, priority| {
            let mut r = route(name, &[], PathRule::Prefix("/admin".into()), priority);
            r.listeners = listeners;
            r
        };
        let t = RouteTable::new(
            vec![
                route("public", &[], PathRule::Any, 0),
                bound("admin", vec![1], 0),
                bound("ops", vec![1, 2], 5),
            ],
            4,
        );
        assert_eq!(find_on(&t, 0, "/admin/x"), Some("public"));
        assert_eq!(find_on(&t, 1, "/admin/x"), Some("ops"));
        assert_eq!(find_on(&t, 2, "/admin/x"), Some("ops"));
        assert_eq!(find_on(&t, 3, "/admin/x"), Some("public"));
        assert_eq!(find_on(&t, 1, "/other"), Some("public"));
        assert_eq!(find_on(&t, 9, "/other"), None, "no such listener");
        // Listeners 0 and 3 serve the same routes, and share one index.
        assert_eq!(t.indexes.len(), 3);
    }

    fn find_on<'a>(t: &'a RouteTable, listener: usize, path: &str) -> Option<&'a str> {
        let h = http::HeaderMap::new();
        let key = RequestKey {
            host: "example.com",
            path,
            method: &Method::GET,
            headers: &h,
        };
        t.lookup(listener, &key).map(|r| &*r.name)
    }
}
