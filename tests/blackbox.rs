//! The black-box test suite, one binary (`[[test]] blackbox` in Cargo.toml): each module,
//! one file of tests/ beside this one, starts the real `portico` binary and talks to it as
//! clients and backends do, with the kit in tests/common. One binary builds and links the
//! kit once instead of once per file. `cargo test --test blackbox routing::` runs one
//! module, `cargo test --test blackbox some_test_name` one test (tests/README.md). Tests run
//! side by side (two at a time on two cores), so each keeps to its own ports, files and
//! processes.
//!
//! tests/soak.rs and tests/ha_pair.rs are binaries of their own: they load the machine for a
//! minute or run five processes, and their timings mean something only without neighbours.

mod common;

mod acme;
mod compose_file;
mod config_validation;
mod dashboard;
mod edge_headers;
mod edge_identity;
mod edge_paths;
mod explain;
mod fleet;
mod harness_selftest;
mod limits;
mod operations;
mod own_answers;
mod plugins_auth;
mod plugins_chain;
mod plugins_traffic;
mod plugins_transform;
mod proxy_protocol;
mod proxying;
mod resilience;
mod routing;
mod smuggling;
mod tls_audit;
mod tls_termination;
mod traces;
