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
pub mod admin;
pub mod client_auth;
pub mod client_cert;
pub mod config;
pub mod fleet;
mod explain;
pub mod forwarded;
pub mod framing;
mod leftover;
mod listener;
pub mod log_reopen;
mod logging;
pub mod metrics;
pub mod path;
pub mod plugin;
mod proxy;
mod reload;
pub mod request_target;
pub mod route;
mod server;
pub mod snapshot;
pub mod tls;
pub mod traces;
pub mod upstream;

pub use listener::read_proxy_header;
pub use pingora_http::{RequestHeader, ResponseHeader};
pub use pingora_proxy::Session;
pub use plugin::{
    BuildContext, Flow, Hooks, Plugin, PluginConfig, Registry, RequestState, Response,
};
pub use server::run;

use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// What every listener, the admin endpoints and reload share.
pub(crate) struct Shared {
    pub snapshot: ArcSwap<snapshot::Snapshot>,
    pub registry: Registry,
    pub health: snapshot::HealthBook,
    /// The config file, or the key in etcd that is followed (fleet/origin.rs).
    pub origin: fleet::Origin,
    /// Set on SIGTERM: `/readyz` answers 503 from then on.
    pub draining: AtomicBool,
    pub cert_resolvers: HashMap<String, Arc<tls::CertResolver>>,
    /// Health checks and DNS refresh of the pools; handed the new pools on reload.
    pub upkeep: Arc<upstream::Upkeep>,
    pub reload_lock: Mutex<()>,
}
