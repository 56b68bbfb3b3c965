//! `ImageStore`: the checkpoint root and the operations on images in it.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::{io_err, Error, Result};
use crate::fsutil::{boot_tag, mkdir_all, owner_tag, rand_suffix, replace_file, write_new};
use crate::host_key::HostKey;
use crate::ident::{validate_key, validate_namespace};
use crate::image::{read_manifest, Image};
use crate::lease::{changed_at, expired, FsClock, ProbeClock, LEASE};
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
    /// Encryption at rest: the key new images are encrypted with and
    /// encrypted images need.
    encryption: HostKey,
    /// network-fs: taken images whose lease is older than this go back.
    lease: Option<Duration>,
    clock: Clock,
    /// Images kept per key, the current one included (host configuration
    /// `generations`; 1 keeps only the newest).
    pub(crate) generations: usize,
}

/// The clock that judges ages on the root: the file server's.
#[derive(Clone)]
struct Clock(Arc<dyn FsClock>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FsClock")
    }
}

impl ImageStore {
    /// A store rooted at `root`; nothing is created until first write.
    /// It writes unsigned images and reads unsigned ones (tools, tests):
    /// the shim uses [`ImageStore::with_trust`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ImageStore {
            root: root.into(),
            trust: Trust::inspect_only(),
            encryption: HostKey::None,
            lease: None,
            clock: Clock(Arc::new(ProbeClock)),
            generations: 1,
        }
    }

    /// Keeps `n` images per key (the current one and `n - 1` older
    /// generations, see generations.rs); clamped to 1..=MAX_GENERATIONS.
    pub fn with_generations(mut self, n: usize) -> Self {
        self.generations = n.clamp(1, crate::generations::MAX_GENERATIONS);
        self
    }

    /// Taken images (of restorers on other hosts) whose lease was not
    /// touched for `lease` are given back by the stale-temp cleanup.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Judges ages with `clock` (tests: a fake one).
    pub fn with_clock(mut self, clock: Arc<dyn FsClock>) -> Self {
        self.clock = Clock(clock);
        self
    }

    /// The same root, with the host's encryption key.
    pub fn with_encryption(mut self, key: HostKey) -> Self {
        self.encryption = key;
        self
    }

    /// The host's encryption key, as configured.
    pub fn encryption(&self) -> &HostKey {
        &self.encryption
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
        // Everything below goes through descriptors held from here: a
        // scope or staging directory swapped for a symlink meanwhile
        // cannot redirect a write (the checkpoint fails instead).
        let ns_held = crate::fsutil::HeldDir::beneath(&self.root, ns)?;
        let name = format!(
            "{}{SEP}tmp-{}-{}",
            checked_key(key)?,
            owner_tag(),
            rand_suffix()
        );
        let held = ns_held.mkdir_new(&name)?;
        let heartbeat = held
            .try_clone()
            .map(|f| {
                crate::lease::Heartbeat::start(
                    ns_held.path().join(&name),
                    f,
                    crate::staging::STAGING_HEARTBEAT,
                )
            })
            .ok();
        Ok(Staging {
            dir: held.path().to_path_buf(),
            name,
            final_dir,
            ns_dir: ns_held.path().to_path_buf(),
            namespace: ns.to_string(),
            key: key.to_string(),
            signing_key: self.trust.key.clone(),
            keep_older: self.generations - 1,
            done: false,
            heartbeat,
            held,
            ns_held,
            streamed: Default::default(),
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

    /// What `cleanup_stale_temps(min_age)` would do now, without doing it.
    /// Ages are judged by the root's own clock (a probe file's mtime), never
    /// this host's. The rules:
    ///
    /// - `@tmp-` (a checkpoint being written): stale when its writer is a
    ///   dead process of this boot, or, written elsewhere, when its
    ///   directory (touched by the writer's heartbeat) is older than
    ///   `min_age`. A live writer of this boot is never judged by age.
    /// - `@old-{tag}` (an image being replaced by `@tmp-{tag}`): when that
    ///   staging directory is still there and stale, the replacement never
    ///   landed and the old image goes back into its empty slot, unless a
    ///   newer image of the key was taken, restored or failed since it was
    ///   moved aside; without it (the replacement landed), it is removed
    ///   once stale, never brought back.
    /// - `@taken-{tag}`: back into its slot when its restorer is a dead
    ///   process of this boot, or, with a lease configured, when its lease
    ///   `@lease-{tag}` was not touched for longer than the lease. Never by
    ///   the image's age.
    pub fn stale_temps(&self, min_age: Duration) -> Result<Vec<StaleTemp>> {
        let mut out = Vec::new();
        for (namespace, ns_path) in valid_subdirs(&self.root, validate_namespace)? {
            self.stale_in(&namespace, &ns_path, None, min_age, &mut out)?;
        }
        Ok(out)
    }

    /// `stale_temps` for one key (a restore looking for its image).
    pub fn stale_temps_of(&self, ns: &str, key: &str, min_age: Duration) -> Result<Vec<StaleTemp>> {
        let ns_path = self.checked_ns_dir(ns)?;
        checked_key(key)?;
        let mut out = Vec::new();
        if ns_path.is_dir() {
            self.stale_in(ns, &ns_path, Some(key), min_age, &mut out)?;
        }
        Ok(out)
    }

    fn stale_in(
        &self,
        namespace: &str,
        ns_path: &Path,
        only_key: Option<&str>,
        min_age: Duration,
        out: &mut Vec<StaleTemp>,
    ) -> Result<()> {
        let mut names = Vec::new();
        for ent in fs::read_dir(ns_path).map_err(io_err("read dir", ns_path))? {
            let ent = ent.map_err(io_err("read dir", ns_path))?;
            if let Ok(name) = ent.file_name().into_string() {
                names.push(name);
            }
        }
        let present: HashSet<&str> = names.iter().map(String::as_str).collect();
        // The root's "now", probed once and only when an age is needed.
        let mut now = None;
        let mut fs_now = |this: &Self| -> Option<SystemTime> {
            if now.is_none() {
                now = this.clock.0.now(ns_path).ok();
            }
            now
        };
        let mut older =
            |this: &Self, path: &Path, age: Duration| match (changed_at(path), fs_now(this)) {
                (Some(t), Some(now)) => expired(t, now, age) || (age.is_zero() && t >= now),
                _ => false,
            };
        for name in &names {
            let Some((key, what)) = name.split_once(SEP) else {
                continue;
            };
            if only_key.is_some_and(|k| k != key) {
                continue;
            }
            let path = ns_path.join(name);
            let slot = ns_path.join(key);
            let slot_free = validate_key(key).is_ok() && fs::symlink_metadata(&slot).is_err();
            let sidecar = |kind: &str, tag: &str| format!("{key}{SEP}{kind}{tag}");
            let mut push = |why, restore_to: Option<PathBuf>, lease: Option<PathBuf>| {
                out.push(StaleTemp {
                    namespace: namespace.to_string(),
                    name: name.clone(),
                    path: path.clone(),
                    why,
                    restore_to,
                    lease,
                })
            };
            if let Some(tag) = what.strip_prefix("tmp-") {
                if let Some(why) = writer_stale(tag, || older(self, &path, min_age)) {
                    push(why, None, None);
                }
            } else if let Some(tag) = what.strip_prefix("old-") {
                let tmp = sidecar("tmp-", tag);
                let why = if present.contains(tmp.as_str()) {
                    let tmp_path = ns_path.join(&tmp);
                    writer_stale(tag, || older(self, &tmp_path, min_age))
                } else {
                    writer_stale(tag, || older(self, &path, min_age))
                };
                let Some(why) = why else { continue };
                // Only a replacement that never landed makes this the
                // newest image, and only if nothing newer of the key was
                // taken, restored or failed since it was moved aside.
                let newer = changed_at(&path).is_none_or(|aside| {
                    names.iter().any(|n| {
                        n.split_once(SEP).is_some_and(|(k, w)| {
                            k == key
                                && (w == "restored"
                                    || w.starts_with(crate::taken::TAKEN)
                                    || w.starts_with(crate::taken::RESTORING)
                                    || w.starts_with("failed-"))
                                && changed_at(&ns_path.join(n)).is_none_or(|t| t > aside)
                        })
                    })
                });
                let back = present.contains(tmp.as_str()) && slot_free && !newer;
                push(why, back.then(|| slot.clone()), None);
            } else if let Some(tag) = what.strip_prefix(crate::taken::TAKEN) {
                let lease = ns_path.join(sidecar(LEASE, tag));
                let why = if writer_is_dead(tag) {
                    Some(StaleWhy::WriterGone)
                } else if writer_alive_here(tag) {
                    None
                } else if let Some(d) = self.lease {
                    // No lease file: judged by when the image was taken.
                    let judged = if lease.exists() { &lease } else { &path };
                    older(self, judged, d).then_some(StaleWhy::LeaseExpired)
                } else {
                    None
                };
                if let Some(why) = why {
                    let lease = lease.exists().then_some(lease);
                    push(why, slot_free.then(|| slot.clone()), lease);
                }
            } else if let Some(tag) = what.strip_prefix(crate::taken::RESTORING) {
                // Past its fence: never given back by age, so never
                // restored twice. Its restorer died on this boot (CRIU and
                // the restored tree die with the shim): back under its key,
                // as a taken one. Of another host or boot, whose restore
                // may have run: spent, removed a day later (CRIU read a
                // verified local copy, never this directory).
                let why = if writer_is_dead(tag) {
                    Some(StaleWhy::WriterGone)
                } else if writer_alive_here(tag) {
                    None
                } else {
                    older(self, &path, RESTORING_SPENT_AFTER).then_some(StaleWhy::Old)
                };
                if let Some(why) = why {
                    let back = why == StaleWhy::WriterGone && slot_free;
                    push(why, back.then(|| slot.clone()), None);
                }
            } else if let Some(tag) = what.strip_prefix(LEASE) {
                // A lease whose taken image is gone (its restorer died
                // between the two, or before removing it).
                if present.contains(sidecar(crate::taken::TAKEN, tag).as_str()) {
                    continue;
                }
                let why = match self.lease {
                    _ if writer_is_dead(tag) => Some(StaleWhy::WriterGone),
                    _ if writer_alive_here(tag) => None,
                    Some(d) => older(self, &path, d).then_some(StaleWhy::LeaseExpired),
                    None => older(self, &path, min_age).then_some(StaleWhy::Old),
                };
                if let Some(why) = why {
                    push(why, None, None);
                }
            } else if what.starts_with(crate::generations::GEN) {
                // An older generation of a key whose restorer died before
                // retiring it: older than the state restored since.
                if crate::generations::superseded(ns_path, key, what) {
                    push(StaleWhy::Superseded, None, None);
                }
            } else if key.is_empty() && what.starts_with("clock-") {
                // A clock probe whose prober died before removing it.
                if older(self, &path, min_age) {
                    push(StaleWhy::Old, None, None);
                }
            }
        }
        Ok(())
    }

    /// Carries out `stale_temps(min_age)`: stale staging dirs removed,
    /// `@old-` and `@taken-` images restored to an empty slot or removed.
    /// Returns how many. One that another cleaner handled first is skipped.
    pub fn cleanup_stale_temps(&self, min_age: Duration) -> Result<usize> {
        self.carry_out(self.stale_temps(min_age)?)
    }

    /// `cleanup_stale_temps` for one key.
    pub fn cleanup_stale_temps_of(&self, ns: &str, key: &str, min_age: Duration) -> Result<usize> {
        self.carry_out(self.stale_temps_of(ns, key, min_age)?)
    }

    fn carry_out(&self, stale: Vec<StaleTemp>) -> Result<usize> {
        let gone = |r: std::io::Result<()>, op, path: &Path| match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(op, path)(e)),
            _ => Ok(()),
        };
        for t in &stale {
            match &t.restore_to {
                Some(slot) => {
                    log::info!("{}: {:?}; back under its key", t.path.display(), t.why);
                    gone(fs::rename(&t.path, slot), "rename", &t.path)?
                }
                None if t.path.is_dir() => gone(fs::remove_dir_all(&t.path), "remove", &t.path)?,
                None => gone(fs::remove_file(&t.path), "remove", &t.path)?,
            }
            if let Some(lease) = &t.lease {
                gone(fs::remove_file(lease), "remove", lease)?;
            }
        }
        Ok(stale.len())
    }
}

/// When a `@restoring-` image of another host or boot is removed: far
/// longer than any restore, so its restorer has decided it long ago.
const RESTORING_SPENT_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Why a temporary is stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaleWhy {
    /// Its writer (a shim on this boot) is gone.
    WriterGone,
    /// Older than the age limit.
    Old,
    /// A taken image (or a lease) whose lease was not touched for longer
    /// than the lease duration: its restorer on another host is gone.
    LeaseExpired,
    /// An older generation that became one before the key's `@restored`
    /// image was restored: older state than what was restored.
    Superseded,
}

/// A temporary that cleanup would remove, or restore into its slot.
#[derive(Clone, Debug)]
pub struct StaleTemp {
    pub namespace: String,
    /// The entry's name in the namespace directory (`{key}@tmp-…`, `{key}@old-…`).
    pub name: String,
    pub path: PathBuf,
    pub why: StaleWhy,
    /// Set for an `@old-` or `@taken-` image that goes back into its empty slot.
    pub restore_to: Option<PathBuf>,
    /// The lease file of a `@taken-` image, removed with it.
    pub lease: Option<PathBuf>,
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

/// `{boot}-{pid}-…` of a process of this boot that is still running.
fn writer_alive_here(what: &str) -> bool {
    let mut parts = what.split('-');
    match (
        parts.next(),
        parts.next().and_then(|p| p.parse::<u32>().ok()),
    ) {
        (Some(boot), Some(pid)) => boot == boot_tag() && process_alive(pid),
        _ => false,
    }
}

/// A writer's temporary is stale when the writer is a dead process of this
/// boot, or, not a live one of this boot, when `old()` says so.
fn writer_stale(tag: &str, old: impl FnOnce() -> bool) -> Option<StaleWhy> {
    if writer_is_dead(tag) {
        Some(StaleWhy::WriterGone)
    } else if !writer_alive_here(tag) && old() {
        Some(StaleWhy::Old)
    } else {
        None
    }
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
