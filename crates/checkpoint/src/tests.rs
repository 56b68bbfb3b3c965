//! The chain end to end with fake container effects.

use std::path::Path;

use arch_image::ImageStore;

use std::sync::Mutex;

use crate::chain::{run_dump_chain, DumpContext, DumpRequest, Dumper};
use crate::policy::ArchIdentity;
use crate::procfs::ProcessView;
use crate::steps::default_steps;

pub(crate) struct FakeDumper {
    pids: Vec<i32>,
    fail: Option<&'static str>,
    /// What happened to the processes, in order.
    effects: Mutex<Vec<String>>,
    /// The codec and cipher of an encrypted dump.
    pub(crate) sealing: Option<(arch_imgstream::Codec, arch_imgstream::Crypt)>,
}

impl FakeDumper {
    pub(crate) fn new(pids: Vec<i32>, fail: Option<&'static str>) -> Self {
        Self {
            pids,
            fail,
            effects: Mutex::default(),
            sealing: None,
        }
    }

    fn effects(&self) -> Vec<String> {
        self.effects.lock().unwrap().clone()
    }

    fn note(&self, what: impl Into<String>) {
        self.effects.lock().unwrap().push(what.into());
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct FakeError(&'static str);

impl Dumper for FakeDumper {
    type Error = FakeError;
    fn pids(&self) -> Result<Vec<i32>, FakeError> {
        Ok(self.pids.clone())
    }
    fn dump(
        &self,
        dir: &Path,
        parent: Option<&str>,
    ) -> Result<Vec<arch_imgstream::FileRecord>, FakeError> {
        self.note(format!(
            "dump{}",
            parent.map(|p| format!(" {p}")).unwrap_or_default()
        ));
        std::fs::write(dir.join("pages-1.img"), b"memory").unwrap();
        criu_parent_link(dir, parent);
        if let Some(reason) = self.fail {
            std::fs::write(
                dir.join("dump.log"),
                format!("(00.1) Error (criu/x.c:1): {reason}\n"),
            )
            .unwrap();
            return Err(FakeError("criu exited with an error"));
        }
        std::fs::write(dir.join("dump.log"), b"ok\n").unwrap();
        Ok(Vec::new())
    }
    fn pre_dump(&self, dir: &Path, parent: Option<&str>) -> Result<(), FakeError> {
        let name = dir.file_name().unwrap().to_string_lossy();
        self.note(format!("pre-dump {name} after {parent:?}"));
        std::fs::write(dir.join("pages-1.img"), b"most of the memory").unwrap();
        criu_parent_link(dir, parent);
        Ok(())
    }
    fn freeze(&self) -> Result<(), FakeError> {
        self.note("freeze");
        Ok(())
    }
    fn thaw(&self) -> Result<(), FakeError> {
        self.note("thaw");
        Ok(())
    }
    fn kill_frozen(&self) -> Result<(), FakeError> {
        self.note("kill");
        Ok(())
    }
    fn criu_version(&self) -> Result<String, FakeError> {
        Ok("4.1.1".into())
    }
    fn sealing(&self) -> Option<(arch_imgstream::Codec, &arch_imgstream::Crypt)> {
        self.sealing.as_ref().map(|(codec, crypt)| (*codec, crypt))
    }
}

/// What CRIU does with a parent: a symlink `parent` in the images dir.
fn criu_parent_link(dir: &Path, parent: Option<&str>) {
    if let Some(p) = parent {
        std::os::unix::fs::symlink(p, dir.join("parent")).unwrap();
    }
}

struct FakeProcs(Vec<&'static str>);
impl ProcessView for FakeProcs {
    fn fd_targets(&self, _pid: i32) -> std::io::Result<Vec<String>> {
        Ok(self.0.iter().map(|s| s.to_string()).collect())
    }
}

pub(crate) struct Rig {
    _tmp: tempfile::TempDir,
    pub(crate) store: ImageStore,
    bundle: std::path::PathBuf,
    pub(crate) upper: std::path::PathBuf,
}

pub(crate) fn rig() -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path().join("ckpt"));
    let bundle = tmp.path().join("bundle");
    let upper = tmp.path().join("upper");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::create_dir_all(upper.join("tmp")).unwrap();
    std::fs::write(bundle.join("config.json"), b"{\"ociVersion\":\"1.0.2\"}").unwrap();
    std::fs::write(upper.join("tmp/count"), b"41\n").unwrap();
    Rig {
        _tmp: tmp,
        store,
        bundle,
        upper,
    }
}

pub(crate) fn request(r: &Rig) -> DumpRequest {
    DumpRequest {
        identity: ArchIdentity {
            namespace: "default".into(),
            key: "job".into(),
        },
        container_id: "c1".into(),
        bundle: r.bundle.clone(),
        upperdir: Some(r.upper.clone()),
        leave_running: false,
        paused: false,
        predumps: 0,
        profile: arch_image::ProfileDigest {
            digest: "0".repeat(64),
            fields: Default::default(),
        },
    }
}

/// The default chain over the fake dumper, with no open descriptors.
pub(crate) fn chain(
    r: &Rig,
    dumper: &FakeDumper,
    req: DumpRequest,
) -> crate::Result<crate::DumpOutcome> {
    run_dump_chain(
        &default_steps(),
        DumpContext::new(req, &r.store, dumper, &FakeProcs(vec![])),
    )
}

pub(crate) fn ns_entries(r: &Rig) -> Vec<String> {
    std::fs::read_dir(r.store.root().join("default"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_successful_chain_commits_a_valid_image() {
    let r = rig();
    let dumper = FakeDumper::new(vec![10], None);
    let procs = FakeProcs(vec!["pipe:[1]", "/dev/null"]);
    let out = run_dump_chain(
        &default_steps(),
        DumpContext::new(request(&r), &r.store, &dumper, &procs),
    )
    .unwrap();
    for step in [
        "defaults",
        "validate",
        "process-checks",
        "prepare",
        "dump",
        "rootfs",
        "commit",
    ] {
        assert!(
            out.durations_ms.contains_key(step),
            "no duration for {step}"
        );
    }
    let image = r
        .store
        .open("default", "job")
        .expect("committed image validates");
    let m = image.manifest();
    assert_eq!(
        (m.container_id.as_str(), m.criu_version.as_str()),
        ("c1", "4.1.1")
    );
    assert!(m.durations_ms.contains_key("dump"));
    let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    for want in [
        "config.json",
        "criu/dump.log",
        "criu/pages-1.img",
        "rootfs-diff.tar",
    ] {
        assert!(paths.contains(&want), "{want} not in {paths:?}");
    }
    assert_eq!(ns_entries(&r), ["job"], "no temporaries left");
}

#[test]
fn predumps_chain_into_the_image_and_the_freeze_is_timed_apart() {
    let r = rig();
    let dumper = FakeDumper::new(vec![10], None);
    let req = crate::DumpRequest {
        predumps: 2,
        leave_running: true,
        ..request(&r)
    };
    let out = chain(&r, &dumper, req).unwrap();
    assert_eq!(
        dumper.effects(),
        [
            "pre-dump pre-1 after None",
            "pre-dump pre-2 after Some(\"../pre-1\")",
            "freeze",
            "dump ../pre-2",
            "thaw"
        ]
    );
    for k in ["predump", "dump", crate::FREEZE] {
        assert!(
            out.durations_ms.contains_key(k),
            "no {k} in {:?}",
            out.durations_ms
        );
    }
    // Self-contained: the pre-dumps are listed (hashed, signed) files of
    // the image, and CRIU's parent links are gone (no symlink in an image).
    let image = r.store.open("default", "job").expect("validates");
    let paths: Vec<&str> = image
        .manifest()
        .files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    for want in ["pre-1/pages-1.img", "pre-2/pages-1.img", "criu/pages-1.img"] {
        assert!(paths.contains(&want), "{want} not in {paths:?}");
    }
    assert!(std::fs::symlink_metadata(image.dir().join("criu/parent")).is_err());
    assert!(image.manifest().durations_ms.contains_key(crate::FREEZE));
}

#[test]
fn without_predumps_the_dump_has_no_parent() {
    let r = rig();
    let dumper = FakeDumper::new(vec![10], None);
    let out = chain(&r, &dumper, request(&r)).unwrap();
    assert_eq!(dumper.effects(), ["freeze", "dump", "kill"]);
    assert!(out.durations_ms.contains_key(crate::FREEZE));
    let image = r.store.open("default", "job").unwrap();
    assert!(!image
        .manifest()
        .files
        .iter()
        .any(|f| f.path.starts_with("pre-")));
}

#[test]
fn a_failed_dump_leaves_nothing_and_quotes_criu() {
    let r = rig();
    let dumper = FakeDumper::new(vec![10], Some("Some file locks are hold"));
    let err = chain(&r, &dumper, request(&r)).unwrap_err().to_string();
    assert!(err.contains("file locks"), "{err}");
    assert!(r.store.open("default", "job").is_err());
    assert!(ns_entries(&r).is_empty(), "left: {:?}", ns_entries(&r));
}

#[test]
fn unsupported_descriptors_are_refused_before_dumping() {
    let r = rig();
    let dumper = FakeDumper::new(vec![10], None);
    let err = run_dump_chain(
        &default_steps(),
        DumpContext::new(
            request(&r),
            &r.store,
            &dumper,
            &FakeProcs(vec!["anon_inode:[io_uring]"]),
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("io_uring"), "{err}");
    assert!(ns_entries(&r).is_empty());
}

#[test]
fn a_container_without_processes_is_not_dumped() {
    let r = rig();
    let dumper = FakeDumper::new(vec![], None);
    let err = chain(&r, &dumper, request(&r)).unwrap_err().to_string();
    assert!(err.contains("no running process"), "{err}");
}

#[test]
fn a_new_checkpoint_replaces_the_previous_one() {
    let r = rig();
    let dumper = FakeDumper::new(vec![10], None);
    chain(&r, &dumper, request(&r)).unwrap();
    std::fs::write(r.upper.join("tmp/count"), b"99\n").unwrap();
    let mut req = request(&r);
    req.container_id = "c2".into();
    chain(&r, &dumper, req).unwrap();
    assert_eq!(
        r.store
            .open("default", "job")
            .unwrap()
            .manifest()
            .container_id,
        "c2"
    );
    assert_eq!(ns_entries(&r), ["job"]);
}

#[test]
fn a_fault_at_any_step_boundary_commits_nothing() {
    let names: Vec<&str> = default_steps().iter().map(|s| s.name()).collect();
    let points = names
        .iter()
        .map(|n| format!("before:{n}"))
        .chain(
            names
                .iter()
                .filter(|n| **n != "commit")
                .map(|n| format!("after:{n}")),
        )
        .chain(["commit:sealed".to_string()]);
    for point in points {
        let r = rig();
        let dumper = FakeDumper::new(vec![10], None);
        let procs = FakeProcs(vec![]);
        let mut req = request(&r);
        req.container_id = format!("fault-{point}");
        arch_faults::arm(
            &req.container_id,
            Some(&format!("{point}=error")),
            r.store.root(),
        )
        .unwrap();
        let err = run_dump_chain(
            &default_steps(),
            DumpContext::new(req, &r.store, &dumper, &procs),
        )
        .unwrap_err();
        assert!(err.to_string().contains(&point), "{point}: {err}");
        assert!(
            ns_entries(&r).is_empty(),
            "{point}: left {:?}",
            ns_entries(&r)
        );
    }
}

#[test]
fn a_fault_after_publishing_does_not_undo_the_commit() {
    let r = rig();
    let dumper = FakeDumper::new(vec![10], None);
    let mut req = request(&r);
    req.container_id = "fault-published".into();
    arch_faults::arm(
        &req.container_id,
        Some("commit:published=error"),
        r.store.root(),
    )
    .unwrap();
    chain(&r, &dumper, req).expect("published is committed");
    r.store.open("default", "job").unwrap();
}

#[test]
fn the_chain_passes_the_catalogued_points_in_order() {
    let r = rig();
    let dumper = FakeDumper::new(vec![10], None);
    let mut req = request(&r);
    req.container_id = "trace-chain".into();
    arch_faults::start_trace(&req.container_id);
    chain(&r, &dumper, req).unwrap();
    // A fake dumper runs no CRIU: its notify points are CRIU's to pass.
    let want: Vec<String> = arch_faults::points::checkpoint()
        .into_iter()
        .filter(|p| !p.starts_with("criu:"))
        .collect();
    assert_eq!(arch_faults::take_trace("trace-chain"), want);
    let names: Vec<&str> = default_steps().iter().map(|s| s.name()).collect();
    assert_eq!(names, arch_faults::points::DUMP_STEPS);
}

#[test]
fn a_stop_checkpoint_keeps_the_processes_frozen_until_the_commit() {
    let r = rig();
    let dumper = FakeDumper::new(vec![10], None);
    chain(&r, &dumper, request(&r)).unwrap();
    assert_eq!(dumper.effects(), ["freeze", "dump", "kill"]);
}

#[test]
fn a_failure_after_the_dump_thaws_the_processes_and_kills_nothing() {
    let r = rig();
    // The rootfs step fails: its upperdir is gone.
    std::fs::remove_dir_all(&r.upper).unwrap();
    std::fs::write(&r.upper, b"not a directory").unwrap();
    let dumper = FakeDumper::new(vec![10], None);
    let err = chain(&r, &dumper, request(&r));
    assert!(err.is_err());
    assert_eq!(dumper.effects(), ["freeze", "dump", "thaw"]);
    assert!(ns_entries(&r).is_empty());
}

#[test]
fn a_failed_dump_thaws_too_and_leave_running_thaws_after_the_rootfs_diff() {
    let r = rig();
    let dumper = FakeDumper::new(vec![10], Some("boom"));
    let _ = chain(&r, &dumper, request(&r));
    assert_eq!(dumper.effects(), ["freeze", "dump", "thaw"]);
    let dumper = FakeDumper::new(vec![10], None);
    let mut req = request(&r);
    req.leave_running = true;
    chain(&r, &dumper, req).unwrap();
    assert_eq!(
        dumper.effects(),
        ["freeze", "dump", "thaw"],
        "thawed after the rootfs diff"
    );
}

#[test]
fn a_paused_container_is_dumped_as_it_is_and_stays_paused() {
    let r = rig();
    let dumper = FakeDumper::new(vec![10], None);
    let mut req = request(&r);
    (req.leave_running, req.paused) = (true, true);
    chain(&r, &dumper, req).unwrap();
    assert_eq!(dumper.effects(), ["dump"]);
}
