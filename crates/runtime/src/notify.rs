//! CRIU's notify calls, for dump and restore alike. rust-criu takes a plain
//! `fn`, and CRIU calls it on the thread that issued the request, so what
//! the callback needs (the armed fault plan) and what it learns (the
//! restored pid) travel through thread-locals, scoped by [`Session`].

use std::cell::{Cell, RefCell};

use arch_faults::Plan;

thread_local! {
    static RESTORED_PID: Cell<i32> = const { Cell::new(0) };
    static FAULTS: RefCell<Plan> = RefCell::new(Plan::none());
}

/// One CRIU request's notify state on this thread; cleared on drop.
pub(crate) struct Session;

impl Session {
    pub(crate) fn begin(criu: &mut rust_criu::Criu, faults: &Plan) -> Self {
        RESTORED_PID.set(0);
        FAULTS.with_borrow_mut(|f| *f = faults.clone());
        criu.set_notify_scripts(true);
        criu.set_notify_cb(on_notify);
        Session
    }

    /// The pid CRIU reported at post-restore (0 if none).
    pub(crate) fn restored_pid(&self) -> i32 {
        RESTORED_PID.get()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        FAULTS.with_borrow_mut(|f| *f = Plan::none());
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
    match FAULTS.with_borrow(|f| f.hit(&format!("criu:{script}"))) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}
