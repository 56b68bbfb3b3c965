use arch_e2e::{ctr, unique_id, IMAGE, RUNTIME};

#[test]
fn stdin_is_delivered_and_closed() {
    let c = ctr();
    let id = unique_id("stdin");
    let args = [
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        IMAGE,
        id.as_str(),
        "sh",
        "-c",
        "wc -l; echo done",
    ];
    let r = c.run_with_input(&args, Some(b"one\ntwo\nthree\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.split_whitespace().collect::<Vec<_>>(),
        ["3", "done"]
    );
}

#[test]
fn stdin_round_trips_through_cat() {
    let c = ctr();
    let id = unique_id("cat");
    let data: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    let args = [
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        IMAGE,
        id.as_str(),
        "cat",
    ];
    let r = c.run_with_input(&args, Some(data.as_bytes()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, data);
}

/// `ctr run -t` needs a terminal on its own side: `script` gives it one.
fn run_in_pty(c: &arch_e2e::Ctr, inner: &str) -> arch_e2e::Run {
    let cmd = format!(
        "ctr --address {} --namespace {} {inner}",
        c.address, c.namespace
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script(1) from util-linux");
    out.into()
}

#[test]
fn terminal_gives_the_process_a_pty() {
    let c = ctr();
    let id = unique_id("tty");
    let r = run_in_pty(
        &c,
        &format!("run --rm -t --runtime {RUNTIME} {IMAGE} {id} sh -c 'tty; exit 4'"),
    );
    assert!(r.stdout.contains("/dev/pts/"), "stdout: {:?}", r.stdout);
    assert_eq!(r.code, 4, "stdout: {:?}", r.stdout);
}

#[test]
fn exec_with_terminal() {
    let c = ctr();
    let id = unique_id("ttyexec");
    let _ct = c.start_detached(&id, &["sleep", "600"]);
    let r = run_in_pty(
        &c,
        &format!("task exec -t --exec-id e1 {id} sh -c 'tty; exit 6'"),
    );
    assert!(r.stdout.contains("/dev/pts/"), "stdout: {:?}", r.stdout);
    assert_eq!(r.code, 6);
}
