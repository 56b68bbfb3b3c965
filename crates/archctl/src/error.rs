//! The library's typed error. Every message is one line that names the
//! thing that was wrong, so `archctl: {error}` alone tells the operator
//! what to fix.

use std::path::PathBuf;

/// Result alias for archctl's library part.
pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The checkpoint root is missing or not a directory.
    #[error("checkpoint root {}: {reason}", path.display())]
    Root { path: PathBuf, reason: String },
    /// The host configuration could not be loaded.
    #[error("host configuration: {0}")]
    Config(String),
    /// An image-store operation failed.
    #[error("{0}")]
    Image(#[from] arch_image::Error),
    /// Reading operation records failed.
    #[error("records: {0}")]
    Records(#[from] arch_records::RecordsError),
    /// An I/O call failed while touching `path`.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The tags file exists but does not parse.
    #[error("tags file {}: {reason}", path.display())]
    Tags { path: PathBuf, reason: String },
    /// A request the store refuses (sidecar name, claimed image, ...).
    #[error("{0}")]
    Refused(String),
    /// An archive could not be written, or was refused.
    #[error("{0}")]
    Archive(#[from] arch_archive::ArchiveError),
    /// A command-line value that parsed but makes no sense.
    #[error("{0}")]
    Invalid(String),
}

/// Attach the operation and path to an `io::Error`.
pub fn io_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}
