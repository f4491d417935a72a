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
    let lines = LineIndex::build(text);
    let expanded = substitute_env(text)?;
    let config: Config = serde_yaml::from_str(&expanded).map_err(|e| yaml_error(&e, &lines))?;
    Ok(Source {
        config,
        lines,
        base_dir,
        version: fingerprint(&expanded),
    })
}

/// Replaces `${NAME}` with the environment variable NAME, outside comments. An unset
/// variable is an error: a missing secret must stop the config, not become an empty string.
fn substitute_env(text: &str) -> Result<String, ConfigErrors> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let (code, comment) = split_comment(line);
        let mut rest = code;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find('}') {
                Some(end) => {
                    let name = &after[..end];
                    match std::env::var(name) {
                        Ok(v) => out.push_str(&v),
                        Err(_) => errors.push(ConfigError {
                            path: String::new(),
                            message: format!("environment variable {name} is not set"),
                            line: Some(n + 1),
                        }),
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errors))
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

fn yaml_error(e: &serde_yaml::Error, index: &LineIndex) -> ConfigErrors {
    let text = e.to_string();
    // serde_yaml says "path: message at line L column C"; keep the path and message, and
    // report the line in Portico's own form.
    let text = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    let (path, message) = match text.split_once(": ") {
        Some((p, m)) if !p.contains(' ') && p != "." => (p.to_string(), m.to_string()),
        _ => (String::new(), text),
    };
    let line = e.location().map(|l| l.line());
    // An unknown key is reported at the key itself; a bad value with its parent's path.
    let path = match line.and_then(|l| index.deepest_at(&path, l)) {
        Some(deeper) if !message.starts_with("unknown field") => deeper.to_string(),
        _ => path,
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
        let out = substitute_env("a: ${PORTICO_TEST_SECRET} # ${NOT_SET_ANYWHERE}\n").unwrap();
        assert_eq!(out, "a: s3cret # ${NOT_SET_ANYWHERE}\n");
        let err = substitute_env("a: 1\nb: ${PORTICO_SURELY_UNSET}\n").unwrap_err();
        assert_eq!(err.0[0].line, Some(2));
    }

    #[test]
    fn unknown_key_has_path_and_line() {
        let err = load_str("server:\n  threads: 2\n  bogus: 1\n", PathBuf::from("."))
            .err()
            .unwrap();
        let e = &err.0[0];
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
        assert!(e.path.starts_with("server"), "{e}");
    }
}
