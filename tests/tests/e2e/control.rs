use arch_e2e::shim_client::{api, ctx, Any};
use arch_e2e::{ctr, unique_id};

fn metric(c: &arch_e2e::Ctr, id: &str, name: &str) -> Option<u64> {
    let r = c.run(&["task", "metrics", id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.lines().find_map(|l| {
        let mut cols = l.split_whitespace();
        (cols.next() == Some(name))
            .then(|| cols.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

#[test]
fn pause_and_resume() {
    let c = ctr();
    let id = unique_id("pause");
    let _ct = c.start_detached(
        &id,
        &[
            "sh",
            "-c",
            "while true; do date +%s%N > /tmp/t; sleep 0.05; done",
        ],
    );
    assert_eq!(c.run(&["task", "pause", &id]).code, 0);
    assert_eq!(c.task_status(&id).as_deref(), Some("PAUSED"));
    let state = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/freezer/arch-test/{id}/freezer.state"
    ))
    .or_else(|_| std::fs::read_to_string(arch_e2e::cgroup_v2_dir(&id).join("cgroup.freeze")))
    .unwrap();
    assert!(
        state.trim() == "FROZEN" || state.trim() == "1",
        "freezer: {state}"
    );
    assert_eq!(c.run(&["task", "resume", &id]).code, 0);
    assert_eq!(c.task_status(&id).as_deref(), Some("RUNNING"));
    let r = c.run(&["task", "exec", "--exec-id", "after", &id, "true"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn metrics_report_memory_cpu_and_pids() {
    let c = ctr();
    let id = unique_id("stats");
    let _ct = c.start_detached(&id, &["sh", "-c", "sleep 600 & sleep 600 & wait"]);
    // The shell forks its two sleeps when it gets the CPU: on a loaded
    // machine that is not within a fixed 300 ms.
    let three = arch_e2e::wait_until(std::time::Duration::from_secs(10), || {
        metric(&c, &id, "pids.current") == Some(3)
    });
    assert!(three, "pids.current: {:?}", metric(&c, &id, "pids.current"));
    assert!(metric(&c, &id, "memory.usage_in_bytes").unwrap() > 0);
    assert!(metric(&c, &id, "cpuacct.usage").unwrap() > 0);
}

#[test]
fn ps_lists_every_process() {
    let c = ctr();
    let id = unique_id("ps");
    let _ct = c.start_detached(&id, &["sh", "-c", "sleep 600 & sleep 600 & wait"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let r = c.run(&["task", "ps", &id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pids: Vec<&str> = r.stdout.lines().skip(1).collect();
    assert_eq!(pids.len(), 3, "{}", r.stdout);
    assert!(r.stdout.contains(&c.task_pid(&id).to_string()));
}

#[test]
fn update_changes_the_memory_limit() {
    let c = ctr();
    let id = unique_id("update");
    let _ct = c.start_detached(&id, &["sleep", "600"]);
    let limit: u64 = 64 * 1024 * 1024;
    // ctr 1.7 has no `task update`: call the shim's Update as containerd would.
    let resources = Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
        value: format!("{{\"memory\":{{\"limit\":{limit}}}}}").into_bytes(),
        ..Default::default()
    };
    let req = api::UpdateTaskRequest {
        id: id.clone(),
        resources: Some(resources).into(),
        ..Default::default()
    };
    c.shim(&id).update(ctx(), &req).expect("update");
    assert_eq!(metric(&c, &id, "memory.limit_in_bytes"), Some(limit));
}

#[test]
fn kill_all_signals_every_process() {
    let c = ctr();
    let id = unique_id("killall");
    let _ct = c.start_detached(&id, &["sh", "-c", "sleep 600 & sleep 600 & wait"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let r = c.run(&["task", "kill", "--all", "-s", "SIGKILL", &id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    c.wait_status(&id, "STOPPED");
}

#[test]
fn out_of_memory_kills_with_137() {
    let c = ctr();
    let hog = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}";
    let r = c.run_container(
        &unique_id("oom"),
        &["--memory-limit", "33554432"],
        &["sh", "-c", hog],
    );
    assert_eq!(r.code, 137, "stdout {} stderr {}", r.stdout, r.stderr);
}
