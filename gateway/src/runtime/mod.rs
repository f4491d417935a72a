//! The process: the command line, building Pingora's server from Portico's config (one
//! service per listener, the admin endpoints, signals, upkeep), reload, and the shutdown
//! sequence a load balancer can follow.

mod admin;
mod cli;
mod explain;
mod logging;
mod reload;
mod services;
mod shared;
mod shutdown;
mod signals;

use crate::acme;
use crate::config;
use crate::fleet::Origin;
use crate::lifecycle::Lifecycle;
use crate::listener::{ListenerApp, ProxyHeaderBeforeTls};
use crate::metrics;
use crate::plugin::Registry;
use crate::request::Gateway;
use crate::snapshot::{self, HealthBook, Snapshot};
use crate::tls::{self, CertResolver};
use crate::upstream::Upkeep;
use admin::Admin;
use arc_swap::ArcSwap;
use cli::{parse_args, Args};
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::Listeners;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{RunArgs, Server};
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use services::{endpoint, Bound, Settle, SETTLE};
use shared::Shared;
use shutdown::{remove_pid_file, write_pid_file, Shutdown};
use signals::Signals;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Runs Portico with the plugins in `registry`. Returns only by exiting the process.
pub fn run(registry: Registry) -> ! {
    logging::init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let health = HealthBook::default();
    let (origin, fetched) = match Origin::open(&args.config) {
        Ok(opened) => opened,
        Err(errors) => not_started(&args.config.display(), &errors, args.test),
    };
    let snap = match snapshot::compile(&fetched.source, &registry, &health) {
        Ok(s) => s,
        Err(errors) => not_started(&origin, &errors, args.test),
    };
    if let Some(request) = &args.explain {
        explain::run(&snap, request);
    }
    if args.test {
        for w in &snap.warnings {
            eprintln!("{w}");
        }
        match &args.push {
            Some(url) => match origin.push(url) {
                Ok(revision) => {
                    eprintln!("{origin}: ok (version {}), stored in {url}", snap.version);
                    println!("{revision}");
                }
                Err(e) => {
                    eprintln!("{origin}: ok, but not stored: {e}");
                    std::process::exit(1);
                }
            },
            None => println!("{origin}: ok (version {})", snap.version),
        }
        std::process::exit(0);
    }
    origin.applied(&fetched);
    let base = fetched.source.base_dir.clone();
    for w in &snap.warnings {
        log::warn!("config: {w}");
    }
    metrics::init();
    serve(args, origin, base, snap, registry, health)
}

/// Prints a config's errors, one per line starting with its key path, and exits 1. `-t`
/// prints only those lines (scripts read them); a start that fails also says it did not start.
fn not_started(config: &dyn std::fmt::Display, errors: &config::ConfigErrors, test: bool) -> ! {
    for e in &errors.0 {
        eprintln!("{e}");
    }
    if !test {
        eprintln!("{config}: {} error(s), not started", errors.0.len());
    }
    std::process::exit(1);
}

fn server_conf(snap: &Snapshot, base: &std::path::Path, daemon: bool) -> ServerConf {
    let s = &snap.config.server;
    let threads = s.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    ServerConf {
        threads,
        // One worker has no one to steal from: tokio's current-thread scheduler then does the
        // same job without the multi-thread one's injection queue, LIFO slot and parking
        // handshake (docs/deployment.md, "Worker threads"). With more, stealing stays:
        // without it Pingora spawns each connection on a random thread, a wake-up across
        // threads per connection.
        work_stealing: threads > 1,
        daemon,
        pid_file: config::resolve(base, &s.pid_file).display().to_string(),
        upgrade_sock: config::resolve(base, &s.upgrade_sock).display().to_string(),
        // Pingora's own grace period is the time in-flight requests get after the listeners
        // stop; Portico's grace period (serving while the load balancer notices) runs before
        // it. The process leaves earlier once nothing is in flight (`exit_when_idle`).
        grace_period_seconds: Some((s.shutdown_timeout.get().as_secs_f64().ceil() as u64).max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        // Portico bounds retries per upstream itself.
        max_retries: 16,
        upstream_keepalive_pool_size: s.upstream_keepalive_pool,
        // Upstream timeouts of a second or more on tokio's timer rather than Pingora's, which
        // keeps a cancelled deadline until it passes (docs/deployment.md, "Timers").
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        ..Default::default()
    }
}

fn serve(
    args: Args,
    origin: Origin,
    base: PathBuf,
    snap: Snapshot,
    registry: Registry,
    health: HealthBook,
) -> ! {
    let conf = server_conf(&snap, &base, args.daemon);
    let opt = Opt {
        upgrade: args.upgrade,
        daemon: args.daemon,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let conf = server.configuration.clone();
    if !args.daemon {
        // A daemon's pid file is written by the fork; in the foreground it is written here,
        // after a `-u` process received the sockets, so the file names the serving process.
        write_pid_file(&conf.pid_file);
    }

    let mut cert_resolvers = HashMap::new();
    for l in &snap.config.listeners {
        if let Some(store) = snap.certs.get(&l.name) {
            cert_resolvers.insert(
                l.name.clone(),
                Arc::new(CertResolver::new(&l.name, store.clone())),
            );
        }
    }
    let listeners = snap.listener_names();
    acme::go_live(&listeners, &snap.acme, &cert_resolvers);
    let upkeep = background_service(
        "upstream upkeep",
        Upkeep::new(snap.pools.values().cloned().collect()),
    );
    let shared = Arc::new(Shared {
        snapshot: Arc::new(ArcSwap::from_pointee(snap)),
        registry,
        health,
        origin,
        lifecycle: Lifecycle::new(),
        cert_resolvers,
        upkeep: upkeep.task(),
        reload_lock: Mutex::new(()),
    });
    let snap = shared.snapshot.load_full();
    snap.publish_metrics();

    let mut listener_services = Vec::new();
    for (index, l) in snap.config.listeners.iter().enumerate() {
        let gateway = Gateway {
            listener: l.name.as_str().into(),
            index,
            tls: l.tls.is_some(),
            redirect_https: l.redirect_https,
            port: l.listen.port().into(),
            snapshot: shared.snapshot.clone(),
            lifecycle: shared.lifecycle.clone(),
        };
        let mut proxy = pingora_proxy::http_proxy(&conf, gateway);
        let mut opts = HttpServerOptions::default();
        opts.keepalive_request_limit = None;
        // HTTP/2 settings are fixed when the listener starts; a reload does not change them.
        opts.h2_idle_timeout = Some(snap.config.server.limits.idle_timeout.get());
        proxy.h2_options = Some(crate::listener::h2_options(&snap.config.server.limits));
        proxy.server_options = Some(opts);
        let mut listeners = Listeners::new();
        match &l.tls {
            Some(t) => {
                if l.proxy_protocol {
                    listeners.set_pre_tls_callback(Arc::new(ProxyHeaderBeforeTls {
                        listener: l.name.as_str().into(),
                        snapshot: shared.snapshot.clone(),
                        untrusted_warning: Default::default(),
                    }));
                }
                let resolver = shared.cert_resolvers[&l.name].clone();
                let challenge: Arc<dyn tls::HandshakeChallenge> = Arc::new(acme::TlsAlpn01);
                match tls::listener_settings(resolver, *t.min_version, *t.alpn, Some(challenge)) {
                    Ok(settings) => listeners.add_listener(endpoint(*l.listen).tls(settings)),
                    Err(e) => {
                        eprintln!("listeners: {}: {e}", l.name);
                        std::process::exit(1);
                    }
                }
            }
            None => listeners.add_listener(endpoint(*l.listen)),
        }
        let app = ListenerApp {
            name: l.name.as_str().into(),
            proxy: Arc::new(proxy),
            proxy_header: l.proxy_protocol && l.tls.is_none(),
            conns: Default::default(),
            closing: Default::default(),
            untrusted_warning: Default::default(),
            snapshot: shared.snapshot.clone(),
        };
        // The service name is also its threads' name, which the error log uses to tell
        // which listener a failed TLS handshake belongs to.
        let settle = SETTLE.min(snap.config.server.shutdown_timeout.get());
        let svc = Service::with_listeners(
            format!("listener {}", l.name),
            listeners,
            Settle {
                app: Arc::new(app),
                settle,
                lifecycle: shared.lifecycle.clone(),
            },
        );
        listener_services.push(server.add_service(Bound {
            name: l.name.clone(),
            addr: l.listen.to_string(),
            service: Some(svc),
        }));
    }

    let signals = server.add_service(background_service(
        "signals",
        Signals {
            shared: shared.clone(),
            listeners: listener_services.len(),
            pid_file: conf.pid_file.clone(),
        },
    ));
    let mut admin = Service::new(
        "admin".to_string(),
        Admin {
            shared: shared.clone(),
        },
    );
    admin.add_tcp(&snap.config.admin.listen.to_string());
    admin.threads = Some(1);
    let admin = server.add_service(admin);
    // The admin listener (and so `/readyz`) starts only once every listener listens and the
    // signals have handlers (a SIGHUP before that would kill the process).
    admin.add_dependencies(&listener_services);
    admin.add_dependency(&signals);
    server.add_service(upkeep);
    server.add_service(background_service("acme", acme::Service));

    log::info!(
        "portico {} starting: config {} version {}",
        env!("CARGO_PKG_VERSION"),
        shared.origin,
        snap.version
    );
    let upgrade_sock = PathBuf::from(&conf.upgrade_sock);
    let pid_file = conf.pid_file.clone();
    server.run(RunArgs {
        shutdown_signal: Box::new(Shutdown {
            shared,
            upgrade_sock,
        }),
    });
    remove_pid_file(&pid_file);
    std::process::exit(0)
}
