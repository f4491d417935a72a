//! Route lookup cost with 10, 1,000 and 10,000 routes (exact hosts, wildcard hosts and
//! host-less routes; prefixes, exact paths and catch-alls mixed). The lookup's cost must not
//! grow linearly with the number of routes; the target is 10,000 within 1.2× of 10.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gateway::metrics::RouteMetrics;
use gateway::plugin::Chain;
use gateway::route::{PathRule, RequestKey, Route, RouteTable};
use http::{HeaderMap, Method};

fn route(i: usize) -> Route {
    let name = format!("r{i}");
    // A third each: exact host, wildcard host, no host.
    let hosts = match i % 3 {
        0 => vec![format!("svc{i}.example.com")],
        1 => vec![format!("*.t{i}.example.net")],
        _ => vec![],
    };
    // Prefixes mostly, some exact paths, some catch-alls.
    let path = match i % 5 {
        0..=2 => PathRule::Prefix(format!("/api/v{}/r{i}", i % 7)),
        3 => PathRule::Exact(format!("/x/{i}/status")),
        _ => PathRule::Any,
    };
    Route {
        metrics: RouteMetrics::new(&name),
        name: name.into(),
        priority: 0,
        hosts,
        path,
        methods: vec![],
        headers: vec![],
        upstream: None,
        max_body_bytes: None,
        chain: Chain::default(),
        listeners: vec![],
    }
}

/// Requests that hit routes across the table (and some that fall through to catch-alls or
/// to nothing), so that a lookup is not always the same hash bucket.
fn requests(n: usize) -> Vec<(String, String)> {
    (0..64)
        .map(|k| {
            let i = (k * 7919) % n;
            let host = match i % 3 {
                0 => format!("svc{i}.example.com"),
                1 => format!("a.b.t{i}.example.net"),
                _ => "other.example.org".to_string(),
            };
            let path = match i % 5 {
                0..=2 => format!("/api/v{}/r{i}/items/42", i % 7),
                3 => format!("/x/{i}/status"),
                _ => "/some/deep/path/that/matches/only/a/catch-all".to_string(),
            };
            (host, path)
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    group.throughput(Throughput::Elements(64));
    for n in [10usize, 1_000, 10_000] {
        let table = RouteTable::new((0..n).map(route).collect(), 1);
        let reqs = requests(n);
        let headers = HeaderMap::new();
        let keys: Vec<RequestKey> = reqs
            .iter()
            .map(|(h, p)| RequestKey {
                host: h,
                path: p,
                method: &Method::GET,
                headers: &headers,
            })
            .collect();
        assert!(
            keys.iter()
                .filter(|k| table.lookup_index(0, k).is_some())
                .count()
                > 0
        );
        // 64 lookups per iteration; criterion's throughput reports them per second.
        group.bench_with_input(BenchmarkId::from_parameter(n), &keys, |b, keys| {
            b.iter(|| {
                for k in keys {
                    black_box(table.lookup_index(0, black_box(k)));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
