//! The signals a running instance acts on without stopping.

use super::shared::Shared;
use super::shutdown::exit_when_idle;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

/// SIGHUP reloads the config; SIGUSR1 reopens log files. Its start also starts the live
/// config's plugins, in the process that serves (after a daemon's fork).
pub(super) struct Signals {
    pub(super) shared: Arc<Shared>,
    pub(super) listeners: usize,
    /// Names this process (written at start), removed when it exits gracefully.
    pub(super) pid_file: String,
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
        // The plugins of the config that went live start here, in the process that serves:
        // after a daemon's fork (threads started before it would not survive), and before a
        // reload can replace them (SIGHUP is handled only from here on, and the admin
        // endpoints wait for this service).
        self.shared.snapshot.load().start_plugins();
        // A config in etcd is followed from here on (threads do not survive a daemon's fork).
        super::reload::follow(&self.shared);
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
                    let _ = tokio::task::spawn_blocking(move || super::reload::reload(&shared)).await;
                }
                _ = usr1.recv() => {
                    log::info!("SIGUSR1: reopening log files");
                    crate::log_reopen::request_reopen();
                }
                r = shutdown.changed(), if !stopping => {
                    if r.is_err() || *shutdown.borrow() {
                        stopping = true;
                        exit_when_idle(self.shared.lifecycle.clone(), self.listeners, self.pid_file.clone());
                    }
                }
            }
        }
    }
}
