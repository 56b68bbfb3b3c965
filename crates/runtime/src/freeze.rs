//! Freezes a container's cgroup patiently, for a dump under load.
//!
//! Freezing is cooperative: the kernel flags each task, and a task freezes
//! only when it next runs. On a host where hundreds of containers stop at
//! once, a woken task can wait tens of milliseconds for a CPU. libcgroups'
//! v1 freeze (after runc's) rewrites FROZEN in a tight loop and thaws the
//! cgroup every 50 tries, about every 25 ms of wall time: under that load
//! the tasks never all get to run inside one window, and after 1000 tries
//! it gives up with "unable to freeze" (200 containers stopped at once on 2
//! cores lost two checkpoints that way). Here the cgroup is never thawed
//! while it freezes: FROZEN is rewritten on each poll (which also flags
//! tasks forked since the last write) with a growing pause in between,
//! until every task is frozen or the patience runs out. Then libcontainer's
//! pause, which records the Paused status, finds the cgroup already frozen.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Result, RuntimeError};

/// How long a freeze waits for the last task to freeze. A task in an
/// unfreezable sleep (e.g. on a dead NFS server) can stop it forever; CRIU
/// gives its own freeze 10 s by default. Past this the cgroup is thawed
/// and the checkpoint fails (the container then gets its stop signal).
pub const FREEZE_PATIENCE: Duration = Duration::from_secs(20);

/// A freeze slower than this is logged (the host is loaded).
const SLOW_FREEZE: Duration = Duration::from_secs(1);

/// The first and the longest pause between two polls.
const FIRST_POLL: Duration = Duration::from_millis(1);
const LONGEST_POLL: Duration = Duration::from_millis(100);

/// What a freeze reads of a cgroup's freezer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FreezerState {
    Thawed,
    Freezing,
    Frozen,
}

/// A cgroup's freezer files, behind a trait for unit tests.
pub(crate) trait Freezer {
    /// Asks for the cgroup frozen (`true`) or thawed.
    fn request(&self, frozen: bool) -> std::io::Result<()>;
    fn state(&self) -> std::io::Result<FreezerState>;
}

/// Freezes `cgroup`, polling with `sleep` until it is frozen or `patience`
/// has passed; on failure it is thawed again (a half-frozen container
/// must not be left behind).
pub(crate) fn freeze(
    id: &str,
    cgroup: &impl Freezer,
    patience: Duration,
    mut sleep: impl FnMut(Duration),
) -> Result<()> {
    let started = Instant::now();
    let mut pause = FIRST_POLL;
    let mut polls = 0u32;
    let outcome = loop {
        let state = cgroup.request(true).and_then(|()| cgroup.state());
        match state {
            Ok(FreezerState::Frozen) => {
                if started.elapsed() > SLOW_FREEZE {
                    log::info!(
                        "{id}: frozen after {polls} polls in {:?}",
                        started.elapsed()
                    );
                }
                break Ok(());
            }
            Ok(_) if started.elapsed() < patience => {}
            Ok(state) => {
                break Err(format!(
                    "still {state:?} after {polls} polls in {:?}",
                    started.elapsed()
                ))
            }
            Err(e) => break Err(format!("freezer: {e}")),
        }
        polls += 1;
        sleep(pause);
        pause = (pause * 2).min(LONGEST_POLL);
    };
    outcome.map_err(|reason| {
        if let Err(e) = cgroup.request(false) {
            log::warn!("{id}: thawing after a failed freeze: {e}");
        }
        RuntimeError::Cgroup {
            id: id.to_string(),
            reason: format!("unable to freeze: {reason}"),
        }
    })
}

/// The freezer of a cgroup directory: `freezer.state` in the v1 freezer
/// hierarchy, `cgroup.freeze`/`cgroup.events` on v2.
pub(crate) enum HostFreezer {
    V1(PathBuf),
    V2(PathBuf),
}

impl HostFreezer {
    /// `dir` is the cgroup's directory in the freezer (v1) or unified (v2)
    /// hierarchy.
    pub(crate) fn at(dir: &Path) -> Self {
        if dir.join("cgroup.freeze").exists() {
            HostFreezer::V2(dir.to_path_buf())
        } else {
            HostFreezer::V1(dir.to_path_buf())
        }
    }
}

impl Freezer for HostFreezer {
    fn request(&self, frozen: bool) -> std::io::Result<()> {
        let (file, value) = match (self, frozen) {
            (HostFreezer::V1(d), true) => (d.join("freezer.state"), "FROZEN"),
            (HostFreezer::V1(d), false) => (d.join("freezer.state"), "THAWED"),
            (HostFreezer::V2(d), true) => (d.join("cgroup.freeze"), "1"),
            (HostFreezer::V2(d), false) => (d.join("cgroup.freeze"), "0"),
        };
        // Never create: a freezer file that is gone means the cgroup is.
        std::fs::OpenOptions::new()
            .write(true)
            .open(file)?
            .write_all(value.as_bytes())
    }

    fn state(&self) -> std::io::Result<FreezerState> {
        let (file, parse): (PathBuf, fn(&str) -> FreezerState) = match self {
            HostFreezer::V1(d) => (d.join("freezer.state"), parse_v1),
            HostFreezer::V2(d) => (d.join("cgroup.events"), parse_v2_events),
        };
        let mut text = String::new();
        std::fs::File::open(file)?.read_to_string(&mut text)?;
        Ok(parse(&text))
    }
}

fn parse_v1(text: &str) -> FreezerState {
    match text.trim() {
        "FROZEN" => FreezerState::Frozen,
        "FREEZING" => FreezerState::Freezing,
        _ => FreezerState::Thawed,
    }
}

/// v2 says `frozen 1` in cgroup.events once every task is frozen; until
/// then a cgroup asked to freeze is freezing.
fn parse_v2_events(text: &str) -> FreezerState {
    if text.lines().any(|l| l.trim() == "frozen 1") {
        FreezerState::Frozen
    } else {
        FreezerState::Freezing
    }
}

#[cfg(test)]
mod tests;
