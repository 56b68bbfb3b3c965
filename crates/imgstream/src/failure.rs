//! The first failure of a capture or a serve, shared by its threads: the
//! flag stops them taking more work; the error is what the caller gets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::error::StreamError;

#[derive(Default)]
pub(crate) struct Failure {
    /// Set by the first failure (polled by `wait_readable`).
    pub(crate) flag: AtomicBool,
    first: Mutex<Option<StreamError>>,
}

impl Failure {
    /// Records `e` unless an earlier failure was recorded.
    pub(crate) fn fail(&self, e: StreamError) {
        self.flag.store(true, Ordering::SeqCst);
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(e);
        }
    }

    pub(crate) fn failed(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// The first failure, if any (once).
    pub(crate) fn take(&self) -> Option<StreamError> {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}
