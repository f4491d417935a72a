//! docker-compose.yml and the conf/ha/ files it runs, checked without Docker: the compose
//! file's shape (services, images and builds, ports, dependencies, networks, mounted files
//! that exist), that it hands every config the variables the config uses, that the configs
//! themselves pass `portico -t`, `haproxy -c` and `promtool check config` with exactly the
//! environment compose gives them, and that the load balancer's checks fit Portico's grace
//! period.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use serde_yaml::Value;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn repo(path: &str) -> PathBuf {
    Path::new(REPO).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// docker-compose.yml with its `<<: *anchor` merges applied, as compose reads it.
fn compose() -> Value {
    let mut value: Value =
        serde_yaml::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is YAML");
    value.apply_merge().expect("merge keys");
    value
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    let service = &compose["services"][name];
    assert!(
        service.is_mapping(),
        "no service {name:?} in docker-compose.yml"
    );
    service
}

/// Compose's own interpolation of `${VAR:-default}` / `${VAR-default}` in a value, with
/// nothing set in the environment (as on a fresh checkout without .env).
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("unclosed ${") + start;
        let inner = &rest[start + 2..end];
        let default = inner
            .split_once(":-")
            .or_else(|| inner.split_once('-'))
            .map(|(_, d)| d);
        out.push_str(
            default.unwrap_or_else(|| {
                panic!("${{{inner}}} has no default: compose would need it set")
            }),
        );
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A service's `environment` (map or list form), interpolated.
fn environment(service: &Value) -> BTreeMap<String, String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => interpolate(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("environment value {other:?} is not a scalar"),
    };
    match &service["environment"] {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| (k.as_str().unwrap().to_string(), scalar(v)))
            .collect(),
        Value::Sequence(list) => list
            .iter()
            .map(|item| {
                let (k, v) = item.as_str().unwrap().split_once('=').expect("NAME=value");
                (k.to_string(), interpolate(v))
            })
            .collect(),
        Value::Null => BTreeMap::new(),
        other => panic!("environment {other:?}"),
    }
}

/// Every `${NAME}` a config file uses (outside `#` comments).
fn variables_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let code = line.split(" #").next().unwrap();
        if code.trim_start().starts_with('#') {
            continue;
        }
        let mut rest = code;
        while let Some(start) = rest.find("${") {
            let end = rest[start..].find('}').unwrap() + start;
            names.insert(rest[start + 2..end].to_string());
            rest = &rest[end + 1..];
        }
    }
    names
}

/// `./conf/ha/x:/etc/x:ro` -> (`./conf/ha/x`, `/etc/x`).
fn bind_mount(spec: &str) -> (&str, &str) {
    let mut parts = spec.splitn(3, ':');
    (parts.next().unwrap(), parts.next().expect("source:target"))
}

/// The single static address of a service on network `ha`.
fn address(compose: &Value, name: &str) -> Ipv4Addr {
    service(compose, name)["networks"]["ha"]["ipv4_address"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} has no static address on network ha"))
        .parse()
        .unwrap()
}

/// `250ms`, `5s`, `1m`.
fn duration(text: &str) -> Duration {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("duration {text:?}"));
    match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(60 * n),
        other => panic!("unit {other:?} in {text:?}"),
    }
}

/// Runs `program args` in the repository with `env` added (see [`run_tool`]).
async fn run(program: &str, args: &[&str], env: &BTreeMap<String, String>) -> (bool, String) {
    run_tool(program, args, Path::new(REPO), env).await
}

/// The services of the `fleet` profile: etcd, the one-shot push, two instances following it.
const FLEET_SERVICES: [&str; 4] = ["etcd", "fleet-push", "portico-fleet-1", "portico-fleet-2"];

/// Grafana, with the dashboard provisioned (deploy/grafana/).
const DASHBOARD_SERVICES: [&str; 1] = ["grafana"];

/// Service keys this file may use: compose rejects unknown ones, and a typo here would
/// otherwise only show on a machine with Docker.
const SERVICE_KEYS: [&str; 15] = [
    "profiles",
    "build",
    "image",
    "command",
    "volumes",
    "environment",
    "ports",
    "networks",
    "depends_on",
    "healthcheck",
    "restart",
    "stop_signal",
    "stop_grace_period",
    "hostname",
    "ulimits",
];

#[test]
fn the_compose_file_has_the_ha_topology() {
    let compose = compose();
    let top: BTreeSet<&str> = compose
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    for key in &top {
        assert!(
            ["name", "services", "networks", "volumes"].contains(key) || key.starts_with("x-"),
            "unknown top-level key {key:?}"
        );
    }
    let services = compose["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(
        names,
        HA_SERVICES
            .into_iter()
            .chain(FLEET_SERVICES)
            .chain(DASHBOARD_SERVICES)
            .collect(),
        "services"
    );
    let networks = compose["networks"]
        .as_mapping()
        .expect("top-level networks");
    let volumes = compose["volumes"].as_mapping().cloned().unwrap_or_default();
    let subnet: ipnet_lite::Net = compose["networks"]["ha"]["ipam"]["config"][0]["subnet"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let mut addresses = BTreeSet::new();
    for (name, service) in services {
        let name = name.as_str().unwrap();
        for key in service.as_mapping().unwrap().keys() {
            let key = key.as_str().unwrap();
            assert!(SERVICE_KEYS.contains(&key), "{name}: unknown key {key:?}");
        }
        assert!(
            service["image"].is_string() || service["build"].is_mapping(),
            "{name}: neither image nor build"
        );
        if let Some(image) = service["image"].as_str() {
            assert!(image.contains(':'), "{name}: image {image:?} without a tag");
        }
        for port in service["ports"].as_sequence().into_iter().flatten() {
            let port = port.as_str().unwrap_or_else(|| {
                panic!("{name}: quote ports (\"8443:8443\"), YAML reads 80:80 as a number")
            });
            let parts: Vec<&str> = port.split(':').collect();
            assert!(
                parts.len() == 2 || parts.len() == 3,
                "{name}: port {port:?}"
            );
            if parts.len() == 3 {
                parts[0]
                    .parse::<Ipv4Addr>()
                    .unwrap_or_else(|_| panic!("{name}: port {port:?}"));
            }
            for p in &parts[parts.len() - 2..] {
                p.parse::<u16>()
                    .unwrap_or_else(|_| panic!("{name}: port {port:?}"));
            }
        }
        for dependency in service["depends_on"].as_sequence().into_iter().flatten() {
            let dependency = dependency.as_str().unwrap();
            assert!(
                names.contains(dependency),
                "{name}: depends on unknown service {dependency:?}"
            );
            assert_ne!(dependency, name);
        }
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let (source, target) = bind_mount(volume.as_str().unwrap());
            assert!(target.starts_with('/'), "{name}: volume target {target:?}");
            if source.starts_with("./") {
                assert!(
                    repo(source).is_file(),
                    "{name}: mounts {source}, which is not a file in the repository"
                );
            } else {
                assert!(
                    volumes.contains_key(source),
                    "{name}: named volume {source:?} is not declared"
                );
            }
        }
        for (network, settings) in service["networks"].as_mapping().expect("networks").iter() {
            assert!(
                networks.contains_key(network),
                "{name}: network {network:?} is not declared"
            );
            if let Some(ip) = settings["ipv4_address"].as_str() {
                let ip: Ipv4Addr = ip.parse().unwrap();
                assert!(subnet.contains(ip), "{name}: {ip} outside {subnet:?}");
                assert!(addresses.insert(ip), "{name}: {ip} used twice");
            }
        }
    }
    // Dependencies have no cycle: HAProxy -> Portico -> backends.
    assert!(
        service(&compose, "haproxy")["depends_on"]
            .as_sequence()
            .unwrap()
            .len()
            == 2
    );
    for n in 1..=2 {
        let deps = &service(&compose, &format!("portico-{n}"))["depends_on"];
        assert!(!deps.as_sequence().unwrap().iter().any(|d| d == "haproxy"));
    }

    // The two instances are built from the repository's Dockerfile, and are identical but
    // for their name and address.
    let p1 = service(&compose, "portico-1");
    let p2 = service(&compose, "portico-2");
    for p in [p1, p2] {
        assert_eq!(p["build"]["context"], ".");
        assert!(repo(p["build"]["dockerfile"].as_str().unwrap()).is_file());
    }
    let strip = |p: &Value| {
        let mut m = p.as_mapping().unwrap().clone();
        m.remove("hostname");
        m.remove("networks");
        m
    };
    assert_eq!(
        strip(p1),
        strip(p2),
        "portico-1 and portico-2 differ in more than name and address"
    );
    assert!(volumes.contains_key("prometheus-data"));
}

#[test]
fn the_dockerfile_builds_in_rust_and_runs_on_slim_debian() {
    let dockerfile = read("Dockerfile");
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(
        stages[0].starts_with("FROM rust:") && stages[0].ends_with(" AS build"),
        "{}",
        stages[0]
    );
    assert!(
        stages[1].starts_with("FROM debian:") && stages[1].contains("-slim"),
        "{}",
        stages[1]
    );
    assert!(dockerfile.contains("cmake"), "Pingora's build needs cmake");
    assert!(dockerfile.contains("cargo build --release --locked --bin portico"));
    assert!(dockerfile.contains("COPY --from=build"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/portico\"]"));
    assert!(repo("conf/portico.yaml").is_file());
    let ignore = read(".dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "target/"),
        "target/ must stay out of the build context"
    );
    // Everything the build needs is in the context: the workspace and every member.
    for member in [
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "gateway",
        "plugins",
        "examples",
        "benches",
    ] {
        assert!(
            !ignore
                .lines()
                .any(|l| l.trim().trim_end_matches('/') == member),
            "{member} is ignored"
        );
    }
}

#[test]
fn every_config_gets_the_variables_it_uses() {
    let compose = compose();
    let haproxy_env = environment(service(&compose, "haproxy"));
    let wanted = variables_in(&read("conf/ha/haproxy.cfg"));
    assert!(!wanted.is_empty());
    for name in &wanted {
        assert!(
            haproxy_env.contains_key(name),
            "haproxy.cfg uses ${{{name}}}, which compose does not set"
        );
    }
    let haproxy_volumes = service(&compose, "haproxy")["volumes"]
        .as_sequence()
        .unwrap();
    assert!(haproxy_volumes
        .iter()
        .any(|v| bind_mount(v.as_str().unwrap())
            == (
                "./conf/ha/haproxy.cfg",
                "/usr/local/etc/haproxy/haproxy.cfg"
            )));

    let wanted = variables_in(&read("conf/ha/portico.yaml"));
    for n in 1..=2 {
        let p = service(&compose, &format!("portico-{n}"));
        let env = environment(p);
        for name in &wanted {
            assert!(
                env.contains_key(name),
                "portico-{n}: portico.yaml uses ${{{name}}}, which compose does not set"
            );
        }
        let mounts: Vec<(&str, &str)> = p["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| bind_mount(v.as_str().unwrap()))
            .collect();
        assert!(mounts.contains(&("./conf/ha/portico.yaml", "/etc/portico/portico.yaml")));
        assert_eq!(p["command"][1], "/etc/portico/portico.yaml");
        // A non-loopback admin listener needs a token (docs/configuration.md, `admin`);
        // Prometheus reaches /metrics.
        assert!(env["PORTICO_ADMIN_LISTEN"].starts_with("0.0.0.0:"));
        assert!(!env["PORTICO_ADMIN_TOKEN"].is_empty());
    }
}

#[test]
fn addresses_agree_across_the_files() {
    let compose = compose();
    let haproxy = address(&compose, "haproxy");
    let env = environment(service(&compose, "portico-1"));
    // Portico believes PROXY headers from HAProxy, and from nobody else.
    assert_eq!(env["PORTICO_TRUSTED_PROXY"], format!("{haproxy}/32"));
    for n in 1..=2 {
        let backend = address(&compose, &format!("backend-{n}"));
        assert_eq!(
            env[&format!("PORTICO_BACKEND_{n}")],
            format!("{backend}:80")
        );
        let command: Vec<&str> = service(&compose, &format!("backend-{n}"))["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(command.contains(&"--port=80"), "backend-{n}: {command:?}");
    }
    // Both instances keep their shared rate limits in the one Redis, on its default port
    // (the compose file does not move it), which persists nothing.
    let redis = address(&compose, "redis");
    assert_eq!(
        env["PORTICO_REDIS_URL"],
        format!("redis://{redis}:6379"),
        "PORTICO_REDIS_URL"
    );
    let command: Vec<&str> = service(&compose, "redis")["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(command[0], "redis-server");
    assert!(!command.contains(&"--port"), "redis: {command:?}");
    assert!(
        command.windows(2).any(|w| w == ["--save", ""]),
        "redis: {command:?}"
    );
    let ha_env = environment(service(&compose, "haproxy"));
    let https_port = env["PORTICO_HTTPS_LISTEN"]
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let http_port = env["PORTICO_HTTP_LISTEN"]
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let admin_port = env["PORTICO_ADMIN_LISTEN"]
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    for n in 1..=2 {
        let portico = address(&compose, &format!("portico-{n}"));
        assert_eq!(
            ha_env[&format!("HA_PORTICO_{n}_HTTPS")],
            format!("{portico}:{https_port}")
        );
        assert_eq!(
            ha_env[&format!("HA_PORTICO_{n}_HTTP")],
            format!("{portico}:{http_port}")
        );
        assert_eq!(ha_env[&format!("HA_PORTICO_{n}_ADMIN_PORT")], admin_port);
    }
    // Published ports are HAProxy's listeners; its stats and Prometheus stay on loopback.
    let published: Vec<&str> = service(&compose, "haproxy")["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for bind in ["HA_BIND_HTTPS", "HA_BIND_HTTP"] {
        let port = ha_env[bind].trim_start_matches(':');
        assert!(
            published.contains(&format!("{port}:{port}").as_str()),
            "{bind} {port} is not published: {published:?}"
        );
    }
    assert!(published.contains(&"127.0.0.1:8404:8404"));
    // Prometheus scrapes both instances' admin listeners, and HAProxy's exporter.
    let prometheus: Value = serde_yaml::from_str(&read("conf/ha/prometheus.yml")).unwrap();
    let targets: Vec<String> = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|job| {
            job["static_configs"][0]["targets"]
                .as_sequence()
                .unwrap()
                .iter()
        })
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    for expected in [
        format!("portico-1:{admin_port}"),
        format!("portico-2:{admin_port}"),
        "haproxy:8404".to_string(),
    ] {
        assert!(
            targets.contains(&expected),
            "Prometheus does not scrape {expected}: {targets:?}"
        );
    }
    let prom = service(&compose, "prometheus");
    assert!(prom["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|v| bind_mount(v.as_str().unwrap())
            == ("./conf/ha/prometheus.yml", "/etc/prometheus/prometheus.yml")));
}

/// The load balancer must take a SIGTERM'd instance out well within `grace_period`, and
/// Docker must not kill it before its drain can finish.
#[test]
fn health_checks_fit_the_grace_period() {
    let portico: Value = serde_yaml::from_str(&read("conf/ha/portico.yaml")).unwrap();
    let grace = duration(portico["server"]["grace_period"].as_str().unwrap());
    let shutdown = duration(portico["server"]["shutdown_timeout"].as_str().unwrap());

    let cfg = read("conf/ha/haproxy.cfg");
    let words: Vec<&str> = cfg
        .lines()
        .find(|l| l.trim_start().starts_with("default-server"))
        .unwrap()
        .split_whitespace()
        .collect();
    let after = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .map(|i| words[i + 1])
            .unwrap_or_else(|| panic!("default-server has no {key}"))
    };
    let inter = duration(after("inter"));
    let fastinter = duration(after("fastinter"));
    let fall: u32 = after("fall").parse().unwrap();
    let check_timeout = cfg
        .lines()
        .find_map(|l| l.trim().strip_prefix("timeout check "))
        .map(duration)
        .expect("timeout check");
    // Worst case: the first failing check starts a full `inter` after SIGTERM and times
    // out, then `fall - 1` more at `fastinter`, each timing out too.
    let worst = inter + check_timeout + (fastinter + check_timeout) * (fall - 1);
    assert!(worst * 2 <= grace, "HAProxy may need {worst:?} to mark a draining instance down: keep it under half of grace_period ({grace:?})");
    let directives: Vec<&str> = cfg.lines().map(|l| l.split('#').next().unwrap()).collect();
    assert!(
        directives.iter().any(|l| l.trim() == "option httpchk"),
        "HAProxy must check over HTTP"
    );
    assert!(
        directives.iter().any(|l| l.contains("uri /readyz")),
        "HAProxy must check /readyz"
    );
    let servers: Vec<&&str> = directives
        .iter()
        .filter(|l| l.trim_start().starts_with("server "))
        .collect();
    assert_eq!(servers.len(), 4);
    assert!(
        servers.iter().all(|l| l.contains(" send-proxy-v2")),
        "every server line sends PROXY v2: {servers:?}"
    );
    assert!(
        !directives.iter().any(|l| l.contains("shutdown-sessions")),
        "a draining instance must finish what it serves"
    );

    let compose = compose();
    for n in 1..=2 {
        let p = service(&compose, &format!("portico-{n}"));
        let stop = duration(p["stop_grace_period"].as_str().unwrap());
        assert!(
            stop > grace + shutdown,
            "stop_grace_period {stop:?} < grace_period + shutdown_timeout"
        );
        assert_eq!(p["stop_signal"], "SIGTERM");
    }
}

/// `portico -t` on conf/ha/portico.yaml with the environment compose gives it (the
/// certificate paths moved to a temporary folder: `-t` generates the missing pair there).
#[tokio::test]
async fn the_ha_configs_pass_portico_t() {
    let compose = compose();
    let dir = TestDir::new();
    let mut env = environment(service(&compose, "portico-1"));
    env.insert(
        "PORTICO_TLS_CERT".into(),
        dir.join("tls.crt").display().to_string(),
    );
    env.insert(
        "PORTICO_TLS_KEY".into(),
        dir.join("tls.key").display().to_string(),
    );
    let (ok, output) = run(PORTICO_BIN, &["-c", "conf/ha/portico.yaml", "-t"], &env).await;
    assert!(
        ok,
        "portico -t conf/ha/portico.yaml with compose's environment:\n{output}"
    );

    // Without its environment the config says which variable is missing.
    let (ok, output) = run(
        PORTICO_BIN,
        &["-c", "conf/ha/portico.yaml", "-t"],
        &BTreeMap::new(),
    )
    .await;
    assert!(!ok && output.contains("PORTICO_HTTPS_LISTEN"), "{output}");

    // The local script's demo backend.
    let demo: BTreeMap<String, String> = [
        ("DEMO_NAME", "backend-1".to_string()),
        ("DEMO_LISTEN", "127.0.0.1:9001".to_string()),
        ("DEMO_ADMIN_LISTEN", "127.0.0.1:9911".to_string()),
        ("DEMO_RUN_DIR", dir.path().display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (ok, output) = run(
        PORTICO_BIN,
        &["-c", "conf/ha/demo-backend.yaml", "-t"],
        &demo,
    )
    .await;
    assert!(ok, "portico -t conf/ha/demo-backend.yaml:\n{output}");
}

#[tokio::test]
async fn haproxy_accepts_its_config_with_the_compose_environment() {
    if !tools_present(&["haproxy"]) {
        return;
    }
    let env = environment(service(&compose(), "haproxy"));
    let (ok, output) = run("haproxy", &["-c", "-f", "conf/ha/haproxy.cfg"], &env).await;
    assert!(ok, "haproxy -c conf/ha/haproxy.cfg:\n{output}");
    assert!(!output.contains("WARNING"), "haproxy -c warns:\n{output}");
}

#[tokio::test]
async fn promtool_accepts_the_prometheus_config() {
    if !tools_present(&["promtool"]) {
        return;
    }
    let (ok, output) = run(
        "promtool",
        &["check", "config", "conf/ha/prometheus.yml"],
        &BTreeMap::new(),
    )
    .await;
    assert!(
        ok,
        "promtool check config conf/ha/prometheus.yml:\n{output}"
    );
}

/// A /24-style IPv4 subnet, enough for the compose network (no extra dependency).
mod ipnet_lite {
    use std::net::Ipv4Addr;

    #[derive(Debug)]
    pub struct Net {
        base: u32,
        mask: u32,
    }

    impl std::str::FromStr for Net {
        type Err = String;

        fn from_str(s: &str) -> Result<Net, String> {
            let (ip, len) = s.split_once('/').ok_or("no /")?;
            let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{e}"))?;
            let len: u32 = len.parse().map_err(|e| format!("{e}"))?;
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            Ok(Net {
                base: u32::from(ip) & mask,
                mask,
            })
        }
    }

    impl Net {
        pub fn contains(&self, ip: Ipv4Addr) -> bool {
            u32::from(ip) & self.mask == self.base
        }
    }
}

#[test]
fn the_fleet_profile_follows_one_key_in_its_etcd() {
    let compose = compose();
    let etcd = address(&compose, "etcd");
    let url = format!("etcd://{etcd}:2379/portico/config");
    for name in ["etcd", "fleet-push", "portico-fleet-1", "portico-fleet-2"] {
        let profiles = &service(&compose, name)["profiles"];
        assert_eq!(profiles[0], "fleet", "{name}: only with --profile fleet");
    }
    // The file-based pair is there without a profile, as before.
    for name in ["portico-1", "portico-2", "haproxy"] {
        assert!(service(&compose, name)["profiles"].is_null(), "{name}");
    }
    let push = service(&compose, "fleet-push");
    let command: Vec<&str> = push["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        command,
        ["-c", "/etc/portico/portico.yaml", "-t", "--push", &url]
    );
    let f1 = service(&compose, "portico-fleet-1");
    let f2 = service(&compose, "portico-fleet-2");
    for f in [f1, f2] {
        assert_eq!(f["command"][0], "-c");
        assert_eq!(f["command"][1], url.as_str());
        let deps = f["depends_on"].as_sequence().unwrap();
        assert!(deps.iter().any(|d| d == "etcd") && deps.iter().any(|d| d == "fleet-push"));
        // The same environment as the file-based pair: the pushed config's ${VAR}s.
        assert_eq!(environment(f), environment(service(&compose, "portico-1")));
    }
    let strip = |p: &Value| {
        let mut m = p.as_mapping().unwrap().clone();
        for key in ["hostname", "networks", "ports"] {
            m.remove(key);
        }
        m
    };
    assert_eq!(
        strip(f1),
        strip(f2),
        "the fleet instances differ in more than name, address and port"
    );
}
