//! Config load and compile time for 10,000 routes: what a reload of a large config costs
//! (off the request path, but it holds a reload for that long).

use criterion::{criterion_group, criterion_main, Criterion};
use gateway::config::load_str;
use gateway::snapshot::{compile, HealthBook};
use std::fmt::Write;
use std::path::PathBuf;

fn config_text(routes: usize) -> String {
    let mut s = String::from(
        "admin: { listen: 127.0.0.1:19999 }\n\
         listeners:\n  - { name: http, listen: 127.0.0.1:18999 }\n\
         upstreams:\n  app: { backends: [ { addr: 127.0.0.1:9001 }, { addr: 127.0.0.1:9002 } ] }\n\
         routes:\n",
    );
    for i in 0..routes {
        let host = match i % 3 {
            0 => format!("hosts: [svc{i}.example.com]"),
            1 => format!("hosts: [\"*.t{i}.example.net\"]"),
            _ => String::new(),
        };
        let path = match i % 4 {
            0 | 1 => format!("path: {{ prefix: /api/v{}/r{i} }}", i % 7),
            2 => format!("path: {{ exact: /x/{i}/status }}"),
            _ => String::new(),
        };
        let sep = if host.is_empty() || path.is_empty() {
            ""
        } else {
            ", "
        };
        writeln!(
            s,
            "  - {{ name: r{i}, upstream: app, match: {{ {host}{sep}{path} }} }}"
        )
        .unwrap();
    }
    s
}

fn compile_10k(c: &mut Criterion) {
    let text = config_text(10_000);
    let mut registry = gateway::Registry::new();
    plugins::register_builtins(&mut registry);
    let base = PathBuf::from(".");
    let mut group = c.benchmark_group("config_10000_routes");
    group.sample_size(10);
    group.bench_function("load_str", |b| {
        b.iter(|| load_str(&text, base.clone()).expect("a valid config"))
    });
    let src = load_str(&text, base.clone()).expect("a valid config");
    let health = HealthBook::default();
    group.bench_function("compile", |b| {
        b.iter(|| compile(&src, &registry, &health).expect("a valid config"))
    });
    group.bench_function("load_str+compile", |b| {
        b.iter(|| {
            let src = load_str(&text, base.clone()).expect("a valid config");
            compile(&src, &registry, &health).expect("a valid config")
        })
    });
    group.finish();
}

criterion_group!(benches, compile_10k);
criterion_main!(benches);
