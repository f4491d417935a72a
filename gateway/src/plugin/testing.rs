//! A test kit for plugin authors: build a plugin from the YAML a user would write, and drive
//! its hooks on a real [`Session`] (a request read by Pingora from an in-memory connection),
//! without a server, a listener or a backend.
//!
//! ```
//! use gateway::plugin::testing::{self, TestRequest};
//! use gateway::{BuildContext, Flow, Hooks, Plugin, PluginConfig, RequestState, Response, Session};
//!
//! /// Answers 403 to requests without the configured header.
//! struct RequireHeader(String);
//!
//! #[derive(serde::Deserialize)]
//! struct RequireHeaderConfig {
//!     header: String,
//! }
//!
//! #[async_trait::async_trait]
//! impl Plugin for RequireHeader {
//!     fn hooks(&self) -> Hooks {
//!         Hooks::REQUEST
//!     }
//!     async fn request(&self, session: &mut Session, _state: &mut RequestState) -> Flow {
//!         match session.req_header().headers.contains_key(self.0.as_str()) {
//!             true => Flow::Continue,
//!             false => Flow::Respond(Response::text(403, "no\n")),
//!         }
//!     }
//! }
//!
//! impl PluginConfig for RequireHeader {
//!     const NAME: &'static str = "require_header";
//!     type Config = RequireHeaderConfig;
//!     fn build(config: RequireHeaderConfig, _cx: &BuildContext) -> Result<Self, String> {
//!         Ok(RequireHeader(config.header))
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let plugin: RequireHeader = testing::build("{ header: x-tenant }").unwrap();
//!
//! let mut t = TestRequest::new(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
//! let Flow::Respond(answer) = plugin.request(&mut t.session, &mut t.state).await else {
//!     panic!("a request without the header went through");
//! };
//! assert_eq!(answer.status, 403);
//!
//! let mut t = TestRequest::new(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Tenant: 7\r\n\r\n").await;
//! assert!(matches!(plugin.request(&mut t.session, &mut t.state).await, Flow::Continue));
//! # });
//! ```

use super::{BuildContext, PluginConfig, RequestState};
use pingora_proxy::Session;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncWriteExt, DuplexStream};

/// Builds plugin `P` from its YAML config (the value under its name in a chain), as a config
/// file would: relative paths resolve against the current directory. The error is the one
/// a user would see, without the key path and line a file adds.
pub fn build<P: PluginConfig>(yaml: &str) -> Result<P, String> {
    let config: P::Config = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
    let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    P::build(config, &BuildContext::new(base, None))
}

/// One request, read by Pingora from an in-memory connection, with its [`RequestState`] (on a
/// listener named `test`, from client 127.0.0.1): hand `session` and `state` to a hook.
pub struct TestRequest {
    pub session: Session,
    pub state: RequestState,
    /// The client's end of the connection, kept open so that what a hook writes to the
    /// client goes somewhere.
    pub client: DuplexStream,
}

impl TestRequest {
    /// Reads `raw` (a request head, and its body if any) as Pingora would from a client.
    ///
    /// Panics if Pingora does not read a request from it: a test's input is wrong then.
    pub async fn new(raw: &[u8]) -> Self {
        let (mut client, server) = tokio::io::duplex(raw.len().max(4096) * 2);
        client
            .write_all(raw)
            .await
            .expect("writing the request to the in-memory connection");
        let mut session = Session::new_h1(Box::new(server));
        match session.read_request().await {
            Ok(true) => {}
            other => panic!("Pingora read no request from {raw:?}: {other:?}"),
        }
        let mut state = RequestState::new(Arc::from("test"), IpAddr::V4(Ipv4Addr::LOCALHOST));
        state.host = session
            .req_header()
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string();
        TestRequest {
            session,
            state,
            client,
        }
    }
}
