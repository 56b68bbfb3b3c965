//! How containerd starts the shim: the task API version each containerd
//! gets (v3 for 2.x, v2 for 1.7) and, from 2.3 on, the socket directory
//! containerd names in the BootstrapParams.

use std::path::Path;

use arch_e2e::{ctr, unique_id, Ctr};

/// containerd's (major, minor) from `ctr version`'s Server section.
fn server_version(c: &Ctr) -> (u32, u32) {
    let r = c.run(&["version"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let server = r.stdout.split("Server:").nth(1).expect("a Server section");
    let v = server
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))
        .expect("a server version")
        .trim()
        .trim_start_matches('v');
    let mut parts = v.split(|ch: char| !ch.is_ascii_digit());
    let major = parts.next().unwrap().parse().unwrap();
    let minor = parts.next().unwrap_or("0").parse().unwrap_or(0);
    (major, minor)
}

#[test]
fn task_api_version_matches_containerd() {
    let c = ctr();
    let (major, _) = server_version(&c);
    let id = unique_id("apiver");
    let _guard = c.start_detached(&id, &["sleep", "30"]);
    let bundle = c.bundle(&id);
    let bootstrap = bundle.join("bootstrap.json");
    if major >= 2 {
        // containerd 2.x records what the shim's start reply said.
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&bootstrap).expect("bootstrap.json"))
                .expect("bootstrap.json is JSON");
        assert_eq!(json["version"], 3, "{json}");
        assert_eq!(json["protocol"], "ttrpc", "{json}");
    } else {
        // containerd 1.7 refuses a shim that announces v3: a bare address.
        assert!(!bootstrap.exists());
        let address = std::fs::read_to_string(bundle.join("address")).unwrap();
        assert!(address.starts_with("unix://"), "{address}");
    }
    // The task answers through whichever API containerd speaks.
    let r = c.run(&["task", "ps", &id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn shim_socket_is_where_containerd_says() {
    let c = ctr();
    let (major, minor) = server_version(&c);
    let id = unique_id("sockdir");
    let _guard = c.start_detached(&id, &["sleep", "30"]);
    let address = std::fs::read_to_string(c.bundle(&id).join("address")).unwrap();
    let path = address
        .trim()
        .strip_prefix("unix://")
        .expect("a unix address");
    let dir = Path::new(path).parent().unwrap();
    // hack/containerd-test.sh sets socket_dir = <test dir>/s for 2.3+;
    // older containerds leave the shim its default.
    let want = if (major, minor) >= (2, 3) {
        Path::new(&c.address).parent().unwrap().join("s")
    } else {
        Path::new("/run/containerd/s").to_path_buf()
    };
    assert_eq!(dir, want, "shim socket {path}");
    assert!(Path::new(path).exists(), "{path}");
}
