//! Where a restore's verified copy goes: memory or the host's disk.
//!
//! The copy lives from Create until CRIU has read it at Start, and is
//! never meant to reach a disk. Written into a disk filesystem right after
//! a stop it can cost several times a tmpfs write: in the bench, 1.8-3.3 s
//! for 1 GiB into ext4 against 0.46-0.58 s into a tmpfs (docs/
//! benchmarks.md, "Run 9"). So the copy goes to the host's
//! `/dev/shm` when the memory is there for it twice over (the copy, and
//! the restored memory CRIU makes from it while the copy still exists),
//! both on the host and in the shim's memory cgroup; a tmpfs page cannot
//! be written back under pressure as a disk's page cache can, so it is
//! never taken from memory the host is short of.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use arch_checkpoint::RestoreCopy;
use arch_host::paths::{CGROUP_ROOT, RESTORE_COPY_DISK, RESTORE_COPY_MEMORY};

const SHM: &str = "/dev/shm";

/// Room left besides the copy, so a copy never fills `/dev/shm` to its
/// last byte (other users of it keep working).
const SHM_SPARE: u64 = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Memory,
    Disk,
}

impl Place {
    pub fn base(self) -> &'static str {
        match self {
            Place::Memory => RESTORE_COPY_MEMORY,
            Place::Disk => RESTORE_COPY_DISK,
        }
    }

    /// For the log: "in memory" / "on disk".
    pub fn shown(self) -> &'static str {
        match self {
            Place::Memory => "in memory",
            Place::Disk => "on disk",
        }
    }
}

/// Memory a copy could use, in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Headroom {
    /// The host's `MemAvailable`.
    pub available: u64,
    /// Free space on `/dev/shm`.
    pub shm_free: u64,
    /// The least room left under the shim's memory cgroup and its
    /// ancestors (none: no limit anywhere).
    pub cgroup: Option<u64>,
}

/// Whether a copy of `size` bytes fits in memory with room to spare.
pub fn fits(size: u64, room: &Headroom) -> bool {
    let twice = size.saturating_mul(2);
    room.available >= twice
        && room.shm_free >= size.saturating_add(SHM_SPARE)
        && room.cgroup.is_none_or(|c| c >= twice)
}

/// Where a copy of `size` bytes (None: unknown) goes on this host.
pub fn choose(setting: RestoreCopy, size: Option<u64>) -> Place {
    if setting == RestoreCopy::Disk {
        return Place::Disk;
    }
    let Some(size) = size else {
        return Place::Disk;
    };
    match host_headroom() {
        Ok(room) if fits(size, &room) => match private_base(Path::new(RESTORE_COPY_MEMORY)) {
            Ok(()) => Place::Memory,
            Err(e) => {
                log::warn!("{RESTORE_COPY_MEMORY} is not usable, copying to disk: {e}");
                Place::Disk
            }
        },
        Ok(_) => Place::Disk,
        Err(e) => {
            log::info!("no memory headroom known ({e}): copying to disk");
            Place::Disk
        }
    }
}

/// Makes `base` (mode 0700) if missing, and checks it is this user's own
/// private directory: `/dev/shm` is writable by every user, so a name made
/// there first by someone else must not receive a verified copy.
pub fn private_base(base: &Path) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(base) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let m = std::fs::symlink_metadata(base)?;
    // SAFETY: geteuid(2) cannot fail.
    let me = unsafe { libc::geteuid() };
    if !m.is_dir() || m.uid() != me || m.mode() & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "not a private directory of uid {me} (uid {}, mode {:o})",
                m.uid(),
                m.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

fn host_headroom() -> std::io::Result<Headroom> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let available = mem_available(&meminfo)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no MemAvailable"))?;
    let shm_free = tmpfs_free(Path::new(SHM))?;
    let own = std::fs::read_to_string("/proc/self/cgroup")?;
    Ok(Headroom {
        available,
        shm_free,
        cgroup: cgroup_headroom(&own, Path::new(CGROUP_ROOT)),
    })
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Free bytes on `dir`, which must be a tmpfs (memory, not a disk).
fn tmpfs_free(dir: &Path) -> std::io::Result<u64> {
    let fs = nix::sys::statfs::statfs(dir).map_err(std::io::Error::from)?;
    if fs.filesystem_type() != nix::sys::statfs::TMPFS_MAGIC {
        return Err(std::io::Error::other(format!(
            "{} is not a tmpfs",
            dir.display()
        )));
    }
    Ok(fs.blocks_available() * fs.block_size() as u64)
}

/// The least room left under a memory limit, over the cgroup named in
/// `own` (`/proc/self/cgroup`) and its ancestors, under `root` (the
/// cgroup mount): v1's memory controller if it has one, else v2's.
fn cgroup_headroom(own: &str, root: &Path) -> Option<u64> {
    let v1_memory = root.join("memory");
    let v1 = arch_runtime::own_cgroup(own, &v1_memory.to_string_lossy());
    let (dir, limit, usage) = match v1 {
        Some(path) => (
            v1_memory.join(path.trim_start_matches('/')),
            "memory.limit_in_bytes",
            "memory.usage_in_bytes",
        ),
        None => {
            let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
            (
                root.join(path.trim_start_matches('/')),
                "memory.max",
                "memory.current",
            )
        }
    };
    let read = |d: &Path, f: &str| -> Option<u64> {
        std::fs::read_to_string(d.join(f)).ok()?.trim().parse().ok()
    };
    let mut least: Option<u64> = None;
    let mut at = Some(dir.as_path());
    while let Some(d) = at.filter(|d| d.starts_with(root)) {
        // "max" (v2) or v1's huge "unlimited" parses as no limit or as
        // more than any usage: either way, no bound from here.
        if let (Some(l), Some(u)) = (read(d, limit), read(d, usage)) {
            let room = l.saturating_sub(u);
            least = Some(least.map_or(room, |r| r.min(room)));
        }
        at = d.parent();
    }
    least
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn room(available: u64, shm_free: u64, cgroup: Option<u64>) -> Headroom {
        Headroom {
            available,
            shm_free,
            cgroup,
        }
    }

    #[test]
    fn a_copy_goes_to_memory_only_with_room_for_it_twice() {
        assert!(fits(GIB, &room(2 * GIB, 2 * GIB, None)));
        assert!(!fits(GIB, &room(2 * GIB - 1, 2 * GIB, None)), "host");
        assert!(!fits(GIB, &room(4 * GIB, GIB, None)), "shm spare");
        assert!(!fits(GIB, &room(4 * GIB, 4 * GIB, Some(GIB))), "cgroup");
        assert!(fits(GIB, &room(4 * GIB, 4 * GIB, Some(2 * GIB))));
    }

    #[test]
    fn the_disk_setting_and_an_unknown_size_copy_to_disk() {
        assert_eq!(choose(RestoreCopy::Disk, Some(1)), Place::Disk);
        assert_eq!(choose(RestoreCopy::Auto, None), Place::Disk);
    }

    #[test]
    fn mem_available_is_read_in_bytes() {
        let m = "MemTotal:       24683772 kB\nMemFree:  1 kB\nMemAvailable:   23603000 kB\n";
        assert_eq!(mem_available(m), Some(23603000 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
    }

    fn write(dir: &Path, file: &str, v: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), v).unwrap();
    }

    #[test]
    fn the_cgroup_headroom_is_the_least_over_ancestors() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        // v2: the parent's limit is the tighter one; "max" is no limit.
        write(&r.join("a"), "memory.max", "1000\n");
        write(&r.join("a"), "memory.current", "400\n");
        write(&r.join("a/b"), "memory.max", "max\n");
        write(&r.join("a/b"), "memory.current", "100\n");
        assert_eq!(cgroup_headroom("0::/a/b\n", r), Some(600));
        assert_eq!(cgroup_headroom("0::/\n", r), None);
        // v1 hybrid: the memory controller's line wins over 0::.
        let m = r.join("memory/s");
        write(&m, "memory.limit_in_bytes", "9223372036854771712\n");
        write(&m, "memory.usage_in_bytes", "5000\n");
        let own = "12:cpu,cpuacct:/s\n4:memory:/s\n0::/a/b\n";
        assert_eq!(cgroup_headroom(own, r), Some(9223372036854771712 - 5000));
        assert_eq!(cgroup_headroom("", r), None);
    }

    #[test]
    fn a_base_made_by_someone_else_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("restore");
        private_base(&base).unwrap();
        private_base(&base).unwrap();
        std::fs::set_permissions(&base, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        assert!(private_base(&base).is_err(), "readable by others");
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&base, &link).unwrap();
        assert!(private_base(&link).is_err(), "a symlink");
        if unsafe { libc::geteuid() } == 0 {
            let theirs = d.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
            std::fs::set_permissions(&theirs, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .unwrap();
            assert!(private_base(&theirs).is_err(), "another user's");
        }
    }
}
