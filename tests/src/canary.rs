//! Canaries for hostile input: a directory outside every container, with
//! files whose content, link count, mode and times are known, where the
//! hostile tar entries of a test point. An escape that reaches them shows
//! as an added or changed entry; nothing else on the host is assumed still,
//! so other work on the machine cannot fail the test.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The files every canary directory holds.
pub const FILES: [&str; 2] = ["target", "secret"];

pub struct Canaries {
    dir: PathBuf,
    planted: BTreeMap<PathBuf, String>,
}

impl Canaries {
    /// Plants a fresh canary directory named after `name`.
    pub fn plant(name: &str) -> Self {
        let dir = std::env::temp_dir().join(crate::unique_id(name));
        std::fs::create_dir_all(&dir).unwrap();
        for f in FILES {
            std::fs::write(dir.join(f), format!("canary {f}\n")).unwrap();
        }
        let mut c = Canaries {
            dir,
            planted: BTreeMap::new(),
        };
        c.planted = c.state();
        c
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Every entry of the directory with what an escape would change.
    fn state(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        for entry in std::fs::read_dir(&self.dir).unwrap().flatten() {
            let path = entry.path();
            let Ok(m) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let sha = std::fs::read(&path)
                .map(|d| hex::encode(Sha256::digest(d)))
                .unwrap_or_default();
            let print = format!(
                "mode {:o} uid {} size {} nlink {} mtime {}.{} sha {sha}",
                m.mode(),
                m.uid(),
                m.size(),
                m.nlink(),
                m.mtime(),
                m.mtime_nsec()
            );
            out.insert(path, print);
        }
        out
    }

    /// One line per added, removed or changed canary entry.
    pub fn changes(&self) -> Vec<String> {
        let now = self.state();
        let mut out = Vec::new();
        for (path, was) in &self.planted {
            match now.get(path) {
                None => out.push(format!("removed {}", path.display())),
                Some(is) if is != was => {
                    out.push(format!("changed {}: {was} -> {is}", path.display()))
                }
                Some(_) => {}
            }
        }
        for path in now.keys().filter(|p| !self.planted.contains_key(*p)) {
            out.push(format!("added {}", path.display()));
        }
        out
    }
}

impl Drop for Canaries {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
