//! The managers of the config that serves: one per distinct `listeners[].tls.acme`, made
//! when a config goes live (at start, after a reload; never for `portico -t` or a reload
//! that is refused), kept across reloads that leave their config as it was, and stopped
//! when a reload drops or changes it. Each manager's certificate is installed into its
//! listeners' certificate stores on every change, without a reload (docs/acme.md).

use super::{Acme, AcmeConfig, Certificate, Challenge};
use crate::tls::{CertResolver, CertifiedKey};
use arc_swap::ArcSwap;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One listener served by a manager.
#[derive(Clone)]
pub struct Served {
    pub listener: String,
    pub acme: Arc<Acme>,
    pub resolver: Arc<CertResolver>,
}

/// What serves now, for the listeners' challenge answers, `/status` and the metrics.
static LIVE: LazyLock<ArcSwap<Vec<Served>>> = LazyLock::new(Default::default);
/// Whether any live manager uses HTTP-01: without one, plain listeners route
/// `/.well-known/acme-challenge/` like any other path.
static HTTP01: AtomicBool = AtomicBool::new(false);
/// Bumped by every [`go_live`], so that [`Service`] starts and stops tasks.
static GENERATION: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::Sender::new(0));

/// The listeners a manager serves now, in config order.
pub fn live() -> Arc<Vec<Served>> {
    LIVE.load_full()
}

pub(crate) fn http01_live() -> bool {
    HTTP01.load(Ordering::Relaxed)
}

/// Makes `configs` (listener name → its resolved `acme`) the ones served: a manager whose
/// config is unchanged is kept with its certificate, a new one serves its placeholder until
/// storage or the CA gives it one. Each listener's store gets its current certificate at
/// once; the managers themselves run in [`Service`]. `listeners`: the config's listener
/// names in order.
pub fn go_live(
    listeners: &[&str],
    configs: &HashMap<String, AcmeConfig>,
    resolvers: &HashMap<String, Arc<CertResolver>>,
) {
    let old = LIVE.load_full();
    let mut served: Vec<Served> = Vec::new();
    for &listener in listeners {
        let (Some(config), Some(resolver)) = (configs.get(listener), resolvers.get(listener))
        else {
            continue;
        };
        let same = |s: &&Served| s.acme.config() == config;
        let acme = match served.iter().find(same).or_else(|| old.iter().find(same)) {
            Some(s) => s.acme.clone(),
            None => match Acme::new(config.clone()) {
                Ok(acme) => acme,
                Err(e) => {
                    log::error!("listener {listener}: acme: {e}; no certificate is ordered");
                    continue;
                }
            },
        };
        install(listener, resolver, &acme.certificate());
        served.push(Served {
            listener: listener.to_string(),
            acme,
            resolver: resolver.clone(),
        });
    }
    for s in old.iter() {
        if !served.iter().any(|n| n.listener == s.listener) {
            s.resolver.set_acme(Vec::new(), Vec::new());
        }
    }
    HTTP01.store(
        served
            .iter()
            .any(|s| s.acme.challenge() == Challenge::Http01),
        Ordering::Relaxed,
    );
    LIVE.store(Arc::new(served));
    GENERATION.send_modify(|g| *g += 1);
}

/// Puts `certificate` into the listener's store: an issued one before the configured
/// certificates, a placeholder after them (served only where nothing configured is), and
/// leaving in front a certificate issued for the listener's previous `acme` block: after a
/// reload that changed the names, the old certificate serves until the new one is issued.
fn install(listener: &str, resolver: &CertResolver, certificate: &Certificate) {
    let key = match certified_key(certificate) {
        Ok(key) => key,
        Err(e) => {
            log::error!("listener {listener}: acme: cannot serve the certificate: {e}");
            return;
        }
    };
    if certificate.placeholder {
        resolver.set_acme_last(vec![key]);
    } else {
        resolver.set_acme(vec![key], Vec::new());
    }
}

fn certified_key(c: &Certificate) -> Result<CertifiedKey, String> {
    let chain =
        boring::x509::X509::stack_from_pem(c.chain_pem.as_bytes()).map_err(|e| e.to_string())?;
    if chain.is_empty() {
        return Err("an empty chain".into());
    }
    let key = boring::pkey::PKey::private_key_from_pem(c.key_pem.as_bytes())
        .map_err(|e| e.to_string())?;
    Ok(CertifiedKey {
        names: c.names.clone(),
        chain,
        key,
        ocsp: None,
    })
}

/// Runs the live managers, and for each listener a task that installs every new
/// certificate. Readiness does not wait for it (nor for the CA).
pub struct Service;

#[async_trait::async_trait]
impl BackgroundService for Service {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut generation = GENERATION.subscribe();
        let mut managers: Vec<(Arc<Acme>, JoinHandle<()>)> = Vec::new();
        let mut installers: Vec<JoinHandle<()>> = Vec::new();
        loop {
            generation.borrow_and_update();
            let live = LIVE.load_full();
            managers.retain(|(acme, task)| {
                let kept = live.iter().any(|s| Arc::ptr_eq(&s.acme, acme));
                if !kept {
                    // A lock it held frees itself when its lease runs out.
                    task.abort();
                }
                kept
            });
            for s in live.iter() {
                if !managers.iter().any(|(a, _)| Arc::ptr_eq(a, &s.acme)) {
                    managers.push((s.acme.clone(), s.acme.spawn()));
                }
            }
            for t in installers.drain(..) {
                t.abort();
            }
            for s in live.iter() {
                installers.push(tokio::spawn(keep_installed(s.clone())));
            }
            tokio::select! {
                r = generation.changed() => if r.is_err() { break },
                _ = shutdown.changed() => break,
            }
        }
        for (_, t) in managers {
            t.abort();
        }
        for t in installers {
            t.abort();
        }
    }
}

async fn keep_installed(s: Served) {
    let mut certificates = s.acme.subscribe();
    loop {
        let certificate = certificates.borrow_and_update().clone();
        install(&s.listener, &s.resolver, &certificate);
        if certificates.changed().await.is_err() {
            return;
        }
    }
}
