//! What the running instance's parts share.

use crate::fleet::Origin;
use crate::lifecycle::Lifecycle;
use crate::plugin::Registry;
use crate::snapshot::{HealthBook, Snapshot};
use crate::tls::CertResolver;
use crate::upstream;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What the listeners' services, the admin endpoints, signals and reload share.
pub(crate) struct Shared {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub registry: Registry,
    pub health: HealthBook,
    /// The config file, or the key in etcd that is followed (fleet/origin.rs).
    pub origin: Origin,
    /// Draining, winding down, requests in flight, listeners settled.
    pub lifecycle: Arc<Lifecycle>,
    pub cert_resolvers: HashMap<String, Arc<CertResolver>>,
    /// Health checks and DNS refresh of the pools; handed the new pools on reload.
    pub upkeep: Arc<upstream::Upkeep>,
    pub reload_lock: Mutex<()>,
}
