//! Thin `*at()` syscall wrappers. Apply works relative to directory file
//! descriptors opened with O_NOFOLLOW, one component at a time, so no path
//! string is ever re-resolved through a symlink planted by the archive.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `fd` was just returned by a successful open call and is ours.
    cvt(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open the apply root (the caller's path is trusted, so it may follow).
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: valid NUL-terminated string.
    owned(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })
}

/// Open a subdirectory, refusing symlinks (ELOOP/ENOTDIR).
pub fn open_dir_at(dir: BorrowedFd, name: &CStr) -> io::Result<OwnedFd> {
    let fl = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid fd and C string.
    owned(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), fl) })
}

/// Create a new regular file; fails if anything (even a symlink) exists.
pub fn create_file_at(dir: BorrowedFd, name: &CStr) -> io::Result<OwnedFd> {
    let fl = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid fd and C string.
    owned(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), fl, 0o600 as libc::c_uint) })
}

/// lstat relative to `dir`; `Ok(None)` if absent.
pub fn lstat_at(dir: BorrowedFd, name: &CStr) -> io::Result<Option<libc::stat>> {
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, C string and out pointer.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    match cvt(r) {
        Ok(_) => Ok(Some(st)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub fn is_symlink(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

pub fn mkdir_at(dir: BorrowedFd, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: valid fd and C string.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) }).map(drop)
}

pub fn mkfifo_at(dir: BorrowedFd, name: &CStr, mode: u32) -> io::Result<()> {
    let m = libc::S_IFIFO | (mode & 0o7777) as libc::mode_t;
    // SAFETY: valid fd and C string; S_IFIFO needs no device number.
    cvt(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), m, 0) }).map(drop)
}

pub fn symlink_at(target: &CStr, dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    // SAFETY: valid fd and C strings.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
}

/// Hard link without dereferencing a symlink source (flags = 0).
pub fn link_at(odir: BorrowedFd, oname: &CStr, ndir: BorrowedFd, nname: &CStr) -> io::Result<()> {
    // SAFETY: valid fds and C strings.
    let r = unsafe {
        libc::linkat(
            odir.as_raw_fd(),
            oname.as_ptr(),
            ndir.as_raw_fd(),
            nname.as_ptr(),
            0,
        )
    };
    cvt(r).map(drop)
}

pub fn unlink_at(dir: BorrowedFd, name: &CStr, is_dir: bool) -> io::Result<()> {
    let fl = if is_dir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: valid fd and C string.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), fl) }).map(drop)
}

/// chown (no-follow), then chmod unless it is a symlink, then mtime.
pub fn set_meta_at(dir: BorrowedFd, name: &CStr, m: &Meta, symlink: bool) -> io::Result<()> {
    let fd = dir.as_raw_fd();
    if let Some((uid, gid)) = m.owner {
        // SAFETY: valid fd and C string.
        cvt(unsafe { libc::fchownat(fd, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })?;
    }
    if !symlink {
        // Only called on entries we just created (not symlinks), so the
        // following fchmodat cannot be redirected.
        // SAFETY: valid fd and C string.
        cvt(unsafe { libc::fchmodat(fd, name.as_ptr(), m.mode as libc::mode_t, 0) })?;
    }
    let ts = times(m.mtime);
    // SAFETY: valid fd, C string and 2-element timespec array.
    cvt(unsafe { libc::utimensat(fd, name.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
        .map(drop)
}

/// Same as `set_meta_at` on an open fd (files and directories).
pub fn set_meta_fd(fd: BorrowedFd, m: &Meta) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    if let Some((uid, gid)) = m.owner {
        // SAFETY: valid fd.
        cvt(unsafe { libc::fchown(fd, uid, gid) })?;
    }
    // chmod after chown: chown clears set-uid/gid bits.
    // SAFETY: valid fd.
    cvt(unsafe { libc::fchmod(fd, m.mode as libc::mode_t) })?;
    set_mtime_fd(fd, m.mtime)
}

pub fn set_mtime_fd(fd: libc::c_int, mtime: u64) -> io::Result<()> {
    let ts = times(mtime);
    // SAFETY: valid fd and 2-element timespec array.
    cvt(unsafe { libc::futimens(fd, ts.as_ptr()) }).map(drop)
}

fn times(mtime: u64) -> [libc::timespec; 2] {
    let t = libc::timespec {
        tv_sec: mtime.min(i64::MAX as u64) as libc::time_t,
        tv_nsec: 0,
    };
    [t, t]
}

/// Ownership/mode/mtime to apply; `owner` is None when not running as root.
pub struct Meta {
    pub owner: Option<(u32, u32)>,
    pub mode: u32,
    pub mtime: u64,
}

/// Names in a directory (without "." and "..").
pub fn list_names(dir: BorrowedFd) -> io::Result<Vec<CString>> {
    // fdopendir takes ownership, so hand it a duplicate.
    let dup = dir.try_clone_to_owned()?;
    // SAFETY: `dup` is a valid directory fd whose ownership passes to the DIR.
    let d = unsafe { libc::fdopendir(std::os::fd::IntoRawFd::into_raw_fd(dup)) };
    if d.is_null() {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    loop {
        // SAFETY: `d` is a valid open DIR*.
        let ent = unsafe { libc::readdir(d) };
        if ent.is_null() {
            break;
        }
        // SAFETY: readdir returns a valid dirent with a NUL-terminated name.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            out.push(name.to_owned());
        }
    }
    // SAFETY: `d` is valid and closed exactly once.
    unsafe { libc::closedir(d) };
    Ok(out)
}

/// Remove `name` and, if it is a directory, everything under it, never
/// following symlinks. Absent is fine.
pub fn remove_all_at(dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if is_dir(&st) {
        let sub = open_dir_at(dir, name)?;
        clear_dir(sub.as_fd())?;
    }
    unlink_at(dir, name, is_dir(&st))
}

/// Empty a directory in place (used for opaque markers).
pub fn clear_dir(dir: BorrowedFd) -> io::Result<()> {
    for n in list_names(dir)? {
        remove_all_at(dir, &n)?;
    }
    Ok(())
}

/// Open a file for reading, refusing symlinks; O_NONBLOCK so a FIFO
/// swapped in never blocks (its type is checked on the descriptor).
pub fn open_read_at(dir: BorrowedFd, name: &CStr) -> io::Result<OwnedFd> {
    let fl =
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    // SAFETY: valid fd and C string.
    owned(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), fl) })
}

/// fstat of an open descriptor.
pub fn fstat(fd: BorrowedFd) -> io::Result<libc::stat> {
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out pointer.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// The target of the symlink `name` in `dir`.
pub fn readlink_at(dir: BorrowedFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: valid fd, C string and buffer with its true length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}
