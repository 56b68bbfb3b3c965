//! Restoring a checkpointed container with CRIU (rust-criu), as a new
//! container: new stdio pipes (inherit_fd keyed by descriptors.json) or a
//! new terminal (CRIU's orphan pts master), the new rootfs, external bind
//! and cgroup mounts, the restored tree as a child of the shim
//! (rst_sibling), inside the new spec's cgroup (restore_target.rs).

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use arch_faults::points;
use libcontainer::oci_spec::runtime::Spec;

use crate::cgroup_driver::CgroupDriver;
use crate::cgroup_v1::ThreadCgroup;
use crate::container::Runtime;
use crate::criu::set_cloexec;
use crate::criu_mounts::{set_external_mounts, Phase};
use crate::error::{Result, RuntimeError};
use crate::image_stdio::{read_descriptors, stdio_matches};
use crate::namespaces::JoinedNamespaces;
use crate::notify::{end_if_failed, ResumeCheck, Session};
use crate::quiet_network;

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
    /// Who manages the new container's cgroup.
    pub cgroup_driver: CgroupDriver,
    /// Run once CRIU restored the tree and before any of its tasks runs
    /// again (CRIU's post-restore notify); an error kills the tree and
    /// fails the restore (`RuntimeError::Refused`). The shim checks
    /// the memory images' digests here (arch_image::VerifyBehind).
    pub resume_check: Option<ResumeCheck>,
}

/// A restored container's init.
#[derive(Debug)]
pub struct Restored {
    pub pid: i32,
    /// The master of the terminal CRIU made for the restored process, for a
    /// restore with `terminal` set (the caller serves it like a console).
    pub pty_master: Option<OwnedFd>,
}

fn namespaces_err(id: &str) -> impl FnOnce(crate::namespaces::NamespaceError) -> RuntimeError {
    let id = id.to_string();
    move |source| RuntimeError::Namespaces { id, source }
}

fn open_dir(path: &std::path::Path) -> Result<File> {
    File::open(path).map_err(RuntimeError::io(format!("opening {}", path.display())))
}

impl Runtime {
    /// Restores the process tree; returns the restored init (and its
    /// terminal's master for a terminal restore).
    pub fn restore(&self, mut req: RestoreRequest) -> Result<Restored> {
        let id = req.id.as_str();
        // The restored container is exec'd into and dumped again like a
        // created one: the same spec as libcontainer reads it.
        crate::libcontainer_spec::normalise_bundle(&req.bundle)?;
        let spec = Spec::load(req.bundle.join("config.json"))
            .map_err(|e| RuntimeError::InvalidSpec(format!("{id}: {e}")))?;
        let descriptors = read_descriptors(id, &req.images_dir)?;
        stdio_matches(id, &descriptors, req.terminal)?;

        let mut criu = crate::criu_launch::new_criu().map_err(RuntimeError::CriuUnavailable)?;
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
                    .map_err(RuntimeError::criu(id, "restore"))?;
            }
        }
        set_external_mounts(&mut criu, &spec, Phase::Restore);
        let images = open_dir(&req.images_dir)?;
        std::fs::create_dir_all(&req.work_dir).map_err(RuntimeError::io(format!(
            "creating {}",
            req.work_dir.display()
        )))?;
        let work = open_dir(&req.work_dir)?;
        criu.set_images_dir_fd(images.as_raw_fd());
        criu.set_work_dir_fd(work.as_raw_fd());
        criu.set_log_file("restore.log".to_string());
        criu.set_log_level(4);
        criu.set_root(req.rootfs.display().to_string());
        criu.set_rst_sibling(true);
        criu.set_manage_cgroups(true);
        // The new spec's cgroup is applied by the runtime, not from the image.
        criu.cgroups_mode(rust_criu::CgMode::IGNORE);
        criu.set_link_remap(true);
        // The container exists (state) before CRIU runs, and CRIU joins its
        // cgroup at pre-restore, before it forks the tree (on cgroup v1 it
        // is even spawned from a thread inside it), so the restored tree is
        // born there: if the shim dies mid-restore, containerd's cleanup
        // (the delete action) finds and kills every restored process.
        // The tree is also born in the namespaces it joins (the new pod's).
        let mut joined = JoinedNamespaces::of(&spec).map_err(namespaces_err(id))?;
        // A network namespace of its own that the image lacks was left out
        // as unchangeable (quiet_network.rs): made afresh for the tree. One
        // the image has comes back as dumped, and stays in every dump.
        let owns_network = crate::loopback::creates_network_namespace(&spec);
        let dumped_network = quiet_network::image_has_network(&req.images_dir).map_err(
            RuntimeError::io(format!("reading {}", req.images_dir.display())),
        )?;
        if owns_network && !dumped_network {
            joined = joined.with_fresh_network(&spec);
        }
        let target = self.prepare_restore_target(id, &req.bundle, &spec, req.cgroup_driver)?;
        let resume_check = req.resume_check.take();
        // What runc runs at a restore's setup-namespaces (oci_hooks.rs).
        let hooks = crate::oci_hooks::RestoreHooks::of(&spec, id, &req.bundle);
        let job_id = id.to_string();
        let job_target = target.clone();
        let thread_cgroup = (!target.driver.is_systemd()).then(|| target.path.clone());
        // The restored init is the child of the thread that runs CRIU, and
        // gets its parent-death signal back: a thread that never exits.
        let outcome = joined.run_as_parent(move || {
            // CRIU calls back on this thread: the notify session lives here.
            let notify = Session::begin(&mut criu, &job_id);
            notify.before_restore(move |criu_pid| Ok(job_target.join(criu_pid)?));
            if let Some(check) = resume_check {
                notify.before_resume(check);
            }
            let _inside = thread_cgroup.as_deref().map(ThreadCgroup::enter);
            if let Some(hooks) = hooks {
                let home = _inside.as_ref().map(ThreadCgroup::home_tasks);
                notify.at_setup_namespaces(move |pid| {
                    Ok(hooks.run(pid, home.as_deref().unwrap_or_default())?)
                });
            }
            let restored = end_if_failed(criu.restore()).map(|()| notify.restored_pid());
            let refused = notify.refused();
            (criu, restored, refused)
        });
        let (restored, mut criu) = match outcome {
            Err(e) => (Err(namespaces_err(id)(e)), None),
            Ok((criu, Err(_), Some(refusal))) => (
                Err(RuntimeError::Refused {
                    id: id.to_string(),
                    stage: refusal.stage,
                    source: refusal.source,
                }),
                Some(criu),
            ),
            Ok((criu, restored, _)) => (
                restored.map_err(RuntimeError::criu(id, "restore")),
                Some(criu),
            ),
        };
        for fd in req.stdio.iter().flatten() {
            set_cloexec(fd, true)?;
        }
        // rust-criu receives the master without MSG_CMSG_CLOEXEC.
        let pty_master = criu.as_mut().and_then(|c| c.take_orphan_pts_master_fd());
        if let Some(fd) = &pty_master {
            set_cloexec(fd, true)?;
        }
        let pid = match restored {
            Ok(pid) if pid > 0 => pid,
            Ok(_) => {
                self.remove_restore_target(&target);
                return Err(RuntimeError::Restore {
                    id: id.to_string(),
                    reason: "CRIU did not report the restored pid",
                });
            }
            Err(e) => {
                self.remove_restore_target(&target);
                return Err(e);
            }
        };
        let adopted = arch_faults::hit(id, points::RESTORE_ADOPT)
            .map_err(|source| RuntimeError::Fault {
                id: id.to_string(),
                source,
            })
            .and_then(|_| match (&pty_master, req.terminal) {
                // Without its master the restored terminal is unreachable.
                (None, true) => Err(RuntimeError::NoTerminal { id: id.to_string() }),
                _ => Ok(()),
            })
            .and_then(|_| self.adopt(&target, &req.bundle, pid))
            .and_then(|_| match owns_network && dumped_network {
                true => quiet_network::mark_changeable(&self.state_root().join(id)).map_err(
                    RuntimeError::io(format!("marking {id}'s network as changeable")),
                ),
                false => Ok(()),
            });
        if let Err(e) = adopted {
            // CRIU succeeded but the container cannot be managed: remove it
            // entirely, so the caller can fall back to a fresh start.
            // The tree was born in its cgroup: kill it there (not by pids
            // read from /proc, which may be reused), and the init (the
            // shim's child, CRIU's rst_sibling) through its pidfd.
            let killed =
                crate::kill_all::signal_cgroup(id, &target.path, target.driver, libc::SIGKILL);
            if let Err(kill) = killed {
                log::warn!("{id}: killing the restored tree: {kill}");
            }
            let _ = crate::pidfd::ProcessRef::pin(pid).signal(libc::SIGKILL);
            self.remove_restore_target(&target);
            return Err(e);
        }
        Ok(Restored { pid, pty_master })
    }
}
