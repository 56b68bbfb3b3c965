use arch_e2e::{ctr, unique_id};

#[test]
fn exec_runs_in_the_container_with_output_and_exit_code() {
    let c = ctr();
    let id = unique_id("exec");
    let _ct = c.start_detached(&id, &["sh", "-c", "echo marker > /tmp/m; sleep 600"]);
    let r = c.run(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "cat /tmp/m; exit 5",
    ]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert_eq!(r.stdout, "marker\n");
}

#[test]
fn exec_sees_the_container_pid_namespace() {
    let c = ctr();
    let id = unique_id("execns");
    let _ct = c.start_detached(&id, &["sleep", "600"]);
    let r = c.run(&[
        "task",
        "exec",
        "--exec-id",
        "ps",
        &id,
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "sleep 600");
}

#[test]
fn many_execs_in_sequence_and_in_parallel() {
    let c = ctr();
    let id = unique_id("execs");
    let _ct = c.start_detached(&id, &["sleep", "600"]);
    for i in 0..5 {
        let r = c.run(&[
            "task",
            "exec",
            "--exec-id",
            &format!("s{i}"),
            &id,
            "echo",
            &format!("n{i}"),
        ]);
        assert_eq!(
            (r.code, r.stdout.as_str()),
            (0, format!("n{i}\n").as_str()),
            "{}",
            r.stderr
        );
    }
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let c = c.clone();
            let id = id.clone();
            std::thread::spawn(move || {
                c.run(&[
                    "task",
                    "exec",
                    "--exec-id",
                    &format!("p{i}"),
                    &id,
                    "sh",
                    "-c",
                    &format!("sleep 0.2; exit {i}"),
                ])
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap().code, i as i32);
    }
}

#[test]
fn exec_stdin() {
    let c = ctr();
    let id = unique_id("execin");
    let _ct = c.start_detached(&id, &["sleep", "600"]);
    let r = c.run_with_input(
        &["task", "exec", "--exec-id", "in", &id, "wc", "-c"],
        Some(b"12345"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "5");
}
