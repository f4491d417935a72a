//! Header names and values from a plugin's config, checked once at load time so that the
//! request path only clones values already known to be valid.

use http::{HeaderName, HeaderValue};
use std::collections::BTreeMap;

/// Header name/value pairs, in the config's (sorted) order.
pub(crate) type HeaderList = Vec<(HeaderName, HeaderValue)>;

/// Checks a `{Name: value}` map from a config.
pub(crate) fn header_list(map: &BTreeMap<String, String>, key: &str) -> Result<HeaderList, String> {
    map.iter()
        .map(|(name, value)| Ok((header_name(name, key)?, header_value(name, value, key)?)))
        .collect()
}

/// Checks a list of header names from a config.
pub(crate) fn header_names(names: &[String], key: &str) -> Result<Vec<HeaderName>, String> {
    names.iter().map(|n| header_name(n, key)).collect()
}

pub(crate) fn header_name(name: &str, key: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{key}: {name:?} is not a valid header name"))
}

fn header_value(name: &str, value: &str, key: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(value)
        .map_err(|_| format!("{key}.{name}: {value:?} is not a valid header value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_names_and_values() {
        let mut map = BTreeMap::new();
        map.insert("X-Ok".to_string(), "fine".to_string());
        assert_eq!(header_list(&map, "set").unwrap().len(), 1);
        map.insert("Bad Name".to_string(), "v".to_string());
        assert!(header_list(&map, "set").err().unwrap().contains("Bad Name"));
        let mut map = BTreeMap::new();
        map.insert("X-A".to_string(), "line\nbreak".to_string());
        assert!(header_list(&map, "set").err().unwrap().contains("set.X-A"));
    }
}
