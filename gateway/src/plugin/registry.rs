//! Plugins by name: how a config's `- rate_limit: {...}` becomes a running plugin.

use super::Plugin;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a plugin may need while it is built from its config.
pub struct BuildContext {
    base_dir: PathBuf,
    /// The route the plugin is configured on; `None` for the global chain.
    pub route: Option<String>,
}

impl BuildContext {
    pub fn new(base_dir: PathBuf, route: Option<String>) -> Self {
        BuildContext { base_dir, route }
    }

    /// Resolves a path from the plugin's config against the config file's folder.
    pub fn resolve(&self, p: &str) -> PathBuf {
        crate::config::resolve(&self.base_dir, p)
    }

    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }
}

/// How a plugin is named and built from its typed config.
///
/// `Config` is deserialized from the YAML value under the plugin's name; unknown keys should
/// be refused with `#[serde(deny_unknown_fields)]`. `build` checks what serde cannot (a
/// regex, a CIDR, a key file) and returns a message for the config error.
///
/// `build` runs whenever a config is compiled, also when it is only checked (`portico -t`)
/// or a reload is then refused: it must have no effect outside the value it returns (it may
/// open a file to see that it can, and keep it, but start no thread or task). What runs in
/// the background is started by [`Plugin::start`] once the config goes live.
pub trait PluginConfig: Plugin + Sized {
    /// The name used in config files, e.g. `rate_limit`.
    const NAME: &'static str;
    type Config: DeserializeOwned;
    fn build(config: Self::Config, cx: &BuildContext) -> Result<Self, String>;
}

type Builder =
    Box<dyn Fn(serde_yaml::Value, &BuildContext) -> Result<Arc<dyn Plugin>, String> + Send + Sync>;

/// The plugins a binary knows, by name.
#[derive(Default)]
pub struct Registry {
    builders: BTreeMap<&'static str, Builder>,
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    /// Makes plugin `P` available under `P::NAME`. A later registration of the same name
    /// replaces the earlier one, so a user's binary can swap out a built-in.
    pub fn register<P: PluginConfig>(&mut self) {
        self.builders.insert(
            P::NAME,
            Box::new(|value, cx| {
                // An empty value (`- access_log:`) means an empty config.
                let value = if value.is_null() {
                    serde_yaml::Value::Mapping(Default::default())
                } else {
                    value
                };
                let config: P::Config = serde_yaml::from_value(value).map_err(|e| e.to_string())?;
                let plugin = P::build(config, cx)?;
                Ok(Arc::new(plugin) as Arc<dyn Plugin>)
            }),
        );
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.builders.keys().copied()
    }

    /// Builds the plugin `name` from its config value.
    pub fn build(
        &self,
        name: &str,
        value: serde_yaml::Value,
        cx: &BuildContext,
    ) -> Result<(&'static str, Arc<dyn Plugin>), String> {
        let (key, builder) = self.builders.get_key_value(name).ok_or_else(|| {
            let known: Vec<_> = self.names().collect();
            format!("unknown plugin {name:?} (known: {})", known.join(", "))
        })?;
        builder(value, cx).map(|p| (*key, p))
    }
}
