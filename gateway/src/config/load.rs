//! Reading a config file: environment substitution, parsing, and positions for errors.

use super::error::{ConfigError, ConfigErrors};
use super::locate::LineIndex;
use super::model::Config;
use std::path::{Path, PathBuf};

/// A parsed config file, with what later checks need to point back into it.
pub struct Source {
    pub config: Config,
    pub lines: LineIndex,
    /// The folder relative paths resolve against.
    pub base_dir: PathBuf,
    /// A short fingerprint of the file's text, reported as the config `version`.
    pub version: String,
}

pub fn load_file(path: &Path) -> Result<Source, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::single(
            "",
            format!("cannot read config file {}: {e}", path.display()),
            None,
        )
    })?;
    let base_dir = path
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    load_str(&text, base_dir)
}

pub fn load_str(text: &str, base_dir: PathBuf) -> Result<Source, ConfigErrors> {
    let substituted = substitute_env(text);
    // Positions are looked up in the text as written, each `${NAME}` only blanked out (so
    // that it parses where the raw `${` would not, as in a flow mapping).
    if !substituted.unset.is_empty() {
        let lines = LineIndex::build_with_positions(&substituted.skeleton);
        return Err(ConfigErrors(
            substituted
                .unset
                .iter()
                .map(|u| ConfigError {
                    // The key whose value holds it.
                    path: lines.path_at(u.line, u.col).unwrap_or_default().to_string(),
                    message: format!("environment variable {} is not set", u.name),
                    line: Some(u.line),
                })
                .collect(),
        ));
    }
    let lines = LineIndex::build(&substituted.skeleton);
    let expanded = substituted.text;
    let config: Config =
        serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(&expanded))
            .map_err(|e| yaml_error(&e, &lines))?;
    Ok(Source {
        config,
        lines,
        base_dir,
        version: fingerprint(&expanded),
    })
}

/// A config's text with its `${NAME}`s replaced.
struct Substituted {
    /// With the variables' values.
    text: String,
    /// With each `${NAME}` overwritten by as many `_`: lines and columns as written.
    skeleton: String,
    /// The variables that are not set, where they were written.
    unset: Vec<Unset>,
}

struct Unset {
    name: String,
    /// 1-based.
    line: usize,
    /// 0-based, in characters.
    col: usize,
}

/// Replaces `${NAME}` with the environment variable NAME, outside comments. An unset
/// variable is an error: a missing secret must stop the config, not become an empty string.
fn substitute_env(text: &str) -> Substituted {
    let mut out = String::with_capacity(text.len());
    let mut skeleton = String::with_capacity(text.len());
    let mut unset = Vec::new();
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let (code, comment) = split_comment(line);
        let mut rest = code;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            skeleton.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find('}') {
                Some(end) => {
                    let name = &after[..end];
                    match std::env::var(name) {
                        Ok(v) => out.push_str(&v),
                        Err(_) => unset.push(Unset {
                            name: name.to_string(),
                            line: n + 1,
                            col: code[..code.len() - rest.len() + start].chars().count(),
                        }),
                    }
                    let written = &rest[start..start + end + 3];
                    skeleton.extend(std::iter::repeat_n('_', written.chars().count()));
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str(&rest[start..]);
                    skeleton.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        for s in [&mut out, &mut skeleton] {
            s.push_str(rest);
            s.push_str(comment);
        }
    }
    Substituted {
        text: out,
        skeleton,
        unset,
    }
}

/// Splits a line at a `#` that starts a YAML comment (at the line start or after a space,
/// outside quotes).
fn split_comment(line: &str) -> (&str, &str) {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev.is_whitespace() => return line.split_at(i),
            None => {}
        }
        prev = c;
    }
    (line, "")
}

fn yaml_error(
    e: &serde_path_to_error::Error<serde_yaml::Error>,
    index: &LineIndex,
) -> ConfigErrors {
    let inner = e.inner();
    let text = inner.to_string();
    // serde_yaml says "path: message at line L column C", its path being the value's
    // parent; the exact path comes from serde_path_to_error, and the line is reported in
    // Portico's own form.
    let text = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    let mut path = e.path().to_string();
    if path == "." || index.is_broken() {
        // Not a value at fault but the file's syntax: serde_yaml's position is the one.
        path.clear();
    }
    let mut message = match text.split_once(": ") {
        Some((p, m)) if !p.contains(' ') && (p == "." || path.starts_with(p)) => m.to_string(),
        _ => text,
    };
    // The path now ends in the unknown key itself; serde's words stay as the detail.
    if message.starts_with("unknown field `") {
        message = format!("unknown key ({message})");
    }
    let line = if index.has(&path) {
        index.line_of(&path)
    } else {
        inner
            .location()
            .map(|l| l.line())
            .or_else(|| index.line_of(&path))
    };
    ConfigErrors(vec![ConfigError {
        path,
        message,
        line,
    }])
}

fn fingerprint(text: &str) -> String {
    // FNV-1a: stable across runs and builds, unlike the std hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{:08x}", (h >> 32) as u32 ^ h as u32)
}

/// Resolves a path from the config against the config file's folder.
pub fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_substitution() {
        std::env::set_var("PORTICO_TEST_SECRET", "s3cret");
        let out = substitute_env("a: ${PORTICO_TEST_SECRET} # ${NOT_SET_ANYWHERE}\n");
        assert_eq!(out.text, "a: s3cret # ${NOT_SET_ANYWHERE}\n");
        assert_eq!(
            out.skeleton,
            format!("a: {} # ${{NOT_SET_ANYWHERE}}\n", "_".repeat(22))
        );
        assert!(out.unset.is_empty());
        let out = substitute_env("a: 1\nb: \"ü${PORTICO_SURELY_UNSET}\"\n");
        assert_eq!(out.unset[0].name, "PORTICO_SURELY_UNSET");
        assert_eq!((out.unset[0].line, out.unset[0].col), (2, 5));
    }

    #[test]
    fn an_unset_variable_names_the_key_holding_it() {
        let text = "admin: { listen: 127.0.0.1:9901, token: ${PORTICO_SURELY_UNSET} }\n\
                    routes:\n  - name: x\n    plugins:\n      - key_auth: { keys: { ci: \"k-${PORTICO_SURELY_UNSET_2}\" } }\n";
        let err = load_str(text, PathBuf::from(".")).err().unwrap();
        let lines: Vec<String> = err.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            lines,
            [
                "admin.token: environment variable PORTICO_SURELY_UNSET is not set (line 1)",
                "routes[0].plugins[0].key_auth.keys.ci: environment variable PORTICO_SURELY_UNSET_2 is not set (line 5)"
            ]
        );
    }

    #[test]
    fn unknown_key_has_path_and_line() {
        let err = load_str("server:\n  threads: 2\n  bogus: 1\n", PathBuf::from("."))
            .err()
            .unwrap();
        let e = &err.0[0];
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(e.path, "server.bogus", "{e}");
        assert!(
            e.message
                .starts_with("unknown key (unknown field `bogus`, expected one of `threads`"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_value_names_its_own_key() {
        for (text, want) in [
            ("bogus: 1\n", "bogus: unknown key (unknown field `bogus`, expected one of"),
            (
                "upstreams:\n  app:\n    backends: []\n    timeouts: { connect: 2s, read: 2 parsecs }\n",
                "upstreams.app.timeouts.read: invalid duration \"2 parsecs\"",
            ),
            (
                "upstreams:\n  app:\n    backends: []\n    timeouts:\n      connect: 2s\n      read: 7 parsecs\n",
                "upstreams.app.timeouts.read: invalid duration \"7 parsecs\"",
            ),
            (
                "upstreams: { app: { backends: [], balance: rr } }\n",
                "upstreams.app.balance: unknown variant `rr`",
            ),
            (
                "routes:\n  - { name: a, match: { pathx: 1 } }\n",
                "routes[0].match.pathx: unknown key",
            ),
        ] {
            let err = load_str(text, PathBuf::from(".")).err().unwrap();
            let line = err.0[0].to_string();
            assert!(line.starts_with(want), "{text:?}: {line}");
        }
    }
}
