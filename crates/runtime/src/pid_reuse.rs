//! Tests of pid-reuse safety need a newcomer with exactly the pid of a
//! process they just reaped. clone3's set_tid (Linux 5.5, root) asks for
//! that pid; steering ns_last_pid instead raced every other fork on the
//! host, and CI's parallel tests won that race 50 times in a row.

use std::ffi::CString;
use std::io;
use std::process::Child;

/// `sleep 30` started with a pid we chose; killed and reaped on drop.
pub struct Newcomer(libc::pid_t);

impl Newcomer {
    /// Kills and reaps `old`, then starts a newcomer with exactly its pid.
    pub fn replacing(mut old: Child) -> Newcomer {
        let pid = old.id() as libc::pid_t;
        old.kill().expect("kill the old process");
        old.wait().expect("reap the old process");
        let newcomer = Newcomer::with_pid(pid).expect("clone3 with the reaped pid");
        assert_eq!(newcomer.pid(), pid);
        newcomer
    }

    /// Starts it with `pid`, which must be free (reaped) by now.
    fn with_pid(pid: libc::pid_t) -> io::Result<Newcomer> {
        // Built before the clone: the child may only exec or _exit.
        let prog = CString::new("/bin/sleep").expect("no NUL");
        let arg = CString::new("30").expect("no NUL");
        let argv = [prog.as_ptr(), arg.as_ptr(), std::ptr::null()];
        let tids = [pid];
        // SAFETY: clone_args is plain integers; zero is "no flags, no stack".
        let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
        args.exit_signal = libc::SIGCHLD as u64;
        args.set_tid = tids.as_ptr() as u64;
        args.set_tid_size = 1;
        // SAFETY: a fork-like clone (no CLONE_VM); the child touches only
        // the prepared strings before execv, and _exits if that fails.
        let got = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const libc::clone_args,
                std::mem::size_of::<libc::clone_args>(),
            )
        };
        if got == 0 {
            // SAFETY: see above; the child never returns into the caller.
            unsafe {
                libc::execv(prog.as_ptr(), argv.as_ptr());
                libc::_exit(127);
            }
        }
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Newcomer(got as libc::pid_t))
    }

    pub fn pid(&self) -> libc::pid_t {
        self.0
    }

    pub fn alive(&self) -> bool {
        // SAFETY: WNOHANG on our own child only reads its state.
        unsafe { libc::waitpid(self.0, std::ptr::null_mut(), libc::WNOHANG) == 0 }
    }
}

impl Drop for Newcomer {
    fn drop(&mut self) {
        // SAFETY: the pid is our unreaped child, so it names no one else.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}
