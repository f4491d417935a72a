//! `listeners[].tls.acme` checked as a whole config: each certificate's values (see
//! [`AcmeConfig::validate`]) and what it needs of the other listeners.

use crate::config::{AcmeConfig, Challenge, Config, Problems};
use std::collections::HashMap;
use std::path::Path;

/// Checks every listener's `tls.acme` (`portico -t`, a start, a reload), each problem under
/// its key path (`listeners[0].tls.acme.domains[1]`), and returns the valid ones by listener
/// name with their paths resolved against `base`.
pub fn check_listeners(cfg: &Config, base: &Path, p: &mut Problems) -> HashMap<String, AcmeConfig> {
    let mut valid = HashMap::new();
    let plain = cfg.listeners.iter().any(|l| l.tls.is_none());
    for (i, l) in cfg.listeners.iter().enumerate() {
        let Some(acme) = l.tls.as_ref().and_then(|t| t.acme.as_ref()) else {
            continue;
        };
        let at = format!("listeners[{i}].tls.acme");
        let acme = acme.clone().resolved(base);
        let errors = acme.validate();
        let ok = errors.is_empty();
        for (key, message) in errors {
            p.add(format!("{at}.{key}"), message);
        }
        if acme.challenge == Challenge::Http01 && !plain {
            p.add(
                format!("{at}.challenge"),
                "http-01 is answered on a plain listener (the CA asks on port 80), and there is none: add one, or use tls-alpn-01",
            );
            continue;
        }
        if ok {
            valid.insert(l.name.clone(), acme);
        }
    }
    valid
}
