//! `ImageStore`: the checkpoint root and the operations on images in it.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{io_err, Error, Result};
use crate::fsutil::{
    boot_tag, mkdir_all, mkdir_new, owner_tag, rand_suffix, replace_file, write_new,
};
use crate::ident::{validate_key, validate_namespace};
use crate::image::{read_manifest, Image};
use crate::manifest::{Status, Timestamp};
use crate::sign::Trust;
use crate::staging::Staging;
use crate::SIDECAR_SEP as SEP;

/// Name of the reason file dropped into a failed image.
pub const FAILURE_REASON_FILE: &str = "failure-reason.txt";

/// A namespace/key pair found by [`ImageStore::list`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageRef {
    pub namespace: String,
    pub key: String,
}

/// The checkpoint root (host configuration, never container-chosen).
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    trust: Trust,
}

impl ImageStore {
    /// A store rooted at `root`; nothing is created until first write.
    /// It writes unsigned images and reads unsigned ones (tools, tests):
    /// the shim uses [`ImageStore::with_trust`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ImageStore {
            root: root.into(),
            trust: Trust::inspect_only(),
        }
    }

    /// The same root, signing and verifying as `trust` says.
    pub fn with_trust(mut self, trust: Trust) -> Self {
        self.trust = trust;
        self
    }

    pub(crate) fn checked_ns(&self, ns: &str) -> Result<PathBuf> {
        self.checked_ns_dir(ns)
    }

    /// What this store demands of the images it reads.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// The checkpoint root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `{root}/{ns}/{key}` after validating both, so it never escapes root.
    pub fn image_dir(&self, ns: &str, key: &str) -> Result<PathBuf> {
        Ok(self.ns_dir(ns)?.join(checked_key(key)?))
    }

    fn ns_dir(&self, ns: &str) -> Result<PathBuf> {
        validate_namespace(ns)?;
        Ok(self.root.join(ns))
    }

    /// The scope directory, checked to be a real directory beneath the
    /// root: a `{root}/{ns}` symlink (to /root, say) is refused rather than
    /// followed. NotFound passes: there is nothing to follow yet.
    fn checked_ns_dir(&self, ns: &str) -> Result<PathBuf> {
        let dir = self.ns_dir(ns)?;
        match crate::fsutil::open_dir_beneath(&self.root, ns) {
            Ok(_) => Ok(dir),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(dir)
            }
            Err(e) => Err(e),
        }
    }

    fn sidecar(&self, ns: &str, key: &str, what: &str) -> Result<PathBuf> {
        Ok(self
            .ns_dir(ns)?
            .join(format!("{}{SEP}{what}", checked_key(key)?)))
    }

    /// Start writing a new image in a 0700 staging dir next to its final place.
    pub fn begin(&self, ns: &str, key: &str) -> Result<Staging> {
        let final_dir = self.image_dir(ns, key)?;
        mkdir_all(&self.root)?;
        let ns_dir = self.ns_dir(ns)?;
        match fs::DirBuilder::new().mode(0o700).create(&ns_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(io_err("create dir", &ns_dir)(e))
            }
            _ => {}
        }
        self.checked_ns_dir(ns)?;
        let dir = self.sidecar(ns, key, &format!("tmp-{}-{}", owner_tag(), rand_suffix()))?;
        mkdir_new(&dir)?;
        Ok(Staging {
            dir,
            final_dir,
            ns_dir,
            namespace: ns.to_string(),
            key: key.to_string(),
            signing_key: self.trust.key.clone(),
            done: false,
        })
    }

    /// Read and fully validate the committed image for `ns`/`key`.
    pub fn open(&self, ns: &str, key: &str) -> Result<Image> {
        self.checked_ns_dir(ns)?;
        let dir = self.image_dir(ns, key)?;
        match fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    namespace: ns.into(),
                    key: key.into(),
                })
            }
            Err(e) => return Err(io_err("stat", &dir)(e)),
            Ok(m) if !m.file_type().is_dir() => {
                return Err(Error::UnexpectedFileType {
                    path: dir.display().to_string(),
                })
            }
            Ok(_) => {}
        }
        Image::load(dir, ns, key, &self.trust)
    }

    /// The manifest of the committed image for `ns`/`key`, checked for
    /// shape only (the files are not hashed): enough to decide whether the
    /// image is this container's before touching it.
    pub fn manifest(&self, ns: &str, key: &str) -> Result<crate::Manifest> {
        self.checked_ns_dir(ns)?;
        let dir = self.image_dir(ns, key)?;
        match fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound {
                namespace: ns.into(),
                key: key.into(),
            }),
            Err(e) => Err(io_err("stat", &dir)(e)),
            Ok(m) if !m.file_type().is_dir() => Err(Error::UnexpectedFileType {
                path: dir.display().to_string(),
            }),
            Ok(_) => read_manifest(&dir),
        }
    }

    /// All committed image directories (not validated), sorted. Sidecars
    /// are skipped because their names are not valid keys.
    pub fn list(&self) -> Result<Vec<ImageRef>> {
        let mut out = Vec::new();
        for (ns, ns_path) in valid_subdirs(&self.root, validate_namespace)? {
            for (key, _) in valid_subdirs(&ns_path, validate_key)? {
                out.push(ImageRef {
                    namespace: ns.clone(),
                    key,
                });
            }
        }
        out.sort();
        Ok(out)
    }

    /// Retire a consumed image: rename it to `{key}@restored` (replacing a
    /// previous retired one, so only the latest is kept for inspection) and
    /// mark its manifest `restored`. The rename is what makes it unusable for
    /// another restore; the status update is informational.
    pub fn retire(&self, ns: &str, key: &str) -> Result<PathBuf> {
        let dest = self.sidecar(ns, key, "restored")?;
        if fs::symlink_metadata(&dest).is_ok() {
            fs::remove_dir_all(&dest).map_err(io_err("remove", &dest))?;
        }
        self.move_aside(ns, key, &dest)?;
        set_status(&dest, Status::Restored, None)?;
        Ok(dest)
    }

    /// Keep a bad image for inspection at `{key}@failed-{secs}-{rand}` with a
    /// `failure-reason.txt`; the manifest status is updated when it parses
    /// (a corrupt manifest is often why we are here).
    pub fn mark_failed(&self, ns: &str, key: &str, reason: &str) -> Result<PathBuf> {
        let what = format!("failed-{}-{}", Timestamp::now().secs, &rand_suffix()[..8]);
        let dest = self.sidecar(ns, key, &what)?;
        self.move_aside(ns, key, &dest)?;
        write_new(
            &dest.join(FAILURE_REASON_FILE),
            format!("{reason}\n").as_bytes(),
        )?;
        let _ = set_status(&dest, Status::Failed, Some(reason));
        Ok(dest)
    }

    fn move_aside(&self, ns: &str, key: &str, dest: &Path) -> Result<()> {
        let src = self.image_dir(ns, key)?;
        fs::rename(&src, dest).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                namespace: ns.into(),
                key: key.into(),
            },
            _ => io_err("rename", &src)(e),
        })?;
        crate::fsutil::fsync(&self.ns_dir(ns)?)
    }

    /// What `cleanup_stale_temps(min_age)` would do now, without doing it:
    /// staging dirs whose writer is gone (this boot, process dead) or older
    /// than `min_age` (younger ones may belong to a checkpoint still running,
    /// possibly on another host), and `@old-` dirs left by a crash
    /// mid-replace older than `min_age`.
    pub fn stale_temps(&self, min_age: Duration) -> Result<Vec<StaleTemp>> {
        let mut out = Vec::new();
        for (namespace, ns_path) in valid_subdirs(&self.root, validate_namespace)? {
            for ent in fs::read_dir(&ns_path).map_err(io_err("read dir", &ns_path))? {
                let ent = ent.map_err(io_err("read dir", &ns_path))?;
                let name = ent.file_name().to_string_lossy().into_owned();
                let Some((key, what)) = name.split_once(SEP) else {
                    continue;
                };
                let path = ent.path();
                let is_tmp = what.starts_with("tmp-");
                let taken = what.strip_prefix(crate::taken::TAKEN);
                let writer_gone = (is_tmp && writer_is_dead(&what["tmp-".len()..]))
                    || taken.is_some_and(writer_is_dead);
                let why = if writer_gone {
                    StaleWhy::WriterGone
                } else if (is_tmp || what.starts_with("old-")) && old_enough(&path, min_age) {
                    // A taken image is never judged by age: its mtime is
                    // its commit's, and a restorer on another host may be
                    // using it right now.
                    StaleWhy::Old
                } else {
                    continue;
                };
                // A replaced image whose replacement never landed, or one
                // taken by a restorer that died, is the image: it goes back
                // into its slot.
                let slot = ns_path.join(key);
                let restore =
                    !is_tmp && validate_key(key).is_ok() && fs::symlink_metadata(&slot).is_err();
                out.push(StaleTemp {
                    namespace: namespace.clone(),
                    name,
                    path,
                    why,
                    restore_to: restore.then_some(slot),
                });
            }
        }
        Ok(out)
    }

    /// Carries out `stale_temps(min_age)`: stale staging dirs removed,
    /// `@old-` dirs restored to an empty slot or removed. Returns how many.
    pub fn cleanup_stale_temps(&self, min_age: Duration) -> Result<usize> {
        let stale = self.stale_temps(min_age)?;
        for t in &stale {
            match &t.restore_to {
                Some(slot) => fs::rename(&t.path, slot).map_err(io_err("rename", &t.path))?,
                None => fs::remove_dir_all(&t.path).map_err(io_err("remove", &t.path))?,
            }
        }
        Ok(stale.len())
    }
}

/// Why a temporary is stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaleWhy {
    /// Its writer (a shim on this boot) is gone.
    WriterGone,
    /// Older than the age limit.
    Old,
}

/// A temporary that cleanup would remove, or restore into its slot.
#[derive(Clone, Debug)]
pub struct StaleTemp {
    pub namespace: String,
    /// The entry's name in the namespace directory (`{key}@tmp-…`, `{key}@old-…`).
    pub name: String,
    pub path: PathBuf,
    pub why: StaleWhy,
    /// Set for an `@old-` image that goes back into its empty slot.
    pub restore_to: Option<PathBuf>,
}

fn checked_key(key: &str) -> Result<&str> {
    validate_key(key).map(|_| key)
}

/// `{boot}-{pid}-{rand}` (after `tmp-` or `taken-`): written on this boot
/// by a process that is gone.
fn writer_is_dead(what: &str) -> bool {
    let mut parts = what.split('-');
    let (Some(boot), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    boot == boot_tag() && !process_alive(pid)
}

/// A zombie is dead too: its parent may be slow to reap it.
fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

fn old_enough(path: &Path, min_age: Duration) -> bool {
    let mtime = fs::symlink_metadata(path).and_then(|m| m.modified());
    match mtime.map(|t| SystemTime::now().duration_since(t)) {
        Ok(Ok(age)) => age >= min_age,
        Ok(Err(_)) => min_age.is_zero(), // mtime in the future: only if forced
        Err(_) => false,
    }
}

pub(crate) fn set_status(dir: &Path, status: Status, failure: Option<&str>) -> Result<()> {
    let mut m = read_manifest(dir)?;
    m.status = status;
    m.failure = failure.map(str::to_string);
    replace_file(&dir.join(crate::MANIFEST), &m.to_json())
}

/// Real (non-symlink) subdirectories of `dir` whose names pass `valid`.
fn valid_subdirs(dir: &Path, valid: fn(&str) -> Result<()>) -> Result<Vec<(String, PathBuf)>> {
    let rd = match fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        r => r.map_err(io_err("read dir", dir))?,
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(io_err("read dir", dir))?;
        let Ok(name) = ent.file_name().into_string() else {
            continue;
        };
        let is_dir = ent.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir && valid(&name).is_ok() {
            out.push((name, ent.path()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod owner_tests {
    use super::*;

    #[test]
    fn a_dead_writers_staging_is_stale_at_once_a_live_ones_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::new(tmp.path());
        let live = store.begin("ns", "job").unwrap();
        // pid_max is at most 2^22 on Linux: this pid never exists.
        let dead = tmp
            .path()
            .join("ns")
            .join(format!("job@tmp-{}-99999999-abc", boot_tag()));
        std::fs::create_dir(&dead).unwrap();
        let other_boot = tmp.path().join("ns").join("job@tmp-0000deadbeef-1-abc");
        std::fs::create_dir(&other_boot).unwrap();
        assert_eq!(
            store
                .cleanup_stale_temps(Duration::from_secs(3600))
                .unwrap(),
            1
        );
        assert!(!dead.exists(), "a dead writer's staging dir is removed");
        assert!(live.path().exists(), "a live writer's staging dir stays");
        assert!(
            other_boot.exists(),
            "another host's is left to the age rule"
        );
    }
}
