//! The floor: the smallest Pingora 0.9.1 proxy that does the job of the Portico row in
//! `benches/compare.sh`, so that the comparison shows what Pingora itself costs and what
//! Portico adds on top of it (benches/README.md, "The floor and pingap").
//!
//! The same job: one HTTPS listener with Portico's TLS settings and certificate callback (taken
//! from the gateway crate as they are: TLS 1.2 and 1.3, its cipher list and groups, the
//! server-side session cache, ALPN h2 and http/1.1, the certificate from files), Portico's
//! listener buffers (no L4 read buffer, Pingora's default write buffer), one worker thread,
//! keep-alive to one plain-HTTP upstream with Portico's pool size, X-Forwarded-For/-Proto/-Host
//! and X-Real-IP and a request id to the upstream, the id back to the client, and Portico's
//! allocator. Nothing else: no routing, plugins, metrics, health checks, limits or parking of
//! idle connections; Pingora's own HTTP/1 and HTTP/2 loops serve the connections.
//!
//! `--timeouts` (or `FLOOR_TIMEOUTS=1`) adds Portico's default timeouts as Portico sets them:
//! upstream connect 2 s (4 s in all), read and write 30 s, pooled connections idle 60 s, all on
//! tokio's timer, and HTTP/2 connections idle 60 s. Pingora arms a timer for each of them per
//! request, so the pair of floors shows what the contract's timeouts cost in Pingora and what
//! the rest of Portico costs (benches/README.md, "What the timeouts cost").
//!
//! ```text
//! portico-floor --listen 127.0.0.1:8443 --upstream 127.0.0.1:8080 --cert cert.pem --key key.pem
//! ```
//!
//! SIGINT stops it at once (Pingora's fast shutdown), as `benches/compare.sh` stops Portico.

use async_trait::async_trait;
use gateway::config::{Alpn, TlsVersion};
use gateway::tls::{self, CertResolver, CertStore};
use http::{header, HeaderName, HeaderValue};
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{ProxyHttp, Session};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The header carrying the request id, both ways (Portico's default name).
const REQUEST_ID: &str = "X-Request-Id";

struct Args {
    listen: String,
    upstream: SocketAddr,
    cert: PathBuf,
    key: PathBuf,
    timeouts: bool,
}

const USAGE: &str =
    "usage: portico-floor --listen ADDR --upstream ADDR --cert FILE --key FILE [--timeouts] (or FLOOR_LISTEN, FLOOR_UPSTREAM, FLOOR_CERT, FLOOR_KEY, FLOOR_TIMEOUTS=1)";

fn parse_args() -> std::result::Result<Args, String> {
    let env = |k: &str| std::env::var(k).ok();
    let (mut listen, mut upstream) = (env("FLOOR_LISTEN"), env("FLOOR_UPSTREAM"));
    let (mut cert, mut key) = (env("FLOOR_CERT"), env("FLOOR_KEY"));
    let mut timeouts = env("FLOOR_TIMEOUTS").is_some_and(|v| v == "1");
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let slot = match a.as_str() {
            "--timeouts" => {
                timeouts = true;
                continue;
            }
            "--listen" => &mut listen,
            "--upstream" => &mut upstream,
            "--cert" => &mut cert,
            "--key" => &mut key,
            other => return Err(format!("unknown argument {other:?}")),
        };
        *slot = Some(it.next().ok_or(format!("{a} needs a value"))?);
    }
    let (Some(listen), Some(upstream), Some(cert), Some(key)) = (listen, upstream, cert, key)
    else {
        return Err("missing argument".into());
    };
    let upstream = upstream
        .parse()
        .map_err(|e| format!("--upstream {upstream:?}: {e} (an IP address and port)"))?;
    Ok(Args {
        listen,
        upstream,
        cert: cert.into(),
        key: key.into(),
        timeouts,
    })
}

fn main() {
    // As the portico binary does (src/main.rs): mimalloc's arenas off transparent huge pages.
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("{e}\n{USAGE}");
        std::process::exit(2);
    });
    let certified = tls::load_certified_key(&args.cert, &args.key).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1);
    });
    let resolver = Arc::new(CertResolver::new(
        "floor",
        Arc::new(CertStore::new(vec![certified])),
    ));
    let alpn = Alpn {
        h2: true,
        http1: true,
    };
    let settings =
        tls::listener_settings(resolver, TlsVersion::Tls12, alpn, None).unwrap_or_else(|e| {
            eprintln!("TLS settings: {e}");
            std::process::exit(1);
        });

    let conf = ServerConf {
        threads: 1,
        // As Portico runs one worker (gateway/src/runtime/mod.rs): tokio's current-thread
        // scheduler, nothing to steal from.
        work_stealing: false,
        // Portico's default `server.upstream_keepalive_pool` (Pingora's is 128).
        upstream_keepalive_pool_size: 1024,
        // Portico runs timeouts of a second or more on tokio's timer (docs/deployment.md,
        // "Timers"); without `--timeouts` the floor is as it was, on Pingora's defaults.
        fast_timeout_to_tokio_threshold_seconds: if args.timeouts {
            Some(0)
        } else {
            ServerConf::default().fast_timeout_to_tokio_threshold_seconds
        },
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut peer = HttpPeer::new(args.upstream, false, String::new());
    let upstream = gateway::config::TimeoutsConfig::default();
    let idle = gateway::config::LimitsConfig::default().idle_timeout.get();
    if args.timeouts {
        // As gateway/src/snapshot/upstreams.rs sets them from an upstream's `timeouts`.
        peer.options.connection_timeout = Some(upstream.connect.get());
        peer.options.total_connection_timeout = Some(upstream.connect.get() * 2);
        peer.options.read_timeout = Some(upstream.read.get());
        peer.options.write_timeout = Some(upstream.write.get());
        peer.options.idle_timeout = Some(upstream.idle.get());
    }
    let mut service = pingora_proxy::http_proxy_service(&server.configuration, Floor { peer });
    if args.timeouts {
        let mut options = HttpServerOptions::default();
        options.h2_idle_timeout = Some(idle);
        if let Some(proxy) = service.app_logic_mut() {
            proxy.server_options = Some(options);
        }
    }
    // Portico's listener buffers (gateway/src/runtime/services.rs, `endpoint`): no L4 read
    // buffer, Pingora's default write buffer. Without Portico's parking between requests this
    // costs the floor a second read per request on BoringSSL (benches/README.md).
    service.add_listener(
        ListenerConfig::tcp(args.listen)
            .l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE))
            .tls(settings),
    );
    server.add_service(service);
    server.run_forever()
}

/// The proxy: every request to the one upstream.
struct Floor {
    peer: HttpPeer,
}

#[async_trait]
impl ProxyHttp for Floor {
    /// The request id.
    type CTX = String;

    fn new_ctx(&self) -> String {
        String::new()
    }

    async fn upstream_peer(&self, _: &mut Session, _: &mut String) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        id: &mut String,
    ) -> Result<()> {
        // The client's id when it sent a sane one, otherwise 32 random hex digits: Portico's
        // own function.
        *id = gateway::request::client::request_id(
            session.req_header(),
            &HeaderName::from_static("x-request-id"),
        );
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let mut buf = [0u8; 45];
        let ip = match client {
            Some(ip) => HeaderValue::from_bytes(ip_text(ip, &mut buf)).expect("an IP is ASCII"),
            None => HeaderValue::from_static("0.0.0.0"),
        };
        upstream.insert_header("X-Forwarded-For", ip.clone())?;
        upstream.insert_header("X-Forwarded-Proto", HeaderValue::from_static("https"))?;
        // HTTP/2 carries the host in the URI authority, HTTP/1.1 in the Host header; the
        // upstream speaks HTTP/1.1 and needs the Host header.
        let host = match upstream.uri.authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => upstream.headers.get(header::HOST).cloned(),
        };
        if let Some(host) = host {
            if !upstream.headers.contains_key(header::HOST) {
                upstream.insert_header(header::HOST, host.clone())?;
            }
            upstream.insert_header("X-Forwarded-Host", host)?;
        }
        upstream.insert_header("X-Real-IP", ip)?;
        upstream.insert_header(REQUEST_ID, id.as_str())?;
        Ok(())
    }

    async fn response_filter(
        &self,
        _: &mut Session,
        resp: &mut ResponseHeader,
        id: &mut String,
    ) -> Result<()> {
        resp.insert_header(REQUEST_ID, id.as_str())
    }
}

/// An IP address's text without the formatter for IPv4, as Portico writes it
/// (gateway/src/request/client.rs, whose helper is private).
fn ip_text(ip: IpAddr, buf: &mut [u8; 45]) -> &[u8] {
    match ip {
        IpAddr::V4(a) => {
            let mut n = 0;
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if o >= 100 {
                    buf[n] = b'0' + o / 100;
                    n += 1;
                }
                if o >= 10 {
                    buf[n] = b'0' + o / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + o % 10;
                n += 1;
            }
            &buf[..n]
        }
        IpAddr::V6(_) => {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cursor, "{ip}");
            let n = cursor.position() as usize;
            &buf[..n]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_is_the_display_form() {
        let mut buf = [0u8; 45];
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                std::str::from_utf8(ip_text(ip, &mut buf)).unwrap(),
                ip.to_string()
            );
        }
    }
}
