//! A plugin on the request body: refuses a request whose body contains a word, as it streams
//! by, without buffering the body. The shape of signature checks and body validation: each
//! piece is seen once, before it goes to the backend, and the plugin may answer instead.
//!
//! ```yaml
//! routes:
//!   - name: comments
//!     upstream: app
//!     plugins:
//!       - forbidden_word: { word: "DROP TABLE" }   # 422 for a body that contains it
//! ```

use async_trait::async_trait;
use bytes::Bytes;
use gateway::{BuildContext, Flow, Hooks, Plugin, PluginConfig, RequestState, Response, Session};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForbiddenWordConfig {
    word: String,
}

pub struct ForbiddenWord {
    word: Vec<u8>,
}

/// The last `word.len() - 1` bytes of the pieces seen so far: a word split across two pieces
/// (or across many small ones) is still found, and no more than that is kept per request.
#[derive(Clone)]
struct Tail(Vec<u8>);

#[async_trait]
impl Plugin for ForbiddenWord {
    /// Only the body hook: the gateway skips the others for this plugin, and runs the body
    /// hooks at all only on routes with a plugin that has one.
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST_BODY
    }

    async fn request_body(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        state: &mut RequestState,
    ) -> Flow {
        let Some(piece) = body else {
            return Flow::Continue;
        };
        let mut seen = state
            .extensions
            .remove::<Tail>()
            .map_or(Vec::new(), |t| t.0);
        seen.extend_from_slice(piece);
        if seen.windows(self.word.len()).any(|w| w == self.word) {
            return Flow::Respond(Response::text(422, "the body holds a forbidden word\n"));
        }
        let keep = seen.len().saturating_sub(self.word.len() - 1);
        state.extensions.insert(Tail(seen.split_off(keep)));
        Flow::Continue
    }
}

impl PluginConfig for ForbiddenWord {
    const NAME: &'static str = "forbidden_word";
    type Config = ForbiddenWordConfig;

    fn build(config: ForbiddenWordConfig, _cx: &BuildContext) -> Result<Self, String> {
        if config.word.is_empty() {
            return Err("word: must not be empty".into());
        }
        Ok(ForbiddenWord {
            word: config.word.into_bytes(),
        })
    }
}
