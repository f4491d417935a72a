//! Ends the brotli streams that Pingora's response compression module leaves open.
//!
//! Pingora 0.9.1 flushes its brotli encoder at the end of a body but never finishes it
//! (cloudflare/pingora#1013), so every `br` body it makes lacks the last, empty meta-block
//! that ends a brotli stream. Browsers and curl accept that; strict decoders (Node's zlib,
//! and so `fetch`; the brotli CLI; the `brotli` crate) refuse the whole body. A flushed
//! stream ends on a byte boundary, so what is missing is exactly one byte: ISLAST = 1,
//! ISLASTEMPTY = 1, i.e. `0x03` (what the encoder's own finish emits after a flush).
//!
//! This module runs after the compression module. It does nothing unless the plugin that
//! switched compression on armed it ([`BrotliEnd::arm`]: the response had no encoding of its
//! own, so a `Content-Encoding: br` after the compression module means that module made it)
//! and the compression module did encode the response as `br`. A body from the upstream
//! that was already `br` is never touched. Remove this module once Pingora finishes its
//! brotli streams itself.

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use pingora_core::modules::http::{HttpModule, HttpModuleBuilder, Module, ModuleBuilder};
use pingora_core::Result;
use pingora_http::ResponseHeader;
use std::any::Any;

/// The byte that ends a brotli stream flushed to a byte boundary.
const LAST_EMPTY_META_BLOCK: u8 = 0x03;

/// Per-response state of the module; see the module documentation.
#[derive(Debug, Default)]
pub struct BrotliEnd {
    armed: bool,
    /// The compression module encoded this response as `br`.
    active: bool,
    ended: bool,
}

impl BrotliEnd {
    /// Called from a plugin's `response` hook (which runs before the modules see the
    /// response header) when compression is on for this response and the response has no
    /// `Content-Encoding` of its own:
    ///
    /// ```ignore
    /// if let Some(end) = session.downstream_modules_ctx.get_mut::<gateway::plugin::BrotliEnd>() {
    ///     end.arm();
    /// }
    /// ```
    pub fn arm(&mut self) {
        self.armed = true;
    }

    /// The builder to add to the downstream modules, after the compression module.
    pub fn builder() -> ModuleBuilder {
        Box::new(BrotliEndBuilder)
    }

    fn header(&mut self, response: &ResponseHeader, end_of_stream: bool) {
        let br = response
            .headers
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"br"));
        self.active = self.armed && br && !end_of_stream;
    }

    fn body(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        if !self.active || self.ended || !end_of_stream {
            return;
        }
        let mut out = BytesMut::with_capacity(body.as_ref().map_or(0, Bytes::len) + 1);
        if let Some(b) = body {
            out.extend_from_slice(b);
        }
        out.put_u8(LAST_EMPTY_META_BLOCK);
        *body = Some(out.freeze());
        self.ended = true;
    }
}

#[async_trait]
impl HttpModule for BrotliEnd {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    async fn response_header_filter(
        &mut self,
        response: &mut ResponseHeader,
        end_of_stream: bool,
    ) -> Result<()> {
        self.header(response, end_of_stream);
        Ok(())
    }

    fn response_body_filter(
        &mut self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
    ) -> Result<()> {
        self.body(body, end_of_stream);
        Ok(())
    }

    // No `response_done_filter`: a body that ends with `Done` rather than a last piece gets
    // the compression module's final bytes from that filter, and a later module's output
    // would replace them. Pingora's proxy and `Session::write_response_body` mark the last
    // piece, so that path stays as Pingora leaves it.
}

struct BrotliEndBuilder;

impl HttpModuleBuilder for BrotliEndBuilder {
    fn init(&self) -> Module {
        Box::new(BrotliEnd::default())
    }

    /// After every other module, the compression module (`i16::MIN / 2`) included. Not
    /// `i16::MIN` itself: Pingora sorts by the negated order, which would overflow.
    fn order(&self) -> i16 {
        i16::MIN + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn br_response() -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("content-encoding", "br").unwrap();
        r
    }

    fn run(module: &mut BrotliEnd, pieces: &[(&'static [u8], bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (piece, end) in pieces {
            let mut body = Some(Bytes::from_static(piece));
            module.body(&mut body, *end);
            out.extend_from_slice(&body.unwrap());
        }
        out
    }

    #[test]
    fn ends_an_armed_br_body_once() {
        let mut m = BrotliEnd::default();
        m.arm();
        m.header(&br_response(), false);
        assert_eq!(
            run(&mut m, &[(b"ab", false), (b"cd", true), (b"", true)]),
            b"abcd\x03"
        );
        let mut none = None;
        let mut m = BrotliEnd::default();
        m.arm();
        m.header(&br_response(), false);
        m.body(&mut none, true);
        assert_eq!(none.as_deref(), Some(&b"\x03"[..]));
    }

    /// The two modules as a session runs them: compression switched on for br, this one
    /// armed; the stream that leaves them is Pingora's flushed one plus the end byte.
    #[tokio::test]
    async fn runs_after_the_compression_module() {
        use pingora_core::modules::http::compression::{
            ResponseCompression, ResponseCompressionBuilder,
        };
        use pingora_core::modules::http::HttpModules;
        use pingora_core::protocols::http::compression::Algorithm;

        let mut modules = HttpModules::new();
        modules.add_module(BrotliEnd::builder());
        modules.add_module(ResponseCompressionBuilder::enable(0));
        let mut ctx = modules.build_ctx();
        ctx.get_mut::<ResponseCompression>()
            .unwrap()
            .adjust_algorithm_level(Algorithm::Brotli, 6);
        ctx.get_mut::<BrotliEnd>().unwrap().arm();
        let mut req = pingora_http::RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("accept-encoding", "br").unwrap();
        ctx.request_header_filter(&mut req).await.unwrap();
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-type", "text/plain").unwrap();
        ctx.response_header_filter(&mut resp, false).await.unwrap();
        assert_eq!(resp.headers.get("content-encoding").unwrap(), "br");
        let mut body = Some(Bytes::from("text ".repeat(100)));
        ctx.response_body_filter(&mut body, true).unwrap();
        let body = body.unwrap();
        assert!(body.len() > 1 && body.len() < 100, "{body:?}");
        assert_eq!(body.last(), Some(&LAST_EMPTY_META_BLOCK));
    }

    #[test]
    fn leaves_everything_else_alone() {
        // Not armed: the upstream's own br body.
        let mut m = BrotliEnd::default();
        m.header(&br_response(), false);
        assert_eq!(run(&mut m, &[(b"ab", true)]), b"ab");
        // Armed, but the compression module chose not to encode.
        let mut m = BrotliEnd::default();
        m.arm();
        m.header(&ResponseHeader::build(200, None).unwrap(), false);
        assert_eq!(run(&mut m, &[(b"ab", true)]), b"ab");
        // No body at all.
        let mut m = BrotliEnd::default();
        m.arm();
        m.header(&br_response(), true);
        assert_eq!(run(&mut m, &[(b"", true)]), b"");
    }
}
