//! Typed errors for the image store. Every variant names the thing that was
//! wrong (path, field, owner) so a log line alone explains a failed restore.

use std::io;
use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong reading or writing a checkpoint image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A namespace or key breaks the naming rules.
    #[error("invalid {kind} {value:?}: {reason}")]
    InvalidIdentity {
        kind: &'static str,
        value: String,
        reason: &'static str,
    },
    /// An I/O call failed; `path` is what we were touching.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// No committed image under this namespace/key.
    #[error("no checkpoint image for {namespace}/{key}")]
    NotFound { namespace: String, key: String },
    /// The manifest was written by a newer (or unknown) ARCH.
    #[error(
        "manifest format version {found} is not supported (this build reads versions 2 to {supported})"
    )]
    UnsupportedVersion { found: u64, supported: u32 },
    /// manifest.json is not valid JSON of the expected shape.
    #[error("malformed manifest {path}: {source}")]
    ManifestParse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A manifest field is well-typed but wrong (e.g. bad hex, wrong key).
    #[error("invalid manifest: {field}: {reason}")]
    InvalidManifest { field: &'static str, reason: String },
    /// A listed path is absolute, climbs out, or crosses a symlink.
    #[error("unsafe path {path:?} in image: {reason}")]
    UnsafePath { path: String, reason: &'static str },
    /// A listed file is absent.
    #[error("image file {path:?} is missing")]
    MissingFile { path: String },
    /// A listed file has the wrong size (e.g. truncated).
    #[error("image file {path:?} has size {actual}, manifest says {expected}")]
    SizeMismatch {
        path: String,
        expected: u64,
        actual: u64,
    },
    /// A listed file's content does not hash to the recorded sha256.
    #[error("image file {path:?} has sha256 {actual}, manifest says {expected}")]
    ChecksumMismatch {
        path: String,
        expected: String,
        actual: String,
    },
    /// The image is encrypted and this host has no usable key for it.
    #[error("image encrypted with key id {image}, and this host has no key for it: {why}")]
    NoDecryptionKey { image: String, why: String },
    /// The image is encrypted under another key than this host's.
    #[error("image encrypted with key id {image}, this host's key id is {host}")]
    WrongDecryptionKey { image: String, host: String },
    /// A streamed file does not decode to what the manifest says (its
    /// stored or its original bytes), or cannot be decoded at all.
    #[error("streamed image file {path}: {source}")]
    Stream {
        path: PathBuf,
        #[source]
        source: arch_imgstream::StreamError,
    },
    /// The image directory holds something the manifest does not list.
    #[error("image holds unlisted entry {path:?}")]
    UnlistedFile { path: String },
    /// Something that is not a regular file or directory (symlink, fifo...).
    #[error("image entry {path:?} is not a regular file or directory")]
    UnexpectedFileType { path: String },
    /// Another owner (host) holds the exclusive claim on this image.
    #[error("image is already claimed by {owner:?} ({path})")]
    AlreadyClaimed { owner: String, path: PathBuf },
    /// A taken image's lease expired (this restorer stopped touching it for
    /// longer than the lease) and another host gave the image back.
    #[error("lost the lease on {path}: another host judged it expired and took the image back")]
    LeaseLost { path: PathBuf },
    /// The signing key file cannot be used.
    #[error("signing key {0}")]
    BadKey(String),
    /// The image has no manifest.sig and this host requires one.
    #[error("the image is not signed (no manifest.sig) and this host requires signed images")]
    Unsigned,
    /// manifest.sig does not verify against manifest.json.
    #[error("bad image signature: {reason}")]
    BadSignature { reason: String },
    /// A commit observer stopped the commit at one of its phases (the
    /// reliability suite's fault points).
    #[error("commit stopped at {point}: {source}")]
    CommitStopped {
        point: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether reading or writing failed (a destination that filled up or
    /// failed, a flaky source), rather than the image being found wrong:
    /// only then may the same copy succeed somewhere else. A decoded
    /// stream's copy that cannot be written fails as `PipeWrite` (the
    /// decoder's sink); one that failed to decode counts as I/O unless its
    /// stored bytes were found damaged (the error then names their size
    /// or digest).
    pub fn is_io(&self) -> bool {
        use arch_imgstream::StreamError as S;
        match self {
            Error::Io { .. } => true,
            Error::Stream { source, .. } => matches!(
                source,
                S::PipeWrite { .. } | S::PipeRead { .. } | S::Decompress { .. } | S::Store { .. }
            ),
            _ => false,
        }
    }
}

/// Attach the operation and path to an `io::Error`.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arch_imgstream::StreamError;

    /// What a full tmpfs says.
    fn io() -> io::Error {
        io::Error::from(io::ErrorKind::StorageFull)
    }

    #[test]
    fn only_failed_reads_and_writes_are_io() {
        let stream = |source| Error::Stream {
            path: "pages-1.img".into(),
            source,
        };
        let io_errors = [
            io_err("write", "/dev/shm/x")(io()),
            stream(StreamError::Decompress {
                name: "pages-1.img".into(),
                source: io(),
            }),
            stream(StreamError::Store {
                name: "pages-1.img".into(),
                source: io(),
            }),
        ];
        for e in &io_errors {
            assert!(e.is_io(), "{e}");
        }
        let image_faults = [
            Error::ChecksumMismatch {
                path: "core-1.img".into(),
                expected: "a".into(),
                actual: "b".into(),
            },
            Error::SizeMismatch {
                path: "core-1.img".into(),
                expected: 1,
                actual: 2,
            },
            Error::BadSignature {
                reason: "tampered".into(),
            },
            stream(StreamError::StoredDigest {
                name: "pages-1.img".into(),
                expected: "a".into(),
                found: "b".into(),
            }),
        ];
        for e in &image_faults {
            assert!(!e.is_io(), "{e}");
        }
    }
}
