//! Reading a Prometheus text exposition (what `GET /metrics` answers), and checking it with
//! `promtool`.

use std::fmt;
use std::io::Write;
use std::process::{Command, Stdio};

use super::{require_tool, Gateway};

/// The families an operator watches, as docs/operations.md ("Metrics") lists them: traffic,
/// upstream outcomes, health, retries, connections, handshakes, plugin refusals, reloads.
/// `operations.rs` checks the binary exposes them; `dashboard.rs` that a panel shows each.
pub const OPERATOR_METRICS: [&str; 9] = [
    "portico_requests_total",
    "portico_request_duration_seconds",
    "portico_upstream_requests_total",
    "portico_upstream_backend_healthy",
    "portico_upstream_retries_total",
    "portico_downstream_connections",
    "portico_tls_handshake_errors_total",
    "portico_plugin_rejections_total",
    "portico_config_reloads_total",
];

/// One sample line: `name{label="value",...} number`.
#[derive(Clone, Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// A scraped exposition, kept whole (`{}` prints it, for assertion messages) and parsed.
#[derive(Clone, Debug)]
pub struct Metrics {
    text: String,
    samples: Vec<Sample>,
}

impl Metrics {
    pub fn parse(text: impl Into<String>) -> Metrics {
        let text = text.into();
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| parse_sample(l).unwrap_or_else(|| panic!("not a sample line: {l:?}")))
            .collect();
        Metrics { text, samples }
    }

    /// The value of the one series `name` whose labels are exactly `labels` (in any order);
    /// `None` when there is no such series.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|l| has_label(s, l))
            })
            .map(|s| s.value)
    }

    /// The sum over every series `name` whose labels include all of `labels`; 0 when there
    /// is none.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|l| has_label(s, l)))
            .map(|s| s.value)
            .sum()
    }
}

/// The exposition's text, for `contains` and friends.
impl std::ops::Deref for Metrics {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn has_label(sample: &Sample, (key, value): &(&str, &str)) -> bool {
    sample.labels.iter().any(|(k, v)| k == key && v == value)
}

/// `name{a="1",b="x\"y"} 2.5` (labels optional; a trailing timestamp is ignored).
fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start_matches(',');
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.push((key.to_string(), value));
            rest = &after[end + 1..];
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

impl Gateway {
    /// `GET /metrics` on the admin listener: 200, as Prometheus's text format.
    pub async fn metrics(&self) -> Metrics {
        let r = self.admin_get("/metrics").await.expect("GET /metrics");
        assert_eq!(r.status, 200, "GET /metrics: {}", r.text());
        let content_type = r.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with("text/plain"), "{content_type:?}");
        Metrics::parse(r.text())
    }
}

/// Asserts that `promtool check metrics` accepts `exposition`.
pub fn promtool_check_metrics(exposition: &str) {
    require_tool("promtool");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n--- exposition ---\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
