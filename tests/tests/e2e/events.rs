use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use arch_e2e::{assert_restore_recorded, checkpoint_root, ctr, unique_id, wait_until, Ctr};
use arch_image::ImageStore;
use arch_records::Outcome;

/// The `/tasks/…` topics `ctr events` printed for container `cid`.
fn topics(out: &str, cid: &str) -> Vec<String> {
    out.lines()
        .filter(|l| {
            l.contains(&format!("\"{cid}\"")) || l.contains(&format!("\"container_id\":\"{cid}\""))
        })
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("/tasks/"))
                .map(str::to_string)
        })
        .collect()
}

/// `ctr events` until `until` returns and then until what it printed has
/// `topic` for `cid` (at most 10 s more: another test's flood of events
/// can hold up ctr's output), then what it printed.
fn events_during(c: &Ctr, cid: &str, topic: &str, until: impl FnOnce()) -> String {
    let mut events = c
        .command(&["events"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = events.stdout.take().unwrap();
    let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let out = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                out.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    until();
    wait_until(Duration::from_secs(10), || {
        topics(&out.lock().unwrap(), cid).iter().any(|t| t == topic)
    });
    events.kill().unwrap();
    let _ = events.wait();
    reader.join().unwrap();
    let printed = out.lock().unwrap().clone();
    printed
}

fn remove(c: &Ctr, id: &str) {
    let _ = c.run(&["task", "kill", "-s", "SIGKILL", id]);
    let _ = c.run(&["task", "rm", "-f", id]);
    let _ = c.run(&["container", "rm", id]);
}

/// A restored container is watched for OOM kills like a fresh one
/// (issue 13 §5): its workload, restored, eats past its memory limit and
/// containerd hears `/tasks/oom`.
#[test]
fn a_restored_container_reports_its_oom_kill() {
    let c = ctr();
    let key = unique_id("oomkey");
    let (first, second) = (unique_id("oomfirst"), unique_id("oomrest"));
    let limit = ["--memory-limit", "67108864"];
    // Idles until /tmp/hog exists, then holds 300 MB in a shell variable.
    let hog = "while [ ! -e /tmp/hog ]; do sleep 0.1; done; \
               x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo ${#x}";
    let r = c.run_arch_with("-d", &first, Some(&key), &limit, &["sh", "-c", hog]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(c.run(&["task", "kill", &first]).code, 0);
    c.wait_status(&first, "STOPPED");
    remove(&c, &first);
    ImageStore::new(checkpoint_root())
        .open(&c.namespace, &key)
        .expect("the first container checkpointed");
    let out = events_during(&c, &second, "/tasks/oom", || {
        let r = c.run_arch_with("-d", &second, Some(&key), &limit, &["sh", "-c", hog]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_restore_recorded(&checkpoint_root(), &key, Outcome::Ok);
        let rootfs = c.bundle(&second).join("rootfs");
        std::fs::write(rootfs.join("tmp/hog"), "").unwrap();
        wait_until(Duration::from_secs(30), || {
            c.task_status(&second).as_deref() != Some("RUNNING")
        });
    });
    remove(&c, &second);
    assert!(
        topics(&out, &second).iter().any(|t| t == "/tasks/oom"),
        "no /tasks/oom for the restored {second}\n{out}"
    );
}

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
    let topics_for = |cid: &str| topics(&out, cid);
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
    // A process is announced before its exit, as under runc: the init's
    // start and the exec's start come before the first exit (the exec's).
    let at = |topic: &str| got.iter().position(|t| t == topic).unwrap();
    assert!(
        at("/tasks/start") < at("/tasks/exit") && at("/tasks/exec-started") < at("/tasks/exit"),
        "an exit before its start for {id}: {got:?}"
    );
    assert!(
        topics_for(&oom_id).iter().any(|t| t == "/tasks/oom"),
        "no /tasks/oom for {oom_id}\n{out}"
    );
}
