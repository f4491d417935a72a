//! One error type for everything `fleet` does: each message names the source (`etcd://…/KEY`),
//! the endpoint, the variable or the file it is about, so that one stderr line is enough to act
//! on (the CLI exits 1 with it).

use std::fmt;
use std::path::PathBuf;

/// What went wrong reaching, reading or caching the config stored in etcd.
#[derive(Debug)]
pub enum FleetError {
    /// A `-c` or `--push` argument that is not a valid `etcd://` URL.
    Url { url: String, reason: String },
    /// A `PORTICO_ETCD_*` setting that cannot be used (half a pair, an unreadable file, TLS
    /// files for a plain `etcd://` URL).
    Access(String),
    /// No endpoint answered in time: etcd is down, partitioned, or not at these addresses. This
    /// is the one error a start may answer with the cache.
    Unreachable {
        source: String,
        reasons: Vec<String>,
    },
    /// etcd answered and said no: authentication failed, permission denied.
    Refused { source: String, reason: String },
    /// etcd holds nothing at the key.
    NoDocument { source: String },
    /// The value at the key is not UTF-8 text.
    NotText { source: String, revision: i64 },
    /// The cache file could not be read or written.
    Cache { path: PathBuf, reason: String },
    /// A start found etcd unreachable and no cache to start from.
    NoCache {
        unreachable: Box<FleetError>,
        path: PathBuf,
        reason: String,
    },
}

impl FleetError {
    /// True when etcd could not be reached at all (as opposed to answering with a refusal).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, FleetError::Unreachable { .. })
    }
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetError::Url { url, reason } => write!(
                f,
                "bad etcd URL {url:?}: {reason} (expected etcd://HOST:PORT[,HOST:PORT]/KEY)"
            ),
            FleetError::Access(reason) => write!(f, "etcd access settings: {reason}"),
            FleetError::Unreachable { source, reasons } => {
                write!(f, "{source}: etcd unreachable: {}", reasons.join("; "))
            }
            FleetError::Refused { source, reason } => {
                write!(f, "{source}: etcd refused: {reason}")
            }
            FleetError::NoDocument { source } => write!(
                f,
                "{source}: no config stored at this key (store one with `portico -c FILE -t --push {source}`)"
            ),
            FleetError::NotText { source, revision } => {
                write!(f, "{source}: revision {revision} is not UTF-8 text")
            }
            FleetError::Cache { path, reason } => {
                write!(f, "config cache {}: {reason}", path.display())
            }
            FleetError::NoCache {
                unreachable,
                path,
                reason,
            } => write!(
                f,
                "{unreachable}; and no config cache to start from: {} {reason}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for FleetError {}

/// The whole chain of an error's causes on one line: tonic's transport errors say only
/// "transport error" at the top, the reason (connection refused, a TLS failure) is below.
pub(crate) fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        next = cause.source();
    }
    text
}
