//! `cors`: Cross-Origin Resource Sharing for browser clients.
//!
//! ```yaml
//! - cors:
//!     allow_origins: ["https://app.example.com"]   # default ["*"]; ["*"] with credentials: a config error
//!     allow_methods: [GET, POST]                   # default [GET, HEAD, POST, PUT, PATCH, DELETE]
//!     allow_headers: [Authorization, Content-Type] # default the same; ["*"]: whatever is asked
//!     expose_headers: []
//!     allow_credentials: false
//!     max_age: 10m
//! ```
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered here
//! with 204 and never reaches the upstream; from an origin not allowed it gets 403. On other
//! requests from an allowed origin, the response gets `Access-Control-Allow-Origin` (`*` when
//! every origin is allowed and credentials are not, the origin itself otherwise),
//! `Access-Control-Allow-Credentials` and `Access-Control-Expose-Headers`. A request from an
//! origin not allowed is still proxied, just without those headers: the browser then keeps
//! the response from the page, which is how CORS is meant to refuse.

use async_trait::async_trait;
use gateway::config::Dur;
use gateway::plugin::Hooks;
use gateway::{
    BuildContext, Flow, Plugin, PluginConfig, RequestState, Response, ResponseHeader, Session,
};
use http::header::{
    HeaderName, ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    #[serde(default = "default_origins")]
    pub allow_origins: Vec<String>,
    #[serde(default = "default_methods")]
    pub allow_methods: Vec<String>,
    #[serde(default = "default_headers")]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    #[serde(default = "default_max_age")]
    pub max_age: Dur,
}

fn default_origins() -> Vec<String> {
    vec!["*".into()]
}

fn default_methods() -> Vec<String> {
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        .map(String::from)
        .to_vec()
}

fn default_headers() -> Vec<String> {
    vec!["Authorization".into(), "Content-Type".into()]
}

fn default_max_age() -> Dur {
    Dur::secs(600)
}

pub struct Cors {
    /// `None`: every origin (never with credentials); otherwise lowercased origins.
    origins: Option<Vec<String>>,
    allow_credentials: bool,
    allow_methods: String,
    /// `None`: echo the preflight's `Access-Control-Request-Headers`.
    allow_headers: Option<String>,
    expose_headers: Option<String>,
    max_age: String,
}

/// What the response to a request carrying `Origin` gets.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Not allowed: no CORS headers (a preflight gets 403).
    Refuse,
    /// Allowed, with this `Access-Control-Allow-Origin` value.
    Allow(String),
}

/// Marks a request whose preflight this plugin answered, so the response hook leaves it be.
#[derive(Clone, Copy)]
struct AnsweredPreflight;

impl Cors {
    fn decide(&self, origin: &str) -> Decision {
        match &self.origins {
            None => Decision::Allow("*".into()),
            Some(list) if list.iter().any(|o| o.eq_ignore_ascii_case(origin)) => {
                Decision::Allow(origin.to_string())
            }
            Some(_) => Decision::Refuse,
        }
    }

    /// Whether the answer depends on the request's Origin, so caches must key on it.
    fn varies_by_origin(&self) -> bool {
        self.origins.is_some()
    }

    /// The headers of a 204 answer to an allowed preflight.
    fn preflight_headers(
        &self,
        allow_origin: String,
        requested_headers: Option<&str>,
    ) -> Vec<(String, String)> {
        let mut h = vec![
            ("Access-Control-Allow-Origin".to_string(), allow_origin),
            (
                "Access-Control-Allow-Methods".to_string(),
                self.allow_methods.clone(),
            ),
            ("Access-Control-Max-Age".to_string(), self.max_age.clone()),
        ];
        let allow_headers = match &self.allow_headers {
            Some(list) => Some(list.clone()),
            None => requested_headers.map(str::to_string),
        };
        if let Some(v) = allow_headers.filter(|v| !v.is_empty()) {
            h.push(("Access-Control-Allow-Headers".into(), v));
        }
        if self.allow_credentials {
            h.push(("Access-Control-Allow-Credentials".into(), "true".into()));
        }
        if self.varies_by_origin() {
            h.push(("Vary".into(), "Origin".into()));
        }
        h
    }
}

fn varies_on_origin_already(response: &ResponseHeader) -> bool {
    response.headers.get_all("vary").iter().any(|v| {
        v.to_str()
            .map(|v| {
                v.split(',')
                    .any(|t| t.trim() == "*" || t.trim().eq_ignore_ascii_case("origin"))
            })
            .unwrap_or(false)
    })
}

fn header<'a>(session: &'a Session, name: &HeaderName) -> Option<&'a str> {
    session
        .req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
}

#[async_trait]
impl Plugin for Cors {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST | Hooks::RESPONSE
    }

    async fn request(&self, session: &mut Session, state: &mut RequestState) -> Flow {
        let req = session.req_header();
        let is_preflight = req.method == http::Method::OPTIONS
            && req.headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        if !is_preflight {
            return Flow::Continue;
        }
        let Some(origin) = header(session, &ORIGIN) else {
            return Flow::Continue;
        };
        state.extensions.insert(AnsweredPreflight);
        match self.decide(origin) {
            Decision::Refuse => Flow::Respond(Response::text(403, "CORS origin not allowed\n")),
            Decision::Allow(allow_origin) => {
                let requested = header(session, &ACCESS_CONTROL_REQUEST_HEADERS);
                let mut response = Response::empty(204);
                response.headers = self.preflight_headers(allow_origin, requested);
                Flow::Respond(response)
            }
        }
    }

    async fn response(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        state: &mut RequestState,
    ) {
        if state.extensions.get::<AnsweredPreflight>().is_some() {
            return;
        }
        let Some(origin) = header(session, &ORIGIN) else {
            return;
        };
        // Header values below come from checked config or from a valid request header, so
        // the inserts cannot fail.
        if self.varies_by_origin() && !varies_on_origin_already(response) {
            let _ = response.append_header("Vary", "Origin");
        }
        let Decision::Allow(allow_origin) = self.decide(origin) else {
            return;
        };
        let _ = response.insert_header("Access-Control-Allow-Origin", allow_origin);
        if self.allow_credentials {
            let _ = response.insert_header("Access-Control-Allow-Credentials", "true");
        }
        if let Some(expose) = &self.expose_headers {
            let _ = response.insert_header("Access-Control-Expose-Headers", expose.as_str());
        }
    }
}

impl PluginConfig for Cors {
    const NAME: &'static str = "cors";
    type Config = CorsConfig;

    fn build(config: CorsConfig, _cx: &BuildContext) -> Result<Self, String> {
        if config.allow_origins.is_empty() {
            return Err("allow_origins: must list at least one origin, or \"*\"".into());
        }
        let origins = if config.allow_origins.iter().any(|o| o == "*") {
            if config.allow_origins.len() > 1 {
                return Err("allow_origins: \"*\" cannot be combined with other origins".into());
            }
            // Browsers refuse `*` with credentials; answering any origin by echoing it would
            // let every site on the web read a logged-in user's responses.
            if config.allow_credentials {
                return Err("allow_origins: [\"*\"] cannot be used with allow_credentials: true (any site could read responses with the user's cookies); list the origins".into());
            }
            None
        } else {
            for o in &config.allow_origins {
                check_origin(o)?;
            }
            Some(
                config
                    .allow_origins
                    .iter()
                    .map(|o| o.to_ascii_lowercase())
                    .collect(),
            )
        };
        for m in &config.allow_methods {
            http::Method::from_bytes(m.as_bytes())
                .map_err(|_| format!("allow_methods: {m:?} is not an HTTP method"))?;
        }
        let allow_headers = if config.allow_headers.iter().any(|h| h == "*") {
            None
        } else {
            check_names(&config.allow_headers, "allow_headers")?;
            Some(config.allow_headers.join(", "))
        };
        check_names(&config.expose_headers, "expose_headers")?;
        let expose_headers =
            (!config.expose_headers.is_empty()).then(|| config.expose_headers.join(", "));
        Ok(Cors {
            origins,
            allow_credentials: config.allow_credentials,
            allow_methods: config
                .allow_methods
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect::<Vec<_>>()
                .join(", "),
            allow_headers,
            expose_headers,
            max_age: config.max_age.get().as_secs().to_string(),
        })
    }
}

/// An origin is `scheme://host[:port]`, nothing more: a trailing slash or a path would never
/// equal what a browser sends.
fn check_origin(origin: &str) -> Result<(), String> {
    let ok = match origin.split_once("://") {
        Some((scheme, rest)) => !scheme.is_empty() && !rest.is_empty() && !rest.contains('/'),
        None => false,
    };
    if ok && http::HeaderValue::from_str(origin).is_ok() {
        Ok(())
    } else {
        Err(format!(
            "allow_origins: {origin:?} is not an origin (scheme://host[:port], no path)"
        ))
    }
}

fn check_names(names: &[String], key: &str) -> Result<(), String> {
    crate::header_list::header_names(names, key).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(yaml: &str) -> Result<Cors, String> {
        let config: CorsConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        Cors::build(config, &BuildContext::new(".".into(), None))
    }

    fn get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_listed_origin_is_echoed_and_others_refused() {
        let p = plugin("allow_origins: [\"https://app.example.com\"]").unwrap();
        assert_eq!(
            p.decide("https://app.example.com"),
            Decision::Allow("https://app.example.com".into())
        );
        assert_eq!(
            p.decide("https://APP.example.com"),
            Decision::Allow("https://APP.example.com".into())
        );
        assert_eq!(p.decide("https://evil.example.com"), Decision::Refuse);
        assert!(p.varies_by_origin());
    }

    #[test]
    fn wildcard_answers_star_and_refuses_credentials() {
        let p = plugin("{}").unwrap();
        assert_eq!(p.decide("https://a.example"), Decision::Allow("*".into()));
        assert!(!p.varies_by_origin());
        for yaml in [
            "allow_credentials: true",
            "{ allow_origins: [\"*\"], allow_credentials: true }",
        ] {
            let err = plugin(yaml).err().unwrap();
            assert!(err.starts_with("allow_origins:"), "{err}");
            assert!(err.contains("allow_credentials"), "{err}");
        }
        let p =
            plugin("{ allow_origins: [\"https://a.example\"], allow_credentials: true }").unwrap();
        assert!(p.varies_by_origin());
    }

    #[test]
    fn preflight_headers_follow_the_config() {
        let p = plugin("{ allow_origins: [\"https://a.example\"], allow_methods: [get, POST], allow_credentials: true, max_age: 1m }")
            .unwrap();
        let h = p.preflight_headers("https://a.example".into(), Some("X-Custom"));
        assert_eq!(
            get(&h, "Access-Control-Allow-Origin"),
            Some("https://a.example")
        );
        assert_eq!(get(&h, "Access-Control-Allow-Methods"), Some("GET, POST"));
        assert_eq!(
            get(&h, "Access-Control-Allow-Headers"),
            Some("Authorization, Content-Type")
        );
        assert_eq!(get(&h, "Access-Control-Max-Age"), Some("60"));
        assert_eq!(get(&h, "Access-Control-Allow-Credentials"), Some("true"));
        assert_eq!(get(&h, "Vary"), Some("Origin"));

        let p = plugin("allow_headers: [\"*\"]").unwrap();
        let h = p.preflight_headers("*".into(), Some("X-A, X-B"));
        assert_eq!(get(&h, "Access-Control-Allow-Headers"), Some("X-A, X-B"));
        assert_eq!(get(&h, "Access-Control-Max-Age"), Some("600"));
        assert_eq!(get(&h, "Access-Control-Allow-Credentials"), None);
    }

    #[test]
    fn refuses_bad_config() {
        assert!(plugin("allow_origins: []").is_err());
        assert!(plugin("allow_origins: [\"*\", \"https://a.example\"]").is_err());
        assert!(plugin("allow_origins: [\"https://a.example/\"]")
            .err()
            .unwrap()
            .starts_with("allow_origins:"));
        assert!(plugin("allow_origins: [a.example]").is_err());
        assert!(plugin("allow_methods: [\"GE T\"]").is_err());
        assert!(plugin("allow_headers: [\"Bad Header\"]").is_err());
        assert!(plugin("max_age: forever").is_err());
    }
}
