use thiserror::Error;

pub type Result<T> = std::result::Result<T, CheckpointError>;

#[derive(Debug, Error)]
pub enum CheckpointError {
    /// The container's spec asks for something ARCH cannot honour.
    #[error("{0}")]
    Policy(String),
    #[error("ARCH configuration {origin}: {reason}")]
    Config { origin: String, reason: String },
    #[error("checkpoint step {step}: {reason}")]
    Step { step: &'static str, reason: String },
    #[error("cannot checkpoint: {0}")]
    Unsupported(String),
    /// The runtime failed a step (listing processes, asking CRIU its version).
    #[error("checkpoint step {step}: {source}")]
    Runtime {
        step: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("CRIU dump failed: {source}{}", log_suffix(.log))]
    Dump {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        log: Vec<String>,
    },
    #[error(transparent)]
    Image(#[from] arch_image::Error),
    #[error(transparent)]
    Rootfs(#[from] arch_rootfs::Error),
    /// Sealing one of the image's own files (an encrypted checkpoint).
    #[error(transparent)]
    Stream(#[from] arch_imgstream::StreamError),
    #[error(transparent)]
    Fault(#[from] arch_faults::FaultError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn log_suffix(log: &[String]) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!(" (dump.log: {})", log.join(" | "))
    }
}

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CheckpointError {
    let context = context.into();
    move |source| CheckpointError::Io { context, source }
}
