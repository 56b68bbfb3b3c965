//! Typed errors. Apply errors always name the offending tar entry so the
//! shim can log exactly which entry made it fall back to a fresh start.

use std::io;
use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Errors from writing or applying a rootfs diff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Filesystem access outside a specific tar entry (root, upperdir walk).
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The tar stream itself is unreadable or could not be written.
    #[error("tar stream: {0}")]
    Tar(#[source] io::Error),
    /// The upperdir holds a real file whose name collides with the whiteout
    /// encoding; writing it would turn it into a deletion on apply.
    #[error("upperdir entry {path} uses reserved whiteout prefix .wh.")]
    ReservedName { path: PathBuf },
    /// An upperdir entry changed between being looked at and being opened
    /// (a directory swapped for a symlink, a file for another): the diff is
    /// not taken rather than archive something else.
    #[error("upperdir entry {path} changed while it was archived (swapped for a link?)")]
    Changed { path: PathBuf },
    /// A tar entry was refused or failed to apply.
    #[error("tar entry {entry:?}: {kind}")]
    Entry { entry: String, kind: EntryError },
}

/// Why a single tar entry was refused.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("absolute path")]
    AbsolutePath,
    #[error("'..' component")]
    ParentComponent,
    #[error("empty path")]
    EmptyPath,
    #[error("path goes through symlink {component:?}")]
    ThroughSymlink { component: String },
    #[error("path component {component:?} is not a directory")]
    NotADirectory { component: String },
    #[error("hard link target {target:?} is outside the rootfs or invalid")]
    LinkEscapes { target: String },
    #[error("hard link target {target:?} does not exist or is a directory")]
    LinkTargetInvalid { target: String },
    #[error("device nodes are not allowed")]
    DeviceNode,
    #[error("unsupported entry type {0}")]
    UnsupportedType(String),
    #[error("entry size {size} exceeds limit {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("archive total exceeds limit {limit}")]
    TotalTooLarge { limit: u64 },
    #[error("more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("invalid whiteout name")]
    BadWhiteout,
    #[error("extended attribute {0:?} is not one a diff keeps, or not on a file or directory")]
    Xattr(String),
    #[error("missing link name")]
    MissingLinkName,
    #[error("{0}")]
    Io(#[from] io::Error),
}

pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}
