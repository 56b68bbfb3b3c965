//! Older generations (host `generations`): a restore whose newest image
//! is bad falls back to the one before it, at Create (validation) and at
//! Start (CRIU), recording each attempt.

use std::path::Path;

use arch_records::{Operation, Outcome};

use super::stubs::Call;
use super::Rig;

/// The older generation the tests plant: a copy of the newest image (the
/// same signed bytes), named as the store names generations.
const OLDER: &str = "job@gen-1-000000000";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A rig keeping two generations, with `job` checkpointed and an older
/// generation of it beside.
fn two_generations() -> Rig {
    let r = Rig::with_config(|c| c.generations = 2);
    r.checkpointed("c1", "job");
    let ns = r.root().join(super::NS);
    copy_dir(&ns.join("job"), &ns.join(OLDER));
    r
}

fn restores(r: &Rig) -> Vec<arch_records::Record> {
    let recs = r.records().into_iter();
    recs.filter(|rec| rec.op == Operation::Restore).collect()
}

fn assert_fell_back(r: &Rig, why: &str) {
    let recs = restores(r);
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[0].outcome, Outcome::Fallback);
    let reason = recs[0].error.as_deref().unwrap_or("");
    assert!(reason.starts_with("job: "), "names the image: {reason}");
    assert!(reason.contains(why), "{reason}");
    assert!(
        reason.contains(&format!("falling back to older generation {OLDER}")),
        "{reason}"
    );
    assert_eq!(recs[1].outcome, Outcome::Ok);
    assert_eq!(
        recs[1].error.as_deref(),
        Some(format!("restored from older generation {OLDER}").as_str())
    );
    let entries = r.entries();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries[0].starts_with("job@failed-"), "{entries:?}");
    assert_eq!(entries[1], "job@restored");
}

#[test]
fn a_failed_criu_restore_falls_back_to_the_older_generation_at_start() {
    let r = two_generations();
    r.runtime.script.lock().unwrap().restores_failing = 1;
    assert_eq!(r.create("c2", Some("job")), 0, "staged");
    let pid = r.start("c2");
    assert!(pid > 0);
    let calls = r.runtime.calls();
    let restores_run = calls.iter().filter(|c| **c == Call::Restore("c2".into()));
    assert_eq!(restores_run.count(), 2, "the newest, then the older one");
    assert!(!calls.contains(&Call::Create("c2".into())), "never fresh");
    assert_eq!(r.mounts.resets.lock().unwrap().len(), 1, "rolled back once");
    assert_fell_back(&r, "criu restore");
}

#[test]
fn an_image_that_fails_validation_falls_back_to_the_older_generation_at_create() {
    let r = two_generations();
    let pages = r.root().join(super::NS).join("job/criu/pages-1.img");
    std::fs::write(&pages, b"tampered").unwrap();
    assert_eq!(r.create("c2", Some("job")), 0, "staged from the older one");
    r.start("c2");
    assert!(!r.runtime.calls().contains(&Call::Create("c2".into())));
    assert_fell_back(&r, "invalid image");
}

#[test]
fn past_the_oldest_generation_the_container_starts_fresh() {
    let r = two_generations();
    r.runtime.script.lock().unwrap().restores_failing = 2;
    r.create("c2", Some("job"));
    r.start("c2");
    assert!(r.runtime.calls().contains(&Call::Create("c2".into())));
    let recs = restores(&r);
    let outcomes: Vec<_> = recs.iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, [Outcome::Fallback, Outcome::Fallback], "{recs:?}");
    let last = recs[1].error.as_deref().unwrap_or("");
    assert!(
        last.starts_with(OLDER) && last.ends_with("starting fresh"),
        "{last}"
    );
    let entries = r.entries();
    assert!(
        entries.iter().all(|e| e.starts_with("job@failed-")),
        "{entries:?}"
    );
}

#[test]
fn one_generation_never_reaches_for_older_images() {
    let r = Rig::new();
    r.checkpointed("c1", "job");
    // Left by a host that kept more: the setting here is 1 (the default).
    let ns = r.root().join(super::NS);
    copy_dir(&ns.join("job"), &ns.join(OLDER));
    r.runtime.script.lock().unwrap().restore_fails = true;
    r.create("c2", Some("job"));
    r.start("c2");
    let recs = restores(&r);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0].outcome, Outcome::Fallback);
    assert!(r.entries().contains(&OLDER.to_string()), "left alone");
}
