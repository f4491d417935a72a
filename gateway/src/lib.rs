//! Portico's gateway: config, listeners and TLS, routing, upstream pools, the plugin API,
//! metrics, the admin endpoints and reload. The `portico` binary wires the built-in plugins
//! into it; a user's own binary can do the same with its own plugins:
//!
//! ```no_run
//! let mut registry = gateway::Registry::new();
//! // plugins::register_builtins(&mut registry);
//! gateway::run(registry);
//! ```

pub mod acme;
pub mod config;
pub mod fleet;
pub mod lifecycle;
mod listener;
pub mod log_reopen;
pub mod metrics;
pub mod net;
pub mod plugin;
pub mod request;
pub mod route;
mod runtime;
pub mod snapshot;
pub mod tls;
pub mod traces;
pub mod upstream;

pub use net::proxy_header::read_proxy_header;
pub use pingora_http::{RequestHeader, ResponseHeader};
pub use pingora_proxy::Session;
pub use plugin::{
    BuildContext, Flow, Hooks, Plugin, PluginConfig, Registry, RequestState, Response,
};
pub use runtime::run;
/// Who a client is by its TLS certificate (`gateway::client_cert::DistinguishedName` and
/// friends), at the path plugins have always used.
pub use tls::client_cert;
