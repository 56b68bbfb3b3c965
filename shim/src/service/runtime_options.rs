//! The cgroup driver Create uses: `SystemdCgroup` of containerd's runc
//! options (parsed with the other runtime options in options.rs), else the
//! form of the cgroupsPath.
//!
//! containerd's CRI plugin sends runc's options only to runc-type runtimes;
//! for `io.containerd.arch.v1` the systemd driver shows in the cgroupsPath
//! it builds from a `.slice` parent (`slice:prefix:name`), which
//! [`CgroupDriver::choose`] reads when no option says otherwise.

use arch_runtime::oci_spec::runtime::Spec;
use arch_runtime::CgroupDriver;

/// The cgroup driver of the container Create makes.
///
/// containerd's CRI writes `slice:prefix:name` whenever the pod's parent is
/// a `.slice`, whatever driver the host uses (critest's parent is
/// `test.slice` on a cgroupfs host). So the form selects systemd only on a
/// unified (v2) host; on v1 it is taken as a cgroupfs path, as runc does
/// without `SystemdCgroup` (critest's OOM spec failed otherwise: the
/// memory cgroup was not where the watch looked).
pub fn cgroup_driver(systemd_option: Option<bool>, spec: &Spec, unified: bool) -> CgroupDriver {
    let path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|_| unified);
    CgroupDriver::choose(systemd_option, path.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cgroups_path: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.0.2","linux":{{"cgroupsPath":"{cgroups_path}"}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn runc_options_choose_the_driver() {
        let sd = spec("system.slice:arch:c1");
        assert_eq!(
            cgroup_driver(Some(true), &spec("/arch-test/c1"), false),
            CgroupDriver::Systemd
        );
        assert_eq!(
            cgroup_driver(Some(false), &sd, true),
            CgroupDriver::Cgroupfs
        );
    }

    #[test]
    fn without_options_the_path_decides() {
        let pod = spec("kubepods-pod1.slice:cri-containerd:c1");
        assert_eq!(cgroup_driver(None, &pod, true), CgroupDriver::Systemd);
        assert_eq!(
            cgroup_driver(None, &pod, false),
            CgroupDriver::Cgroupfs,
            "v1: not the form alone"
        );
        assert_eq!(
            cgroup_driver(None, &spec("/k8s.io/c1"), true),
            CgroupDriver::Cgroupfs
        );
    }
}
