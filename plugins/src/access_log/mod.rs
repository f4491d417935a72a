//! `access_log`: one JSON object per request, on stdout or in a file.
//!
//! ```yaml
//! - access_log: { path: logs/access.log }   # null (the default): stdout
//! ```
//!
//! Each line has exactly the fields `ts` (when the request started, RFC 3339 UTC),
//! `request_id`, `client_ip`, `method`, `host`, `path`, `status`, `route`, `upstream`,
//! `backend`, `bytes_sent`, `duration_ms`, `upstream_ms`, and with `server.tracing` also
//! `trace_id` and `span_id` (docs/operations.md). `path` is logged without its query
//! string: query strings carry API keys and tokens (`?api_key=`), and a log is the last place
//! a secret should land.
//!
//! Writing: the request's worker formats the line and hands it to a writer thread over a
//! bounded channel, so a slow or full disk never stalls the async runtime that serves
//! requests. The writer batches whatever lines are waiting into one flush. If the channel
//! is full (the disk cannot keep up), lines are dropped and counted in a warning rather than
//! slowing every request down. On SIGUSR1 (a new [`gateway::log_reopen::generation`]) the
//! writer reopens the file before its next write, for log rotation.

mod line;
mod writer;

use async_trait::async_trait;
use gateway::plugin::Hooks;
use gateway::{log_reopen, BuildContext, Plugin, PluginConfig, RequestState, Session};
use line::Record;
use serde::Deserialize;
use std::io::BufWriter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Mutex;
use writer::{open_append, write_lines, Sink};

/// Lines that may wait for the writer; about a second of a busy gateway's traffic.
const QUEUE_LINES: usize = 16 * 1024;

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
    /// The writer's end and where it writes, until [`Plugin::start`] hands them to the
    /// writer thread: a config that is only checked (`-t`) or refused starts no thread.
    writer: Mutex<Option<(Receiver<Vec<u8>>, Sink)>>,
}

#[async_trait]
impl Plugin for AccessLog {
    fn hooks(&self) -> Hooks {
        Hooks::LOG
    }

    fn start(&self) {
        let Some((rx, sink)) = self.writer.lock().unwrap().take() else {
            return;
        };
        if let Err(e) = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(rx, sink))
        {
            log::error!("access_log: cannot start the log writer: {e}");
        }
    }

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
        Ok(AccessLog {
            lines: tx,
            dropped: AtomicU64::new(0),
            writer: Mutex::new(Some((rx, sink))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

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
        // Built, not started (a config only checked): nothing is written.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(std::fs::read_to_string(dir.join("access.log")).unwrap(), "");
        plugin.start();
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
