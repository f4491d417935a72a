//! Reload: re-read the config (the file, or the key in etcd), compile a new snapshot off the
//! request path, and swap it in one step. An invalid config changes nothing. A config
//! followed in etcd comes here with every new revision (docs/deployment.md, "A fleet").

use super::shared::Shared;
use crate::config::{self, ConfigErrors, ListenerConfig};
use crate::fleet::Fetched;
use crate::metrics;
use crate::snapshot::{self, Snapshot};
use std::sync::Arc;

/// Reloads from the config's origin (SIGHUP, `POST /reload`). On success returns the new
/// version.
pub fn reload(shared: &Shared) -> Result<String, ConfigErrors> {
    // One reload at a time; requests never wait on this lock.
    let _guard = shared.reload_lock.lock().unwrap();
    let fetched = shared.origin.fetch();
    reload_with(shared, fetched)
}

/// Follows the config's origin, if it is a key in etcd: each new revision is reloaded here.
/// Runs in the process that serves (after a daemon's fork).
pub fn follow(shared: &Arc<Shared>) {
    let on = shared.clone();
    shared.origin.follow(move |fetched| {
        let _guard = on.reload_lock.lock().unwrap();
        reload_with(&on, fetched)
    });
}

fn reload_with(
    shared: &Shared,
    fetched: Result<Fetched, ConfigErrors>,
) -> Result<String, ConfigErrors> {
    let checked = fetched.and_then(|f| load_and_check(shared, &f).map(|snap| (f, snap)));
    match checked {
        Ok((fetched, _)) if shared.origin.is_stale(&fetched) => {
            // A reload's read crossed a newer revision the follower applied first.
            let version = shared.snapshot.load().version.clone();
            log::info!(
                "{}: revision {:?} is older than the one served; kept",
                shared.origin,
                fetched.revision()
            );
            Ok(version)
        }
        Ok((fetched, snap)) => {
            let version = snap.version.clone();
            for w in &snap.warnings {
                log::warn!("config: {w}");
            }
            shared.origin.serving(&fetched);
            apply(shared, snap);
            shared.origin.applied(&fetched);
            metrics::CONFIG_RELOADS
                .with_label_values(&["success"])
                .inc();
            match fetched.revision() {
                Some(r) => log::info!("config reloaded: version {version}, etcd revision {r}"),
                None => log::info!("config reloaded: version {version}"),
            }
            Ok(version)
        }
        Err(e) => {
            metrics::CONFIG_RELOADS
                .with_label_values(&["failure"])
                .inc();
            for line in e.messages() {
                log::error!("config reload refused, the running config stays: {line}");
            }
            Err(e)
        }
    }
}

fn load_and_check(shared: &Shared, fetched: &Fetched) -> Result<Arc<Snapshot>, ConfigErrors> {
    let src = &fetched.source;
    let snap = snapshot::compile(src, &shared.registry, &shared.health)?;
    let current = shared.snapshot.load();
    let mut problems = config::Problems::new(&src.lines);
    // Sockets are bound once; a change to them needs a new process (`portico -u`).
    listener_changes(
        &current.config.listeners,
        &snap.config.listeners,
        &mut problems,
    );
    if current.config.admin.listen != snap.config.admin.listen {
        problems.add(
            "admin.listen",
            format!(
                "changed from {} to {}: a new address needs a binary upgrade (`portico -u`), not a reload",
                *current.config.admin.listen, *snap.config.admin.listen
            ),
        );
    }
    problems.into_result()?;
    // What sizes the process itself is read once, at start; say so rather than pretend.
    let (was, now) = (&current.config.server, &snap.config.server);
    for (key, changed) in [
        ("threads", was.threads != now.threads),
        (
            "shutdown_timeout",
            was.shutdown_timeout.get() != now.shutdown_timeout.get(),
        ),
        ("pid_file", was.pid_file != now.pid_file),
        ("upgrade_sock", was.upgrade_sock != now.upgrade_sock),
        (
            "upstream_keepalive_pool",
            was.upstream_keepalive_pool != now.upstream_keepalive_pool,
        ),
    ] {
        if changed {
            log::warn!("config reload: server.{key} changed; it takes effect at the next start or binary upgrade");
        }
    }
    Ok(Arc::new(snap))
}

const NEEDS_UPGRADE: &str = "needs a binary upgrade (`portico -u`), not a reload";

/// Reports every listener change a reload cannot apply, by key path. Certificate files and
/// client certificate checks (`client_ca`, `client_auth`) are the parts of a listener that a
/// reload does change.
fn listener_changes(old: &[ListenerConfig], new: &[ListenerConfig], p: &mut config::Problems) {
    if old.len() != new.len() {
        p.add(
            "listeners",
            format!(
                "{} listeners instead of {}: adding or removing a listener {NEEDS_UPGRADE}",
                new.len(),
                old.len()
            ),
        );
        return;
    }
    for (i, (x, y)) in old.iter().zip(new).enumerate() {
        let at = format!("listeners[{i}]");
        if x.name != y.name {
            p.add(
                format!("{at}.name"),
                format!(
                    "changed from {:?} to {:?}: renaming a listener {NEEDS_UPGRADE}",
                    x.name, y.name
                ),
            );
        }
        if x.listen != y.listen {
            p.add(
                format!("{at}.listen"),
                format!(
                    "changed from {} to {}: a new address {NEEDS_UPGRADE}",
                    *x.listen, *y.listen
                ),
            );
        }
        if x.proxy_protocol != y.proxy_protocol {
            p.add(
                format!("{at}.proxy_protocol"),
                format!("changed: {NEEDS_UPGRADE}"),
            );
        }
        if x.redirect_https != y.redirect_https {
            p.add(
                format!("{at}.redirect_https"),
                format!("changed: {NEEDS_UPGRADE}"),
            );
        }
        match (&x.tls, &y.tls) {
            (Some(s), Some(t)) => {
                if s.min_version != t.min_version {
                    p.add(
                        format!("{at}.tls.min_version"),
                        format!("changed: {NEEDS_UPGRADE}"),
                    );
                }
                if s.alpn != t.alpn {
                    p.add(
                        format!("{at}.tls.alpn"),
                        format!("changed: {NEEDS_UPGRADE}"),
                    );
                }
            }
            (None, None) => {}
            _ => p.add(
                format!("{at}.tls"),
                format!("TLS turned on or off: {NEEDS_UPGRADE}"),
            ),
        }
    }
}

fn apply(shared: &Shared, snap: Arc<Snapshot>) {
    for (name, resolver) in &shared.cert_resolvers {
        if let Some(store) = snap.certs.get(name) {
            resolver.replace(store.clone());
        }
    }
    let listeners = snap.listener_names();
    crate::acme::go_live(&listeners, &snap.acme, &shared.cert_resolvers);
    shared.upkeep.update(snap.pools.values().cloned().collect());
    snap.publish_metrics();
    shared.snapshot.store(snap.clone());
    // Only now, live: a refused config never started anything (`Plugin::start`).
    snap.start_plugins();
}
