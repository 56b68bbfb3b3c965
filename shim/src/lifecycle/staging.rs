//! Restore staging at Create: an ARCH container whose key has a committed
//! image gets that image claimed, validated and its filesystem changes
//! applied, so Start only has CRIU left to run. An image that cannot be
//! used is moved aside with the reason, the rootfs is put back, and the
//! container starts fresh.

use std::path::{Path, PathBuf};

use arch_checkpoint::{
    apply_rootfs, check_compatible, compare_profiles, CheckpointError, HostFacts, Mode,
    ProfileMismatch, RestoreCopy,
};
use arch_faults::{points, FaultError};
use arch_image::{Image, ImageStore, Taken, VerifyBehind};
use arch_records::Outcome;
use arch_runtime::{RuntimeError, Stdio};

use super::copy_place::{self, Place};
use super::records::{record, restore_record};
use super::{Arch, ArchState};
use crate::mounts::Rootfs;

/// The host-local, verified copy of a taken image that CRIU reads;
/// removed when dropped (after Start, or when the restore is abandoned).
pub type LocalCopy = super::host_local::HostLocalDir;

/// The host-local copy of a taken image, what CRIU reads at Start.
pub struct Copied {
    /// The validated image: a copy of the taken one, verified as it was
    /// copied, but for its large memory images, whose digests `verified`
    /// takes meanwhile.
    pub image: Image,
    pub local: LocalCopy,
    /// Checked before the restored tree runs (CRIU's post-restore).
    pub verified: VerifyBehind,
}

/// A restore staged by Create and carried out by Start.
pub struct StagedRestore {
    pub copied: Copied,
    /// The image, taken for this container alone; dropped unused (the
    /// container deleted before Start), it goes back under its key.
    pub taken: Taken,
    /// The container-side ends of the new stdio pipes (none for a
    /// terminal: CRIU makes a new one at Start).
    pub stdio: Stdio,
}

/// What Create knows about a container it may restore.
pub struct RestoreTarget<'a> {
    pub id: &'a str,
    pub state: &'a ArchState,
    pub bundle: &'a Path,
    pub rootfs: &'a Rootfs,
    pub terminal: bool,
}

/// Why an image cannot be restored into this container.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error(transparent)]
    Fault(#[from] FaultError),
    #[error("the rootfs {0} is neither mounted from the Create request nor an overlay: the filesystem changes have nowhere to go")]
    NoLayer(PathBuf),
    #[error("invalid image: {0}")]
    Image(#[from] arch_image::Error),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Incompatible(CheckpointError),
    #[error("rootfs diff: {0}")]
    RootfsDiff(CheckpointError),
    #[error(transparent)]
    Profile(#[from] ProfileMismatch),
    #[error("making a local restore copy: {0}")]
    LocalCopy(std::io::Error),
}

impl StagingError {
    /// Whether a copy failed for where it was written (I/O, the debug
    /// shim's fault point), not for what the image holds.
    fn may_succeed_elsewhere(&self) -> bool {
        match self {
            StagingError::LocalCopy(_) | StagingError::Fault(_) => true,
            StagingError::Image(e) => e.is_io(),
            _ => false,
        }
    }
}

impl Arch {
    /// Finds, takes, validates and stages the image of `target`. None
    /// means a fresh start (no image, one of another profile, one another
    /// container took first, or one that cannot be used: that one is moved
    /// aside and the reason logged and recorded).
    pub fn stage_restore(&self, target: &RestoreTarget) -> Option<(Copied, Taken)> {
        let (store, cfg) = (self.store().ok()?, self.config().ok()?);
        let (id, identity) = (target.id, &target.state.identity);
        let (ns, key) = (&identity.namespace, &identity.key);
        if cfg.mode == Mode::NetworkFs {
            // A restorer (on any host) that stopped touching its lease is
            // gone: its taken image goes back under the key first.
            match store.cleanup_stale_temps_of(ns, key, crate::timeouts::STALE_TEMP_AGE) {
                Ok(0) => {}
                Ok(n) => log::info!("{id}: gave back {n} stale temporaries of {ns}/{key}"),
                Err(e) => log::warn!("{id}: cleaning stale temporaries of {ns}/{key}: {e}"),
            }
        }
        let has_image = store
            .image_dir(ns, key)
            .map(|d| d.join(arch_image::MANIFEST).exists())
            .unwrap_or(false);
        if !has_image {
            // Older generations without a newest image are older state
            // than a run that is gone (or another restorer's, which took
            // the newest): never to come back after this fresh start.
            match store.remove_generations(ns, key) {
                Ok(0) => {}
                Ok(n) => log::info!("{id}: no image of {ns}/{key}; retired {n} older generations"),
                Err(e) => log::warn!("{id}: retiring older generations of {ns}/{key}: {e}"),
            }
            return None;
        }
        // An image of another profile is not this container's to take:
        // it starts fresh and leaves the image where it is.
        if let Ok(m) = store.manifest(ns, key) {
            if let Err(e) = compare_profiles(&m.profile, &target.state.profile) {
                self.refuse_profile(&store, target, &m.container_id, &e);
                return None;
            }
        }
        // Exactly once: the rename makes the image this container's alone,
        // and what is validated below is what CRIU reads at Start. On a
        // shared root a lease says this restorer is alive.
        let taken = if cfg.mode == Mode::NetworkFs {
            let owner = self.lease_owner(id);
            store.take_leased(ns, key, &owner, cfg.claim_lease)
        } else {
            store.take(ns, key)
        };
        let taken = match taken {
            Ok(t) => t,
            Err(e) => {
                log::warn!(
                    "{id}: image {ns}/{key} was taken by another restore ({e}); starting fresh"
                );
                return None;
            }
        };
        log::info!("{id}: took {ns}/{key} as {}", taken.dir().display());
        self.stage_from(&store, taken, target)
    }

    /// Stages `taken`; if it is bad, sets it aside and stages the key's
    /// next older generation, and so on. None: a fresh start (nothing left
    /// to try, or an image of another profile, which is put back).
    pub(super) fn stage_from(
        &self,
        store: &ImageStore,
        mut taken: Taken,
        target: &RestoreTarget,
    ) -> Option<(Copied, Taken)> {
        let (id, ns, key) = (
            target.id,
            &target.state.identity.namespace,
            &target.state.identity.key,
        );
        loop {
            match self.stage(&taken, target) {
                Ok(copied) => return Some((copied, taken)),
                Err(StagingError::Profile(e)) => {
                    // Swapped for another container's image since the check.
                    self.refuse_profile(store, target, "another container", &e);
                    if let Err(e) = taken.put_back() {
                        log::error!("{id}: putting back {ns}/{key}: {e}");
                    }
                    return None;
                }
                Err(StagingError::Image(
                    e @ (arch_image::Error::NoDecryptionKey { .. }
                    | arch_image::Error::WrongDecryptionKey { .. }),
                )) => {
                    // Not a bad image: this host lacks its key (a shared
                    // root's other hosts may have it). Left in place, as
                    // an image of another profile.
                    log::warn!("{id}: not restoring {ns}/{key}: {e}; starting fresh, the image is left in place");
                    record(
                        store.root(),
                        restore_record(
                            &target.state.identity,
                            id,
                            Outcome::Fallback,
                            0,
                            0,
                            Some(e.to_string()),
                        ),
                    );
                    if let Err(e) = taken.put_back() {
                        log::error!("{id}: putting back {ns}/{key}: {e}");
                    }
                    return None;
                }
                Err(e) => taken = self.fall_back(store, taken, target, &e.to_string())?,
            }
        }
    }

    /// Who holds a lease on a taken image (network-fs).
    fn lease_owner(&self, id: &str) -> String {
        format!("{}:{}:{id}", arch_host::hostname(), std::process::id())
    }

    /// After this restorer's image of the key turned out bad: takes the
    /// key's next older generation, newest first (host `generations`).
    /// Only the restorer that failed the newer image gets here, so the
    /// set of generations stays this key's one restore.
    pub(super) fn next_generation(&self, store: &ImageStore, t: &RestoreTarget) -> Option<Taken> {
        let (id, ns, key) = (t.id, &t.state.identity.namespace, &t.state.identity.key);
        let cfg = self.config().ok()?;
        let owner = self.lease_owner(id);
        let lease = (cfg.mode == Mode::NetworkFs).then_some((owner.as_str(), cfg.claim_lease));
        match store.take_generation(ns, key, lease) {
            Ok(Some(taken)) => {
                log::warn!(
                    "{id}: took the older generation {} of {ns}/{key} as {}",
                    taken.origin(),
                    taken.dir().display()
                );
                Some(taken)
            }
            Ok(None) => None,
            Err(e) => {
                log::error!("{id}: taking an older generation of {ns}/{key}: {e}");
                None
            }
        }
    }

    fn refuse_profile(
        &self,
        store: &ImageStore,
        t: &RestoreTarget,
        from: &str,
        e: &ProfileMismatch,
    ) {
        let (id, identity) = (t.id, &t.state.identity);
        log::warn!(
            "{id}: not restoring {}/{} (checkpointed from {from}): {e}; starting fresh, the image is left in place",
            identity.namespace,
            identity.key
        );
        let reason = format!("{e} (field {})", e.field);
        record(
            store.root(),
            restore_record(identity, id, Outcome::Fallback, 0, 0, Some(reason)),
        );
    }

    pub(super) fn stage(&self, taken: &Taken, t: &RestoreTarget) -> Result<Copied, StagingError> {
        let (ns, key) = (&t.state.identity.namespace, &t.state.identity.key);
        arch_faults::hit(t.id, points::RESTORE_STAGING)?;
        // Changes must land in the container's own layer: a snapshot the
        // shim mounted, or an overlay the engine mounted (Docker's
        // overlay2), never a plain directory the bundle brought.
        if !t.rootfs.shim_mounted() && t.state.upperdir.is_none() {
            return Err(StagingError::NoLayer(t.rootfs.path.clone()));
        }
        // What CRIU reads at Start is what is verified here: a copy on this
        // host (in memory if there is room, copy_place.rs), never in the
        // (possibly shared) root, whatever is written into the root in
        // between.
        let setting = self.config().map_or(RestoreCopy::Disk, |c| c.restore_copy);
        let mut place = copy_place::choose(setting, taken.decoded_size().ok());
        let verifying = std::time::Instant::now();
        let copied = match copy_at(place, taken, t.id) {
            // Room in memory may have gone to other restores meanwhile;
            // an image found wrong would fail the same on disk.
            Err(e) if place == Place::Memory && e.may_succeed_elsewhere() => {
                log::warn!("{}: copy in memory failed ({e}), copying to disk", t.id);
                place = Place::Disk;
                copy_at(place, taken, t.id)
            }
            other => other,
        };
        let (local, image, deferred) = copied?;
        let verify_ms = verifying.elapsed().as_millis();
        let behind = match deferred.is_empty() {
            true => "",
            false => " (memory images checked behind it)",
        };
        let verified = deferred.start();
        compare_profiles(&image.manifest().profile, &t.state.profile)?;
        // A terminal cannot become pipes or the reverse: refuse before the
        // rootfs is touched.
        arch_runtime::check_image_stdio(t.id, &image.criu_dir(), t.terminal)?;
        let criu = self.runtime.criu_version()?;
        check_compatible(image.manifest(), &HostFacts::detect(criu))
            .map_err(StagingError::Incompatible)?;
        arch_faults::hit(t.id, points::RESTORE_VALIDATED)?;
        let applying = std::time::Instant::now();
        let stats = apply_rootfs(&image, &t.rootfs.path).map_err(StagingError::RootfsDiff)?;
        arch_faults::hit(t.id, points::RESTORE_ROOTFS_APPLIED)?;
        // Create's share of a restore, phase by phase (Start logs CRIU's).
        log::info!(
            "{}: staged {ns}/{key}: copy of {} bytes {} in {verify_ms} ms{behind}, rootfs diff in {} ms: {stats:?}",
            t.id,
            image.manifest().total_size,
            place.shown(),
            applying.elapsed().as_millis()
        );
        Ok(Copied {
            image,
            local,
            verified,
        })
    }

    /// Keeps a failed image aside for inspection, records why, puts the
    /// rootfs back the way the snapshot had it, and takes the key's next
    /// older generation if there is one (None: a fresh start).
    pub(super) fn fall_back(
        &self,
        store: &ImageStore,
        taken: Taken,
        t: &RestoreTarget,
        reason: &str,
    ) -> Option<Taken> {
        let (id, identity) = (t.id, &t.state.identity);
        let name = taken.origin().to_string();
        match taken.fail(reason) {
            Ok(aside) => {
                // The bundle goes away with the task: keep CRIU's story with the image.
                let log = t.bundle.join("restore-work/restore.log");
                if log.exists() {
                    if let Err(e) = keep_log(&log, &aside.join("restore.log")) {
                        log::warn!("{id}: restore.log not kept with the image: {e}");
                    }
                    // It is this image's: an older generation tried next
                    // must not be kept with it.
                    let _ = std::fs::remove_file(&log);
                }
                log::warn!("{id}: image kept for inspection at {}", aside.display())
            }
            Err(e) => log::error!("{id}: could not move the failed image aside: {e}"),
        }
        if t.rootfs.shim_mounted() {
            if let Err(e) = self.mounts.reset(&t.rootfs.target, &t.rootfs.mounts) {
                log::error!("{id}: rolling back the rootfs failed: {e}");
            }
        } else {
            // The engine's mount is not ours to take down, and its layer is
            // the container's own: Docker keeps it across stop and start, so
            // emptying it would lose the container's files. It keeps what
            // the image's changes wrote, as it would after a plain restart.
            log::warn!(
                "{id}: rootfs {} is mounted by the engine: left as it is, with any changes from the image",
                t.rootfs.path.display()
            );
        }
        // Onto an older generation only where the rootfs was put back:
        // an engine-mounted one keeps the bad image's changes.
        let next = match t.rootfs.shim_mounted() {
            true => self.next_generation(store, t),
            false => None,
        };
        let then = match &next {
            Some(g) => format!("falling back to older generation {}", g.origin()),
            None => "starting fresh".to_string(),
        };
        log::error!(
            "{id}: cannot restore {}/{} ({name}): {reason}; {then}",
            identity.namespace,
            identity.key
        );
        let reason = format!("{name}: {reason}; {then}");
        let rec = restore_record(identity, id, Outcome::Fallback, 0, 0, Some(reason));
        record(store.root(), rec);
        next
    }
}

/// Copies CRIU's log into the image set aside. The image directory is on
/// the untrusted root: a `restore.log` planted there (a symlink to
/// /etc/shadow, say) is never opened, the copy only ever creates a new file.
fn keep_log(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut src = std::fs::File::open(from)?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(to)?;
    std::io::copy(&mut src, &mut dst)?;
    Ok(())
}

/// A new local directory at `place` and the image verified into it. The
/// copy makes the image directory itself, inside the local one. Its large
/// memory images are hashed behind it, on a thread of its own, while
/// Create goes on and Start runs CRIU (verify_behind.rs).
fn copy_at(
    place: Place,
    taken: &Taken,
    id: &str,
) -> Result<(LocalCopy, Image, arch_image::Deferred), StagingError> {
    let local = LocalCopy::new(place.base(), id).map_err(StagingError::LocalCopy)?;
    let (image, deferred) = taken.verify_into_deferring(&local.path().join("image"))?;
    if place == Place::Memory {
        arch_faults::hit(id, points::RESTORE_COPY_MEMORY)?;
    }
    Ok((local, image, deferred))
}

#[cfg(test)]
mod tests {
    use super::keep_log;

    #[test]
    fn a_planted_restore_log_link_is_never_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("shadow");
        std::fs::write(&victim, b"root:*:19000::::::\n").unwrap();
        let log = tmp.path().join("criu.log");
        std::fs::write(&log, b"Error (criu/cr-restore.c): boom\n").unwrap();
        let aside = tmp.path().join("image@failed-1-abc");
        std::fs::create_dir(&aside).unwrap();
        std::os::unix::fs::symlink(&victim, aside.join("restore.log")).unwrap();
        assert!(keep_log(&log, &aside.join("restore.log")).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"root:*:19000::::::\n");
        std::fs::remove_file(aside.join("restore.log")).unwrap();
        keep_log(&log, &aside.join("restore.log")).unwrap();
        assert_eq!(
            std::fs::read(aside.join("restore.log")).unwrap(),
            std::fs::read(&log).unwrap()
        );
    }
}
