//! Shim errors and their gRPC codes, which containerd maps to errdefs
//! (NotFound → "not found", AlreadyExists, FailedPrecondition, ...).

use containerd_shim::protos::ttrpc::{self, Code};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ShimError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error(transparent)]
    Runtime(#[from] arch_runtime::RuntimeError),
    #[error(transparent)]
    Checkpoint(#[from] arch_checkpoint::CheckpointError),
    #[error(transparent)]
    Image(#[from] arch_image::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, ShimError>;

pub fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ShimError {
    let context = context.into();
    move |source| ShimError::Io { context, source }
}

impl ShimError {
    fn code(&self) -> Code {
        use arch_runtime::RuntimeError as R;
        match self {
            ShimError::NotFound(_) | ShimError::Runtime(R::NotFound(_)) => Code::NOT_FOUND,
            ShimError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ShimError::InvalidArgument(_) | ShimError::Runtime(R::InvalidSpec(_)) => {
                Code::INVALID_ARGUMENT
            }
            ShimError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            // CRIU not runnable is the host's fault, not the request's.
            _ => Code::INTERNAL,
        }
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        log::error!("{e}");
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: ShimError) -> Code {
        match ttrpc::Error::from(e) {
            ttrpc::Error::RpcStatus(s) => s.code(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn maps_codes_for_containerd() {
        assert_eq!(status(ShimError::NotFound("x".into())), Code::NOT_FOUND);
        assert_eq!(
            status(ShimError::AlreadyExists("x".into())),
            Code::ALREADY_EXISTS
        );
        assert_eq!(
            status(arch_runtime::RuntimeError::NotFound("c".into()).into()),
            Code::NOT_FOUND
        );
        assert_eq!(status(ShimError::Internal("boom".into())), Code::INTERNAL);
    }

    #[test]
    fn criu_not_runnable_is_internal() {
        let e = arch_runtime::RuntimeError::CriuUnavailable(rust_criu_missing());
        assert_eq!(status(e.into()), Code::INTERNAL);
    }

    fn rust_criu_missing() -> arch_runtime::CriuError {
        arch_runtime::CriuError::Io(std::io::Error::from(std::io::ErrorKind::NotFound))
    }
}
