//! Exclusive claim on an image for shared (NFS/EFS) roots: only the host
//! whose `O_CREAT|O_EXCL` create of `{key}@claim` succeeds may restore it.
//! O_EXCL is atomic on NFSv3+ and EFS, which is why a lock file and not
//! flock (flock is not reliably shared across NFS clients).

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{io_err, Error, Result};
use crate::fsutil::{fsync, mkdir_all, FILE_MODE};
use crate::manifest::Timestamp;
use crate::store::ImageStore;

/// A held claim; released (file removed) on drop or [`Claim::release`].
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
    owner: String,
    released: bool,
}

impl Claim {
    /// The claim file.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Who holds it (as passed to `claim`).
    pub fn owner(&self) -> &str {
        &self.owner
    }
    /// Release now, reporting errors (drop ignores them).
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        fs::remove_file(&self.path).map_err(io_err("remove", &self.path))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.released {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl ImageStore {
    /// Take the exclusive claim on `ns`/`key` for `owner` (e.g. hostname +
    /// pid). The file holds `owner\n<unix secs>\n`; a second claim fails with
    /// [`Error::AlreadyClaimed`] naming the current holder.
    pub fn claim(&self, ns: &str, key: &str, owner: &str) -> Result<Claim> {
        if owner.is_empty() || owner.contains(['\n', '\0']) {
            return Err(Error::InvalidIdentity {
                kind: "owner",
                value: owner.into(),
                reason: "must be non-empty, one line",
            });
        }
        self.checked_ns(ns)?;
        let image = self.image_dir(ns, key)?;
        let ns_dir = image
            .parent()
            .expect("image dir has a parent")
            .to_path_buf();
        mkdir_all(&ns_dir)?;
        let path = ns_dir.join(format!("{key}{}claim", crate::SIDECAR_SEP));
        let mut f = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let held = fs::read_to_string(&path).unwrap_or_default();
                let owner = held.lines().next().unwrap_or("<unknown>").to_string();
                return Err(Error::AlreadyClaimed { owner, path });
            }
            Err(e) => return Err(io_err("create", &path)(e)),
        };
        // From here on the claim is ours; the guard removes it on any error.
        let claim = Claim {
            path: path.clone(),
            owner: owner.into(),
            released: false,
        };
        let body = format!("{owner}\n{}\n", Timestamp::now().secs);
        f.write_all(body.as_bytes())
            .map_err(io_err("write", &path))?;
        f.sync_all().map_err(io_err("fsync", &path))?;
        fsync(&ns_dir)?;
        Ok(claim)
    }
}
