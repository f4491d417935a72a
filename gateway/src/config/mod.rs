//! The configuration file: its model, how it is read, and the errors it can have.
//! Turning a config into something that serves is `snapshot`'s job.

pub mod acme;
mod duration;
mod error;
mod load;
mod locate;
mod model;
mod values;
mod warnings;

pub use acme::{AcmeConfig, Challenge};
pub use duration::{parse_duration, Dur};
pub use error::{ConfigError, ConfigErrors};
pub use load::{load_file, load_str, resolve, Source};
pub use locate::LineIndex;
pub use model::*;
pub use values::{Alpn, HashKey, Invalid, Parse, Parsed, PathMatch, PathMatchKeys, TlsVersion};
pub use warnings::warnings;

/// Collects every problem found while checking a config, with positions.
pub struct Problems<'a> {
    lines: &'a LineIndex,
    errors: Vec<ConfigError>,
}

impl<'a> Problems<'a> {
    pub fn new(lines: &'a LineIndex) -> Self {
        Problems {
            lines,
            errors: Vec::new(),
        }
    }

    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let line = self.lines.line_of(&path);
        self.errors.push(ConfigError {
            path,
            message: message.into(),
            line,
        });
    }

    /// Adds the complaint of a value that did not read, if it has one, at `path` (or inside
    /// it).
    pub fn parsed<T>(&mut self, path: &str, value: &Parsed<T>) {
        if let Some(invalid) = value.invalid() {
            self.add(format!("{path}{}", invalid.at), invalid.message.clone());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn into_result(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}
