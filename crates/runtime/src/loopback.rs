//! A container given a network namespace of its own gets its loopback
//! brought up, as runc and crun do (runc only when it creates the
//! namespace, never in one joined by path: its creator, CNI's loopback
//! plugin or Docker, set that one up). libcontainer leaves it down, so
//! under ARCH a `ctr run` or `nerdctl run --network none` container could
//! not reach 127.0.0.1 where runc's could. A checkpoint keeps the state it
//! dumped: CRIU restores the namespace's links as they were.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use libcontainer::oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Whether `spec` asks for a new network namespace (an entry without a
/// path); one joined by path is its creator's.
pub(crate) fn creates_network_namespace(spec: &Spec) -> bool {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().clone());
    namespaces
        .iter()
        .flatten()
        .any(|ns| ns.typ() == LinuxNamespaceType::Network && ns.path().is_none())
}

/// Brings `lo` up in the network namespace of process `pid`, from a thread
/// of its own that enters the namespace and ends with it, so the caller's
/// namespace never changes.
pub(crate) fn bring_up_in(pid: i32) -> io::Result<()> {
    let ns = File::open(format!("/proc/{pid}/ns/net"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: a valid namespace descriptor; only this thread moves.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            bring_up_here()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the loopback thread panicked")))
    })
}

/// Sets `IFF_UP` on `lo` in the calling thread's network namespace (the
/// kernel then gives it 127.0.0.1/8 and ::1).
pub(crate) fn bring_up_here() -> io::Result<()> {
    let (sock, mut req) = lo_flags()?;
    // SAFETY: the union's flags member is what SIOCGIFFLAGS filled in.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the name and the flags of `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A socket in the calling thread's network namespace, and `lo`'s flags
/// read through it (SIOCGIFFLAGS).
fn lo_flags() -> io::Result<(OwnedFd, libc::ifreq)> {
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new, valid descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((sock, req))
}

/// Whether `lo` is up in the calling thread's network namespace.
#[cfg(test)]
fn is_up_here() -> io::Result<bool> {
    let (_, req) = lo_flags()?;
    // SAFETY: filled in by SIOCGIFFLAGS.
    Ok(unsafe { req.ifr_ifru.ifru_flags } & libc::IFF_UP as libc::c_short != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(namespaces: &str) -> Spec {
        let json = format!(r#"{{"ociVersion":"1.0.2","linux":{{"namespaces":{namespaces}}}}}"#);
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn only_a_namespace_without_a_path_is_created() {
        assert!(creates_network_namespace(&spec(
            r#"[{"type":"pid"},{"type":"network"}]"#
        )));
        assert!(!creates_network_namespace(&spec(
            r#"[{"type":"network","path":"/var/run/netns/cni-1"}]"#
        )));
        assert!(!creates_network_namespace(&spec(r#"[{"type":"pid"}]"#)));
    }

    /// A new namespace's loopback comes up, from another thread entering
    /// it by pid, and the caller's own namespace is untouched.
    #[test]
    fn a_new_namespace_gets_its_loopback_up() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs unit tests as root"
            );
            println!("skipping: a new network namespace needs root");
            return;
        }
        let own = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            // SAFETY: unshare moves only this thread.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            let before = is_up_here().unwrap();
            // SAFETY: gettid has no preconditions.
            tx.send((unsafe { libc::gettid() }, before)).unwrap();
            done_rx.recv().unwrap();
            is_up_here().unwrap()
        });
        let (tid, before) = rx.recv().unwrap();
        assert!(!before, "a new namespace starts with lo down");
        bring_up_in(tid).unwrap();
        bring_up_in(tid).unwrap(); // already up: nothing to do
        done_tx.send(()).unwrap();
        assert!(holder.join().unwrap(), "lo is up in the holder's namespace");
        assert_eq!(std::fs::read_link("/proc/thread-self/ns/net").unwrap(), own);
    }
}
