//! Overlay upperdir diffs for ARCH checkpoints.
//!
//! [`write_diff`] turns an overlayfs upperdir into a tar; [`apply_diff`]
//! applies such a tar to a directory without ever writing outside it.
//!
//! Representation (the OCI image-layer convention, so standard tools can
//! read it): an overlay whiteout (char device 0:0) `dir/name` becomes an
//! empty regular file `dir/.wh.name`; an opaque directory (xattr
//! `trusted.overlay.opaque=y` or `user.overlay.opaque=y`) is emitted as the
//! directory followed immediately by an empty `dir/.wh..wh..opq`. Apply
//! processes entries in order, so an opaque marker clears what the target
//! held before, and the directory's own entries (which follow) survive.
//!
//! Files and directories keep their `security.*` and `user.*` extended
//! attributes (`security.capability`), as PAX `SCHILY.xattr.` records.
//!
//! `apply_diff` is meant for the new container's *merged* rootfs (or an
//! empty upperdir): deletions are real removals there, which overlayfs turns
//! into its own whiteouts.

mod apply;
mod error;
mod sys;
mod write;
mod xattr;

pub use apply::{apply_diff, ApplyStats, Limits};
pub use error::{EntryError, Error, Result};
pub use write::{write_diff, DiffStats};

/// Prefix marking a deleted path.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Marker entry making its directory opaque.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_walk;
