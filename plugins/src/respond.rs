//! `respond`: answers with a fixed response instead of proxying.
//!
//! ```yaml
//! - respond: { status: 200, body: "ok\n", headers: { Content-Type: text/plain } }
//! ```
//!
//! Defaults: `status: 200`, an empty body, no headers. Useful for health routes, maintenance
//! pages, and routes without an upstream. A 204 or 304 cannot have a body.

use crate::header_list::header_list;
use async_trait::async_trait;
use bytes::Bytes;
use gateway::plugin::Hooks;
use gateway::{BuildContext, Flow, Plugin, PluginConfig, RequestState, Response, Session};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondConfig {
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_status() -> u16 {
    200
}

pub struct Respond {
    /// Built once; each request gets a clone (the body is a shared `Bytes`, not copied).
    response: Response,
}

#[async_trait]
impl Plugin for Respond {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    async fn request(&self, _session: &mut Session, _state: &mut RequestState) -> Flow {
        Flow::Respond(self.response.clone())
    }
}

impl PluginConfig for Respond {
    const NAME: &'static str = "respond";
    type Config = RespondConfig;

    fn build(config: RespondConfig, _cx: &BuildContext) -> Result<Self, String> {
        if !(200..=599).contains(&config.status) {
            return Err(format!(
                "status: {} is not a final HTTP status (200-599)",
                config.status
            ));
        }
        if matches!(config.status, 204 | 304) && !config.body.is_empty() {
            return Err(format!(
                "body: a {} answer has no body; leave body out",
                config.status
            ));
        }
        // Checked here; kept as written, so HTTP/1 clients see the config's header case.
        header_list(&config.headers, "headers")?;
        let headers = config.headers.into_iter().collect();
        Ok(Respond {
            response: Response {
                status: config.status,
                headers,
                body: Bytes::from(config.body),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(yaml: &str) -> Result<Respond, String> {
        let config: RespondConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        Respond::build(config, &BuildContext::new(".".into(), None))
    }

    #[test]
    fn builds_the_configured_response() {
        let r = plugin("{ status: 503, body: \"down\\n\", headers: { Content-Type: text/plain, Retry-After: \"60\" } }").unwrap().response;
        assert_eq!(r.status, 503);
        assert_eq!(&r.body[..], b"down\n");
        assert!(r
            .headers
            .contains(&("Content-Type".into(), "text/plain".into())));
        assert!(r.headers.contains(&("Retry-After".into(), "60".into())));
    }

    #[test]
    fn defaults_to_an_empty_200() {
        let r = plugin("{}").unwrap().response;
        assert_eq!((r.status, r.body.len(), r.headers.len()), (200, 0, 0));
    }

    #[test]
    fn refuses_bad_config() {
        assert!(plugin("{ status: 99 }")
            .err()
            .unwrap()
            .starts_with("status:"));
        assert!(plugin("{ status: 101 }").is_err());
        assert!(plugin("{ headers: { \"Bad Name\": x } }")
            .err()
            .unwrap()
            .starts_with("headers:"));
        assert!(plugin("{ status: 204, body: gone }")
            .err()
            .unwrap()
            .starts_with("body:"));
        assert!(plugin("{ status: 204 }").is_ok());
    }
}
