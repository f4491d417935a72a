//! Backends' health, kept across reloads by who they are.

use crate::upstream::Health;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Health records by (upstream, backend address, backup), kept across reloads.
#[derive(Default)]
pub struct HealthBook {
    records: Mutex<HashMap<(String, String, bool), Arc<Health>>>,
}

impl HealthBook {
    pub(super) fn get(
        &self,
        upstream: &str,
        addr: &str,
        backup: bool,
        checked: bool,
    ) -> Arc<Health> {
        self.records
            .lock()
            .unwrap()
            .entry((upstream.to_string(), addr.to_string(), backup))
            .or_insert_with(|| Arc::new(Health::new(checked)))
            .clone()
    }
}
