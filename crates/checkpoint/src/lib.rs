//! What ARCH adds on top of the runtime: which containers are opted in and
//! under which key (policy), where images go (host configuration), and the
//! ordered chain of steps that turns a running container into a committed
//! image (chain + steps). Side effects that need a real container sit behind
//! the [`Dumper`] and [`ProcessView`] traits, so the chain is unit-tested.

mod chain;
mod config;
mod error;
mod interval;
mod layer_identity;
mod policy;
mod predump;
mod procfs;
mod profile;
mod restore;
mod restore_copy;
mod sealed;
mod slots;
mod steps;
mod stream_config;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_sealed;
mod trust;

pub use chain::{run_dump_chain, DumpContext, DumpOutcome, DumpRequest, Dumper, Step, FREEZE};
pub use config::{
    default_max_concurrent_dumps, default_max_periodic_dumps, ArchConfig, Mode, CONFIG_ENV,
    DEFAULT_CONFIG_PATH, DEFAULT_HOST_KEY,
};
pub use error::{CheckpointError, Result};
pub use interval::{parse_interval, periodic_interval, INTERVAL_ANNOTATION, INTERVAL_ENV};
pub use layer_identity::layers_identity;
pub use policy::{arch_identity, ArchIdentity};
pub use predump::{
    parse_predump, predump_iterations, predump_plan, require_soft_dirty, CriuFeatureCheck,
    CriuInPath, OnceProbe, PreDumpRound, ProbeError, SoftDirtyProbe, MAX_PREDUMPS,
    PREDUMP_ANNOTATION, PREDUMP_ENV, SOFT_DIRTY,
};
pub use procfs::{HostProcs, ProcessView};
pub use profile::{
    compare_profiles, security_profile, ProfileContext, ProfileMismatch, IMAGE_NAME_ANNOTATION,
    PROFILE_FIELDS, SANDBOX_ID_ANNOTATION, SANDBOX_NAMESPACE_ANNOTATION, SANDBOX_UID_ANNOTATION,
};
pub use restore::{apply_rootfs, check_compatible, HostFacts};
pub use restore_copy::RestoreCopy;
pub use slots::{DumpSlots, Slot};
pub use steps::{criu_log_errors, default_steps};
pub use stream_config::{Compression, StreamConfig, StreamMode};
pub use trust::load_trust;
