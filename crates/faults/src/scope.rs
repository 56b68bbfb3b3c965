//! CRIU's notify callbacks are plain `fn`s called on the thread that issued
//! the request: the container they belong to travels in a thread-local.

use std::cell::RefCell;

use crate::FaultError;

thread_local! {
    static SCOPE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Names the scope of [`hit_in_thread_scope`] on this thread until dropped.
pub struct ThreadScope(());

impl ThreadScope {
    pub fn enter(scope: &str) -> Self {
        SCOPE.with_borrow_mut(|s| *s = Some(scope.to_string()));
        ThreadScope(())
    }
}

impl Drop for ThreadScope {
    fn drop(&mut self) {
        SCOPE.with_borrow_mut(|s| *s = None);
    }
}

/// [`crate::hit`] for the scope this thread entered (none: passes).
pub fn hit_in_thread_scope(point: &str) -> Result<(), FaultError> {
    SCOPE.with_borrow(|s| match s {
        Some(scope) => crate::hit(scope, point),
        None => Ok(()),
    })
}
