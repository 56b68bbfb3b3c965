//! Operator tags on images, kept in `{root}/.tags.json`:
//!
//! ```json
//! {"version": 1, "tags": {"default/job-42": ["keep", "v2"]}}
//! ```
//!
//! Updates take an exclusive `flock` on `{root}/.tags.lock` (a separate file,
//! because the data file is replaced by rename), read, change, write a temp
//! file, fsync and rename it over `.tags.json`: readers see the old or the new
//! file, never a partial one, and concurrent archctls do not lose updates.
//! Tags follow the identity `NS/KEY`, so they survive a re-checkpoint of the
//! same key; `rm` and `gc` drop the tags of what they remove.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use arch_records::Flock;
use serde::{Deserialize, Serialize};

use crate::error::{io_err, Error, Result};

pub const TAGS_FILE: &str = ".tags.json";
pub const TAGS_LOCK: &str = ".tags.lock";
const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tags {
    pub version: u32,
    /// `NS/KEY` → tags.
    pub tags: BTreeMap<String, BTreeSet<String>>,
}

impl Default for Tags {
    fn default() -> Self {
        Tags {
            version: VERSION,
            tags: BTreeMap::new(),
        }
    }
}

impl Tags {
    /// Add `tag` to `id`; false if it was already there.
    pub fn add(&mut self, id: &str, tag: &str) -> bool {
        self.tags
            .entry(id.to_string())
            .or_default()
            .insert(tag.to_string())
    }

    /// Remove `tag` from `id`; false if it was not there.
    pub fn remove(&mut self, id: &str, tag: &str) -> bool {
        let Some(set) = self.tags.get_mut(id) else {
            return false;
        };
        let removed = set.remove(tag);
        if set.is_empty() {
            self.tags.remove(id);
        }
        removed
    }

    /// Forget every tag of `id` (the image is gone).
    pub fn forget(&mut self, id: &str) -> bool {
        self.tags.remove(id).is_some()
    }

    pub fn of(&self, id: &str) -> Vec<String> {
        self.tags
            .get(id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn has(&self, id: &str, tag: &str) -> bool {
        self.tags.get(id).is_some_and(|s| s.contains(tag))
    }
}

/// 1–64 of `[A-Za-z0-9_.-]`.
pub fn validate_tag(tag: &str) -> std::result::Result<String, String> {
    let ok = !tag.is_empty()
        && tag.len() <= 64
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(tag.to_string())
    } else {
        Err(format!("invalid tag {tag:?}: use 1-64 of [A-Za-z0-9_.-]"))
    }
}

/// The current tags (empty when the file does not exist yet).
pub fn load(root: &Path) -> Result<Tags> {
    let path = root.join(TAGS_FILE);
    let bytes = match fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Tags::default()),
        r => r.map_err(io_err("read", &path))?,
    };
    let tags: Tags = serde_json::from_slice(&bytes).map_err(|e| Error::Tags {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if tags.version != VERSION {
        return Err(Error::Tags {
            path,
            reason: format!(
                "version {} is not supported (expected {VERSION})",
                tags.version
            ),
        });
    }
    Ok(tags)
}

/// Read-modify-write the tags under the lock. The file is rewritten only
/// when `f` reports a change.
pub fn update<R>(root: &Path, f: impl FnOnce(&mut Tags) -> (bool, R)) -> Result<R> {
    let lock_path = root.join(TAGS_LOCK);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io_err("open", &lock_path))?;
    let _guard = Flock::exclusive(&lock).map_err(io_err("lock", &lock_path))?;
    let mut tags = load(root)?;
    let (changed, out) = f(&mut tags);
    if changed {
        save(root, &tags)?;
    }
    Ok(out)
}

fn save(root: &Path, tags: &Tags) -> Result<()> {
    let path = root.join(TAGS_FILE);
    let tmp = root.join(format!("{TAGS_FILE}.tmp-{}", std::process::id()));
    let mut data = serde_json::to_vec_pretty(tags).expect("tags serialize");
    data.push(b'\n');
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write", &tmp)(e));
    }
    fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    File::open(root)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Tags::default());
        assert!(update(dir.path(), |t| {
            let c = t.add("ns/a", "keep");
            (c, c)
        })
        .unwrap());
        assert!(!update(dir.path(), |t| {
            let c = t.add("ns/a", "keep");
            (c, c)
        })
        .unwrap());
        update(dir.path(), |t| (t.add("ns/a", "v2"), ())).unwrap();
        let tags = load(dir.path()).unwrap();
        assert_eq!(tags.of("ns/a"), ["keep", "v2"]);
        assert!(tags.has("ns/a", "v2") && !tags.has("ns/b", "v2"));
        update(dir.path(), |t| {
            (t.remove("ns/a", "keep") && t.remove("ns/a", "v2"), ())
        })
        .unwrap();
        let tags = load(dir.path()).unwrap();
        assert!(tags.tags.is_empty(), "empty sets are dropped");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn concurrent_updates_are_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let root = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    for j in 0..10 {
                        update(&root, |t| (t.add("ns/a", &format!("t{i}-{j}")), ())).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(load(dir.path()).unwrap().of("ns/a").len(), 80);
    }

    #[test]
    fn corrupt_file_and_bad_tags_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(TAGS_FILE), b"{nope").unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains(".tags.json"), "{e}");
        fs::write(dir.path().join(TAGS_FILE), br#"{"version":9,"tags":{}}"#).unwrap();
        assert!(load(dir.path())
            .unwrap_err()
            .to_string()
            .contains("version 9"));
        for bad in ["", "a b", "a/b", "x@y", &"t".repeat(65)] {
            assert!(validate_tag(bad).is_err(), "{bad:?}");
        }
        assert!(validate_tag("keep-v1.2_x").is_ok());
    }
}
