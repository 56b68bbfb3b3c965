//! A network namespace nothing in the container could have changed is left
//! out of ARCH's own images and made afresh at restore.
//!
//! Dumping a network namespace is one of CRIU's largest fixed costs in a
//! small checkpoint (`ip addr/route/rule save`, iptables, ip6tables and
//! nft saves, every `net.*` sysctl of every link: about 40 ms of a 145 ms
//! dump here), and restoring it costs again. A container that owns its
//! namespace but never held CAP_NET_ADMIN or CAP_SYS_ADMIN (no user
//! namespace, no exec that had either) cannot have changed it: it is
//! still what the runtime made, a loopback brought up (loopback.rs), the
//! spec's `net.*` sysctls set, and whatever the spec's hooks wired in
//! (Docker's veth, oci_hooks.rs). All three are made again at restore, from
//! the new spec, so none of them makes the namespace worth dumping: Docker
//! gives every container `net.*` sysctls and a hook-wired veth, and a
//! dumped one came back with the old veth's pair and no link to dockerd's
//! bridge. CRIU then runs inside that namespace, so it
//! is CRIU's own and not dumped (as joined namespaces are, namespaces.rs);
//! the restore makes a new namespace, brings `lo` up, applies the new
//! spec's `net.*` sysctls and runs CRIU there, so the tree is born in it.
//! The processes' sockets are dumped and restored as before, into the new
//! namespace.
//!
//! Only for ARCH's own images: a checkpoint written to containerd's path
//! may be restored by another runtime, which would put the tree into the
//! host's namespace.

use std::path::Path;

use libcontainer::oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde_json::Value;

/// In a container's state directory: some process of the container could
/// change its network namespace (an exec with CAP_NET_ADMIN or
/// CAP_SYS_ADMIN, or a restore that brought a dumped namespace back), so
/// every dump keeps the namespace.
pub(crate) const CHANGEABLE_MARKER: &str = "arch-network-changeable";

/// Capabilities that change a network namespace (CAP_SYS_ADMIN can
/// remount /proc/sys writable, among much else).
const CHANGING_CAPS: [&str; 2] = ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"];

/// Whether an OCI process (JSON) holds a capability that changes a
/// network namespace, in any of its sets.
pub(crate) fn process_can_change(process: &Value) -> bool {
    let Some(sets) = process["capabilities"].as_object() else {
        return false;
    };
    sets.values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_str)
        .any(|cap| CHANGING_CAPS.contains(&cap))
}

/// Whether container `spec`, with state directory `state_dir`, owns a
/// network namespace nothing in it could have changed.
pub(crate) fn is_unchangeable(spec: &Spec, state_dir: &Path) -> bool {
    if !crate::loopback::creates_network_namespace(spec) {
        return false;
    }
    let linux = spec.linux().as_ref();
    let user_ns = linux
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::User));
    let process = serde_json::to_value(spec.process()).unwrap_or(Value::Null);
    !user_ns && !process_can_change(&process) && !state_dir.join(CHANGEABLE_MARKER).exists()
}

/// Records that container state `state_dir`'s network may have changed.
pub(crate) fn mark_changeable(state_dir: &Path) -> std::io::Result<()> {
    std::fs::write(state_dir.join(CHANGEABLE_MARKER), b"")
}

fn is_net_sysctl(key: &str) -> bool {
    key.starts_with("net.") || key.starts_with("net/")
}

/// Whether CRIU dumped a network namespace into `images_dir`.
pub(crate) fn image_has_network(images_dir: &Path) -> std::io::Result<bool> {
    for entry in std::fs::read_dir(images_dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("netns-") && name.ends_with(".img") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// In a thread that just entered a new network namespace: what the runtime
/// gives a new container's namespace (`lo` up, the spec's `net.*`
/// sysctls), before CRIU restores the tree into it.
pub(crate) fn set_up_fresh(spec: &Spec) -> std::io::Result<()> {
    crate::loopback::bring_up_here()?;
    let sysctls = spec.linux().as_ref().and_then(|l| l.sysctl().clone());
    for (key, value) in sysctls.iter().flatten() {
        if is_net_sysctl(key) {
            // /proc/sys/net is the opening thread's namespace's.
            let path = Path::new("/proc/sys").join(key.replace('.', "/"));
            std::fs::write(&path, value).map_err(|e| {
                std::io::Error::new(e.kind(), format!("setting {key} in the new namespace: {e}"))
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(&format!(r#"{{"ociVersion":"1.0.2",{json}}}"#)).unwrap()
    }

    const OWN_NET: &str = r#""linux":{"namespaces":[{"type":"pid"},{"type":"network"}]}"#;

    #[test]
    fn only_an_owned_namespace_nothing_can_change_is_left_out() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path();
        let caps = |set: &str| {
            format!(
                r#""process":{{"cwd":"/","user":{{"uid":0,"gid":0}},"capabilities":{{"{set}":["CAP_CHOWN","CAP_NET_ADMIN"]}}}},{OWN_NET}"#
            )
        };
        let plain = format!(
            r#""process":{{"cwd":"/","user":{{"uid":0,"gid":0}},"capabilities":{{"bounding":["CAP_CHOWN","CAP_NET_RAW"]}}}},{OWN_NET}"#
        );
        assert!(is_unchangeable(&spec(&plain), dir));
        assert!(
            is_unchangeable(&spec(OWN_NET), dir),
            "no process, no capabilities"
        );
        for set in [
            "bounding",
            "effective",
            "permitted",
            "inheritable",
            "ambient",
        ] {
            assert!(!is_unchangeable(&spec(&caps(set)), dir), "{set}");
        }
        let sys_admin = r#""process":{"cwd":"/","user":{"uid":0,"gid":0},"capabilities":{"bounding":["CAP_SYS_ADMIN"]}},"#;
        assert!(!is_unchangeable(
            &spec(&format!("{sys_admin}{OWN_NET}")),
            dir
        ));
        let joined = r#""linux":{"namespaces":[{"type":"network","path":"/run/netns/x"}]}"#;
        assert!(
            !is_unchangeable(&spec(joined), dir),
            "a joined namespace is not ours"
        );
        let host = r#""linux":{"namespaces":[{"type":"pid"}]}"#;
        assert!(!is_unchangeable(&spec(host), dir), "the host's namespace");
        let userns = r#""linux":{"namespaces":[{"type":"user"},{"type":"network"}]}"#;
        assert!(
            !is_unchangeable(&spec(userns), dir),
            "capabilities inside a user namespace"
        );
        let sysctl =
            r#""linux":{"namespaces":[{"type":"network"}],"sysctl":{"net.ipv4.ip_forward":"1"}}"#;
        assert!(
            is_unchangeable(&spec(sysctl), dir),
            "a net sysctl of the spec: set again at restore"
        );
        let other =
            r#""linux":{"namespaces":[{"type":"network"}],"sysctl":{"kernel.msgmax":"8192"}}"#;
        assert!(is_unchangeable(&spec(other), dir), "another sysctl");
        mark_changeable(dir).unwrap();
        assert!(
            !is_unchangeable(&spec(&plain), dir),
            "marked by an exec or a restore"
        );
    }

    #[test]
    fn an_exec_with_either_capability_can_change_it() {
        let p = |caps: &str| serde_json::from_str::<Value>(caps).unwrap();
        assert!(process_can_change(&p(
            r#"{"capabilities":{"effective":["CAP_NET_ADMIN"]}}"#
        )));
        assert!(process_can_change(&p(
            r#"{"capabilities":{"ambient":["CAP_SYS_ADMIN"]}}"#
        )));
        assert!(!process_can_change(&p(
            r#"{"capabilities":{"bounding":["CAP_NET_RAW"]}}"#
        )));
        assert!(!process_can_change(&p(r#"{"args":["sh"]}"#)));
    }

    #[test]
    fn a_dumped_namespace_is_seen_in_the_image() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pstree.img"), b"").unwrap();
        assert!(!image_has_network(dir.path()).unwrap());
        std::fs::write(dir.path().join("netns-10.img"), b"").unwrap();
        assert!(image_has_network(dir.path()).unwrap());
    }
}
