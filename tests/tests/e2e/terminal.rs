//! Containers with a terminal (`ctr run -t`): checkpointed on stop and
//! restored with a new terminal that the new client reads, or started
//! fresh with a terminal when the restore cannot be done.
//!
//! `ctr run -t` insists on a terminal of its own, so it runs under
//! util-linux `script`, which gives it one and copies its output to ours.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use arch_e2e::shim_client::{api, ctx};
use arch_e2e::{ctr, finish_within, unique_id, wait_until, Ctr, Run, IMAGE, RUNTIME};
use arch_image::ImageStore;
use arch_records::{Operation, Outcome};

/// Remembers a boot id and counts in shell variables (restored with the
/// process, lost by a fresh start), and prints each count to its terminal.
const WORKLOAD: &str = "boot=$(cat /proc/sys/kernel/random/uuid); \
    i=0; while true; do i=$((i+1)); echo $i > /tmp/count; echo $boot > /tmp/boot; \
    echo tick $i; sleep 0.1; done";

fn store() -> ImageStore {
    ImageStore::new(arch_e2e::checkpoint_root())
}

fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// `ctr run MODE -t` of `sh -c CMD` as an ARCH container with `key`,
/// under `script` so that ctr has a terminal; output goes to a pipe.
pub(crate) fn spawn_tty(
    c: &Ctr,
    mode: &str,
    id: &str,
    key: &str,
    extra: &[&str],
    cmd: &str,
) -> Child {
    let key_env = format!("ARCH_KEY={key}");
    let mut args = vec![
        "ctr",
        "--address",
        &c.address,
        "--namespace",
        &c.namespace,
        "run",
        mode,
        "-t",
        "--runtime",
        RUNTIME,
        "--env",
        "ARCH_ENABLE=1",
        "--env",
        &key_env,
    ];
    args.extend_from_slice(extra);
    args.extend([IMAGE, id, "sh", "-c", cmd]);
    let line: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    Command::new("script")
        .args(["-qec", &line.join(" "), "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` is needed to give ctr a terminal")
}

/// A detached terminal container; the guard removes it.
fn start_tty(c: &Ctr, id: &str, key: &str) -> arch_e2e::Container {
    let r = finish_within(
        spawn_tty(c, "-d", id, key, &[], WORKLOAD),
        Duration::from_secs(60),
        "ctr run -d -t",
    );
    assert_eq!(r.code, 0, "ctr run -d -t {id}: {} {}", r.stdout, r.stderr);
    arch_e2e::Container {
        ctr: c.clone(),
        id: id.to_string(),
    }
}

fn exec(c: &Ctr, id: &str, cmd: &[&str]) -> Run {
    let exec_id = unique_id("x");
    let mut args = vec!["task", "exec", "--exec-id", &exec_id, id];
    args.extend_from_slice(cmd);
    c.run(&args)
}

fn count(c: &Ctr, id: &str) -> u64 {
    c.exec_file(id, "/tmp/count").parse().unwrap_or(0)
}

/// What the init has as stdin and stdout.
fn init_stdio(c: &Ctr, id: &str) -> String {
    let r = exec(
        c,
        id,
        &["sh", "-c", "readlink /proc/1/fd/0; readlink /proc/1/fd/1"],
    );
    assert_eq!(r.code, 0, "exec in {id}: {}", r.stderr);
    r.stdout
}

fn assert_terminal(c: &Ctr, id: &str) {
    // The workload's `echo … > /tmp/count` points the shell's own stdout
    // at the file for an instant: look again when a read lands there.
    let mut fds = String::new();
    let terminal = wait_until(Duration::from_secs(5), || {
        fds = init_stdio(c, id);
        let lines: Vec<&str> = fds.lines().collect();
        lines.len() == 2 && lines.iter().all(|l| l.starts_with("/dev/pts/"))
    });
    assert!(
        terminal,
        "the init's stdin and stdout are a terminal: {fds:?}"
    );
}

/// ResizePty reaches the terminal the init has.
fn assert_resizes(c: &Ctr, id: &str) {
    let req = api::ResizePtyRequest {
        id: id.to_string(),
        width: 123,
        height: 45,
        ..Default::default()
    };
    c.shim(id).resize_pty(ctx(), &req).expect("resize pty");
    let tty = init_stdio(c, id)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let r = exec(c, id, &["sh", "-c", &format!("stty size < {tty}")]);
    assert_eq!(r.stdout.trim(), "45 123", "terminal size: {}", r.stderr);
}

/// Runs the workload with a terminal until it counted a little, stops it
/// (checkpoint) and removes it; returns (boot id, last count seen).
fn run_and_stop(c: &Ctr, key: &str) -> (String, u64) {
    let id = unique_id("tty1");
    let ct = start_tty(c, &id, key);
    assert_terminal(c, &id);
    assert!(wait_until(Duration::from_secs(10), || count(c, &id) >= 5));
    let boot = c.exec_file(&id, "/tmp/boot");
    let seen = count(c, &id);
    assert_eq!(c.run(&["task", "kill", &id]).code, 0);
    c.wait_status(&id, "STOPPED");
    drop(ct);
    let image = store().open(&c.namespace, key).expect("committed image");
    let descriptors = std::fs::read_to_string(image.criu_dir().join("descriptors.json")).unwrap();
    assert!(
        descriptors.contains("/dev/pts/"),
        "the image records a terminal: {descriptors}"
    );
    (boot, seen)
}

/// Attaches a new terminal container with `key` (`ctr run --rm -t`), lets
/// `check` look at it while it runs, then SIGKILLs it; returns the counts
/// the client saw on its terminal.
fn attach_and_watch(c: &Ctr, key: &str, extra: &[&str], check: impl FnOnce(&str)) -> Vec<u64> {
    let id = unique_id("tty2");
    let client = spawn_tty(c, "--rm", &id, key, extra, WORKLOAD);
    // Removes the container if a check fails (ctr's --rm does otherwise).
    let _guard = arch_e2e::Container {
        ctr: c.clone(),
        id: id.clone(),
    };
    c.wait_status(&id, "RUNNING");
    check(&id);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(c.run(&["task", "kill", "-s", "SIGKILL", &id]).code, 0);
    let r = finish_within(client, Duration::from_secs(30), "ctr run --rm -t");
    r.stdout
        .lines()
        .filter_map(|l| l.trim().rsplit_once("tick ")?.1.parse().ok())
        .collect()
}

#[test]
fn terminal_container_is_restored_with_a_new_terminal() {
    let c = ctr();
    let key = unique_id("ttykey");
    let (boot, seen) = run_and_stop(&c, &key);
    let ticks = attach_and_watch(&c, &key, &[], |id| {
        assert_eq!(
            c.exec_file(id, "/tmp/boot"),
            boot,
            "the process tree was restored, not restarted"
        );
        assert!(count(&c, id) >= seen, "the counter continued from {seen}");
        assert_terminal(&c, id);
        assert_resizes(&c, id);
    });
    assert!(!ticks.is_empty(), "no terminal output reached the client");
    assert!(
        ticks.iter().all(|t| *t >= seen),
        "the client sees the old count ({seen}) go on: {ticks:?}"
    );
    assert!(
        store().open(&c.namespace, &key).is_err(),
        "the image is consumed"
    );
    let entries = arch_e2e::image_entries(&c.namespace, &key);
    assert!(
        entries.iter().any(|n| n.ends_with("@restored")),
        "kept as the last restored: {entries:?}"
    );
    arch_e2e::assert_restore_recorded(store().root(), &key, Outcome::Ok);
}

/// CRIU's terminal never arrives (the notify that carries it fails): the
/// container starts fresh, with a working terminal of its own.
#[test]
fn failed_terminal_restore_starts_fresh_with_a_terminal() {
    let c = ctr();
    let key = unique_id("ttyfail");
    let (boot, _) = run_and_stop(&c, &key);
    let fault = "io.arch.test.fault=criu:orphan-pts-master=error";
    let ticks = attach_and_watch(&c, &key, &["--annotation", fault], |id| {
        assert!(wait_until(Duration::from_secs(10), || c
            .exec_file(id, "/tmp/boot")
            .len()
            > 10));
        assert_ne!(c.exec_file(id, "/tmp/boot"), boot, "started fresh");
        assert_terminal(&c, id);
        assert_resizes(&c, id);
    });
    assert!(
        ticks.first() == Some(&1),
        "the fresh start's output reaches the client from the start: {ticks:?}"
    );
    let entries = arch_e2e::image_entries(&c.namespace, &key);
    assert!(
        entries.iter().any(|n| n.contains("@failed-")),
        "the image is kept aside: {entries:?}"
    );
    arch_e2e::assert_restore_recorded(store().root(), &key, Outcome::Fallback);
}

/// An image of a container without a terminal cannot become one with a
/// terminal: refused at Create, before the rootfs is touched.
#[test]
fn pipes_image_into_a_terminal_container_starts_fresh() {
    let c = ctr();
    let key = unique_id("ttymix");
    let first = unique_id("pipes");
    let ct = c.start_arch(&first, Some(&key), WORKLOAD);
    assert!(wait_until(Duration::from_secs(10), || count(&c, &first) >= 3));
    let boot = c.exec_file(&first, "/tmp/boot");
    assert_eq!(c.run(&["task", "kill", &first]).code, 0);
    c.wait_status(&first, "STOPPED");
    drop(ct);
    store().open(&c.namespace, &key).expect("committed image");
    attach_and_watch(&c, &key, &[], |id| {
        assert!(wait_until(Duration::from_secs(10), || c
            .exec_file(id, "/tmp/boot")
            .len()
            > 10));
        assert_ne!(c.exec_file(id, "/tmp/boot"), boot, "started fresh");
        assert_terminal(&c, id);
    });
    let recs = arch_e2e::records_for(store().root(), &key);
    assert!(
        recs.iter().any(|r| r.op == Operation::Restore
            && r.outcome == Outcome::Fallback
            && r.error.as_deref().unwrap_or("").contains("terminal")),
        "fallback recorded with its reason: {recs:?}"
    );
}
