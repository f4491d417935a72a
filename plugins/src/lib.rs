//! Portico's built-in plugins.
//!
//! Each one is written against the same public API of the `gateway` crate that a user's own
//! plugin uses (see PLUGINS.md): a type implementing [`gateway::Plugin`], a serde config
//! checked in [`gateway::PluginConfig::build`], and one line in [`register_builtins`].

pub mod access_log;
pub mod basic_auth;
pub mod client_cert;
pub mod compression;
pub mod cors;
pub mod headers;
pub mod ip_filter;
pub mod jwt_auth;
pub mod key_auth;
pub mod rate_limit;
pub mod redirect;
pub mod respond;
pub mod rewrite;

mod header_list;

use gateway::Registry;

/// Registers every built-in plugin under its config name.
///
/// A binary calls this first, then registers its own plugins; registering a name again
/// replaces the built-in of that name.
///
/// ```
/// let mut registry = gateway::Registry::new();
/// plugins::register_builtins(&mut registry);
/// assert!(registry.names().any(|n| n == "rate_limit"));
/// ```
pub fn register_builtins(registry: &mut Registry) {
    registry.register::<access_log::AccessLog>();
    registry.register::<headers::Headers>();
    registry.register::<redirect::Redirect>();
    registry.register::<rewrite::Rewrite>();
    registry.register::<cors::Cors>();
    registry.register::<ip_filter::IpFilter>();
    registry.register::<basic_auth::BasicAuth>();
    registry.register::<client_cert::ClientCertAuth>();
    registry.register::<key_auth::KeyAuth>();
    registry.register::<jwt_auth::JwtAuth>();
    registry.register::<rate_limit::RateLimit>();
    registry.register::<respond::Respond>();
    registry.register::<compression::Compression>();
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway::BuildContext;

    fn build(name: &str, yaml: &str) -> Result<(), String> {
        let mut registry = Registry::new();
        register_builtins(&mut registry);
        let cx = BuildContext::new(std::env::temp_dir(), Some("r".into()));
        let value: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
        registry.build(name, value, &cx).map(|_| ())
    }

    #[test]
    fn every_builtin_is_registered() {
        let mut registry = Registry::new();
        register_builtins(&mut registry);
        let names: Vec<_> = registry.names().collect();
        for name in [
            "access_log",
            "headers",
            "redirect",
            "rewrite",
            "cors",
            "ip_filter",
            "basic_auth",
            "client_cert",
            "key_auth",
            "jwt_auth",
            "rate_limit",
            "respond",
            "compression",
        ] {
            assert!(names.contains(&name), "{name} missing");
        }
    }

    /// A hook left out of `hooks()` would never run, silently: each built-in must list
    /// exactly the hooks its `impl Plugin` block defines.
    #[test]
    fn every_builtin_declares_exactly_the_hooks_it_implements() {
        const HOOKS: [(&str, &str); 6] = [
            ("early_request", "EARLY_REQUEST"),
            ("request", "REQUEST"),
            ("upstream_request", "UPSTREAM_REQUEST"),
            ("response", "RESPONSE"),
            ("response_body", "RESPONSE_BODY"),
            ("log", "LOG"),
        ];
        let sources = [
            ("access_log", include_str!("access_log/mod.rs")),
            ("basic_auth", include_str!("basic_auth.rs")),
            ("client_cert", include_str!("client_cert.rs")),
            ("compression", include_str!("compression.rs")),
            ("cors", include_str!("cors.rs")),
            ("headers", include_str!("headers.rs")),
            ("ip_filter", include_str!("ip_filter.rs")),
            ("jwt_auth", include_str!("jwt_auth.rs")),
            ("key_auth", include_str!("key_auth.rs")),
            ("rate_limit", include_str!("rate_limit.rs")),
            ("redirect", include_str!("redirect.rs")),
            ("respond", include_str!("respond.rs")),
            ("rewrite", include_str!("rewrite.rs")),
        ];
        // Every built-in is checked: a new one must be added to `sources`.
        let mut registry = Registry::new();
        register_builtins(&mut registry);
        let mut registered: Vec<&str> = registry.names().collect();
        registered.sort_unstable();
        let checked: Vec<&str> = sources.iter().map(|(name, _)| *name).collect();
        assert_eq!(checked, registered);
        for (name, source) in sources {
            let block = source.split("impl Plugin for ").nth(1).expect(name);
            let block = &block[..block.find("\n}\n").expect(name)];
            let implemented: Vec<&str> = HOOKS
                .iter()
                .filter(|(hook, _)| block.contains(&format!("fn {hook}(")))
                .map(|(_, constant)| *constant)
                .collect();
            let listed = block.split("fn hooks(").nth(1).expect(name);
            let listed: Vec<&str> = listed[..listed.find('}').expect(name)]
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .collect();
            let declared: Vec<&str> = HOOKS
                .iter()
                .filter(|(_, constant)| listed.contains(&format!("Hooks::{constant}").as_str()))
                .map(|(_, constant)| *constant)
                .collect();
            assert_eq!(declared, implemented, "{name}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = build("respond", "{ stauts: 200 }").err().unwrap();
        assert!(err.contains("stauts"), "{err}");
    }

    #[test]
    fn empty_config_means_defaults() {
        build("access_log", "null").unwrap();
        build("compression", "{}").unwrap();
        build("respond", "null").unwrap();
    }
}
