//! Restoring a checkpointed container with CRIU (rust-criu), as a new
//! container: new stdio pipes (inherit_fd keyed by descriptors.json) or a
//! new terminal (CRIU's orphan pts master), the new rootfs, external bind
//! and cgroup mounts, the restored tree as a child of the shim
//! (rst_sibling), then libcontainer state and the new spec's cgroup.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use libcgroups::common::{
    create_cgroup_manager, CgroupConfig, CgroupManager, CgroupSetup, ControllerOpt,
};
use libcontainer::config::YoukiConfig;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::oci_spec::runtime::Spec;
use nix::unistd::Pid;

use crate::container::Runtime;
use crate::error::{Result, RuntimeError};
use crate::namespaces::JoinedNamespaces;
use crate::notify::{end_failed_request, Session};

pub struct RestoreRequest<'a> {
    pub id: String,
    pub bundle: PathBuf,
    /// The new container's mounted rootfs, with the rootfs diff applied.
    pub rootfs: PathBuf,
    /// The image's criu/ directory (CRIU images and descriptors.json).
    pub images_dir: PathBuf,
    /// Where CRIU writes restore.log.
    pub work_dir: PathBuf,
    /// The new container-side ends of stdin, stdout and stderr (none for
    /// a terminal).
    pub stdio: [Option<&'a OwnedFd>; 3],
    /// The new container has a terminal: CRIU gives the restored process a
    /// new pty and hands its master to the caller.
    pub terminal: bool,
    /// Fault points armed by the reliability suite (none in production).
    pub faults: arch_faults::Plan,
}

fn restore_err(id: &str, reason: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Libcontainer {
        id: id.to_string(),
        action: "restore",
        reason: reason.to_string(),
    }
}

/// A restored container's init.
#[derive(Debug)]
pub struct Restored {
    pub pid: i32,
    /// The master of the terminal CRIU made for the restored process, for a
    /// restore with `terminal` set (the caller serves it like a console).
    pub pty_master: Option<OwnedFd>,
}

/// What the checkpointed init had as stdin, stdout and stderr
/// (descriptors.json, written at dump).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageStdio {
    /// Pipes (or files): restored onto the new container's pipes.
    Pipes,
    /// A pty slave whose master (outside the container) was not dumped.
    Terminal,
}

impl std::fmt::Display for ImageStdio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImageStdio::Pipes => "pipes",
            ImageStdio::Terminal => "a terminal",
        })
    }
}

fn read_descriptors(id: &str, images_dir: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(images_dir.join("descriptors.json"))
        .map_err(|e| restore_err(id, format!("descriptors.json: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| restore_err(id, format!("descriptors.json: {e}")))
}

fn image_stdio_of(descriptors: &[String]) -> ImageStdio {
    if descriptors
        .iter()
        .take(3)
        .any(|d| d.starts_with("/dev/pts/"))
    {
        ImageStdio::Terminal
    } else {
        ImageStdio::Pipes
    }
}

/// Checks that an image's stdio can be restored into a container with (or
/// without) a terminal: CRIU can only give a terminal to a process that had
/// one, and has nothing to put behind a terminal's pipes.
pub fn check_image_stdio(id: &str, images_dir: &Path, terminal: bool) -> Result<()> {
    stdio_matches(id, &read_descriptors(id, images_dir)?, terminal)
}

fn stdio_matches(id: &str, descriptors: &[String], terminal: bool) -> Result<()> {
    let image = image_stdio_of(descriptors);
    let wanted = if terminal {
        ImageStdio::Terminal
    } else {
        ImageStdio::Pipes
    };
    if image != wanted {
        return Err(RuntimeError::StdioMismatch {
            id: id.to_string(),
            image,
            wanted,
        });
    }
    Ok(())
}

impl Runtime {
    /// Restores the process tree; returns the restored init (and its
    /// terminal's master for a terminal restore).
    pub fn restore(&self, req: RestoreRequest) -> Result<Restored> {
        let id = req.id.as_str();
        let spec = Spec::load(req.bundle.join("config.json")).map_err(|e| restore_err(id, e))?;
        let descriptors = read_descriptors(id, &req.images_dir)?;
        stdio_matches(id, &descriptors, req.terminal)?;

        let mut criu = rust_criu::Criu::new().map_err(|e| restore_err(id, e))?;
        // The pty slave the process had is "orphaned" (its master was the
        // old shim's): CRIU makes a new pair, gives the slave to the
        // process and sends the master back (the "orphan-pts-master" notify).
        criu.set_orphan_pts_master(req.terminal);
        // Pipes the process had for stdio are replaced by the new ones.
        for (n, key) in descriptors.iter().enumerate().take(3) {
            if let (true, Some(fd)) = (
                key.starts_with("pipe:"),
                req.stdio.get(n).copied().flatten(),
            ) {
                set_cloexec(fd, false)?;
                criu.add_inherit_fd(fd.as_raw_fd(), key.clone())
                    .map_err(|e| restore_err(id, e))?;
            }
        }
        set_external_mounts(&mut criu, &spec, Phase::Restore);
        let images = File::open(&req.images_dir)
            .map_err(|e| restore_err(id, format!("{}: {e}", req.images_dir.display())))?;
        std::fs::create_dir_all(&req.work_dir).map_err(|e| restore_err(id, e))?;
        let work = File::open(&req.work_dir).map_err(|e| restore_err(id, e))?;
        criu.set_images_dir_fd(images.as_raw_fd());
        criu.set_work_dir_fd(work.as_raw_fd());
        criu.set_log_file("restore.log".to_string());
        criu.set_log_level(4);
        criu.set_root(req.rootfs.display().to_string());
        criu.set_rst_sibling(true);
        criu.set_manage_cgroups(true);
        // The new spec's cgroup is applied after the restore, below.
        criu.cgroups_mode(rust_criu::CgMode::IGNORE);
        criu.set_link_remap(true);
        // The container exists (state + cgroup) before CRIU runs, and CRIU is
        // spawned from a thread inside that cgroup, so the restored tree is
        // born in it: if the shim dies mid-restore, containerd's cleanup
        // (the delete action) finds and kills every restored process.
        // The tree is also born in the namespaces it joins (the new pod's).
        let joined = JoinedNamespaces::of(&spec).map_err(|e| restore_err(id, e))?;
        let cgroup_path = self.prepare_restore_target(id, &req.bundle, &spec)?;
        let faults = &req.faults;
        let restored = joined
            .run(|| {
                // CRIU calls back on this thread: the notify session lives here.
                let notify = Session::begin(&mut criu, faults);
                let _inside = ThreadCgroup::enter(&cgroup_path);
                criu.restore().map(|()| notify.restored_pid())
            })
            .map_err(|e| restore_err(id, e))
            .and_then(|r| {
                r.map_err(|e| {
                    end_failed_request();
                    restore_err(id, e)
                })
            });
        for fd in req.stdio.iter().flatten() {
            set_cloexec(fd, true)?;
        }
        // rust-criu receives the master without MSG_CMSG_CLOEXEC.
        let pty_master = criu.take_orphan_pts_master_fd();
        if let Some(fd) = &pty_master {
            set_cloexec(fd, true)?;
        }
        let pid = match restored {
            Ok(pid) => pid,
            Err(e) => {
                self.remove_restore_target(id, &cgroup_path);
                return Err(e);
            }
        };
        if pid <= 0 {
            return Err(restore_err(id, "CRIU did not report the restored pid"));
        }
        let adopted = req
            .faults
            .hit("restore:adopt")
            .map_err(|e| restore_err(id, e))
            .and_then(|_| match (&pty_master, req.terminal) {
                // Without its master the restored terminal is unreachable.
                (None, true) => Err(RuntimeError::NoTerminal { id: id.to_string() }),
                _ => Ok(()),
            })
            .and_then(|_| self.adopt(id, &req.bundle, &spec, pid));
        if let Err(e) = adopted {
            // CRIU succeeded but the container cannot be managed: remove it
            // entirely, so the caller can fall back to a fresh start.
            for p in process_tree(pid) {
                let _ = nix::sys::signal::kill(Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
            }
            self.remove_restore_target(id, &cgroup_path);
            return Err(e);
        }
        Ok(Restored { pid, pty_master })
    }

    /// Makes a restored tree a libcontainer container: state, config and cgroup.
    /// libcontainer state (no process yet) and the new spec's cgroup, with
    /// its resources applied; returns the cgroup path.
    fn prepare_restore_target(&self, id: &str, bundle: &Path, spec: &Spec) -> Result<PathBuf> {
        let dir = self.state_root().join(id);
        std::fs::create_dir_all(&dir).map_err(|e| restore_err(id, e))?;
        let config = YoukiConfig::from_spec(spec, id).map_err(|e| restore_err(id, e))?;
        config.save(&dir).map_err(|e| restore_err(id, e))?;
        let mut container = Container::new(id, ContainerStatus::Creating, None, bundle, &dir)
            .map_err(|e| restore_err(id, e))?;
        container.set_systemd(false);
        container.save().map_err(|e| restore_err(id, e))?;
        let default_resources = Default::default();
        let resources = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .unwrap_or(&default_resources);
        let opt = ControllerOpt {
            resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        };
        create_v1_cgroup_dirs(&config.cgroup_path)
            .map_err(|e| restore_err(id, format!("cgroup: {e}")))?;
        cgroup_manager(id, &config.cgroup_path)?
            .apply(&opt)
            .map_err(|e| restore_err(id, format!("cgroup resources: {e}")))?;
        Ok(config.cgroup_path)
    }

    /// Undoes `prepare_restore_target` after a failed restore.
    fn remove_restore_target(&self, id: &str, cgroup_path: &Path) {
        if let Ok(manager) = cgroup_manager(id, cgroup_path) {
            let _ = manager.remove();
        }
        let _ = std::fs::remove_dir_all(self.state_root().join(id));
    }

    fn adopt(&self, id: &str, bundle: &Path, spec: &Spec, pid: i32) -> Result<()> {
        let dir = self.state_root().join(id);
        let config = YoukiConfig::from_spec(spec, id).map_err(|e| restore_err(id, e))?;
        let mut container = Container::new(id, ContainerStatus::Running, Some(pid), bundle, &dir)
            .map_err(|e| restore_err(id, e))?;
        container.set_systemd(false);
        container.save().map_err(|e| restore_err(id, e))?;
        // Where the thread trick is unavailable (cgroup v2), move them now.
        let manager = cgroup_manager(id, &config.cgroup_path)?;
        for p in process_tree(pid) {
            if let Err(e) = manager.add_task(Pid::from_raw(p)) {
                // A short-lived child may exit between listing and moving.
                if Path::new(&format!("/proc/{p}")).exists() {
                    return Err(restore_err(id, format!("cgroup add {p}: {e}")));
                }
            }
        }
        Ok(())
    }
}

fn cgroup_manager(id: &str, path: &Path) -> Result<libcgroups::common::AnyCgroupManager> {
    create_cgroup_manager(CgroupConfig {
        cgroup_path: path.to_path_buf(),
        systemd_cgroup: false,
        container_name: id.to_string(),
    })
    .map_err(|e| restore_err(id, format!("cgroup: {e}")))
}

/// The v1 controllers libcgroups manages (it also removes their dirs).
const V1_CONTROLLERS: [&str; 12] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "hugetlb",
    "memory",
    "pids",
    "perf_event",
    "blkio",
    "net_prio",
    "net_cls",
    "freezer",
];

/// libcgroups v1 creates a container's directories only when it adds a
/// process; a restore needs them before any process exists.
fn create_v1_cgroup_dirs(path: &Path) -> std::io::Result<()> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    for mp in cgroup_v1_mount_points() {
        let name = Path::new(&mp)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if !name.split(',').any(|c| V1_CONTROLLERS.contains(&c)) {
            continue;
        }
        let mut dir = PathBuf::from(&mp);
        for part in rel.components() {
            let parent = dir.clone();
            dir.push(part);
            std::fs::create_dir_all(&dir)?;
            if name.split(',').any(|c| c == "cpuset") {
                // A cpuset without cpus and mems accepts no task.
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    if std::fs::read_to_string(dir.join(f))
                        .unwrap_or_default()
                        .trim()
                        .is_empty()
                    {
                        std::fs::write(
                            dir.join(f),
                            std::fs::read_to_string(parent.join(f))?.trim(),
                        )?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Moves the calling thread into a container's cgroup v1 hierarchies (v1
/// moves single threads; children inherit the forking thread's cgroups)
/// and back out when dropped. A no-op where that is not possible (v2).
struct ThreadCgroup {
    moved: Vec<(PathBuf, PathBuf)>,
}

impl ThreadCgroup {
    fn enter(path: &Path) -> Self {
        let tid = nix::unistd::gettid().as_raw();
        let rel = path.strip_prefix("/").unwrap_or(path);
        let own = std::fs::read_to_string("/proc/thread-self/cgroup").unwrap_or_default();
        let mut moved = Vec::new();
        for mp in cgroup_v1_mount_points() {
            let target = Path::new(&mp).join(rel).join("tasks");
            let Some(back) = own_cgroup(&own, &mp) else {
                continue;
            };
            if target.exists() && std::fs::write(&target, tid.to_string()).is_ok() {
                moved.push((
                    Path::new(&mp)
                        .join(back.trim_start_matches('/'))
                        .join("tasks"),
                    target,
                ));
            }
        }
        ThreadCgroup { moved }
    }
}

impl Drop for ThreadCgroup {
    fn drop(&mut self) {
        let tid = nix::unistd::gettid().as_raw().to_string();
        for (back, _) in &self.moved {
            let _ = std::fs::write(back, &tid);
        }
    }
}

/// The calling thread's cgroup in the v1 hierarchy mounted at `mount_point`
/// (the controllers are the mount point's last path element).
fn own_cgroup(proc_cgroup: &str, mount_point: &str) -> Option<String> {
    let name = Path::new(mount_point)
        .file_name()?
        .to_string_lossy()
        .to_string();
    proc_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = controllers
            .split(',')
            .any(|c| c == name || c == format!("name={name}"))
            || controllers == name;
        matches.then(|| path.to_string())
    })
}

/// CRIU inherits the descriptors it passes on (inherit_fd), so they must
/// survive its exec; everywhere else they stay close-on-exec.
fn set_cloexec(fd: &OwnedFd, on: bool) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(flags))
        .map(|_| ())
        .map_err(|e| RuntimeError::Io {
            context: "setting FD_CLOEXEC around CRIU".into(),
            source: e.into(),
        })
}

/// Which side of a checkpoint CRIU is told about external mounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Dump,
    Restore,
}

/// Bind mounts and cgroup v1 hierarchies are outside the container's own
/// mounts. CRIU's external-mount map means different things per phase: at
/// dump `mountpoint -> name` (the name is stored in the image), at restore
/// `name -> source`. The name is the destination, which the new spec has
/// too; the source is not stable (Docker's /etc/hosts lives under the
/// container's id, so a new container with the same key has another one).
pub(crate) fn set_external_mounts(criu: &mut rust_criu::Criu, spec: &Spec, phase: Phase) {
    for (key, val) in ext_mount_map(spec, phase) {
        criu.set_external_mount(key, val);
    }
}

/// The (key, value) pairs of CRIU's external-mount map for `phase`.
fn ext_mount_map(spec: &Spec, phase: Phase) -> Vec<(String, String)> {
    external_mounts(spec)
        .into_iter()
        .map(|(dest, src)| match phase {
            Phase::Dump => (dest.clone(), dest),
            Phase::Restore => (dest, src),
        })
        .collect()
}

/// (destination, source) of the spec's mounts that CRIU must treat as
/// external.
fn external_mounts(spec: &Spec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let is_bind = m
            .options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind");
        if is_bind {
            let dest = m.destination().display().to_string();
            let src = m
                .source()
                .as_ref()
                .map(|s| s.display().to_string())
                .unwrap_or_else(|| dest.clone());
            out.push((dest, src));
        } else if m.typ().as_deref() == Some("cgroup") {
            for mp in cgroup_v1_mount_points() {
                out.push((mp.clone(), mp));
            }
        }
    }
    out
}

fn cgroup_v1_mount_points() -> Vec<String> {
    match libcgroups::common::get_cgroup_setup() {
        Ok(CgroupSetup::Legacy | CgroupSetup::Hybrid) => {
            libcgroups::v1::util::list_subsystem_mount_points()
                .map(|mps| {
                    mps.into_iter()
                        .map(|p| p.display().to_string())
                        .filter(|p| p.starts_with("/sys/fs/cgroup"))
                        .collect()
                })
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// `pid` and all its descendants, from /proc/<pid>/task/*/children.
pub fn process_tree(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                let children =
                    std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                out.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<i32>().ok()),
                );
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn bind_mounts_are_named_by_destination() {
        let spec: libcontainer::oci_spec::runtime::Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","mounts":[
                {"destination":"/etc/hosts","type":"bind","source":"/c/1/hosts","options":["rbind","rprivate"]},
                {"destination":"/proc","type":"proc","source":"proc"}]}"#,
        )
        .unwrap();
        let pair = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        // The image records the name; a restore maps it to the new source.
        assert_eq!(
            super::ext_mount_map(&spec, super::Phase::Dump),
            pair("/etc/hosts", "/etc/hosts")
        );
        assert_eq!(
            super::ext_mount_map(&spec, super::Phase::Restore),
            pair("/etc/hosts", "/c/1/hosts")
        );
    }

    #[test]
    fn a_terminal_restores_only_into_a_terminal() {
        let d = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let tty = d(&["/dev/pts/0", "/dev/pts/0", "/dev/pts/0"]);
        let pipes = d(&["pipe:[1]", "pipe:[2]", "pipe:[3]"]);
        let detached = d(&["/dev/null", "pipe:[2]", "pipe:[2]"]);
        assert!(super::stdio_matches("c", &tty, true).is_ok());
        assert!(super::stdio_matches("c", &pipes, false).is_ok());
        assert!(super::stdio_matches("c", &detached, false).is_ok());
        let e = super::stdio_matches("c", &pipes, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("had pipes") && e.contains("wants a terminal"),
            "{e}"
        );
        let e = super::stdio_matches("c", &tty, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("had a terminal") && e.contains("wants pipes"),
            "{e}"
        );
    }

    #[test]
    fn process_tree_includes_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let tree = super::process_tree(std::process::id() as i32);
        let _ = child.kill();
        let _ = child.wait();
        assert!(tree.contains(&(child.id() as i32)), "{tree:?}");
    }
}
