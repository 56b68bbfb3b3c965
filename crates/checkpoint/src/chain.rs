//! The dump chain: an ordered list of typed steps over one context, each
//! timed, any failure stopping the chain. Dropping the context on failure
//! drops the staging directory, so nothing partial is ever left behind.

use arch_imgstream::{Codec, Crypt, FileRecord};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arch_faults::points;
use arch_image::{CgroupVersion, CommitInfo, Image, ImageStore, ProfileDigest, Staging};

use crate::error::{CheckpointError, Result};
use crate::policy::ArchIdentity;
use crate::procfs::ProcessView;

/// The container-side effects a dump needs.
pub trait Dumper {
    /// What the runtime fails with (the shim's is arch-runtime's error).
    type Error: std::error::Error + Send + Sync + 'static;
    /// Pids of every process in the container.
    fn pids(&self) -> std::result::Result<Vec<i32>, Self::Error>;
    /// CRIU-dumps the container's frozen processes into `dir` (dump.log
    /// included) and leaves them frozen. With `parent` (relative to `dir`,
    /// `../pre-N`), only pages dirtied since that pre-dump are written.
    /// A streamed dump returns the streamer's records of the files it
    /// stored in `dir` (the commit lists them without reading them again);
    /// an unstreamed one returns none.
    fn dump(
        &self,
        dir: &Path,
        parent: Option<&str>,
    ) -> std::result::Result<Vec<FileRecord>, Self::Error>;
    /// A CRIU pre-dump of the running container into `dir`: its memory,
    /// with the kernel's dirty-page tracking reset, after `parent`'s.
    fn pre_dump(&self, dir: &Path, parent: Option<&str>) -> std::result::Result<(), Self::Error>;
    /// Freezes every process of the container (cgroup freezer).
    fn freeze(&self) -> std::result::Result<(), Self::Error>;
    /// Thaws them: a checkpoint that was to end the container failed.
    fn thaw(&self) -> std::result::Result<(), Self::Error>;
    /// Ends the frozen container: its image is committed.
    fn kill_frozen(&self) -> std::result::Result<(), Self::Error>;
    /// The CRIU version, e.g. "4.1.1".
    fn criu_version(&self) -> std::result::Result<String, Self::Error>;
    /// The codec and cipher of an encrypted dump's CRIU images: the
    /// image's own files ([`arch_image::SEALED_FILES`]) are sealed with
    /// them too. None (no key on the host) writes those files as they are.
    fn sealing(&self) -> Option<(Codec, &Crypt)> {
        None
    }
}

/// A [`Dumper`] whose errors are boxed, so the chain's steps take any.
pub(crate) trait DynDumper {
    fn pids(&self) -> std::result::Result<Vec<i32>, BoxError>;
    fn dump(
        &self,
        dir: &Path,
        parent: Option<&str>,
    ) -> std::result::Result<Vec<FileRecord>, BoxError>;
    fn pre_dump(&self, dir: &Path, parent: Option<&str>) -> std::result::Result<(), BoxError>;
    fn freeze(&self) -> std::result::Result<(), BoxError>;
    fn thaw(&self) -> std::result::Result<(), BoxError>;
    fn kill_frozen(&self) -> std::result::Result<(), BoxError>;
    fn criu_version(&self) -> std::result::Result<String, BoxError>;
    fn sealing(&self) -> Option<(Codec, &Crypt)>;
}

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<D: Dumper> DynDumper for D {
    fn pids(&self) -> std::result::Result<Vec<i32>, BoxError> {
        Dumper::pids(self).map_err(Into::into)
    }
    fn dump(
        &self,
        dir: &Path,
        parent: Option<&str>,
    ) -> std::result::Result<Vec<FileRecord>, BoxError> {
        Dumper::dump(self, dir, parent).map_err(Into::into)
    }
    fn pre_dump(&self, dir: &Path, parent: Option<&str>) -> std::result::Result<(), BoxError> {
        Dumper::pre_dump(self, dir, parent).map_err(Into::into)
    }
    fn freeze(&self) -> std::result::Result<(), BoxError> {
        Dumper::freeze(self).map_err(Into::into)
    }
    fn thaw(&self) -> std::result::Result<(), BoxError> {
        Dumper::thaw(self).map_err(Into::into)
    }
    fn kill_frozen(&self) -> std::result::Result<(), BoxError> {
        Dumper::kill_frozen(self).map_err(Into::into)
    }
    fn criu_version(&self) -> std::result::Result<String, BoxError> {
        Dumper::criu_version(self).map_err(Into::into)
    }
    fn sealing(&self) -> Option<(Codec, &Crypt)> {
        Dumper::sealing(self)
    }
}

#[derive(Clone, Debug)]
pub struct DumpRequest {
    pub identity: ArchIdentity,
    pub container_id: String,
    pub bundle: PathBuf,
    /// The overlay upperdir holding the container's filesystem changes.
    pub upperdir: Option<PathBuf>,
    pub leave_running: bool,
    /// The container was paused by its user: it is dumped as it is and
    /// stays paused (unless the checkpoint ends it).
    pub paused: bool,
    /// The container's security profile, recorded in the manifest.
    pub profile: ProfileDigest,
    /// CRIU pre-dumps before the final dump (`ARCH_PREDUMP`, 0: none).
    pub predumps: u8,
}

pub struct DumpContext<'a> {
    pub req: DumpRequest,
    pub store: &'a ImageStore,
    pub(crate) dumper: &'a dyn DynDumper,
    pub procs: &'a dyn ProcessView,
    pub staging: Option<Staging>,
    pub info: CommitInfo,
    pub image: Option<Image>,
    /// The chain froze the container (see [`run_dump_chain`]).
    pub frozen: bool,
    /// When the chain froze it: the freeze time is recorded apart from
    /// the pre-dumps, which run before it (`freeze` in the durations).
    pub frozen_at: Option<Instant>,
}

impl<'a> DumpContext<'a> {
    pub fn new<D: Dumper>(
        req: DumpRequest,
        store: &'a ImageStore,
        dumper: &'a D,
        procs: &'a dyn ProcessView,
    ) -> Self {
        let info = CommitInfo {
            container_id: req.container_id.clone(),
            durations_ms: BTreeMap::new(),
            criu_version: String::new(),
            kernel: String::new(),
            arch: String::new(),
            cgroup_version: CgroupVersion::V1,
            profile: req.profile.clone(),
        };
        Self {
            req,
            store,
            dumper,
            procs,
            staging: None,
            info,
            image: None,
            frozen: false,
            frozen_at: None,
        }
    }

    /// The staging directory; steps after PrepareDir may rely on it.
    pub fn staging_dir(&self, step: &'static str) -> Result<PathBuf> {
        self.staging
            .as_ref()
            .map(|s| s.path().to_path_buf())
            .ok_or(CheckpointError::Step {
                step,
                reason: "no staging directory (PrepareDir did not run)".into(),
            })
    }
}

/// The durations' entry for the time the container was frozen by the
/// chain: from the freeze before the final dump to the thaw (or, for a
/// checkpoint that ends the container, to the commit).
pub const FREEZE: &str = "freeze";

pub trait Step {
    fn name(&self) -> &'static str;
    fn run(&self, ctx: &mut DumpContext) -> Result<()>;
}

/// What a successful chain produced, with the time each step took.
#[derive(Debug)]
pub struct DumpOutcome {
    pub image: Image,
    pub durations_ms: BTreeMap<String, u64>,
}

/// Runs the steps in order. The container is frozen from the dump on: the
/// CRIU images and the rootfs diff show the same moment (a file the process
/// appends to has the size CRIU recorded), a checkpoint that leaves the
/// container running thaws it after the rootfs diff, and one that ends it
/// kills it only once the image is committed. Any failure thaws it (and
/// the caller delivers the stop signal), so no failed checkpoint ever loses
/// the process.
pub fn run_dump_chain(steps: &[Box<dyn Step>], mut ctx: DumpContext) -> Result<DumpOutcome> {
    let mut durations = BTreeMap::new();
    for step in steps {
        let start = Instant::now();
        // Fault points around each step for the reliability suite; none
        // after the commit, which nothing may undo.
        let scope = ctx.req.container_id.clone();
        let res = arch_faults::hit(&scope, &points::before(step.name()))
            .map_err(CheckpointError::from)
            .and_then(|_| step.run(&mut ctx))
            .and_then(|_| match ctx.image {
                Some(_) => Ok(()),
                None => Ok(arch_faults::hit(&scope, &points::after(step.name()))?),
            });
        let ms = start.elapsed().as_millis() as u64;
        durations.insert(step.name().to_string(), ms);
        ctx.info.durations_ms.insert(step.name().to_string(), ms);
        if let Err(e) = res {
            log::warn!(
                "checkpoint of {} failed at step {}: {e}",
                ctx.req.container_id,
                step.name()
            );
            if ctx.frozen {
                // The process goes on; the caller delivers the stop signal.
                if let Err(t) = ctx.dumper.thaw() {
                    log::error!(
                        "{}: thawing after the failed checkpoint: {t}",
                        ctx.req.container_id
                    );
                }
            }
            return Err(e);
        }
    }
    if let Some(at) = ctx.frozen_at.take() {
        // A stopping checkpoint stays frozen through the commit.
        let ms = at.elapsed().as_millis() as u64;
        ctx.info.durations_ms.insert(FREEZE.to_string(), ms);
    }
    if let Some(ms) = ctx.info.durations_ms.get(FREEZE) {
        durations.insert(FREEZE.to_string(), *ms);
        log::info!(
            "{}: frozen {ms} ms (pre-dumps before it: {} ms)",
            ctx.req.container_id,
            durations.get("predump").copied().unwrap_or_default()
        );
    }
    if !ctx.req.leave_running {
        // Committed: now, and only now, the processes may go.
        if let Err(e) = ctx.dumper.kill_frozen() {
            log::error!(
                "{}: ending the checkpointed container: {e}",
                ctx.req.container_id
            );
        }
    }
    let image = ctx.image.take().ok_or(CheckpointError::Step {
        step: "chain",
        reason: "the chain ended without committing an image".into(),
    })?;
    Ok(DumpOutcome {
        image,
        durations_ms: durations,
    })
}
