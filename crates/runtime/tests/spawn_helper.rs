//! The spawn helper's transport, for real: this binary runs as the helper
//! too (`/proc/self/exe`), as the shim's does, hence its own `main`.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{pipe2, Pid};

fn main() {
    arch_runtime::spawn_helper_main();
    the_helper_gets_what_it_is_given_and_nothing_else();
    println!("spawn_helper: 1 passed");
}

fn the_helper_gets_what_it_is_given_and_nothing_else() {
    // A descriptor someone opened without close-on-exec.
    let stray_file = tempfile::NamedTempFile::with_prefix("arch-stray-fd-").unwrap();
    let stray: OwnedFd = std::fs::File::open(stray_file.path()).unwrap().into();
    fcntl(stray.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    let (r, w) = pipe2(OFlag::O_CLOEXEC).unwrap();
    let passed = format!("pipe:[{}]", inode(&w));
    let pid = arch_runtime::describe_in_helper(w).unwrap();
    let mut said = String::new();
    std::fs::File::from(r).read_to_string(&mut said).unwrap();
    let mut lines = said.lines();
    let ids: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
    let me = std::process::id() as i32;
    assert_eq!(
        ids,
        [pid.to_string(), me.to_string()],
        "the helper, our child"
    );
    assert_ne!(pid, me, "a process of its own");
    let fds: Vec<&str> = lines.collect();
    assert!(
        fds.iter().any(|l| l.ends_with(&passed)),
        "{passed} not open: {fds:?}"
    );
    assert!(
        !fds.iter().any(|l| l.contains("arch-stray-fd-")),
        "the stray descriptor reached the helper: {fds:?}"
    );
    // stdio, the passed pipe, the reply pipe, and the directory read.
    assert!(fds.len() <= 6, "{fds:?}");
    // The helper exits once it replied (the shim's reaper would reap it).
    match waitpid(Pid::from_raw(pid), None).unwrap() {
        WaitStatus::Exited(_, 0) => {}
        s => panic!("the helper ended as {s:?}"),
    }
}

fn inode(fd: &OwnedFd) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap()
        .ino()
}
