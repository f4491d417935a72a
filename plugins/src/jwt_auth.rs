//! `jwt_auth`: JSON Web Tokens from `Authorization: Bearer`.
//!
//! ```yaml
//! - jwt_auth:
//!     algorithms: [HS256]              # HS256 | RS256 | ES256; default [HS256]
//!     secret: "${JWT_SECRET}"          # HS256
//!     public_key: keys/jwt.pem         # RS256 or ES256: a PEM public key file
//!     issuer: null                     # when set, `iss` must equal it
//!     audience: null                   # when set, `aud` must contain it
//!     leeway: 30s                      # clock skew allowed on exp and nbf
//!     forward_claims: { sub: X-User-Id }
//! ```
//!
//! A token is accepted when its header's `alg` is one of `algorithms`, its signature checks
//! with the key for that algorithm, it has an `exp` that has not passed, its `nbf` (if any)
//! has come, and `iss`/`aud` match when configured. Anything else, or no token, gets 401
//! with `WWW-Authenticate: Bearer`. Tokens without `exp` are refused: a token that never
//! expires cannot be revoked.
//!
//! On success every claim is left as the var `jwt.<claim>` (strings as they are, other
//! values as JSON) for later plugins, and each `forward_claims` entry sends that claim to the
//! upstream in the named header. Those headers are always removed from what the client
//! sent first, so a client cannot pass its own `X-User-Id`, nor an `X_User_Id` that a
//! CGI-style backend (PHP, WSGI, Rack) would read as the same header. The `Authorization`
//! header itself is passed on unchanged.
//!
//! A forwarded claim whose text cannot travel as a header value exactly as it is (a control
//! character, tab included, or leading or trailing spaces, which a header's reader strips)
//! refuses the token with 401: sending the header without it would let the upstream read a
//! missing `X-User-Id` as "no user" rather than "this user", and a stripped one as another
//! user's name.

use async_trait::async_trait;
use gateway::config::Dur;
use gateway::plugin::Hooks;
use gateway::{
    BuildContext, Flow, Plugin, PluginConfig, RequestHeader, RequestState, Response, Session,
};
use http::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtAuthConfig {
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default = "default_leeway")]
    pub leeway: Dur,
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
}

fn default_algorithms() -> Vec<String> {
    vec!["HS256".into()]
}

fn default_leeway() -> Dur {
    Dur::secs(30)
}

pub struct JwtAuth {
    algorithms: Vec<Algorithm>,
    secret: Option<DecodingKey>,
    public_key: Option<DecodingKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    forward_claims: Vec<(String, HeaderName)>,
}

/// Claim values for the upstream headers, found by the request hook, sent by the upstream
/// request hook.
#[derive(Clone, Default)]
struct ForwardedClaims(Vec<(HeaderName, HeaderValue)>);

impl JwtAuth {
    /// The token's claims, if the token is acceptable; otherwise why not (for the debug log).
    fn verify(&self, token: &str) -> Result<Map<String, Value>, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
        if !self.algorithms.contains(&header.alg) {
            return Err(format!("algorithm {:?} not allowed", header.alg));
        }
        let key = match header.alg {
            Algorithm::HS256 => self.secret.as_ref(),
            _ => self.public_key.as_ref(),
        }
        .ok_or("no key for the algorithm")?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        // jsonwebtoken skips iss/aud checks when the claim is absent; a configured issuer
        // or audience must be present to be checked.
        let mut required = vec!["exp"];
        match &self.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            // Without a configured audience any `aud` is fine; jsonwebtoken would refuse it.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map_err(|e| e.to_string())?;
        Ok(data.claims)
    }

    /// The headers for the claims to forward that the token has; an error names a claim
    /// that cannot be sent as it is.
    fn forwarded(&self, claims: &Map<String, Value>) -> Result<ForwardedClaims, String> {
        let mut values = Vec::with_capacity(self.forward_claims.len());
        for (claim, header) in &self.forward_claims {
            let Some(value) = claims.get(claim) else {
                continue;
            };
            let value = header_value(&claim_text(value))
                .ok_or_else(|| format!("claim {claim:?} cannot be sent as a header value"))?;
            values.push((header.clone(), value));
        }
        Ok(ForwardedClaims(values))
    }
}

/// `text` as a header value that a reader gets back byte for byte: no control characters
/// (which `HeaderValue` would refuse, except tab) and no surrounding spaces or tabs (which
/// readers strip).
fn header_value(text: &str) -> Option<HeaderValue> {
    let exact = !text.bytes().any(|b| b < 0x20 || b == 0x7f) && text.trim_matches(' ') == text;
    exact.then(|| HeaderValue::from_str(text).ok()).flatten()
}

/// A claim as text: strings as they are, anything else as JSON.
fn claim_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn bearer_token(session: &Session) -> Option<&str> {
    let value = session
        .req_header()
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[async_trait]
impl Plugin for JwtAuth {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST | Hooks::UPSTREAM_REQUEST
    }

    async fn request(&self, session: &mut Session, state: &mut RequestState) -> Flow {
        let Some(token) = bearer_token(session) else {
            return Flow::Respond(
                Response::text(401, "Unauthorized: a bearer token is required\n")
                    .with_header("WWW-Authenticate", "Bearer"),
            );
        };
        match self
            .verify(token)
            .and_then(|claims| Ok((self.forwarded(&claims)?, claims)))
        {
            Ok((forwarded, claims)) => {
                state.extensions.insert(forwarded);
                for (name, value) in &claims {
                    state.set_var(format!("jwt.{name}"), claim_text(value));
                }
                Flow::Continue
            }
            Err(why) => {
                log::debug!("jwt_auth: request {} refused: {why}", state.request_id);
                Flow::Respond(
                    Response::text(401, "Unauthorized: invalid token\n")
                        .with_header("WWW-Authenticate", "Bearer error=\"invalid_token\""),
                )
            }
        }
    }

    async fn upstream_request(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        state: &mut RequestState,
    ) {
        for (_, header) in &self.forward_claims {
            upstream.remove_header(header);
            crate::header_list::remove_aliases(upstream, header);
        }
        if let Some(forwarded) = state.extensions.get::<ForwardedClaims>() {
            for (header, value) in &forwarded.0 {
                let _ = upstream.insert_header(header.clone(), value.clone());
            }
        }
    }
}

impl PluginConfig for JwtAuth {
    const NAME: &'static str = "jwt_auth";
    type Config = JwtAuthConfig;

    fn build(config: JwtAuthConfig, cx: &BuildContext) -> Result<Self, String> {
        if config.algorithms.is_empty() {
            return Err("algorithms: at least one is required (HS256, RS256 or ES256)".into());
        }
        let mut algorithms = Vec::new();
        for name in &config.algorithms {
            algorithms.push(match name.as_str() {
                "HS256" => Algorithm::HS256,
                "RS256" => Algorithm::RS256,
                "ES256" => Algorithm::ES256,
                other => {
                    return Err(format!(
                        "algorithms: unknown algorithm {other:?} (HS256, RS256 or ES256)"
                    ))
                }
            });
        }
        let wants_secret = algorithms.contains(&Algorithm::HS256);
        let wants_rsa = algorithms.contains(&Algorithm::RS256);
        let wants_ec = algorithms.contains(&Algorithm::ES256);
        if wants_rsa && wants_ec {
            return Err(
                "algorithms: RS256 and ES256 need different public keys; use one of them".into(),
            );
        }

        let secret = match (&config.secret, wants_secret) {
            (Some(s), true) if !s.is_empty() => {
                if s.len() < 32 {
                    log::warn!("jwt_auth: the HS256 secret is shorter than 32 bytes; a longer one resists guessing");
                }
                Some(DecodingKey::from_secret(s.as_bytes()))
            }
            (_, true) => return Err("secret: required (and not empty) with HS256".into()),
            (Some(_), false) => {
                return Err("secret: only used with HS256, which algorithms does not list".into())
            }
            (None, false) => None,
        };

        let public_key = match (&config.public_key, wants_rsa || wants_ec) {
            (Some(file), true) => {
                let path = cx.resolve(file);
                let pem = std::fs::read(&path)
                    .map_err(|e| format!("public_key: cannot read {}: {e}", path.display()))?;
                let (key, kind) = if wants_rsa {
                    (DecodingKey::from_rsa_pem(&pem), "an RSA")
                } else {
                    (DecodingKey::from_ec_pem(&pem), "an EC (P-256)")
                };
                Some(key.map_err(|e| {
                    format!(
                        "public_key: {} is not {kind} public key in PEM form: {e}",
                        path.display()
                    )
                })?)
            }
            (None, true) => {
                return Err("public_key: a PEM file is required with RS256 or ES256".into())
            }
            (Some(_), false) => {
                return Err(
                    "public_key: only used with RS256 or ES256, which algorithms does not list"
                        .into(),
                )
            }
            (None, false) => None,
        };

        let forward_claims = config
            .forward_claims
            .iter()
            .map(|(claim, header)| {
                Ok((
                    claim.clone(),
                    crate::header_list::header_name(header, &format!("forward_claims.{claim}"))?,
                ))
            })
            .collect::<Result<_, String>>()?;

        Ok(JwtAuth {
            algorithms,
            secret,
            public_key,
            issuer: config.issuer,
            audience: config.audience,
            leeway: config.leeway.get().as_secs(),
            forward_claims,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;
    use std::path::PathBuf;

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn plugin(yaml: &str, dir: PathBuf) -> Result<JwtAuth, String> {
        let config: JwtAuthConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        JwtAuth::build(config, &BuildContext::new(dir, None))
    }

    fn hs(claims: Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap()
    }

    const HS_CONFIG: &str =
        "{ secret: 0123456789abcdef0123456789abcdef, forward_claims: { sub: X-User-Id } }";

    #[test]
    fn hs256_accepts_a_valid_token_and_forwards_claims() {
        let p = plugin(HS_CONFIG, ".".into()).unwrap();
        let claims = p
            .verify(&hs(
                json!({ "sub": "alice", "exp": now() + 60, "admin": true }),
            ))
            .unwrap();
        assert_eq!(claims["sub"], "alice");
        let fwd = p.forwarded(&claims).unwrap();
        assert_eq!(fwd.0.len(), 1);
        assert_eq!(fwd.0[0].0, "x-user-id");
        assert_eq!(fwd.0[0].1, "alice");
        assert_eq!(claim_text(&claims["admin"]), "true");
    }

    #[test]
    fn a_claim_that_cannot_be_a_header_value_as_it_is_refuses_the_token() {
        let p = plugin(HS_CONFIG, ".".into()).unwrap();
        let forwarded = |sub: Value| p.forwarded(json!({ "sub": sub }).as_object().unwrap());
        for bad in [
            "alice\r\nX-Admin: 1",
            "alice\n",
            "al\u{0}ice",
            "\talice",
            "alice ",
            " alice",
            "a\u{7f}",
        ] {
            let err = forwarded(json!(bad))
                .err()
                .unwrap_or_else(|| panic!("{bad:?}"));
            assert!(err.contains("\"sub\""), "{err}");
        }
        for good in [
            json!("alice smith"),
            json!("José"),
            json!(""),
            json!(42),
            json!(["a", "b"]),
        ] {
            assert_eq!(forwarded(good.clone()).unwrap().0.len(), 1, "{good}");
        }
        // A claim the token lacks is not sent, and is no reason to refuse it.
        assert_eq!(p.forwarded(&Map::new()).unwrap().0.len(), 0);
    }

    #[test]
    fn expiry_and_not_before_honour_the_leeway() {
        let p = plugin(HS_CONFIG, ".".into()).unwrap();
        assert!(
            p.verify(&hs(json!({ "exp": now() - 10 }))).is_ok(),
            "within 30s leeway"
        );
        assert!(p
            .verify(&hs(json!({ "exp": now() - 120 })))
            .err()
            .unwrap()
            .contains("Expired"));
        assert!(p
            .verify(&hs(json!({ "exp": now() + 60, "nbf": now() + 120 })))
            .is_err());
        assert!(p
            .verify(&hs(json!({ "exp": now() + 60, "nbf": now() + 10 })))
            .is_ok());
        assert!(p.verify(&hs(json!({ "sub": "no-exp" }))).is_err());
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let p = plugin(
            "{ secret: 0123456789abcdef0123456789abcdef, issuer: auth.example, audience: api }",
            ".".into(),
        )
        .unwrap();
        let exp = now() + 60;
        assert!(p
            .verify(&hs(
                json!({ "exp": exp, "iss": "auth.example", "aud": "api" })
            ))
            .is_ok());
        assert!(p
            .verify(&hs(
                json!({ "exp": exp, "iss": "auth.example", "aud": ["web", "api"] })
            ))
            .is_ok());
        assert!(p
            .verify(&hs(json!({ "exp": exp, "iss": "evil", "aud": "api" })))
            .is_err());
        assert!(p
            .verify(&hs(
                json!({ "exp": exp, "iss": "auth.example", "aud": "web" })
            ))
            .is_err());
        assert!(p
            .verify(&hs(json!({ "exp": exp, "iss": "auth.example" })))
            .is_err());
        assert!(p.verify(&hs(json!({ "exp": exp, "aud": "api" }))).is_err());
        // Without a configured audience, a token's aud is no reason to refuse it.
        let p = plugin(HS_CONFIG, ".".into()).unwrap();
        assert!(p
            .verify(&hs(json!({ "exp": exp, "aud": "anything" })))
            .is_ok());
    }

    #[test]
    fn refuses_bad_signatures_and_other_algorithms() {
        let p = plugin(HS_CONFIG, ".".into()).unwrap();
        let other = encode(
            &Header::new(Algorithm::HS256),
            &json!({ "exp": now() + 60 }),
            &EncodingKey::from_secret(b"another secret"),
        )
        .unwrap();
        assert!(p.verify(&other).is_err());
        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &json!({ "exp": now() + 60 }),
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        assert!(p.verify(&hs384).err().unwrap().contains("not allowed"));
        // alg "none": an unsigned token.
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&format!(r#"{{"exp":{}}}"#, now() + 60))
        );
        assert!(p.verify(&none).is_err());
        assert!(p.verify("not.a.token").is_err());
    }

    fn b64(s: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    /// Writes a public key to a fresh folder, returning the folder and the private key PEM.
    fn key_files(
        name: &str,
        key: &boring::pkey::PKey<boring::pkey::Private>,
    ) -> (PathBuf, Vec<u8>) {
        let dir = std::env::temp_dir().join(format!("portico-jwt-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("public.pem"), key.public_key_to_pem().unwrap()).unwrap();
        (dir, key.private_key_to_pem_pkcs8().unwrap())
    }

    #[test]
    fn rs256_with_a_public_key_file() {
        let key = boring::pkey::PKey::from_rsa(boring::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let (dir, private) = key_files("rsa", &key);
        let p = plugin(
            "{ algorithms: [RS256], public_key: public.pem }",
            dir.clone(),
        )
        .unwrap();
        let token = encode(
            &Header::new(Algorithm::RS256),
            &json!({ "sub": "svc", "exp": now() + 60 }),
            &EncodingKey::from_rsa_pem(&private).unwrap(),
        )
        .unwrap();
        assert_eq!(p.verify(&token).unwrap()["sub"], "svc");
        // An HS256 token signed with the public key as the secret: the classic confusion.
        let pem = std::fs::read(dir.join("public.pem")).unwrap();
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &json!({ "exp": now() + 60 }),
            &EncodingKey::from_secret(&pem),
        )
        .unwrap();
        assert!(p.verify(&forged).is_err());
        // An EC key where an RSA key is expected fails the config.
        assert!(plugin(
            "{ algorithms: [ES256], public_key: public.pem }",
            dir.clone()
        )
        .err()
        .unwrap()
        .starts_with("public_key:"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn es256_with_a_public_key_file() {
        let group =
            boring::ec::EcGroup::from_curve_name(boring::nid::Nid::X9_62_PRIME256V1).unwrap();
        let key =
            boring::pkey::PKey::from_ec_key(boring::ec::EcKey::generate(&group).unwrap()).unwrap();
        let (dir, private) = key_files("ec", &key);
        let p = plugin(
            "{ algorithms: [ES256], public_key: public.pem }",
            dir.clone(),
        )
        .unwrap();
        let token = encode(
            &Header::new(Algorithm::ES256),
            &json!({ "sub": "svc", "exp": now() + 60 }),
            &EncodingKey::from_ec_pem(&private).unwrap(),
        )
        .unwrap();
        assert_eq!(p.verify(&token).unwrap()["sub"], "svc");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuses_bad_config() {
        let dot = || PathBuf::from(".");
        assert!(plugin("{}", dot()).err().unwrap().starts_with("secret:"));
        assert!(plugin("{ algorithms: [HS512], secret: x }", dot())
            .err()
            .unwrap()
            .contains("unknown algorithm"));
        assert!(plugin("{ algorithms: [RS256] }", dot())
            .err()
            .unwrap()
            .starts_with("public_key:"));
        assert!(plugin(
            "{ algorithms: [RS256], public_key: /nonexistent.pem }",
            dot()
        )
        .err()
        .unwrap()
        .contains("cannot read"));
        assert!(plugin("{ algorithms: [RS256, ES256], public_key: k.pem }", dot()).is_err());
        assert!(plugin(
            "{ algorithms: [RS256], secret: x, public_key: k.pem }",
            dot()
        )
        .err()
        .unwrap()
        .starts_with("secret:"));
        assert!(plugin(
            "{ secret: x, forward_claims: { sub: \"Bad Header\" } }",
            dot()
        )
        .err()
        .unwrap()
        .starts_with("forward_claims.sub:"));
        assert!(plugin("{ secret: x, leeway: soon }", dot()).is_err());
    }
}
