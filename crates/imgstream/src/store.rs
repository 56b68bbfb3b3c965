//! Where stored files live: a directory held as a descriptor, so a path
//! swapped for a symlink while CRIU runs redirects nothing. The trait lets
//! tests inject a full disk.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub trait StoredFile: Write + Send {
    fn sync_all(&mut self) -> io::Result<()>;
}

impl StoredFile for File {
    fn sync_all(&mut self) -> io::Result<()> {
        File::sync_all(self)
    }
}

pub trait Store: Send + Sync {
    /// A new file; an existing name is an error (`O_EXCL`), never reused.
    fn create(&self, name: &str) -> io::Result<Box<dyn StoredFile>>;
    /// An existing regular file, for reading.
    fn open(&self, name: &str) -> io::Result<File>;
    fn remove(&self, name: &str) -> io::Result<()>;
    /// fsync of the directory itself, so the new names survive a crash.
    fn sync_dir(&self) -> io::Result<()>;
}

/// The real store: `openat` in a held directory, nothing followed.
pub struct DirStore {
    dir: OwnedFd,
}

impl DirStore {
    pub fn new(dir: OwnedFd) -> Self {
        DirStore { dir }
    }

    /// Opens `path` as the store (the last component must not be a symlink).
    pub fn open_path(path: &Path) -> io::Result<Self> {
        let c = cstr(path.as_os_str().as_encoded_bytes())?;
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(DirStore {
            dir: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn openat(&self, name: &str, flags: libc::c_int) -> io::Result<File> {
        let c = cstr(name.as_bytes())?;
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                c.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(unsafe { File::from_raw_fd(fd) })
    }
}

impl Store for DirStore {
    fn create(&self, name: &str) -> io::Result<Box<dyn StoredFile>> {
        Ok(Box::new(self.openat(
            name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        )?))
    }

    fn open(&self, name: &str) -> io::Result<File> {
        // O_NONBLOCK: a FIFO planted under the name must not hang the open;
        // the type is then checked on the descriptor.
        let f = self.openat(name, libc::O_RDONLY | libc::O_NONBLOCK)?;
        let m = f.metadata()?;
        if !m.is_file() || m.nlink() != 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{name} is not a plain regular file"),
            ));
        }
        Ok(f)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let c = cstr(name.as_bytes())?;
        if unsafe { libc::unlinkat(self.dir.as_raw_fd(), c.as_ptr(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        if unsafe { libc::fsync(self.dir.as_raw_fd()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

/// CRIU's image names are plain file names (`pages-1.img`, `core-42.img`).
/// Anything else could reach outside the store or hide in it.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "pages-1.img",
            "core-42.img",
            "tmpfs-dev-63.tar.gz.img",
            "inventory.img",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            ".hidden",
            "a b",
            "a\0b",
            &"x".repeat(201),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn create_is_exclusive_and_does_not_follow() {
        let d = tempfile::tempdir().unwrap();
        let s = DirStore::open_path(d.path()).unwrap();
        s.create("a").unwrap().write_all(b"x").unwrap();
        assert_eq!(
            s.create("a").err().unwrap().kind(),
            io::ErrorKind::AlreadyExists
        );
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("l")).unwrap();
        assert!(s.open("l").is_err());
        assert!(s.create("l").is_err());
        assert!(s.open("a").is_ok());
    }
}
