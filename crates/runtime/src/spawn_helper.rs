//! Each create and exec runs in a helper: the shim's own binary, exec'd
//! for the one request and gone after it.
//!
//! The shim is multi-threaded, and libcontainer forks (clones) and then
//! runs Rust code in the child: a fork of a multi-threaded process may
//! inherit a lock (the allocator's, say) that another thread held, and
//! hang on it. An exec'd process is single-threaded from its first
//! instruction, so the helper may fork freely. (A zygote forked at the
//! shim's start did the same job, but it stayed for the container's life:
//! 2 MiB of RSS in every idle container.)
//!
//! The request goes as JSON on the helper's stdin, the reply comes back as
//! one JSON line on its stdout (one line, not EOF: what the helper forks
//! may hold a copy of that pipe until it execs). The new process's stdio
//! descriptors are inherited, their numbers in the request; every other
//! descriptor is close-on-exec first, so the helper, and the container,
//! get only what they are given. The helper is started from a thread that
//! outlives its children (parent_thread.rs: what it builds "as sibling" is that
//! thread's child), so it dies with the shim (`PR_SET_PDEATHSIG`), and the
//! shim's reaper reaps it like any other child: this side never waits for
//! it.

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio as ChildStdio};

use serde::{Deserialize, Serialize};

use crate::spawn::Job;

/// `argv[0]` of a helper: how the shim's `main` knows it is one.
const HELPER_ARG0: &str = "arch-spawn-helper";
const SELF_EXE: &str = "/proc/self/exe";

/// What the helper sends back: the new process's pid, or why there is none.
pub(crate) type Reply = std::result::Result<i32, String>;

#[derive(Serialize, Deserialize)]
struct Request {
    job: Job,
    /// stdin, stdout and stderr for the new process, inherited.
    stdio: [Option<RawFd>; 3],
}

/// Runs `job` in a new helper, handing it the `stdio` descriptors.
pub(crate) fn run_in_helper(job: Job, stdio: [Option<&OwnedFd>; 3]) -> io::Result<Reply> {
    use std::os::fd::AsRawFd;
    let fds = stdio.map(|fd| fd.map(AsRawFd::as_raw_fd));
    let request = serde_json::to_vec(&Request { job, stdio: fds })?;
    let mut cmd = Command::new(SELF_EXE);
    cmd.arg0(HELPER_ARG0)
        .stdin(ChildStdio::piped())
        .stdout(ChildStdio::piped())
        .stderr(ChildStdio::null());
    let inherited: Vec<RawFd> = fds.into_iter().flatten().collect();
    // SAFETY: between fork and exec the closure makes only syscalls (no
    // allocation, no lock): prctl, close_range and fcntl.
    unsafe { cmd.pre_exec(move || prepare_child(&inherited)) };
    let mut child = cmd.spawn()?;
    let (Some(mut to_helper), Some(from_helper)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(io::Error::other("the spawn helper has no pipes"));
    };
    to_helper.write_all(&request)?;
    drop(to_helper);
    let mut line = String::new();
    BufReader::new(from_helper).read_line(&mut line)?;
    // Not waited for here: the shim's reaper takes every child's exit.
    drop(child);
    if line.is_empty() {
        return Err(io::Error::other("the spawn helper exited without a reply"));
    }
    Ok(serde_json::from_str(&line)?)
}

/// In the forked child, before exec.
fn prepare_child(inherited: &[RawFd]) -> io::Result<()> {
    // SAFETY: plain syscalls on this (forked) process's own state.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return Err(io::Error::last_os_error());
        }
        // A descriptor someone opened without O_CLOEXEC must not reach the
        // container. (ENOSYS before Linux 5.11: then only those remain.)
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        for &fd in inherited {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Call first thing in `main`: run as a helper, this does the request and
/// exits; otherwise it returns at once.
pub fn spawn_helper_main() {
    if std::env::args_os().next().as_deref() != Some(OsStr::new(HELPER_ARG0)) {
        return;
    }
    let code = match serve_one() {
        Ok(()) => 0,
        Err(_) => 1,
    };
    std::process::exit(code);
}

fn serve_one() -> io::Result<()> {
    let mut request = Vec::new();
    io::stdin().read_to_end(&mut request)?;
    // The reply goes on a close-on-exec copy of stdout; the standard
    // streams become /dev/null, which is what the helper's children get.
    // SAFETY: fcntl and dup2 on this process's own descriptors.
    let reply_fd = unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_DUPFD_CLOEXEC, 3) };
    if reply_fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor fcntl just made for us.
    let mut reply_to = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(reply_fd) });
    detach_stdio();
    let reply: Reply = match serde_json::from_slice::<Request>(&request) {
        Ok(Request { job, stdio }) => {
            // SAFETY: inherited for this request, owned by nothing else here.
            let stdio = stdio.map(|fd| fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            job.run(stdio)
        }
        Err(e) => Err(format!("a malformed spawn request: {e}")),
    };
    let mut line = serde_json::to_vec(&reply)?;
    line.push(b'\n');
    reply_to.write_all(&line)
}

fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..=2 {
            let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd);
        }
    }
}
