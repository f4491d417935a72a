//! What a config may say validly but most likely does not mean: reported by `portico -t`
//! (exit 0) and logged (WARN) at start and on reload, one line each, at its key path.

use super::{Config, ConfigError, LineIndex};
use std::path::Path;

/// Every warning about `cfg`, in file order.
pub fn warnings(cfg: &Config, base: &Path, lines: &LineIndex) -> Vec<ConfigError> {
    unbound_routes(cfg, base, lines)
}

/// A route without `match.listeners` is served on every listener, so where listeners differ
/// in `client_ca` it is reachable without the client certificate one of them demands: most
/// likely not what was meant. One warning per such route, at its key path.
fn unbound_routes(cfg: &Config, base: &Path, lines: &LineIndex) -> Vec<ConfigError> {
    // Listeners that only redirect serve no route.
    let serving: Vec<_> = cfg
        .listeners
        .iter()
        .filter(|l| l.redirect_https.is_none())
        .map(|l| {
            let ca = l.tls.as_ref().and_then(|t| t.client_ca.as_deref());
            (l.name.as_str(), ca.map(|c| super::resolve(base, c)))
        })
        .collect();
    if serving.windows(2).all(|w| w[0].1 == w[1].1) {
        return Vec::new();
    }
    let names = |with: bool| -> Vec<&str> {
        serving
            .iter()
            .filter(|(_, ca)| ca.is_some() == with)
            .map(|(n, _)| *n)
            .collect()
    };
    let (with, without) = (names(true), names(false));
    let differ = if without.is_empty() {
        format!("different files on {}", with.join(", "))
    } else {
        format!(
            "with it: {}; without: {}",
            with.join(", "),
            without.join(", ")
        )
    };
    cfg.routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.matches.listeners.is_none())
        .map(|(i, r)| {
            let path = format!("routes[{i}]");
            ConfigError {
                line: lines.line_of(&path),
                message: format!(
                    "route {:?} has no match.listeners, so it is served on every listener, \
                     although they differ in client_ca ({differ}); name the listeners it is \
                     meant for",
                    r.name
                ),
                path,
            }
        })
        .collect()
}
