//! Progress lines on stderr for long operations, only when stderr is a
//! terminal (scripts and logs get just the results on stdout).

use std::io::IsTerminal;

pub struct Progress {
    label: &'static str,
    total: usize,
    enabled: bool,
}

impl Progress {
    pub fn new(label: &'static str, total: usize) -> Self {
        Progress {
            label,
            total,
            enabled: total > 1 && std::io::stderr().is_terminal(),
        }
    }

    /// Report that `done` of `total` items are finished.
    pub fn tick(&self, done: usize) {
        if self.enabled {
            eprintln!("{} {done}/{}", self.label, self.total);
        }
    }
}
