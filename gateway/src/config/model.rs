//! The configuration file's shape, as docs/configuration.md documents it.
//!
//! Every struct denies unknown keys: a typo in a config must be an error, never a silently
//! ignored setting. Defaults live here, next to the field they belong to, so that the file and
//! the code say the same thing.

use super::duration::Dur;
use super::values::{Alpn, HashKey, Parsed, PathMatch, TlsVersion};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// The global chain: runs on every request before the route's own.
    #[serde(default)]
    pub plugins: Vec<serde_yaml::Value>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub threads: Option<usize>,
    pub grace_period: Dur,
    pub shutdown_timeout: Dur,
    pub pid_file: String,
    pub upgrade_sock: String,
    pub trusted_proxies: Vec<String>,
    pub request_id_header: String,
    pub limits: LimitsConfig,
    /// Idle connections to backends kept for reuse, per worker thread of each listener.
    pub upstream_keepalive_pool: usize,
    /// How a request's path is read before routing (docs/security.md, "One reading").
    pub path: PathConfig,
    /// How header names are written to HTTP/1 peers (docs/configuration.md, `header_case`).
    pub header_case: HeaderCase,
    /// With `-c etcd://…`: where the last valid config is kept for a start while etcd is
    /// down (docs/deployment.md, "When etcd is down"). Unused with a config file.
    pub config_cache: String,
    /// OpenTelemetry traces (docs/operations.md, "Tracing"); `None`: off.
    pub tracing: Option<TracingConfig>,
}

/// `server.request_id_header` when the config names none.
pub const DEFAULT_REQUEST_ID_HEADER: &str = "X-Request-Id";

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            threads: None,
            grace_period: Dur::secs(5),
            shutdown_timeout: Dur::secs(30),
            pid_file: "/tmp/portico.pid".into(),
            upgrade_sock: "/tmp/portico_upgrade.sock".into(),
            trusted_proxies: Vec::new(),
            request_id_header: DEFAULT_REQUEST_ID_HEADER.into(),
            limits: LimitsConfig::default(),
            // Pingora's default of 128 is below the concurrency an edge proxy meets: at 2,000
            // concurrent clients on 2 threads, 1 request in 20 opened a new backend connection
            // (benches/README.md), leaving TIME_WAIT sockets that can exhaust source ports.
            upstream_keepalive_pool: 1024,
            path: PathConfig::default(),
            header_case: HeaderCase::Preserve,
            config_cache: "./portico-config-cache.yaml".into(),
            tracing: None,
        }
    }
}

/// `server.tracing`: spans exported over OTLP/HTTP (protobuf) in batches.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    pub otlp: OtlpConfig,
    /// The share of requests without a parent that are sampled; a parent's flag is followed.
    pub sample_ratio: f64,
    pub service_name: String,
    /// Spans waiting for export at most; beyond that they are dropped and counted.
    pub max_queue: usize,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp: OtlpConfig::default(),
            sample_ratio: 0.01,
            service_name: "portico".into(),
            max_queue: 2048,
        }
    }
}

/// `server.tracing.otlp`: where spans go.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP base address; spans are posted to `/v1/traces` below it.
    pub endpoint: String,
    pub timeout: Dur,
    pub headers: BTreeMap<String, String>,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: "http://127.0.0.1:4318".into(),
            timeout: Dur::secs(2),
            headers: BTreeMap::new(),
        }
    }
}

/// `server.path`: the choices in reading a request's path (`gateway::net::path`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PathConfig {
    /// Runs of `/` read as one (`//a///b` is `/a/b`).
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashes,
}

impl Default for PathConfig {
    fn default() -> Self {
        PathConfig {
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::Reject,
        }
    }
}

/// What an escaped slash (`%2F`) in a path does.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EscapedSlashes {
    /// 400: backends disagree on whether `%2F` separates segments, so no reading is safe.
    #[default]
    Reject,
    /// `%2F` stays as it is, data inside its segment (for backends that never decode it).
    Keep,
    /// `%2F` becomes `/` before dot segments are removed.
    Decode,
}

/// `server.header_case`: how header names are written on an HTTP/1 wire, to backends and to
/// clients that speak HTTP/1 (HTTP/2 names are lower case whatever this says).
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HeaderCase {
    /// Each name as the client or the backend spelled it (Portico's own in their usual
    /// spelling), as nginx does: Pingora then keeps a second map of spellings beside every
    /// request's and response's headers.
    #[default]
    Preserve,
    /// Lower case, but for a dozen common names in their usual spelling (`Host`,
    /// `Content-Length`, …: Pingora's form of a head without spellings), as HAProxy and Envoy
    /// write names by default. No map of spellings is kept, which makes every header Portico,
    /// Pingora and the plugins set cheaper (benches/README.md, "Header names for HTTP/1 peers").
    Normalize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub header_timeout: Dur,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    /// More header fields than this: 431 (0: only Pingora's own cap of 256, over which 400).
    pub max_header_count: usize,
    /// A longer request line (method, target, version; for HTTP/2 method and path): 414.
    pub max_request_line_bytes: usize,
    /// How long a kept-alive HTTP/1 connection may wait for its next complete request head,
    /// and an HTTP/2 connection without open streams, before it is closed.
    pub idle_timeout: Dur,
    /// Open connections per listener; over it a new connection is closed at once (0: no limit).
    pub max_connections: usize,
    /// Open connections per client address on each listener (0: no limit). Addresses in
    /// `trusted_proxies` are exempt: a load balancer carries many clients.
    pub max_connections_per_ip: usize,
    /// Streams one HTTP/2 connection may have open at once (its SETTINGS_MAX_CONCURRENT_STREAMS).
    pub http2_max_concurrent_streams: u32,
    /// Streams a client may reset before Portico took them up; one more and the connection is
    /// closed with ENHANCE_YOUR_CALM (HTTP/2 rapid reset, CVE-2023-44487).
    pub http2_max_pending_resets: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            header_timeout: Dur::secs(10),
            max_header_bytes: 32768,
            max_body_bytes: 0,
            max_header_count: 100,
            max_request_line_bytes: 8192,
            idle_timeout: Dur::secs(60),
            max_connections: 10000,
            max_connections_per_ip: 0,
            http2_max_concurrent_streams: 100,
            http2_max_pending_resets: 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: Parsed<SocketAddr>,
    pub token: Option<String>,
    /// `/metrics` needs the token too (docs/configuration.md, `admin`).
    pub protect_metrics: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: Parsed::new(SocketAddr::from(([127, 0, 0, 1], 9901))),
            token: None,
            protect_metrics: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub name: String,
    pub listen: Parsed<SocketAddr>,
    #[serde(default)]
    pub proxy_protocol: bool,
    #[serde(default)]
    pub tls: Option<ListenerTlsConfig>,
    /// Answer every request with a 308 to https on this port.
    #[serde(default)]
    pub redirect_https: Option<u16>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// May be left out when `acme` is set.
    #[serde(default)]
    pub certificates: Vec<CertificateConfig>,
    #[serde(default = "default_min_version")]
    pub min_version: Parsed<TlsVersion>,
    #[serde(default = "default_alpn")]
    pub alpn: Parsed<Alpn>,
    #[serde(default)]
    pub client_ca: Option<String>,
    /// With `client_ca`: whether a client must present a certificate (default `required`).
    /// `None` when left out, so that `client_auth` without `client_ca` can be refused.
    #[serde(default)]
    pub client_auth: Option<ClientAuthMode>,
    /// A certificate obtained and renewed automatically (docs/acme.md).
    #[serde(default)]
    pub acme: Option<super::AcmeConfig>,
}

/// `listeners[].tls.client_auth`.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    /// No valid certificate, no handshake.
    #[default]
    Required,
    /// A client without a certificate completes the handshake; one with a certificate that
    /// does not verify is still refused.
    Optional,
}

fn default_min_version() -> Parsed<TlsVersion> {
    Parsed::new(TlsVersion::Tls12)
}

fn default_alpn() -> Parsed<Alpn> {
    Parsed::new(Alpn {
        h2: true,
        http1: true,
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    pub cert: String,
    pub key: String,
    /// When the files are missing, generate a self-signed development certificate there
    /// instead of failing (for the out-of-the-box default config only).
    #[serde(default)]
    pub generate_if_missing: bool,
    /// A DER OCSP response for this certificate (as `openssl ocsp -respout` writes it),
    /// stapled to handshakes of clients that ask; re-read on reload.
    #[serde(default)]
    pub ocsp_staple: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub backends: Vec<BackendConfig>,
    #[serde(default)]
    pub backup: Vec<BackendConfig>,
    #[serde(default)]
    pub balance: Balance,
    #[serde(default)]
    pub hash_key: Option<Parsed<HashKey>>,
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    #[serde(default)]
    pub passive: PassiveConfig,
    #[serde(default = "default_retries")]
    pub retries: usize,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    #[serde(default)]
    pub tls: Option<UpstreamTlsConfig>,
    #[serde(default)]
    pub http2: bool,
    #[serde(default)]
    pub host: Option<String>,
    /// How often backends given by name are resolved again; `0`: only at load and reload.
    #[serde(default = "default_dns_refresh")]
    pub dns_refresh: Dur,
}

fn default_retries() -> usize {
    2
}

fn default_dns_refresh() -> Dur {
    Dur::secs(30)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub addr: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    Random,
    LeastConn,
    ConsistentHash,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    #[default]
    Http,
    Tcp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    #[serde(default)]
    pub kind: CheckKind,
    #[serde(default = "default_check_path")]
    pub path: String,
    /// Empty: any 2xx or 3xx.
    #[serde(default)]
    pub expect_status: Vec<u16>,
    #[serde(default = "default_interval")]
    pub interval: Dur,
    #[serde(default = "default_check_timeout")]
    pub timeout: Dur,
    #[serde(default = "default_healthy_after")]
    pub healthy_after: u32,
    #[serde(default = "default_unhealthy_after")]
    pub unhealthy_after: u32,
}

fn default_check_path() -> String {
    "/".into()
}
fn default_interval() -> Dur {
    Dur::secs(5)
}
fn default_check_timeout() -> Dur {
    Dur::secs(1)
}
fn default_healthy_after() -> u32 {
    2
}
fn default_unhealthy_after() -> u32 {
    3
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveConfig {
    pub failures: u32,
    pub eject_for: Dur,
    pub count_5xx: bool,
}

impl Default for PassiveConfig {
    fn default() -> Self {
        PassiveConfig {
            failures: 5,
            eject_for: Dur::secs(30),
            count_5xx: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    pub connect: Dur,
    pub read: Dur,
    pub write: Dur,
    pub idle: Dur,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            connect: Dur::secs(2),
            read: Dur::secs(30),
            write: Dur::secs(30),
            idle: Dur::secs(60),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    #[serde(default)]
    pub sni: Option<String>,
    #[serde(default = "default_true")]
    pub verify: bool,
    #[serde(default)]
    pub ca: Option<String>,
    #[serde(default)]
    pub client_cert: Option<String>,
    #[serde(default)]
    pub client_key: Option<String>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matches: MatchConfig,
    #[serde(default)]
    pub priority: i64,
    /// A route without an upstream must answer from a plugin (`respond`, `redirect`).
    #[serde(default)]
    pub upstream: Option<String>,
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    #[serde(default)]
    pub plugins: Vec<serde_yaml::Value>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub path: Option<Parsed<PathMatch>>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Names from `listeners`: the route is served only there. `None`: on every listener.
    #[serde(default)]
    pub listeners: Option<Vec<String>>,
}
