//! deploy/grafana/portico.json, the Grafana dashboard (docs/operations.md, "Dashboard"):
//! every PromQL expression in it parses with the real `promtool`, every `portico_*` metric it
//! names is one the real binary exposes on /metrics (or, for metrics that come with a feature
//! this test does not switch on, one the docs list in a metrics table), it covers what an
//! operator looks at, and docker-compose.yml's Grafana provisions it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;
use serde_json::Value;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(REPO).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("deploy/grafana/portico.json")).expect("portico.json is JSON")
}

/// Every `expr` in the dashboard (panel targets, annotations), wherever it is nested.
fn expressions(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => expressions(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

fn all_expressions() -> Vec<String> {
    let mut exprs = Vec::new();
    expressions(&dashboard(), &mut exprs);
    assert!(
        exprs.len() > 10,
        "the dashboard has {} expressions",
        exprs.len()
    );
    exprs
}

/// The expression as Prometheus receives it: Grafana replaces its variables first.
fn as_prometheus_sees_it(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "30s")
        .replace("$__range", "1h")
        .replace("${instance}", ".*")
        .replace("$instance", ".*")
}

/// The `portico_*` metric names in a text (histogram series mapped to their family).
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("portico_"))
        .map(|w| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .filter(|base| base.ends_with("_seconds") && !base.ends_with("expiry_seconds"))
                .unwrap_or(w)
                .to_string()
        })
        .collect()
}

fn promtool_installed() -> bool {
    Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// `promtool check rules` on recording rules whose expressions are `exprs`.
fn promtool_check_rules(exprs: &[String]) -> (bool, String) {
    let dir = TestDir::new();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        // A JSON string is a valid YAML double-quoted scalar.
        rules.push_str(&format!(
            "      - record: dashboard:expr_{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
    }
    let path = dir.write("rules.yml", rules);
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&path)
        .output()
        .expect("run promtool");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn every_expression_parses_with_promtool() {
    if !promtool_installed() {
        eprintln!("\n!!!!!!!! promtool is NOT installed: the dashboard's expressions were NOT checked !!!!!!!!\n");
        return;
    }
    // The check can fail: promtool refuses a broken expression in the same wrapping.
    let (ok, _) = promtool_check_rules(&["sum(rate(portico_requests_total[1m])".to_string()]);
    assert!(!ok, "promtool accepted a broken expression");

    let exprs: Vec<String> = all_expressions()
        .iter()
        .map(|e| as_prometheus_sees_it(e))
        .collect();
    for expr in &exprs {
        assert!(!expr.contains('$'), "a Grafana variable left in {expr}");
    }
    let (ok, report) = promtool_check_rules(&exprs);
    assert!(ok, "promtool check rules:\n{report}");
}

/// Metric names listed in a metrics table (`| \`portico_...\` |` rows) of the docs.
fn documented_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(Path::new(REPO).join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix("| `portico_") {
                    let name = &rest[..rest.find('`').unwrap()];
                    names.insert(format!("portico_{name}"));
                }
            }
        }
    }
    names
}

#[tokio::test]
async fn every_metric_the_dashboard_names_is_one_portico_exposes() {
    // A config that implies every series the binary has: a TLS listener, an upstream with a
    // backend, a route with a plugin that refuses.
    let ca = TestCa::new("dashboard CA");
    let cert = ca.issue(&["gw.test"]);
    let live = Backend::http("live");
    let yaml = format!(
        "server: {{ upgrade_sock: \"${{PORTICO_TEST_DIR}}/u.sock\", pid_file: \"${{PORTICO_TEST_DIR}}/p.pid\", grace_period: 0s, shutdown_timeout: 1s }}\n\
         admin: {{ listen: 127.0.0.1:{} }}\n\
         listeners:\n  - {{ name: web, listen: 127.0.0.1:{} }}\n  - name: secure\n    listen: 127.0.0.1:{}\n    tls: {{ certificates: [ {{ cert: \"{}\", key: \"{}\" }} ] }}\n\
         upstreams:\n  app: {{ backends: [ {{ addr: \"{}\" }} ] }}\n\
         routes:\n  - {{ name: api, match: {{ path: {{ prefix: /api }} }}, upstream: app }}\n  \
         - name: locked\n    match: {{ path: {{ prefix: /locked }} }}\n    upstream: app\n    plugins: [ {{ key_auth: {{ keys: {{ ci: k3y }} }} }} ]\n",
        free_port(),
        free_port(),
        free_port(),
        cert.cert.display(),
        cert.key.display(),
        live.addr(),
    );
    let gw = Gateway::start(&yaml).await;
    let web = gw.listener("web");
    for path in ["/api/x", "/locked", "/nowhere"] {
        let mut conn = HttpConn::plain(web).await.unwrap();
        conn.get(path).await.unwrap();
    }
    let scrape = gw.admin_get("/metrics").await.unwrap();
    assert_eq!(scrape.status, 200);
    let exposed: BTreeSet<String> = scrape
        .text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(metric_names)
        .collect();
    assert!(exposed.contains("portico_requests_total"), "{exposed:?}");

    let documented = documented_metrics();
    let named: BTreeSet<String> = all_expressions()
        .iter()
        .flat_map(|e| metric_names(e))
        .collect();
    let mut templated = Vec::new();
    let dash = dashboard();
    for var in dash["templating"]["list"].as_array().unwrap() {
        templated.extend(metric_names(&var["definition"].to_string()));
    }
    for name in named.iter().chain(&templated) {
        assert!(
            exposed.contains(name) || documented.contains(name),
            "the dashboard uses {name}, which the binary does not expose and no docs metrics table lists\nexposed: {exposed:?}"
        );
    }

    // It covers what an operator looks at: each of these is on some panel.
    for name in OPERATOR_METRICS
        .into_iter()
        .chain(["portico_certificate_expiry_seconds"])
    {
        assert!(named.contains(name), "no panel shows {name}");
    }
    let exprs = all_expressions().join("\n");
    assert!(
        exprs.contains("histogram_quantile(") && exprs.contains("_bucket"),
        "latency quantiles come from the histogram"
    );
    assert!(exprs.contains("status=~\"5..\""), "an error ratio");
}

#[test]
fn the_data_source_is_a_variable_and_grafana_provisions_the_dashboard() {
    let dash = dashboard();
    let vars = dash["templating"]["list"].as_array().unwrap();
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a data source variable");
    assert_eq!(ds["query"], "prometheus");
    let ds_ref = format!("${{{}}}", ds["name"].as_str().unwrap());

    // Every panel and target reads through the variable; panel ids are unique.
    let mut ids = BTreeSet::new();
    for panel in dash["panels"].as_array().unwrap() {
        assert!(ids.insert(panel["id"].as_i64().unwrap()), "panel id twice");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"],
            ds_ref.as_str(),
            "{}",
            panel["title"]
        );
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(
                target["datasource"]["uid"],
                ds_ref.as_str(),
                "{}",
                panel["title"]
            );
        }
    }

    // docker-compose.yml's Grafana mounts the dashboard where its provider reads, and the
    // data source points at the compose Prometheus.
    let mut compose: serde_yaml::Value = serde_yaml::from_str(&read("docker-compose.yml")).unwrap();
    compose.apply_merge().unwrap();
    let grafana = &compose["services"]["grafana"];
    let mounts: Vec<(String, String)> = grafana["volumes"]
        .as_sequence()
        .expect("grafana mounts")
        .iter()
        .map(|v| {
            let parts: Vec<&str> = v.as_str().unwrap().split(':').collect();
            (parts[0].to_string(), parts[1].to_string())
        })
        .collect();
    let target_of = |source: &str| {
        mounts
            .iter()
            .find(|(s, _)| s == source)
            .unwrap_or_else(|| panic!("grafana does not mount {source}"))
            .1
            .clone()
    };
    let dashboard_at = target_of("./deploy/grafana/portico.json");
    assert!(target_of("./deploy/grafana/datasource.yml")
        .starts_with("/etc/grafana/provisioning/datasources/"));
    assert!(target_of("./deploy/grafana/dashboards.yml")
        .starts_with("/etc/grafana/provisioning/dashboards/"));
    let providers: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/grafana/dashboards.yml")).unwrap();
    let folder = providers["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    assert_eq!(
        Path::new(&dashboard_at).parent().unwrap(),
        Path::new(folder)
    );

    let sources: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/grafana/datasource.yml")).unwrap();
    let source = &sources["datasources"][0];
    assert_eq!(source["type"], "prometheus");
    let prometheus_ip = compose["services"]["prometheus"]["networks"]["ha"]["ipv4_address"]
        .as_str()
        .unwrap();
    assert_eq!(
        source["url"].as_str().unwrap(),
        format!("http://{prometheus_ip}:9090")
    );
}
