use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use arch_e2e::{ctr, unique_id};

#[test]
fn lifecycle_events_are_published() {
    let c = ctr();
    let mut events = c
        .command(&["events"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let id = unique_id("events");
    {
        let _ct = c.start_detached(&id, &["sleep", "600"]);
        assert_eq!(
            c.run(&["task", "exec", "--exec-id", "ev", &id, "true"])
                .code,
            0
        );
        assert_eq!(c.run(&["task", "pause", &id]).code, 0);
        assert_eq!(c.run(&["task", "resume", &id]).code, 0);
    }
    let oom_id = unique_id("evoom");
    let hog = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}";
    c.run_container(&oom_id, &["--memory-limit", "33554432"], &["sh", "-c", hog]);
    std::thread::sleep(Duration::from_millis(500));

    events.kill().unwrap();
    let mut out = String::new();
    events
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = events.wait();
    let topics_for = |cid: &str| -> Vec<String> {
        out.lines()
            .filter(|l| {
                l.contains(&format!("\"{cid}\""))
                    || l.contains(&format!("\"container_id\":\"{cid}\""))
            })
            .filter_map(|l| {
                l.split_whitespace()
                    .find(|w| w.starts_with("/tasks/"))
                    .map(str::to_string)
            })
            .collect()
    };
    let got = topics_for(&id);
    for want in [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exit",
        "/tasks/delete",
    ] {
        assert!(
            got.iter().any(|t| t == want),
            "missing {want} for {id}; got {got:?}\n{out}"
        );
    }
    assert!(
        topics_for(&oom_id).iter().any(|t| t == "/tasks/oom"),
        "no /tasks/oom for {oom_id}\n{out}"
    );
}
