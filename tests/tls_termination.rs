//! TLS as a client sees it: the certificate chosen by SNI, protocol versions, ALPN, client
//! certificates, and the plain-HTTP listener that redirects to HTTPS.

use crate::common::*;

struct Setup {
    ca: TestCa,
    gw: Gateway,
    backend: Backend,
}

/// A TLS listener with three certificates (the first is the default) and more `tls` entries.
async fn setup(tls_extra: &str) -> Setup {
    let ca = TestCa::new("termination CA");
    let first = ca.issue(&["default.test"]);
    let second = ca.issue(&["api.test", "www.api.test"]);
    let wild = ca.issue(&["*.wild.test"]);
    let backend = Backend::http("app");
    let gw = Config::admin_only()
        .listener("tls", &tls(&[&first, &second, &wild], tls_extra))
        .app(&backend)
        .route("name: all, upstream: app")
        .start()
        .await;
    Setup { ca, gw, backend }
}

#[tokio::test]
async fn certificate_is_chosen_by_sni_with_wildcards_and_a_default() {
    let s = setup("").await;
    let addr = s.gw.listener("tls");
    let trust = TlsClientOpts::trusting(s.ca.cert_path());
    for (sni, expect) in [
        ("api.test", "api.test"),
        ("WWW.API.TEST", "api.test"),
        ("x.wild.test", "*.wild.test"),
        ("default.test", "default.test"),
        ("unknown.test", "default.test"),
        ("", "default.test"),
        ("a.b.wild.test", "default.test"),
    ] {
        let opts = if ["unknown.test", "", "a.b.wild.test"].contains(&sni) {
            TlsClientOpts::insecure()
        } else {
            trust.clone()
        };
        let conn = tls_connect(addr, sni, &opts)
            .await
            .unwrap_or_else(|e| panic!("SNI {sni:?}: {e}"));
        assert!(
            conn.peer_dns_names().contains(&expect.to_string()),
            "SNI {sni:?} got {:?}",
            conn.peer_dns_names()
        );
    }
    // And the verified connection serves requests.
    let r = https_get(addr, "api.test", &trust, "/hello").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(s.backend.hits(), 1);
}

#[tokio::test]
async fn tls_1_1_is_refused_and_1_2_and_1_3_are_served() {
    let s = setup("").await;
    let addr = s.gw.listener("tls");
    let trust = TlsClientOpts::trusting(s.ca.cert_path());
    assert!(
        tls_connect(addr, "api.test", &trust.clone().only(SslVersion::TLS1_1))
            .await
            .is_err(),
        "TLS 1.1 must be refused"
    );
    assert!(
        tls_connect(addr, "api.test", &trust.clone().only(SslVersion::TLS1))
            .await
            .is_err(),
        "TLS 1.0 must be refused"
    );
    let v12 = tls_connect(addr, "api.test", &trust.clone().only(SslVersion::TLS1_2))
        .await
        .unwrap();
    assert_eq!(v12.version(), "TLSv1.2");
    let v13 = tls_connect(addr, "api.test", &trust).await.unwrap();
    assert_eq!(v13.version(), "TLSv1.3");
    // The refused handshakes are counted per listener.
    let m = s.gw.admin_get("/metrics").await.unwrap().text();
    let line = m
        .lines()
        .find(|l| l.starts_with("portico_tls_handshake_errors_total{listener=\"tls\"}"))
        .unwrap_or_else(|| panic!("{m}"));
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 2.0, "{line}");
}

#[tokio::test]
async fn min_version_1_3_refuses_1_2() {
    let s = setup("min_version: \"1.3\"").await;
    let addr = s.gw.listener("tls");
    let trust = TlsClientOpts::trusting(s.ca.cert_path());
    assert!(
        tls_connect(addr, "api.test", &trust.clone().only(SslVersion::TLS1_2))
            .await
            .is_err()
    );
    assert_eq!(
        tls_connect(addr, "api.test", &trust)
            .await
            .unwrap()
            .version(),
        "TLSv1.3"
    );
}

#[tokio::test]
async fn alpn_offers_h2_and_http_1_1() {
    let s = setup("").await;
    let addr = s.gw.listener("tls");
    let trust = TlsClientOpts::trusting(s.ca.cert_path());
    let c = tls_connect(addr, "api.test", &trust.clone().alpn(&["h2", "http/1.1"]))
        .await
        .unwrap();
    assert_eq!(c.alpn().as_deref(), Some("h2"));
    let c = tls_connect(addr, "api.test", &trust.clone().alpn(&["http/1.1"]))
        .await
        .unwrap();
    assert_eq!(c.alpn().as_deref(), Some("http/1.1"));
    let r = h2_request(addr, "api.test", &trust, "api.test", "/h2")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.version, "HTTP/2.0");
    // The HTTP/1.1 backend gets a Host header made from the :authority.
    assert_eq!(r.json()["version"], "HTTP/1.1");
    assert_eq!(r.json()["headers"]["host"], "api.test");
}

#[tokio::test]
async fn alpn_http_1_1_only_never_negotiates_h2() {
    let s = setup("alpn: [http/1.1]").await;
    let trust = TlsClientOpts::trusting(s.ca.cert_path());
    let c = tls_connect(
        s.gw.listener("tls"),
        "api.test",
        &trust.alpn(&["h2", "http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(c.alpn().as_deref(), Some("http/1.1"));
}

#[tokio::test]
async fn client_ca_requires_a_client_certificate() {
    let client_ca = TestCa::new("clients CA");
    let s = setup(&format!(
        "client_ca: \"{}\"",
        client_ca.cert_path().display()
    ))
    .await;
    let addr = s.gw.listener("tls");
    let trust = TlsClientOpts::trusting(s.ca.cert_path());
    // Without a certificate: refused (at the handshake, or at the first read with TLS 1.3).
    let without = https_get(addr, "api.test", &trust, "/").await;
    assert!(
        without.is_err(),
        "no client certificate must be refused: {without:?}"
    );
    // A certificate from another CA: refused.
    let stranger_ca = TestCa::new("stranger CA");
    let stranger = stranger_ca.issue_client("mallory");
    assert!(
        https_get(addr, "api.test", &trust.clone().client_cert(&stranger), "/")
            .await
            .is_err()
    );
    // A certificate from the configured CA: served.
    let alice = client_ca.issue_client("alice");
    let r = https_get(addr, "api.test", &trust.client_cert(&alice), "/")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(s.backend.hits(), 1);
}

#[tokio::test]
async fn plain_listener_redirects_to_https_keeping_host_path_and_query() {
    let https = free_port();
    let gw = Config::admin_only()
        .listener("http", &format!("redirect_https: {https}"))
        .listener("http443", "redirect_https: 443")
        .yaml("routes: []\n")
        .start()
        .await;
    let r = http_request(
        gw.listener("http"),
        "GET",
        "/a/b?c=d",
        &[("host", "Example.com:8080")],
        Body::empty(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("https://example.com:{https}/a/b?c=d").as_str())
    );
    let r = http_request(
        gw.listener("http443"),
        "POST",
        "/x",
        &[("host", "example.com")],
        "body",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://example.com/x"));
}
