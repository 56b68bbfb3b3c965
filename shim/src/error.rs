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
    #[error("{0}")]
    Unimplemented(String),
    #[error(transparent)]
    Runtime(#[from] arch_runtime::RuntimeError),
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
        match self {
            ShimError::NotFound(_) => Code::NOT_FOUND,
            ShimError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ShimError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            ShimError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            ShimError::Unimplemented(_) => Code::UNIMPLEMENTED,
            ShimError::Runtime(arch_runtime::RuntimeError::NotFound(_)) => Code::NOT_FOUND,
            ShimError::Runtime(arch_runtime::RuntimeError::InvalidSpec(_)) => {
                Code::INVALID_ARGUMENT
            }
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

    #[test]
    fn maps_codes_for_containerd() {
        let status = |e: ShimError| match ttrpc::Error::from(e) {
            ttrpc::Error::RpcStatus(s) => s.code(),
            other => panic!("unexpected {other:?}"),
        };
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
}
