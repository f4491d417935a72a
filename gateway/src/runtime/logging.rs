//! The error log: env_logger (RUST_LOG sets the level), minus Pingora's ERROR lines for
//! clients that simply went away, which would otherwise bury real errors.

use log::{Level, Log, Metadata, Record};

struct QuietDisconnects(env_logger::Logger);

impl Log for QuietDisconnects {
    fn enabled(&self, m: &Metadata) -> bool {
        self.0.enabled(m)
    }

    fn log(&self, record: &Record) {
        if record.level() == Level::Error && record.target().starts_with("pingora") {
            // Only error lines pay for this formatting, and they are rare when healthy.
            let text = record.args().to_string();
            if text.starts_with("Downstream handshake") {
                // Pingora logs a failed TLS handshake from the listener's runtime, whose
                // threads carry the service name `listener NAME`.
                if let Some(name) = std::thread::current()
                    .name()
                    .and_then(|n| n.strip_prefix("listener "))
                {
                    crate::metrics::TLS_HANDSHAKE_ERRORS
                        .with_label_values(&[name])
                        .inc();
                }
                log::debug!(target: "portico::tls", "{text}");
                return;
            }
            if is_client_disconnect(&text) {
                if log::log_enabled!(target: "portico::disconnects", Level::Debug) {
                    log::debug!(target: "portico::disconnects", "{text}");
                }
                return;
            }
        }
        self.0.log(record)
    }

    fn flush(&self) {
        self.0.flush()
    }
}

fn is_client_disconnect(text: &str) -> bool {
    [
        "Downstream ConnectionClosed",
        "Downstream ReadError",
        "Downstream WriteError",
        "Downstream ReadTimedout",
        "Downstream TLSHandshakeFailure",
        "Downstream ConnectionReset",
    ]
    .iter()
    .any(|k| text.contains(k))
}

pub fn init() {
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
            .format_timestamp_millis()
            .build();
    // Pingora's ERROR lines must reach this logger even under `RUST_LOG=off`: the failed
    // TLS handshakes are counted from them. env_logger still filters what gets printed.
    let max = logger.filter().max(log::LevelFilter::Error);
    if log::set_boxed_logger(Box::new(QuietDisconnects(logger))).is_ok() {
        log::set_max_level(max);
    }
}
