//! Cleaning up after a dead shim without libcontainer's state.
//!
//! containerd runs the shim binary's `delete` action when a shim dies; it
//! loads the container from libcontainer's `state.json` to kill and remove
//! it. libcontainer rewrites that file in place (truncate, then write) on
//! every status change, Pause among them, and a checkpoint pauses the
//! container first: a shim killed at that moment leaves an empty file.
//! The delete action then could not load the container, and its tree
//! stayed FROZEN for good (seen once under load in CI). So Create records
//! the two things a kill needs, the cgroup and its driver, in the bundle,
//! written once and atomically, and the delete action falls back to them.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroup::Cgroup;
use crate::cgroup_driver::CgroupDriver;
use crate::error::{Result, RuntimeError};

/// The record's name in the bundle (containerd's directory for the task,
/// removed with it).
const RECORD: &str = "arch-cgroup.json";

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct CgroupRecord {
    /// As libcontainer resolves the spec's cgroupsPath.
    cgroup_path: PathBuf,
    driver: CgroupDriver,
}

/// Records container `id`'s cgroup (its spec's `cgroups_path`) and driver
/// in `bundle`, before anything runs in it.
pub fn record_cgroup(
    bundle: &Path,
    id: &str,
    cgroups_path: Option<&Path>,
    driver: CgroupDriver,
) -> Result<()> {
    let record = CgroupRecord {
        cgroup_path: libcontainer::utils::get_cgroup_path(&cgroups_path.map(Path::to_path_buf), id),
        driver,
    };
    let json = serde_json::to_vec(&record).expect("a record serialises");
    let tmp = bundle.join(format!(".{RECORD}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        std::fs::rename(&tmp, bundle.join(RECORD))
    };
    write().map_err(RuntimeError::io(format!(
        "recording the cgroup of {id} in {}",
        bundle.display()
    )))
}

fn read_record(bundle: &Path) -> std::io::Result<CgroupRecord> {
    let text = std::fs::read(bundle.join(RECORD))?;
    serde_json::from_slice(&text)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Kills every process in the cgroup recorded in `bundle` (thawing a
/// frozen one, so SIGKILL lands), waits up to `wait` for it to empty and
/// removes it. Nothing recorded (a bundle from an older shim) is an error.
pub fn kill_recorded_cgroup(id: &str, bundle: &Path, wait: std::time::Duration) -> Result<()> {
    let record = read_record(bundle).map_err(RuntimeError::io(format!(
        "reading {}",
        bundle.join(RECORD).display()
    )))?;
    crate::kill_all::signal_cgroup(id, &record.cgroup_path, record.driver, libc::SIGKILL)?;
    let cgroup = Cgroup::new(id, record.cgroup_path, record.driver);
    if !cgroup.wait_empty(wait) {
        log::warn!("{id}: processes left in the recorded cgroup {wait:?} after SIGKILL");
    }
    cgroup.remove()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let bundle = tempfile::tempdir().unwrap();
        record_cgroup(
            bundle.path(),
            "c1",
            Some(Path::new("/ns/c1")),
            CgroupDriver::Systemd,
        )
        .unwrap();
        let record = read_record(bundle.path()).unwrap();
        assert_eq!(
            record,
            CgroupRecord {
                cgroup_path: "/ns/c1".into(),
                driver: CgroupDriver::Systemd
            }
        );
        let names: Vec<_> = std::fs::read_dir(bundle.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [RECORD], "the temporary is renamed away");
    }

    #[test]
    fn without_a_cgroups_path_the_record_has_libcontainer_s_default() {
        let bundle = tempfile::tempdir().unwrap();
        record_cgroup(bundle.path(), "c2", None, CgroupDriver::Cgroupfs).unwrap();
        let record = read_record(bundle.path()).unwrap();
        assert_eq!(record.cgroup_path, PathBuf::from(":youki:c2"));
    }

    #[test]
    fn a_bundle_without_a_record_is_an_error_not_a_guess() {
        let bundle = tempfile::tempdir().unwrap();
        let err = kill_recorded_cgroup("c3", bundle.path(), std::time::Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains(RECORD), "{err}");
    }
}
