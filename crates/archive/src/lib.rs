//! Portable checkpoint archives: `archctl export` / `archctl import`.
//!
//! An archive is one tar, zstd-compressed, laid out as the Kubernetes/CRI-O
//! checkpoint archive (`checkpoint/` with the CRIU images, `rootfs-diff.tar`,
//! `spec.dump`, `config.dump`, `deleted.files`) with ARCH's manifest added as
//! the first entry. Import reads the manifest first, then checks every
//! following entry against it (name, size, sha256) while writing it into a
//! staging image, and commits only an archive that matched completely:
//! a hostile, corrupt or truncated archive leaves nothing in the root.
//! Archives written by CRI-O or the kubelet (no ARCH manifest) import when
//! the operator vouches for them (foreign.rs).

mod error;
mod export;
mod foreign;
mod import;
mod layout;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_crypt;

pub use error::{ArchiveError, Result};
pub use export::{export, ExportStats};
pub use foreign::ForeignFacts;
pub use import::{import, ImportLimits, ImportTarget};
pub use layout::{
    ARCH_MANIFEST, ARCH_SIGNATURE, CHECKPOINT_DIR, CONFIG_DUMP, DELETED_FILES, SPEC_DUMP,
};
