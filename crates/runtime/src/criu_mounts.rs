//! Mounts CRIU must treat as external: bind mounts and cgroup v1
//! hierarchies are outside the container's own mounts, so they are named in
//! the image and mapped to their (new) sources at restore.

use libcontainer::oci_spec::runtime::Spec;

use crate::cgroup_v1::cgroup_v1_mount_points;

/// Which side of a checkpoint CRIU is told about external mounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Dump,
    Restore,
}

/// CRIU's external-mount map means different things per phase: at dump
/// `mountpoint -> name` (the name is stored in the image), at restore
/// `name -> source`. The name is the destination, which the new spec has
/// too; the source is not stable (Docker's /etc/hosts lives under the
/// container's id, so a new container with the same key has another one).
pub(crate) fn set_external_mounts(criu: &mut rust_criu::Criu, spec: &Spec, phase: Phase) {
    for (key, val) in ext_mount_map(spec, phase) {
        criu.set_external_mount(key, val);
    }
}

/// The (key, value) pairs of CRIU's external-mount map for `phase`.
pub(crate) fn ext_mount_map(spec: &Spec, phase: Phase) -> Vec<(String, String)> {
    external_mounts(spec)
        .into_iter()
        .map(|(dest, src)| match phase {
            Phase::Dump => (dest.clone(), dest),
            Phase::Restore => (dest, src),
        })
        .collect()
}

/// (destination, source) of the spec's mounts that CRIU must treat as
/// external.
fn external_mounts(spec: &Spec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let is_bind = m
            .options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind");
        if is_bind {
            let dest = m.destination().display().to_string();
            let src = m
                .source()
                .as_ref()
                .map(|s| s.display().to_string())
                .unwrap_or_else(|| dest.clone());
            out.push((dest, src));
        } else if m.typ().as_deref() == Some("cgroup") {
            for mp in cgroup_v1_mount_points() {
                out.push((mp.clone(), mp));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn bind_mounts_are_named_by_destination() {
        let spec: libcontainer::oci_spec::runtime::Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","mounts":[
                {"destination":"/etc/hosts","type":"bind","source":"/c/1/hosts","options":["rbind","rprivate"]},
                {"destination":"/proc","type":"proc","source":"proc"}]}"#,
        )
        .unwrap();
        let pair = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        // The image records the name; a restore maps it to the new source.
        assert_eq!(
            super::ext_mount_map(&spec, super::Phase::Dump),
            pair("/etc/hosts", "/etc/hosts")
        );
        assert_eq!(
            super::ext_mount_map(&spec, super::Phase::Restore),
            pair("/etc/hosts", "/c/1/hosts")
        );
    }
}
