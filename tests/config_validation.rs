//! `portico -t` and startup with broken configs: every error named by key path and line,
//! all of them at once; and the conveniences of the file format (env, durations, paths).

use crate::common::*;
use std::time::Duration;

/// Asserts `stderr` has a line starting with `path` containing `text`, with `(line N)`.
fn has_error(stderr: &str, path: &str, text: &str, line: Option<usize>) {
    let found = stderr
        .lines()
        .find(|l| l.starts_with(&format!("{path}:")) && l.contains(text));
    let l =
        found.unwrap_or_else(|| panic!("no error for {path} containing {text:?} in:\n{stderr}"));
    if let Some(n) = line {
        assert!(
            l.ends_with(&format!("(line {n})")),
            "expected line {n}: {l}"
        );
    }
}

#[tokio::test]
async fn every_semantic_error_is_reported_with_path_and_line() {
    let dir = TestDir::new();
    let ca = TestCa::new("validation CA");
    let a = ca.issue(&["a.test"]);
    let b = ca.issue(&["b.test"]);
    let yaml = format!(
        "admin:\n\
         \x20 listen: 127.0.0.1:{admin}\n\
         listeners:\n\
         \x20 - name: web\n\
         \x20   listen: 127.0.0.1:notaport\n\
         \x20 - name: web\n\
         \x20   listen: 127.0.0.1:{port}\n\
         \x20   tls:\n\
         \x20     certificates:\n\
         \x20       - {{ cert: {acert}, key: {bkey} }}\n\
         \x20       - {{ cert: /nonexistent/c.crt, key: /nonexistent/c.key }}\n\
         server:\n\
         \x20 trusted_proxies: [10.0.0.0/33]\n\
         \x20 upstream_keepalive_pool: 0\n\
         \x20 request_id_header: \"X Request Id\"\n\
         upstreams:\n\
         \x20 app:\n\
         \x20   backends:\n\
         \x20     - {{ addr: 127.0.0.1 }}\n\
         \x20   dns_refresh: 500ms\n\
         routes:\n\
         \x20 - name: r1\n\
         \x20   upstream: app\n\
         \x20 - name: r1\n\
         \x20   upstream: billing\n\
         \x20   match:\n\
         \x20     path: {{ regex: \"/(unclosed\" }}\n",
        admin = free_port(),
        port = free_port(),
        acert = a.cert.display(),
        bkey = b.key.display()
    );
    let path = dir.write("bad.yaml", &yaml);
    let (code, stderr) = validate_config_file(&path).await;
    assert_eq!(code, 1, "{stderr}");
    has_error(&stderr, "listeners[0].listen", "not an address", Some(5));
    has_error(
        &stderr,
        "listeners[1].name",
        "duplicate listener name",
        Some(6),
    );
    has_error(
        &stderr,
        "listeners[1].tls.certificates[0]",
        "does not match",
        Some(10),
    );
    has_error(
        &stderr,
        "listeners[1].tls.certificates[1]",
        "cannot read",
        Some(11),
    );
    has_error(&stderr, "server.trusted_proxies[0]", "CIDR", Some(13));
    has_error(
        &stderr,
        "server.upstream_keepalive_pool",
        "at least 1",
        Some(14),
    );
    has_error(
        &stderr,
        "server.request_id_header",
        "not a valid header name",
        Some(15),
    );
    has_error(
        &stderr,
        "upstreams.app.backends[0].addr",
        "no port",
        Some(19),
    );
    has_error(
        &stderr,
        "upstreams.app.dns_refresh",
        "at least 1s",
        Some(20),
    );
    has_error(&stderr, "routes[1].name", "duplicate route name", Some(24));
    has_error(
        &stderr,
        "routes[1].upstream",
        "no upstream named \"billing\"",
        Some(25),
    );
    has_error(
        &stderr,
        "routes[1].match.path.regex",
        "invalid regex",
        Some(27),
    );
    // And the same config does not start.
    let (code, stderr2) = Gateway::start_expect_failure(&yaml).await;
    assert_eq!(code, Some(1));
    assert!(stderr2.contains("routes[1].upstream"), "{stderr2}");
}

#[tokio::test]
async fn unknown_keys_and_wrong_types_are_errors() {
    let (code, stderr) =
        validate_config("listeners:\n  - name: web\n    listen: 127.0.0.1:1\n    tsl: {}\n").await;
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("listeners[0]")
            && stderr.contains("unknown field `tsl`")
            && stderr.contains("(line 4)"),
        "{stderr}"
    );
    let (code, stderr) = validate_config("server:\n  grace_period: soon\n").await;
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("server.grace_period: invalid duration") && stderr.contains("(line 2)"),
        "{stderr}"
    );
    let (code, stderr) =
        validate_config("upstreams:\n  app:\n    backends: []\n    balance: fastest\n").await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("upstreams.app.balance") || stderr.contains("upstreams.app"),
        "{stderr}"
    );
    assert!(stderr.contains("fastest"), "{stderr}");
}

/// Every error line starts with the path of the value at fault, the deepest key there is:
/// an unknown key is its own path (also at the top level), a bad duration or enum value
/// names its own key (also inside a `{ ... }` with other keys on the same line), an unset
/// `${VAR}` names the key whose value holds it.
#[tokio::test]
async fn each_error_starts_with_the_deepest_key_path() {
    const UP: &str = "upstreams:\n  app:\n    backends: [ { addr: \"127.0.0.1:9\" } ]\n";
    // (config, the start of stderr's first line, its line)
    let cases: Vec<(String, &str, usize)> = vec![
        (format!("bogus: 1\n{UP}"), "bogus: unknown key", 1),
        (format!("{UP}zzz:\n  deeper: 1\n"), "zzz: unknown key", 4),
        (
            format!("{UP}    health_check: {{ interval: 2 parsecs }}\n"),
            "upstreams.app.health_check.interval: invalid duration \"2 parsecs\"",
            4,
        ),
        (
            format!("{UP}    health_check:\n      kind: http\n      interval: soon\n"),
            "upstreams.app.health_check.interval: invalid duration \"soon\"",
            6,
        ),
        (
            format!("{UP}    timeouts: {{ connect: 2s, read: 1 fortnight, write: 1s }}\n"),
            "upstreams.app.timeouts.read: invalid duration \"1 fortnight\"",
            4,
        ),
        (
            format!("{UP}    health_check:\n      kind: tcp\n      bogus:\n        deep: 1\n"),
            "upstreams.app.health_check.bogus: unknown key",
            6,
        ),
        (
            format!("{UP}    health_check: {{ kind: udp }}\n"),
            "upstreams.app.health_check.kind: unknown variant `udp`",
            4,
        ),
        (
            format!("{UP}    passive: {{ failures: many }}\n"),
            "upstreams.app.passive.failures: invalid type",
            4,
        ),
        (
            "server:\n  limits: { header_timeout: 1s, idle_timeout: forever }\n".to_string(),
            "server.limits.idle_timeout: invalid duration \"forever\"",
            2,
        ),
        (
            "routes:\n  - name: a\n    match: { path: { prefix: /a }, methodz: [GET] }\n"
                .to_string(),
            "routes[0].match.methodz: unknown key",
            3,
        ),
        (
            "admin:\n  listen: 127.0.0.1:9901\n  token: \"${PORTICO_T_SURELY_UNSET}\"\n"
                .to_string(),
            "admin.token: environment variable PORTICO_T_SURELY_UNSET is not set",
            3,
        ),
        (
            "admin: { listen: 127.0.0.1:9901, token: ${PORTICO_T_SURELY_UNSET} }\n".to_string(),
            "admin.token: environment variable PORTICO_T_SURELY_UNSET is not set",
            1,
        ),
        (
            format!("{UP}    tls: {{ sni: \"a-${{PORTICO_T_SURELY_UNSET}}.internal\" }}\n"),
            "upstreams.app.tls.sni: environment variable PORTICO_T_SURELY_UNSET is not set",
            4,
        ),
    ];
    for (yaml, start, line) in &cases {
        let (code, stderr) = validate_config(yaml).await;
        assert_eq!(code, 1, "{yaml}\n{stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(start),
            "{yaml}\nwant {start:?}, got: {stderr}"
        );
        assert!(
            first.ends_with(&format!("(line {line})")),
            "{yaml}\nwant line {line}, got: {stderr}"
        );
        // `-t` prints errors only: every line starts with a key path, none is a summary.
        for l in stderr.lines() {
            let path = l.split(": ").next().unwrap_or_default();
            assert!(
                !path.is_empty()
                    && path
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.[]-".contains(c)),
                "a line that is not an error with its key path: {l:?}\n{stderr}"
            );
        }
    }
}

#[tokio::test]
async fn plugin_errors_name_the_route_and_plugin() {
    let yaml = format!(
        "admin: {{ listen: 127.0.0.1:{} }}\nlisteners:\n  - {{ name: web, listen: 127.0.0.1:{} }}\n\
         routes:\n  - name: api\n    plugins:\n      - no_such_plugin: {{}}\n",
        free_port(),
        free_port()
    );
    let (code, stderr) = validate_config(&yaml).await;
    assert_eq!(code, 1);
    has_error(
        &stderr,
        "routes[0].plugins[0].no_such_plugin",
        "route \"api\"",
        Some(7),
    );
}

#[tokio::test]
async fn admin_off_loopback_needs_a_token() {
    let yaml = format!(
        "admin: {{ listen: 0.0.0.0:{} }}\nlisteners:\n  - {{ name: web, listen: 127.0.0.1:{} }}\n",
        free_port(),
        free_port()
    );
    let (code, stderr) = validate_config(&yaml).await;
    assert_eq!(code, 1);
    has_error(&stderr, "admin.token", "token is required", None);
    let (code, stderr) =
        validate_config(&yaml.replace("admin: {", "admin: { token: s3cret,")).await;
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test]
async fn protect_metrics_needs_a_token() {
    let yaml = format!(
        "admin:\n  listen: 127.0.0.1:{}\n  protect_metrics: true\nlisteners:\n  - {{ name: web, listen: 127.0.0.1:{} }}\n",
        free_port(),
        free_port()
    );
    let (code, stderr) = validate_config(&yaml).await;
    assert_eq!(code, 1);
    has_error(&stderr, "admin.protect_metrics", "admin.token", Some(3));
    let (code, stderr) =
        validate_config(&yaml.replace("  protect_metrics", "  token: s3cret\n  protect_metrics"))
            .await;
    assert_eq!(code, 0, "{stderr}");
}

/// Plugin settings that would turn a plugin against the gateway or its users are refused
/// when the config is read, each named by key path and line.
#[tokio::test]
async fn plugin_settings_that_open_the_gateway_up_are_errors() {
    let yaml = format!(
        "admin: {{ listen: 127.0.0.1:{} }}\nlisteners:\n  - {{ name: web, listen: 127.0.0.1:{} }}\n\
         routes:\n\
         \x20 - name: api\n\
         \x20   plugins:\n\
         \x20     - cors: {{ allow_origins: [\"*\"], allow_credentials: true }}\n\
         \x20     - cors: {{ allow_credentials: true }}\n\
         \x20     - redirect: {{ url: //evil.example }}\n\
         \x20     - rate_limit: {{ per_second: 1, ipv6_prefix: 0 }}\n\
         \x20     - rate_limit: {{ per_second: 1, ipv6_prefix: 129 }}\n\
         \x20     - rate_limit: {{ per_second: 1, max_keys: 0 }}\n",
        free_port(),
        free_port()
    );
    let (code, stderr) = validate_config(&yaml).await;
    assert_eq!(code, 1, "{stderr}");
    let at = |i: usize, name: &str| format!("routes[0].plugins[{i}].{name}");
    has_error(
        &stderr,
        &at(0, "cors"),
        "allow_origins: [\"*\"] cannot be used with allow_credentials: true",
        Some(7),
    );
    has_error(
        &stderr,
        &at(1, "cors"),
        "cannot be used with allow_credentials",
        Some(8),
    );
    has_error(
        &stderr,
        &at(2, "redirect"),
        "url: \"//evil.example\" starts with //",
        Some(9),
    );
    has_error(
        &stderr,
        &at(3, "rate_limit"),
        "ipv6_prefix: 0 is not a prefix length",
        Some(10),
    );
    has_error(&stderr, &at(4, "rate_limit"), "ipv6_prefix: 129", Some(11));
    has_error(
        &stderr,
        &at(5, "rate_limit"),
        "max_keys: must be at least 1",
        Some(12),
    );
}

#[tokio::test]
async fn env_variables_are_substituted_and_unset_ones_are_errors() {
    let dir = TestDir::new();
    let port = free_port();
    let yaml = format!(
        "admin: {{ listen: 127.0.0.1:{} }}\nlisteners:\n  - {{ name: web, listen: \"127.0.0.1:${{PORTICO_T_PORT}}\" }}\nupstreams:\n  app: {{ backends: [ {{ addr: \"${{PORTICO_T_UNSET_VAR}}\" }} ] }}\n",
        free_port()
    );
    let path = dir.write("env.yaml", &yaml);
    let out = tokio::process::Command::new(PORTICO_BIN)
        .args(["-c", path.to_str().unwrap(), "-t"])
        .env("PORTICO_T_PORT", port.to_string())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("PORTICO_T_UNSET_VAR is not set") && stderr.contains("(line 5)"),
        "{stderr}"
    );
    assert!(!stderr.contains("PORTICO_T_PORT"), "{stderr}");
}

#[tokio::test]
async fn a_valid_config_passes_and_the_default_config_is_valid() {
    let (code, stderr) = validate_config_file(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conf/portico.yaml"
    )))
    .await;
    assert_eq!(code, 0, "{stderr}");
    for example in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/examples")).unwrap()
    {
        let path = example.unwrap().path();
        let (code, stderr) = validate_config_file(&path).await;
        assert_eq!(code, 0, "{}: {stderr}", path.display());
    }
}

#[tokio::test]
async fn relative_paths_resolve_against_the_config_folder_also_as_a_daemon() {
    let dir = TestDir::new();
    let ca = TestCa::new("daemon CA");
    let cert = ca.issue(&["d.test"]);
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    std::fs::copy(&cert.cert, dir.join("certs/d.crt")).unwrap();
    std::fs::copy(&cert.key, dir.join("certs/d.key")).unwrap();
    let b = Backend::http("app");
    let (admin, port) = (free_port(), free_port());
    let yaml = format!(
        "server: {{ grace_period: 0s, shutdown_timeout: 1s, pid_file: run/portico.pid, upgrade_sock: run/u.sock }}\n\
         admin: {{ listen: 127.0.0.1:{admin} }}\n\
         listeners:\n  - name: tls\n    listen: 127.0.0.1:{port}\n    tls: {{ certificates: [ {{ cert: certs/d.crt, key: certs/d.key }} ] }}\n\
         upstreams:\n  app: {{ backends: [ {{ addr: \"{}\" }} ] }}\nroutes:\n  - {{ name: all, upstream: app }}\n",
        b.addr()
    );
    std::fs::create_dir_all(dir.join("run")).unwrap();
    let path = dir.write("portico.yaml", &yaml);
    // Started from another working directory, in the background.
    let status = tokio::process::Command::new(PORTICO_BIN)
        .args(["-c", path.to_str().unwrap(), "-d"])
        .current_dir("/")
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let trust = TlsClientOpts::trusting(ca.cert_path());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(r) = https_get(addr, "d.test", &trust, "/").await {
            ok = r.status == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid_file = dir.join("run/portico.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
    // Stop the daemon before asserting, so a failure leaves nothing running.
    if !pid.trim().is_empty() {
        let _ = std::process::Command::new("kill")
            .args(["-9", pid.trim()])
            .status();
    }
    assert!(
        ok,
        "the daemon serves HTTPS with certificates found relative to the config"
    );
    assert!(
        !pid.trim().is_empty(),
        "the daemon wrote its pid file relative to the config"
    );
}
