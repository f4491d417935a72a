//! Gateway configs, built in a few lines and written out as YAML.
//!
//! [`Config::new`] is where most tests start: the `server` settings every test gateway needs
//! (no grace period, a 1 s shutdown, its upgrade socket and pid file in its own test folder
//! through `${PORTICO_TEST_DIR}`), an admin listener, and a plain listener `web`, each on a
//! free port chosen once, so that a clone of the config rewritten for a reload keeps them.
//! Upstreams, routes and global plugins are added as YAML flow mappings, one call each:
//!
//! ```ignore
//! let gw = Config::with_app(&b)
//!     .route("name: api, upstream: app, plugins: [ { rate_limit: { per_second: 1 } } ]")
//!     .start()
//!     .await;
//! ```
//!
//! A test about the file format itself (line numbers in errors, block style) writes its YAML
//! by hand instead.

use std::net::SocketAddr;

use super::{free_port, Backend, CertFiles, Gateway, TestCa, TlsClientOpts};

/// The `server` entries of every test gateway, in order.
const SERVER_DEFAULTS: [(&str, &str); 4] = [
    ("grace_period", "0s"),
    ("shutdown_timeout", "1s"),
    ("upgrade_sock", "\"${PORTICO_TEST_DIR}/u.sock\""),
    ("pid_file", "\"${PORTICO_TEST_DIR}/p.pid\""),
];

/// A gateway config under construction (see the module documentation).
#[derive(Clone, Debug)]
pub struct Config {
    /// `server` entries, `(key, value)`, in the order written.
    server: Vec<(String, String)>,
    /// The admin listener's port and the rest of its flow mapping (`, token: t`).
    admin: Option<(u16, String)>,
    /// `(name, port, rest of the flow mapping)`.
    listeners: Vec<(String, u16, String)>,
    /// `(name, inside of the flow mapping)`.
    upstreams: Vec<(String, String)>,
    plugins: Vec<String>,
    routes: Vec<String>,
    /// Block YAML written after everything else.
    tail: String,
}

impl Config {
    /// The server defaults, an admin listener and a plain listener `web`.
    pub fn new() -> Config {
        Config::admin_only().listener("web", "")
    }

    /// [`Config::new`] with the usual upstream `app` on `backend` (see [`Config::app`]): where
    /// most tests start.
    pub fn with_app(backend: &Backend) -> Config {
        Config::new().app(backend)
    }

    /// The server defaults and an admin listener, no other listener yet.
    pub fn admin_only() -> Config {
        Config {
            server: SERVER_DEFAULTS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            admin: Some((free_port(), String::new())),
            listeners: Vec::new(),
            upstreams: Vec::new(),
            plugins: Vec::new(),
            routes: Vec::new(),
            tail: String::new(),
        }
    }

    /// Sets `server.KEY` from `entry` (`KEY: value`), replacing a value already there.
    pub fn server(mut self, entry: &str) -> Config {
        let (key, value) = entry
            .split_once(':')
            .unwrap_or_else(|| panic!("server entry {entry:?} is not `key: value`"));
        let (key, value) = (key.trim().to_string(), value.trim().to_string());
        match self.server.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.server.push((key, value)),
        }
        self
    }

    /// The admin listener on `port` instead.
    pub fn admin_at(mut self, port: u16) -> Config {
        self.admin
            .as_mut()
            .expect("the config has an admin listener")
            .0 = port;
        self
    }

    /// More entries of the admin listener's mapping, e.g. `token: s3cret`.
    pub fn admin(mut self, entries: &str) -> Config {
        let admin = self
            .admin
            .as_mut()
            .expect("the config has an admin listener");
        admin.1.push_str(", ");
        admin.1.push_str(entries);
        self
    }

    /// A listener `name` on 127.0.0.1 and a free port, with more `entries` for its mapping
    /// (e.g. `proxy_protocol: true`, or [`tls`]'s); `""` for a plain HTTP listener. It
    /// replaces a listener of that name, which thus moves to another port.
    pub fn listener(self, name: &str, entries: &str) -> Config {
        self.listener_at(name, free_port(), entries)
    }

    /// [`Config::listener`] on a given port.
    pub fn listener_at(mut self, name: &str, port: u16, entries: &str) -> Config {
        let listener = (name.to_string(), port, entries.to_string());
        match self.listeners.iter_mut().find(|(n, _, _)| n == name) {
            Some(slot) => *slot = listener,
            None => self.listeners.push(listener),
        }
        self
    }

    /// Upstream `name` with `entries` as the inside of its mapping (see [`backends`]).
    pub fn upstream(mut self, name: &str, entries: &str) -> Config {
        self.upstreams.push((name.to_string(), entries.to_string()));
        self
    }

    /// The usual upstream `app`, with `backend` as its one backend.
    pub fn app(self, backend: &Backend) -> Config {
        self.upstream("app", &backends(&[backend.addr()]))
    }

    /// A route, the inside of its flow mapping: `name: api, upstream: app, ...`.
    pub fn route(mut self, entries: &str) -> Config {
        self.routes.push(entries.to_string());
        self
    }

    /// A plugin of the global chain, the inside of its flow mapping: `access_log: {}`.
    pub fn plugin(mut self, entries: &str) -> Config {
        self.plugins.push(entries.to_string());
        self
    }

    /// Block YAML written as it is after the rest, e.g. a `routes:` section in block style
    /// (for a config that adds no [`Config::route`]).
    pub fn yaml(mut self, block: &str) -> Config {
        self.tail.push_str(block.trim_start_matches('\n'));
        self
    }

    /// The port of listener `name`.
    pub fn port(&self, name: &str) -> u16 {
        self.listeners
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no listener {name:?} in the config"))
            .1
    }

    /// The config as YAML.
    pub fn build(&self) -> String {
        let server: Vec<String> = self
            .server
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let mut yaml = format!("server: {{ {} }}\n", server.join(", "));
        if let Some((port, rest)) = &self.admin {
            yaml += &format!("admin: {{ listen: 127.0.0.1:{port}{rest} }}\n");
        }
        let mut section = |title: &str, items: Vec<String>| {
            if !items.is_empty() {
                yaml += &format!("{title}:\n{}", items.concat());
            }
        };
        section(
            "listeners",
            self.listeners
                .iter()
                .map(|(name, port, rest)| {
                    let rest = if rest.is_empty() {
                        String::new()
                    } else {
                        format!(", {rest}")
                    };
                    format!("  - {{ name: {name}, listen: 127.0.0.1:{port}{rest} }}\n")
                })
                .collect(),
        );
        section(
            "upstreams",
            self.upstreams
                .iter()
                .map(|(name, entries)| format!("  {name}: {{ {entries} }}\n"))
                .collect(),
        );
        section("plugins", flow_list(&self.plugins));
        section("routes", flow_list(&self.routes));
        yaml + &self.tail
    }

    /// Starts a gateway on this config (see [`Gateway::start`]).
    pub async fn start(&self) -> Gateway {
        Gateway::start(&self.build()).await
    }

    /// Starts a gateway on this config with the usual upstream `app` (see [`Config::app`]) on
    /// a new HTTP backend named `app`; returns both.
    pub async fn start_with_app(self) -> (Backend, Gateway) {
        let backend = Backend::http("app");
        let gw = self.app(&backend).start().await;
        (backend, gw)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

fn flow_list(items: &[String]) -> Vec<String> {
    items.iter().map(|i| format!("  - {{ {i} }}\n")).collect()
}

/// `backends: [ { addr: "A" }, ... ]`, the usual inside of an upstream.
pub fn backends(addrs: &[SocketAddr]) -> String {
    format!("backends: {}", addr_list(addrs))
}

/// `[ { addr: "A" }, ... ]`: a list of backends (for `backends` or `backup`).
pub fn addr_list(addrs: &[SocketAddr]) -> String {
    let list: Vec<String> = addrs
        .iter()
        .map(|a| format!("{{ addr: \"{a}\" }}"))
        .collect();
    format!("[ {} ]", list.join(", "))
}

/// A listener's `tls` entry serving `certs` (the first is the default), with more
/// `entries` for the `tls` mapping (`client_ca: ...`), `""` for none.
pub fn tls(certs: &[&CertFiles], entries: &str) -> String {
    let list: Vec<String> = certs
        .iter()
        .map(|c| {
            format!(
                "{{ cert: \"{}\", key: \"{}\" }}",
                c.cert.display(),
                c.key.display()
            )
        })
        .collect();
    let rest = if entries.is_empty() {
        String::new()
    } else {
        format!(", {entries}")
    };
    format!("tls: {{ certificates: [ {} ]{rest} }}", list.join(", "))
}

/// A gateway in front of one HTTP backend `app`, and the CA that made its TLS listeners'
/// certificate: what most tests of one feature share.
pub struct Stage {
    pub gw: Gateway,
    pub backend: Backend,
    pub ca: TestCa,
}

impl Stage {
    /// Makes a CA named `ca_name` and a certificate of it for `names`, then starts a gateway
    /// on `config(certificate, backend)`: the config names the backend (usually as
    /// [`Config::app`]).
    pub async fn start(
        ca_name: &str,
        names: &[&str],
        config: impl FnOnce(&CertFiles, &Backend) -> Config,
    ) -> Stage {
        let ca = TestCa::new(ca_name);
        let backend = Backend::http("app");
        let gw = config(&ca.issue(names), &backend).start().await;
        Stage { gw, backend, ca }
    }

    /// TLS client settings that trust the stage's CA.
    pub fn trust(&self) -> TlsClientOpts {
        TlsClientOpts::trusting(self.ca.cert_path())
    }
}
