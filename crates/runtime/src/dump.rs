//! CRIU dump with rust-criu, with the options runc uses. libcontainer's own
//! checkpoint deletes the container right after a dump that stops it, racing
//! the dying processes; the shim must own that step (the Delete RPC does it).

use std::fs::{DirBuilder, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use libcontainer::oci_spec::runtime::Spec;

use crate::container::DumpOptions;
use crate::error::{Result, RuntimeError};
use crate::namespaces::JoinedNamespaces;
use crate::notify::{end_failed_request, Session};
use crate::restore::{set_external_mounts, Phase};

fn dump_err(id: &str, reason: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Libcontainer {
        id: id.to_string(),
        action: "checkpoint",
        reason: reason.to_string(),
    }
}

fn private_dir(path: &Path) -> std::io::Result<()> {
    match DirBuilder::new().recursive(true).mode(0o700).create(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

pub(crate) fn dump(
    id: &str,
    pid: i32,
    bundle: &Path,
    opts: &DumpOptions,
    cg_mode: rust_criu::CgMode,
) -> Result<()> {
    let spec = Spec::load(bundle.join("config.json")).map_err(|e| dump_err(id, e))?;
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| "rootfs".into());
    let rootfs = if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    };

    private_dir(&opts.image_dir)
        .map_err(|e| dump_err(id, format!("{}: {e}", opts.image_dir.display())))?;
    // Which pipes the init had as stdio: restore maps them to new ones.
    let descriptors: Vec<String> = (0..3)
        .map(|n| {
            std::fs::read_link(format!("/proc/{pid}/fd/{n}"))
                .map_or("/dev/null".into(), |p| p.display().to_string())
        })
        .collect();
    let json = serde_json::to_vec(&descriptors).map_err(|e| dump_err(id, e))?;
    std::fs::write(opts.image_dir.join("descriptors.json"), json).map_err(|e| dump_err(id, e))?;

    let mut criu = rust_criu::Criu::new().map_err(|e| dump_err(id, e))?;
    set_external_mounts(&mut criu, &spec, Phase::Dump);
    let images = File::open(&opts.image_dir).map_err(|e| dump_err(id, e))?;
    criu.set_images_dir_fd(images.as_raw_fd());
    let work = match &opts.work_dir {
        Some(w) => {
            private_dir(w).map_err(|e| dump_err(id, format!("{}: {e}", w.display())))?;
            Some(File::open(w).map_err(|e| dump_err(id, e))?)
        }
        None => None,
    };
    if let Some(w) = &work {
        criu.set_work_dir_fd(w.as_raw_fd());
    }
    criu.set_log_file("dump.log".to_string());
    criu.set_log_level(4);
    criu.set_pid(pid);
    criu.set_root(rootfs.display().to_string());
    criu.set_leave_running(opts.leave_running);
    criu.set_ext_unix_sk(opts.ext_unix_sk);
    criu.set_tcp_established(opts.tcp_established);
    criu.set_file_locks(opts.file_locks);
    criu.set_shell_job(false);
    criu.set_orphan_pts_master(true);
    criu.set_manage_cgroups(true);
    criu.cgroups_mode(cg_mode);
    criu.set_link_remap(true);
    // Namespaces joined from a pod sandbox are the pod's: CRIU must see
    // them as its own to leave them out of the image (namespaces.rs). CRIU
    // calls back on the thread that runs it: the notify session lives there.
    let faults = &opts.faults;
    JoinedNamespaces::of(&spec)
        .map_err(|e| dump_err(id, e))?
        .run(|| {
            let _notify = Session::begin(&mut criu, faults);
            criu.dump()
        })
        .map_err(|e| dump_err(id, e))?
        .map_err(|e| {
            end_failed_request();
            dump_err(id, e)
        })
}
