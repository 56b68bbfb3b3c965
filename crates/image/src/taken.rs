//! Taking an image for a restore. The image directory is renamed to a name
//! of the restorer's own, `{key}@taken-{boot}-{pid}-{rand}`: a rename is
//! atomic (on local disks and on NFS/EFS), so of two restorers racing for
//! one image exactly one gets it, in `basic` mode too, and the one that
//! gets it validates and restores the very directory it holds: nobody can
//! swap another image in under the key between the check and CRIU.
//!
//! A taken image ends retired (`@restored`, after a restore), failed
//! (`@failed-…`, kept for inspection) or put back under its key (the
//! restore did not happen, e.g. the container was deleted before Start).
//! A restorer that died leaves `@taken-`, which stale-temp cleanup puts
//! back once its process is gone (or, from another host, once it is old).

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{io_err, Error, Result};
use crate::fsutil::{fsync, owner_tag, rand_suffix, write_new};
use crate::image::Image;
use crate::manifest::{Status, Timestamp};
use crate::store::{set_status, ImageStore, FAILURE_REASON_FILE};
use crate::SIDECAR_SEP as SEP;

/// The sidecar kind of a taken image.
pub(crate) const TAKEN: &str = "taken-";

/// An image this process took for a restore. Dropping it undecided puts it
/// back under its key (if that is still free).
#[derive(Debug)]
pub struct Taken {
    dir: PathBuf,
    ns_dir: PathBuf,
    namespace: String,
    key: String,
    trust: crate::Trust,
    done: bool,
}

impl ImageStore {
    /// Takes the committed image of `ns`/`key` by renaming it to a name of
    /// this process's own. [`Error::NotFound`] when there is none, or when
    /// another restorer took it first.
    pub fn take(&self, ns: &str, key: &str) -> Result<Taken> {
        self.checked_ns(ns)?;
        let src = self.image_dir(ns, key)?;
        let ns_dir = src.parent().expect("image dir has a parent").to_path_buf();
        let dir = ns_dir.join(format!(
            "{key}{SEP}{TAKEN}{}-{}",
            owner_tag(),
            rand_suffix()
        ));
        let meta = fs::symlink_metadata(&src).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                namespace: ns.into(),
                key: key.into(),
            },
            _ => io_err("stat", &src)(e),
        })?;
        if !meta.file_type().is_dir() {
            return Err(Error::UnexpectedFileType {
                path: src.display().to_string(),
            });
        }
        fs::rename(&src, &dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                namespace: ns.into(),
                key: key.into(),
            },
            _ => io_err("rename", &src)(e),
        })?;
        fsync(&ns_dir)?;
        Ok(Taken {
            dir,
            ns_dir,
            namespace: ns.into(),
            key: key.into(),
            trust: self.trust().clone(),
            done: false,
        })
    }
}

impl Taken {
    /// Where the taken image is now.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads and fully validates the taken image (the one CRIU will read).
    pub fn open(&self) -> Result<Image> {
        Image::load(self.dir.clone(), &self.namespace, &self.key, &self.trust)
    }

    fn sidecar(&self, what: &str) -> PathBuf {
        self.ns_dir.join(format!("{}{SEP}{what}", self.key))
    }

    fn rename_to(&mut self, dest: &Path) -> Result<()> {
        fs::rename(&self.dir, dest).map_err(io_err("rename", &self.dir))?;
        self.done = true;
        fsync(&self.ns_dir)
    }

    /// After a restore: `{key}@restored` (replacing an older one, so only
    /// the latest is kept), status `restored`.
    pub fn retire(mut self) -> Result<PathBuf> {
        let dest = self.sidecar("restored");
        if fs::symlink_metadata(&dest).is_ok() {
            fs::remove_dir_all(&dest).map_err(io_err("remove", &dest))?;
        }
        self.rename_to(&dest)?;
        set_status(&dest, Status::Restored, None)?;
        Ok(dest)
    }

    /// After a failed restore: `{key}@failed-{secs}-{rand}` with
    /// `failure-reason.txt`, status `failed` when the manifest parses.
    pub fn fail(mut self, reason: &str) -> Result<PathBuf> {
        let what = format!("failed-{}-{}", Timestamp::now().secs, &rand_suffix()[..8]);
        let dest = self.sidecar(&what);
        self.rename_to(&dest)?;
        write_new(
            &dest.join(FAILURE_REASON_FILE),
            format!("{reason}\n").as_bytes(),
        )?;
        let _ = set_status(&dest, Status::Failed, Some(reason));
        Ok(dest)
    }

    /// Not restored after all: back under its key, unless a newer image
    /// took the key meanwhile (then this one is stale and removed).
    pub fn put_back(mut self) -> Result<()> {
        self.put_back_inner()
    }

    fn put_back_inner(&mut self) -> Result<()> {
        self.done = true;
        let slot = self.ns_dir.join(&self.key);
        if fs::symlink_metadata(&slot).is_ok() {
            log::info!(
                "{}: a newer image took its key; removing it",
                self.dir.display()
            );
            return fs::remove_dir_all(&self.dir).map_err(io_err("remove", &self.dir));
        }
        fs::rename(&self.dir, &slot).map_err(io_err("rename", &self.dir))?;
        fsync(&self.ns_dir)
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.put_back_inner() {
                log::warn!("putting back {}: {e}", self.dir.display());
            }
        }
    }
}
