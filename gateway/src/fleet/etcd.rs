//! One document in etcd, as the gateway uses it: read the newest revision, push a new one,
//! follow it (follow.rs). Members are tried in the order written; the first that answers wins.

use super::access::Access;
use super::dial::Dialer;
use super::error::causes;
use super::source::EtcdSource;
use super::FleetError;
use etcd_client::Client;
use std::time::{Duration, Instant};
use tonic::Code;

/// A revision of the config stored in etcd, exactly as stored (`${VAR}`s not filled in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// Where it was read from.
    pub source: EtcdSource,
    /// The revision at which this text was written (etcd's `mod_revision` of the key): what
    /// `--push` printed and what `/status` shows as `revision`.
    pub revision: i64,
    pub text: String,
}

/// The key in etcd, with what it takes to reach it. Cheap to clone.
#[derive(Clone)]
pub struct Etcd {
    source: EtcdSource,
    dialer: Dialer,
}

/// What a read found: the cluster's revision when it answered, and the key's value, if any,
/// with the revision it was written at.
pub(crate) struct Reading {
    pub header: i64,
    pub found: Option<(i64, Vec<u8>)>,
}

impl Etcd {
    /// Checks the access settings against the source (TLS files need `etcds://`) and loads the
    /// TLS files, so that a bad one is reported before anything is dialled.
    pub fn new(source: EtcdSource, access: &Access) -> Result<Etcd, FleetError> {
        let dialer = Dialer::new(&source, access)?;
        Ok(Etcd { source, dialer })
    }

    /// [`Etcd::new`] with the access settings of the environment (`PORTICO_ETCD_*`).
    pub fn from_env(source: EtcdSource) -> Result<Etcd, FleetError> {
        Etcd::new(source, &Access::from_env()?)
    }

    pub fn source(&self) -> &EtcdSource {
        &self.source
    }

    /// The newest revision of the document, within `within` (all members together). Blocks;
    /// safe to call from inside an async runtime too.
    pub fn read(&self, within: Duration) -> Result<Document, FleetError> {
        super::block_on(|| async {
            let reading = self.read_async(0, within).await?.0;
            self.document(reading)
        })
    }

    /// Stores `text` at the key as a new revision and returns that revision. The caller
    /// validates first: this writes whatever it is given.
    pub fn push(&self, text: &str, within: Duration) -> Result<i64, FleetError> {
        let key = self.source.key();
        super::block_on(|| async {
            let (put, _, _) = self
                .on_a_member(0, within, async |client: &mut Client| {
                    client.put(key, text, None).await
                })
                .await?;
            Ok(put.header().map_or(0, |h| h.revision()))
        })
    }

    /// Reads the key on the first member that answers, starting at `first`. Returns the
    /// reading, a client connected to that member and the member's index.
    pub(crate) async fn read_async(
        &self,
        first: usize,
        within: Duration,
    ) -> Result<(Reading, Client, usize), FleetError> {
        let key = self.source.key();
        let (got, client, at) = self
            .on_a_member(first, within, async |client: &mut Client| {
                client.get(key, None).await
            })
            .await?;
        let header = got.header().map_or(0, |h| h.revision());
        let found = got
            .kvs()
            .first()
            .map(|kv| (kv.mod_revision(), kv.value().to_vec()));
        Ok((Reading { header, found }, client, at))
    }

    /// The reading as a document: an absent key and a value that is not text are errors.
    pub(crate) fn document(&self, reading: Reading) -> Result<Document, FleetError> {
        let source = self.source.clone();
        let Some((revision, value)) = reading.found else {
            return Err(FleetError::NoDocument {
                source: source.to_string(),
            });
        };
        match String::from_utf8(value) {
            Ok(text) => Ok(Document {
                source,
                revision,
                text,
            }),
            Err(_) => Err(FleetError::NotText {
                source: source.to_string(),
                revision,
            }),
        }
    }

    /// Runs `op` on the members in turn, from `first`, until one does it. A member that
    /// refuses (authentication, permission) ends the search: the others would say the same.
    pub(crate) async fn on_a_member<T>(
        &self,
        first: usize,
        within: Duration,
        mut op: impl AsyncFnMut(&mut Client) -> Result<T, etcd_client::Error>,
    ) -> Result<(T, Client, usize), FleetError> {
        let deadline = Instant::now() + within;
        let members = self.source.endpoints();
        let mut reasons = Vec::new();
        for i in 0..members.len() {
            let at = (first + i) % members.len();
            let endpoint = &members[at];
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                reasons.push(format!("{endpoint}: not tried, no time left"));
                continue;
            }
            // A member that swallows packets must not take all the time from the others.
            let share = (left / (members.len() - i) as u32)
                .max(Duration::from_secs(1))
                .min(left);
            let attempt = async {
                let mut client = self.dialer.connect(endpoint, share).await?;
                let value = op(&mut client).await?;
                Ok::<_, etcd_client::Error>((value, client))
            };
            match tokio::time::timeout(share, attempt).await {
                Ok(Ok((value, client))) => return Ok((value, client, at)),
                Ok(Err(e)) if refusal(&e) => {
                    return Err(FleetError::Refused {
                        source: self.source.to_string(),
                        reason: format!("{endpoint}: {}", describe(&e)),
                    })
                }
                Ok(Err(e)) => reasons.push(format!("{endpoint}: {}", describe(&e))),
                Err(_) => reasons.push(format!("{endpoint}: no answer within {share:.1?}")),
            }
        }
        Err(FleetError::Unreachable {
            source: self.source.to_string(),
            reasons,
        })
    }
}

/// etcd answered, and no: wrong password, no permission on the key, auth not enabled while a
/// user is given. Trying again or elsewhere would not help.
pub(crate) fn refusal(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if matches!(
        s.code(),
        Code::Unauthenticated | Code::PermissionDenied | Code::InvalidArgument | Code::FailedPrecondition
    ))
}

/// An etcd client error in a few words: the server's message, or the transport's causes.
pub(crate) fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            let message = match s.message() {
                "" => format!("{:?}", s.code()),
                m => m.to_string(),
            };
            match std::error::Error::source(s).map(causes) {
                Some(why) if why.starts_with(&message) => why,
                Some(why) => format!("{message}: {why}"),
                None => message,
            }
        }
        // etcd-client's error does not chain its causes: start from the transport's own.
        etcd_client::Error::TransportError(e) => causes(e),
        etcd_client::Error::IoError(e) => causes(e),
        other => other.to_string(),
    }
}
