//! CRIU's notify calls, for dump and restore alike. rust-criu takes a plain
//! `fn`, and CRIU calls it on the thread that issued the request, so what
//! the callback needs (which container's fault points apply) and what it
//! learns (the restored pid) travel through thread-locals, scoped by
//! [`Session`].

use std::cell::Cell;

use arch_faults::{points, ThreadScope};

thread_local! {
    static RESTORED_PID: Cell<i32> = const { Cell::new(0) };
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

    /// The pid CRIU reported at post-restore (0 if none).
    pub(crate) fn restored_pid(&self) -> i32 {
        RESTORED_PID.get()
    }
}

/// Ends the CRIU worker of a failed request. rust-criu gives up on a
/// refused notify without waiting for CRIU, and CRIU inherited its own
/// copy of the RPC socket, so it never sees the shim hang up: it would wait
/// forever, still holding the container's processes seized.
pub(crate) fn end_failed_request() {
    let n = arch_faults::kill_criu_children();
    if n > 0 {
        log::warn!("killed {n} CRIU worker(s) left by a failed request");
    }
}

fn on_notify(
    script: &str,
    notify: &rust_criu::rust_criu_protobuf::rpc::Criu_notify,
    _fd: Option<std::os::fd::RawFd>,
) -> i32 {
    if script == "post-restore" {
        RESTORED_PID.set(notify.pid());
    }
    // Each notify is a fault point "criu:<script>"; failing it makes CRIU
    // abort the request and roll back, as a failing hook script would.
    match arch_faults::hit_in_thread_scope(&points::criu(script)) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}
