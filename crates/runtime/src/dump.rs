//! CRIU dump with rust-criu, with the options runc uses. libcontainer's own
//! checkpoint deletes the container right after a dump that stops it, racing
//! the dying processes; the shim must own that step (the Delete RPC does it).

use std::fs::{DirBuilder, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::Spec;

use crate::criu::cg_mode;
use crate::criu_mounts::{set_external_mounts, Phase};
use crate::error::{Result, RuntimeError};
use crate::image_stdio::DESCRIPTORS;
use crate::namespaces::JoinedNamespaces;
use crate::notify::{end_if_failed, Session};
use crate::quiet_network;

/// What a CRIU dump may take along, as containerd's CheckpointOptions says.
#[derive(Clone, Debug, Default)]
pub struct DumpOptions {
    pub image_dir: PathBuf,
    pub work_dir: Option<PathBuf>,
    /// Keep the container running after the dump (otherwise CRIU kills it).
    pub leave_running: bool,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub file_locks: bool,
    /// CRIU cgroup mode: "soft" (default), "full", "strict" or "ignore".
    pub cgroups_mode: String,
    /// The caller froze the container's cgroup: CRIU dumps the frozen tree
    /// (runc's FreezeCgroup) and, with `leave_running`, leaves it frozen.
    pub frozen: bool,
    /// A pre-dump (memory only, the container keeps running, dirty-page
    /// tracking reset) instead of a dump.
    pub pre_dump: bool,
    /// The pre-dump this (pre-)dump follows, relative to `image_dir`
    /// (`../pre-N`): CRIU writes only the pages dirtied since.
    pub parent_img: Option<String>,
    /// Stream CRIU's images through the shim, stored with this codec
    /// (stream_dump.rs). Not with a parent: streaming excludes parent
    /// images, so a dump after pre-dumps is never streamed.
    pub stream: Option<arch_imgstream::Codec>,
    /// Encrypt the streamed files (the host's `encryption_key_file`). A
    /// dump that cannot be streamed is then sealed from `seal_dir`, or
    /// fails: never written in the clear into `image_dir`.
    pub crypt: Option<arch_imgstream::Crypt>,
    /// With `crypt`: a private directory on this host's own disk where
    /// CRIU writes a dump that cannot stream (a terminal's) before each
    /// image is sealed into `image_dir` (seal_dump.rs).
    pub seal_dir: Option<PathBuf>,
    /// The image is ARCH's own, restored only by ARCH: a network namespace
    /// nothing in the container could change is left out of it and made
    /// afresh at restore (quiet_network.rs). Never for containerd's path.
    pub own_image: bool,
}

impl DumpOptions {
    /// Whether CRIU must lock the container's network during the dump.
    /// The lock (iptables or nft rules set and removed in the container's
    /// network namespace, and again at restore) keeps the TCP connections
    /// CRIU dumps from moving meanwhile: about 80 ms of a 170 ms dump of a
    /// small process here. Without `tcp_established` CRIU refuses to dump
    /// an established connection, so nothing is left for the lock to hold
    /// still; a connection that arrives at a listening socket during a
    /// stop's dump is lost either way, with the container it reached.
    pub(crate) fn needs_network_lock(&self) -> bool {
        self.tcp_established
    }

    /// Whether CRIU records the container's cgroups (paths and
    /// properties). ARCH restores its own images into the new spec's
    /// cgroup and ignores the image's (restore.rs), so for those CRIU runs
    /// with cgroups ignored and skips reading every controller's directory
    /// (about 10 ms of a small dump on cgroup v1); containerd's checkpoints
    /// keep them, as runc's do.
    pub(crate) fn dumps_cgroups(&self) -> bool {
        !self.own_image
    }
}

fn private_dir(path: &Path) -> Result<()> {
    match DirBuilder::new().recursive(true).mode(0o700).create(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(RuntimeError::io(format!("creating {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}

fn open_dir(path: &Path) -> Result<File> {
    File::open(path).map_err(RuntimeError::io(format!("opening {}", path.display())))
}

/// The freezer directory of a container's cgroup path under its driver:
/// in the v1 freezer hierarchy, or the unified one on v2.
pub(crate) fn freezer_dir(
    cgroup_path: &Path,
    driver: crate::cgroup_driver::CgroupDriver,
) -> PathBuf {
    let root = Path::new(arch_host::paths::CGROUP_ROOT);
    let rel = crate::cgroup_driver::cgroup_dir(cgroup_path, driver);
    match arch_host::cgroup_version(root) {
        arch_host::CgroupVersion::V2 => root.join(rel),
        _ => root.join("freezer").join(rel),
    }
}

/// Dumps `pid`'s tree; for a streamed dump, returns the streamer's
/// records of the files it stored (none otherwise).
pub(crate) fn dump(
    id: &str,
    pid: i32,
    bundle: &Path,
    state_dir: &Path,
    freezer: Option<&Path>,
    opts: &DumpOptions,
) -> Result<Vec<arch_imgstream::FileRecord>> {
    let spec = Spec::load(bundle.join("config.json"))
        .map_err(|e| RuntimeError::InvalidSpec(format!("{id}: {e}")))?;
    let ns_err = |source| RuntimeError::Namespaces {
        id: id.to_string(),
        source,
    };
    // Namespaces joined from a pod sandbox are the pod's: CRIU must see
    // them as its own to leave them out of the image (namespaces.rs); so
    // is a network namespace nothing in the container could change
    // (quiet_network.rs).
    let mut joined = JoinedNamespaces::of(&spec).map_err(ns_err)?;
    // Established connections keep theirs: their lock and repair rules
    // live in it.
    let quiet = opts.own_image && !opts.pre_dump && !opts.needs_network_lock();
    if quiet && quiet_network::is_unchangeable(&spec, state_dir) {
        joined = joined.with_own_network(pid).map_err(ns_err)?;
    }
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

    private_dir(&opts.image_dir)?;
    if opts.pre_dump {
        return crate::predump::pre_dump(id, pid, &spec, freezer, opts).map(|()| Vec::new());
    }
    // Which pipes the init had as stdio: restore maps them to new ones.
    let descriptors: Vec<String> = (0..3)
        .map(|n| {
            std::fs::read_link(format!("/proc/{pid}/fd/{n}"))
                .map_or("/dev/null".into(), |p| p.display().to_string())
        })
        .collect();
    let json = serde_json::to_vec(&descriptors).expect("strings serialise");
    // With a key, sealed like the images (seal_dump.rs): never in clear.
    let mut records = match &opts.crypt {
        None => {
            let path = opts.image_dir.join(DESCRIPTORS);
            std::fs::write(&path, json)
                .map_err(RuntimeError::io(format!("writing {}", path.display())))?;
            Vec::new()
        }
        Some(crypt) => {
            let codec = opts.stream.unwrap_or(arch_imgstream::Codec::None);
            let images = &opts.image_dir;
            vec![crate::seal_dump::seal_reader(
                id,
                DESCRIPTORS,
                &json[..],
                images,
                codec,
                crypt,
            )?]
        }
    };
    // A terminal's master is the shim's: CRIU dumps the slave only with
    // `orphan_pts_master`, which its CLI has no option for (RPC only).
    let terminal = descriptors.iter().any(|d| d.starts_with("/dev/pts/"));
    match (opts.stream, &opts.parent_img, terminal) {
        (Some(codec), None, false) => {
            let rootfs = &rootfs;
            let streamed = crate::stream_dump::StreamedDump {
                spec: &spec,
                joined: &joined,
                rootfs,
                freezer,
                codec,
            };
            records.extend(crate::stream_dump::dump_streamed(id, pid, &streamed, opts)?);
            return Ok(records);
        }
        (Some(_), Some(_), _) => log::info!("{id}: a dump after pre-dumps is not streamed"),
        (Some(_), None, true) => log::info!("{id}: a terminal's dump is not streamed"),
        (None, _, _) => {}
    }
    // With a key, a dump that cannot stream is written into the shim's
    // private directory and sealed from there (seal_dump.rs); one after
    // pre-dumps (their pages are in clear) or without such a directory is
    // refused.
    let seal = match (&opts.crypt, &opts.parent_img, &opts.seal_dir) {
        (None, _, _) => None,
        (Some(crypt), None, Some(dir)) => Some((crypt, dir)),
        (Some(_), _, _) => {
            return Err(RuntimeError::StreamedDump {
                id: id.to_string(),
                reason: "encryption at rest is configured and this dump can be neither \
                         streamed nor sealed (one after pre-dumps): refusing to write it \
                         unencrypted"
                    .into(),
            })
        }
    };
    let images_dir = seal.map_or(&opts.image_dir, |(_, dir)| dir);
    if seal.is_some() {
        private_dir(images_dir)?;
    }

    // After a pre-dump CRIU must track memory in this dump too: without
    // track_mem it takes no page from the parent (criu/mem.c).
    let mut criu = crate::criu_launch::new_criu_with(crate::criu_launch::Extra {
        track_mem: opts.parent_img.is_some(),
        skip_network_lock: !opts.needs_network_lock(),
    })
    .map_err(RuntimeError::CriuUnavailable)?;
    if let Some(parent) = &opts.parent_img {
        criu.set_parent_img(parent.clone());
    }
    set_external_mounts(&mut criu, &spec, Phase::Dump);
    let images = open_dir(images_dir)?;
    criu.set_images_dir_fd(images.as_raw_fd());
    let work = match &opts.work_dir {
        Some(w) => {
            private_dir(w)?;
            Some(open_dir(w)?)
        }
        None => None,
    };
    if let Some(w) = &work {
        criu.set_work_dir_fd(w.as_raw_fd());
    }
    criu.set_log_file(arch_image::DUMP_LOG.to_string());
    criu.set_log_level(4);
    criu.set_pid(pid);
    criu.set_root(rootfs.display().to_string());
    criu.set_leave_running(opts.leave_running);
    if let Some(dir) = freezer {
        criu.set_freeze_cgroup(dir.display().to_string());
    }
    criu.set_ext_unix_sk(opts.ext_unix_sk);
    criu.set_tcp_established(opts.tcp_established);
    criu.set_file_locks(opts.file_locks);
    criu.set_shell_job(false);
    criu.set_orphan_pts_master(true);
    criu.set_manage_cgroups(opts.dumps_cgroups());
    if opts.dumps_cgroups() {
        criu.cgroups_mode(cg_mode(&opts.cgroups_mode)?);
    }
    criu.set_link_remap(true);
    // CRIU calls back on the thread that runs it: the notify session lives there.
    let dumped = joined
        .run(|| {
            let _notify = Session::begin(&mut criu, id);
            end_if_failed(criu.dump())
        })
        .map_err(ns_err)?
        .map_err(RuntimeError::criu(id, "dump"));
    let Some((crypt, clear)) = seal else {
        return dumped.map(|()| records);
    };
    let codec = opts.stream.unwrap_or(arch_imgstream::Codec::None);
    let ((), sealed) =
        crate::seal_dump::after_dump(id, dumped, clear, &opts.image_dir, codec, crypt)?;
    records.extend(sealed);
    Ok(records)
}
