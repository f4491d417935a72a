//! The process: command line, building Pingora's server from Portico's config, listeners,
//! signals, and the shutdown sequence a load balancer can follow.

use crate::admin::Admin;
use crate::config;
use crate::listener::{ListenerApp, ProxyHeaderBeforeTls};
use crate::metrics;
use crate::plugin::Registry;
use crate::proxy::Gateway;
use crate::snapshot::{self, HealthBook, Snapshot};
use crate::tls::{self, CertResolver};
use crate::upstream::Upkeep;
use crate::Shared;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::apps::{HttpServerOptions, ServerApp};
use pingora_core::listeners::{
    L4BufferSettings, ListenerConfig, Listeners, DEFAULT_L4_WRITE_BUFFER_SIZE,
};
use pingora_core::protocols::Stream;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::ListenFds;
use pingora_core::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::listening::Service;
use pingora_core::services::{ServiceReadyNotifier, ServiceWithDependents};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

/// Requests between their head being read and the end of their logging phase, across all
/// listeners.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Counts one request in flight for as long as it lives (it sits in the request's context).
pub(crate) struct InFlight(());

impl InFlight {
    pub(crate) fn start() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Set once this process is on its way out (SIGTERM, or SIGQUIT with a new process waiting):
/// responses then carry `Connection: close`, so keep-alive clients reconnect through the
/// load balancer (or to the new process) instead of holding on to this one.
static WINDING_DOWN: AtomicBool = AtomicBool::new(false);

pub(crate) fn winding_down() -> bool {
    WINDING_DOWN.load(Ordering::Relaxed)
}

/// Listeners whose shutdown clean-up (see [`Settle`]) has finished.
static LISTENERS_SETTLED: AtomicUsize = AtomicUsize::new(0);

/// How long a stopped listener still lets connections it already accepted deliver their
/// first request (a TLS handshake and a request head take milliseconds), before the idle
/// keep-alive connections are closed.
const SETTLE: Duration = Duration::from_secs(1);

struct Args {
    /// A file, or `etcd://…` (fleet/source.rs).
    config: PathBuf,
    test: bool,
    /// `-t --push etcd://…`: where to store the config once `-t` accepts it.
    push: Option<String>,
    upgrade: bool,
    daemon: bool,
    explain: Option<crate::explain::Request>,
}

const USAGE: &str = "usage: portico [-c FILE|etcd://HOST:PORT[,HOST:PORT]/KEY] [-t [--push etcd://HOST:PORT/KEY]] [-u] [-d] [--explain ...]
  -c, --config FILE   the config file (default: conf/portico.yaml), or a key in etcd to follow
  -t, --test          check the config and exit: 0 valid, 1 invalid
      --push URL      with -t: store the config at that etcd key if valid; prints the revision
  -u, --upgrade       take over the listening sockets of the running instance
  -d, --daemon        run in the background
      --explain 'METHOD URL' [-H 'Name: value']... [--listener NAME] [--client-ip IP] [--json]
                      print how that request would be handled and exit: 0 a route
                      matches, 3 none would, 1 invalid config; nothing is started
  -V, --version       print the version";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        config: PathBuf::from("conf/portico.yaml"),
        test: false,
        push: None,
        upgrade: false,
        daemon: false,
        explain: None,
    };
    let mut explain = crate::explain::Request::default();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--config" | "--conf" => {
                args.config = it.next().ok_or("-c needs a file")?.into()
            }
            s if s.starts_with("--config=") => args.config = s["--config=".len()..].into(),
            "-t" | "--test" => args.test = true,
            "--push" => args.push = Some(it.next().ok_or("--push needs an etcd:// URL")?),
            s if s.starts_with("--push=") => args.push = Some(s["--push=".len()..].into()),
            "-u" | "--upgrade" => args.upgrade = true,
            "-d" | "--daemon" => args.daemon = true,
            "--explain" => explain.line = it.next().ok_or("--explain needs 'METHOD URL'")?,
            "-H" | "--header" => explain
                .headers
                .push(it.next().ok_or("-H needs 'Name: value'")?),
            "--listener" => explain.listener = Some(it.next().ok_or("--listener needs a name")?),
            "--client-ip" => explain.client_ip = Some(it.next().ok_or("--client-ip needs an IP")?),
            "--json" => explain.json = true,
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
    if args.push.is_some() && !args.test {
        return Err(format!(
            "--push goes with -t: the config is stored only if valid\n{USAGE}"
        ));
    }
    let explaining = !explain.line.is_empty();
    if !explaining
        && (explain.json
            || explain.listener.is_some()
            || explain.client_ip.is_some()
            || !explain.headers.is_empty())
    {
        return Err(format!(
            "-H, --listener, --client-ip and --json go with --explain\n{USAGE}"
        ));
    }
    args.explain = explaining.then_some(explain);
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
    let health = HealthBook::default();
    let (origin, fetched) = match crate::fleet::Origin::open(&args.config) {
        Ok(opened) => opened,
        Err(errors) => not_started(&args.config.display(), &errors),
    };
    let snap = match snapshot::compile(&fetched.source, &registry, &health) {
        Ok(s) => s,
        Err(errors) => not_started(&origin, &errors),
    };
    if let Some(request) = &args.explain {
        crate::explain::run(&snap, request);
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

/// Prints a config's errors and exits 1.
fn not_started(config: &dyn std::fmt::Display, errors: &config::ConfigErrors) -> ! {
    for e in &errors.0 {
        eprintln!("{e}");
    }
    eprintln!("{config}: {} error(s), not started", errors.0.len());
    std::process::exit(1);
}

fn server_conf(snap: &Snapshot, base: &std::path::Path, daemon: bool) -> ServerConf {
    let s = &snap.config.server;
    ServerConf {
        threads: s.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }),
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
        ..Default::default()
    }
}

fn serve(
    args: Args,
    origin: crate::fleet::Origin,
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
    let listeners: Vec<&str> = snap
        .config
        .listeners
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    crate::acme::go_live(&listeners, &snap.acme, &cert_resolvers);
    let upkeep = background_service(
        "upstream upkeep",
        Upkeep::new(snap.pools.values().cloned().collect()),
    );
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(snap),
        registry,
        health,
        origin,
        draining: AtomicBool::new(false),
        cert_resolvers,
        upkeep: upkeep.task(),
        reload_lock: Mutex::new(()),
    });
    let snap = shared.snapshot.load_full();
    metrics::track_snapshot(&snap);

    let mut listener_services = Vec::new();
    for (index, l) in snap.config.listeners.iter().enumerate() {
        let gateway = Gateway {
            listener: l.name.as_str().into(),
            index,
            tls: l.tls.is_some(),
            redirect_https: l.redirect_https,
            port: l
                .listen
                .parse::<std::net::SocketAddr>()
                .map_or(http::HeaderValue::from_static(""), |a| a.port().into()),
            shared: shared.clone(),
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
                        shared: shared.clone(),
                        untrusted_warning: Default::default(),
                    }));
                }
                let resolver = shared.cert_resolvers[&l.name].clone();
                match tls::listener_settings(resolver, &t.min_version, &t.alpn) {
                    Ok(settings) => listeners.add_listener(endpoint(&l.listen).tls(settings)),
                    Err(e) => {
                        eprintln!("listeners: {}: {e}", l.name);
                        std::process::exit(1);
                    }
                }
            }
            None => listeners.add_listener(endpoint(&l.listen)),
        }
        let app = ListenerApp {
            name: l.name.as_str().into(),
            proxy: Arc::new(proxy),
            proxy_header: l.proxy_protocol && l.tls.is_none(),
            conns: Default::default(),
            closing: Default::default(),
            untrusted_warning: Default::default(),
            shared: shared.clone(),
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
            },
        );
        listener_services.push(server.add_service(Bound {
            name: l.name.clone(),
            addr: l.listen.clone(),
            service: Some(svc),
        }));
    }

    let signals = server.add_service(background_service(
        "signals",
        Signals {
            shared: shared.clone(),
            daemon: args.daemon,
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
    admin.add_tcp(&snap.config.admin.listen);
    admin.threads = Some(1);
    let admin = server.add_service(admin);
    // The admin listener (and so `/readyz`) starts only once every listener listens and the
    // signals have handlers (a SIGHUP before that would kill the process).
    admin.add_dependencies(&listener_services);
    admin.add_dependency(&signals);
    server.add_service(upkeep);
    server.add_service(background_service("acme", crate::acme::Service));

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

/// A listening endpoint without Pingora's L4 read buffer (64 KiB per connection, resident
/// for its whole life): OpenSSL reads ahead into its own under TLS, Pingora reads a request
/// head into its own, and a PROXY header is read in large reads with the rest put back (see
/// `benches/README.md` for what it costs and saves).
fn endpoint(addr: &str) -> ListenerConfig {
    ListenerConfig::tcp(addr).l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE))
}

fn write_pid_file(path: &str) {
    if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
        log::warn!("cannot write the pid file {path}: {e}");
    }
}

/// Removes the pid file unless a newer process (an upgrade) has written its own pid there.
fn remove_pid_file(path: &str) {
    if std::fs::read_to_string(path).is_ok_and(|s| s.trim() == std::process::id().to_string()) {
        let _ = std::fs::remove_file(path);
    }
}

/// Pingora waits its whole grace period even with nothing in flight; leave as soon as every
/// listener has stopped and settled and the last request is done, so that a drained instance
/// exits promptly. A plain thread, not a task: the runtimes are being shut down. Started
/// once shutdown begins, from inside the running server, because threads made before `-d`
/// forks do not survive it.
fn exit_when_idle(listeners: usize, pid_file: String) {
    std::thread::spawn(move || {
        while LISTENERS_SETTLED.load(Ordering::SeqCst) < listeners
            || IN_FLIGHT.load(Ordering::SeqCst) > 0
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Lets log writers flush what the last requests left them.
        std::thread::sleep(Duration::from_millis(100));
        log::info!("no request in flight: exiting");
        remove_pid_file(&pid_file);
        std::process::exit(0);
    });
}

/// A listener's application with a gentler stop. When a listener stops accepting, Pingora's
/// clean-up closes every connection still waiting for a request head — including ones
/// accepted a moment earlier whose TLS handshake or first request is still on its way, which
/// during an upgrade would be dropped connections. Waiting `settle` first lets those
/// requests in (they are answered with `Connection: close`).
struct Settle {
    app: Arc<ListenerApp>,
    settle: Duration,
}

#[async_trait]
impl ServerApp for Settle {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.app.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        tokio::time::sleep(self.settle).await;
        self.app.cleanup().await;
        LISTENERS_SETTLED.fetch_add(1, Ordering::SeqCst);
    }
}

/// A listener's service that is ready (for `/readyz`, which waits for it) only once its
/// socket listens — bound now, or received from the old process in an upgrade — and that
/// ends the process when the socket cannot be had (Pingora retries an address in use for a
/// while, then gives up with a panic that would otherwise leave the process running
/// without this listener).
struct Bound {
    name: String,
    addr: String,
    service: Option<Service<Settle>>,
}

#[async_trait]
impl ServiceWithDependents for Bound {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready: ServiceReadyNotifier,
    ) {
        let Some(mut service) = self.service.take() else {
            return;
        };
        let table = fds.clone();
        let mut run = tokio::spawn(async move {
            pingora_core::services::Service::start_service(
                &mut service,
                fds,
                shutdown,
                listeners_per_fd,
            )
            .await
        });
        let listening = async {
            while table
                .as_ref()
                .is_none_or(|t| t.lock().get(&self.addr).is_none())
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            _ = listening => ready.notify_ready(),
            result = &mut run => {
                if let Err(e) = result {
                    log::error!("listener {}: cannot listen on {}: {e}; exiting", self.name, self.addr);
                    std::process::exit(1);
                }
                return;
            }
        }
        if let Err(e) = run.await {
            log::error!("listener {}: stopped: {e}; exiting", self.name);
            std::process::exit(1);
        }
    }

    fn name(&self) -> &str {
        self.service
            .as_ref()
            .map_or("listener", |s| ServiceWithDependents::name(s))
    }

    fn threads(&self) -> Option<usize> {
        self.service
            .as_ref()
            .and_then(ServiceWithDependents::threads)
    }

    /// Pingora closes inherited sockets that no service claims (a listener removed by an
    /// upgrade) by these.
    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.service
            .as_ref()
            .and_then(ServiceWithDependents::listen_addresses)
    }
}

/// SIGTERM: say "not ready" at once, keep serving for the grace period while the load
/// balancer notices, then let Pingora stop the listeners. SIGQUIT: hand the sockets to a
/// new process, when one is waiting for them. SIGINT: leave now.
struct Shutdown {
    shared: Arc<Shared>,
    upgrade_sock: PathBuf,
}

/// How long SIGQUIT waits for a new `-u` process to open the upgrade socket; Pingora's own
/// sender would give up after about as long.
const UPGRADE_WAIT: Duration = Duration::from_secs(5);

#[async_trait]
impl ShutdownSignalWatch for Shutdown {
    async fn recv(&self) -> ShutdownSignal {
        let mut quit = signal(SignalKind::quit()).expect("SIGQUIT handler");
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        loop {
            tokio::select! {
                _ = quit.recv() => {
                    // Pingora hands the sockets over and then drains whether or not anyone
                    // took them: without a new process, that would take this instance down.
                    if self.wait_for_upgrade_socket().await {
                        WINDING_DOWN.store(true, Ordering::SeqCst);
                        log::info!("SIGQUIT: handing the listening sockets to the new process at {}", self.upgrade_sock.display());
                        return ShutdownSignal::GracefulUpgrade;
                    }
                    log::error!(
                        "SIGQUIT ignored: no new process is waiting on {} (start `portico -u` first); still serving",
                        self.upgrade_sock.display()
                    );
                }
                _ = int.recv() => return ShutdownSignal::FastShutdown,
                _ = term.recv() => {
                    self.shared.draining.store(true, Ordering::SeqCst);
                    WINDING_DOWN.store(true, Ordering::SeqCst);
                    // The running config's: a reload may have changed it.
                    let grace = self.shared.snapshot.load().config.server.grace_period.get();
                    log::info!("SIGTERM: /readyz now answers 503; serving for {grace:?} more, then draining");
                    let until = Instant::now() + grace;
                    return tokio::select! {
                        _ = tokio::time::sleep_until(until.into()) => ShutdownSignal::GracefulTerminate,
                        _ = int.recv() => ShutdownSignal::FastShutdown,
                    };
                }
            }
        }
    }
}

impl Shutdown {
    /// Whether a new process is waiting on the upgrade socket (it creates the socket when it
    /// starts waiting and removes it once it has the listeners).
    async fn wait_for_upgrade_socket(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        let deadline = Instant::now() + UPGRADE_WAIT;
        loop {
            if std::fs::symlink_metadata(&self.upgrade_sock)
                .is_ok_and(|m| m.file_type().is_socket())
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// SIGHUP reloads the config; SIGUSR1 reopens log files. Its start also does what must
/// happen in the process that serves (after a daemon's fork).
struct Signals {
    shared: Arc<Shared>,
    daemon: bool,
    listeners: usize,
    /// Names this process (written at start), removed when it exits gracefully.
    pid_file: String,
}

#[async_trait]
impl BackgroundService for Signals {
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
        let mut usr1 = signal(SignalKind::user_defined1()).expect("SIGUSR1 handler");
        if self.daemon {
            // Threads started before the fork (a plugin's log writer) did not survive it:
            // build the snapshot again, here in the process that serves.
            let shared = self.shared.clone();
            let _ = tokio::task::spawn_blocking(move || crate::reload::rebuild(&shared)).await;
        }
        // A config in etcd is followed from here on (threads do not survive a daemon's fork).
        crate::reload::follow(&self.shared);
        if let Some(cfg) = self.shared.snapshot.load().config.server.tracing.clone() {
            // Here, after a `-d` fork, and on a thread of its own: the exporter's blocking
            // HTTP client must not be built inside the async runtime.
            let started = std::thread::spawn(move || crate::traces::start(&cfg)).join();
            if let Ok(Err(e)) = started {
                log::error!("tracing is off: {e}");
            }
        }
        ready.notify_ready();
        let mut stopping = false;
        // Keeps going until the process exits: a log rotation during a long drain still works.
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    log::info!("SIGHUP: reloading {}", self.shared.origin);
                    let shared = self.shared.clone();
                    let _ = tokio::task::spawn_blocking(move || crate::reload::reload(&shared)).await;
                }
                _ = usr1.recv() => {
                    log::info!("SIGUSR1: reopening log files");
                    crate::log_reopen::request_reopen();
                }
                r = shutdown.changed(), if !stopping => {
                    if r.is_err() || *shutdown.borrow() {
                        stopping = true;
                        exit_when_idle(self.listeners, self.pid_file.clone());
                    }
                }
            }
        }
    }
}
