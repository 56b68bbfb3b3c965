//! metrics (text and HTTP), bad roots, check, usage errors.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use arch_records::{Operation, Outcome, Record};
use common::*;

/// `archctl metrics --serve` on an ephemeral port, killed when dropped.
struct MetricsServer {
    child: std::process::Child,
    addr: String,
}

impl MetricsServer {
    fn start(r: &Root) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_archctl"))
            .args([
                "--root",
                r.path().to_str().unwrap(),
                "metrics",
                "--serve",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("archctl: serving metrics on http://")
            .and_then(|s| s.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("{line}"))
            .to_string();
        Self { child, addr }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn record(op: Operation, outcome: Outcome, ms: u64, bytes: u64) -> Record {
    Record {
        time: arch_records::now_secs(),
        op,
        outcome,
        trigger: "stop".into(),
        namespace: "default".into(),
        key: "k".into(),
        container_id: "c".into(),
        total_ms: ms,
        durations_ms: Default::default(),
        bytes,
        error: None,
    }
}

fn value(text: &str, series: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
        .to_string()
}

#[test]
fn metrics_counts_records_from_concurrent_writers() {
    let r = Root::new();
    r.image("default", "a", 10);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let root = r.path().to_path_buf();
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    let host = format!("host-{}", t % 2);
                    let ck = record(
                        Operation::Checkpoint,
                        if i % 5 == 0 {
                            Outcome::Failed
                        } else {
                            Outcome::Ok
                        },
                        200,
                        2 << 20,
                    );
                    arch_records::append(&root, &host, &ck).unwrap();
                    let outcome = if i % 10 == 0 {
                        Outcome::Fallback
                    } else {
                        Outcome::Ok
                    };
                    arch_records::append(
                        &root,
                        &host,
                        &record(Operation::Restore, outcome, 3000, 0),
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    std::fs::write(
        r.path().join(".records/torn.jsonl"),
        b"{\"time\": 1, \"op\"",
    )
    .unwrap();
    let t = ok(r.run(&["metrics"]));
    assert_eq!(value(&t, "arch_checkpoints_total{outcome=\"ok\"}"), "320");
    assert_eq!(
        value(&t, "arch_checkpoints_total{outcome=\"failed\"}"),
        "80"
    );
    assert_eq!(value(&t, "arch_restores_total{outcome=\"ok\"}"), "360");
    assert_eq!(value(&t, "arch_restores_total{outcome=\"fallback\"}"), "40");
    assert_eq!(value(&t, "arch_restore_fallbacks_total"), "40");
    assert_eq!(
        value(&t, "arch_checkpoint_duration_seconds_bucket{le=\"0.1\"}"),
        "0"
    );
    assert_eq!(
        value(&t, "arch_checkpoint_duration_seconds_bucket{le=\"0.25\"}"),
        "400"
    );
    assert_eq!(
        value(&t, "arch_checkpoint_duration_seconds_bucket{le=\"+Inf\"}"),
        "400"
    );
    assert_eq!(
        value(&t, "arch_restore_duration_seconds_bucket{le=\"2.5\"}"),
        "0"
    );
    assert_eq!(
        value(&t, "arch_restore_duration_seconds_bucket{le=\"5\"}"),
        "400"
    );
    assert_eq!(
        value(&t, "arch_checkpoint_size_bytes_bucket{le=\"1048576\"}"),
        "0"
    );
    assert_eq!(
        value(&t, "arch_checkpoint_size_bytes_bucket{le=\"4194304\"}"),
        "320"
    );
    assert_eq!(value(&t, "arch_checkpoint_size_bytes_count"), "320");
    assert_eq!(value(&t, "arch_images{status=\"committed\"}"), "1");
    assert_eq!(value(&t, "arch_records_unreadable"), "1");
    assert!(t.contains("# TYPE arch_checkpoint_duration_seconds histogram"));
}

#[test]
fn metrics_serve_answers_get_and_404() {
    let r = Root::new();
    r.image("default", "a", 10);
    let server = MetricsServer::start(&r);
    let addr = server.addr.clone();
    let get = |path: &str| {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    };
    let resp = get("/metrics");
    drop(server);
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(
        resp.contains("Content-Type: text/plain; version=0.0.4"),
        "{resp}"
    );
    assert!(
        resp.contains("arch_images{status=\"committed\"} 1"),
        "{resp}"
    );
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.contains(&format!("Content-Length: {}", body.len())));
}

/// Issue 13 §2: one slow client (connected, sending nothing) must not hold
/// up the others.
#[test]
fn a_slow_metrics_client_does_not_block_the_others() {
    let r = Root::new();
    r.image("default", "a", 10);
    let server = MetricsServer::start(&r);
    let addr = server.addr.clone();
    let mut slow = TcpStream::connect(&addr).unwrap();
    write!(slow, "GET /met").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let took = started.elapsed();
    // The slow one is cut off at the deadline, not left hanging.
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut rest = Vec::new();
    let cut = slow.read_to_end(&mut rest);
    drop(server);
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert!(took < Duration::from_secs(2), "answered in {took:?}");
    assert!(cut.is_ok(), "the slow client was disconnected: {cut:?}");
}

#[test]
fn serve_404_for_other_paths() {
    let r = Root::new();
    let server = MetricsServer::start(&r);
    let addr = server.addr.clone();
    let mut responses = Vec::new();
    for req in [
        "GET / HTTP/1.1\r\n\r\n",
        "POST /metrics HTTP/1.1\r\n\r\n",
        "garbage\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        responses.push(resp);
    }
    drop(server);
    for resp in responses {
        assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    }
}

#[test]
fn bad_roots_are_one_line_errors() {
    let r = Root::new();
    let missing = r.dir.path().join("nope");
    let e = fails(archctl(&["--root", missing.to_str().unwrap(), "ls"]), 1);
    assert!(e.contains("does not exist"), "{e}");
    let file = r.dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    for cmd in [
        &["ls"][..],
        &["validate"],
        &["stats"],
        &["metrics"],
        &["gc"],
    ] {
        let mut args = vec!["--root", file.to_str().unwrap()];
        args.extend_from_slice(cmd);
        let e = fails(archctl(&args), 1);
        assert!(e.contains("is not a directory"), "{cmd:?}: {e}");
    }
    // A manifest that does not parse.
    let dir = r.image("default", "broken", 10);
    r.image("default", "fine", 10);
    std::fs::write(dir.join("manifest.json"), b"{ not json").unwrap();
    let e = fails(r.run(&["inspect", "default/broken"]), 1);
    assert!(
        e.contains("malformed manifest") && e.contains("default/broken"),
        "{e}"
    );
    let o = r.run(&["ls"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("invalid"), "{}", stdout(&o));
    assert!(
        stderr(&o).starts_with("archctl: warning: default/broken"),
        "{}",
        stderr(&o)
    );
    let o = r.run(&["validate"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.starts_with("FAILED  default/broken: malformed manifest")),
        "{}",
        stdout(&o)
    );
    assert!(ok(r.run(&["stats", "--json"])).contains("\"invalid\": 1"));
}

#[test]
fn check_prints_one_line_per_item() {
    let r = Root::new();
    let o = r.run(&["check", "--address", "/nonexistent/containerd.sock"]);
    let out = stdout(&o);
    let items: Vec<&str> = out
        .lines()
        .map(|l| {
            let (lvl, rest) = l.split_once(' ').unwrap();
            assert!(["ok", "missing", "warn"].contains(&lvl), "{l}");
            rest.trim_start().split(':').next().unwrap()
        })
        .collect();
    assert_eq!(
        items,
        [
            "criu",
            "inet sockets",
            "criu check",
            "dirty tracking",
            "cgroup",
            "containerd",
            "config",
            "images",
            "restore copy",
            "encryption",
            "checkpoint root"
        ],
        "{out}"
    );
    // The rig's CRIU streams: the default (auto) takes the streamed path.
    assert!(
        out.lines()
            .any(|l| l.contains("images: streamed through the shim") && l.contains("zstd level 1")),
        "{out}"
    );
    assert!(out.contains("ok      encryption: off"), "{out}");
    assert!(
        out.contains("restore copy: in memory (/dev/shm/containerd-arch-restore)"),
        "{out}"
    );
    assert!(
        out.contains("missing containerd: /nonexistent/containerd.sock"),
        "{out}"
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "containerd unreachable is required"
    );
}

/// With `encryption_key_file`, check shows the key id (never the key);
/// a key file that does not load is `missing`, with the reason.
#[test]
fn check_reports_the_encryption_key_by_id() {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    let r = Root::new();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("images.key");
    let hex = "ab".repeat(32);
    fs::write(&key, format!("{hex}\n")).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.path().join("c.toml");
    fs::write(
        &config,
        format!(
            "checkpoint_root = \"{}\"\nencryption_key_file = \"{}\"\n",
            r.path().display(),
            key.display()
        ),
    )
    .unwrap();
    // `archctl check`'s whole output and its encryption line.
    let check = || {
        let o = archctl_with(
            &config,
            &["check", "--address", "/nonexistent/containerd.sock"],
        );
        let out = stdout(&o);
        let line = out
            .lines()
            .find(|l| l.contains("encryption:"))
            .unwrap_or_else(|| panic!("{out}"))
            .to_string();
        (out, line)
    };
    let (out, line) = check();
    assert!(
        line.starts_with("ok") && line.contains("key id ") && line.contains("xchacha20poly1305"),
        "{line}"
    );
    assert!(!out.contains(&hex), "the key is never printed: {out}");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let (_, line) = check();
    assert!(
        line.starts_with("missing") && line.contains("0644"),
        "{line}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let r = Root::new();
    for args in [
        &["inspect", "nokey"][..],
        &["gc", "--older-than", "soon"],
        &["frobnicate"],
        &["rm"],
    ] {
        let o = r.run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    assert!(ok(r.run(&["--help"])).contains("validate"));
}
