//! Maps a key path such as `routes[2].upstream` to the line it was written on, so that an
//! error found after parsing (an unknown upstream, a bad regex) can still point at the line.
//!
//! serde_yaml keeps no positions once a value is deserialized, so the file is read a second
//! time as a stream of YAML events, which do carry positions.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Key path to 1-based line number.
#[derive(Debug, Default, Clone)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
    /// Where each scalar (key or value) starts, in document order, and the key path it
    /// belongs to: a key and its value share the path.
    scalars: Vec<(Marker, String)>,
    /// The text is not well-formed YAML: the index is incomplete.
    broken: bool,
}

impl LineIndex {
    pub fn build(text: &str) -> LineIndex {
        LineIndex::walk(text, false)
    }

    /// [`LineIndex::build`], also keeping where each scalar starts, for [`LineIndex::path_at`]
    /// (only wanted for an error, so not kept for every load).
    pub fn build_with_positions(text: &str) -> LineIndex {
        LineIndex::walk(text, true)
    }

    fn walk(text: &str, positions: bool) -> LineIndex {
        let mut walker = Walker {
            index: LineIndex::default(),
            stack: Vec::new(),
            positions,
        };
        // A syntax error is reported by serde_yaml with its own position; the index is then
        // simply incomplete.
        walker.index.broken = Parser::new_from_str(text).load(&mut walker, false).is_err();
        walker.index
    }

    /// Whether the text did not parse as YAML.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Whether `path` itself (not only an ancestor) was written in the file.
    pub fn has(&self, path: &str) -> bool {
        self.lines.contains_key(path)
    }

    /// The key path of the scalar written at `line` (1-based) and `col` (0-based, in
    /// characters): the last one that starts there or before, such as the value holding a
    /// `${VAR}` in its middle.
    pub fn path_at(&self, line: usize, col: usize) -> Option<&str> {
        self.scalars
            .iter()
            .take_while(|(m, _)| (m.line(), m.col()) <= (line, col))
            .last()
            .map(|(_, p)| p.as_str())
    }

    /// The most specific key path under `prefix` written on `line`: serde reports a bad
    /// value with the path of the struct that holds it, the line points at the key itself.
    pub fn deepest_at(&self, prefix: &str, line: usize) -> Option<&str> {
        self.lines
            .iter()
            .filter(|(p, l)| **l == line && (prefix.is_empty() || p.starts_with(prefix)))
            .map(|(p, _)| p.as_str())
            .max_by_key(|p| p.len())
    }

    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return Some(*line);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

struct Walker {
    index: LineIndex,
    stack: Vec<Frame>,
    positions: bool,
}

impl Walker {
    /// The path of the value that starts now, advancing the parent's position.
    fn value_path(&mut self) -> Option<String> {
        match self.stack.last_mut()? {
            Frame::Map { path, key } => {
                let k = key.take()?;
                Some(if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                })
            }
            Frame::Seq { path, next } => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        // yaml-rust2 counts lines from 1.
        let line = mark.line();
        match ev {
            Event::Scalar(text, ..) => {
                if let Some(Frame::Map {
                    key: key @ None,
                    path,
                }) = self.stack.last_mut()
                {
                    let full = if path.is_empty() {
                        text.clone()
                    } else {
                        format!("{path}.{text}")
                    };
                    if self.positions {
                        self.index.scalars.push((mark, full.clone()));
                    }
                    self.index.lines.entry(full).or_insert(line);
                    *key = Some(text);
                } else if let Some(p) = self.value_path() {
                    if self.positions {
                        self.index.scalars.push((mark, p.clone()));
                    }
                    self.index.lines.entry(p).or_insert(line);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                let path = if self.stack.is_empty() {
                    String::new()
                } else {
                    self.value_path().unwrap_or_default()
                };
                if !path.is_empty() {
                    self.index.lines.entry(path.clone()).or_insert(line);
                }
                self.stack.push(if is_map {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                let _ = self.value_path();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_paths() {
        let text = "server:\n  threads: 2\nroutes:\n  - name: a\n    upstream: x\n  - name: b\n    upstream: y\n    match: { hosts: [a.com] }\n";
        let idx = LineIndex::build(text);
        assert_eq!(idx.line_of("server.threads"), Some(2));
        assert_eq!(idx.line_of("routes[0].upstream"), Some(5));
        assert_eq!(idx.line_of("routes[1].upstream"), Some(7));
        assert_eq!(idx.line_of("routes[1].match.hosts[0]"), Some(8));
        assert_eq!(idx.line_of("routes[1].nothing"), Some(6));
    }

    #[test]
    fn finds_the_scalar_at_a_position() {
        let text = "admin:\n  token: xyz_______\n  listen: \"ü 1.2.3.4:${X}\"\nroutes: [ { name: _____ } ]\nlog: |\n  line one\n  ${Y} two\n";
        let idx = LineIndex::build_with_positions(text);
        assert!(!idx.is_broken());
        // 0-based columns, counted in characters.
        assert_eq!(idx.path_at(2, 12), Some("admin.token"));
        assert_eq!(idx.path_at(3, 21), Some("admin.listen"));
        assert_eq!(idx.path_at(4, 19), Some("routes[0].name"));
        assert_eq!(idx.path_at(7, 2), Some("log"));
        assert_eq!(idx.path_at(1, 0), Some("admin"));
        assert!(LineIndex::build("a: [b\n").is_broken());
    }
}
