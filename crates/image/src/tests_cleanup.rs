//! Stale-temp cleanup and leases (issue 13 §4): a live writer's temp is
//! never removed, an `@old-` image never comes back over a newer one, and a
//! taken image goes back only when its restorer's lease expired, judged by
//! the root's clock (a fake one here).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::fsutil::boot_tag;
use crate::lease::{changed_at, Lease};
use crate::tests::info;
use crate::*;

/// The root's clock, set by the test.
struct FakeClock(Mutex<SystemTime>);

impl FsClock for FakeClock {
    fn now(&self, _dir: &Path) -> Result<SystemTime> {
        Ok(*self.0.lock().unwrap())
    }
}

fn clock_at(t: SystemTime) -> Arc<FakeClock> {
    Arc::new(FakeClock(Mutex::new(t)))
}

fn commit(store: &ImageStore, key: &str, payload: &[u8]) {
    let st = store.begin("ns", key).unwrap();
    fs::write(st.path().join(CONFIG), payload).unwrap();
    st.commit(info()).unwrap();
}

fn config_of(dir: &Path) -> Vec<u8> {
    fs::read(dir.join(CONFIG)).unwrap()
}

/// A tag as another host (another boot) writes it.
const OTHER: &str = "0000feedface-4242-0123456789abcdef";

fn dead_here() -> String {
    format!("{}-99999999-0123456789abcdef", boot_tag())
}

fn ns(root: &Path) -> PathBuf {
    root.join("ns")
}

#[test]
fn a_live_writers_temp_is_never_removed_however_old() {
    let tmp = tempfile::tempdir().unwrap();
    let far = SystemTime::now() + Duration::from_secs(86400);
    let store = ImageStore::new(tmp.path()).with_clock(clock_at(far));
    let live = store.begin("ns", "k").unwrap();
    assert_eq!(store.cleanup_stale_temps(Duration::ZERO).unwrap(), 0);
    assert_eq!(
        store.cleanup_stale_temps(Duration::from_secs(600)).unwrap(),
        0
    );
    assert!(live.path().exists(), "a live writer keeps its temp");
}

#[test]
fn another_hosts_temp_is_judged_by_the_roots_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path());
    commit(&store, "k", b"v1");
    let other = ns(tmp.path()).join(format!("k@tmp-{OTHER}"));
    fs::create_dir(&other).unwrap();
    let touched = changed_at(&other).unwrap();
    let at = |secs| {
        ImageStore::new(tmp.path()).with_clock(clock_at(touched + Duration::from_secs(secs)))
    };
    let age = Duration::from_secs(600);
    // This host's clock says nothing: the root's says 5 minutes.
    assert_eq!(at(300).cleanup_stale_temps(age).unwrap(), 0);
    assert!(other.exists());
    assert_eq!(at(601).cleanup_stale_temps(age).unwrap(), 1);
    assert!(!other.exists());
}

#[test]
fn a_staging_dir_is_touched_while_it_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path());
    let st = store.begin("ns", "k").unwrap();
    let past = libc::timespec {
        tv_sec: 1_000_000,
        tv_nsec: 0,
    };
    set_mtime(st.path(), past);
    let before = fs::metadata(st.path()).unwrap().modified().unwrap();
    assert!(st_heartbeat(&st));
    let after = fs::metadata(st.path()).unwrap().modified().unwrap();
    assert!(after > before, "the heartbeat touched the staging dir");
}

fn st_heartbeat(st: &Staging) -> bool {
    st.heartbeat.as_ref().is_some_and(|h| h.beat())
}

fn set_mtime(p: &Path, t: libc::timespec) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let times = [t, t];
    // SAFETY: a valid path and two timespecs.
    assert_eq!(
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) },
        0
    );
}

#[test]
fn an_old_image_never_comes_back_over_a_newer_retired_one() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path());
    let ns = ns(tmp.path());
    commit(&store, "k", b"v1");
    // A writer died mid-replace: v1 moved aside, its replacement unlanded.
    let tag = dead_here();
    fs::rename(ns.join("k"), ns.join(format!("k@old-{tag}"))).unwrap();
    fs::create_dir(ns.join(format!("k@tmp-{tag}"))).unwrap();
    // Since then, v2 was checkpointed and restored (retired).
    commit(&store, "k", b"v2");
    store.take("ns", "k").unwrap().retire().unwrap();
    assert_eq!(store.cleanup_stale_temps(Duration::ZERO).unwrap(), 2);
    assert!(
        store.open("ns", "k").is_err(),
        "v1 must not come back after v2 was restored"
    );
    assert_eq!(config_of(&ns.join("k@restored")), b"v2");
}

#[test]
fn an_old_image_whose_replacement_landed_is_removed_not_brought_back() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path());
    let ns = ns(tmp.path());
    commit(&store, "k", b"v1");
    // Crashed after the replacement landed (its @tmp- name is gone), and
    // the replacement was since taken away (restored elsewhere, removed).
    fs::rename(ns.join("k"), ns.join(format!("k@old-{}", dead_here()))).unwrap();
    assert_eq!(store.cleanup_stale_temps(Duration::ZERO).unwrap(), 1);
    assert!(store.open("ns", "k").is_err());
    assert_eq!(fs::read_dir(&ns).unwrap().count(), 0);
}

/// An image taken on "another host": renamed and leased under that host's
/// tag, the lease touched by this test when it says so.
fn taken_elsewhere(store: &ImageStore, root: &Path) -> (PathBuf, PathBuf) {
    let t = store.take("ns", "k").unwrap();
    let taken = ns(root).join(format!("k@taken-{OTHER}"));
    fs::rename(t.dir(), &taken).unwrap();
    std::mem::forget(t);
    let lease = ns(root).join(format!("k@lease-{OTHER}"));
    fs::write(&lease, b"other-host:1:c\n").unwrap();
    (taken, lease)
}

#[test]
fn a_dead_claimers_taken_image_goes_back_after_the_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path());
    commit(&store, "k", b"v1");
    let (taken, lease) = taken_elsewhere(&store, tmp.path());
    let touched = changed_at(&lease).unwrap();
    let judge = |secs| {
        ImageStore::new(tmp.path())
            .with_lease(Duration::from_secs(60))
            .with_clock(clock_at(touched + Duration::from_secs(secs)))
    };
    // Without a lease configured (basic mode) a taken image never goes back
    // by age.
    let basic =
        ImageStore::new(tmp.path()).with_clock(clock_at(touched + Duration::from_secs(9999)));
    assert_eq!(basic.cleanup_stale_temps(Duration::ZERO).unwrap(), 0);
    assert_eq!(
        judge(59)
            .cleanup_stale_temps_of("ns", "k", Duration::from_secs(600))
            .unwrap(),
        0
    );
    assert!(taken.exists(), "the lease is still running");
    let stale = judge(61)
        .stale_temps_of("ns", "k", Duration::from_secs(600))
        .unwrap();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].why, StaleWhy::LeaseExpired);
    assert_eq!(
        judge(61)
            .cleanup_stale_temps_of("ns", "k", Duration::from_secs(600))
            .unwrap(),
        1
    );
    assert_eq!(config_of(store.open("ns", "k").unwrap().dir()), b"v1");
    assert!(
        !lease.exists() && !taken.exists(),
        "lease and taken name gone"
    );
}

#[test]
fn a_live_claimer_never_loses_its_image() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path());
    commit(&store, "k", b"v1");
    let (taken, lease_path) = taken_elsewhere(&store, tmp.path());
    fs::remove_file(&lease_path).unwrap();
    // The other host's restorer, alive: it touches its lease every 100 ms.
    let lease_d = Duration::from_millis(400);
    let lease = Lease::acquire(lease_path.clone(), "other-host:1:c", lease_d).unwrap();
    let judge = ImageStore::new(tmp.path()).with_lease(lease_d);
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < until {
        assert_eq!(
            judge.cleanup_stale_temps(Duration::from_secs(600)).unwrap(),
            0
        );
        assert!(taken.exists(), "a heartbeating claimer keeps its image");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(lease.beat() && !lease.lost());
    // It dies: no more touches; after the lease the image goes back.
    lease.die();
    std::thread::sleep(lease_d + Duration::from_millis(300));
    assert_eq!(
        judge.cleanup_stale_temps(Duration::from_secs(600)).unwrap(),
        1
    );
    store.open("ns", "k").expect("back for the next restorer");
}

#[test]
fn a_restorer_whose_lease_was_judged_expired_knows_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path());
    commit(&store, "k", b"v1");
    let mut t = store
        .take_leased("ns", "k", "me:1:c", Duration::from_secs(60))
        .unwrap();
    let lease = t.dir().with_file_name(
        t.dir()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .replace("@taken-", "@lease-"),
    );
    assert!(lease.exists(), "the lease is beside the taken image");
    // Another host judged it expired (a stall longer than the lease) and
    // gave the image back: this restorer must not restore it.
    fs::rename(t.dir(), tmp.path().join("ns/k")).unwrap();
    fs::remove_file(&lease).unwrap();
    assert!(matches!(t.fence(), Err(Error::LeaseLost { .. })));
    assert!(matches!(t.retire(), Err(Error::LeaseLost { .. })));
    store
        .open("ns", "k")
        .expect("the image stays for the next restorer");
}

#[test]
fn a_decided_taken_image_removes_its_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path());
    commit(&store, "k", b"v1");
    let t = store
        .take_leased("ns", "k", "me:1:c", Duration::from_secs(60))
        .unwrap();
    t.retire().unwrap();
    let names: Vec<String> = fs::read_dir(ns(tmp.path()))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["k@restored"]);
}

#[test]
fn the_probe_clock_reads_the_filesystems_time_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let now = ProbeClock.now(tmp.path()).unwrap();
    let here = SystemTime::now();
    let skew = here.duration_since(now).unwrap_or_else(|e| e.duration());
    assert!(skew < Duration::from_secs(5), "{skew:?}");
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

/// The fence: once the restorer renamed its taken image to `@restoring-`
/// (right before CRIU), no judge gives it back, however long its lease has
/// been over: either the give-back or the fence wins, never both.
#[test]
fn past_its_fence_an_image_is_never_given_back() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path());
    commit(&store, "k", b"v1");
    let mut t = store
        .take_leased("ns", "k", "me:1:c", Duration::from_secs(60))
        .unwrap();
    t.fence().unwrap();
    let fenced = t.dir().to_path_buf();
    assert!(
        fenced.to_string_lossy().contains("k@restoring-"),
        "{}",
        fenced.display()
    );
    let names = || {
        let mut n: Vec<String> = fs::read_dir(ns(tmp.path()))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        n.sort();
        n
    };
    assert!(
        names().iter().all(|n| !n.contains("@lease-")),
        "the lease ends at the fence: {:?}",
        names()
    );
    // Another host, long after any lease: the image stays with its restorer.
    let touched = changed_at(&fenced).unwrap();
    let judge = ImageStore::new(tmp.path())
        .with_lease(Duration::from_secs(60))
        .with_clock(clock_at(touched + Duration::from_secs(3600)));
    assert_eq!(judge.cleanup_stale_temps(Duration::ZERO).unwrap(), 0);
    assert!(store.open("ns", "k").is_err(), "not given back");
    t.retire().unwrap();
    assert!(names().iter().any(|n| n == "k@restored"), "{:?}", names());
}

/// A `@restoring-` image whose restorer died on this boot goes back (CRIU
/// and the restored tree died with it); one of another host or boot is
/// spent: removed after a day, never given back.
#[test]
fn a_dead_restorers_fenced_image() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path());
    commit(&store, "k", b"v1");
    let t = store.take("ns", "k").unwrap();
    let here = ns(tmp.path()).join(format!("k@restoring-{}", dead_here()));
    fs::rename(t.dir(), &here).unwrap();
    std::mem::forget(t);
    assert_eq!(store.cleanup_stale_temps(Duration::ZERO).unwrap(), 1);
    assert_eq!(config_of(store.open("ns", "k").unwrap().dir()), b"v1");

    let t = store.take("ns", "k").unwrap();
    let elsewhere = ns(tmp.path()).join(format!("k@restoring-{OTHER}"));
    fs::rename(t.dir(), &elsewhere).unwrap();
    std::mem::forget(t);
    let touched = changed_at(&elsewhere).unwrap();
    let judge = |secs| {
        ImageStore::new(tmp.path())
            .with_lease(Duration::from_secs(60))
            .with_clock(clock_at(touched + Duration::from_secs(secs)))
    };
    assert_eq!(
        judge(23 * 3600)
            .cleanup_stale_temps(Duration::ZERO)
            .unwrap(),
        0
    );
    assert!(elsewhere.exists());
    assert_eq!(
        judge(25 * 3600)
            .cleanup_stale_temps(Duration::ZERO)
            .unwrap(),
        1
    );
    assert!(!elsewhere.exists(), "spent: removed");
    assert!(store.open("ns", "k").is_err(), "never given back");
}
