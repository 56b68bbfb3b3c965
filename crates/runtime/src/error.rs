use thiserror::Error;

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// Errors of the container runtime, phrased for the containerd user who sees them.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("container {0} not found")]
    NotFound(String),
    #[error("container {id}: {action} failed: {reason}")]
    Libcontainer {
        id: String,
        action: &'static str,
        reason: String,
    },
    #[error("zygote failed to {action}: {reason}")]
    Zygote {
        action: &'static str,
        reason: String,
    },
    #[error("cgroup of {id}: {reason}")]
    Cgroup { id: String, reason: String },
    #[error("container {id}: the checkpointed process had {image} for stdio, the new container wants {wanted}")]
    StdioMismatch {
        id: String,
        image: crate::restore::ImageStdio,
        wanted: crate::restore::ImageStdio,
    },
    #[error("container {id}: CRIU restored the process but sent no terminal master")]
    NoTerminal { id: String },
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
    pub(crate) fn lc(id: &str, action: &'static str, err: impl std::fmt::Display) -> Self {
        RuntimeError::Libcontainer {
            id: id.to_string(),
            action,
            reason: err.to_string(),
        }
    }
}
