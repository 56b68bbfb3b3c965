//! Processes signalled through pidfds. A pid names whatever process holds
//! it now: once the shim's reaper has collected a process, its pid may be
//! reused by another, anywhere on the host, and a kill(2) on it signals a
//! stranger. A pidfd (pidfd_open(2)) names one process for good: after that
//! process is gone, pidfd_send_signal(2) fails with ESRCH, whoever has the
//! pid by then.
//!
//! A process is pinned when the shim registers it: it is a child of the
//! shim (subreaper, libcontainer "as sibling", CRIU's rst_sibling), so it
//! cannot be reaped behind the shim's back. A pidfd opened just after it
//! was reaped could name a newcomer with the same pid; `waitid(P_PIDFD)`
//! tells: a newcomer is not the shim's child.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// One process, as the shim signals it.
#[derive(Debug)]
pub struct ProcessRef {
    pid: i32,
    how: How,
}

#[derive(Debug)]
enum How {
    Pidfd(OwnedFd),
    /// The kernel has no pidfds (before 5.3): by pid, as runc does there.
    Pid,
    /// The process exited before it could be pinned, or is not the shim's
    /// child: nothing is ever signalled.
    Gone,
}

impl ProcessRef {
    /// Pins the shim's child `pid`.
    pub fn pin(pid: i32) -> Self {
        let how = match pidfd_open(pid) {
            Ok(fd) if is_child(&fd) => How::Pidfd(fd),
            Ok(_) => {
                log::warn!("pid {pid} is not a child of the shim: it is never signalled");
                How::Gone
            }
            Err(Errno::ENOSYS) => How::Pid,
            Err(Errno::ESRCH) => How::Gone,
            Err(e) => {
                log::warn!("pidfd_open({pid}): {e}: signalling it by pid");
                How::Pid
            }
        };
        ProcessRef { pid, how }
    }

    /// A process known to have exited already.
    pub fn gone(pid: i32) -> Self {
        ProcessRef {
            pid,
            how: How::Gone,
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether it is signalled through a pidfd.
    pub fn pinned(&self) -> bool {
        matches!(self.how, How::Pidfd(_))
    }

    /// Sends `signal` (0: only checks it is there); ESRCH once it is gone.
    pub fn signal(&self, signal: i32) -> nix::Result<()> {
        match &self.how {
            How::Pidfd(fd) => pidfd_send_signal(fd, signal),
            How::Pid => {
                // SAFETY: kill has no memory preconditions.
                Errno::result(unsafe { libc::kill(self.pid, signal) }).map(drop)
            }
            How::Gone => Err(Errno::ESRCH),
        }
    }
}

/// `signal` to the process `fd` names; ESRCH once it is reaped.
pub(crate) fn pidfd_send_signal(fd: &OwnedFd, signal: i32) -> nix::Result<()> {
    // SAFETY: a valid pidfd; a null siginfo means "as kill(2)".
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

pub(crate) fn pidfd_open(pid: i32) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; it returns a new fd.
    let fd = Errno::result(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: a new descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the pidfd's process is a child of this process (exited or not;
/// nothing is reaped: WNOWAIT).
fn is_child(fd: &OwnedFd) -> bool {
    // SAFETY: zeroed siginfo is a valid out-buffer.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    const P_PIDFD: libc::idtype_t = 3;
    // SAFETY: valid pidfd and out pointer.
    let r = unsafe {
        libc::waitid(
            P_PIDFD,
            fd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // EINVAL: a kernel before 5.4 knows pidfds but not P_PIDFD; the
    // process was open()ed while the shim's child lived, trust it.
    r == 0 || Errno::last() == Errno::EINVAL
}

#[cfg(test)]
mod tests;
