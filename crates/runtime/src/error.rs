use thiserror::Error;

use crate::image_stdio::ImageStdio;
use crate::namespaces::NamespaceError;

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// Errors of the container runtime, phrased for the containerd user who sees them.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("container {0} not found")]
    NotFound(String),
    /// A libcontainer operation in this process.
    #[error("container {id}: {action} failed: {source}")]
    Libcontainer {
        id: String,
        action: &'static str,
        /// Boxed: libcontainer's error is large, and most results are Ok.
        #[source]
        source: Box<libcontainer::error::LibcontainerError>,
    },
    /// A libcontainer operation in a spawn helper: its error arrives as text.
    #[error("container {id}: {action} failed: {reason}")]
    Spawn {
        id: String,
        action: &'static str,
        reason: String,
    },
    /// No thread to run the spawn helper from (parent_thread.rs).
    #[error("the spawn helper for {action}: {source}")]
    HelperThread {
        action: &'static str,
        #[source]
        source: crate::parent_thread::ParentThreadError,
    },
    /// The spawn helper itself failed (to start, or to reply).
    #[error("the spawn helper for {action} failed: {source}")]
    Helper {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup of {id}: {reason}")]
    Cgroup { id: String, reason: String },
    /// A CRIU request (dump, restore) that CRIU refused or failed.
    #[error("container {id}: CRIU {action} failed: {source}")]
    Criu {
        id: String,
        action: &'static str,
        #[source]
        source: rust_criu::CriuError,
    },
    /// A CRIU pre-dump (run as `criu pre-dump`: rust-criu has no request
    /// for it) that failed; `pre-dump.log` in its directory says why.
    #[error("container {id}: CRIU pre-dump failed: {reason}")]
    PreDump { id: String, reason: String },
    /// A streamed dump failed: CRIU (`criu dump --stream`) or the
    /// shim's streamer, whichever said so first.
    #[error("container {id}: streamed dump: {reason}")]
    StreamedDump { id: String, reason: String },
    /// Sealing an unstreamable dump's images after CRIU wrote them
    /// (encryption at rest; seal_dump.rs).
    #[error("container {id}: sealing the dump's images: {reason}")]
    Seal { id: String, reason: String },
    /// CRIU cannot be run at all (missing, or it does not answer).
    #[error("CRIU is not usable: {0}")]
    CriuUnavailable(#[source] rust_criu::CriuError),
    /// CRIU reported success but not what a restore needs.
    #[error("container {id}: {reason}")]
    Restore { id: String, reason: &'static str },
    /// One of the runtime's own steps at a CRIU notify refused the
    /// restore, and CRIU aborted it: joining the new cgroup
    /// (`pre-restore`), the new spec's OCI hooks (`setup-namespaces`), or
    /// the memory images' digests, taken behind the copy (`post-restore`:
    /// CRIU killed the restored tree).
    #[error("container {id}: the restore was refused at CRIU's {stage} notify: {source}")]
    Refused {
        id: String,
        stage: &'static str,
        #[source]
        source: crate::notify::NotifyError,
    },
    /// A file of the image that the runtime reads (beside CRIU's own).
    #[error("container {id}: the image's {file} is unusable: {reason}")]
    Image {
        id: String,
        file: &'static str,
        reason: String,
    },
    #[error("container {id}: the checkpointed process had {image} for stdio, the new container wants {wanted}")]
    StdioMismatch {
        id: String,
        image: ImageStdio,
        wanted: ImageStdio,
    },
    #[error("container {id}: CRIU restored the process but sent no terminal master")]
    NoTerminal { id: String },
    #[error("container {id}: {source}")]
    Namespaces {
        id: String,
        #[source]
        source: NamespaceError,
    },
    #[error("container {id}: {source}")]
    Fault {
        id: String,
        #[source]
        source: arch_faults::FaultError,
    },
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    pub(crate) fn lc(
        id: &str,
        action: &'static str,
    ) -> impl FnOnce(libcontainer::error::LibcontainerError) -> Self {
        let id = id.to_string();
        move |source| RuntimeError::Libcontainer {
            id,
            action,
            source: Box::new(source),
        }
    }

    pub(crate) fn criu(
        id: &str,
        action: &'static str,
    ) -> impl FnOnce(rust_criu::CriuError) -> Self {
        let id = id.to_string();
        move |source| RuntimeError::Criu { id, action, source }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| RuntimeError::Io { context, source }
    }

    /// libcgroups has an error type per manager and operation: its text.
    pub(crate) fn cgroup(id: &str, e: impl std::fmt::Display) -> Self {
        RuntimeError::Cgroup {
            id: id.to_string(),
            reason: e.to_string(),
        }
    }
}
