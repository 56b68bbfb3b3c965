//! The ARCH lifecycle: everything a container opted in with `ARCH_ENABLE`
//! gets on top of plain runc-like behaviour. The task service asks it, at
//! each request, what ARCH makes of it:
//!
//! - Create: is the container opted in, under which key ([`Arch::identify`]);
//!   is there an image to restore, staged now ([`staging`]);
//! - Start: the staged restore, or a fresh start if it fails ([`restore`]);
//! - Kill: the stop signal checkpoints, then stops; SIGKILL waits for a
//!   checkpoint to commit ([`stop`]);
//! - an init's exit: reported only after its stop-checkpoint committed;
//! - Checkpoint: into the image store as well ([`checkpoint_rpc`]).
//!
//! Every outcome is recorded for archctl ([`records`]).

mod checkpoint_rpc;
mod copy_place;
mod dump;
mod host_local;
mod inflight;
mod local_dump;
mod periodic;
mod records;
mod restore;
mod staging;
mod stop;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arch_checkpoint::{
    arch_identity, load_trust, periodic_interval, predump_iterations, require_soft_dirty,
    ArchConfig, ArchIdentity, CheckpointError, CriuInPath, OnceProbe, ProfileContext,
    SoftDirtyProbe, DEFAULT_HOST_KEY,
};
use arch_image::{ImageStore, ProfileDigest, Trust};
use arch_runtime::oci_spec::runtime::Spec;

use crate::error::{Result, ShimError};
use crate::seams::{ContainerRuntime, RootfsMounts};

pub use inflight::InFlight;
pub use periodic::Periodic;
pub use staging::{RestoreTarget, StagedRestore};
pub use stop::{StopAction, StopGate};

/// What ARCH keeps about an opted-in container.
pub struct ArchState {
    pub identity: ArchIdentity,
    /// The overlay upperdir that holds the container's filesystem changes.
    pub upperdir: Option<PathBuf>,
    /// One stop-checkpoint at a time; the exit waits for it.
    pub gate: Arc<StopGate>,
    /// The security profile from the spec at Create: recorded in the
    /// images this container writes, compared with the image it restores.
    pub profile: ProfileDigest,
    /// `ARCH_INTERVAL`, if the container asked for periodic checkpoints.
    pub interval: Option<Duration>,
    pub periodic: Periodic,
    /// `ARCH_PREDUMP`: CRIU pre-dumps before each checkpoint's final dump.
    pub predumps: u8,
}

impl ArchState {
    pub fn new(
        identity: ArchIdentity,
        upperdir: Option<PathBuf>,
        profile: ProfileDigest,
        interval: Option<Duration>,
    ) -> Self {
        ArchState {
            identity,
            upperdir,
            gate: Arc::new(StopGate::default()),
            profile,
            interval,
            periodic: Periodic::default(),
            predumps: 0,
        }
    }
}

/// The security profile of the container `id` whose spec is `spec`;
/// `layers` names its image when the spec does not (see arch-checkpoint).
pub fn security_profile(id: &str, spec: &Spec, layers: Option<String>) -> Result<ProfileDigest> {
    let json = serde_json::to_value(spec)
        .map_err(|e| ShimError::Internal(format!("{id}: the spec does not serialize: {e}")))?;
    let ctx = ProfileContext {
        container_id: id.to_string(),
        layers,
    };
    Ok(arch_checkpoint::security_profile(&json, &ctx))
}

pub struct Arch {
    namespace: String,
    /// The host's configuration; an error fails ARCH containers only.
    config: std::result::Result<ArchConfig, CheckpointError>,
    runtime: Arc<dyn ContainerRuntime>,
    mounts: Arc<dyn RootfsMounts>,
    /// The signing key and unsigned-image policy, loaded (in basic mode
    /// the host key made) by the first ARCH container.
    trust: OnceLock<std::result::Result<Trust, String>>,
    /// Checkpoints writing an image now: Delete and Shutdown wait for them.
    in_flight: Arc<InFlight>,
    /// Whether the kernel tracks dirty pages, asked once (`ARCH_PREDUMP`).
    soft_dirty: Box<dyn SoftDirtyProbe + Send + Sync>,
}

impl Arch {
    pub fn new(
        namespace: &str,
        config: std::result::Result<ArchConfig, CheckpointError>,
        runtime: Arc<dyn ContainerRuntime>,
        mounts: Arc<dyn RootfsMounts>,
    ) -> Self {
        if let Err(e) = &config {
            log::error!("{e}: ARCH containers cannot be created until it is fixed");
        }
        Arch {
            namespace: namespace.to_string(),
            config,
            runtime,
            mounts,
            trust: OnceLock::new(),
            in_flight: Arc::new(InFlight::default()),
            soft_dirty: Box::new(OnceProbe::new(CriuInPath)),
        }
    }

    /// The host's trust in its root; an error fails ARCH containers only.
    fn trust(&self) -> Result<&Trust> {
        let cfg = self.config()?;
        self.trust
            .get_or_init(|| {
                load_trust(cfg, std::path::Path::new(DEFAULT_HOST_KEY)).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| ShimError::FailedPrecondition(e.clone()))
    }

    /// Whether a new container is opted in, and under which identity. An
    /// invalid opt-in, or an opt-in on a host whose configuration is
    /// broken, fails Create.
    pub fn identify(&self, id: &str, spec: &Spec) -> Result<Option<ArchIdentity>> {
        let (env, annotations) = env_and_annotations(spec);
        let identity = arch_identity(&env, &annotations, &self.namespace, id)
            .map_err(|e| ShimError::InvalidArgument(format!("container {id}: {e}")))?;
        if identity.is_some() {
            if let Err(e) = &self.config {
                return Err(ShimError::FailedPrecondition(format!(
                    "container {id} asks for ARCH, but {e}"
                )));
            }
            if let Err(e) = self.trust() {
                return Err(ShimError::FailedPrecondition(format!(
                    "container {id} asks for ARCH, but {e}"
                )));
            }
        }
        Ok(identity)
    }

    /// The periodic checkpoint interval an ARCH container asks for (None
    /// without `ARCH_INTERVAL`); an invalid one fails Create.
    pub fn interval(&self, id: &str, spec: &Spec) -> Result<Option<Duration>> {
        let (env, annotations) = env_and_annotations(spec);
        periodic_interval(&env, &annotations, self.config()?.min_interval)
            .map_err(|e| ShimError::InvalidArgument(format!("container {id}: {e}")))
    }

    /// The CRIU pre-dumps an ARCH container asks for (`ARCH_PREDUMP`, 0
    /// without); an invalid count fails Create, and so does a count on a
    /// host whose kernel cannot track dirty pages: the user sees it at
    /// `ctr run` rather than as a failed stop checkpoint, when the work
    /// it should have kept is lost.
    pub fn predumps(&self, id: &str, spec: &Spec) -> Result<u8> {
        let (env, annotations) = env_and_annotations(spec);
        let n = predump_iterations(&env, &annotations)
            .map_err(|e| ShimError::InvalidArgument(format!("container {id}: {e}")))?;
        require_soft_dirty(n, &*self.soft_dirty)
            .map_err(|e| ShimError::FailedPrecondition(format!("container {id}: {e}")))?;
        Ok(n)
    }

    /// Replaces the soft-dirty probe (tests).
    #[cfg(test)]
    pub fn with_soft_dirty_probe(mut self, probe: Box<dyn SoftDirtyProbe + Send + Sync>) -> Self {
        self.soft_dirty = probe;
        self
    }

    /// Arms the fault a test container asks for with its annotation (test
    /// builds only; see arch-faults).
    pub fn arm_faults(&self, id: &str, spec: &Spec) -> Result<()> {
        let annotations = spec.annotations().clone().unwrap_or_default();
        let root = match &self.config {
            Ok(cfg) => cfg.checkpoint_root.clone(),
            Err(_) => PathBuf::new(),
        };
        arch_faults::arm(
            id,
            annotations.get(arch_faults::ANNOTATION).map(String::as_str),
            &root,
        )
        .map_err(|e| ShimError::InvalidArgument(e.to_string()))
    }

    /// Waits (up to `limit`) for the checkpoints of `id` (None: of every
    /// container) still writing an image, so Delete and Shutdown never cut
    /// a commit short; true if none is left.
    pub fn await_commits(&self, id: Option<&str>, limit: Duration) -> bool {
        if !self.in_flight.busy(id) {
            return true;
        }
        let who = id.unwrap_or("the shim");
        log::info!("{who}: waiting up to {limit:?} for a checkpoint to commit");
        let started = std::time::Instant::now();
        let done = self.in_flight.wait(id, limit);
        if done {
            log::info!(
                "{who}: checkpoint committed after {:?}; going on",
                started.elapsed()
            );
        } else {
            log::error!(
                "{who}: a checkpoint is still committing after {limit:?}; going on without it"
            );
        }
        done
    }

    /// The configuration, for ARCH containers (whose Create checked it).
    fn config(&self) -> Result<&ArchConfig> {
        self.config
            .as_ref()
            .map_err(|e| ShimError::FailedPrecondition(e.to_string()))
    }

    /// The checkpoint root, signing what it writes and verifying what it
    /// reads with the host's key.
    fn store(&self) -> Result<ImageStore> {
        let cfg = self.config()?;
        let store = ImageStore::new(&cfg.checkpoint_root)
            .with_trust(self.trust()?.clone())
            .with_encryption(arch_image::HostKey::load(
                cfg.encryption_key_file.as_deref(),
            ))
            .with_generations(cfg.generations);
        Ok(match cfg.mode {
            arch_checkpoint::Mode::NetworkFs => store.with_lease(cfg.claim_lease),
            arch_checkpoint::Mode::Basic => store,
        })
    }
}

/// Where a container asks for ARCH things: its process environment and
/// its annotations.
fn env_and_annotations(spec: &Spec) -> (Vec<String>, std::collections::HashMap<String, String>) {
    let env = spec
        .process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default();
    (env, spec.annotations().clone().unwrap_or_default())
}
