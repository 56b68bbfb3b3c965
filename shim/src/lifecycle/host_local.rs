//! Private directories on this host's own disk, never the (possibly
//! shared) checkpoint root: `{base}/{pid}-{nanos}-{id}`, mode 0700, removed
//! when dropped. One whose shim died (its pid is gone) is removed by the
//! next one made under the same base.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub struct HostLocalDir(PathBuf);

impl HostLocalDir {
    /// A new directory for container `id` under `base` (made if missing).
    pub fn new(base: &str, id: &str) -> std::io::Result<HostLocalDir> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(base)?;
        remove_dead(base);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let dir = Path::new(base).join(format!("{}-{nanos:09}-{id}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(HostLocalDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// Directories whose shim died (`{pid}-…` of a process that is gone).
fn remove_dead(base: &str) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            log::info!("removing {base}/{name} of a shim that is gone");
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for HostLocalDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("removing {}: {e}", self.0.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_shims_directory_goes_and_a_dropped_one_too() {
        let base = tempfile::tempdir().unwrap();
        let base_s = base.path().to_str().unwrap();
        // pid_max is at most 2^22: this pid cannot be alive.
        let dead = base.path().join("99999999-000000001-c1");
        std::fs::create_dir(&dead).unwrap();
        let live = HostLocalDir::new(base_s, "c2").unwrap();
        assert!(!dead.exists(), "the dead shim's directory is removed");
        assert!(live.path().is_dir());
        let kept = live.path().to_path_buf();
        let other = HostLocalDir::new(base_s, "c3").unwrap();
        assert!(kept.exists(), "a live shim's directory stays");
        drop(other);
        drop(live);
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0);
    }
}
