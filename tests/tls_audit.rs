//! The TLS a listener offers with the defaults: TLS 1.2 and 1.3 only, forward-secret AEAD
//! suites only, the server's cipher order, Mozilla's curves, session resumption, OCSP stapling
//! when a staple file is configured, and sslyze's Mozilla "intermediate" check.
//!
//! Certificates here come from the `openssl` command (as an operator would make them), with
//! a lifetime of 90 days: sslyze's check refuses leaves valid for more than 366.

use crate::common::*;
use openssl::ssl::{
    SslConnector, SslConnectorBuilder, SslMethod, SslSessionCacheMode, SslVerifyMode, SslVersion,
};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run the openssl command");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and, signed by it, 90-day leaves as an operator would make them with `openssl`.
struct Pki {
    dir: TestDir,
}

impl Pki {
    /// `None` where openssl is missing and the test is opted out (see [`tools_present`]).
    fn new() -> Option<Pki> {
        if !tools_present(&["openssl"]) {
            return None;
        }
        let dir = TestDir::new();
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                "/CN=Audit CA",
                "-days",
                "365",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Some(Pki { dir })
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A leaf for `name` (`rsa`: a 2048-bit RSA key, else ECDSA P-256); returns the chain
    /// file (leaf then CA) and the key file.
    fn leaf(&self, name: &str, rsa: bool) -> (PathBuf, PathBuf) {
        let d = self.dir.path();
        let key = format!("{name}.key");
        let newkey: &[&str] = if rsa {
            &["-newkey", "rsa:2048"]
        } else {
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        };
        let mut args = vec!["req"];
        args.extend_from_slice(newkey);
        let subj = format!("/CN={name}");
        args.extend_from_slice(&[
            "-nodes", "-keyout", &key, "-out", "leaf.csr", "-subj", &subj,
        ]);
        openssl(d, &args);
        std::fs::write(d.join("ext.cnf"), format!("subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")).unwrap();
        let crt = format!("{name}.crt");
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "90",
                "-sha256",
                "-extfile",
                "ext.cnf",
            ],
        );
        let chain = [
            std::fs::read(d.join(&crt)).unwrap(),
            std::fs::read(d.join("ca.crt")).unwrap(),
        ]
        .concat();
        let chain_file = d.join(format!("{name}.chain.crt"));
        std::fs::write(&chain_file, chain).unwrap();
        (chain_file, d.join(key))
    }

    /// A DER OCSP response from the CA saying `name`'s certificate is good for a week.
    fn ocsp_good(&self, name: &str) -> PathBuf {
        self.ocsp(name, false)
    }

    /// A DER OCSP response from the CA, for a week, saying `name`'s certificate is good, or
    /// revoked.
    fn ocsp(&self, name: &str, revoked: bool) -> PathBuf {
        let d = self.dir.path();
        let crt = format!("{name}.crt");
        let serial = Command::new("openssl")
            .args(["x509", "-in", &crt, "-noout", "-serial"])
            .current_dir(d)
            .output()
            .unwrap();
        let serial = String::from_utf8_lossy(&serial.stdout)
            .trim()
            .trim_start_matches("serial=")
            .to_string();
        std::fs::write(
            d.join("index.txt"),
            match revoked {
                false => format!("V\t301231000000Z\t\t{serial}\tunknown\t/CN={name}\n"),
                true => format!("R\t301231000000Z\t240101000000Z\t{serial}\tunknown\t/CN={name}\n"),
            },
        )
        .unwrap();
        let out = format!(
            "{name}.{}.ocsp.der",
            if revoked { "revoked" } else { "good" }
        );
        openssl(
            d,
            &[
                "ocsp",
                "-issuer",
                "ca.crt",
                "-cert",
                &crt,
                "-reqout",
                "ocsp.req",
                "-no_nonce",
            ],
        );
        openssl(
            d,
            &[
                "ocsp",
                "-index",
                "index.txt",
                "-rsigner",
                "ca.crt",
                "-rkey",
                "ca.key",
                "-CA",
                "ca.crt",
                "-reqin",
                "ocsp.req",
                "-respout",
                &out,
                "-ndays",
                "7",
            ],
        );
        d.join(out)
    }
}

/// A gateway with one TLS listener `tls` holding `certs` (chain, key, extra keys), defaults
/// otherwise, in front of one backend.
async fn gateway(certs: &[(PathBuf, PathBuf, String)], backend: &Backend) -> Gateway {
    let entries: Vec<String> = certs
        .iter()
        .map(|(c, k, extra)| format!("{{ cert: {}, key: {}{extra} }}", c.display(), k.display()))
        .collect();
    Config::admin_only()
        .listener(
            "tls",
            &format!("tls: {{ certificates: [ {} ] }}", entries.join(", ")),
        )
        .app(backend)
        .route("name: all, upstream: app")
        .start()
        .await
}

fn client(configure: impl FnOnce(&mut SslConnectorBuilder)) -> SslConnector {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    configure(&mut b);
    b.build()
}

/// A gateway whose listener `tls` serves one EC leaf for `ec.test`, with the PKI (its files)
/// and the backend it needs; `None` where openssl is missing and the test is opted out.
async fn ec_gateway() -> Option<(Pki, Backend, Gateway)> {
    let pki = Pki::new()?;
    let backend = Backend::http("app");
    let (chain, key) = pki.leaf("ec.test", false);
    let gw = gateway(&[(chain, key, String::new())], &backend).await;
    Some((pki, backend, gw))
}

async fn handshake(
    connector: &SslConnector,
    addr: std::net::SocketAddr,
    sni: &str,
    session: Option<&openssl::ssl::SslSessionRef>,
) -> Result<SslStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut config = connector.configure().unwrap();
    config.set_verify_hostname(false);
    let mut ssl = config.into_ssl(sni).unwrap();
    if let Some(s) = session {
        // SAFETY: the session came from this same connector's context.
        unsafe { ssl.set_session(s).unwrap() };
    }
    let mut stream = SslStream::new(ssl, tcp).unwrap();
    match tokio::time::timeout(IO_TIMEOUT, Pin::new(&mut stream).connect()).await {
        Ok(Ok(())) => Ok(stream),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("handshake timed out".into()),
    }
}

/// One request with `Connection: close`, read to the end (which also takes in TLS 1.3
/// session tickets).
async fn request(stream: &mut SslStream<TcpStream>) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(IO_TIMEOUT, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_with_forward_secret_aead_suites() {
    let Some(pki) = Pki::new() else {
        return;
    };
    let backend = Backend::http("app");
    let (ec_chain, ec_key) = pki.leaf("ec.test", false);
    let (rsa_chain, rsa_key) = pki.leaf("rsa.test", true);
    let gw = gateway(
        &[
            (ec_chain, ec_key, String::new()),
            (rsa_chain, rsa_key, String::new()),
        ],
        &backend,
    )
    .await;
    let addr = gw.listener("tls");

    for old in [SslVersion::TLS1, SslVersion::TLS1_1] {
        let c = client(|b| {
            b.set_min_proto_version(Some(old)).unwrap();
            b.set_max_proto_version(Some(old)).unwrap();
            b.set_security_level(0);
            b.set_cipher_list("DEFAULT:@SECLEVEL=0").unwrap();
        });
        assert!(
            handshake(&c, addr, "ec.test", None).await.is_err(),
            "{old:?} must be refused"
        );
    }
    let tls12 = |suite: &'static str| {
        client(move |b| {
            b.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
            b.set_cipher_list(suite).unwrap();
        })
    };
    let offered = [
        ("ec.test", "ECDHE-ECDSA-AES128-GCM-SHA256"),
        ("ec.test", "ECDHE-ECDSA-AES256-GCM-SHA384"),
        ("ec.test", "ECDHE-ECDSA-CHACHA20-POLY1305"),
        ("rsa.test", "ECDHE-RSA-AES128-GCM-SHA256"),
        ("rsa.test", "ECDHE-RSA-AES256-GCM-SHA384"),
        ("rsa.test", "ECDHE-RSA-CHACHA20-POLY1305"),
    ];
    for (sni, suite) in offered {
        let s = handshake(&tls12(suite), addr, sni, None)
            .await
            .unwrap_or_else(|e| panic!("{suite} must be offered: {e}"));
        assert_eq!(s.ssl().current_cipher().unwrap().name(), suite);
    }
    let refused = [
        ("ec.test", "ECDHE-ECDSA-AES128-SHA256"),  // CBC
        ("ec.test", "ECDHE-ECDSA-AES256-SHA"),     // CBC, SHA-1
        ("rsa.test", "ECDHE-RSA-AES128-SHA"),      // CBC, SHA-1
        ("rsa.test", "AES128-GCM-SHA256"),         // RSA key exchange: no forward secrecy
        ("rsa.test", "AES256-SHA256"),             // neither
        ("rsa.test", "DHE-RSA-AES128-GCM-SHA256"), // finite-field DHE: not offered
    ];
    for (sni, suite) in refused {
        assert!(
            handshake(&tls12(suite), addr, sni, None).await.is_err(),
            "{suite} must not be offered"
        );
    }
    for suite in [
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
    ] {
        let c = client(|b| b.set_ciphersuites(suite).unwrap());
        let s = handshake(&c, addr, "ec.test", None).await.unwrap();
        assert_eq!(
            (
                s.ssl().version_str(),
                s.ssl().current_cipher().unwrap().name()
            ),
            ("TLSv1.3", suite)
        );
    }
    // Mozilla's curves: X25519, P-256, P-384 (and the hybrid post-quantum X25519MLKEM768).
    for (group, ok) in [
        ("X25519", true),
        ("P-256", true),
        ("P-384", true),
        ("P-521", false),
        ("X448", false),
    ] {
        let c = client(|b| b.set_groups_list(group).unwrap());
        assert_eq!(
            handshake(&c, addr, "ec.test", None).await.is_ok(),
            ok,
            "group {group}"
        );
    }
}

#[tokio::test]
async fn the_server_chooses_the_cipher_suite() {
    let Some((_pki, _backend, gw)) = ec_gateway().await else {
        return;
    };
    let addr = gw.listener("tls");
    let negotiated = |version: SslVersion, list: &'static str| {
        let c = client(move |b| {
            b.set_max_proto_version(Some(version)).unwrap();
            if version == SslVersion::TLS1_3 {
                b.set_ciphersuites(list).unwrap();
            } else {
                b.set_cipher_list(list).unwrap();
            }
        });
        async move {
            handshake(&c, addr, "ec.test", None)
                .await
                .unwrap()
                .ssl()
                .current_cipher()
                .unwrap()
                .name()
                .to_string()
        }
    };
    // The client prefers AES-256; the server's order puts AES-128 first.
    assert_eq!(
        negotiated(
            SslVersion::TLS1_2,
            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"
        )
        .await,
        "ECDHE-ECDSA-AES128-GCM-SHA256"
    );
    assert_eq!(
        negotiated(
            SslVersion::TLS1_3,
            "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"
        )
        .await,
        "TLS_AES_128_GCM_SHA256"
    );
    // OpenSSL's own client order (AES-256, ChaCha20, AES-128) still gets AES-128.
    assert_eq!(
        negotiated(
            SslVersion::TLS1_3,
            "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
        )
        .await,
        "TLS_AES_128_GCM_SHA256"
    );
    assert_eq!(
        negotiated(
            SslVersion::TLS1_2,
            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256"
        )
        .await,
        "ECDHE-ECDSA-AES128-GCM-SHA256"
    );
    // A client that puts ChaCha20 first (no AES hardware) gets it, in both versions.
    assert_eq!(
        negotiated(
            SslVersion::TLS1_2,
            "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256"
        )
        .await,
        "ECDHE-ECDSA-CHACHA20-POLY1305"
    );
    assert_eq!(
        negotiated(
            SslVersion::TLS1_3,
            "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
        )
        .await,
        "TLS_CHACHA20_POLY1305_SHA256"
    );
}

#[tokio::test]
async fn sessions_resume_on_tls_1_2_and_1_3() {
    let Some((_pki, _backend, gw)) = ec_gateway().await else {
        return;
    };
    let addr = gw.listener("tls");
    // TLS 1.2 twice: from a ticket, and by session id from the gateway's cache for a client
    // that takes no tickets. TLS 1.3 resumes from tickets only.
    for (version, tickets_off) in [
        (SslVersion::TLS1_2, false),
        (SslVersion::TLS1_2, true),
        (SslVersion::TLS1_3, false),
    ] {
        let latest: Arc<Mutex<Option<openssl::ssl::SslSession>>> = Arc::default();
        let tickets = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (slot, count) = (latest.clone(), tickets.clone());
        let c = client(move |b| {
            b.set_min_proto_version(Some(version)).unwrap();
            b.set_max_proto_version(Some(version)).unwrap();
            b.set_session_cache_mode(SslSessionCacheMode::CLIENT);
            if tickets_off {
                b.set_options(openssl::ssl::SslOptions::NO_TICKET);
            }
            b.set_new_session_callback(move |_, s| {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                *slot.lock().unwrap() = Some(s)
            });
        });
        let mut first = handshake(&c, addr, "ec.test", None).await.unwrap();
        assert!(request(&mut first).await.starts_with("HTTP/1.1 200"));
        assert!(!first.ssl().session_reused());
        // One session per full handshake (TLS 1.3: one ticket, not the library's default two:
        // a ticket may be presented again).
        assert_eq!(
            tickets.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "{version:?} (tickets off: {tickets_off}): sessions issued by one full handshake"
        );
        let _ = first.shutdown().await;
        for round in 0..4 {
            let session = latest.lock().unwrap().clone().expect("a session to resume");
            let mut s = handshake(&c, addr, "ec.test", Some(&session))
                .await
                .unwrap();
            assert!(
                s.ssl().session_reused(),
                "{version:?} (tickets off: {tickets_off}) round {round}: not resumed"
            );
            // Every other connection is closed by the client while idle, as browsers do:
            // then the gateway never sends its own close_notify, and a TLS library's built-in
            // cache may forget the session.
            if round % 2 == 0 {
                assert!(request(&mut s).await.starts_with("HTTP/1.1 200"));
            } else {
                s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                    .await
                    .unwrap();
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf).await;
            }
            // (The client's close_notify: without it OpenSSL marks the client's own copy of
            // the session as not resumable.)
            let _ = s.shutdown().await;
        }
    }
}

/// A client that leaves Nagle's algorithm on (no TCP_NODELAY, as the tokio socket here does)
/// writes its request after its Finished and holds it until the server ACKs the Finished. The
/// server sends nothing of its own there (BoringSSL keeps the TLS 1.3 ticket until the first
/// write), so without an ACK at once the kernel's delayed ACK added 40 ms to every new
/// connection's first request. The fastest of five must be well under that.
#[tokio::test]
async fn a_nagle_client_gets_its_first_answer_without_the_delayed_ack() {
    let Some((_pki, _backend, gw)) = ec_gateway().await else {
        return;
    };
    let c = client(|_| {});
    let mut fastest = Duration::MAX;
    for _ in 0..5 {
        let mut s = handshake(&c, gw.listener("tls"), "ec.test", None)
            .await
            .unwrap();
        assert_eq!(s.ssl().version_str(), "TLSv1.3");
        assert!(!s.get_ref().nodelay().unwrap(), "the client keeps Nagle on");
        let start = std::time::Instant::now();
        assert!(request(&mut s).await.starts_with("HTTP/1.1 200"));
        fastest = fastest.min(start.elapsed());
    }
    assert!(
        fastest < Duration::from_millis(35),
        "first request took at least {fastest:?}"
    );
}

#[tokio::test]
async fn an_ocsp_response_is_stapled_when_configured() {
    let Some(pki) = Pki::new() else {
        return;
    };
    let backend = Backend::http("app");
    let (chain, key) = pki.leaf("stapled.test", false);
    let staple = pki.ocsp_good("stapled.test");
    let (plain_chain, plain_key) = pki.leaf("plain.test", false);
    let extra = format!(", ocsp_staple: {}", staple.display());
    let gw = gateway(
        &[(chain, key, extra), (plain_chain, plain_key, String::new())],
        &backend,
    )
    .await;
    let got: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let slot = got.clone();
    let c = client(move |b| {
        b.set_status_callback(move |ssl| {
            *slot.lock().unwrap() = ssl.ocsp_status().map(<[u8]>::to_vec);
            Ok(true)
        })
        .unwrap();
    });
    for (sni, want) in [
        ("stapled.test", Some(std::fs::read(&staple).unwrap())),
        ("plain.test", None),
    ] {
        *got.lock().unwrap() = None;
        let tcp = TcpStream::connect(gw.listener("tls")).await.unwrap();
        let mut config = c.configure().unwrap();
        config.set_verify_hostname(false);
        config
            .set_status_type(openssl::ssl::StatusType::OCSP)
            .unwrap();
        let mut s = SslStream::new(config.into_ssl(sni).unwrap(), tcp).unwrap();
        Pin::new(&mut s).connect().await.unwrap();
        assert_eq!(*got.lock().unwrap(), want, "{sni}");
    }

    // A file that is no OCSP response, one about another certificate, or one saying the
    // certificate is revoked, stops the config.
    let (other_chain, other_key) = pki.leaf("other.test", false);
    let junk = pki.dir.write("junk.der", b"not DER");
    let revoked = pki.ocsp("other.test", true);
    for (bad, message) in [
        (&junk, "is not a DER OCSP response"),
        (&staple, "about another certificate"),
        (&revoked, "says the certificate is revoked"),
    ] {
        let yaml = Config::admin_only()
            .listener(
                "tls",
                &format!(
                    "tls: {{ certificates: [ {{ cert: {}, key: {}, ocsp_staple: {} }} ] }}",
                    other_chain.display(),
                    other_key.display(),
                    bad.display()
                ),
            )
            .build();
        let (code, stderr) = validate_config(&yaml).await;
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains("listeners[0].tls.certificates[0]") && stderr.contains(message),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn sslyze_finds_the_default_listener_mozilla_intermediate_compliant() {
    let Some(python) = sslyze_python() else {
        return;
    };
    let Some(pki) = Pki::new() else {
        return;
    };
    let backend = Backend::http("app");
    let (chain, key) = pki.leaf("localhost", false);
    let staple = pki.ocsp_good("localhost");
    let gw = gateway(
        &[(chain, key, format!(", ocsp_staple: {}", staple.display()))],
        &backend,
    )
    .await;
    let target = format!("localhost:{}", gw.listener("tls").port());
    let ca = pki.ca();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args([
                "-m",
                "sslyze",
                "--mozilla_config=intermediate",
                "--resum",
                "--certinfo_ca_file",
            ])
            .arg(ca)
            .arg(&target)
            .output()
            .expect("run sslyze")
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && report.contains("OK - Compliant."),
        "sslyze: {}\n{report}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "With Session IDs: OK - Supported",
        "Client Renegotiation DoS Attack:   OK - Not vulnerable",
        "OK - Compression disabled",
        "OK - Not vulnerable to Heartbleed",
    ] {
        assert!(
            report.contains(expected),
            "sslyze should report {expected:?}:\n{report}"
        );
    }
}
