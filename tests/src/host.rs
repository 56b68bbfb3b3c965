//! A fingerprint of the host's own files, to prove that hostile input
//! (tar entries climbing out, links to host files, device nodes) changed
//! nothing outside the container: every path under the host's system and
//! home trees with its type, mode, owner, size, link count and times, and
//! the content hash of everything under /etc.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Trees that hold the host's configuration, programs and data.
const ROOTS: &[&str] = &[
    "/etc", "/usr", "/opt", "/root", "/home", "/srv", "/boot", "/var/lib",
];

/// Paths that legitimately change while the suite runs: toolchains and
/// caches, package state, and the container engines' (and ARCH's) own
/// state. Anything a hostile image could reach outside these is covered.
const VOLATILE: &[&str] = &[
    "/root/.cargo",
    "/root/.rustup",
    "/root/.cache",
    "/root/.bash_history",
    "/var/lib/containerd",
    "/var/lib/docker",
    "/var/lib/apt",
    "/var/lib/dpkg",
    "/var/lib/systemd",
];

/// Directories whose volatile children come and go: their own size, link
/// count and times follow those children, so only their mode and owner are
/// compared (their other children are compared one by one).
const VOLATILE_PARENTS: &[&str] = &["/root", "/var/lib"];

#[derive(Clone, Debug, PartialEq, Eq)]
struct Fingerprint {
    meta: [i64; 8],
    sha256: Option<String>,
}

#[derive(Debug)]
pub struct HostSnapshot {
    entries: BTreeMap<PathBuf, Fingerprint>,
}

impl HostSnapshot {
    pub fn take() -> Self {
        let mut entries = BTreeMap::new();
        for root in ROOTS {
            walk(Path::new(root), &mut entries);
        }
        Self { entries }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What differs in `later`: one line per added, removed or changed path.
    pub fn changes(&self, later: &HostSnapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (path, fp) in &self.entries {
            match later.entries.get(path) {
                None => out.push(format!("removed {}", path.display())),
                Some(now) if now != fp => out.push(format!("changed {}", path.display())),
                Some(_) => {}
            }
        }
        for path in later.entries.keys() {
            if !self.entries.contains_key(path) {
                out.push(format!("added {}", path.display()));
            }
        }
        out
    }
}

fn volatile(path: &Path) -> bool {
    VOLATILE.iter().any(|v| path.starts_with(v))
        || path
            .strip_prefix("/var/lib")
            .ok()
            .and_then(|p| p.components().next())
            .is_some_and(|c| c.as_os_str().to_string_lossy().starts_with("arch-"))
}

fn walk(path: &Path, out: &mut BTreeMap<PathBuf, Fingerprint>) {
    if volatile(path) {
        return;
    }
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    let sha256 = (meta.is_file() && path.starts_with("/etc"))
        .then(|| std::fs::read(path).ok())
        .flatten()
        .map(|data| hex::encode(Sha256::digest(data)));
    let mut fields = [
        meta.mode() as i64,
        meta.uid() as i64,
        meta.gid() as i64,
        meta.size() as i64,
        meta.nlink() as i64,
        meta.ino() as i64,
        meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
        meta.ctime_nsec() + meta.ctime() * 1_000_000_000,
    ];
    if VOLATILE_PARENTS.iter().any(|p| path == Path::new(p)) {
        fields[3..].fill(0);
    }
    out.insert(
        path.to_path_buf(),
        Fingerprint {
            meta: fields,
            sha256,
        },
    );
    if meta.is_dir() {
        if let Ok(dir) = std::fs::read_dir(path) {
            for entry in dir.flatten() {
                walk(&entry.path(), out);
            }
        }
    }
}
