//! Delete and Shutdown never cut a commit short.

use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use containerd_shim::protos::topics;

use super::stubs::Call;
use super::{Rig, WAIT};

#[test]
fn a_delete_after_the_kill_deadline_waits_for_the_commit() {
    let r = Rig::with_kill_deadline(Duration::from_millis(100));
    let (release, gate) = channel();
    r.runtime.script.lock().unwrap().dump_gate = Some(gate);
    let pid = r.create("c", Some("job"));
    r.start("c");
    r.kill("c", libc::SIGTERM);
    let deadline = Instant::now() + WAIT;
    while !r
        .runtime
        .calls()
        .contains(&Call::Checkpoint("c".into(), true))
    {
        assert!(Instant::now() < deadline, "no dump");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The tree ends; its exit is reported once the kill deadline passed,
    // while the commit still runs: containerd's Delete follows.
    r.exit(pid, 137);
    assert!(r.events.expect(topics::TASK_EXIT_EVENT_TOPIC, WAIT));
    std::thread::scope(|s| {
        let deleting = s.spawn(|| {
            r.delete("c");
            Instant::now()
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(!deleting.is_finished(), "Delete returned mid-commit");
        assert!(
            !r.runtime.calls().contains(&Call::Delete("c".into())),
            "the container was torn down mid-commit"
        );
        let released = Instant::now();
        release.send(()).unwrap();
        assert!(deleting.join().unwrap() >= released);
    });
    assert_eq!(r.entries(), ["job"], "the image is committed");
    assert!(r.runtime.calls().contains(&Call::Delete("c".into())));
    // Nothing in flight any more: Shutdown lets the shim go at once.
    let started = Instant::now();
    r.service.shutdown(Default::default()).unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
}
