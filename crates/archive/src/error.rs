use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, ArchiveError>;

/// Why an archive could not be written or was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("image store: {0}")]
    Image(#[from] arch_image::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The stream ended early or is not zstd/tar.
    #[error("the archive is truncated or corrupt: {0}")]
    Corrupt(String),
    /// An entry that no ARCH archive holds (traversal, links, devices, ...).
    #[error("archive entry {entry:?} refused: {reason}")]
    Entry { entry: String, reason: String },
    /// ARCH's manifest is missing, not first, or invalid.
    #[error("not an ARCH archive: {0}")]
    Manifest(String),
    /// The content does not match the manifest.
    #[error("archive entry {entry:?} does not match the manifest: {reason}")]
    Mismatch { entry: String, reason: String },
    /// The manifest's signature is bad, or missing where this host requires
    /// one (`archctl import --allow-unsigned` overrides a missing one).
    #[error("the archive's signature is refused: {0}")]
    Signature(#[source] arch_image::Error),
    #[error("{0} exceeds the import limit")]
    TooLarge(String),
    #[error("{path}: {reason}")]
    Path { path: PathBuf, reason: &'static str },
}

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ArchiveError {
    let context = context.into();
    move |source| ArchiveError::Io { context, source }
}
