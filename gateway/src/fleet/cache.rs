//! The config cache (`server.config_cache`): the last valid config read from etcd, so that an
//! instance started while etcd is unreachable can serve (docs/fleet.md). The file is the
//! document as stored, after three comment lines naming where and which revision it came
//! from; so it is itself a config that `portico -c FILE -t` reads.

use super::etcd::Document;
use super::source::EtcdSource;
use super::FleetError;
use std::io::Write;
use std::path::Path;

const TITLE: &str =
    "# Portico config cache: the last valid config read from etcd (see docs/fleet.md).";
const SOURCE: &str = "# source: ";
const REVISION: &str = "# revision: ";

/// Writes `document` to `path`, replacing any earlier cache in one step: a temporary file in
/// the same folder, flushed to disk, then renamed over the old one. A crash leaves the old
/// cache or the new, never half of one. Readable by its owner only, like the config it holds.
pub fn write_cache(path: &Path, document: &Document) -> Result<(), FleetError> {
    let fail = |what: &str, e: std::io::Error| FleetError::Cache {
        path: path.to_path_buf(),
        reason: format!("{what}: {e}"),
    };
    let name = path.file_name().ok_or_else(|| FleetError::Cache {
        path: path.to_path_buf(),
        reason: "not a file name".into(),
    })?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let write = || -> std::io::Result<()> {
        let mut file = open_private(&temp)?;
        write!(
            file,
            "{TITLE}\n{SOURCE}{}\n{REVISION}{}\n{}",
            document.source, document.revision, document.text
        )?;
        file.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&temp);
        return Err(fail("cannot write", e));
    }
    if let Err(e) = std::fs::rename(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(fail("cannot replace", e));
    }
    // The rename itself reaches the disk with the folder's entry.
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = std::fs::File::open(folder) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Reads the cache at `path`: `None` when there is no file, an error when there is one that is
/// not a cache written by [`write_cache`].
pub fn read_cache(path: &Path) -> Result<Option<Document>, FleetError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(FleetError::Cache {
                path: path.to_path_buf(),
                reason: format!("cannot read: {e}"),
            })
        }
    };
    let not_a_cache = |why: &str| FleetError::Cache {
        path: path.to_path_buf(),
        reason: format!(
            "not a config cache ({why}); remove it or point server.config_cache elsewhere"
        ),
    };
    let mut lines = text.splitn(4, '\n');
    if lines.next() != Some(TITLE) {
        return Err(not_a_cache("its first line is not the cache's title"));
    }
    let source = lines
        .next()
        .and_then(|l| l.strip_prefix(SOURCE))
        .ok_or_else(|| not_a_cache("no source line"))?;
    let source =
        EtcdSource::parse(source).map_err(|_| not_a_cache("its source is not an etcd URL"))?;
    let revision = lines
        .next()
        .and_then(|l| l.strip_prefix(REVISION))
        .and_then(|r| r.parse::<i64>().ok())
        .ok_or_else(|| not_a_cache("no revision line"))?;
    Ok(Some(Document {
        source,
        revision,
        text: lines.next().unwrap_or("").to_string(),
    }))
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("portico-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_cache_reads_back_as_written() {
        let dir = temp_dir("roundtrip");
        let path = dir.join("cache.yaml");
        assert_eq!(read_cache(&path).unwrap(), None);
        let document = Document {
            source: EtcdSource::parse("etcd://127.0.0.1:2379,[::1]:2379/portico/config").unwrap(),
            revision: 42,
            // Kept byte for byte: `${VAR}`s, no final newline, a first line like a header.
            text: "# revision: 7\nserver:\n  pid_file: ${PID}".to_string(),
        };
        write_cache(&path, &document).unwrap();
        assert_eq!(read_cache(&path).unwrap(), Some(document.clone()));
        let replaced = Document {
            revision: 43,
            text: String::new(),
            ..document
        };
        write_cache(&path, &replaced).unwrap();
        assert_eq!(read_cache(&path).unwrap(), Some(replaced));
        // Nothing left beside it.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn other_files_are_not_taken_for_a_cache() {
        let dir = temp_dir("foreign");
        let path = dir.join("cache.yaml");
        // (content, part of the error)
        let cases = [
            ("server:\n  threads: 2\n", "first line"),
            (
                &format!("{TITLE}\nserver: {{}}\n") as &str,
                "no source line",
            ),
            (
                &format!("{TITLE}\n{SOURCE}/etc/x\n{REVISION}1\n"),
                "not an etcd URL",
            ),
            (
                &format!("{TITLE}\n{SOURCE}etcd://h:1/k\n{REVISION}x\n"),
                "no revision",
            ),
        ];
        for (content, want) in cases {
            std::fs::write(&path, content).unwrap();
            let err = read_cache(&path).expect_err(content).to_string();
            assert!(err.contains(want) && err.contains("cache.yaml"), "{err}");
        }
        let err = write_cache(
            &dir.join("missing/cache.yaml"),
            &Document {
                source: EtcdSource::parse("etcd://h:1/k").unwrap(),
                revision: 1,
                text: String::new(),
            },
        )
        .expect_err("no such folder")
        .to_string();
        assert!(
            err.contains("missing/cache.yaml") && err.contains("cannot write"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
