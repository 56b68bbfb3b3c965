//! The runtime options of a CreateTaskRequest that Create honours: the
//! cgroup driver (`SystemdCgroup` of containerd's runc options).
//!
//! containerd's CRI plugin sends runc's options only to runc-type runtimes;
//! for `io.containerd.arch.v1` the systemd driver shows in the cgroupsPath
//! it builds from a `.slice` parent (`slice:prefix:name`), which
//! [`CgroupDriver::choose`] reads when no option says otherwise.

use arch_runtime::oci_spec::runtime::Spec;
use arch_runtime::CgroupDriver;
use containerd_shim::api;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::oci::Options;

use crate::error::{Result, ShimError};

/// `SystemdCgroup` when the options are runc's (None for none or others).
fn systemd_option(req: &api::CreateTaskRequest) -> Result<Option<bool>> {
    let Some(any) = req.options.as_ref() else {
        return Ok(None);
    };
    if !any.type_url.ends_with("runc.v1.Options") {
        return Ok(None);
    }
    let opts = Options::parse_from_bytes(&any.value).map_err(|e| {
        ShimError::InvalidArgument(format!("runtime options ({}): {e}", any.type_url))
    })?;
    Ok(Some(opts.systemd_cgroup))
}

/// The cgroup driver of the container Create makes.
pub fn cgroup_driver(req: &api::CreateTaskRequest, spec: &Spec) -> Result<CgroupDriver> {
    let path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    Ok(CgroupDriver::choose(systemd_option(req)?, path.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::well_known_types::any::Any;

    fn spec(cgroups_path: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.0.2","linux":{{"cgroupsPath":"{cgroups_path}"}}}}"#
        ))
        .unwrap()
    }

    fn with_runc_options(systemd: bool) -> api::CreateTaskRequest {
        let opts = Options {
            systemd_cgroup: systemd,
            ..Default::default()
        };
        api::CreateTaskRequest {
            options: Some(Any {
                type_url: "containerd.runc.v1.Options".into(),
                value: opts.write_to_bytes().unwrap(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn runc_options_choose_the_driver() {
        let sd = spec("system.slice:arch:c1");
        assert_eq!(
            cgroup_driver(&with_runc_options(true), &spec("/arch-test/c1")).unwrap(),
            CgroupDriver::Systemd
        );
        assert_eq!(
            cgroup_driver(&with_runc_options(false), &sd).unwrap(),
            CgroupDriver::Cgroupfs
        );
    }

    #[test]
    fn without_options_the_path_decides() {
        let none = api::CreateTaskRequest::default();
        assert_eq!(
            cgroup_driver(&none, &spec("kubepods-pod1.slice:cri-containerd:c1")).unwrap(),
            CgroupDriver::Systemd
        );
        assert_eq!(
            cgroup_driver(&none, &spec("/k8s.io/c1")).unwrap(),
            CgroupDriver::Cgroupfs
        );
    }

    #[test]
    fn garbage_runc_options_are_refused() {
        let req = api::CreateTaskRequest {
            options: Some(Any {
                type_url: "containerd.runc.v1.Options".into(),
                value: vec![0xff, 0xff, 0xff],
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        assert!(cgroup_driver(&req, &spec("/a/b")).is_err());
    }
}
