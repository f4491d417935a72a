//! Portico's gateway: config, listeners and TLS, routing, upstream pools, the plugin API,
//! metrics, the admin endpoints and reload. The `portico` binary wires the built-in plugins
//! into it; a user's own binary can do the same with its own plugins:
//!
//! ```no_run
//! let mut registry = gateway::Registry::new();
//! // plugins::register_builtins(&mut registry);
//! gateway::run(registry);
//! ```

pub mod admin;
pub mod config;
pub mod lifecycle;
mod listener;
pub mod log_reopen;
mod logging;
pub mod metrics;
pub mod net;
pub mod plugin;
mod reload;
pub mod request;
pub mod route;
mod server;
pub mod snapshot;
pub mod tls;
pub mod upstream;

pub use net::proxy_header::read_proxy_header;
pub use pingora_http::{RequestHeader, ResponseHeader};
pub use pingora_proxy::Session;
pub use plugin::{
    BuildContext, Flow, Hooks, Plugin, PluginConfig, Registry, RequestState, Response,
};
pub use server::run;
/// Who a client is by its TLS certificate (`gateway::client_cert::DistinguishedName` and
/// friends), at the path plugins have always used.
pub use tls::client_cert;

use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What every listener, the admin endpoints and reload share.
pub(crate) struct Shared {
    pub snapshot: Arc<ArcSwap<snapshot::Snapshot>>,
    pub registry: Registry,
    pub health: snapshot::HealthBook,
    pub config_path: PathBuf,
    /// Draining, winding down, requests in flight, listeners settled.
    pub lifecycle: Arc<lifecycle::Lifecycle>,
    pub cert_resolvers: HashMap<String, Arc<tls::CertResolver>>,
    /// Health checks and DNS refresh of the pools; handed the new pools on reload.
    pub upkeep: Arc<upstream::Upkeep>,
    pub reload_lock: Mutex<()>,
}
