//! Namespaces a container joins rather than owns: a Kubernetes pod's
//! containers join the sandbox's IPC namespace (and its UTS and network
//! namespaces when the pod has its own network), given in the spec as paths.
//!
//! CRIU dumps every namespace of the tree that differs from its own and
//! re-creates those at restore. A joined namespace belongs to the pod, not
//! the container: dumping it would copy the whole pod's SysV IPC objects,
//! and restoring would put the container in a namespace of its own, cut off
//! from the new pod. So CRIU runs inside the joined namespaces: at dump they
//! are "the host's" to it and not dumped; at restore the tree is born in
//! them (the new spec's paths: the new pod's).
//!
//! runc gets there differently (`--external` for net and pid namespaces,
//! `join_ns` for the others); rust-criu has no `join_ns`, and CRIU's
//! join_ns still restores the dumped IPC objects into the joined namespace.

use std::fs::File;
use std::os::fd::AsRawFd;

use libcontainer::oci_spec::runtime::{LinuxNamespaceType, Spec};

/// A kind of namespace a thread can enter alone (setns(2) refuses the mount
/// and user namespaces in a multi-threaded process; PID namespaces apply
/// only to children and are not supported here).
struct Kind {
    typ: LinuxNamespaceType,
    /// Its name under `/proc/<pid>/ns/`.
    name: &'static str,
    flag: libc::c_int,
}

const NET: Kind = Kind {
    typ: LinuxNamespaceType::Network,
    name: "net",
    flag: libc::CLONE_NEWNET,
};

const KINDS: [Kind; 3] = [
    Kind {
        typ: LinuxNamespaceType::Ipc,
        name: "ipc",
        flag: libc::CLONE_NEWIPC,
    },
    Kind {
        typ: LinuxNamespaceType::Uts,
        name: "uts",
        flag: libc::CLONE_NEWUTS,
    },
    NET,
];

/// An open namespace of one of the [`KINDS`].
struct Handle {
    kind: &'static Kind,
    file: File,
}

impl Handle {
    fn open(kind: &'static Kind, path: impl AsRef<std::path::Path>) -> std::io::Result<Handle> {
        Ok(Handle {
            kind,
            file: File::open(path)?,
        })
    }

    /// Moves the calling thread in: one raw syscall, so a forked child may
    /// call it before exec.
    fn enter(&self) -> std::io::Result<()> {
        // SAFETY: a valid namespace fd; affects only the calling thread.
        if unsafe { libc::setns(self.file.as_raw_fd(), self.kind.flag) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Namespaces to come back to: a thread that runs CRIU in a container's
/// namespaces returns to its own after the job (parent_thread.rs), and a
/// process it starts runs in the shim's (oci_hooks.rs).
pub(crate) struct Home(Vec<Handle>);

impl Home {
    /// The calling thread's namespaces of every kind.
    pub(crate) fn of_this_thread() -> std::io::Result<Home> {
        KINDS
            .iter()
            .map(|kind| Handle::open(kind, format!("/proc/thread-self/ns/{}", kind.name)))
            .collect::<std::io::Result<_>>()
            .map(Home)
    }

    /// The process's namespaces that the calling thread has left: none
    /// when it is where the shim is.
    pub(crate) fn left_by_this_thread() -> Home {
        let link = |base: &str, kind: &Kind| std::fs::read_link(format!("{base}/ns/{}", kind.name));
        Home(
            KINDS
                .iter()
                .filter(|kind| {
                    link("/proc/self", kind).ok() != link("/proc/thread-self", kind).ok()
                })
                .filter_map(|kind| Handle::open(kind, format!("/proc/self/ns/{}", kind.name)).ok())
                .collect(),
        )
    }

    /// Moves the calling thread into them: raw syscalls only, so a forked
    /// child may call it before exec.
    pub(crate) fn enter(&self) -> std::io::Result<()> {
        self.0.iter().try_for_each(Handle::enter)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("joined {kind} namespace {path}: {source}")]
    Open {
        kind: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("entering the joined {kind} namespace: {source}")]
    Enter {
        kind: &'static str,
        source: std::io::Error,
    },
    #[error("the thread running CRIU in the joined namespaces panicked")]
    Panicked,
    #[error("no thread to run CRIU in the joined namespaces: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the container's network namespace (pid {pid}): {source}")]
    Own { pid: i32, source: std::io::Error },
    #[error("making a new network namespace for the restore: {0}")]
    Fresh(#[source] std::io::Error),
    #[error(transparent)]
    Parent(#[from] crate::parent_thread::ParentThreadError),
}

/// Open handles on the namespaces a spec joins by path.
pub(crate) struct JoinedNamespaces {
    joined: Vec<Handle>,
    /// Made on CRIU's thread after joining (quiet_network.rs): the spec
    /// whose loopback and `net.*` sysctls it gets.
    fresh_network: Option<Spec>,
}

impl JoinedNamespaces {
    pub(crate) fn of(spec: &Spec) -> Result<Self, NamespaceError> {
        let mut joined = Vec::new();
        let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().clone());
        for ns in namespaces.iter().flatten() {
            let Some(kind) = KINDS.iter().find(|k| k.typ == ns.typ()) else {
                continue;
            };
            let Some(path) = ns.path() else { continue };
            let handle = Handle::open(kind, path).map_err(|source| NamespaceError::Open {
                kind: kind.name,
                path: path.display().to_string(),
                source,
            })?;
            joined.push(handle);
        }
        Ok(JoinedNamespaces {
            joined,
            fresh_network: None,
        })
    }

    /// Also runs CRIU in container `pid`'s own network namespace, so a
    /// dump leaves it out (quiet_network.rs).
    pub(crate) fn with_own_network(mut self, pid: i32) -> Result<Self, NamespaceError> {
        let handle = Handle::open(&NET, format!("/proc/{pid}/ns/{}", NET.name))
            .map_err(|source| NamespaceError::Own { pid, source })?;
        self.joined.push(handle);
        Ok(self)
    }

    /// Also runs CRIU in a new network namespace set up as `spec` asks, so
    /// a restore whose image has none puts the tree there (quiet_network.rs).
    pub(crate) fn with_fresh_network(mut self, spec: &Spec) -> Self {
        self.fresh_network = Some(spec.clone());
        self
    }

    /// Runs `f` on a thread of its own inside the joined namespaces, so the
    /// CRIU that `f` starts inherits them; the calling thread never moves.
    pub(crate) fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NamespaceError> {
        if self.is_empty() {
            return Ok(f());
        }
        std::thread::scope(|s| {
            let joined = std::thread::Builder::new().name("criu-joined-ns".into());
            joined
                .spawn_scoped(s, || self.enter().map(|()| f()))
                .map_err(NamespaceError::Thread)?
                .join()
                .map_err(|_| NamespaceError::Panicked)?
        })
    }

    /// As [`Self::run`], on a thread that outlives its children (parent_thread.rs):
    /// for a restore, whose init is that thread's child.
    pub(crate) fn run_as_parent<T: Send + 'static>(
        self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NamespaceError> {
        crate::parent_thread::run(move || self.enter().map(|()| f()))?
    }

    fn is_empty(&self) -> bool {
        self.joined.is_empty() && self.fresh_network.is_none()
    }

    /// Moves the calling thread into the joined namespaces (and a fresh
    /// network namespace, if asked).
    fn enter(&self) -> Result<(), NamespaceError> {
        for handle in &self.joined {
            handle.enter().map_err(|source| NamespaceError::Enter {
                kind: handle.kind.name,
                source,
            })?;
        }
        if let Some(spec) = &self.fresh_network {
            // SAFETY: unshare moves only this thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(NamespaceError::Fresh(std::io::Error::last_os_error()));
            }
            crate::quiet_network::set_up_fresh(spec).map_err(NamespaceError::Fresh)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libcontainer::oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, SpecBuilder};

    fn spec(namespaces: Vec<(LinuxNamespaceType, Option<&str>)>) -> Spec {
        let namespaces = namespaces
            .into_iter()
            .map(|(typ, path)| {
                let mut b = LinuxNamespaceBuilder::default().typ(typ);
                if let Some(p) = path {
                    b = b.path(p);
                }
                b.build().unwrap()
            })
            .collect::<Vec<_>>();
        SpecBuilder::default()
            .linux(
                LinuxBuilder::default()
                    .namespaces(namespaces)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn only_namespaces_with_a_path_are_joined() {
        let s = spec(vec![
            (LinuxNamespaceType::Ipc, Some("/proc/self/ns/ipc")),
            (LinuxNamespaceType::Uts, None),
            (LinuxNamespaceType::Pid, Some("/proc/self/ns/pid")),
            (LinuxNamespaceType::Mount, None),
        ]);
        let j = JoinedNamespaces::of(&s).unwrap();
        let kinds: Vec<_> = j.joined.iter().map(|h| h.kind.name).collect();
        assert_eq!(kinds, ["ipc"]);
    }

    #[test]
    fn a_missing_namespace_path_names_it() {
        let s = spec(vec![(LinuxNamespaceType::Network, Some("/nonexistent/ns"))]);
        let e = JoinedNamespaces::of(&s).err().unwrap().to_string();
        assert!(
            e.contains("joined net namespace") && e.contains("/nonexistent/ns"),
            "{e}"
        );
    }

    #[test]
    fn run_without_joined_namespaces_stays_on_the_calling_thread() {
        let j = JoinedNamespaces::of(&spec(vec![])).unwrap();
        let here = std::thread::current().id();
        assert_eq!(j.run(|| std::thread::current().id()).unwrap(), here);
    }

    fn ns_of(base: &str, name: &str) -> std::path::PathBuf {
        std::fs::read_link(format!("{base}/ns/{name}")).unwrap()
    }

    #[test]
    fn home_is_the_namespaces_a_thread_left_and_entering_it_goes_back() {
        std::thread::spawn(|| {
            assert!(Home::left_by_this_thread().0.is_empty());
            // SAFETY: moves only this test's own thread.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWUTS) }, 0);
            let left = Home::left_by_this_thread();
            let names: Vec<_> = left.0.iter().map(|h| h.kind.name).collect();
            assert_eq!(names, ["uts"]);
            left.enter().unwrap();
            assert_eq!(
                ns_of("/proc/thread-self", "uts"),
                ns_of("/proc/self", "uts")
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_comes_back_to_its_own_namespaces() {
        std::thread::spawn(|| {
            let own = Home::of_this_thread().unwrap();
            let before = ns_of("/proc/thread-self", "net");
            // SAFETY: moves only this test's own thread.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            assert_ne!(ns_of("/proc/thread-self", "net"), before);
            own.enter().unwrap();
            assert_eq!(ns_of("/proc/thread-self", "net"), before);
        })
        .join()
        .unwrap();
    }
}
