use arch_e2e::{ctr, unique_id};

#[test]
fn runs_to_completion_with_separate_stdout_and_stderr() {
    let c = ctr();
    let r = c.run_container(
        &unique_id("out"),
        &[],
        &["sh", "-c", "echo hello; echo oops >&2"],
    );
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert_eq!(r.stdout, "hello\n");
    assert!(r.stderr.contains("oops"), "stderr: {}", r.stderr);
}

#[test]
fn large_output_arrives_complete() {
    let c = ctr();
    let r = c.run_container(&unique_id("big"), &[], &["seq", "1", "200000"]);
    assert_eq!(r.code, 0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 200000);
    assert_eq!(lines.last(), Some(&"200000"));
}

#[test]
fn exit_codes_are_reported_exactly() {
    let c = ctr();
    for code in [0, 1, 3, 42, 255] {
        let r = c.run_container(
            &unique_id("exit"),
            &[],
            &["sh", "-c", &format!("exit {code}")],
        );
        assert_eq!(r.code, code, "stderr: {}", r.stderr);
    }
}

#[test]
fn killed_by_signal_reports_128_plus_signal() {
    let c = ctr();
    let id = unique_id("sig");
    let runner = {
        let c = c.clone();
        let id = id.clone();
        std::thread::spawn(move || c.run_container(&id, &[], &["sleep", "600"]))
    };
    c.wait_status(&id, "RUNNING");
    let k = c.run(&["task", "kill", "-s", "SIGKILL", &id]);
    assert_eq!(k.code, 0, "{}", k.stderr);
    let r = runner.join().unwrap();
    assert_eq!(r.code, 137);
}

#[test]
fn sigterm_with_a_handler_reaches_the_process() {
    let c = ctr();
    let id = unique_id("term");
    let runner = {
        let c = c.clone();
        let id = id.clone();
        std::thread::spawn(move || {
            c.run_container(
                &id,
                &[],
                &[
                    "sh",
                    "-c",
                    "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done",
                ],
            )
        })
    };
    c.wait_status(&id, "RUNNING");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(c.run(&["task", "kill", &id]).code, 0);
    let r = runner.join().unwrap();
    assert_eq!(r.code, 7, "stdout: {}", r.stdout);
    assert!(r.stdout.contains("got-term"));
}

#[test]
fn environment_and_working_directory_come_from_the_spec() {
    let c = ctr();
    let r = c.run_container(
        &unique_id("env"),
        &["--env", "GREETING=hi there", "--cwd", "/tmp"],
        &["sh", "-c", "echo \"$GREETING\"; pwd; id -u"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "hi there\n/tmp\n0\n");
}

#[test]
fn create_then_start_separately() {
    let c = ctr();
    let id = unique_id("twostep");
    assert_eq!(
        c.run(&[
            "container",
            "create",
            "--runtime",
            arch_e2e::RUNTIME,
            arch_e2e::IMAGE,
            &id,
            "sleep",
            "600"
        ])
        .code,
        0
    );
    let _guard = arch_e2e::Container {
        ctr: c.clone(),
        id: id.clone(),
    };
    let mut start = c.command(&["task", "start", "-d", &id]);
    let out = start.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_status(&id, "RUNNING");
    assert!(c.task_pid(&id) > 0);
}

#[test]
fn seccomp_profiles_are_enforced() {
    let c = ctr();
    let r = c.run_container(
        &unique_id("seccomp"),
        &["--seccomp"],
        &["sh", "-c", "grep Seccomp: /proc/self/status"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("Seccomp:\t2"),
        "filter mode: {}",
        r.stdout
    );
    let r = c.run_container(
        &unique_id("noseccomp"),
        &[],
        &["sh", "-c", "grep Seccomp: /proc/self/status"],
    );
    assert!(
        r.stdout.contains("Seccomp:\t0"),
        "no profile, no filter: {}",
        r.stdout
    );
}
