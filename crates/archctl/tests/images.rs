//! ls, inspect, validate, rm, tag/untag against real committed images.

mod common;

use std::fs;

use common::*;

#[test]
fn ls_json_and_inspect() {
    let r = Root::new();
    r.image("default", "job-1", 5000);
    r.image("k8s.io", "train", 100);
    r.store.retire("k8s.io", "train").unwrap();
    r.image("k8s.io", "train", 200);
    let text = ok(r.run(&["ls"]));
    let lines: Vec<_> = text.lines().collect();
    assert!(
        lines[0].starts_with("NAMESPACE") && lines[0].contains("STATUS"),
        "{text}"
    );
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[1].contains("default")
            && lines[1].contains("job-1-cid")
            && lines[1].contains("committed")
    );
    let all = ok(r.run(&["ls", "--all"]));
    assert!(
        all.contains("train@restored") && all.contains("restored"),
        "{all}"
    );

    let v: serde_json::Value = serde_json::from_str(&ok(r.run(&["ls", "--json"]))).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["key"], "job-1");
    assert_eq!(arr[0]["size"], 5000 + 8 + 1024 + 2);
    assert_eq!(arr[1]["namespace"], "k8s.io");
    assert_eq!(arr[1]["status"], "committed");

    let ins = ok(r.run(&["inspect", "default/job-1"]));
    for want in [
        "valid:      yes",
        "job-1-cid",
        "criu/pages-1.img",
        "dump",
        "120 ms",
        "x86_64",
        "v2",
    ] {
        assert!(ins.contains(want), "{want} in\n{ins}");
    }
    let j: serde_json::Value =
        serde_json::from_str(&ok(r.run(&["inspect", "--json", "default/job-1"]))).unwrap();
    assert_eq!(j["valid"], true);
    assert_eq!(j["manifest"]["files"].as_array().unwrap().len(), 4);
    let e = fails(r.run(&["inspect", "default/nope"]), 1);
    assert!(e.contains("no checkpoint image for default/nope"), "{e}");
}

#[test]
fn validate_ok_then_corrupt_and_truncated() {
    let r = Root::new();
    let a = r.image("default", "a", 4096);
    let b = r.image("default", "b", 4096);
    r.image("default", "c", 10);
    let out = ok(r.run(&["validate"]));
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        3,
        "{out}"
    );

    let pages = a.join("criu/pages-1.img");
    let mut bytes = fs::read(&pages).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&pages, bytes).unwrap();
    let f = fs::OpenOptions::new()
        .write(true)
        .open(b.join("rootfs-diff.tar"))
        .unwrap();
    f.set_len(10).unwrap();

    let o = r.run(&["validate"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let line_a = out.lines().find(|l| l.contains("default/a")).unwrap();
    assert!(
        line_a.starts_with("FAILED")
            && line_a.contains("criu/pages-1.img")
            && line_a.contains("sha256"),
        "{line_a}"
    );
    let line_b = out.lines().find(|l| l.contains("default/b")).unwrap();
    assert!(
        line_b.starts_with("FAILED")
            && line_b.contains("rootfs-diff.tar")
            && line_b.contains("size"),
        "{line_b}"
    );
    assert!(out
        .lines()
        .any(|l| l.starts_with("ok") && l.contains("default/c")));
    assert!(stderr(&o).contains("2 of 3"));
    // Only the named image.
    ok(r.run(&["validate", "default/c"]));
    let o = r.run(&["validate", "default/missing"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("no checkpoint image"));
    // inspect still shows a corrupted image, flagged.
    assert!(ok(r.run(&["inspect", "default/a"])).contains("valid:      NO"));
}

#[test]
fn rm_removes_and_refuses() {
    let r = Root::new();
    r.image("default", "a", 10);
    r.image("default", "b", 10);
    ok(r.run(&["tag", "default/a", "keep"]));
    let out = ok(r.run(&["rm", "default/a"]));
    assert!(out.contains("removed default/a"));
    assert!(!r.path().join("default/a").exists());
    assert!(!fs::read_to_string(r.path().join(".tags.json"))
        .unwrap()
        .contains("default/a"));
    let e = fails(r.run(&["rm", "default/a"]), 1);
    assert!(e.contains("no checkpoint image for default/a"), "{e}");
    // Nothing is removed when one of several is missing.
    fails(r.run(&["rm", "default/b", "default/zzz"]), 1);
    assert!(r.path().join("default/b").exists());
    // Sidecars and hostile names are usage errors.
    for bad in [
        "default/b@restored",
        "default/../x",
        "default",
        "../etc/passwd",
    ] {
        let e = fails(r.run(&["rm", bad]), 2);
        assert!(e.contains("invalid value"), "{bad}: {e}");
    }
    // A claimed image is refused.
    let _claim = r.store.claim("default", "b", "host-x").unwrap();
    let e = fails(r.run(&["rm", "default/b"]), 1);
    assert!(e.contains("claimed"), "{e}");
    assert!(r.path().join("default/b").exists());
}

#[test]
fn tag_untag_and_filter() {
    let r = Root::new();
    r.image("default", "a", 10);
    r.image("default", "b", 10);
    ok(r.run(&["tag", "default/a", "keep"]));
    ok(r.run(&["tag", "default/b", "keep"]));
    ok(r.run(&["tag", "default/b", "v2"]));
    let v: serde_json::Value =
        serde_json::from_str(&ok(r.run(&["ls", "--json", "--tag", "v2"]))).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["key"], "b");
    assert_eq!(v[0]["tags"], serde_json::json!(["keep", "v2"]));
    assert_eq!(ok(r.run(&["ls", "--tag", "keep"])).lines().count(), 3);
    ok(r.run(&["untag", "default/b", "keep"]));
    assert_eq!(ok(r.run(&["ls", "--tag", "keep"])).lines().count(), 2);
    let e = fails(r.run(&["untag", "default/b", "keep"]), 1);
    assert!(e.contains("has no tag"), "{e}");
    let e = fails(r.run(&["tag", "default/none", "x"]), 1);
    assert!(e.contains("no checkpoint image"), "{e}");
    fails(r.run(&["tag", "default/a", "bad tag"]), 2);
}

/// Runs archctl under a pseudo-terminal (util-linux `script`), as a person
/// at a shell would; returns everything it wrote there.
fn on_a_terminal(r: &Root, args: &str) -> String {
    let cmd = format!(
        "{} --root {} {args}",
        env!("CARGO_BIN_EXE_archctl"),
        r.path().display()
    );
    let o = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("ARCH_CONFIG", common::test_config())
        .output()
        .expect("script(1) from util-linux");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stdout).replace('\r', "")
}

#[test]
fn long_operations_show_progress_on_a_terminal_only() {
    let r = Root::new();
    for key in ["a", "b", "c"] {
        r.image("default", key, 4096);
    }
    let shown = on_a_terminal(&r, "validate");
    for n in 1..=3 {
        assert!(shown.contains(&format!("validated {n}/3")), "{shown}");
    }
    let piped = r.run(&["validate"]);
    assert!(!stderr(&piped).contains("validated"), "progress in a pipe");

    let shown = on_a_terminal(&r, "gc --keep 0");
    assert!(shown.contains("gc: removed 3/3"), "{shown}");
}

/// The root is untrusted: a manifest field with terminal escapes is
/// printed escaped, and a manifest that is a FIFO or a link to /dev/zero
/// neither hangs archctl nor is followed.
#[test]
fn hostile_manifests_are_read_bounded_and_printed_escaped() {
    let r = Root::new();
    r.image("default", "evil", 10);
    let p = r
        .store
        .image_dir("default", "evil")
        .unwrap()
        .join("manifest.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    v["container_id"] = "x\u{1b}]0;pwned\u{7}\u{1b}[2J".into();
    fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    for args in [&["ls"][..], &["inspect", "default/evil"][..]] {
        let out = r.run(args);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!text.contains('\u{1b}'), "{args:?}: a raw escape: {text:?}");
        assert!(text.contains("\\u{1b}"), "{args:?}: shown escaped: {text}");
    }
    for kind in ["fifo", "zero"] {
        let r = Root::new();
        r.image("default", "trap", 10);
        let p = r
            .store
            .image_dir("default", "trap")
            .unwrap()
            .join("manifest.json");
        fs::remove_file(&p).unwrap();
        if kind == "fifo" {
            let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        } else {
            std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
        }
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_archctl"))
            .args([
                "--root",
                r.path().to_str().unwrap(),
                "inspect",
                "default/trap",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{kind}: archctl inspect hung");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(!status.success(), "{kind}: refused");
    }
}

/// validate --key verifies signatures: a signed image passes, a tampered
/// or unsigned one fails, naming why.
#[test]
fn validate_with_a_key_checks_signatures() {
    use std::os::unix::fs::PermissionsExt;
    let r = Root::new();
    let key_file = r.dir.path().join("fleet.key");
    fs::write(&key_file, [9u8; 32]).unwrap();
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).unwrap();
    let signed = arch_image::ImageStore::new(r.path()).with_trust(arch_image::Trust {
        key: Some(std::sync::Arc::new(
            arch_image::SigningKey::from_file(&key_file).unwrap(),
        )),
        allow_unsigned: false,
    });
    let st = signed.begin("default", "signed").unwrap();
    fs::write(st.path().join("config.json"), b"{}").unwrap();
    let info = {
        // The same facts the helper commits with.
        let dir = r.image("default", "unsigned", 10);
        let m = arch_image::read_manifest(&dir).unwrap();
        arch_image::CommitInfo {
            container_id: m.container_id,
            durations_ms: m.durations_ms,
            criu_version: m.criu_version,
            kernel: m.kernel,
            arch: m.arch,
            cgroup_version: m.cgroup_version,
            profile: m.profile,
        }
    };
    st.commit(info).unwrap();
    let k = key_file.to_str().unwrap();
    let out = ok(r.run_strict(&["validate", "--key", k, "default/signed"]));
    assert!(out.contains("ok      default/signed"), "{out}");
    let out = stdout(&r.run_strict(&["validate", "--key", k, "default/unsigned"]));
    assert!(out.contains("not signed"), "{out}");
    let m = signed
        .image_dir("default", "signed")
        .unwrap()
        .join("manifest.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&m).unwrap()).unwrap();
    v["kernel"] = "forged".into();
    fs::write(&m, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let out = stdout(&r.run_strict(&["validate", "--key", k, "default/signed"]));
    assert!(out.contains("bad image signature"), "{out}");
}

#[test]
fn generations_are_listed_inspected_and_removed_with_their_key() {
    let mut r = Root::new();
    r.store = r.store.clone().with_generations(3);
    for payload in [10, 20, 30] {
        r.image("default", "job", payload);
    }
    r.image("default", "other", 5);
    let text = ok(r.run(&["ls"]));
    let gens: Vec<_> = text.lines().filter(|l| l.contains("job@gen-")).collect();
    assert_eq!(gens.len(), 2, "{text}");
    assert!(gens.iter().all(|l| l.contains("generation")), "{text}");

    let ins = ok(r.run(&["inspect", "default/job"]));
    assert!(ins.contains("generations: 2 older"), "{ins}");
    assert_eq!(ins.matches("valid: yes").count(), 2, "{ins}");
    let j: serde_json::Value =
        serde_json::from_str(&ok(r.run(&["inspect", "--json", "default/job"]))).unwrap();
    let g = j["generations"].as_array().unwrap();
    assert_eq!(g.len(), 2);
    assert!(g[0]["name"].as_str().unwrap().starts_with("job@gen-"));
    assert_eq!(g[0]["valid"], true);

    let out = ok(r.run(&["rm", "default/job"]));
    assert!(out.contains("removed 2 older generations"), "{out}");
    let left: Vec<_> = fs::read_dir(r.path().join("default"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["other"]);

    // A key whose generations are all that is left can be removed too.
    r.image("default", "job", 10);
    r.image("default", "job", 20);
    fs::remove_dir_all(r.path().join("default/job")).unwrap();
    let out = ok(r.run(&["rm", "default/job"]));
    assert!(out.contains("removed 1 older generations"), "{out}");
    assert!(r.store.generations("default", "job").unwrap().is_empty());
}
