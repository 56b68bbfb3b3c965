//! Which task API to announce: v3 (`containerd.task.v3.Task`) to
//! containerd 2.x, v2 to 1.7, which refuses a shim that announces 3.
//!
//! containerd 2.3+ says its version in the BootstrapParams. Before 2.3 the
//! legacy start looks the same from 1.7 to 2.2 (flags, environment,
//! options), so the shim asks the binary containerd named with
//! `-publish-binary`: `containerd --version`, once per binary (the answer
//! is kept under /run/containerd-arch, keyed by the binary's path, inode,
//! size and mtime, so an upgraded containerd is asked again).
//! Whatever cannot be told is answered with v2, which every containerd
//! accepts; the shim serves both APIs on its socket either way.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The task API containerd 1.x speaks.
pub const TASK_API_V2: i32 = 2;
/// The task API containerd 2.x speaks.
pub const TASK_API_V3: i32 = 3;

/// The task API for a containerd of version `version` ("v2.4.2",
/// "2.1.9+unknown", "1.7.24~ds1"); None if it says no major version.
pub fn for_version(version: &str) -> Option<i32> {
    let v = version.trim().trim_start_matches('v');
    let major: u32 = v
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .filter(|s| !s.is_empty())?
        .parse()
        .ok()?;
    Some(if major >= 2 { TASK_API_V3 } else { TASK_API_V2 })
}

/// The version word of `containerd --version`'s output:
/// `containerd github.com/containerd/containerd/v2 v2.1.9 <rev>`.
pub fn version_of_output(out: &str) -> Option<&str> {
    let mut words = out.split_whitespace();
    let first = words.next()?;
    if first != "containerd" {
        return None;
    }
    words.nth(1)
}

/// The task API for the containerd binary at `binary`; v2 if it cannot say.
pub fn for_binary(binary: &str) -> i32 {
    if binary.is_empty() || !Path::new(binary).is_absolute() {
        log::warn!("no containerd binary to ask for its version ({binary:?}): task API v2");
        return TASK_API_V2;
    }
    let out = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => {
            log::warn!("{binary} --version: {}: task API v2", o.status);
            return TASK_API_V2;
        }
        Err(e) => {
            log::warn!("{binary} --version: {e}: task API v2");
            return TASK_API_V2;
        }
    };
    version_of_output(&text)
        .and_then(for_version)
        .unwrap_or(TASK_API_V2)
}

/// The cache entry for `binary` as it is now, if it can be stat'ed.
fn cache_entry(cache_dir: &Path, binary: &str) -> Option<PathBuf> {
    let m = std::fs::metadata(binary).ok()?;
    let mut h = DefaultHasher::new();
    (binary, m.ino(), m.size(), m.mtime(), m.mtime_nsec()).hash(&mut h);
    Some(cache_dir.join(format!("{:016x}", h.finish())))
}

/// [`for_binary`], remembered in `cache_dir` per binary.
pub fn for_binary_cached(binary: &str, cache_dir: &Path) -> i32 {
    let entry = Path::new(binary)
        .is_absolute()
        .then(|| cache_entry(cache_dir, binary))
        .flatten();
    if let Some(entry) = &entry {
        let cached = std::fs::read_to_string(entry).ok();
        if let Some(v) = cached.and_then(|t| t.trim().parse().ok()) {
            return v;
        }
    }
    let v = for_binary(binary);
    if let Some(entry) = entry {
        // Best effort: a failed write only means asking again next time.
        let tmp = entry.with_extension(format!("tmp{}", std::process::id()));
        let written = std::fs::create_dir_all(cache_dir)
            .and_then(|_| std::fs::write(&tmp, v.to_string()))
            .and_then(|_| std::fs::rename(&tmp, &entry));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(for_version("v2.4.2"), Some(3));
        assert_eq!(for_version("2.1.9+unknown"), Some(3));
        assert_eq!(for_version("1.7.24~ds1"), Some(2));
        assert_eq!(for_version("v1.6.20"), Some(2));
        assert_eq!(for_version("dev"), None);
        assert_eq!(for_version(""), None);
    }

    #[test]
    fn version_output() {
        assert_eq!(
            version_of_output(
                "containerd github.com/containerd/containerd 1.7.24~ds1 1.7.24~ds1-6\n"
            ),
            Some("1.7.24~ds1")
        );
        assert_eq!(
            version_of_output("containerd github.com/containerd/containerd/v2 2.1.9+unknown \n"),
            Some("2.1.9+unknown")
        );
        assert_eq!(version_of_output("something else"), None);
    }

    #[test]
    fn unknown_binary_is_v2() {
        assert_eq!(for_binary(""), TASK_API_V2);
        assert_eq!(for_binary("containerd"), TASK_API_V2);
        assert_eq!(for_binary("/nonexistent/containerd"), TASK_API_V2);
        // A binary that prints no containerd version.
        assert_eq!(for_binary("/bin/true"), TASK_API_V2);
    }

    #[test]
    fn answer_cached_per_binary() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("containerd");
        let script = |version: &str| {
            std::fs::write(
                &bin,
                format!(
                    "#!/bin/sh\necho containerd github.com/containerd/containerd {version} x\n"
                ),
            )
            .unwrap();
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        script("1.7.24");
        let cache = d.path().join("cache");
        let b = bin.to_str().unwrap();
        assert_eq!(for_binary_cached(b, &cache), TASK_API_V2);
        let entry = cache_entry(&cache, b).unwrap();
        assert_eq!(std::fs::read_to_string(&entry).unwrap(), "2");
        // Served from the cache: the binary is not asked again.
        std::fs::write(&entry, "3").unwrap();
        assert_eq!(for_binary_cached(b, &cache), TASK_API_V3);
        // Another binary at the same path (an upgrade) is asked again.
        std::fs::remove_file(&bin).unwrap();
        script("v2.1.9+unknown");
        assert_eq!(for_binary_cached(b, &cache), TASK_API_V3);
        assert_eq!(
            std::fs::read_to_string(cache_entry(&cache, b).unwrap()).unwrap(),
            "3"
        );
    }
}
