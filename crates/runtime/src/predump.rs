//! A CRIU pre-dump: the container's memory while it keeps running, with
//! the kernel's soft-dirty bits reset after (`--track-mem`), so the next
//! (pre-)dump with this one as parent writes only the pages dirtied since.
//!
//! rust-criu has no PRE_DUMP request, so this runs CRIU's CLI, which takes
//! the same options: `criu pre-dump`. A pre-dump writes memory only (no
//! files, mounts or sockets), so it needs none of the dump's mount maps or
//! notify callbacks. Like every CRIU the shim starts, it must not outlive
//! the shim: it is started with `PR_SET_PDEATHSIG`.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use arch_image::PREDUMP_LOG;
use libcontainer::oci_spec::runtime::Spec;

use crate::dump::DumpOptions;
use crate::error::{Result, RuntimeError};
use crate::namespaces::JoinedNamespaces;

/// The `criu pre-dump` arguments for `pid` into the directory CRIU finds
/// at `/proc/self/fd/{images_fd}`.
pub(crate) fn predump_args(
    pid: i32,
    images_fd: RawFd,
    freezer: Option<&Path>,
    opts: &DumpOptions,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "pre-dump",
        "--tree",
        &pid.to_string(),
        "--images-dir",
        &format!("/proc/self/fd/{images_fd}"),
        "--log-file",
        PREDUMP_LOG,
        "-v4",
        "--track-mem",
    ]
    .map(String::from)
    .into();
    if let Some(parent) = &opts.parent_img {
        args.extend(["--prev-images-dir".into(), parent.clone()]);
    }
    if let Some(dir) = freezer {
        args.extend(["--freeze-cgroup".into(), dir.display().to_string()]);
    }
    args
}

pub(crate) fn pre_dump(
    id: &str,
    pid: i32,
    spec: &Spec,
    freezer: Option<&Path>,
    opts: &DumpOptions,
) -> Result<()> {
    let criu = arch_host::cmd::find_in_path("criu").ok_or_else(|| RuntimeError::PreDump {
        id: id.to_string(),
        reason: "criu not found in PATH".into(),
    })?;
    // The image directory is reached through the staging directory's held
    // descriptor (`/proc/self/fd/N/…`, see arch-image), a path that means
    // nothing in CRIU's process: CRIU gets the directory itself, as an
    // inherited descriptor, as rust-criu passes it for a dump.
    let images = File::open(&opts.image_dir).map_err(RuntimeError::io(format!(
        "opening {}",
        opts.image_dir.display()
    )))?;
    let images_fd = images.as_raw_fd();
    let args = predump_args(pid, images_fd, freezer, opts);
    let failed = |reason: String| RuntimeError::PreDump {
        id: id.to_string(),
        reason,
    };
    // Namespaces joined from a pod sandbox are CRIU's own, as for a dump.
    let status = JoinedNamespaces::of(spec)
        .map_err(|source| RuntimeError::Namespaces {
            id: id.to_string(),
            source,
        })?
        .run(|| {
            let cmd = crate::criu::criu_cli(&criu, &args, vec![images_fd]);
            arch_host::cmd::run(cmd, None)
        })
        .map_err(|source| RuntimeError::Namespaces {
            id: id.to_string(),
            source,
        })?
        .map_err(|e| failed(format!("running {}: {e}", criu.display())))?;
    drop(images);
    let log = opts.image_dir.join(PREDUMP_LOG);
    if status.succeeded() {
        Ok(())
    } else {
        Err(failed(format!("see {}", log.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_round_tracks_memory_and_names_its_parent() {
        let opts = DumpOptions {
            image_dir: "/img/pre-2".into(),
            pre_dump: true,
            parent_img: Some("../pre-1".into()),
            ..Default::default()
        };
        let args = predump_args(42, 9, Some(Path::new("/sys/fs/cgroup/c")), &opts).join(" ");
        assert_eq!(
            args,
            "pre-dump --tree 42 --images-dir /proc/self/fd/9 --log-file pre-dump.log -v4 --track-mem \
             --prev-images-dir ../pre-1 --freeze-cgroup /sys/fs/cgroup/c"
        );
        let first = DumpOptions {
            parent_img: None,
            ..opts
        };
        assert!(!predump_args(42, 9, None, &first)
            .join(" ")
            .contains("prev-images"));
    }
}
