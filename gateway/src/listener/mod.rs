//! What happens to a connection before HTTP and between its requests: the PROXY protocol
//! header, admission (connection limits), the HTTP/1 request loop, and the clocks on a
//! connection that has not sent a request yet.

mod admission;
mod app;
mod h1;
mod proxy_header;
mod watchdog;

pub use app::ListenerApp;
pub use proxy_header::ProxyHeaderBeforeTls;

/// The HTTP/2 settings of a listener: Pingora's bounded defaults (a 64 KiB header list,
/// among others) with `server.limits`' stream limits.
pub(crate) fn h2_options(
    limits: &crate::config::LimitsConfig,
) -> pingora_core::protocols::http::v2::server::H2Options {
    let mut options = pingora_core::protocols::http::v2::server::default_h2_options();
    options.max_concurrent_streams(limits.http2_max_concurrent_streams);
    // h2's answer to rapid reset: streams a client resets before they were taken up wait in
    // the accept queue without counting as open; past this many, GOAWAY ENHANCE_YOUR_CALM.
    options.max_pending_accept_reset_streams(limits.http2_max_pending_resets);
    options
}
