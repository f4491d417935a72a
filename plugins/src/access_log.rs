//! `access_log`: one JSON object per request, on stdout or in a file.
//!
//! ```yaml
//! - access_log: { path: logs/access.log }   # null (the default): stdout
//! ```
//!
//! Each line has exactly the fields `ts` (when the request started, RFC 3339 UTC),
//! `request_id`, `client_ip`, `method`, `host`, `path`, `status`, `route`, `upstream`,
//! `backend`, `bytes_sent`, `duration_ms`, `upstream_ms`. `path` is logged without its query
//! string: query strings carry API keys and tokens (`?api_key=`), and a log is the last place
//! a secret should land.
//!
//! Writing: the request's worker formats the line and hands it to a writer thread over a
//! bounded channel, so a slow or full disk never stalls the async runtime that serves
//! requests. The writer batches whatever lines are waiting into one flush. If the channel
//! is full (the disk cannot keep up), lines are dropped and counted in a warning rather than
//! slowing every request down. On SIGUSR1 (a new [`gateway::log_reopen::generation`]) the
//! writer reopens the file before its next write, for log rotation.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use gateway::{log_reopen, BuildContext, Plugin, PluginConfig, RequestState, Session};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

/// Lines that may wait for the writer; about a second of a busy gateway's traffic.
const QUEUE_LINES: usize = 16 * 1024;
/// How long the writer lets lines gather after writing a batch (at most this much delay).
const BATCH_WAIT: std::time::Duration = std::time::Duration::from_millis(10);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// The file to append to, relative to the config file's folder; `None`: stdout.
    #[serde(default)]
    pub path: Option<String>,
}

pub struct AccessLog {
    lines: SyncSender<Vec<u8>>,
    dropped: AtomicU64,
}

/// One access-log line. Field order is the order written.
#[derive(Serialize)]
struct Record<'a> {
    ts: String,
    request_id: &'a str,
    client_ip: String,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    status: u16,
    route: Option<&'a str>,
    upstream: Option<&'a str>,
    backend: Option<&'a str>,
    bytes_sent: u64,
    duration_ms: f64,
    upstream_ms: Option<f64>,
}

impl<'a> Record<'a> {
    fn new(method: &'a str, path: &'a str, state: &'a RequestState) -> Self {
        Record {
            ts: DateTime::<Utc>::from(state.started_at)
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            request_id: &state.request_id,
            client_ip: state.client_ip.to_canonical().to_string(),
            method,
            host: &state.host,
            path,
            status: state.status,
            route: state.route.as_deref(),
            upstream: state.upstream.as_deref(),
            backend: state.backend.as_deref(),
            bytes_sent: state.bytes_sent,
            duration_ms: millis(state.elapsed()),
            upstream_ms: state.upstream_time.map(millis),
        }
    }

    fn to_line(&self) -> Vec<u8> {
        // Serializing a struct of strings and numbers cannot fail.
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// Milliseconds with microsecond precision: enough to tell a cache hit from a slow backend
/// without printing float noise.
fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[async_trait]
impl Plugin for AccessLog {
    async fn log(&self, session: &Session, state: &RequestState) {
        let req = session.req_header();
        let line = Record::new(req.method.as_str(), req.uri.path(), state).to_line();
        match self.lines.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Warn at 1, 2, 4, 8... so a long stall is visible without flooding stderr.
                if n.is_power_of_two() {
                    log::warn!(
                        "access_log: the log writer cannot keep up; {n} lines dropped so far"
                    );
                }
            }
        }
    }
}

impl PluginConfig for AccessLog {
    const NAME: &'static str = "access_log";
    type Config = AccessLogConfig;

    fn build(config: AccessLogConfig, cx: &BuildContext) -> Result<Self, String> {
        let sink = match config.path {
            None => Sink::Stdout,
            Some(p) => {
                let path = cx.resolve(&p);
                // Opened now so that an unwritable path fails the config, not the first request.
                let file = open_append(&path)
                    .map_err(|e| format!("path: cannot open {}: {e}", path.display()))?;
                Sink::File {
                    path,
                    out: BufWriter::new(file),
                    generation: log_reopen::generation(),
                }
            }
        };
        let (tx, rx) = sync_channel(QUEUE_LINES);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(rx, sink))
            .map_err(|e| format!("cannot start the access log writer: {e}"))?;
        Ok(AccessLog {
            lines: tx,
            dropped: AtomicU64::new(0),
        })
    }
}

enum Sink {
    Stdout,
    File {
        path: PathBuf,
        out: BufWriter<File>,
        generation: u64,
    },
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The writer thread: runs until the plugin (and so the sender) is dropped, e.g. after a
/// reload replaced it, then writes what is still queued and ends.
fn write_lines(rx: Receiver<Vec<u8>>, mut sink: Sink) {
    let mut failing = false;
    while let Ok(first) = rx.recv() {
        let result = sink.write_batch(first, &rx);
        match (result, failing) {
            (Err(e), false) => {
                log::error!("access_log: write failed: {e}");
                failing = true;
            }
            (Ok(()), true) => {
                log::info!("access_log: writing again");
                failing = false;
            }
            _ => {}
        }
        // Lines that arrive meanwhile wait a moment and go out together: under load this
        // thread then wakes (and writes) about a hundred times a second instead of once per
        // request, which cost a futex wake and a context switch on the serving core each time.
        std::thread::sleep(BATCH_WAIT);
    }
}

impl Sink {
    /// Writes `first` and every line already waiting, then flushes once.
    fn write_batch(&mut self, first: Vec<u8>, rx: &Receiver<Vec<u8>>) -> io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(&first)?;
                while let Ok(line) = rx.try_recv() {
                    out.write_all(&line)?;
                }
                out.flush()
            }
            Sink::File {
                path,
                out,
                generation,
            } => {
                let current = log_reopen::generation();
                if current != *generation {
                    // Flush into the old (rotated) file first, then switch. If the new file
                    // cannot be opened, keep writing to the old one rather than lose lines.
                    let _ = out.flush();
                    match open_append(path) {
                        Ok(file) => *out = BufWriter::new(file),
                        Err(e) => log::error!("access_log: cannot reopen {}: {e}", path.display()),
                    }
                    *generation = current;
                }
                out.write_all(&first)?;
                while let Ok(line) = rx.try_recv() {
                    out.write_all(&line)?;
                }
                out.flush()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv6Addr};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_record_has_exactly_the_documented_fields() {
        let ip: IpAddr = Ipv6Addr::from(0xffff_0a00_0001u128).into(); // ::ffff:10.0.0.1
        let mut state = RequestState::new(Arc::from("https"), ip);
        state.request_id = "abc".into();
        state.host = "api.example.com".into();
        state.route = Some(Arc::from("api"));
        state.status = 200;
        state.bytes_sent = 12;
        state.upstream_time = Some(Duration::from_micros(1500));
        let line = Record::new("GET", "/v1/users", &state).to_line();
        assert_eq!(line.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        let mut expected = vec![
            "ts",
            "request_id",
            "client_ip",
            "method",
            "host",
            "path",
            "status",
            "route",
            "upstream",
            "backend",
            "bytes_sent",
            "duration_ms",
            "upstream_ms",
        ];
        expected.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, expected);
        assert_eq!(v["client_ip"], "10.0.0.1");
        assert_eq!(v["route"], "api");
        assert_eq!(v["upstream"], serde_json::Value::Null);
        assert_eq!(v["upstream_ms"], 1.5);
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn writes_lines_to_a_file_and_reopens_after_rotation() {
        let dir = std::env::temp_dir().join(format!("portico-access-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cx = BuildContext::new(dir.clone(), None);
        let plugin = AccessLog::build(
            AccessLogConfig {
                path: Some("access.log".into()),
            },
            &cx,
        )
        .unwrap();
        plugin.lines.send(b"one\n".to_vec()).unwrap();
        wait_for(&dir.join("access.log"), "one\n");

        std::fs::rename(dir.join("access.log"), dir.join("access.log.1")).unwrap();
        log_reopen::request_reopen();
        plugin.lines.send(b"two\n".to_vec()).unwrap();
        wait_for(&dir.join("access.log"), "two\n");
        assert_eq!(
            std::fs::read_to_string(dir.join("access.log.1")).unwrap(),
            "one\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_path_fails_the_config() {
        let cx = BuildContext::new(PathBuf::from("/nonexistent-dir"), None);
        let err = AccessLog::build(
            AccessLogConfig {
                path: Some("a.log".into()),
            },
            &cx,
        )
        .err()
        .unwrap();
        assert!(
            err.starts_with("path: cannot open /nonexistent-dir/a.log"),
            "{err}"
        );
    }

    fn wait_for(path: &Path, content: &str) {
        for _ in 0..200 {
            if std::fs::read_to_string(path)
                .map(|c| c == content)
                .unwrap_or(false)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{} never held {content:?}", path.display());
    }
}
