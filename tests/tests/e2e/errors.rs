use arch_e2e::{ctr, unique_id, IMAGE, RUNTIME};

#[test]
fn missing_executable_is_a_clear_error() {
    let c = ctr();
    let r = c.run_container(&unique_id("noexe"), &[], &["/no/such/binary"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.to_lowercase().contains("no such file") || r.stderr.contains("not found"),
        "stderr: {}",
        r.stderr
    );
}

#[test]
fn kill_of_a_stopped_task_says_not_found() {
    let c = ctr();
    let id = unique_id("killdead");
    let _ct = c.start_detached(&id, &["true"]);
    c.wait_status(&id, "STOPPED");
    let r = c.run(&["task", "kill", "-s", "SIGKILL", &id]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("not found") || r.stderr.contains("finished"),
        "stderr: {}",
        r.stderr
    );
}

#[test]
fn unknown_exec_id_says_not_found() {
    let c = ctr();
    let id = unique_id("noexec");
    let _ct = c.start_detached(&id, &["sleep", "600"]);
    let r = c.run(&["task", "kill", "--exec-id", "nope", &id]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not found"), "stderr: {}", r.stderr);
}

#[test]
fn duplicate_exec_id_is_rejected() {
    let c = ctr();
    let id = unique_id("dupexec");
    let _ct = c.start_detached(&id, &["sleep", "600"]);
    let first = c
        .command(&[
            "task",
            "exec",
            "-d",
            "--exec-id",
            "same",
            &id,
            "sleep",
            "600",
        ])
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let r = c.run(&["task", "exec", "--exec-id", "same", &id, "true"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("already exists"), "stderr: {}", r.stderr);
}

#[test]
fn create_of_an_existing_id_is_rejected_and_the_first_keeps_running() {
    let c = ctr();
    let id = unique_id("dup");
    let _ct = c.start_detached(&id, &["sleep", "600"]);
    let r = c.run(&["run", "-d", "--runtime", RUNTIME, IMAGE, &id, "true"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("already exists"), "stderr: {}", r.stderr);
    assert_eq!(c.task_status(&id).as_deref(), Some("RUNNING"));
}

#[test]
fn delete_of_a_running_task_without_force_fails() {
    let c = ctr();
    let id = unique_id("rmrun");
    let _ct = c.start_detached(&id, &["sleep", "600"]);
    let r = c.run(&["task", "rm", &id]);
    assert_ne!(r.code, 0);
    assert_eq!(c.task_status(&id).as_deref(), Some("RUNNING"));
}

mod direct {
    //! Bad input straight to the shim's task API (containerd filters some
    //! of it before it reaches a shim).
    use arch_e2e::shim_client::{api, ctx, status, Code};
    use arch_e2e::{ctr, unique_id};

    fn create_in(
        c: &arch_e2e::Ctr,
        shim_of: &str,
        id: &str,
        bundle: &std::path::Path,
    ) -> (Code, String) {
        let req = api::CreateTaskRequest {
            id: id.into(),
            bundle: bundle.display().to_string(),
            ..Default::default()
        };
        status(c.shim(shim_of).create(ctx(), &req))
    }

    #[test]
    fn create_with_missing_or_invalid_config_json() {
        let c = ctr();
        let id = unique_id("badspec");
        let _ct = c.start_detached(&id, &["sleep", "600"]);
        let dir = std::env::temp_dir().join(unique_id("bundle"));
        std::fs::create_dir_all(&dir).unwrap();

        let (code, msg) = create_in(&c, &id, "other1", &dir);
        assert_eq!(code, Code::INVALID_ARGUMENT);
        assert!(msg.contains("config.json not found"), "{msg}");

        std::fs::write(dir.join("config.json"), b"{ not json").unwrap();
        let (code, msg) = create_in(&c, &id, "other2", &dir);
        assert_eq!(code, Code::INVALID_ARGUMENT);
        assert!(msg.contains("invalid config.json"), "{msg}");

        std::fs::write(
            dir.join("config.json"),
            br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"}}"#,
        )
        .unwrap();
        let (code, msg) = create_in(&c, &id, "other3", &dir);
        assert_eq!(code, Code::INVALID_ARGUMENT);
        assert!(msg.contains("no process"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();

        // The shim is unharmed.
        assert_eq!(c.task_status(&id).as_deref(), Some("RUNNING"));
    }

    /// Keys containerd would pass unchanged in annotations, including what
    /// `ctr` cannot express (NUL): each refused at Create, naming the key,
    /// with nothing written under the checkpoint root.
    #[test]
    fn hostile_arch_keys_are_refused_at_create() {
        let c = ctr();
        let id = unique_id("badkey");
        let _ct = c.start_detached(&id, &["sleep", "600"]);
        let dir = std::env::temp_dir().join(unique_id("bundle"));
        std::fs::create_dir_all(&dir).unwrap();
        let long = "k".repeat(4096);
        let ns_dir = arch_e2e::checkpoint_root().join(&c.namespace);
        // Other tests write and remove images in this namespace meanwhile:
        // only a name that none of them makes counts (theirs are unique_id
        // keys, `prefix-pid-n`, with sidecar suffixes).
        let strays = || -> Vec<String> {
            std::fs::read_dir(&ns_dir)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                })
                .into_iter()
                .flatten()
                .filter(|name| {
                    let key = name.split('@').next().unwrap_or_default();
                    let mut parts = key.rsplitn(3, '-');
                    let numeric = |p: Option<&str>| p.is_some_and(|p| p.parse::<u64>().is_ok());
                    !(numeric(parts.next()) && numeric(parts.next()) && parts.next().is_some())
                })
                .collect()
        };
        let before = strays();
        for (n, key) in [
            "a\\u0000b",
            "..",
            "../../etc",
            "a/b",
            "/abs",
            long.as_str(),
            "",
        ]
        .iter()
        .enumerate()
        {
            let spec = format!(
                r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},
                   "process":{{"args":["true"],"cwd":"/","user":{{"uid":0,"gid":0}}}},
                   "annotations":{{"io.arch.enable":"1","io.arch.key":"{key}"}}}}"#
            );
            std::fs::write(dir.join("config.json"), spec).unwrap();
            let (code, msg) = create_in(&c, &id, &format!("hostile{n}"), &dir);
            assert_eq!(code, Code::INVALID_ARGUMENT, "{key:.40}: {msg}");
            assert!(msg.to_lowercase().contains("key"), "{key:.40}: {msg}");
            assert!(
                msg.len() < 1024,
                "the error is one clear line: {}",
                msg.len()
            );
        }
        assert_eq!(strays(), before, "something was written for a refused key");
        let root = arch_e2e::checkpoint_root();
        for escaped in [
            root.join("etc"),
            root.join("abs"),
            root.join("..").join("etc"),
        ] {
            let fresh = std::fs::symlink_metadata(&escaped)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|e| e.as_secs() < 60));
            assert!(!fresh, "{} was written", escaped.display());
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.task_status(&id).as_deref(), Some("RUNNING"));
    }

    #[test]
    fn create_of_an_existing_id_at_the_shim() {
        let c = ctr();
        let id = unique_id("dupshim");
        let _ct = c.start_detached(&id, &["sleep", "600"]);
        let (code, msg) = create_in(&c, &id, &id, &c.bundle(&id));
        assert_eq!(code, Code::ALREADY_EXISTS);
        assert!(msg.contains("already exists"), "{msg}");
        assert_eq!(c.task_status(&id).as_deref(), Some("RUNNING"));
    }

    #[test]
    fn calls_for_unknown_containers_and_execs() {
        let c = ctr();
        let id = unique_id("unknown");
        let _ct = c.start_detached(&id, &["sleep", "600"]);
        let shim = c.shim(&id);
        let (code, _) = status(shim.state(
            ctx(),
            &api::StateRequest {
                id: "nope".into(),
                ..Default::default()
            },
        ));
        assert_eq!(code, Code::NOT_FOUND);
        let req = api::StartRequest {
            id: id.clone(),
            exec_id: "nope".into(),
            ..Default::default()
        };
        let (code, msg) = status(shim.start(ctx(), &req));
        assert_eq!(code, Code::NOT_FOUND, "{msg}");
        let req = api::ExecProcessRequest {
            id: id.clone(),
            exec_id: "bad".into(),
            ..Default::default()
        };
        let (code, msg) = status(shim.exec(ctx(), &req));
        assert_eq!(code, Code::INVALID_ARGUMENT, "{msg}");
        let req = api::UpdateTaskRequest {
            id: id.clone(),
            ..Default::default()
        };
        let (code, msg) = status(shim.update(ctx(), &req));
        assert_eq!(code, Code::INVALID_ARGUMENT, "{msg}");
    }
}
