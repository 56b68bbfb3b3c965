use arch_records::{Operation, Outcome};
use containerd_shim::protos::topics;

use super::stubs::Call;
use super::{Rig, WAIT};

fn restores(r: &Rig) -> Vec<arch_records::Record> {
    r.records()
        .into_iter()
        .filter(|rec| rec.op == Operation::Restore)
        .collect()
}

#[test]
fn a_new_container_with_the_key_is_restored_at_start() {
    let r = Rig::new();
    r.checkpointed("c1", "job");
    assert_eq!(r.create("c2", Some("job")), 0, "staged: no process yet");
    assert!(!r.runtime.calls().contains(&Call::Create("c2".into())));
    let pid = r.start("c2");
    assert!(pid > 0);
    assert!(r.runtime.calls().contains(&Call::Restore("c2".into())));
    assert!(r.events.expect(topics::TASK_START_EVENT_TOPIC, WAIT));
    assert_eq!(r.entries(), ["job@restored"], "consumed once");
    let recs = restores(&r);
    assert_eq!(recs.len(), 1);
    assert_eq!(
        (recs[0].outcome, recs[0].container_id.as_str()),
        (Outcome::Ok, "c2")
    );
    // The restored init is the container's: its exit is reported.
    r.exit(pid, 0);
    assert_eq!(r.wait("c2"), 0);
}

/// The restored init is known to the exit index as soon as CRIU returns,
/// before the bookkeeping (the record, retiring the image) that may be
/// slow on a network filesystem: an early exit is matched at once.
#[test]
fn the_restored_init_is_registered_before_the_bookkeeping() {
    let r = Rig::new();
    r.checkpointed("c1", "job");
    r.create("c2", Some("job"));
    let c = r.service.container("c2").unwrap();
    let Some(crate::container::PendingRestore::Arch(staged)) = c.take_pending() else {
        panic!("no restore staged");
    };
    let mut at_register = None;
    let pid = r
        .service
        .arch
        .start_restore(&c, *staged, |pid| {
            at_register = Some((pid, restores(&r).len(), r.entries()));
        })
        .unwrap();
    let (registered, records, entries) = at_register.expect("registered");
    assert_eq!(registered, pid);
    assert_eq!(
        records, 0,
        "the restore was recorded before its init was registered"
    );
    assert!(
        !entries.iter().any(|e| e.ends_with("@restored")),
        "the image was retired before the init was registered: {entries:?}"
    );
    assert_eq!(restores(&r).len(), 1, "recorded afterwards");
}

#[test]
fn a_failed_restore_rolls_back_and_starts_fresh() {
    let r = Rig::new();
    r.checkpointed("c1", "job");
    r.runtime.script.lock().unwrap().restore_fails = true;
    assert_eq!(r.create("c2", Some("job")), 0);
    let pid = r.start("c2");
    let calls = r.runtime.calls();
    let tail: Vec<&Call> = calls.iter().rev().take(3).collect();
    assert_eq!(
        tail,
        [
            &Call::Start("c2".into()),
            &Call::Create("c2".into()),
            &Call::Restore("c2".into())
        ],
        "restore, then a fresh create and start"
    );
    assert_eq!(
        r.mounts.resets.lock().unwrap().len(),
        1,
        "rootfs rolled back"
    );
    let entries = r.entries();
    assert_eq!(entries.len(), 1);
    assert!(entries[0].starts_with("job@failed-"), "{entries:?}");
    let recs = restores(&r);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].outcome, Outcome::Fallback);
    assert!(recs[0]
        .error
        .as_deref()
        .unwrap_or("")
        .contains("criu restore"));
    r.exit(pid, 1);
    assert_eq!(r.wait("c2"), 1);
}

#[test]
fn an_image_that_fails_validation_means_a_fresh_start_at_create() {
    let r = Rig::new();
    r.checkpointed("c1", "job");
    let pages = r.root().join("ns1/job/criu/pages-1.img");
    std::fs::write(&pages, b"tampered").unwrap();
    let pid = r.create("c2", Some("job"));
    assert!(pid > 0, "created fresh at once");
    assert!(r.runtime.calls().contains(&Call::Create("c2".into())));
    assert_eq!(r.mounts.resets.lock().unwrap().len(), 1);
    let recs = restores(&r);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].outcome, Outcome::Fallback);
    assert!(
        recs[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("invalid image"),
        "{:?}",
        recs[0].error
    );
    r.start("c2");
    assert!(!r.runtime.calls().contains(&Call::Restore("c2".into())));
}

#[test]
fn a_container_without_arch_never_touches_an_image() {
    let r = Rig::new();
    r.checkpointed("c1", "job");
    assert!(r.create("job", None) > 0);
    r.start("job");
    assert_eq!(r.entries(), ["job"], "left alone");
}
