//! Reload: re-read the config file, compile a new snapshot off the request path, and swap it
//! in one step. An invalid file changes nothing.

use crate::config::{self, ConfigErrors, ListenerConfig};
use crate::metrics;
use crate::snapshot::{self, Snapshot};
use crate::Shared;
use std::sync::Arc;

/// Reloads from the config file. On success returns the new version.
pub fn reload(shared: &Shared) -> Result<String, ConfigErrors> {
    // One reload at a time; requests never wait on this lock.
    let _guard = shared.reload_lock.lock().unwrap();
    let result = load_and_check(shared);
    match &result {
        Ok(snap) => {
            let version = snap.version.clone();
            apply(shared, snap.clone());
            metrics::CONFIG_RELOADS.with_label_values(&["success"]).inc();
            log::info!("config reloaded: version {version}");
            Ok(version)
        }
        Err(e) => {
            metrics::CONFIG_RELOADS.with_label_values(&["failure"]).inc();
            for line in e.messages() {
                log::error!("config reload refused, the running config stays: {line}");
            }
            Err(e.clone())
        }
    }
}

fn load_and_check(shared: &Shared) -> Result<Arc<Snapshot>, ConfigErrors> {
    let src = config::load_file(&shared.config_path)?;
    let snap = snapshot::compile(&src, &shared.registry, &shared.health)?;
    let current = shared.snapshot.load();
    let mut problems = config::Problems::new(&src.lines);
    // Sockets are bound once; a change to them needs a new process (`portico -u`).
    if !same_listeners(&current.config.listeners, &snap.config.listeners) {
        problems.add("listeners", "listeners changed (address, TLS settings, names or PROXY protocol): this needs a binary upgrade (`portico -u`), not a reload; only certificate files are reloaded");
    }
    if current.config.admin.listen != snap.config.admin.listen {
        problems.add("admin.listen", "the admin address changed: this needs a binary upgrade (`portico -u`), not a reload");
    }
    problems.into_result()?;
    Ok(Arc::new(snap))
}

/// Listeners compared without their certificate files, which a reload may change.
fn same_listeners(a: &[ListenerConfig], b: &[ListenerConfig]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.listen == y.listen
                && x.proxy_protocol == y.proxy_protocol
                && x.redirect_https == y.redirect_https
                && x.tls.is_some() == y.tls.is_some()
                && match (&x.tls, &y.tls) {
                    (Some(s), Some(t)) => s.min_version == t.min_version && s.alpn == t.alpn && s.client_ca == t.client_ca,
                    _ => true,
                }
        })
}

fn apply(shared: &Shared, snap: Arc<Snapshot>) {
    for (name, resolver) in &shared.cert_resolvers {
        if let Some(store) = snap.certs.get(name) {
            resolver.store.store(store.clone());
        }
    }
    shared.checker.update(snap.pools.values().cloned().collect());
    shared.snapshot.store(snap);
}
