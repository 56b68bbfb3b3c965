//! A checkpoint being written. Writers put files into `path()`; `commit`
//! seals it with a manifest and renames it into place, so readers only ever
//! see complete images. Dropping an uncommitted `Staging` deletes it, which
//! is how a failed checkpoint "leaves nothing behind".

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

use arch_faults::points;

use crate::error::{io_err, Error, Result};
use crate::fsutil::{fsync, hash_open, rand_suffix, write_new, HeldDir, DIR_MODE, FILE_MODE};
use crate::image::Image;
use crate::manifest::{version_for, CommitInfo, FileEntry, Manifest, Status, Timestamp};

/// A temporary image directory, `{root}/{ns}/{key}@tmp-{rand}`. It and
/// its scope directory are held open: `path()` and every write, rename
/// and removal of the commit go through those descriptors.
#[derive(Debug)]
pub struct Staging {
    /// The held staging directory's `/proc/self/fd/N` path.
    pub(crate) dir: PathBuf,
    /// Its name in the scope directory.
    pub(crate) name: String,
    /// The image's name path under the root (what readers open).
    pub(crate) final_dir: PathBuf,
    /// The held scope directory's `/proc/self/fd/N` path.
    pub(crate) ns_dir: PathBuf,
    pub(crate) namespace: String,
    pub(crate) key: String,
    /// Signs the manifest (manifest.sig) when the host has a key.
    pub(crate) signing_key: Option<std::sync::Arc<crate::SigningKey>>,
    /// Older generations kept beside the new image (host `generations` - 1).
    pub(crate) keep_older: usize,
    pub(crate) done: bool,
    /// Touches the directory while it is being written, so a cleaner on
    /// another host judges it by its writer's life, not by how long the
    /// dump takes (stale-temp cleanup).
    pub(crate) heartbeat: Option<crate::lease::Heartbeat>,
    pub(crate) held: HeldDir,
    pub(crate) ns_held: HeldDir,
    /// Files a streamer stored and hashed as CRIU wrote them, by path:
    /// the commit lists them as recorded instead of reading them again.
    pub(crate) streamed: BTreeMap<String, FileEntry>,
}

/// How often a staging directory is touched while it is written: well
/// under any stale-temp age (the shim uses 10 minutes).
pub const STAGING_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);

impl Staging {
    /// Directory to write image files into (criu/, rootfs-diff.tar, ...):
    /// a `/proc/self/fd/N` path of the held directory, valid while this
    /// `Staging` lives, for this process only.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A new file `name` directly in the staging directory, created with
    /// `O_EXCL|O_NOFOLLOW` through the held descriptor (never through
    /// something planted under the name).
    pub fn create_file(&self, name: &str) -> Result<File> {
        self.held.create_new(name)
    }

    /// Records the files a streamer captured into `criu/` (hashed and
    /// fsync'd as they arrived): the commit lists them with their codec
    /// and both digests, without reading them again, and fails if one is
    /// missing or not the size recorded.
    pub fn add_streamed(&mut self, records: &[arch_imgstream::FileRecord]) {
        for r in records {
            let e = FileEntry::streamed(r);
            self.streamed.insert(e.path.clone(), e);
        }
    }

    /// The staging directory's name in its scope directory.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Seal and publish the image.
    ///
    /// Steps: normalise modes (0600/0700), hash and fsync every file, write
    /// manifest.json, fsync all directories, then rename into place and fsync
    /// the namespace directory.
    ///
    /// Replacing an existing image: POSIX rename cannot swap two non-empty
    /// directories, and `RENAME_EXCHANGE` is unavailable on NFS/EFS. So the
    /// old image is renamed to `{key}@old-{rand}`, the new one renamed in, and
    /// the old one deleted. A crash in between leaves `@old-` behind, which
    /// `ImageStore::cleanup_stale_temps` puts back if no image took its place.
    pub fn commit(self, info: CommitInfo) -> Result<Image> {
        self.commit_observed(info, &mut |_| Ok(()))
    }

    /// `commit`, calling `observe` at each phase boundary ([`COMMIT_PHASES`])
    /// so the reliability suite can fail or crash there; an `Err` from it
    /// stops the commit as a failed commit would.
    pub fn commit_observed(mut self, info: CommitInfo, observe: Observer) -> Result<Image> {
        let mut files = Vec::new();
        let top = self.held.try_clone().map_err(io_err("dup", &self.dir))?;
        let mut streamed = std::mem::take(&mut self.streamed);
        seal_tree(&top, &self.dir, "", &mut streamed, &mut files)?;
        if let Some(path) = streamed.into_keys().next() {
            return Err(Error::MissingFile { path });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let manifest = Manifest {
            format_version: version_for(&files),
            namespace: self.namespace.clone(),
            key: self.key.clone(),
            container_id: info.container_id,
            created_at: Timestamp::now(),
            durations_ms: info.durations_ms,
            total_size: files.iter().map(|f| f.size).sum(),
            files,
            criu_version: info.criu_version,
            kernel: info.kernel,
            arch: info.arch,
            cgroup_version: info.cgroup_version,
            profile: info.profile,
            status: Status::Committed,
            failure: None,
        };
        let json = manifest.to_json();
        write_new(&self.dir.join(crate::MANIFEST), &json)?;
        if let Some(key) = &self.signing_key {
            write_new(&self.dir.join(crate::SIGNATURE), &key.sign(&json))?;
        }
        fsync(&self.dir)?;
        phase(observe, points::COMMIT_SEALED)?;
        // The directory is renamed next: its heartbeat is over.
        drop(self.heartbeat.take());
        self.publish(observe)?;
        self.done = true;
        Ok(Image::new(self.final_dir.clone(), manifest))
    }

    /// Makes the image visible under its key. Once it is, the commit has
    /// happened: later trouble (the directory fsync, removing a previous
    /// image) is logged, not returned, since a caller told "failed" would
    /// treat a visible, valid image as lost.
    fn publish(&mut self, observe: Observer) -> Result<()> {
        let rename = |from: &Path, to: &Path| fs::rename(from, to).map_err(io_err("rename", from));
        let final_dir = self.ns_dir.join(&self.key);
        let old = if fs::symlink_metadata(&final_dir).is_ok() {
            // `@old-{tag}` pairs with this `@tmp-{tag}`: while both exist
            // the replacement has not landed (cleanup puts the old image
            // back); once the staging name is gone it has, and the old
            // image is never brought back.
            let tag = self
                .dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split_once("@tmp-"))
                .map_or_else(rand_suffix, |(_, tag)| tag.to_string());
            let old = self
                .ns_dir
                .join(format!("{}{}old-{tag}", self.key, crate::SIDECAR_SEP,));
            rename(&final_dir, &old)?;
            Some(old)
        } else {
            None
        };
        let replacing = match old {
            Some(_) => phase(observe, points::COMMIT_REPLACING),
            None => Ok(()),
        };
        let staged = self.ns_dir.join(&self.name);
        let final_dir = self.ns_dir.join(&self.key);
        let swapped = || Error::UnsafePath {
            path: self.final_dir.display().to_string(),
            reason: "the staging directory was swapped for another entry during the checkpoint",
        };
        let checked = replacing.and_then(|_| match self.ns_held.holds(&self.name, &self.held) {
            true => Ok(()),
            false => Err(swapped()),
        });
        if let Err(e) = checked.and_then(|_| rename(&staged, &final_dir)) {
            // Put the previous image back so a failed commit loses nothing.
            if let Some(old) = &old {
                if let Err(back) = fs::rename(old, self.ns_dir.join(&self.key)) {
                    // Keep the pair: cleanup puts the old image back.
                    log::error!("{}: putting the old image back: {back}", old.display());
                    self.done = true;
                }
            }
            return Err(e);
        }
        if let Err(e) = phase(observe, points::COMMIT_PUBLISHED) {
            log::warn!(
                "{}: {e} (ignored: the image is published)",
                self.final_dir.display()
            );
        }
        if let Err(e) = fsync(&self.ns_dir) {
            log::error!(
                "{e}: {} is published but its rename may not be durable",
                self.final_dir.display()
            );
        }
        self.keep_or_remove(old.as_deref());
        Ok(())
    }

    /// The replaced image becomes the newest older generation (when the
    /// host keeps any), and generations beyond the limit go; else it is
    /// removed as before. Trouble is logged: the new image is published.
    fn keep_or_remove(&self, old: Option<&Path>) {
        use crate::generations::{gen_name, keep_newest};
        let kept = old.is_some_and(|old| self.keep_older > 0 && self.keep(old, gen_name));
        if let (Some(old), false) = (old, kept) {
            if let Err(e) = fs::remove_dir_all(old) {
                log::warn!("removing the replaced image {}: {e}", old.display());
            }
        }
        // Also after a host lowered `generations`: never more than asked.
        if let Err(e) = keep_newest(&self.ns_dir, &self.key, self.keep_older) {
            log::warn!("{}: pruning generations: {e}", self.final_dir.display());
        }
    }

    /// Renames the replaced image to its generation name, named by its own
    /// commit time: one whose manifest no longer parses would never
    /// restore, and is not worth keeping.
    fn keep(&self, old: &Path, name: fn(&str, Timestamp) -> String) -> bool {
        let kept = crate::image::read_manifest(old)
            .and_then(|m| {
                let to = self.ns_dir.join(name(&self.key, m.created_at));
                fs::rename(old, &to).map_err(io_err("rename", old))
            })
            .map_err(|e| log::warn!("{}: not kept as a generation: {e}", old.display()));
        kept.is_ok()
    }
}

/// Watches a commit's phases; see [`Staging::commit_observed`].
pub type Observer<'a> = &'a mut dyn FnMut(&'static str) -> std::result::Result<(), ObserverError>;

/// Why an observer stopped a commit.
pub type ObserverError = Box<dyn std::error::Error + Send + Sync>;

/// The phase boundaries a commit reports, in order: sealed (hashed,
/// manifest written, not yet visible), replacing (a previous image moved
/// aside, the new one not yet in place; only when replacing), published
/// (visible under its key, a previous image not yet removed).
pub const COMMIT_PHASES: [&str; 3] = [
    points::COMMIT_SEALED,
    points::COMMIT_REPLACING,
    points::COMMIT_PUBLISHED,
];

fn phase(observe: Observer, point: &'static str) -> Result<()> {
    observe(point).map_err(|source| Error::CommitStopped { point, source })
}

impl Drop for Staging {
    fn drop(&mut self) {
        drop(self.heartbeat.take());
        if !self.done {
            // By name in the held scope directory: a link swapped in for
            // the staging directory is unlinked, never followed.
            let _ = fs::remove_dir_all(self.ns_dir.join(&self.name));
        }
    }
}

/// Recursively fix modes, hash + fsync files, fsync dirs (children first so
/// a directory's fsync covers entries that are themselves durable).
///
/// Everything goes through descriptors opened with `O_NOFOLLOW` beneath the
/// held staging directory, and modes are set with `fchmod`: an entry
/// swapped for a symlink while the tree is sealed (another host on a
/// network root) fails the commit; no chmod, read or fsync follows it.
fn seal_tree(
    dir: &File,
    shown: &Path,
    prefix: &str,
    streamed: &mut BTreeMap<String, FileEntry>,
    out: &mut Vec<FileEntry>,
) -> Result<()> {
    fchmod(dir, DIR_MODE, shown)?;
    let listed = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    for ent in fs::read_dir(&listed).map_err(io_err("read dir", shown))? {
        let ent = ent.map_err(io_err("read dir", shown))?;
        let name = ent
            .file_name()
            .into_string()
            .map_err(|n| Error::UnsafePath {
                path: n.to_string_lossy().into_owned(),
                reason: "file name is not UTF-8",
            })?;
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let path = shown.join(&name);
        let ft = ent.file_type().map_err(io_err("stat", &path))?;
        if ft.is_dir() {
            let sub = open_beneath(dir, &name, libc::O_DIRECTORY, &rel)?;
            seal_tree(&sub, &path, &rel, streamed, out)?;
        } else if ft.is_file() {
            if rel == crate::MANIFEST || rel == crate::SIGNATURE {
                return Err(Error::UnsafePath {
                    path: rel,
                    reason: "manifest.json is written by commit",
                });
            }
            crate::manifest::check_rel_path(&rel)?;
            let file = open_beneath(dir, &name, libc::O_NONBLOCK, &rel)?;
            let meta = file.metadata().map_err(io_err("stat", &path))?;
            if !meta.file_type().is_file() {
                return Err(Error::UnexpectedFileType { path: rel });
            }
            fchmod(&file, FILE_MODE, &path)?;
            if let Some(entry) = streamed.remove(&rel) {
                // Hashed and fsync'd by the streamer as CRIU wrote it:
                // only a size that disagrees (the file changed since) fails.
                if meta.len() != entry.size {
                    return Err(Error::SizeMismatch {
                        path: rel,
                        expected: entry.size,
                        actual: meta.len(),
                    });
                }
                out.push(entry);
                continue;
            }
            let for_sync = file.try_clone().map_err(io_err("dup", &path))?;
            // The disk writes the file back while the CPU hashes it: for a
            // page file of GiBs the two take about as long each.
            let (hashed, synced) = std::thread::scope(|s| {
                let sync = std::thread::Builder::new()
                    .name("commit-fsync".into())
                    .spawn_scoped(s, || for_sync.sync_all());
                let hashed = hash_open(file, &path);
                let synced = match sync {
                    Ok(t) => t.join().expect("the fsync thread does not panic"),
                    // No thread to spare: sync here, after hashing.
                    Err(_) => for_sync.sync_all(),
                };
                (hashed, synced)
            });
            synced.map_err(io_err("fsync", &path))?;
            let (size, sha256) = hashed?;
            out.push(FileEntry {
                path: rel,
                size,
                sha256,
                stream: None,
            });
        } else {
            // Symlinks would let a later reader be redirected; refuse them.
            return Err(Error::UnexpectedFileType { path: rel });
        }
    }
    dir.sync_all().map_err(io_err("fsync", shown))
}

/// `name` in `dir`, opened read-only without following a symlink.
fn open_beneath(dir: &File, name: &str, flags: i32, rel: &str) -> Result<File> {
    let c = std::ffi::CString::new(name).map_err(|_| Error::UnsafePath {
        path: rel.into(),
        reason: "NUL in a name",
    })?;
    let flags = flags | libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: openat on a descriptor we hold, a NUL-terminated name.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
                Error::UnexpectedFileType { path: rel.into() }
            }
            _ => io_err("open", Path::new(rel))(e),
        });
    }
    // SAFETY: a descriptor the kernel just gave us.
    Ok(File::from(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
}

fn fchmod(f: &File, mode: u32, shown: &Path) -> Result<()> {
    // SAFETY: fchmod on a descriptor we hold.
    match unsafe { libc::fchmod(f.as_raw_fd(), mode) } {
        0 => Ok(()),
        _ => Err(io_err("chmod", shown)(std::io::Error::last_os_error())),
    }
}
