//! Small filesystem helpers: explicit modes (not umask-dependent), fsync of
//! files and directories (needed for durability on NFS/EFS and local disks),
//! and hashing.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{io_err, Result};

pub(crate) const DIR_MODE: u32 = 0o700;
pub(crate) const FILE_MODE: u32 = 0o600;

/// Create `path` (and missing parents) with mode 0700. Existing directories
/// are left as the operator made them.
pub(crate) fn mkdir_all(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(io_err("create dir", path))
}

/// Create a new directory with exactly 0700 (fails if it exists).
pub(crate) fn mkdir_new(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .mode(DIR_MODE)
        .create(path)
        .map_err(io_err("create dir", path))?;
    set_mode(path, DIR_MODE)
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", path))
}

/// fsync a file or directory by path.
pub(crate) fn fsync(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err("fsync", path))
}

/// Write a new 0600 file durably (create_new: never clobbers).
pub(crate) fn write_new(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_err("create", path))?;
    f.write_all(data).map_err(io_err("write", path))?;
    f.sync_all().map_err(io_err("fsync", path))
}

/// Replace `path` durably: write a sibling temp file then rename over it.
pub(crate) fn replace_file(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", fastrand::u32(..)));
    write_new(&tmp, data)?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("rename", path)(e)
    })?;
    if let Some(parent) = path.parent() {
        fsync(parent)?;
    }
    Ok(())
}

/// Opens `rel` beneath the directory `base` with `flags`, following no
/// symlink on the way and never leaving `base` (`openat2` with
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`; kernels before 5.6 fall back to
/// an `O_NOFOLLOW` open of each component, which is as strict).
fn openat_beneath(base: &Path, rel: &str, flags: i32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // The base itself is not followed either (an image directory swapped
    // for a link after it was checked).
    let base_fd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(base)?;
    let c_rel =
        std::ffi::CString::new(rel).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let flags = flags | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: openat2 with a valid dirfd, a NUL-terminated path and an
    // open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            base_fd.as_raw_fd(),
            c_rel.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd >= 0 {
        // SAFETY: a descriptor the kernel just gave us.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err);
    }
    // Old kernel: one component at a time, none a symlink.
    let parts: Vec<&str> = rel.split('/').collect();
    let mut cur: Option<OwnedFd> = None;
    for (i, part) in parts.iter().enumerate() {
        if matches!(*part, "" | "." | "..") {
            return Err(std::io::Error::from_raw_os_error(libc::EXDEV));
        }
        let c = std::ffi::CString::new(*part).expect("no NUL: checked above");
        let last = i + 1 == parts.len();
        let f = if last {
            flags
        } else {
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW
        };
        let dirfd = cur.as_ref().map_or(base_fd.as_raw_fd(), |d| d.as_raw_fd());
        // SAFETY: openat on a descriptor we hold.
        let fd = unsafe { libc::openat(dirfd, c.as_ptr(), f) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a descriptor the kernel just gave us.
        cur = Some(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    cur.ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))
}

/// The directory `rel` beneath `base`, never through a symlink.
pub(crate) fn open_dir_beneath(base: &Path, rel: &str) -> Result<std::os::fd::OwnedFd> {
    openat_beneath(base, rel, libc::O_RDONLY | libc::O_DIRECTORY)
        .map_err(|e| beneath_err(&base.join(rel), e))
}

/// The regular file `rel` (as listed in a manifest) beneath the image
/// directory `dir`: no symlink anywhere on the way, no FIFO or device
/// (opened non-blocking, the type checked on the descriptor).
pub(crate) fn open_file_beneath(dir: &Path, rel: &str) -> Result<File> {
    let fd = openat_beneath(dir, rel, libc::O_RDONLY | libc::O_NONBLOCK).map_err(|e| {
        match e.raw_os_error() {
            Some(libc::ENOENT) => crate::Error::MissingFile { path: rel.into() },
            Some(libc::ELOOP) | Some(libc::EXDEV) => crate::Error::UnsafePath {
                path: rel.into(),
                reason: "symlink component",
            },
            Some(libc::ENOTDIR) => crate::Error::UnexpectedFileType { path: rel.into() },
            _ => io_err("open", dir.join(rel))(e),
        }
    })?;
    let f = File::from(fd);
    let meta = f.metadata().map_err(io_err("stat", dir.join(rel)))?;
    if !meta.file_type().is_file() {
        return Err(crate::Error::UnexpectedFileType { path: rel.into() });
    }
    Ok(f)
}

/// Size and sha256 of an open file, read to its end.
pub(crate) fn hash_open(mut f: File, path: &Path) -> Result<(u64, String)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(h.finalize())))
}

fn beneath_err(path: &Path, e: std::io::Error) -> crate::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::EXDEV) | Some(libc::ENOTDIR) => crate::Error::UnsafePath {
            path: path.display().to_string(),
            reason: "a symlink or not a directory (the checkpoint root is walked without following links)",
        },
        _ => io_err("open", path)(e),
    }
}

/// Test builds only (fault injection): this host's boot id, as another
/// machine's would be.
pub const BOOT_ID_ENV: &str = "ARCH_TEST_BOOT_ID";

/// Random suffix for sidecar names; uniqueness, not secrecy, is the goal.
/// Who is writing a staging dir: this boot of this host, and this process.
/// A cleaner on the same boot can tell a dead writer's leftovers at once.
pub(crate) fn owner_tag() -> String {
    format!("{}-{}", boot_tag(), std::process::id())
}

pub(crate) fn boot_tag() -> String {
    // The two-host tests run two containerds on one machine: in builds
    // with fault injection (tests only) a containerd can play another
    // machine, whose boot id differs, through its environment.
    let id = match std::env::var(BOOT_ID_ENV) {
        Ok(id) if arch_faults::ENABLED => id,
        _ => fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
    };
    let tag: String = id
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(12)
        .collect();
    if tag.is_empty() {
        "noboot".into()
    } else {
        tag
    }
}

pub(crate) fn rand_suffix() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// A directory held open (`O_DIRECTORY|O_NOFOLLOW`), reached by writers
/// through its descriptor's `/proc/self/fd/N` path: whatever is renamed
/// or swapped for a symlink under the root meanwhile, every path below
/// [`HeldDir::path`] resolves in this very directory. Valid while held;
/// never hand the path to anything that outlives it.
#[derive(Debug)]
pub(crate) struct HeldDir {
    fd: std::os::fd::OwnedFd,
    path: std::path::PathBuf,
}

impl HeldDir {
    fn new(fd: std::os::fd::OwnedFd) -> HeldDir {
        use std::os::fd::AsRawFd;
        let path = std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        HeldDir { fd, path }
    }

    /// The directory `rel` beneath `base`, no symlink on the way.
    pub(crate) fn beneath(base: &Path, rel: &str) -> Result<HeldDir> {
        Ok(HeldDir::new(open_dir_beneath(base, rel)?))
    }

    /// The held directory, as a path that resolves through the descriptor.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A new 0700 directory `name` in this one (`mkdirat`), held.
    pub(crate) fn mkdir_new(&self, name: &str) -> Result<HeldDir> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let shown = self.path.join(name);
        let c = std::ffi::CString::new(name).map_err(|_| crate::Error::UnsafePath {
            path: name.into(),
            reason: "NUL in a name",
        })?;
        // SAFETY: mkdirat/openat on a descriptor we hold, a NUL-terminated name.
        if unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), DIR_MODE) } != 0 {
            return Err(io_err("create dir", &shown)(std::io::Error::last_os_error()));
        }
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags) };
        if fd < 0 {
            return Err(io_err("open", &shown)(std::io::Error::last_os_error()));
        }
        // SAFETY: a descriptor the kernel just gave us.
        let held = HeldDir::new(unsafe { OwnedFd::from_raw_fd(fd) });
        // Exactly 0700, whatever the umask.
        if unsafe { libc::fchmod(held.fd.as_raw_fd(), DIR_MODE) } != 0 {
            return Err(io_err("chmod", &shown)(std::io::Error::last_os_error()));
        }
        Ok(held)
    }

    /// A new 0600 file `name` in this directory, for writing: `O_EXCL`
    /// and `O_NOFOLLOW`, so an entry planted under the name (a symlink to
    /// a host file) fails the create instead of being written through.
    pub(crate) fn create_new(&self, name: &str) -> Result<File> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let shown = self.path.join(name);
        let c = std::ffi::CString::new(name).map_err(|_| crate::Error::UnsafePath {
            path: name.into(),
            reason: "NUL in a name",
        })?;
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: openat on a descriptor we hold, a NUL-terminated name.
        let fd = unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags, FILE_MODE) };
        if fd < 0 {
            return Err(io_err("create", &shown)(std::io::Error::last_os_error()));
        }
        // SAFETY: a descriptor the kernel just gave us.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Whether the entry `name` of this directory is `other` (not a link or
    /// another directory swapped in under the name).
    pub(crate) fn holds(&self, name: &str, other: &HeldDir) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (
            fs::symlink_metadata(self.path.join(name)),
            fs::metadata(&other.path),
        ) {
            (Ok(named), Ok(held)) => {
                named.file_type().is_dir() && named.dev() == held.dev() && named.ino() == held.ino()
            }
            _ => false,
        }
    }

    /// A second descriptor of the directory (for a heartbeat).
    pub(crate) fn try_clone(&self) -> std::io::Result<File> {
        Ok(File::from(self.fd.try_clone()?))
    }
}
