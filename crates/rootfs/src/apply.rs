//! tar → directory, safely. Every entry path is split into plain
//! components; parents are opened one by one with O_NOFOLLOW relative to
//! the previous fd, and the final name is created with `*at()` calls that
//! never follow symlinks. Hostile entries fail the whole apply (the caller
//! rolls back) rather than being skipped, so a tampered image is noticed.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use tar::EntryType;

use crate::error::{io_err, EntryError as E, Error, Result};
use crate::sys::{self, Meta};
use crate::xattr;
use crate::{OPAQUE_MARKER, WHITEOUT_PREFIX};

/// Resource limits for [`apply_diff`]; a corrupted or hostile archive must
/// not be able to fill the host disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single entry, in bytes.
    pub max_entry_size: u64,
    /// Largest sum of entry sizes, in bytes.
    pub max_total: u64,
    /// Most entries in the archive.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entry_size: 16 << 30,
            max_total: 64 << 30,
            max_entries: 10_000_000,
        }
    }
}

/// What [`apply_diff`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub fifos: u64,
    pub deletions: u64,
    pub opaque_dirs: u64,
    pub bytes: u64,
    /// Extended attributes set.
    pub xattrs: u64,
}

/// Apply a diff written by [`crate::write_diff`] into `rootfs`.
///
/// Ownership is restored only when running as root (otherwise chown would
/// fail for other ids). Directory mtimes are set last, since creating their
/// children changes them.
pub fn apply_diff(tar: impl Read, rootfs: &Path, limits: Limits) -> Result<ApplyStats> {
    let root = sys::open_root(rootfs).map_err(io_err("open", rootfs))?;
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    let mut st = ApplyStats::default();
    let (mut total, mut count) = (0u64, 0u64);
    let mut dir_times: Vec<(Vec<CString>, u64)> = Vec::new();
    let mut ar = tar::Archive::new(tar);
    for entry in ar.entries().map_err(Error::Tar)? {
        let mut entry = entry.map_err(Error::Tar)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let fail = |kind| Error::Entry {
            entry: name.clone(),
            kind,
        };
        count += 1;
        if count > limits.max_entries {
            return Err(fail(E::TooManyEntries {
                limit: limits.max_entries,
            }));
        }
        let size = entry.size();
        if size > limits.max_entry_size {
            return Err(fail(E::TooLarge {
                size,
                limit: limits.max_entry_size,
            }));
        }
        total = total.saturating_add(size);
        if total > limits.max_total {
            return Err(fail(E::TotalTooLarge {
                limit: limits.max_total,
            }));
        }
        let xattrs = entry_xattrs(&mut entry).map_err(fail)?;
        let h = entry.header();
        let meta = Meta {
            owner: as_root
                .then(|| Ok::<_, io::Error>((h.uid()? as u32, h.gid()? as u32)))
                .transpose()
                .map_err(|e| fail(e.into()))?,
            mode: h.mode().map_err(|e| fail(e.into()))? & 0o7777,
            mtime: h.mtime().map_err(|e| fail(e.into()))?,
        };
        let ctx = Ctx {
            root: root.as_fd(),
            meta,
            xattrs,
            stats: &mut st,
            dir_times: &mut dir_times,
        };
        apply_entry(ctx, &mut entry).map_err(fail)?;
    }
    for (parts, mtime) in dir_times.iter().rev() {
        // Best effort: a later deletion may have removed the directory.
        if let Ok(Some(fd)) = walk(root.as_fd(), parts, false) {
            let _ = sys::set_mtime_fd(fd.as_raw_fd(), *mtime);
        }
    }
    Ok(st)
}

struct Ctx<'a> {
    root: BorrowedFd<'a>,
    meta: Meta,
    /// Extended attributes to set (files and directories only).
    xattrs: Vec<(CString, Vec<u8>)>,
    stats: &'a mut ApplyStats,
    dir_times: &'a mut Vec<(Vec<CString>, u64)>,
}

fn apply_entry<R: Read>(c: Ctx, entry: &mut tar::Entry<R>) -> std::result::Result<(), E> {
    let parts = split(&entry.path_bytes())?;
    let etype = entry.header().entry_type();
    let Some((last, parents)) = parts.split_last() else {
        // "./" is the rootfs itself; leave the caller's directory alone.
        return if etype.is_dir() {
            Ok(())
        } else {
            Err(E::EmptyPath)
        };
    };
    let last_b = last.to_bytes();
    if last_b == OPAQUE_MARKER.as_bytes() {
        let dir = walk(c.root, parents, true)?.expect("created");
        sys::clear_dir(dir.as_fd())?;
        c.stats.opaque_dirs += 1;
        return Ok(());
    }
    if let Some(victim) = last_b.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        if victim.is_empty() || victim == b"." || victim == b".." {
            return Err(E::BadWhiteout);
        }
        if let Some(dir) = walk(c.root, parents, false)? {
            sys::remove_all_at(dir.as_fd(), &CString::new(victim).expect("no NUL"))?;
        }
        c.stats.deletions += 1;
        return Ok(());
    }
    let dir = walk(c.root, parents, true)?.expect("created");
    let (d, m) = (dir.as_fd(), &c.meta);
    let settable = matches!(
        etype,
        EntryType::Regular | EntryType::Continuous | EntryType::Directory
    );
    if let (false, Some((name, _))) = (settable, c.xattrs.first()) {
        return Err(E::Xattr(name.to_string_lossy().into_owned()));
    }
    match etype {
        EntryType::Regular | EntryType::Continuous => {
            clear_slot(d, last, false)?;
            let mut f = File::from(sys::create_file_at(d, last)?);
            c.stats.bytes += io::copy(entry, &mut f)?;
            sys::set_meta_fd(f.as_fd(), m)?;
            // After chown and the content: both clear security.capability.
            c.stats.xattrs += set_xattrs(f.as_fd(), &c.xattrs)?;
            c.stats.files += 1;
        }
        EntryType::Directory => {
            clear_slot(d, last, true)?;
            if sys::lstat_at(d, last)?.is_none() {
                sys::mkdir_at(d, last, 0o700)?;
            }
            let sub = sys::open_dir_at(d, last)?;
            sys::set_meta_fd(sub.as_fd(), m)?;
            c.stats.xattrs += set_xattrs(sub.as_fd(), &c.xattrs)?;
            c.dir_times.push((parts.clone(), m.mtime));
            c.stats.dirs += 1;
        }
        EntryType::Symlink => {
            let target = entry.link_name_bytes().ok_or(E::MissingLinkName)?;
            let target = CString::new(target.into_owned()).map_err(|_| E::MissingLinkName)?;
            clear_slot(d, last, false)?;
            sys::symlink_at(&target, d, last)?;
            sys::set_meta_at(d, last, m, true)?;
            c.stats.symlinks += 1;
        }
        EntryType::Link => {
            let raw = entry.link_name_bytes().ok_or(E::MissingLinkName)?;
            let shown = String::from_utf8_lossy(&raw).into_owned();
            let escapes = || E::LinkEscapes {
                target: shown.clone(),
            };
            let tparts = split(&raw).map_err(|_| escapes())?;
            let (tlast, tparents) = tparts.split_last().ok_or_else(escapes)?;
            let invalid = || E::LinkTargetInvalid {
                target: shown.clone(),
            };
            let tdir = walk(c.root, tparents, false)?.ok_or_else(invalid)?;
            match sys::lstat_at(tdir.as_fd(), tlast)? {
                Some(st) if !sys::is_dir(&st) && tparts != parts => {}
                _ => return Err(invalid()),
            }
            clear_slot(d, last, false)?;
            sys::link_at(tdir.as_fd(), tlast, d, last)?;
            c.stats.hardlinks += 1;
        }
        EntryType::Fifo => {
            clear_slot(d, last, false)?;
            sys::mkfifo_at(d, last, m.mode)?;
            sys::set_meta_at(d, last, m, false)?;
            c.stats.fifos += 1;
        }
        EntryType::Char | EntryType::Block => return Err(E::DeviceNode),
        other => return Err(E::UnsupportedType(format!("{other:?}"))),
    }
    Ok(())
}

/// The extended attributes an entry's PAX records carry; one a diff never
/// keeps (trusted.*, overlay's own) refuses the archive.
fn entry_xattrs<R: Read>(
    entry: &mut tar::Entry<R>,
) -> std::result::Result<Vec<(CString, Vec<u8>)>, E> {
    let mut out = Vec::new();
    let Some(exts) = entry.pax_extensions()? else {
        return Ok(out);
    };
    for ext in exts {
        let ext = ext?;
        let Some(name) = ext.key_bytes().strip_prefix(xattr::PAX_PREFIX.as_bytes()) else {
            continue;
        };
        let shown = String::from_utf8_lossy(name).into_owned();
        if !xattr::kept(&shown) || std::str::from_utf8(name).is_err() {
            return Err(E::Xattr(shown));
        }
        let c = CString::new(name).map_err(|_| E::Xattr(shown))?;
        out.push((c, ext.value_bytes().to_vec()));
    }
    Ok(out)
}

fn set_xattrs(fd: BorrowedFd, xattrs: &[(CString, Vec<u8>)]) -> io::Result<u64> {
    for (name, value) in xattrs {
        xattr::set(fd, name, value).map_err(|e| {
            io::Error::new(e.kind(), format!("setting {}: {e}", name.to_string_lossy()))
        })?;
    }
    Ok(xattrs.len() as u64)
}

/// Split a tar path into plain components. `.` and empty parts (from "./x"
/// or "x/") are dropped; absolute paths and `..` are refused outright.
fn split(raw: &[u8]) -> std::result::Result<Vec<CString>, E> {
    if raw.first() == Some(&b'/') {
        return Err(E::AbsolutePath);
    }
    let mut out = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(E::ParentComponent),
            p => out.push(CString::new(p).map_err(|_| E::EmptyPath)?),
        }
    }
    Ok(out)
}

/// Open the directory `parts` under `root`, one O_NOFOLLOW step at a time.
/// Missing directories are created (0755, fixed later by their own entry)
/// when `create`; otherwise `Ok(None)`.
fn walk(
    root: BorrowedFd,
    parts: &[CString],
    create: bool,
) -> std::result::Result<Option<OwnedFd>, E> {
    let mut cur = root.try_clone_to_owned()?;
    for (i, p) in parts.iter().enumerate() {
        let shown = || {
            String::from_utf8_lossy(
                &parts[..=i]
                    .iter()
                    .map(|c| c.to_bytes())
                    .collect::<Vec<_>>()
                    .join(&b'/'),
            )
            .into_owned()
        };
        let next = match sys::open_dir_at(cur.as_fd(), p) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                if !create {
                    return Ok(None);
                }
                sys::mkdir_at(cur.as_fd(), p, 0o755)?;
                sys::open_dir_at(cur.as_fd(), p)?
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                return Err(match sys::lstat_at(cur.as_fd(), p)? {
                    Some(st) if sys::is_symlink(&st) => E::ThroughSymlink { component: shown() },
                    _ => E::NotADirectory { component: shown() },
                });
            }
            r => r?,
        };
        cur = next;
    }
    Ok(Some(cur))
}

/// Make room for a new entry: anything there is removed (without following
/// symlinks), except that an existing directory is kept for a directory.
fn clear_slot(dir: BorrowedFd, name: &CString, keep_dir: bool) -> io::Result<()> {
    match sys::lstat_at(dir, name)? {
        Some(st) if keep_dir && sys::is_dir(&st) => Ok(()),
        Some(_) => sys::remove_all_at(dir, name),
        None => Ok(()),
    }
}
