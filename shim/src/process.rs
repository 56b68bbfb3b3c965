//! One process of a task (the init or an exec) as containerd sees it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use arch_runtime::ProcessRef;
use containerd_shim::api::Status;

use crate::stdio::{IoHandles, StdioPaths};

#[derive(Clone, Debug)]
pub struct ExitInfo {
    pub code: u32,
    pub at: SystemTime,
}

#[derive(Debug)]
pub struct ProcessState {
    pub pid: i32,
    pub status: Status,
    pub exit: Option<ExitInfo>,
}

pub struct Process {
    pub exec_id: String,
    pub stdio: StdioPaths,
    state: Mutex<ProcessState>,
    exited: Condvar,
    io: Mutex<Option<IoHandles>>,
    /// The process as signals reach it (a pidfd): never a later process
    /// that got its pid after it was reaped.
    target: Mutex<Option<Arc<ProcessRef>>>,
}

impl Process {
    pub fn new(exec_id: &str, stdio: StdioPaths) -> Self {
        Self {
            exec_id: exec_id.to_string(),
            stdio,
            state: Mutex::new(ProcessState {
                pid: 0,
                status: Status::CREATED,
                exit: None,
            }),
            exited: Condvar::new(),
            io: Mutex::new(None),
            target: Mutex::new(None),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, ProcessState> {
        self.state.lock().unwrap()
    }

    pub fn pid(&self) -> i32 {
        self.state().pid
    }

    /// How signals reach the process from now on.
    pub fn pin(&self, target: ProcessRef) {
        *self.target.lock().unwrap() = Some(Arc::new(target));
    }

    /// The process to signal; None before it has a pid.
    pub fn target(&self) -> Option<Arc<ProcessRef>> {
        self.target.lock().unwrap().clone()
    }

    pub fn set_io(&self, io: IoHandles) {
        *self.io.lock().unwrap() = Some(io);
    }

    pub fn with_io<T>(&self, f: impl FnOnce(&IoHandles) -> T) -> Option<T> {
        self.io.lock().unwrap().as_ref().map(f)
    }

    pub fn set_created(&self, pid: i32) {
        self.state().pid = pid;
    }

    pub fn set_status(&self, status: Status) {
        let mut st = self.state();
        if st.status != Status::STOPPED {
            st.status = status;
        }
    }

    /// Records the exit once the output is drained and wakes every waiter.
    /// Returns false if the process had already exited.
    pub fn set_exited(&self, code: i32) -> bool {
        if let Some(io) = self.io.lock().unwrap().as_mut() {
            io.drain(crate::timeouts::OUTPUT_DRAIN);
        }
        let mut st = self.state();
        if st.exit.is_some() {
            return false;
        }
        st.status = Status::STOPPED;
        st.exit = Some(ExitInfo {
            code: code as u32,
            at: SystemTime::now(),
        });
        self.exited.notify_all();
        true
    }

    pub fn wait(&self) -> ExitInfo {
        let mut st = self.state();
        loop {
            if let Some(exit) = &st.exit {
                return exit.clone();
            }
            st = self.exited.wait(st).unwrap();
        }
    }

    pub fn close_io(&self) {
        if let Some(io) = self.io.lock().unwrap().take() {
            io.close_stdin();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn exit_is_recorded_once_and_wakes_waiters() {
        let p = Arc::new(Process::new("e1", StdioPaths::default()));
        p.set_created(42);
        p.set_status(Status::RUNNING);
        let waiter = {
            let p = p.clone();
            std::thread::spawn(move || p.wait().code)
        };
        assert!(p.set_exited(137));
        assert!(!p.set_exited(0), "second exit is ignored");
        assert_eq!(waiter.join().unwrap(), 137);
        assert_eq!(p.state().status, Status::STOPPED);
    }

    #[test]
    fn a_stopped_process_stays_stopped() {
        let p = Process::new("", StdioPaths::default());
        p.set_exited(0);
        p.set_status(Status::RUNNING);
        assert_eq!(p.state().status, Status::STOPPED);
    }
}
