//! Prometheus metrics, exactly SPEC's names and labels, in the default registry (the one
//! `/metrics` serves).
//!
//! Label values are bounded: route names, backend addresses, listener names, a fixed set of
//! methods and outcomes. Per-route handles are resolved when a snapshot is built, so the
//! request path does no label hashing for them.

use prometheus::{
    register_histogram_vec, register_int_counter_vec,
    register_int_gauge_vec, HistogramVec, IntCounterVec, IntGaugeVec,
};
use std::sync::LazyLock;

/// Sub-millisecond to tens of seconds: a proxy's own overhead sits at the bottom, slow
/// backends and timeouts at the top.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("portico_requests_total", "Requests answered, by route, method and status.", &["route", "method", "status"]).unwrap()
});
pub static REQUEST_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!("portico_request_duration_seconds", "Time from the request head to the end of the response, by route.", &["route"], LATENCY_BUCKETS.to_vec()).unwrap()
});
pub static UPSTREAM_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("portico_upstream_requests_total", "Attempts sent to backends, by outcome (ok, connect_error, timeout, error).", &["upstream", "backend", "outcome"]).unwrap()
});
pub static BACKEND_HEALTHY: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("portico_upstream_backend_healthy", "1 when the backend takes traffic, 0 when it is unhealthy or ejected.", &["upstream", "backend"]).unwrap()
});
pub static RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("portico_upstream_retries_total", "Attempts retried on another backend.", &["upstream"]).unwrap()
});
pub static DOWNSTREAM_CONNECTIONS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("portico_downstream_connections", "Open client connections, by listener.", &["listener"]).unwrap()
});
pub static TLS_HANDSHAKE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("portico_tls_handshake_errors_total", "TLS handshakes that failed, by listener.", &["listener"]).unwrap()
});
pub static PLUGIN_REJECTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("portico_plugin_rejections_total", "Requests a plugin answered instead of the upstream.", &["plugin", "route"]).unwrap()
});
pub static CONFIG_RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("portico_config_reloads_total", "Config reloads, by result.", &["result"]).unwrap()
});
pub static BUILD_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("portico_build_info", "Always 1; the version label says which build runs.", &["version"]).unwrap()
});


/// Creates every metric so that the exposition lists them all from the first scrape,
/// even those still at zero.
pub fn init() {
    BUILD_INFO.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    for r in ["success", "failure"] {
        CONFIG_RELOADS.with_label_values(&[r]);
    }
    LazyLock::force(&REQUESTS);
    LazyLock::force(&REQUEST_DURATION);
    LazyLock::force(&UPSTREAM_REQUESTS);
    LazyLock::force(&BACKEND_HEALTHY);
    LazyLock::force(&RETRIES);
    LazyLock::force(&DOWNSTREAM_CONNECTIONS);
    LazyLock::force(&TLS_HANDSHAKE_ERRORS);
    LazyLock::force(&PLUGIN_REJECTIONS);
}

pub fn set_backend_health(upstream: &str, backend: &str, healthy: bool) {
    BACKEND_HEALTHY.with_label_values(&[upstream, backend]).set(healthy as i64);
}

/// The method label: the standard methods as themselves, anything else as `OTHER`, so a
/// client cannot create label values at will.
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::PATCH => "PATCH",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Renders the default registry in the text exposition format.
pub fn render() -> Vec<u8> {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&prometheus::gather(), &mut buf);
    buf
}
