//! Upstream pools: backends, how one is picked, their health, and keeping them checked and
//! resolved.

mod backend;
mod balance;
mod check;
mod health;
mod pool;
mod resolve;
mod upkeep;

pub use backend::{Backend, Endpoint};
pub use balance::hash_key;
pub use check::MIN_INTERVAL as CHECK_MIN_INTERVAL;
pub use health::{Admission, Detail, Health, Probe, State};
pub use pool::Pool;
pub use resolve::resolve;
pub use upkeep::Upkeep;
