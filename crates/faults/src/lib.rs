//! Fault points: named places in a checkpoint or restore where the
//! reliability suite makes things go wrong on purpose — an error, a crash of
//! the shim, CRIU killed, the checkpoint root removed — deterministically,
//! instead of racing a `kill` against a timer.
//!
//! A container asks for one fault with the annotation
//! `io.arch.test.fault=<point>=<action>`, e.g. `after:dump=crash`. The shim
//! arms it under the container's id ([`arm`]); the code passes points with
//! [`hit`]. Only builds with the `inject` feature (the shim's
//! `fault-injection` feature, which the test suite builds) honour it: in any
//! other build [`hit`] is an empty inline function and the annotation is
//! ignored with a warning, so a workload can never make a production shim
//! misbehave. Point names live in [`points`].

mod action;
mod criu;
pub mod points;
#[cfg(feature = "inject")]
mod registry;
mod scope;

use std::path::Path;

pub use action::{Action, FILL_FILE};
pub use criu::kill_criu_of_this_thread;
pub use scope::{hit_in_thread_scope, ThreadScope};

/// The annotation that arms a fault for one container.
pub const ANNOTATION: &str = "io.arch.test.fault";

/// Whether this build honours fault annotations.
pub const ENABLED: bool = cfg!(feature = "inject");

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FaultError {
    #[error("{ANNOTATION} {0:?}: expected <point>=<action> with action one of error, crash, remove-root, kill-criu, fill-disk")]
    Malformed(String),
    /// What an `error` action makes the operation fail with.
    #[error("injected fault at {0}")]
    Injected(String),
}

/// Arms the fault an annotation value asks for under `scope` (the
/// container's id). `root` is the checkpoint root a `remove-root` or
/// `fill-disk` action acts on. Without the `inject` feature the value is
/// ignored with a warning.
pub fn arm(scope: &str, annotation: Option<&str>, root: &Path) -> Result<(), FaultError> {
    let Some(value) = annotation else {
        return Ok(());
    };
    #[cfg(feature = "inject")]
    {
        registry::arm(scope, parse(value)?, root);
        Ok(())
    }
    #[cfg(not(feature = "inject"))]
    {
        let _ = (scope, root);
        log::warn!("ignoring {ANNOTATION}={value:?}: this build has no fault injection");
        Ok(())
    }
}

/// Forgets the fault armed under `scope` (the container is gone).
#[inline]
pub fn disarm(scope: &str) {
    #[cfg(feature = "inject")]
    registry::disarm(scope);
    #[cfg(not(feature = "inject"))]
    let _ = scope;
}

/// Passes `point` for `scope`: fires the armed action if this is its point
/// (once per arming).
#[inline]
pub fn hit(scope: &str, point: &str) -> Result<(), FaultError> {
    #[cfg(feature = "inject")]
    {
        registry::hit(scope, point)
    }
    #[cfg(not(feature = "inject"))]
    {
        let _ = (scope, point);
        Ok(())
    }
}

/// A parsed `<point>=<action>`.
#[cfg_attr(not(feature = "inject"), allow(dead_code))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fault {
    pub point: String,
    pub action: Action,
}

#[cfg_attr(not(feature = "inject"), allow(dead_code))]
pub(crate) fn parse(value: &str) -> Result<Fault, FaultError> {
    let malformed = || FaultError::Malformed(value.to_string());
    let (point, action) = value.rsplit_once('=').ok_or_else(malformed)?;
    let action = Action::parse(action).ok_or_else(malformed)?;
    if point.is_empty() || point.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(malformed());
    }
    Ok(Fault {
        point: point.to_string(),
        action,
    })
}

#[cfg(feature = "inject")]
pub use registry::{start_trace, take_trace};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "",
            "after:dump",
            "after:dump=explode",
            "=error",
            "a b=error",
            "x\n=crash",
        ] {
            assert!(
                matches!(parse(bad), Err(FaultError::Malformed(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn points_may_contain_the_separator() {
        let f = parse("criu:post-dump=kill-criu").unwrap();
        assert_eq!(
            (f.point.as_str(), f.action),
            ("criu:post-dump", Action::KillCriu)
        );
    }

    #[test]
    fn an_unarmed_scope_passes_every_point() {
        assert_eq!(hit("nobody", "after:dump"), Ok(()));
        arm("nobody", None, Path::new("/nowhere")).unwrap();
        assert_eq!(hit("nobody", "after:dump"), Ok(()));
    }
}
