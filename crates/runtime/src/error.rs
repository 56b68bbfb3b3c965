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
