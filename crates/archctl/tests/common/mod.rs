//! Helpers for archctl's integration tests: real images made with
//! arch_image's Staging + commit, and running the built binary.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arch_image::{CgroupVersion, CommitInfo, ImageStore};

pub struct Root {
    pub dir: tempfile::TempDir,
    pub store: ImageStore,
}

impl Root {
    pub fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path().join("ckpt"));
        fs::create_dir(store.root()).unwrap();
        Root { dir, store }
    }

    pub fn path(&self) -> &Path {
        self.store.root()
    }

    /// Commit an image with a `payload`-byte criu page file.
    pub fn image(&self, ns: &str, key: &str, payload: usize) -> PathBuf {
        let st = self.store.begin(ns, key).unwrap();
        fs::create_dir(st.path().join("criu")).unwrap();
        fs::write(st.path().join("criu/pages-1.img"), vec![7u8; payload]).unwrap();
        fs::write(st.path().join("criu/dump.log"), b"dump ok\n").unwrap();
        fs::write(st.path().join("rootfs-diff.tar"), vec![0u8; 1024]).unwrap();
        fs::write(st.path().join("config.json"), b"{}").unwrap();
        let info = CommitInfo {
            container_id: format!("{key}-cid"),
            durations_ms: BTreeMap::from([("dump".into(), 120), ("rootfs".into(), 8)]),
            criu_version: "4.1.1".into(),
            kernel: "6.8.0".into(),
            arch: "x86_64".into(),
            cgroup_version: CgroupVersion::V2,
            profile: arch_image::ProfileDigest {
                digest: "0".repeat(64),
                fields: Default::default(),
            },
        };
        st.commit(info).unwrap().dir().to_path_buf()
    }

    /// Pretend the image was committed `secs` ago (the manifest is not
    /// itself checksummed, so the image stays valid).
    pub fn age(&self, ns: &str, key: &str, secs: u64) {
        let p = self.store.image_dir(ns, key).unwrap().join("manifest.json");
        let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        let now = v["created_at"]["secs"].as_u64().unwrap();
        v["created_at"]["secs"] = (now - secs).into();
        fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["--root", self.path().to_str().unwrap()];
        all.extend_from_slice(args);
        archctl(&all)
    }

    /// As [`Root::run`], on a host that requires signed images.
    pub fn run_strict(&self, args: &[&str]) -> Output {
        let config = self.dir.path().join("strict.toml");
        fs::write(&config, "mode = \"basic\"\n").unwrap();
        let mut all = vec!["--root", self.path().to_str().unwrap()];
        all.extend_from_slice(args);
        archctl_with(&config, &all)
    }
}

/// archctl with a configuration of its own: the images here are unsigned,
/// and in basic mode `validate` checks signatures with the host's key when
/// the host has one (a host that ran a shim does).
pub fn archctl(args: &[&str]) -> Output {
    archctl_with(test_config(), args)
}

pub fn archctl_with(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_archctl"))
        .args(args)
        .env_remove("ARCH_CHECKPOINT_ROOT")
        .env("ARCH_CONFIG", config)
        .output()
        .unwrap()
}

/// Written once per test binary, whole (tests run on many threads).
pub fn test_config() -> &'static Path {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let path = dir.join("archctl-test-config.toml");
        let tmp = dir.join(format!("archctl-test-config.{}", std::process::id()));
        fs::write(&tmp, "mode = \"basic\"\nallow_unsigned = true\n").unwrap();
        fs::rename(&tmp, &path).unwrap();
        path
    })
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert success and return stdout.
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Assert exit `code` with a single `archctl: …` line on stderr; return it.
pub fn fails(o: Output, code: i32) -> String {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&o),
        stderr(&o)
    );
    let err = stderr(&o);
    if code == 1 {
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("archctl: "), "{err}");
    }
    err
}
