//! `compression`: compresses responses for clients that accept it, with Pingora's own
//! downstream compression module.
//!
//! ```yaml
//! - compression: { level: 6, algorithms: [gzip, br, zstd], min_size: 256 }   # the defaults
//! ```
//!
//! The algorithm is chosen from the request's `Accept-Encoding`: the configured algorithm
//! with the highest q-value (`gzip;q=0` refuses gzip, `*` stands for any), ties going to the
//! order of `algorithms`. No `Accept-Encoding`, or none of the configured algorithms
//! acceptable: no compression. `level` must suit every listed algorithm (gzip 1-9, br 1-11,
//! zstd 1-22).
//!
//! What is left uncompressed: responses whose `Content-Length` is under `min_size`; responses
//! that already have a `Content-Encoding` (never compressed twice); types that do not gain
//! from it (Pingora compresses only `text/*`, `application/*`, `font/*`, SVG and icons, and
//! nothing whose type contains `zip`); responses without a body. A response with no
//! `Content-Length` (streamed, chunked) cannot be measured before it is sent, so it is
//! compressed whatever its size. Compressed responses get `Vary: Accept-Encoding`, and a
//! strong `ETag` is weakened, as the representation changed.
//!
//! How it drives Pingora: the module sits in every session switched off (level 0). The
//! `early_request` hook, which runs before the module reads the request, switches on only
//! the chosen algorithm and tells the module to prefer it (Pingora itself would pick the
//! client's first listed encoding and ignore q-values). The `response` hook, which runs
//! before the module sees the response header, switches it off again for small bodies, and
//! for a `br` response arms the gateway's [`BrotliEnd`] module, which adds the end of stream
//! that Pingora 0.9.1's brotli encoder never writes (so strict decoders, such as Node's
//! `fetch`, accept the body).

use async_trait::async_trait;
use gateway::plugin::BrotliEnd;
use gateway::plugin::Hooks;
use gateway::{
    BuildContext, Plugin, PluginConfig, RequestHeader, RequestState, ResponseHeader, Session,
};
use pingora_core::modules::http::compression::ResponseCompression;
use pingora_core::protocols::http::compression::{Algorithm, ResponseCompressionCtx};
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionConfig {
    #[serde(default = "default_level")]
    pub level: u32,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    #[serde(default = "default_min_size")]
    pub min_size: u64,
}

fn default_level() -> u32 {
    6
}

fn default_algorithms() -> Vec<String> {
    ["gzip", "br", "zstd"].map(String::from).to_vec()
}

fn default_min_size() -> u64 {
    256
}

pub struct Compression {
    level: u32,
    algorithms: Vec<Algorithm>,
    min_size: u64,
    /// Set once the missing-module warning was logged, so it is logged once.
    warned: AtomicBool,
}

/// Marks a request this plugin switched compression on for, with the algorithm.
#[derive(Clone, Copy)]
struct Compressing(Algorithm);

/// The configured algorithm `accept_encoding` prefers, if it accepts any.
fn choose(accept_encoding: &str, configured: &[Algorithm]) -> Option<Algorithm> {
    let mut star: Option<f32> = None;
    let mut listed: Vec<(Algorithm, f32)> = Vec::new();
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        if coding.is_empty() {
            continue;
        }
        let q = parts
            .filter_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
            })
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if coding == "*" {
            star = Some(q);
        } else {
            let algorithm = Algorithm::from(coding);
            if algorithm != Algorithm::Other {
                listed.push((algorithm, q));
            }
        }
    }
    let mut best: Option<(Algorithm, f32)> = None;
    for &algorithm in configured {
        let q = listed
            .iter()
            .find(|(a, _)| *a == algorithm)
            .map(|(_, q)| *q)
            .or(star)
            .unwrap_or(0.0);
        // Strictly greater: on a tie the earlier configured algorithm stays.
        if q > 0.0 && best.is_none_or(|(_, bq)| q > bq) {
            best = Some((algorithm, q));
        }
    }
    best.map(|(a, _)| a)
}

/// Switches `ctx` on for `algorithm` alone, at `level`.
///
/// Pingora's module compresses with the first encoding in the list it parses from the
/// request's `Accept-Encoding`, and appends to that list. Feeding it a request that accepts
/// only `algorithm` first puts `algorithm` at the head; the module then appends the client's
/// real list, which it still needs to leave alone responses already in an accepted encoding.
fn switch_on(ctx: &mut ResponseCompressionCtx, algorithm: Algorithm, level: u32) {
    ctx.adjust_level(0);
    ctx.adjust_algorithm_level(algorithm, level);
    if let Ok(mut preferred) = RequestHeader::build("GET", b"/", None) {
        if preferred
            .insert_header(http::header::ACCEPT_ENCODING, algorithm.as_str())
            .is_ok()
        {
            ctx.request_filter(&preferred);
        }
    }
}

fn too_small(response: &ResponseHeader, min_size: u64) -> bool {
    response
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|len| len < min_size)
}

impl Compression {
    fn module<'a>(&self, session: &'a mut Session) -> Option<&'a mut ResponseCompression> {
        let module = session
            .downstream_modules_ctx
            .get_mut::<ResponseCompression>();
        if module.is_none() && !self.warned.swap(true, Ordering::Relaxed) {
            log::warn!("compression: Pingora's response compression module is not installed; responses go uncompressed");
        }
        module
    }
}

#[async_trait]
impl Plugin for Compression {
    fn hooks(&self) -> Hooks {
        Hooks::EARLY_REQUEST | Hooks::RESPONSE
    }

    async fn early_request(&self, session: &mut Session, state: &mut RequestState) {
        let accept = session
            .req_header()
            .headers
            .get(http::header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok());
        let Some(algorithm) = accept.and_then(|a| choose(a, &self.algorithms)) else {
            return;
        };
        let Some(module) = self.module(session) else {
            return;
        };
        if module.is_header_phase() {
            switch_on(module, algorithm, self.level);
            state.extensions.insert(Compressing(algorithm));
        }
    }

    async fn response(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        state: &mut RequestState,
    ) {
        let Some(&Compressing(algorithm)) = state.extensions.get::<Compressing>() else {
            return;
        };
        if !too_small(response, self.min_size) {
            // Pingora leaves its brotli streams unfinished; have the gateway's module end the
            // stream if Pingora's encodes this response (one without an encoding of its own).
            if algorithm == Algorithm::Brotli
                && !response
                    .headers
                    .contains_key(http::header::CONTENT_ENCODING)
            {
                if let Some(end) = session.downstream_modules_ctx.get_mut::<BrotliEnd>() {
                    end.arm();
                }
            }
            return;
        }
        if let Some(module) = self.module(session) {
            // Still in the header phase: the module decides when it sees this header, after
            // this hook. Level 0 everywhere makes it leave the response alone.
            if module.is_header_phase() {
                module.adjust_level(0);
            }
        }
    }
}

impl PluginConfig for Compression {
    const NAME: &'static str = "compression";
    type Config = CompressionConfig;

    fn build(config: CompressionConfig, _cx: &BuildContext) -> Result<Self, String> {
        if config.algorithms.is_empty() {
            return Err("algorithms: at least one of gzip, br, zstd".into());
        }
        let mut algorithms = Vec::new();
        for name in &config.algorithms {
            let (algorithm, max_level) = match name.as_str() {
                "gzip" => (Algorithm::Gzip, 9),
                "br" => (Algorithm::Brotli, 11),
                "zstd" => (Algorithm::Zstd, 22),
                other => {
                    return Err(format!(
                        "algorithms: unknown algorithm {other:?} (gzip, br or zstd)"
                    ))
                }
            };
            if !(1..=max_level).contains(&config.level) {
                return Err(format!(
                    "level: {} is out of range for {name} (1-{max_level})",
                    config.level
                ));
            }
            if algorithms.contains(&algorithm) {
                return Err(format!("algorithms: {name} is listed twice"));
            }
            algorithms.push(algorithm);
        }
        Ok(Compression {
            level: config.level,
            algorithms,
            min_size: config.min_size,
            warned: AtomicBool::new(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const ALL: [Algorithm; 3] = [Algorithm::Gzip, Algorithm::Brotli, Algorithm::Zstd];

    #[test]
    fn chooses_by_q_value_then_config_order() {
        assert_eq!(
            choose("gzip, deflate, br, zstd", &ALL),
            Some(Algorithm::Gzip)
        );
        assert_eq!(choose("deflate, br", &ALL), Some(Algorithm::Brotli));
        assert_eq!(
            choose("gzip;q=0.5, br;q=0.9", &ALL),
            Some(Algorithm::Brotli)
        );
        assert_eq!(choose("gzip;q=0, br;q=0", &ALL), None);
        assert_eq!(choose("identity", &ALL), None);
        assert_eq!(choose("*", &ALL), Some(Algorithm::Gzip));
        assert_eq!(choose("*;q=0.1, zstd", &ALL), Some(Algorithm::Zstd));
        assert_eq!(
            choose("gzip, br", &[Algorithm::Brotli, Algorithm::Gzip]),
            Some(Algorithm::Brotli)
        );
        assert_eq!(choose("gzip", &[Algorithm::Zstd]), None);
        assert_eq!(choose("", &ALL), None);
    }

    /// Runs Pingora's real module logic the way a session would: our early hook, the
    /// module's request filter, our response hook's decision, the module's header filter.
    fn pingora_encodes(
        accept: &str,
        chosen: Algorithm,
        response: &mut ResponseHeader,
        min_size: u64,
    ) -> Option<String> {
        let mut ctx = ResponseCompressionCtx::new(0, false, false);
        switch_on(&mut ctx, chosen, 6);
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("accept-encoding", accept).unwrap();
        ctx.request_filter(&req);
        if too_small(response, min_size) {
            ctx.adjust_level(0);
        }
        ctx.response_header_filter(response, false);
        if ctx.is_enabled() {
            let body = ctx.response_body_filter(Some(&Bytes::from(vec![b'a'; 1000])), true);
            assert!(body.is_some_and(|b| !b.is_empty() && b.len() < 1000));
        }
        response
            .headers
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_string())
    }

    fn text(len: Option<usize>) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("content-type", "text/html").unwrap();
        if let Some(len) = len {
            r.insert_header("content-length", len.to_string()).unwrap();
        }
        r
    }

    #[test]
    fn pingora_uses_the_chosen_algorithm_even_when_the_client_lists_another_first() {
        let chosen = choose("gzip;q=0.1, br", &ALL).unwrap();
        assert_eq!(
            pingora_encodes("gzip;q=0.1, br", chosen, &mut text(Some(1000)), 256).as_deref(),
            Some("br")
        );
        assert_eq!(
            pingora_encodes("zstd, gzip", Algorithm::Gzip, &mut text(None), 256).as_deref(),
            Some("gzip")
        );
    }

    #[test]
    fn small_and_already_encoded_bodies_are_left_alone() {
        assert_eq!(
            pingora_encodes("gzip", Algorithm::Gzip, &mut text(Some(100)), 256),
            None
        );
        let mut encoded = text(Some(1000));
        encoded.insert_header("content-encoding", "br").unwrap();
        assert_eq!(
            pingora_encodes("gzip, br", Algorithm::Gzip, &mut encoded, 256).as_deref(),
            Some("br")
        );
        // Not accepted by the client, and decompression is off: still passed through as is.
        let mut encoded = text(Some(1000));
        encoded.insert_header("content-encoding", "zstd").unwrap();
        assert_eq!(
            pingora_encodes("gzip", Algorithm::Gzip, &mut encoded, 256).as_deref(),
            Some("zstd")
        );
    }

    #[test]
    fn config_is_checked() {
        let build = |yaml: &str| -> Result<Compression, String> {
            let config: CompressionConfig =
                serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
            Compression::build(config, &BuildContext::new(".".into(), None))
        };
        let c = build("{}").unwrap();
        assert_eq!((c.level, c.min_size, c.algorithms.len()), (6, 256, 3));
        assert!(build("{ algorithms: [deflate] }")
            .err()
            .unwrap()
            .contains("unknown algorithm"));
        assert!(build("{ level: 11 }").err().unwrap().starts_with("level:"));
        assert!(build("{ level: 11, algorithms: [br] }").is_ok());
        assert!(build("{ level: 0 }").is_err());
        assert!(build("{ algorithms: [] }").is_err());
        assert!(build("{ algorithms: [gzip, gzip] }").is_err());
    }
}
