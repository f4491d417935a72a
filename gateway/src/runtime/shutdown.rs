//! Leaving: the pid file, the signals that end the process, and leaving early once idle.

use super::shared::Shared;
use crate::lifecycle::Lifecycle;
use async_trait::async_trait;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

pub(super) fn write_pid_file(path: &str) {
    if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
        log::warn!("cannot write the pid file {path}: {e}");
    }
}

/// Removes the pid file unless a newer process (an upgrade) has written its own pid there.
pub(super) fn remove_pid_file(path: &str) {
    if std::fs::read_to_string(path).is_ok_and(|s| s.trim() == std::process::id().to_string()) {
        let _ = std::fs::remove_file(path);
    }
}

/// Pingora waits its whole grace period even with nothing in flight; leave as soon as every
/// listener has stopped and settled and the last request is done, so that a drained instance
/// exits promptly. A plain thread, not a task: the runtimes are being shut down. Started
/// once shutdown begins, from inside the running server, because threads made before `-d`
/// forks do not survive it.
pub(super) fn exit_when_idle(lifecycle: Arc<Lifecycle>, listeners: usize, pid_file: String) {
    std::thread::spawn(move || {
        while !lifecycle.is_idle(listeners) {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Lets log writers flush what the last requests left them.
        std::thread::sleep(Duration::from_millis(100));
        log::info!("no request in flight: exiting");
        remove_pid_file(&pid_file);
        std::process::exit(0);
    });
}

/// SIGTERM: say "not ready" at once, keep serving for the grace period while the load
/// balancer notices, then let Pingora stop the listeners. SIGQUIT: hand the sockets to a
/// new process, when one is waiting for them. SIGINT: leave now.
pub(super) struct Shutdown {
    pub(super) shared: Arc<Shared>,
    pub(super) upgrade_sock: PathBuf,
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
                        self.shared.lifecycle.wind_down();
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
                    self.shared.lifecycle.start_draining();
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
