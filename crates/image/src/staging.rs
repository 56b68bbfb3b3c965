//! A checkpoint being written. Writers put files into `path()`; `commit`
//! seals it with a manifest and renames it into place, so readers only ever
//! see complete images. Dropping an uncommitted `Staging` deletes it, which
//! is how a failed checkpoint "leaves nothing behind".

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{io_err, Error, Result};
use crate::fsutil::{fsync, hash_file, rand_suffix, set_mode, write_new, DIR_MODE, FILE_MODE};
use crate::image::Image;
use crate::manifest::{CommitInfo, FileEntry, Manifest, Status, Timestamp, FORMAT_VERSION};

/// A temporary image directory, `{root}/{ns}/{key}@tmp-{rand}`.
#[derive(Debug)]
pub struct Staging {
    pub(crate) dir: PathBuf,
    pub(crate) final_dir: PathBuf,
    pub(crate) ns_dir: PathBuf,
    pub(crate) namespace: String,
    pub(crate) key: String,
    pub(crate) done: bool,
}

impl Staging {
    /// Directory to write image files into (criu/, rootfs-diff.tar, ...).
    pub fn path(&self) -> &Path {
        &self.dir
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
    pub fn commit(mut self, info: CommitInfo) -> Result<Image> {
        let mut files = Vec::new();
        seal_tree(&self.dir, "", &mut files)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
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
            status: Status::Committed,
            failure: None,
        };
        write_new(&self.dir.join(crate::MANIFEST), &manifest.to_json())?;
        fsync(&self.dir)?;
        self.publish()?;
        self.done = true;
        Ok(Image::new(self.final_dir.clone(), manifest))
    }

    fn publish(&self) -> Result<()> {
        let rename = |from: &Path, to: &Path| fs::rename(from, to).map_err(io_err("rename", from));
        let exists = fs::symlink_metadata(&self.final_dir).is_ok();
        if !exists {
            rename(&self.dir, &self.final_dir)?;
            return fsync(&self.ns_dir);
        }
        let old = self.ns_dir.join(format!(
            "{}{}old-{}",
            self.key,
            crate::SIDECAR_SEP,
            rand_suffix()
        ));
        rename(&self.final_dir, &old)?;
        if let Err(e) = rename(&self.dir, &self.final_dir) {
            // Put the previous image back so a failed commit loses nothing.
            let _ = fs::rename(&old, &self.final_dir);
            return Err(e);
        }
        fsync(&self.ns_dir)?;
        fs::remove_dir_all(&old).map_err(io_err("remove", &old))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Recursively fix modes, hash + fsync files, fsync dirs (children first so
/// a directory's fsync covers entries that are themselves durable).
fn seal_tree(dir: &Path, prefix: &str, out: &mut Vec<FileEntry>) -> Result<()> {
    set_mode(dir, DIR_MODE)?;
    for ent in fs::read_dir(dir).map_err(io_err("read dir", dir))? {
        let ent = ent.map_err(io_err("read dir", dir))?;
        let name = ent
            .file_name()
            .into_string()
            .map_err(|n| Error::UnsafePath {
                path: n.to_string_lossy().into_owned(),
                reason: "file name is not UTF-8",
            })?;
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let path = ent.path();
        let ft = ent.file_type().map_err(io_err("stat", &path))?;
        if ft.is_dir() {
            seal_tree(&path, &rel, out)?;
        } else if ft.is_file() {
            if rel == crate::MANIFEST {
                return Err(Error::UnsafePath {
                    path: rel,
                    reason: "manifest.json is written by commit",
                });
            }
            crate::manifest::check_rel_path(&rel)?;
            set_mode(&path, FILE_MODE)?;
            fsync(&path)?;
            let (size, sha256) = hash_file(&path)?;
            out.push(FileEntry {
                path: rel,
                size,
                sha256,
            });
        } else {
            // Symlinks would let a later reader be redirected; refuse them.
            return Err(Error::UnexpectedFileType { path: rel });
        }
    }
    fsync(dir)
}
