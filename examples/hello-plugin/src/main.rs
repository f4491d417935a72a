//! A gateway binary with plugins of its own next to the built-ins: the shape of any user's
//! Portico build. `hello` below works on requests and responses; `forbidden_word`
//! (forbidden_word.rs) on the request body as it streams. Run it like `portico`:
//!
//! ```sh
//! cargo run -p hello-plugin -- -c examples/hello-plugin/hello.yaml
//! curl -i http://127.0.0.1:8080/hello     # 200 "hello, world"
//! curl -i http://127.0.0.1:8080/other     # the route's answer, plus `X-Hello: world`
//! ```
//!
//! ```yaml
//! plugins:
//!   - hello: { name: world }          # answers /hello, greets every other response
//! ```

mod forbidden_word;

use async_trait::async_trait;
use gateway::{
    BuildContext, Flow, Plugin, PluginConfig, RequestState, Response, ResponseHeader, Session,
};
use serde::Deserialize;

/// The plugin's config: the YAML value under `hello:`, checked by serde at load time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HelloConfig {
    /// Who to greet.
    name: String,
    /// The path answered by the plugin itself.
    #[serde(default = "default_path")]
    path: String,
}

fn default_path() -> String {
    "/hello".into()
}

/// Answers `GET {path}` itself, and adds `X-Hello: {name}` to every other response.
struct Hello {
    name: String,
    path: String,
    greeting: http::HeaderValue,
}

#[async_trait]
impl Plugin for Hello {
    async fn request(&self, session: &mut Session, state: &mut RequestState) -> Flow {
        if session.req_header().uri.path() == self.path {
            return Flow::Respond(Response::text(200, format!("hello, {}\n", self.name)));
        }
        // Later plugins, and the log hook, can read what this one left.
        state.set_var("hello.greeted", self.name.clone());
        Flow::Continue
    }

    async fn response(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        _state: &mut RequestState,
    ) {
        // The value was checked in `build`, so the insert cannot fail.
        let _ = response.insert_header("X-Hello", self.greeting.clone());
    }
}

impl PluginConfig for Hello {
    const NAME: &'static str = "hello";
    type Config = HelloConfig;

    /// Checks what serde cannot; the message becomes the config error, prefixed with the
    /// plugin's place in the config (`routes[0].plugins[1].hello: ...`).
    fn build(config: HelloConfig, _cx: &BuildContext) -> Result<Self, String> {
        let greeting = http::HeaderValue::from_str(&config.name)
            .map_err(|_| format!("name: {:?} cannot be sent in a header", config.name))?;
        if !config.path.starts_with('/') {
            return Err(format!("path: {:?} must start with /", config.path));
        }
        Ok(Hello {
            name: config.name,
            path: config.path,
            greeting,
        })
    }
}

fn main() {
    let mut registry = gateway::Registry::new();
    plugins::register_builtins(&mut registry);
    registry.register::<Hello>();
    registry.register::<forbidden_word::ForbiddenWord>();
    gateway::run(registry)
}

#[cfg(test)]
mod tests {
    use super::*;
    // PLUGINS.md: begin
    use gateway::plugin::testing::{self, TestRequest};

    fn build(yaml: &str) -> Result<Hello, String> {
        testing::build(yaml)
    }

    #[tokio::test]
    async fn answers_its_path_and_lets_the_rest_through() {
        let hello = build("{ name: world }").unwrap();
        let mut t = TestRequest::new(b"GET /hello HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
        let Flow::Respond(answer) = hello.request(&mut t.session, &mut t.state).await else {
            panic!("/hello was not answered");
        };
        assert_eq!(
            (answer.status, &answer.body[..]),
            (200, &b"hello, world\n"[..])
        );

        let mut t = TestRequest::new(b"GET /other HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
        let flow = hello.request(&mut t.session, &mut t.state).await;
        assert!(matches!(flow, Flow::Continue));
        assert_eq!(t.state.var("hello.greeted"), Some("world"));
    }
    // PLUGINS.md: end

    /// PLUGINS.md shows the test above: it must be this one, which compiles and passes.
    #[test]
    fn plugins_md_shows_this_test() {
        let source = include_str!("main.rs");
        let shown = source
            .split("// PLUGINS.md: begin\n")
            .nth(1)
            .and_then(|rest| rest.split("    // PLUGINS.md: end").next())
            .unwrap();
        assert!(
            include_str!("../../../PLUGINS.md").contains(shown),
            "PLUGINS.md (Testing) no longer shows the test in examples/hello-plugin/src/main.rs"
        );
    }

    #[test]
    fn config_is_checked_at_load() {
        let hello = build("{ name: world }").unwrap();
        assert_eq!(hello.path, "/hello");
        assert!(build("{ name: \"two\\nlines\" }")
            .err()
            .unwrap()
            .starts_with("name:"));
        assert!(build("{ name: world, path: hello }")
            .err()
            .unwrap()
            .starts_with("path:"));
        assert!(build("{ nmae: world }").is_err());
    }

    #[test]
    fn registers_next_to_the_builtins() {
        let mut registry = gateway::Registry::new();
        plugins::register_builtins(&mut registry);
        registry.register::<Hello>();
        let cx = BuildContext::new(".".into(), None);
        let value: serde_yaml::Value = serde_yaml::from_str("{ name: world }").unwrap();
        let (name, _plugin) = registry.build("hello", value, &cx).unwrap();
        assert_eq!(name, "hello");
    }
}
