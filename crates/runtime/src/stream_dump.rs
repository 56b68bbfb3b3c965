//! A streamed dump: CRIU sends each image file to the shim's streamer
//! (arch-imgstream's `Capture`), which hashes, compresses and stores it as
//! it arrives, instead of CRIU writing files by name into the image.
//!
//! It runs CRIU's CLI (`criu dump --stream`), with the options the RPC
//! dump sets: CRIU 4.1 cannot stream in swrk mode, the RPC path (it opens
//! the images directory with mode -1 and aborts in `img_streamer_init`;
//! tests/criu_swrk_stream.rs). What the CLI lacks is the notify channel:
//! a streamed dump reaches none of the `criu:<script>` fault points. Like
//! every CRIU the shim starts, it dies with the shim (`PR_SET_PDEATHSIG`).

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use arch_image::DUMP_LOG;
use arch_imgstream::{Capture, Codec, DirStore, FileRecord, Store};
use libcontainer::oci_spec::runtime::Spec;

use crate::criu_mounts::{ext_mount_map, Phase};
use crate::dump::DumpOptions;
use crate::error::{Result, RuntimeError};
use crate::namespaces::JoinedNamespaces;

/// The `criu dump --stream` arguments, as the RPC dump's options: images
/// (and the log) in the directory CRIU finds at `/proc/self/fd/{images_fd}`.
pub(crate) fn stream_dump_args(
    pid: i32,
    images_fd: RawFd,
    work_fd: Option<RawFd>,
    rootfs: &Path,
    freezer: Option<&Path>,
    ext_mounts: &[(String, String)],
    opts: &DumpOptions,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "dump",
        "--stream",
        "--tree",
        &pid.to_string(),
        "--images-dir",
        &format!("/proc/self/fd/{images_fd}"),
        "--log-file",
        DUMP_LOG,
        "-v4",
        "--root",
        &rootfs.display().to_string(),
    ]
    .map(String::from)
    .into();
    // `--manage-cgroups=MODE` is one argument (an optional value).
    let mode = match opts.dumps_cgroups() {
        true => cgroup_mode(&opts.cgroups_mode),
        false => "ignore",
    };
    args.push(format!("--manage-cgroups={mode}"));
    args.push("--link-remap".into());
    if let Some(w) = work_fd {
        args.extend(["--work-dir".into(), format!("/proc/self/fd/{w}")]);
    }
    let flags = [
        (opts.leave_running, "--leave-running"),
        (opts.ext_unix_sk, "--ext-unix-sk"),
        (opts.tcp_established, "--tcp-established"),
        (opts.file_locks, "--file-locks"),
    ];
    args.extend(
        flags
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, f)| f.to_string()),
    );
    if !opts.needs_network_lock() {
        args.extend(["--network-lock".into(), "skip".into()]);
    }
    if let Some(dir) = freezer {
        args.extend(["--freeze-cgroup".into(), dir.display().to_string()]);
    }
    for (k, v) in ext_mounts {
        args.extend(["--ext-mount-map".into(), format!("{k}:{v}")]);
    }
    args
}

/// containerd's spelling of the cgroup mode, as CRIU's CLI takes it.
fn cgroup_mode(mode: &str) -> &str {
    match mode {
        "" => "soft",
        m => m,
    }
}

/// A dump streamed through the shim: what dump.rs decided for it.
pub(crate) struct StreamedDump<'a> {
    pub spec: &'a Spec,
    /// The namespaces CRIU runs in (and so leaves out of the image).
    pub joined: &'a JoinedNamespaces,
    pub rootfs: &'a Path,
    pub freezer: Option<&'a Path>,
    pub codec: Codec,
}

pub(crate) fn dump_streamed(
    id: &str,
    pid: i32,
    how: &StreamedDump,
    opts: &DumpOptions,
) -> Result<Vec<FileRecord>> {
    let StreamedDump {
        spec,
        joined,
        rootfs,
        freezer,
        codec,
    } = *how;
    let failed = |reason: String| RuntimeError::StreamedDump {
        id: id.to_string(),
        reason,
    };
    let criu = arch_host::cmd::find_in_path("criu")
        .ok_or_else(|| failed("criu not found in PATH".into()))?;
    // CRIU gets the directory itself as an inherited descriptor: the
    // staging path (`/proc/self/fd/N/criu`) means nothing in its process.
    let images = File::open(&opts.image_dir).map_err(RuntimeError::io(format!(
        "opening {}",
        opts.image_dir.display()
    )))?;
    // With a key CRIU's log goes to the shim's private directory (it names
    // the container's files) and is sealed into the image after the dump.
    let sealing = match (&opts.crypt, &opts.seal_dir, &opts.work_dir) {
        (Some(crypt), Some(dir), None) => Some((crypt, dir.as_path())),
        _ => None,
    };
    let work_dir = sealing.map(|(_, dir)| dir).or(opts.work_dir.as_deref());
    let work = match work_dir {
        Some(w) => {
            Some(File::open(w).map_err(RuntimeError::io(format!("opening {}", w.display())))?)
        }
        None => None,
    };
    let (images_fd, work_fd) = (images.as_raw_fd(), work.as_ref().map(|w| w.as_raw_fd()));
    let args = stream_dump_args(
        pid,
        images_fd,
        work_fd,
        rootfs,
        freezer,
        &ext_mount_map(spec, Phase::Dump),
        opts,
    );
    // The streamer stores into the directory it holds, O_EXCL|O_NOFOLLOW:
    // CRIU creates no file by name there (but its log).
    let store: Arc<dyn Store> = Arc::new(FaultingStore {
        id: id.to_string(),
        inner: DirStore::open_path(&opts.image_dir).map_err(RuntimeError::io(format!(
            "opening {}",
            opts.image_dir.display()
        )))?,
    });
    let capture = Capture::start(&opts.image_dir, store, codec, opts.crypt.clone())
        .map_err(|e| failed(format!("starting the streamer: {e}")))?;
    let ran = joined
        .run(|| {
            let keep: Vec<RawFd> = std::iter::once(images_fd).chain(work_fd).collect();
            let cmd = crate::criu::criu_cli(&criu, &args, keep);
            arch_host::cmd::run(cmd, None)
        })
        .map_err(|source| RuntimeError::Namespaces {
            id: id.to_string(),
            source,
        });
    // CRIU has exited (or never ran): the capture ends either way, and
    // removes what it stored unless everything arrived.
    let captured = capture.finish();
    let log = work_dir.unwrap_or(&opts.image_dir).join(DUMP_LOG);
    let status = ran?.map_err(|e| failed(format!("running {}: {e}", criu.display())))?;
    let criu_ok = status.succeeded();
    // Where the log is once the dump ended (a sealing dump's failed one is
    // moved into the image for the record).
    let shown = match sealing {
        Some(_) => opts.image_dir.join(DUMP_LOG),
        None => log.clone(),
    };
    let criu_failed = || format!("CRIU failed, see {}", shown.display());
    let finished = match (captured, criu_ok) {
        (Ok(records), true) => Ok(records),
        // The streamer's error is the cause when it failed first (CRIU's
        // pipes broke); CRIU's own log says more either way.
        (Err(e), ok) => Err(failed(match ok {
            true => format!("the streamer: {e}"),
            false => format!("the streamer: {e}; {}", criu_failed()),
        })),
        (Ok(records), false) => {
            // CRIU failed after sending inventory.img (resuming the tree,
            // say): its word is final, nothing of the dump stays.
            if let Ok(s) = DirStore::open_path(&opts.image_dir) {
                for r in &records {
                    let _ = s.remove(&r.stored_name);
                }
            }
            Err(failed(criu_failed()))
        }
    };
    let Some((crypt, clear)) = sealing else {
        return finished;
    };
    let (mut records, sealed) =
        crate::seal_dump::after_dump(id, finished, clear, &opts.image_dir, codec, crypt)?;
    records.extend(sealed);
    let stats = crate::seal_dump::STATS_DUMP;
    records.extend(crate::seal_dump::seal_in_place(
        id,
        stats,
        &opts.image_dir,
        codec,
        crypt,
    )?);
    Ok(records)
}

/// The store with the fault point "the streamer fails mid-dump": at a
/// file's creation, with CRIU running and the tasks seized.
struct FaultingStore {
    id: String,
    inner: DirStore,
}

impl Store for FaultingStore {
    fn create(&self, name: &str) -> std::io::Result<Box<dyn arch_imgstream::StoredFile>> {
        arch_faults::hit(&self.id, arch_faults::points::STREAM_CAPTURE)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.inner.create(name)
    }
    fn open(&self, name: &str) -> std::io::Result<File> {
        self.inner.open(name)
    }
    fn remove(&self, name: &str) -> std::io::Result<()> {
        self.inner.remove(name)
    }
    fn sync_dir(&self) -> std::io::Result<()> {
        self.inner.sync_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_gets_the_rpc_dumps_options() {
        let opts = DumpOptions {
            image_dir: "/img/criu".into(),
            leave_running: true,
            tcp_established: true,
            cgroups_mode: String::new(),
            frozen: true,
            ..Default::default()
        };
        let args = stream_dump_args(
            42,
            9,
            None,
            Path::new("/run/c/rootfs"),
            Some(Path::new("/sys/fs/cgroup/c")),
            &[("/etc/hosts".into(), "/etc/hosts".into())],
            &opts,
        )
        .join(" ");
        assert_eq!(
            args,
            "dump --stream --tree 42 --images-dir /proc/self/fd/9 --log-file dump.log -v4 \
             --root /run/c/rootfs --manage-cgroups=soft --link-remap --leave-running \
             --tcp-established --freeze-cgroup /sys/fs/cgroup/c --ext-mount-map /etc/hosts:/etc/hosts"
        );
    }

    #[test]
    fn without_tcp_connections_the_network_is_not_locked() {
        let opts = DumpOptions {
            image_dir: "/img/criu".into(),
            ..Default::default()
        };
        let args = stream_dump_args(42, 9, None, Path::new("/r"), None, &[], &opts);
        let at = args.iter().position(|a| a == "--network-lock").unwrap();
        assert_eq!(args[at + 1], "skip");
        assert!(!args.iter().any(|a| a == "--tcp-established"));
    }

    #[test]
    fn arch_images_ignore_cgroups_and_containerds_keep_them() {
        let args = |own_image| {
            let opts = DumpOptions {
                own_image,
                cgroups_mode: "full".into(),
                ..Default::default()
            };
            stream_dump_args(42, 9, None, Path::new("/r"), None, &[], &opts)
        };
        assert!(args(true).contains(&"--manage-cgroups=ignore".to_string()));
        assert!(args(false).contains(&"--manage-cgroups=full".to_string()));
    }
}
