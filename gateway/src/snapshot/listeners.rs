//! The `listeners` section: names, addresses, and each TLS listener's certificates and client
//! certificate checks.

use crate::config::{self, Config, Problems};
use crate::tls::{self, CertStore};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

pub(super) fn compile(
    cfg: &Config,
    base: &Path,
    p: &mut Problems,
) -> HashMap<String, Arc<CertStore>> {
    let mut certs = HashMap::new();
    let mut names = HashSet::new();
    let mut addrs = HashMap::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        let at = format!("listeners[{i}]");
        if l.name.is_empty() {
            p.add(format!("{at}.name"), "must not be empty");
        } else if !names.insert(l.name.clone()) {
            p.add(
                format!("{at}.name"),
                format!("duplicate listener name {:?}", l.name),
            );
        }
        p.parsed(&format!("{at}.listen"), &l.listen);
        if l.listen.invalid().is_none() {
            let a = *l.listen.get();
            if let Some(prev) = addrs.insert(a, i) {
                p.add(
                    format!("{at}.listen"),
                    format!("{a} is already used by listeners[{prev}]"),
                );
            }
            let admin = &cfg.admin.listen;
            if a.ip() == std::net::Ipv4Addr::UNSPECIFIED
                && admin.invalid().is_none()
                && a.port() == admin.port()
            {
                p.add(format!("{at}.listen"), "overlaps the admin listener's port");
            }
        }
        if l.redirect_https.is_some() && l.tls.is_some() {
            p.add(
                format!("{at}.redirect_https"),
                "a TLS listener cannot also redirect to https",
            );
        }
        let Some(t) = &l.tls else { continue };
        p.parsed(&format!("{at}.tls.min_version"), &t.min_version);
        p.parsed(&format!("{at}.tls.alpn"), &t.alpn);
        let client_auth = match (&t.client_ca, t.client_auth) {
            (Some(ca), mode) => {
                let path = config::resolve(base, ca);
                match crate::tls::ClientAuth::load(&path, mode.unwrap_or_default()) {
                    Ok(auth) => Some(Arc::new(auth)),
                    Err(e) => {
                        p.add(format!("{at}.tls.client_ca"), e);
                        None
                    }
                }
            }
            (None, Some(_)) => {
                p.add(
                    format!("{at}.tls.client_auth"),
                    "client_auth needs client_ca (the CA that client certificates are checked against)",
                );
                None
            }
            (None, None) => None,
        };
        if t.certificates.is_empty() && t.acme.is_none() {
            p.add(
                format!("{at}.tls.certificates"),
                "at least one certificate is required (or acme)",
            );
        }
        let mut loaded = Vec::new();
        for (j, c) in t.certificates.iter().enumerate() {
            let cert = config::resolve(base, &c.cert);
            let key = config::resolve(base, &c.key);
            if c.generate_if_missing && !cert.exists() && !key.exists() {
                if let Err(e) = tls::generate_dev_cert(&cert, &key) {
                    p.add(format!("{at}.tls.certificates[{j}]"), e);
                    continue;
                }
            }
            let staple = c.ocsp_staple.as_ref().map(|f| config::resolve(base, f));
            match tls::load_certified_key(&cert, &key)
                .and_then(|ck| tls::with_ocsp_staple(ck, staple.as_deref()))
            {
                Ok(ck) => loaded.push(ck),
                Err(e) => p.add(format!("{at}.tls.certificates[{j}]"), e),
            }
        }
        if !loaded.is_empty() || t.acme.is_some() {
            let store = CertStore::new(loaded).with_client_auth(client_auth);
            certs.insert(l.name.clone(), Arc::new(store));
        }
    }
    certs
}
