//! Extended attributes kept in the diff: `security.capability` (a file's
//! capabilities: without it a restored `ping` or `arping` loses them) and
//! the other `security.*` and `user.*` attributes. They travel as PAX
//! records `SCHILY.xattr.<name>` (GNU tar's and containerd's convention).
//!
//! Not kept: overlay's own markers (`trusted.overlay.*`, `user.overlay.*`:
//! whiteouts and opaque dirs are encoded otherwise), other `trusted.*`
//! (root-only, the kernel's business) and `security.selinux` (a file's
//! label belongs to the new container's context, which its mount sets).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The PAX record prefix for an extended attribute.
pub const PAX_PREFIX: &str = "SCHILY.xattr.";

/// Whether an attribute named `name` is written to and applied from a diff.
pub fn kept(name: &str) -> bool {
    (name.starts_with("security.") || name.starts_with("user."))
        && !name.starts_with("user.overlay.")
        && name != "security.selinux"
}

/// The kept attributes of an open file or directory, sorted by name.
pub fn read(fd: BorrowedFd) -> io::Result<Vec<(String, Vec<u8>)>> {
    let names = list(fd)?;
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(shown) = std::str::from_utf8(name) else {
            continue;
        };
        if !kept(shown) {
            continue;
        }
        let c = CString::new(name).expect("split on NUL");
        match get(fd, &c) {
            Ok(value) => out.push((shown.to_string(), value)),
            // Removed between list and get.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

/// Sets `name` to `value` on an open file or directory.
pub fn set(fd: BorrowedFd, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: valid fd, C string and buffer with its true length.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads `name` of an open file; None if it has no such attribute.
pub fn get_opt(fd: BorrowedFd, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    match get(fd, name) {
        Ok(v) => Ok(Some(v)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA | libc::ENOTSUP)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn list(fd: BorrowedFd) -> io::Result<Vec<u8>> {
    sized(|buf: &mut [u8]| {
        // SAFETY: valid fd; a null buffer with size 0 asks for the size.
        unsafe {
            libc::flistxattr(
                fd.as_raw_fd(),
                if buf.is_empty() {
                    std::ptr::null_mut()
                } else {
                    buf.as_mut_ptr().cast()
                },
                buf.len(),
            )
        }
    })
    .or_else(|e| match e.raw_os_error() {
        Some(libc::ENOTSUP) => Ok(Vec::new()),
        _ => Err(e),
    })
}

fn get(fd: BorrowedFd, name: &CStr) -> io::Result<Vec<u8>> {
    sized(|buf: &mut [u8]| {
        // SAFETY: valid fd and C string; a null buffer with size 0 asks
        // for the size.
        unsafe {
            libc::fgetxattr(
                fd.as_raw_fd(),
                name.as_ptr(),
                if buf.is_empty() {
                    std::ptr::null_mut()
                } else {
                    buf.as_mut_ptr().cast()
                },
                buf.len(),
            )
        }
    })
}

/// Calls `f` for the size, then with a buffer of it; again if the value
/// grew in between (ERANGE).
fn sized(mut f: impl FnMut(&mut [u8]) -> libc::ssize_t) -> io::Result<Vec<u8>> {
    loop {
        let n = f(&mut []);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; n as usize];
        let m = f(&mut buf);
        if m >= 0 {
            buf.truncate(m as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
}
