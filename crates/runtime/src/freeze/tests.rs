use std::cell::{Cell, RefCell};

use super::*;

/// A cgroup whose tasks are all frozen after `frozen_after` freeze
/// requests (never, if `None`).
struct FakeCgroup {
    frozen_after: Option<u32>,
    requests: RefCell<Vec<bool>>,
    thawed_since: Cell<bool>,
}

impl FakeCgroup {
    fn new(frozen_after: Option<u32>) -> Self {
        Self {
            frozen_after,
            requests: RefCell::new(Vec::new()),
            thawed_since: Cell::new(false),
        }
    }

    fn freeze_requests(&self) -> usize {
        self.requests.borrow().iter().filter(|r| **r).count()
    }
}

impl Freezer for FakeCgroup {
    fn request(&self, frozen: bool) -> std::io::Result<()> {
        if !frozen {
            self.thawed_since.set(true);
        }
        self.requests.borrow_mut().push(frozen);
        Ok(())
    }

    fn state(&self) -> std::io::Result<FreezerState> {
        let n = self.freeze_requests() as u32;
        Ok(match self.frozen_after {
            Some(after) if n >= after => FreezerState::Frozen,
            _ => FreezerState::Freezing,
        })
    }
}

#[test]
fn a_slow_freeze_is_waited_for_without_ever_thawing() {
    // 300 polls: libcgroups would have thawed the cgroup six times.
    let cgroup = FakeCgroup::new(Some(300));
    let mut slept = Duration::ZERO;
    freeze("c", &cgroup, Duration::from_secs(3600), |d| slept += d).unwrap();
    assert_eq!(cgroup.freeze_requests(), 300);
    assert!(!cgroup.thawed_since.get(), "thawed while freezing");
    // The pauses grow to LONGEST_POLL and stay there.
    assert!(slept > LONGEST_POLL * 250 && slept < LONGEST_POLL * 300);
}

#[test]
fn a_cgroup_that_never_freezes_is_thawed_and_named_in_the_error() {
    let cgroup = FakeCgroup::new(None);
    let err = freeze("c1", &cgroup, Duration::ZERO, |_| {}).unwrap_err();
    assert!(cgroup.thawed_since.get(), "left half-frozen");
    assert_eq!(cgroup.requests.borrow().last(), Some(&false));
    let text = err.to_string();
    assert!(
        text.contains("c1") && text.contains("unable to freeze"),
        "{text}"
    );
    assert!(text.contains("Freezing"), "{text}");
}

#[test]
fn an_already_frozen_cgroup_needs_one_request() {
    let cgroup = FakeCgroup::new(Some(1));
    freeze("c", &cgroup, Duration::ZERO, |_| panic!("slept")).unwrap();
    assert_eq!(*cgroup.requests.borrow(), vec![true]);
}

struct GoneCgroup;

impl Freezer for GoneCgroup {
    fn request(&self, _: bool) -> std::io::Result<()> {
        Err(std::io::Error::from_raw_os_error(libc::ENOENT))
    }
    fn state(&self) -> std::io::Result<FreezerState> {
        unreachable!("a request failed first")
    }
}

#[test]
fn a_cgroup_that_is_gone_fails_at_once() {
    let err = freeze("c", &GoneCgroup, Duration::from_secs(3600), |_| {
        panic!("waited for a cgroup that is gone")
    })
    .unwrap_err();
    assert!(err.to_string().contains("freezer:"), "{err}");
}

#[test]
fn freezer_files_parse_as_the_kernel_writes_them() {
    assert_eq!(parse_v1("FROZEN\n"), FreezerState::Frozen);
    assert_eq!(parse_v1("FREEZING\n"), FreezerState::Freezing);
    assert_eq!(parse_v1("THAWED\n"), FreezerState::Thawed);
    assert_eq!(
        parse_v2_events("populated 1\nfrozen 1\n"),
        FreezerState::Frozen
    );
    assert_eq!(
        parse_v2_events("populated 1\nfrozen 0\n"),
        FreezerState::Freezing
    );
}

#[test]
fn the_host_freezer_reads_and_writes_its_version_s_files() {
    let v1 = tempfile::tempdir().unwrap();
    std::fs::write(v1.path().join("freezer.state"), "").unwrap();
    let f = HostFreezer::at(v1.path());
    f.request(true).unwrap();
    assert_eq!(
        std::fs::read_to_string(v1.path().join("freezer.state")).unwrap(),
        "FROZEN"
    );
    assert_eq!(f.state().unwrap(), FreezerState::Frozen);

    let v2 = tempfile::tempdir().unwrap();
    std::fs::write(v2.path().join("cgroup.freeze"), "").unwrap();
    std::fs::write(v2.path().join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
    let f = HostFreezer::at(v2.path());
    f.request(true).unwrap();
    assert_eq!(
        std::fs::read_to_string(v2.path().join("cgroup.freeze")).unwrap(),
        "1"
    );
    assert_eq!(f.state().unwrap(), FreezerState::Freezing);
}
