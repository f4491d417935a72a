//! The process: command line, building Pingora's server from Portico's config, listeners,
//! signals, and the shutdown sequence a load balancer can follow.

use crate::admin::Admin;
use crate::config;
use crate::metrics;
use crate::plugin::Registry;
use crate::proxy::Gateway;
use crate::snapshot::{self, HealthBook, Snapshot};
use crate::tls::{self, CertResolver};
use crate::upstream::HealthChecker;
use crate::Shared;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::apps::HttpServerOptions;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::listeners::Listeners;
use pingora_core::services::listening::Service;
use crate::listener::{ListenerApp, ProxyHeaderBeforeTls};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

/// Requests between their first byte and their logging phase, across all listeners.
pub(crate) static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

struct Args {
    config: PathBuf,
    test: bool,
    upgrade: bool,
    daemon: bool,
}

const USAGE: &str = "usage: portico [-c FILE] [-t] [-u] [-d]
  -c, --config FILE   the config file (default: conf/portico.yaml)
  -t, --test          check the config and exit: 0 valid, 1 invalid
  -u, --upgrade       take over the listening sockets of the running instance
  -d, --daemon        run in the background
  -V, --version       print the version";

fn parse_args() -> Result<Args, String> {
    let mut args = Args { config: PathBuf::from("conf/portico.yaml"), test: false, upgrade: false, daemon: false };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--config" | "--conf" => args.config = it.next().ok_or("-c needs a file")?.into(),
            s if s.starts_with("--config=") => args.config = s["--config=".len()..].into(),
            "-t" | "--test" => args.test = true,
            "-u" | "--upgrade" => args.upgrade = true,
            "-d" | "--daemon" => args.daemon = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "-V" | "--version" => {
                println!("portico {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

/// Runs Portico with the plugins in `registry`. Returns only by exiting the process.
pub fn run(registry: Registry) -> ! {
    crate::logging::init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // Resolve now: a daemon changes its working directory to `/`.
    let config_path = std::fs::canonicalize(&args.config).unwrap_or_else(|_| args.config.clone());
    let health = HealthBook::default();
    let snap = match config::load_file(&config_path).and_then(|src| snapshot::compile(&src, &registry, &health)) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!("{}: {} error(s), not started", config_path.display(), errors.0.len());
            std::process::exit(1);
        }
    };
    if args.test {
        println!("{}: ok (version {})", config_path.display(), snap.version);
        std::process::exit(0);
    }
    metrics::init();
    serve(args, config_path, snap, registry, health)
}

fn server_conf(snap: &Snapshot, base: &std::path::Path, daemon: bool) -> ServerConf {
    let s = &snap.config.server;
    let mut conf = ServerConf::default();
    conf.threads = s.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    conf.daemon = daemon;
    conf.pid_file = config::resolve(base, &s.pid_file).display().to_string();
    conf.upgrade_sock = config::resolve(base, &s.upgrade_sock).display().to_string();
    // Pingora's own grace period is the time in-flight requests get after the listeners
    // stop; Portico's grace period (serving while the load balancer notices) runs before it.
    conf.grace_period_seconds = Some(s.shutdown_timeout.get().as_secs().max(1));
    conf.graceful_shutdown_timeout_seconds = Some(1);
    // Portico bounds retries per upstream itself.
    conf.max_retries = 16;
    conf
}

fn serve(args: Args, config_path: PathBuf, snap: Snapshot, registry: Registry, health: HealthBook) -> ! {
    let base = config_path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let conf = server_conf(&snap, &base, args.daemon);
    let opt = Opt { upgrade: args.upgrade, daemon: args.daemon, ..Default::default() };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let conf = server.configuration.clone();

    let mut cert_resolvers = HashMap::new();
    for l in &snap.config.listeners {
        if let Some(store) = snap.certs.get(&l.name) {
            cert_resolvers.insert(l.name.clone(), Arc::new(CertResolver { listener: l.name.as_str().into(), store: ArcSwap::new(store.clone()) }));
        }
    }
    let checker = background_service("health checks", HealthChecker::new(snap.pools.values().cloned().collect()));
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(snap),
        registry,
        health,
        config_path,
        draining: AtomicBool::new(false),
        cert_resolvers,
        checker: checker.task(),
        reload_lock: Mutex::new(()),
    });
    let snap = shared.snapshot.load_full();

    for l in &snap.config.listeners {
        let gateway = Gateway {
            listener: l.name.as_str().into(),
            tls: l.tls.is_some(),
            redirect_https: l.redirect_https,
            shared: shared.clone(),
        };
        let mut proxy = pingora_proxy::http_proxy(&conf, gateway);
        let mut opts = HttpServerOptions::default();
        opts.keepalive_request_limit = None;
        proxy.server_options = Some(opts);
        let mut listeners = Listeners::new();
        match &l.tls {
            Some(t) => {
                if l.proxy_protocol {
                    listeners.set_pre_tls_callback(Arc::new(ProxyHeaderBeforeTls { listener: l.name.as_str().into(), shared: shared.clone() }));
                }
                let resolver = shared.cert_resolvers[&l.name].clone();
                let ca = t.client_ca.as_ref().map(|c| config::resolve(&base, c));
                match tls::listener_settings(resolver, &t.min_version, &t.alpn, ca.as_deref()) {
                    Ok(settings) => listeners.add_tls_with_settings(&l.listen, None, settings),
                    Err(e) => {
                        eprintln!("listeners: {}: {e}", l.name);
                        std::process::exit(1);
                    }
                }
            }
            None => listeners.add_tcp(&l.listen),
        }
        let app = ListenerApp {
            name: l.name.as_str().into(),
            proxy: Arc::new(proxy),
            proxy_header: l.proxy_protocol && l.tls.is_none(),
            shared: shared.clone(),
        };
        // The service name is also its threads' name, which the error log uses to tell
        // which listener a failed TLS handshake belongs to.
        let svc = Service::with_listeners(format!("listener {}", l.name), listeners, app);
        server.add_service(svc);
    }

    let mut admin = Service::new("admin".to_string(), Admin { shared: shared.clone() });
    admin.add_tcp(&snap.config.admin.listen);
    admin.threads = Some(1);
    server.add_service(admin);
    server.add_service(checker);
    server.add_service(background_service("signals", Signals { shared: shared.clone() }));

    exit_when_idle_after_shutdown(&server);
    log::info!("portico {} starting: config {} version {}", env!("CARGO_PKG_VERSION"), shared.config_path.display(), snap.version);
    let grace = snap.config.server.grace_period.get();
    server.run(RunArgs { shutdown_signal: Box::new(Shutdown { shared, grace }) });
    std::process::exit(0)
}

/// Pingora waits its whole grace period even with nothing in flight; leave as soon as the
/// last request is done instead, so a drained instance exits promptly.
fn exit_when_idle_after_shutdown(server: &Server) {
    let mut phases = server.watch_execution_phase();
    std::thread::spawn(move || {
        use pingora_core::server::ExecutionPhase;
        loop {
            match phases.blocking_recv() {
                Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
        // A short pause lets connections that were accepted just before close get read.
        std::thread::sleep(Duration::from_millis(200));
        while IN_FLIGHT.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        log::info!("no request in flight: exiting");
        std::process::exit(0);
    });
}

/// SIGTERM: say "not ready" at once, keep serving for the grace period while the load
/// balancer notices, then let Pingora stop the listeners. SIGQUIT: hand the sockets to a
/// new process. SIGINT: leave now.
struct Shutdown {
    shared: Arc<Shared>,
    grace: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for Shutdown {
    async fn recv(&self) -> ShutdownSignal {
        let mut quit = signal(SignalKind::quit()).expect("SIGQUIT handler");
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = quit.recv() => {
                log::info!("SIGQUIT: handing the listening sockets to the new process");
                ShutdownSignal::GracefulUpgrade
            }
            _ = int.recv() => ShutdownSignal::FastShutdown,
            _ = term.recv() => {
                self.shared.draining.store(true, Ordering::SeqCst);
                log::info!("SIGTERM: /readyz now answers 503; serving for {:?} more, then draining", self.grace);
                let until = Instant::now() + self.grace;
                tokio::select! {
                    _ = tokio::time::sleep_until(until.into()) => ShutdownSignal::GracefulTerminate,
                    _ = int.recv() => ShutdownSignal::FastShutdown,
                }
            }
        }
    }
}

/// SIGHUP reloads the config; SIGUSR1 reopens log files.
struct Signals {
    shared: Arc<Shared>,
}

#[async_trait]
impl BackgroundService for Signals {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
        let mut usr1 = signal(SignalKind::user_defined1()).expect("SIGUSR1 handler");
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    log::info!("SIGHUP: reloading {}", self.shared.config_path.display());
                    let shared = self.shared.clone();
                    let _ = tokio::task::spawn_blocking(move || crate::reload::reload(&shared)).await;
                }
                _ = usr1.recv() => {
                    log::info!("SIGUSR1: reopening log files");
                    crate::log_reopen::request_reopen();
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
