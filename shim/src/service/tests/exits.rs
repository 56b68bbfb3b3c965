use std::sync::mpsc::channel;
use std::time::Duration;

use containerd_shim::api;
use containerd_shim::protos::topics;

use super::stubs::Call;
use super::{wait_for, Rig, WAIT};

#[test]
fn an_exec_that_exits_before_it_is_registered_is_still_reported() {
    let r = Rig::new();
    r.create("c", None);
    r.start("c");
    r.service
        .exec(api::ExecProcessRequest {
            id: "c".into(),
            exec_id: "e1".into(),
            spec: Some(
                containerd_shim::protos::protobuf::well_known_types::any::Any {
                    value: br#"{"cwd":"/","args":["true"],"user":{"uid":0,"gid":0}}"#.to_vec(),
                    ..Default::default()
                },
            )
            .into(),
            ..Default::default()
        })
        .unwrap();
    // The reaper wins the race: the exit is seen before Start registers it.
    r.exit(r.runtime.peek_pid() as u32, 3);
    r.service
        .start(api::StartRequest {
            id: "c".into(),
            exec_id: "e1".into(),
            ..Default::default()
        })
        .unwrap();
    // In order, as under runc: the exit is held until the start is announced.
    assert!(r.events.expect(topics::TASK_EXEC_STARTED_EVENT_TOPIC, WAIT));
    assert!(r.events.expect(topics::TASK_EXIT_EVENT_TOPIC, WAIT));
    let exit = r
        .service
        .wait(api::WaitRequest {
            id: "c".into(),
            exec_id: "e1".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(exit.exit_status, 3);
}

#[test]
fn an_init_that_exits_while_it_starts_is_reported_after_its_start() {
    let r = Rig::new();
    let (release, gate) = channel();
    r.runtime.script.lock().unwrap().start_gate = Some(gate);
    let pid = r.create("c", None);
    let service = r.service.clone();
    let starting = std::thread::spawn(move || {
        service.start(api::StartRequest {
            id: "c".into(),
            ..Default::default()
        })
    });
    wait_for("the start", || {
        r.runtime.calls().contains(&Call::Start("c".into()))
    });
    r.exit(pid, 0);
    assert!(
        !r.events
            .expect(topics::TASK_EXIT_EVENT_TOPIC, Duration::from_millis(300)),
        "the exit went out while the start was still running"
    );
    release.send(()).unwrap();
    starting.join().unwrap().unwrap();
    assert!(r.events.expect(topics::TASK_START_EVENT_TOPIC, WAIT));
    assert!(r.events.expect(topics::TASK_EXIT_EVENT_TOPIC, WAIT));
    assert_eq!(r.wait("c"), 0);
}

#[test]
fn a_plain_container_gets_its_signal_and_reports_its_exit() {
    let r = Rig::new();
    let pid = r.create("c", None);
    r.start("c");
    r.kill("c", libc::SIGTERM);
    assert!(
        r.runtime
            .calls()
            .contains(&Call::Signal(pid as i32, libc::SIGTERM)),
        "{:?}",
        r.runtime.calls()
    );
    r.exit(pid, 143);
    assert_eq!(r.wait("c"), 143);
    r.delete("c");
    assert!(r.runtime.calls().contains(&Call::Delete("c".into())));
    assert!(r.entries().is_empty(), "no image for a plain container");
}

#[test]
fn an_exec_request_decides_the_terminal() {
    let r = Rig::new();
    r.create("c", None);
    r.start("c");
    r.service
        .exec(api::ExecProcessRequest {
            id: "c".into(),
            exec_id: "t".into(),
            terminal: true,
            spec: Some(
                containerd_shim::protos::protobuf::well_known_types::any::Any {
                    value:
                        br#"{"cwd":"/","args":["sh"],"terminal":false,"user":{"uid":0,"gid":0}}"#
                            .to_vec(),
                    ..Default::default()
                },
            )
            .into(),
            ..Default::default()
        })
        .unwrap();
    let written = std::fs::read_to_string(r.dir.path().join("bundles/c/exec-t.json")).unwrap();
    let spec: serde_json::Value = serde_json::from_str(&written).unwrap();
    assert_eq!(spec["terminal"], true, "{written}");
}
