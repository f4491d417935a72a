//! The `server` and `admin` sections: what the process itself needs.

use crate::config::{Config, Problems, DEFAULT_REQUEST_ID_HEADER};
use crate::net::ip::parse_cidr;
use crate::net::spelled_name::SpelledName;
use ipnet::IpNet;

pub(super) fn check(cfg: &Config, p: &mut Problems) {
    if cfg.server.threads == Some(0) {
        p.add("server.threads", "must be at least 1");
    }
    if let Some(t) = &cfg.server.tracing {
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            p.add("server.tracing.sample_ratio", "must be between 0 and 1");
        }
        if t.max_queue == 0 {
            p.add("server.tracing.max_queue", "must be at least 1");
        }
        if !t.otlp.endpoint.starts_with("http://") {
            p.add(
                "server.tracing.otlp.endpoint",
                format!("{:?} is not an http:// address", t.otlp.endpoint),
            );
        }
    }
    if cfg.server.upstream_keepalive_pool == 0 {
        // Pingora's pool cannot be turned off by size: at 0 it warns on every request.
        p.add("server.upstream_keepalive_pool", "must be at least 1");
    }
    let no_token = cfg.admin.token.as_deref().unwrap_or("").is_empty();
    if cfg.admin.protect_metrics && no_token {
        p.add(
            "admin.protect_metrics",
            "is true but admin.token is not set: /metrics would need a token there is none of",
        );
    }
    match cfg.admin.listen.invalid() {
        None => {
            let addr = *cfg.admin.listen.get();
            if !addr.ip().is_loopback() && no_token {
                p.add(
                    "admin.token",
                    format!("the admin listener {addr} is not on loopback, so a token is required"),
                );
            }
        }
        Some(invalid) => p.add(
            "admin.listen",
            format!(
                "{:?} is not an address such as 127.0.0.1:9901",
                invalid.written
            ),
        ),
    }
    if cfg.listeners.is_empty() {
        p.add("listeners", "at least one listener is required");
    }
}

/// `server.trusted_proxies`: CIDRs or bare addresses.
pub(super) fn trusted_proxies(cfg: &Config, p: &mut Problems) -> Vec<IpNet> {
    cfg.server
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match parse_cidr(s) {
            Ok(n) => Some(n),
            Err(e) => {
                p.add(format!("server.trusted_proxies[{i}]"), e);
                None
            }
        })
        .collect()
}

/// `server.request_id_header` as a header name.
pub(super) fn request_id_header(cfg: &Config, p: &mut Problems) -> SpelledName {
    SpelledName::parse(&cfg.server.request_id_header).unwrap_or_else(|| {
        p.add(
            "server.request_id_header",
            format!(
                "{:?} is not a valid header name",
                cfg.server.request_id_header
            ),
        );
        // The config is refused; the default only keeps the snapshot whole meanwhile.
        SpelledName::parse(DEFAULT_REQUEST_ID_HEADER).expect("the default is a header name")
    })
}
