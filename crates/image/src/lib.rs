//! ARCH checkpoint image format and store.
//!
//! Layout: `{root}/{namespace}/{key}/` holding `manifest.json`, `criu/`
//! (CRIU images + dump.log), `rootfs-diff.tar` and `config.json`.
//!
//! Sidecar names (staging dirs, retired/failed images, claims) all contain
//! `@`, a character no valid key may contain, so they can never collide with
//! a real image and `list()` needs no guessing. Forms used:
//! `{key}@tmp-{rand}`, `{key}@old-{rand}`, `{key}@restored`,
//! `{key}@failed-{secs}-{rand}`, `{key}@claim`, `{key}@taken-{owner}-{rand}`,
//! `{key}@lease-{owner}-{rand}` (the lease of that taken image, network-fs),
//! `{key}@gen-{secs}-{nanos}` (an older generation, see generations.rs).
//!
//! Files are written 0600 and directories 0700: images hold process memory.

mod claim;
mod error;
mod fsutil;
mod generations;
mod host_key;
mod ident;
mod image;
mod lease;
mod manifest;
mod predump;
mod read_back;
mod sign;
mod staging;
mod store;
mod taken;
mod verify_behind;
mod write_behind;

pub use claim::Claim;
pub use error::{Error, Result};
pub use generations::{is_generation, Generation, MAX_GENERATIONS};
pub use host_key::HostKey;
pub use ident::{
    scope_name, validate_key, validate_namespace, MAX_KEY_LEN, MAX_KUBERNETES_NAMESPACE_LEN,
    MAX_NAMESPACE_LEN, SCOPE_SEP,
};
pub use image::{read_manifest, Image};
pub use lease::{FsClock, Lease, ProbeClock, DEFAULT_LEASE};
pub use manifest::{
    sealed_name, CgroupVersion, CommitInfo, FileEntry, Manifest, ProfileDigest, Status, Timestamp,
    FORMAT_VERSION,
};
pub use predump::{
    count_predumps, is_predump_dir, link_parents, predump_dir, unlink_parents, DUMP_LOG,
    MAX_PREDUMP_DIRS, PARENT_LINK, PREDUMP_LOG,
};
pub use read_back::copy_out;
pub use sign::{SigningKey, Trust, MIN_KEY_LEN, SIGNATURE, SIGNATURE_ALG};
pub use staging::{Observer, ObserverError, Staging, COMMIT_PHASES};
pub use store::{ImageRef, ImageStore, StaleTemp, StaleWhy};
pub use taken::Taken;
pub use verify_behind::{Deferred, VerifyBehind, DEFER_FROM};

/// Manifest file name inside an image directory.
pub const MANIFEST: &str = "manifest.json";
/// Directory of CRIU image files and dump.log.
pub const CRIU_DIR: &str = "criu";
/// Tar of the overlay upperdir changes.
pub const ROOTFS_DIFF: &str = "rootfs-diff.tar";
/// The container's OCI runtime spec.
pub const CONFIG: &str = "config.json";
/// The image's own files that an encrypted checkpoint stores like CRIU's
/// images (compressed, sealed, both digests; format 4), at the image's top
/// level: the container's environment and the files it wrote are as
/// private as its memory.
pub const SEALED_FILES: [&str; 2] = [CONFIG, ROOTFS_DIFF];

/// Separator used in every sidecar name; never valid in a key.
pub(crate) const SIDECAR_SEP: char = '@';

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cleanup;
#[cfg(test)]
mod tests_crypt;
#[cfg(test)]
mod tests_generations;
#[cfg(test)]
mod tests_sealed;
#[cfg(test)]
mod tests_stream;
#[cfg(test)]
mod tests_swap;
