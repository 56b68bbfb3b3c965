//! Create refuses what ARCH cannot checkpoint faithfully.

use containerd_shim::api;
use containerd_shim::protos::types::mount::Mount;

use super::Rig;
use crate::error::ShimError;

/// What containerd's `native` snapshotter sends: a bind of a full copy.
fn native_snapshot() -> Mount {
    Mount {
        type_: "bind".into(),
        source: "/var/lib/containerd/native/snapshots/7".into(),
        options: vec!["rbind".into(), "rw".into()],
        ..Default::default()
    }
}

fn create(r: &Rig, id: &str, key: Option<&str>, rootfs: Vec<Mount>) -> crate::error::Result<u32> {
    let bundle = r.bundle(id, key);
    r.service
        .create(api::CreateTaskRequest {
            id: id.into(),
            bundle: bundle.display().to_string(),
            rootfs,
            ..Default::default()
        })
        .map(|resp| resp.pid)
}

#[test]
fn an_arch_container_without_an_upperdir_is_refused_with_the_reason() {
    let r = Rig::new();
    let err = create(&r, "native", Some("job"), vec![native_snapshot()]).unwrap_err();
    let ShimError::FailedPrecondition(msg) = &err else {
        panic!("expected FailedPrecondition, got {err:?}");
    };
    assert!(msg.contains("no overlay upperdir"), "{msg}");
    assert!(msg.contains("native"), "names the snapshotter kind: {msg}");
    assert!(
        r.runtime
            .calls()
            .iter()
            .all(|c| !matches!(c, super::stubs::Call::Create(_))),
        "nothing was created: {:?}",
        r.runtime.calls()
    );
    // A plain directory the bundle brings (no mounts at all): no layer either.
    let err = create(&r, "plain", Some("job"), vec![]).unwrap_err();
    assert!(err.to_string().contains("plain directory"), "{err}");
    // The id is free again: nothing was registered.
    assert!(create(&r, "native", None, vec![native_snapshot()]).is_ok());
}

#[test]
fn a_plain_container_on_a_native_snapshot_is_created() {
    let r = Rig::new();
    assert!(create(&r, "c", None, vec![native_snapshot()]).unwrap() > 0);
}

struct Kernel(bool);
impl arch_checkpoint::SoftDirtyProbe for Kernel {
    fn soft_dirty(&self) -> Result<bool, arch_checkpoint::ProbeError> {
        Ok(self.0)
    }
}

/// `ARCH_PREDUMP` on a kernel without soft-dirty fails Create naming the
/// feature; with it, the count is the container's; a bad count is refused.
#[test]
fn predumps_need_soft_dirty_and_a_valid_count() {
    use std::sync::Arc;
    let r = Rig::new();
    let arch = |soft_dirty: bool| {
        crate::lifecycle::Arch::new(
            super::NS,
            Ok(arch_checkpoint::ArchConfig::default()),
            Arc::new(super::stubs::StubRuntime::default()),
            Arc::new(super::stubs::StubMounts::default()),
        )
        .with_soft_dirty_probe(Box::new(Kernel(soft_dirty)))
    };
    let spec = |env: &str| {
        let path = r.dir.path().join("spec.json");
        std::fs::write(
            &path,
            format!(
                r#"{{"ociVersion":"1.0.2","process":{{"cwd":"/","args":["sh"],"env":["ARCH_ENABLE=1",{env}],"user":{{"uid":0,"gid":0}}}}}}"#
            ),
        )
        .unwrap();
        arch_runtime::oci_spec::runtime::Spec::load(&path).unwrap()
    };
    let err = arch(false)
        .predumps("c", &spec(r#""ARCH_PREDUMP=2""#))
        .unwrap_err();
    let ShimError::FailedPrecondition(msg) = &err else {
        panic!("expected FailedPrecondition, got {err:?}");
    };
    assert!(
        msg.contains("soft-dirty memory tracking (CONFIG_MEM_SOFT_DIRTY)"),
        "{msg}"
    );
    assert_eq!(arch(false).predumps("c", &spec(r#""X=1""#)).unwrap(), 0);
    assert_eq!(
        arch(true)
            .predumps("c", &spec(r#""ARCH_PREDUMP=2""#))
            .unwrap(),
        2
    );
    let err = arch(true)
        .predumps("c", &spec(r#""ARCH_PREDUMP=9""#))
        .unwrap_err();
    assert!(matches!(err, ShimError::InvalidArgument(_)), "{err:?}");
}
