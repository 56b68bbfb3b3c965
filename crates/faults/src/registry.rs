//! The armed faults of this process, by scope (container id). Compiled in
//! with the `inject` feature only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::{Fault, FaultError};

#[derive(Default)]
struct Armed {
    fault: Option<Fault>,
    root: PathBuf,
    fired: bool,
    /// Every point passed, when tracing (tests of the point catalogue).
    trace: Option<Vec<String>>,
}

static ARMED: Mutex<Option<HashMap<String, Armed>>> = Mutex::new(None);

fn armed() -> MutexGuard<'static, Option<HashMap<String, Armed>>> {
    ARMED.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn arm(scope: &str, fault: Fault, root: &Path) {
    let mut map = armed();
    let entry = map
        .get_or_insert_with(HashMap::new)
        .entry(scope.to_string());
    let a = entry.or_default();
    a.fault = Some(fault);
    a.root = root.to_path_buf();
    a.fired = false;
}

pub(crate) fn disarm(scope: &str) {
    if let Some(map) = armed().as_mut() {
        map.remove(scope);
    }
}

pub(crate) fn hit(scope: &str, point: &str) -> Result<(), FaultError> {
    // Decide under the lock, act outside it: a crash must not die holding it.
    let fire = {
        let mut map = armed();
        let Some(a) = map.as_mut().and_then(|m| m.get_mut(scope)) else {
            return Ok(());
        };
        if let Some(trace) = &mut a.trace {
            trace.push(point.to_string());
        }
        match &a.fault {
            Some(f) if f.point == point && !a.fired => {
                a.fired = true;
                Some((f.action, a.root.clone()))
            }
            _ => None,
        }
    };
    let Some((action, root)) = fire else {
        return Ok(());
    };
    action.fire(point, &root);
    match action {
        crate::Action::Error => Err(FaultError::Injected(point.to_string())),
        _ => Ok(()),
    }
}

/// Starts recording every point `scope` passes.
pub fn start_trace(scope: &str) {
    armed()
        .get_or_insert_with(HashMap::new)
        .entry(scope.to_string())
        .or_default()
        .trace = Some(Vec::new());
}

/// The points `scope` passed since [`start_trace`], in order.
pub fn take_trace(scope: &str) -> Vec<String> {
    armed()
        .as_mut()
        .and_then(|m| m.get_mut(scope))
        .and_then(|a| a.trace.take())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use crate::{arm, disarm, hit, FaultError};
    use std::path::Path;

    #[test]
    fn an_error_fires_once_at_its_point_only() {
        arm("c-err", Some("after:dump=error"), Path::new("/nowhere")).unwrap();
        assert_eq!(hit("c-err", "before:dump"), Ok(()));
        assert_eq!(hit("c-other", "after:dump"), Ok(()), "scoped");
        assert_eq!(
            hit("c-err", "after:dump"),
            Err(FaultError::Injected("after:dump".into()))
        );
        assert_eq!(hit("c-err", "after:dump"), Ok(()), "fires once");
        disarm("c-err");
    }

    #[test]
    fn remove_root_removes_the_root_and_goes_on() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("ns/key")).unwrap();
        arm("c-rm", Some("commit:sealed=remove-root"), &root).unwrap();
        assert_eq!(hit("c-rm", "commit:sealed"), Ok(()));
        assert!(!root.exists());
        disarm("c-rm");
    }

    #[test]
    fn a_trace_records_points_in_order() {
        super::start_trace("c-trace");
        hit("c-trace", "a").unwrap();
        hit("c-trace", "b").unwrap();
        assert_eq!(super::take_trace("c-trace"), ["a", "b"]);
        disarm("c-trace");
    }

    #[test]
    fn the_thread_scope_reaches_notify_callbacks() {
        arm("c-scope", Some("criu:post-dump=error"), Path::new("/x")).unwrap();
        assert_eq!(crate::hit_in_thread_scope("criu:post-dump"), Ok(()));
        {
            let _s = crate::ThreadScope::enter("c-scope");
            assert!(crate::hit_in_thread_scope("criu:post-dump").is_err());
        }
        disarm("c-scope");
    }
}
