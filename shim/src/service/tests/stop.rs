use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use arch_records::{Operation, Outcome};
use containerd_shim::api;
use containerd_shim::protos::topics;

use super::stubs::Call;
use super::{wait_for, Rig, WAIT};

#[test]
fn the_exit_of_a_stopping_container_waits_for_the_commit() {
    let r = Rig::new();
    let (release, gate) = channel();
    r.runtime.script.lock().unwrap().dump_gate = Some(gate);
    let pid = r.create("c", Some("job"));
    r.start("c");
    r.kill("c", libc::SIGTERM);
    wait_for("the dump", || {
        r.runtime
            .calls()
            .contains(&Call::Checkpoint("c".into(), true))
    });
    assert!(
        !r.runtime.calls().contains(&Call::EndFrozen("c".into())),
        "the frozen tree lives until the image is committed"
    );
    // The tree ends (here before the commit, as a racing exit would).
    r.exit(pid, 137);
    assert!(
        !r.events
            .expect(topics::TASK_EXIT_EVENT_TOPIC, Duration::from_millis(300)),
        "exit reported before the commit"
    );
    release.send(()).unwrap();
    assert!(r.events.expect(topics::TASK_EXIT_EVENT_TOPIC, WAIT));
    assert_eq!(r.entries(), ["job"], "committed, nothing else left");
    let calls = r.runtime.calls();
    let at = |c: Call| {
        calls
            .iter()
            .position(|x| *x == c)
            .unwrap_or_else(|| panic!("{c:?} in {calls:?}"))
    };
    assert!(at(Call::Pause("c".into())) < at(Call::Checkpoint("c".into(), true)));
    assert!(at(Call::Checkpoint("c".into(), true)) < at(Call::EndFrozen("c".into())));
    let recs = r.records();
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    assert_eq!(
        (rec.op, rec.outcome, rec.trigger.as_str()),
        (Operation::Checkpoint, Outcome::Ok, "stop")
    );
    assert!(!r
        .runtime
        .calls()
        .contains(&Call::Signal(pid as i32, libc::SIGTERM)));
}

#[test]
fn a_sigkill_during_a_checkpoint_waits_for_it_and_kills_nothing() {
    let r = Rig::new();
    let (release, gate) = channel();
    r.runtime.script.lock().unwrap().dump_gate = Some(gate);
    let pid = r.create("c", Some("job"));
    r.start("c");
    r.kill("c", libc::SIGTERM);
    let service = r.service.clone();
    let killer = std::thread::spawn(move || {
        let started = Instant::now();
        service
            .kill(api::KillRequest {
                id: "c".into(),
                signal: libc::SIGKILL as u32,
                ..Default::default()
            })
            .unwrap();
        started.elapsed()
    });
    std::thread::sleep(Duration::from_millis(200));
    release.send(()).unwrap();
    let waited = killer.join().unwrap();
    assert!(
        waited >= Duration::from_millis(150),
        "returned after {waited:?}"
    );
    assert!(!r
        .runtime
        .calls()
        .contains(&Call::Signal(pid as i32, libc::SIGKILL)));
    assert_eq!(r.entries(), ["job"]);
}

#[test]
fn a_sigkill_past_the_kill_deadline_is_delivered() {
    let r = Rig::with_kill_deadline(Duration::from_millis(200));
    let (release, gate) = channel();
    r.runtime.script.lock().unwrap().dump_gate = Some(gate);
    let pid = r.create("c", Some("job"));
    r.start("c");
    r.kill("c", libc::SIGTERM);
    let started = Instant::now();
    r.kill("c", libc::SIGKILL);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(r
        .runtime
        .calls()
        .contains(&Call::Signal(pid as i32, libc::SIGKILL)));
    release.send(()).unwrap();
}

#[test]
fn a_failed_checkpoint_keeps_nothing_and_delivers_the_signal() {
    let r = Rig::new();
    r.runtime.script.lock().unwrap().dump_fails = true;
    let pid = r.create("c", Some("job"));
    r.start("c");
    r.kill("c", libc::SIGTERM);
    wait_for("the stop signal", || {
        r.runtime
            .calls()
            .contains(&Call::Signal(pid as i32, libc::SIGTERM))
    });
    assert!(r.entries().is_empty(), "left {:?}", r.entries());
    // Thawed before the signal, so the process gets it; never killed.
    let calls = r.runtime.calls();
    let thawed = calls.iter().position(|c| *c == Call::Resume("c".into()));
    let signalled = calls
        .iter()
        .position(|c| *c == Call::Signal(pid as i32, libc::SIGTERM));
    assert!(thawed.is_some() && thawed < signalled, "{calls:?}");
    assert!(!calls.contains(&Call::EndFrozen("c".into())));
    wait_for("the record", || !r.records().is_empty());
    let rec = &r.records()[0];
    assert_eq!(
        (rec.op, rec.outcome),
        (Operation::Checkpoint, Outcome::Failed)
    );
    assert!(
        rec.error.as_deref().unwrap_or("").contains("stub says no"),
        "{:?}",
        rec.error
    );
}

#[test]
fn a_stop_signal_to_all_processes_checkpoints_too() {
    let r = Rig::new();
    let pid = r.create("c", Some("job"));
    r.start("c");
    r.service
        .kill(api::KillRequest {
            id: "c".into(),
            signal: libc::SIGTERM as u32,
            all: true,
            ..Default::default()
        })
        .unwrap();
    r.exit(pid, 137);
    assert_eq!(r.wait("c"), 137);
    assert_eq!(r.entries(), ["job"]);
    assert!(!r
        .runtime
        .calls()
        .contains(&Call::Kill("c".into(), libc::SIGTERM, true)));
}
