//! One JSON line per checkpoint or restore, appended by the shims to
//! `{checkpoint_root}/.records/{host}.jsonl` and read by `archctl`.
//!
//! Many shims append at once: each record is one `write(2)` on an
//! `O_APPEND` descriptor under an exclusive `flock`, so lines never
//! interleave (the lock also covers network filesystems, where O_APPEND
//! alone is not atomic). One file per host keeps hosts sharing a network
//! root from contending. A reader skips a torn last line instead of failing.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const RECORDS_DIR: &str = ".records";

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, RecordsError>;

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RecordsError {
    let context = context.into();
    move |source| RecordsError::Io { context, source }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    Checkpoint,
    Restore,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Committed (checkpoint) or restored (restore).
    Ok,
    /// Nothing committed; the container went on (or stopped as asked).
    Failed,
    /// A restore that could not happen: the container started fresh.
    Fallback,
    /// A periodic checkpoint not taken (the previous one still ran, no
    /// periodic slot was free, the container was paused).
    Skipped,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Unix seconds.
    pub time: u64,
    pub op: Operation,
    pub outcome: Outcome,
    /// "stop", "rpc" (checkpoint) or "create" (restore).
    pub trigger: String,
    pub namespace: String,
    pub key: String,
    pub container_id: String,
    pub total_ms: u64,
    #[serde(default)]
    pub durations_ms: BTreeMap<String, u64>,
    /// Image size in bytes (0 when nothing was committed).
    #[serde(default)]
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Unix time in seconds, for [`Record::time`].
pub use arch_host::now_secs;

/// The records directory of a checkpoint root.
pub fn records_dir(root: &Path) -> PathBuf {
    root.join(RECORDS_DIR)
}

/// Appends one record to this host's file.
pub fn append(root: &Path, host: &str, record: &Record) -> Result<()> {
    let dir = records_dir(root);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io(format!("creating {}", dir.display())))?;
    // The root is not trusted: a records directory or file that is a
    // symlink (to /etc, /etc/shadow) is refused, never written through.
    let not_ours = |what: &Path| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} is a symlink or not a regular file/directory",
                what.display()
            ),
        )
    };
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.file_type().is_dir() => {}
        Ok(_) => return Err(io(format!("checking {}", dir.display()))(not_ours(&dir))),
        Err(e) => return Err(io(format!("checking {}", dir.display()))(e)),
    }
    let safe_host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{safe_host}.jsonl"));
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))?;
    if !file
        .metadata()
        .map_err(io(format!("checking {}", path.display())))?
        .file_type()
        .is_file()
    {
        return Err(io(format!("checking {}", path.display()))(not_ours(&path)));
    }
    let mut line = serde_json::to_vec(record).expect("records serialise");
    line.push(b'\n');
    let _lock = Flock::exclusive(&file).map_err(io(format!("locking {}", path.display())))?;
    (&file)
        .write_all(&line)
        .map_err(io(format!("appending to {}", path.display())))
}

/// An exclusive `flock` on a file, released when dropped. Also used by
/// archctl for its tags file.
pub struct Flock<'a>(&'a File);

impl<'a> Flock<'a> {
    pub fn exclusive(file: &'a File) -> std::io::Result<Self> {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Flock(file))
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        // SAFETY: unlocking the descriptor locked in `exclusive`.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Every readable record under `root`, oldest first; lines that do not
/// parse (a torn write after a crash) are counted, not fatal.
pub fn read_all(root: &Path) -> Result<(Vec<Record>, usize)> {
    let dir = records_dir(root);
    let mut records = Vec::new();
    let mut bad = 0;
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((records, 0)),
        Err(e) => return Err(io(format!("reading {}", dir.display()))(e)),
    };
    for entry in entries {
        let path = entry
            .map_err(io(format!("reading {}", dir.display())))?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        let file = File::open(&path).map_err(io(format!("opening {}", path.display())))?;
        for line in BufReader::new(file).lines() {
            let line = line.map_err(io(format!("reading {}", path.display())))?;
            match serde_json::from_str::<Record>(&line) {
                Ok(r) => records.push(r),
                Err(_) if line.trim().is_empty() => {}
                Err(_) => bad += 1,
            }
        }
    }
    records.sort_by_key(|r| r.time);
    Ok((records, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> Record {
        Record {
            time: i,
            op: Operation::Checkpoint,
            outcome: Outcome::Ok,
            trigger: "stop".into(),
            namespace: "default".into(),
            key: format!("k{i}"),
            container_id: "c".into(),
            total_ms: 10,
            durations_ms: BTreeMap::from([("dump".to_string(), 7)]),
            bytes: 4096,
            error: None,
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), "host-a", &rec(2)).unwrap();
        append(dir.path(), "host-b", &rec(1)).unwrap();
        let (records, bad) = read_all(dir.path()).unwrap();
        assert_eq!(bad, 0);
        assert_eq!(records, vec![rec(1), rec(2)]);
    }

    #[test]
    fn concurrent_writers_never_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let root = root.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let mut r = rec(t * 1000 + i);
                        r.error = Some("x".repeat(3000)); // larger than PIPE_BUF
                        append(&root, "host", &r).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (records, bad) = read_all(&root).unwrap();
        assert_eq!((records.len(), bad), (1600, 0));
    }

    #[test]
    fn torn_lines_are_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), "h", &rec(1)).unwrap();
        let path = records_dir(dir.path()).join("h.jsonl");
        let mut f = OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(b"{\"time\": 3, \"op\": \"chec").unwrap();
        let (records, bad) = read_all(dir.path()).unwrap();
        assert_eq!((records.len(), bad), (1, 1));
    }

    #[test]
    fn host_names_cannot_escape_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), "../../evil", &rec(1)).unwrap();
        let names: Vec<_> = std::fs::read_dir(records_dir(dir.path()))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(!dir.path().parent().unwrap().join("evil.jsonl").exists());
    }

    #[test]
    fn a_planted_symlink_is_never_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("shadow");
        std::fs::write(&victim, b"root:x:0\n").unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(records_dir(&root)).unwrap();
        std::os::unix::fs::symlink(&victim, records_dir(&root).join("h.jsonl")).unwrap();
        assert!(append(&root, "h", &rec(1)).is_err());
        let root2 = tmp.path().join("root2");
        std::fs::create_dir_all(&root2).unwrap();
        std::os::unix::fs::symlink(tmp.path(), records_dir(&root2)).unwrap();
        assert!(append(&root2, "shadow", &rec(1)).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"root:x:0\n");
    }
}
