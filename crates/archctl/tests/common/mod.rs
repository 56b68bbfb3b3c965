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
}

pub fn archctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_archctl"))
        .args(args)
        .env_remove("ARCH_CHECKPOINT_ROOT")
        .env_remove("ARCH_CONFIG")
        .output()
        .unwrap()
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
