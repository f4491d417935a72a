//! The ACME client's HTTPS: instant-acme's `HttpClient` over hyper and the BoringSSL the
//! listeners use, so that no second TLS library is built. The one file to change if the TLS
//! library changes.
//!
//! One connection per request: an order is a handful of requests minutes or months apart,
//! and a fresh connection never meets one the CA closed while it sat idle (a POST sent on
//! such a connection would fail halfway, its nonce spent).

use boring::ssl::{SslConnector, SslMethod, SslVersion};
use boring::x509::X509;
use bytes::Bytes;
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_boring::SslStreamBuilder;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// From the connection to the last byte of the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read: a certificate chain is a few kilobytes.
const MAX_BODY: usize = 1 << 20;

pub struct HttpsClient {
    tls: SslConnector,
}

impl HttpsClient {
    /// Trusts the system's CA certificates, and those in `ca` when given (a private ACME
    /// server's). TLS 1.2 at least; the directory's name is verified.
    pub fn new(ca: Option<&Path>) -> Result<Self, String> {
        let mut builder =
            SslConnector::builder(SslMethod::tls()).map_err(|e| format!("TLS client: {e}"))?;
        builder
            .set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(|e| format!("TLS client: {e}"))?;
        // The BoringSSL built into the binary looks for CA certificates where it was built to,
        // not where this system keeps them: find them as Pingora's upstream connector does.
        let system = openssl_probe::probe();
        if system.cert_file.is_some() || system.cert_dir.is_some() {
            builder
                .load_verify_locations(system.cert_file.as_deref(), system.cert_dir.as_deref())
                .map_err(|e| format!("system CA certificates: {e}"))?;
        }
        if let Some(ca) = ca {
            let pem =
                std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
            let certs = X509::stack_from_pem(&pem)
                .map_err(|e| format!("{} is not PEM: {e}", ca.display()))?;
            for cert in certs {
                builder
                    .cert_store_mut()
                    .add_cert(cert)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
        }
        Ok(HttpsClient {
            tls: builder.build(),
        })
    }
}

impl HttpClient for HttpsClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let tls = self.tls.clone();
        Box::pin(async move {
            let uri = req.uri().to_string();
            match tokio::time::timeout(REQUEST_TIMEOUT, send(tls, req)).await {
                Ok(result) => result.map_err(|e| Error::Other(format!("{uri}: {e}").into())),
                Err(_) => Err(Error::Other(
                    format!("{uri}: no answer within {REQUEST_TIMEOUT:?}").into(),
                )),
            }
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn send(
    tls: SslConnector,
    mut req: Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, BoxError> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err("only https:// URLs are fetched".into());
    }
    let authority = uri.authority().ok_or("the URL has no host")?.clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(443);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| format!("cannot connect within {CONNECT_TIMEOUT:?}"))??;
    let _ = tcp.set_nodelay(true);
    let ssl = tls.configure()?.into_ssl(host)?;
    let stream = SslStreamBuilder::new(ssl, tcp).connect().await?;

    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends with the request; its error, if any, is the request's too.
        let _ = connection.await;
    });
    // HTTP/1.1 on a connection of its own: the path in the request line, the host beside it.
    *req.uri_mut() = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse::<Uri>()?;
    req.headers_mut()
        .insert(header::HOST, authority.as_str().parse()?);
    let response = sender.send_request(req).await?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_BODY).collect().await?.to_bytes();
    Ok(BytesResponse::from(http::Response::from_parts(
        parts,
        Full::new(body),
    )))
}
