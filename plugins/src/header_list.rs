//! Header names and values from a plugin's config, checked once at load time so that the
//! request path only clones values already known to be valid.

use gateway::RequestHeader;
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

/// Whether a CGI-style backend reads header names `a` and `b` (lowercase, as `HeaderName`
/// keeps them) as one: PHP, WSGI (Django, Flask) and Rack hand the application
/// `HTTP_X_USER_ID` for both `X-User-Id` and `X_User_Id`.
fn cgi_alike(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || (matches!(x, b'-' | b'_') && matches!(y, b'-' | b'_')))
}

/// Removes from a request the headers other than `name` that a CGI-style backend reads as
/// `name` (see [`cgi_alike`]): a client's `X_User_Id` next to the `X-User-Id` a plugin sets
/// or removes would otherwise reach the application under the same key, and which one wins
/// is up to the backend. nginx and Apache drop such headers by default; not every backend
/// sits behind one. Costs one comparison of lengths per header when there is none.
pub(crate) fn remove_aliases(req: &mut RequestHeader, name: &HeaderName) {
    let aliases: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|k| *k != name && cgi_alike(k.as_str(), name.as_str()))
        .cloned()
        .collect();
    for alias in &aliases {
        req.remove_header(alias);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_a_cgi_backend_would_read_as_the_name_are_removed() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (name, value) in [
            ("X-User-Id", "alice"),
            ("X_User_Id", "admin"),
            ("x_user-id", "admin"),
            ("X-User-Ids", "kept"),
            ("X-Other", "kept"),
        ] {
            req.append_header(name.to_string(), value).unwrap();
        }
        remove_aliases(&mut req, &HeaderName::from_static("x-user-id"));
        let mut left: Vec<&str> = req.headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-other", "x-user-id", "x-user-ids"]);
        // A name written with `_` in the config has the `-` spelling as its alias.
        remove_aliases(&mut req, &HeaderName::from_static("x_user_id"));
        assert!(req.headers.get("x-user-id").is_none());
    }

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
