//! CRIU's notify calls, for dump and restore alike. rust-criu takes a plain
//! `fn`, and CRIU calls it on the thread that issued the request, so what
//! the callback needs (which container's fault points apply) and what it
//! learns (the restored pid) travel through thread-locals, scoped by
//! [`Session`].

use std::cell::{Cell, RefCell};

use arch_faults::{points, ThreadScope};

/// Why a notify hook refused the restore (then CRIU aborts it): kept for
/// [`Session::refused`], so the restore's error names it rather than
/// CRIU's "notify failed".
pub type NotifyError = Box<dyn std::error::Error + Send + Sync>;

/// Run at CRIU's pre-restore notify with CRIU's pid, or at its
/// setup-namespaces notify with the restored root's; an error aborts.
type NotifyHook = Box<dyn FnMut(i32) -> std::result::Result<(), NotifyError>>;

/// Run once at CRIU's post-restore notify: the tree is restored and none
/// of its tasks runs yet; an error makes CRIU kill it. See
/// [`crate::RestoreRequest::resume_check`].
pub type ResumeCheck = Box<dyn FnOnce() -> std::result::Result<(), NotifyError> + Send>;

/// A hook's refusal, and the notify it came at (CRIU's script name).
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) stage: &'static str,
    pub(crate) source: NotifyError,
}

thread_local! {
    static RESTORED_PID: Cell<i32> = const { Cell::new(0) };
    static PRE_RESTORE: RefCell<Option<NotifyHook>> = const { RefCell::new(None) };
    static SETUP_NAMESPACES: RefCell<Option<NotifyHook>> = const { RefCell::new(None) };
    static RESUME_CHECK: RefCell<Option<ResumeCheck>> = const { RefCell::new(None) };
    static REFUSED: RefCell<Option<Refusal>> = const { RefCell::new(None) };
}

/// One CRIU request's notify state on this thread; cleared on drop.
pub(crate) struct Session {
    _faults: ThreadScope,
}

impl Session {
    /// `id` is the container the request is for.
    pub(crate) fn begin(criu: &mut rust_criu::Criu, id: &str) -> Self {
        RESTORED_PID.set(0);
        criu.set_notify_scripts(true);
        criu.set_notify_cb(on_notify);
        Session {
            _faults: ThreadScope::enter(id),
        }
    }

    /// `hook` runs at CRIU's pre-restore notify, after CRIU read the
    /// images and before it forks the first restored process, with CRIU's
    /// pid; an error makes CRIU abort the restore.
    pub(crate) fn before_restore(
        &self,
        hook: impl FnMut(i32) -> std::result::Result<(), NotifyError> + 'static,
    ) {
        PRE_RESTORE.set(Some(Box::new(hook)));
    }

    /// `hook` runs at CRIU's setup-namespaces notify, once the restored
    /// tree's namespaces exist and before CRIU restores its files and
    /// sockets, with the restored root's pid; an error makes CRIU abort.
    pub(crate) fn at_setup_namespaces(
        &self,
        hook: impl FnMut(i32) -> std::result::Result<(), NotifyError> + 'static,
    ) {
        SETUP_NAMESPACES.set(Some(Box::new(hook)));
    }

    /// `check` runs at CRIU's post-restore notify, once the tree is
    /// restored and before any of its tasks runs again; an error makes
    /// CRIU kill the tree, and is kept for [`Self::refused`].
    pub(crate) fn before_resume(&self, check: ResumeCheck) {
        RESUME_CHECK.set(Some(check));
    }

    /// Why a hook or the resume check refused the restore, if one did.
    pub(crate) fn refused(&self) -> Option<Refusal> {
        REFUSED.take()
    }

    /// The pid CRIU reported at post-restore (0 if none).
    pub(crate) fn restored_pid(&self) -> i32 {
        RESTORED_PID.get()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        PRE_RESTORE.set(None);
        SETUP_NAMESPACES.set(None);
        RESUME_CHECK.set(None);
        REFUSED.set(None);
    }
}

/// A hook's answer as CRIU wants it (0, or -1 to abort), its error kept.
fn refuse_on_error(stage: &'static str, answer: std::result::Result<(), NotifyError>) -> i32 {
    match answer {
        Ok(()) => 0,
        Err(source) => {
            log::error!("{stage}: refusing the restore: {source}");
            REFUSED.set(Some(Refusal { stage, source }));
            -1
        }
    }
}

fn run_resume_check() -> i32 {
    let Some(check) = RESUME_CHECK.take() else {
        return 0;
    };
    refuse_on_error("post-restore", check())
}

/// The CRIU worker this thread spawned (rust-criu spawns it from the
/// thread that makes the request, where the notify callback runs too).
fn criu_child_of_this_thread() -> Option<i32> {
    let children = std::fs::read_to_string("/proc/thread-self/children").ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|comm| comm.trim_end() == "criu")
        })
}

fn run_pre_restore() -> i32 {
    PRE_RESTORE.with_borrow_mut(|hook| {
        let Some(hook) = hook.as_mut() else {
            return 0;
        };
        let Some(pid) = criu_child_of_this_thread() else {
            log::error!("pre-restore: CRIU is not a child of the restoring thread");
            return -1;
        };
        refuse_on_error("pre-restore", hook(pid))
    })
}

fn run_setup_namespaces(pid: i32) -> i32 {
    SETUP_NAMESPACES.with_borrow_mut(|hook| {
        let Some(hook) = hook.as_mut() else {
            return 0;
        };
        refuse_on_error("setup-namespaces", hook(pid))
    })
}

/// A CRIU request's result, its worker ended if it failed. rust-criu gives
/// up on a refused notify without waiting for CRIU, and CRIU inherited its
/// own copy of the RPC socket, so it never sees the shim hang up: it would
/// wait forever, still holding the container's processes seized. Must run
/// on the thread that made the request (its worker is that thread's child:
/// only it is ended, never another request's).
pub(crate) fn end_if_failed<T, E>(result: std::result::Result<T, E>) -> std::result::Result<T, E> {
    if result.is_err() {
        let n = arch_faults::kill_criu_of_this_thread();
        if n > 0 {
            log::warn!("killed the CRIU worker left by a failed request");
        }
    }
    result
}

fn on_notify(
    script: &str,
    notify: &rust_criu::rust_criu_protobuf::rpc::Criu_notify,
    _fd: Option<std::os::fd::RawFd>,
) -> i32 {
    if script == "post-restore" {
        RESTORED_PID.set(notify.pid());
        if run_resume_check() != 0 {
            return -1;
        }
    }
    if script == "pre-restore" && run_pre_restore() != 0 {
        return -1;
    }
    if script == "setup-namespaces" && run_setup_namespaces(notify.pid()) != 0 {
        return -1;
    }
    // Each notify is a fault point "criu:<script>"; failing it makes CRIU
    // abort the request and roll back, as a failing hook script would.
    match arch_faults::hit_in_thread_scope(&points::criu(script)) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusing_hook_aborts_and_its_error_is_kept_with_its_stage() {
        SETUP_NAMESPACES.set(Some(Box::new(|pid| {
            Err(format!("hook failed for {pid}").into())
        })));
        assert_eq!(run_setup_namespaces(42), -1);
        let refusal = REFUSED.take().expect("kept");
        assert_eq!(refusal.stage, "setup-namespaces");
        assert_eq!(refusal.source.to_string(), "hook failed for 42");
        SETUP_NAMESPACES.set(Some(Box::new(|_| Ok(()))));
        assert_eq!(run_setup_namespaces(42), 0);
        assert!(REFUSED.take().is_none());
    }

    #[test]
    fn a_refused_resume_is_kept_too() {
        RESUME_CHECK.set(Some(Box::new(|| Err("wrong boot".into()))));
        assert_eq!(run_resume_check(), -1);
        assert_eq!(REFUSED.take().map(|r| r.stage), Some("post-restore"));
    }
}
