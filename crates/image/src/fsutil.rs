//! Small filesystem helpers: explicit modes (not umask-dependent), fsync of
//! files and directories (needed for durability on NFS/EFS and local disks),
//! and hashing.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{io_err, Result};

pub(crate) const DIR_MODE: u32 = 0o700;
pub(crate) const FILE_MODE: u32 = 0o600;

/// Create `path` (and missing parents) with mode 0700. Existing directories
/// are left as the operator made them.
pub(crate) fn mkdir_all(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(io_err("create dir", path))
}

/// Create a new directory with exactly 0700 (fails if it exists).
pub(crate) fn mkdir_new(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .mode(DIR_MODE)
        .create(path)
        .map_err(io_err("create dir", path))?;
    set_mode(path, DIR_MODE)
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", path))
}

/// fsync a file or directory by path.
pub(crate) fn fsync(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err("fsync", path))
}

/// Write a new 0600 file durably (create_new: never clobbers).
pub(crate) fn write_new(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_err("create", path))?;
    f.write_all(data).map_err(io_err("write", path))?;
    f.sync_all().map_err(io_err("fsync", path))
}

/// Replace `path` durably: write a sibling temp file then rename over it.
pub(crate) fn replace_file(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", fastrand::u32(..)));
    write_new(&tmp, data)?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("rename", path)(e)
    })?;
    if let Some(parent) = path.parent() {
        fsync(parent)?;
    }
    Ok(())
}

/// Size and lower-case hex sha256 of a file.
pub(crate) fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut f = File::open(path).map_err(io_err("open", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(h.finalize())))
}

/// Random suffix for sidecar names; uniqueness, not secrecy, is the goal.
/// Who is writing a staging dir: this boot of this host, and this process.
/// A cleaner on the same boot can tell a dead writer's leftovers at once.
pub(crate) fn owner_tag() -> String {
    format!("{}-{}", boot_tag(), std::process::id())
}

pub(crate) fn boot_tag() -> String {
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let tag: String = id
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(12)
        .collect();
    if tag.is_empty() {
        "noboot".into()
    } else {
        tag
    }
}

pub(crate) fn rand_suffix() -> String {
    format!("{:016x}", fastrand::u64(..))
}
