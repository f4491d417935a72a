//! The connection to one etcd member: TCP, then TLS for `etcds://`, then gRPC (HTTP/2).
//!
//! TLS is dialled here with the `boring` crate the gateway already links, rather than through
//! etcd-client's TLS features: `tls` brings rustls (a second TLS stack in the binary) and
//! `tls-openssl` OpenSSL, which cannot be linked beside BoringSSL (docs/fleet.md).

use super::access::{Access, ENV_CA, ENV_CERT, ENV_KEY};
use super::error::causes;
use super::source::{EtcdEndpoint, EtcdSource};
use super::FleetError;
use boring::ssl::{SslConnector, SslFiletype, SslMethod, SslVersion};
use etcd_client::{Client, ConnectOptions};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tonic::transport::Endpoint;

/// HTTP/2 pings on an idle connection, so that a member gone silent (a partition, not a
/// refused connection) is noticed. etcd answers pings more frequent than every 5 s with
/// GOAWAY (`--grpc-keepalive-min-time`), hence 10 s.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What every connection to the cluster is made with; built once, so that a bad CA or key
/// file is reported before anything is dialled.
#[derive(Clone)]
pub(crate) struct Dialer {
    tls: Option<Arc<SslConnector>>,
    user: Option<(String, String)>,
}

impl Dialer {
    pub(crate) fn new(source: &EtcdSource, access: &Access) -> Result<Dialer, FleetError> {
        if !source.tls() && access.has_tls_files() {
            return Err(FleetError::Access(format!(
                "{ENV_CA}, {ENV_CERT} or {ENV_KEY} is set but {source} is plain: use etcds:// for TLS"
            )));
        }
        let tls = if source.tls() {
            Some(Arc::new(tls_connector(access)?))
        } else {
            None
        };
        Ok(Dialer {
            tls,
            user: access.user.clone(),
        })
    }

    /// Connects to one member and, with a user set, authenticates. `limit` bounds the TCP and
    /// TLS handshakes; the caller bounds the whole.
    pub(crate) async fn connect(
        &self,
        endpoint: &EtcdEndpoint,
        limit: Duration,
    ) -> Result<Client, etcd_client::Error> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let channel = Endpoint::from_shared(format!("{scheme}://{endpoint}"))
            .map_err(etcd_client::Error::TransportError)?
            .connect_timeout(limit)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .connect_with_connector(connector(endpoint.clone(), self.tls.clone()))
            .await
            .map_err(etcd_client::Error::TransportError)?;
        // A member cut off from the others' majority refuses (and ends watches) instead of
        // serving what it last knew; the token is renewed when etcd expires it.
        let mut options = ConnectOptions::new()
            .with_require_leader(true)
            .with_auto_token_refresh(true);
        if let Some((user, password)) = &self.user {
            options = options.with_user(user, password);
        }
        Client::from_channel(etcd_client::Channel::Tonic(channel), Some(options)).await
    }
}

fn tls_connector(access: &Access) -> Result<SslConnector, FleetError> {
    let file_error = |var: &str, path: &std::path::Path, e: boring::error::ErrorStack| {
        FleetError::Access(format!("{var}={}: {e}", path.display()))
    };
    let mut builder = SslConnector::builder(SslMethod::tls())
        .map_err(|e| FleetError::Access(format!("TLS setup: {e}")))?;
    if let Some(ca) = &access.ca {
        builder
            .set_ca_file(ca)
            .map_err(|e| file_error(ENV_CA, ca, e))?;
    }
    if let Some((cert, key)) = &access.client_cert {
        builder
            .set_certificate_chain_file(cert)
            .map_err(|e| file_error(ENV_CERT, cert, e))?;
        builder
            .set_private_key_file(key, SslFiletype::PEM)
            .map_err(|e| file_error(ENV_KEY, key, e))?;
        builder.check_private_key().map_err(|e| {
            FleetError::Access(format!("{ENV_KEY} does not belong to {ENV_CERT}: {e}"))
        })?;
    }
    builder
        .set_min_proto_version(Some(SslVersion::TLS1_2))
        .and_then(|()| builder.set_alpn_protos(b"\x02h2"))
        .map_err(|e| FleetError::Access(format!("TLS setup: {e}")))?;
    Ok(builder.build())
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The transport under tonic: TCP to the member, TLS on top for `etcds://` (the certificate
/// checked against the host as written in the URL, an IP address against the IP SANs).
fn connector(
    endpoint: EtcdEndpoint,
    tls: Option<Arc<SslConnector>>,
) -> impl tower::Service<
    http::Uri,
    Response = TokioIo<Box<dyn Io>>,
    Error = std::io::Error,
    Future: Send,
> + Send
       + Clone
       + 'static {
    tower::service_fn(move |_: http::Uri| {
        let (endpoint, tls) = (endpoint.clone(), tls.clone());
        async move {
            let tcp = TcpStream::connect((endpoint.host(), endpoint.port())).await?;
            tcp.set_nodelay(true)?;
            let Some(tls) = tls else {
                return Ok(TokioIo::new(Box::new(tcp) as Box<dyn Io>));
            };
            let ssl = tls
                .configure()
                .and_then(|c| c.into_ssl(endpoint.host()))
                .map_err(std::io::Error::other)?;
            let stream = tokio_boring::SslStreamBuilder::new(ssl, tcp)
                .connect()
                .await
                .map_err(|e| {
                    std::io::Error::other(format!("TLS handshake with {endpoint}: {}", causes(&e)))
                })?;
            Ok(TokioIo::new(Box::new(stream) as Box<dyn Io>))
        }
    })
}
