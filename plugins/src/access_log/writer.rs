//! The writer thread: lines from the request workers over a bounded channel, written in
//! batches, the file reopened after a rotation.

use gateway::log_reopen;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// How long the writer lets lines gather after writing a batch (at most this much delay).
const BATCH_WAIT: Duration = Duration::from_millis(10);

pub(super) enum Sink {
    Stdout,
    File {
        path: PathBuf,
        out: BufWriter<File>,
        generation: u64,
    },
}

pub(super) fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The writer thread: runs until the plugin (and so the sender) is dropped, e.g. after a
/// reload replaced it, then writes what is still queued and ends.
pub(super) fn write_lines(rx: Receiver<Vec<u8>>, mut sink: Sink) {
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
