//! Prometheus metrics, with the names and labels docs/operations.md ("Metrics") lists, in the
//! default registry (the one `/metrics` serves).
//!
//! Label values are bounded: route names, backend addresses, listener names, a fixed set of
//! methods and outcomes. Per-route handles are resolved when a snapshot is built, so the
//! request path does no label hashing for them.
//!
//! A leaf: it knows the metric families and takes plain names and values. Which series a
//! config implies is the snapshot's to say, once it goes live (`Snapshot::publish_metrics`),
//! so that a config that is only checked, or a reload that is refused, leaves no label behind.

use arc_swap::ArcSwap;
use prometheus::{
    register_gauge_vec, register_histogram_vec, register_int_counter_vec, register_int_gauge_vec,
    GaugeVec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec,
};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

/// Sub-millisecond to tens of seconds: a proxy's own overhead sits at the bottom, slow
/// backends and timeouts at the top.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "portico_requests_total",
        "Requests answered, by route, method and status.",
        &["route", "method", "status"]
    )
    .unwrap()
});
pub static REQUEST_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "portico_request_duration_seconds",
        "Time from the request head to the end of the response, by route.",
        &["route"],
        LATENCY_BUCKETS.to_vec()
    )
    .unwrap()
});
pub static UPSTREAM_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "portico_upstream_requests_total",
        "Attempts sent to backends, by outcome (ok, connect_error, timeout, error).",
        &["upstream", "backend", "outcome"]
    )
    .unwrap()
});
pub static BACKEND_HEALTHY: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "portico_upstream_backend_healthy",
        "1 when the backend takes traffic, 0 when it is unhealthy or ejected.",
        &["upstream", "backend"]
    )
    .unwrap()
});
pub static RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "portico_upstream_retries_total",
        "Attempts retried on another backend.",
        &["upstream"]
    )
    .unwrap()
});
pub static DOWNSTREAM_CONNECTIONS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "portico_downstream_connections",
        "Open client connections, by listener.",
        &["listener"]
    )
    .unwrap()
});
pub static TLS_HANDSHAKE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "portico_tls_handshake_errors_total",
        "TLS handshakes that failed, by listener.",
        &["listener"]
    )
    .unwrap()
});
pub static PLUGIN_REJECTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "portico_plugin_rejections_total",
        "Requests a plugin answered instead of the upstream.",
        &["plugin", "route"]
    )
    .unwrap()
});
pub static CONFIG_RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "portico_config_reloads_total",
        "Config reloads, by result.",
        &["result"]
    )
    .unwrap()
});
pub static TRACING_SPANS_DROPPED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "portico_tracing_spans_dropped_total",
        "Spans dropped because max_queue spans already waited for export."
    )
    .unwrap()
});
pub static BUILD_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "portico_build_info",
        "Always 1; the version label says which build runs.",
        &["version"]
    )
    .unwrap()
});
pub static CERTIFICATE_EXPIRY: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "portico_certificate_expiry_seconds",
        "Seconds until a served certificate expires, by listener and the certificate's first name (files and ACME).",
        &["listener", "name"]
    )
    .unwrap()
});
pub static ACME_ORDERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "portico_acme_orders_total",
        "ACME certificate orders placed by this instance, by result (failure includes a CA that could not be reached).",
        &["result"]
    )
    .unwrap()
});

/// Creates every metric so that the exposition lists them all from the first scrape,
/// even those still at zero.
pub fn init() {
    BUILD_INFO
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    for r in ["success", "failure"] {
        CONFIG_RELOADS.with_label_values(&[r]);
        ACME_ORDERS.with_label_values(&[r]);
    }
    LazyLock::force(&CERTIFICATE_EXPIRY);
    LazyLock::force(&REQUESTS);
    LazyLock::force(&REQUEST_DURATION);
    LazyLock::force(&UPSTREAM_REQUESTS);
    LazyLock::force(&BACKEND_HEALTHY);
    LazyLock::force(&RETRIES);
    LazyLock::force(&DOWNSTREAM_CONNECTIONS);
    LazyLock::force(&TLS_HANDSHAKE_ERRORS);
    LazyLock::force(&PLUGIN_REJECTIONS);
    LazyLock::force(&TRACING_SPANS_DROPPED);
}

pub fn set_backend_health(upstream: &str, backend: &str, healthy: bool) {
    BACKEND_HEALTHY
        .with_label_values(&[upstream, backend])
        .set(healthy as i64);
}

/// Forgets every backend's health series, before the live config's are set again: a backend
/// a reload removed must disappear from the exposition.
pub fn reset_backend_health() {
    BACKEND_HEALTHY.reset();
}

/// Creates a listener's series (its connection gauge, and on TLS its handshake errors) at
/// zero, so that dashboards and alerts see zeros instead of nothing.
pub fn publish_listener(listener: &str, tls: bool) {
    DOWNSTREAM_CONNECTIONS.with_label_values(&[listener]);
    if tls {
        TLS_HANDSHAKE_ERRORS.with_label_values(&[listener]);
    }
}

/// Creates an upstream's retry counter at zero.
pub fn publish_upstream(upstream: &str) {
    RETRIES.with_label_values(&[upstream]);
}

/// One route's request metrics, resolved to label handles so that recording a request
/// hashes no label values: the duration histogram on the route's first request, and the
/// `(method, status)` counters in a small copy-on-write list (a route sees a handful of
/// combinations; a miss, rare after warm-up, resolves the handle and appends it).
pub struct RouteMetrics {
    route: Arc<str>,
    duration: OnceLock<Histogram>,
    requests: ArcSwap<Vec<(&'static str, u16, IntCounter)>>,
}

impl RouteMetrics {
    /// Touches no registry: a snapshot that a reload then rejects leaves no label behind.
    pub fn new(route: &str) -> Self {
        RouteMetrics {
            route: route.into(),
            duration: OnceLock::new(),
            requests: ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// Creates the route's duration histogram, at zero until its first request.
    pub fn publish(&self) {
        self.duration();
    }

    fn duration(&self) -> &Histogram {
        self.duration
            .get_or_init(|| REQUEST_DURATION.with_label_values(&[&self.route]))
    }

    /// Counts one answered request and its duration.
    pub fn record(&self, method: &'static str, status: u16, elapsed: Duration) {
        self.duration().observe(elapsed.as_secs_f64());
        if let Some((_, _, c)) = self
            .requests
            .load()
            .iter()
            .find(|(m, s, _)| *s == status && *m == method)
        {
            c.inc();
            return;
        }
        let status_label = if (100..=999).contains(&status) {
            status.to_string()
        } else {
            "0".to_string()
        };
        let counter = REQUESTS.with_label_values(&[&self.route, method, &status_label]);
        counter.inc();
        self.requests.rcu(|list| {
            let mut list = Vec::clone(list);
            if !list.iter().any(|(m, s, _)| *s == status && *m == method) {
                list.push((method, status, counter.clone()));
            }
            list
        });
    }
}

/// The metrics of requests that matched no route (`route="unmatched"`).
pub fn unmatched() -> &'static RouteMetrics {
    static UNMATCHED: LazyLock<RouteMetrics> = LazyLock::new(|| RouteMetrics::new("unmatched"));
    &UNMATCHED
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_metrics_count_each_method_and_status_once_and_cache_the_handles() {
        let m = RouteMetrics::new("metrics-unit-test");
        for _ in 0..3 {
            m.record("GET", 200, Duration::from_millis(1));
        }
        m.record("POST", 201, Duration::from_millis(2));
        m.record("GET", 0, Duration::from_millis(3));
        let count = |method: &str, status: &str| {
            REQUESTS
                .with_label_values(&["metrics-unit-test", method, status])
                .get()
        };
        assert_eq!(count("GET", "200"), 3);
        assert_eq!(count("POST", "201"), 1);
        assert_eq!(count("GET", "0"), 1, "a request that got no answer");
        assert_eq!(
            REQUEST_DURATION
                .with_label_values(&["metrics-unit-test"])
                .get_sample_count(),
            5
        );
        assert_eq!(
            m.requests.load().len(),
            3,
            "one cached handle per (method, status)"
        );
    }
}
