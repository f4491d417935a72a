//! A plugin chain (the global `plugins` or a route's): each entry built by its registered
//! name from its config. Building is pure; nothing a plugin does at `start` happens here.

use crate::config::Problems;
use crate::plugin::{BuildContext, Chain, ChainEntry, Registry};
use std::path::Path;

pub(super) fn compile(
    list: &[serde_yaml::Value],
    at: &str,
    route: Option<&str>,
    registry: &Registry,
    base: &Path,
    p: &mut Problems,
) -> Chain {
    let mut entries = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let item_at = format!("{at}[{i}]");
        let Some(map) = item.as_mapping().filter(|m| m.len() == 1) else {
            p.add(item_at, "a plugin is written as `- name: { config }`");
            continue;
        };
        let (k, v) = map.iter().next().expect("one entry");
        let Some(name) = k.as_str() else {
            p.add(item_at, "a plugin name must be a string");
            continue;
        };
        let cx = BuildContext::new(base.to_path_buf(), route.map(str::to_string));
        match registry.build(name, v.clone(), &cx) {
            Ok((name, plugin)) => entries.push(ChainEntry { name, plugin }),
            Err(e) => {
                let whose = match route {
                    Some(r) => format!("route {r:?}, plugin {name}"),
                    None => format!("global plugin {name}"),
                };
                p.add(format!("{item_at}.{name}"), format!("{whose}: {e}"));
            }
        }
    }
    Chain::new(entries)
}
