//! What every listener serves, for `/status` (`certificates`) and the metric
//! `portico_certificate_expiry_seconds{listener,name}`: the configured certificates
//! (`source: file`) and the ACME one (`source: acme`) of each TLS listener.

use super::certificate::system_time;
use super::fleet::live;
use crate::tls::CertResolver;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

/// One served certificate.
pub struct ServedCertificate {
    pub listener: String,
    pub names: Vec<String>,
    pub not_after: Option<SystemTime>,
    pub acme: bool,
    /// ACME only: when renewal starts (None until a certificate is issued).
    pub renews_at: Option<SystemTime>,
    /// ACME only: false while the placeholder is served.
    pub issued: bool,
    pub serial: Option<String>,
    pub last_error: Option<String>,
}

/// Every listener's certificates, listeners in `listeners` order, the ACME one first.
pub fn served(
    listeners: &[&str],
    resolvers: &HashMap<String, Arc<CertResolver>>,
) -> Vec<ServedCertificate> {
    let live = live();
    let mut out = Vec::new();
    for &listener in listeners {
        let Some(resolver) = resolvers.get(listener) else {
            continue;
        };
        if let Some(s) = live.iter().find(|s| s.listener == listener) {
            let c = s.acme.certificate();
            let status = s.acme.status();
            out.push(ServedCertificate {
                listener: listener.to_string(),
                names: s.acme.names().to_vec(),
                not_after: Some(c.not_after),
                acme: true,
                renews_at: status.renews_at,
                issued: status.issued,
                serial: status.serial,
                last_error: status.last_error,
            });
        }
        for ck in resolver.configured().certs() {
            out.push(ServedCertificate {
                listener: listener.to_string(),
                names: ck.names.clone(),
                not_after: ck
                    .chain
                    .first()
                    .and_then(|c| system_time(c.not_after()).ok()),
                acme: false,
                renews_at: None,
                issued: true,
                serial: None,
                last_error: None,
            });
        }
    }
    out
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `/status` → `certificates`.
pub fn status_json(listeners: &[&str], resolvers: &HashMap<String, Arc<CertResolver>>) -> Value {
    let entries: Vec<Value> = served(listeners, resolvers)
        .into_iter()
        .map(|c| {
            let mut entry = json!({
                "listener": c.listener,
                "names": c.names,
                "not_after": c.not_after.map(rfc3339),
                "source": if c.acme { "acme" } else { "file" },
                "renews_at": c.renews_at.map(rfc3339),
            });
            if c.acme {
                entry["issued"] = c.issued.into();
                entry["serial"] = c.serial.into();
                entry["last_error"] = c.last_error.into();
            }
            entry
        })
        .collect();
    Value::Array(entries)
}

/// Sets `portico_certificate_expiry_seconds` right before a scrape (the seconds left
/// change by themselves, and a reload may have removed a certificate). `name`: the
/// certificate's first name.
pub fn refresh_metrics(listeners: &[&str], resolvers: &HashMap<String, Arc<CertResolver>>) {
    let now = SystemTime::now();
    crate::metrics::CERTIFICATE_EXPIRY.reset();
    for c in served(listeners, resolvers) {
        let (Some(not_after), Some(name)) = (c.not_after, c.names.first()) else {
            continue;
        };
        let left = match not_after.duration_since(now) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        crate::metrics::CERTIFICATE_EXPIRY
            .with_label_values(&[c.listener.as_str(), name.as_str()])
            .set(left.round());
    }
}
