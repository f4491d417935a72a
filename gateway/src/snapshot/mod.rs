//! A compiled config: everything the request path reads, built and checked off the request
//! path, then swapped in whole. Requests that started on an older snapshot keep it.
//!
//! [`compile`] runs one pass per section, each in its own file, collecting every error (not
//! only the first) with its key path and line. Compiling has no effect outside the snapshot:
//! its metric series are published, and its plugins started, only when it goes live.

mod chains;
mod health_book;
mod listeners;
mod routes;
mod server;
mod upstreams;

pub use health_book::HealthBook;

use crate::config::{self, AcmeConfig, Config, ConfigError, ConfigErrors, Problems, Source};
use crate::metrics;
use crate::net::ip::canonical_ip;
use crate::net::spelled_name::SpelledName;
use crate::plugin::{Chain, Chains, Registry};
use crate::route::RouteTable;
use crate::tls::CertStore;
use crate::upstream::Pool;
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
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
    pub acme: HashMap<String, AcmeConfig>,
    pub trusted_proxies: Vec<IpNet>,
    /// `server.request_id_header`, and its spelling as the config gives it, which is how
    /// HTTP/1 peers see it written with `header_case: preserve`.
    pub request_id: SpelledName,
    /// Whether each listener (by position in `config.listeners`) asks for client
    /// certificates (`tls.client_ca`): there Portico alone writes `X-Forwarded-Client-Cert`.
    pub mtls: Vec<bool>,
    /// What is valid but likely not meant (`portico -t` prints them, a start or reload logs
    /// them).
    pub warnings: Vec<ConfigError>,
}

impl Snapshot {
    /// The listeners' names, in config order (what the certificate managers and their metrics
    /// are keyed by).
    pub fn listener_names(&self) -> Vec<&str> {
        self.config
            .listeners
            .iter()
            .map(|l| l.name.as_str())
            .collect()
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// The global chain, then the chain of route `route` (a position in the route table):
    /// the order every hook runs in.
    pub fn chains(&self, route: Option<usize>) -> Chains<'_> {
        Chains {
            global: &self.global,
            route: route.map(|i| &self.routes.routes()[i].chain),
        }
    }

    /// Starts the plugins of every chain ([`crate::plugin::Plugin::start`]). Called once, for
    /// the snapshot that goes live, never for one only checked or refused.
    pub fn start_plugins(&self) {
        self.global.start();
        for route in self.routes.routes() {
            route.chain.start();
        }
    }

    /// Creates the series this config implies before any traffic moves them, so that
    /// dashboards and alerts see zeros instead of nothing: each route's duration histogram,
    /// each listener's connection gauge (and TLS handshake errors), each upstream's retries
    /// and each backend's health. Called for the snapshot that goes live (at start and after
    /// every reload), never while a config is only compiled.
    pub fn publish_metrics(&self) {
        for route in self.routes.routes() {
            route.metrics.publish();
        }
        for l in &self.config.listeners {
            metrics::publish_listener(&l.name, l.tls.is_some());
        }
        for name in self.pools.keys() {
            metrics::publish_upstream(name);
        }
        self.publish_backend_health();
    }

    /// Sets `portico_upstream_backend_healthy` from this snapshot's health records, right
    /// before a scrape: passive ejections (and their expiry) change no gauge when they happen,
    /// and a backend a reload removed must disappear from the exposition.
    pub fn publish_backend_health(&self) {
        metrics::reset_backend_health();
        for (name, pool) in &self.pools {
            for b in &pool.backends {
                let up = b.health.state() == crate::upstream::State::Healthy;
                metrics::set_backend_health(name, &b.addr, up);
            }
        }
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

    server::check(cfg, &mut p);
    let certs = listeners::compile(cfg, base, &mut p);
    let acme = crate::acme::check_listeners(cfg, base, &mut p);
    let pools = upstreams::compile(cfg, base, health, &mut p);
    let global = chains::compile(&cfg.plugins, "plugins", None, registry, base, &mut p);
    let routes = routes::compile(cfg, &pools, registry, base, &mut p);
    let trusted_proxies = server::trusted_proxies(cfg, &mut p);
    let request_id = server::request_id_header(cfg, &mut p);
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
        request_id,
        mtls: cfg
            .listeners
            .iter()
            .map(|l| l.tls.as_ref().is_some_and(|t| t.client_ca.is_some()))
            .collect(),
        warnings,
    })
}
