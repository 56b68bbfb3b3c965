//! network-fs: an unstreamed dump is written by CRIU on this host's own
//! disk, then copied into the staging directory on the shared root.
//!
//! CRIU creates its image files by name (`openat(dir, name, O_CREAT |
//! O_TRUNC)`, following links): in a staging directory on a root other
//! hosts can write, a symlink planted under one of CRIU's names during the
//! dump would make this host's CRIU write through it, anywhere on this
//! host. A streamed dump never lets CRIU create a file there (the streamer
//! creates each one `O_EXCL|O_NOFOLLOW`); an unstreamed one (a terminal,
//! pre-dumps, `stream = off`) goes to a private directory here and every
//! file is then created in staging with `O_EXCL|O_NOFOLLOW` beneath the
//! images directory, opened without following a link: a planted name
//! fails the copy (and so the checkpoint), nothing is written through it.
//! The cost is a write of the image to this host's disk (the page cache,
//! mostly) and its read back; the write to the shared root is the one
//! CRIU would have done itself.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::host_local::HostLocalDir;

/// Where CRIU writes unstreamed dumps first (network-fs mode).
pub const LOCAL_DUMP_DIR: &str = "/var/lib/containerd-arch/dump";

/// A private mirror of one checkpoint's images directories (`criu/`,
/// `pre-N/`), so CRIU's `parent` links between them resolve here too.
pub struct LocalDump(HostLocalDir);

impl LocalDump {
    pub fn new(id: &str) -> io::Result<LocalDump> {
        HostLocalDir::new(LOCAL_DUMP_DIR, id).map(LocalDump)
    }

    /// The mirror of staging directory `staged` (made empty if missing).
    pub fn dir_for(&self, staged: &Path) -> io::Result<PathBuf> {
        let name = staged
            .file_name()
            .ok_or_else(|| io::Error::other(format!("{} has no name", staged.display())))?;
        let dir = self.0.path().join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir(&dir)?;
        Ok(dir)
    }
}

/// Copies CRIU's files from `local` into `staged`, each created
/// `O_EXCL|O_NOFOLLOW` beneath `staged` opened `O_NOFOLLOW`. CRIU's
/// `parent` links are not copied (an image holds no link; the restorer
/// makes them again). Returns the bytes copied.
pub fn copy_into_staging(local: &Path, staged: &Path) -> io::Result<u64> {
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(staged)?;
    let beneath = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let mut bytes = 0;
    for entry in std::fs::read_dir(local)? {
        let entry = entry?;
        let name = entry.file_name();
        let kind = entry.file_type()?;
        if kind.is_symlink() && name == arch_image::PARENT_LINK {
            continue;
        }
        if !kind.is_file() {
            return Err(io::Error::other(format!(
                "CRIU left {} in {}, not a regular file",
                name.to_string_lossy(),
                local.display()
            )));
        }
        let mut from = File::open(entry.path())?;
        let mut to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(beneath.join(&name))
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("creating {} in staging: {e}", name.to_string_lossy()),
                )
            })?;
        bytes += io::copy(&mut from, &mut to)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (n, c) in files {
            std::fs::write(d.path().join(n), c).unwrap();
        }
        d
    }

    #[test]
    fn files_are_copied_and_the_parent_link_is_not() {
        let local = local_with(&[("pages-1.img", "pages"), ("inventory.img", "inv")]);
        std::os::unix::fs::symlink("../pre-1", local.path().join("parent")).unwrap();
        let staged = tempfile::tempdir().unwrap();
        assert_eq!(copy_into_staging(local.path(), staged.path()).unwrap(), 8);
        let mut names: Vec<_> = std::fs::read_dir(staged.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["inventory.img", "pages-1.img"]);
    }

    #[test]
    fn a_planted_symlink_is_never_written_through() {
        let local = local_with(&[("pages-1.img", "secret pages")]);
        let staged = tempfile::tempdir().unwrap();
        let victim = tempfile::NamedTempFile::new().unwrap();
        std::os::unix::fs::symlink(victim.path(), staged.path().join("pages-1.img")).unwrap();
        let e = copy_into_staging(local.path(), staged.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(std::fs::read_to_string(victim.path()).unwrap(), "");
    }

    #[test]
    fn a_staging_directory_swapped_for_a_link_is_refused() {
        let local = local_with(&[("pages-1.img", "p")]);
        let elsewhere = tempfile::tempdir().unwrap();
        let parent = tempfile::tempdir().unwrap();
        let staged = parent.path().join("criu");
        std::os::unix::fs::symlink(elsewhere.path(), &staged).unwrap();
        assert!(copy_into_staging(local.path(), &staged).is_err());
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }
}
