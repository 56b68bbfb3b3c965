//! Upperdir → tar. The walk uses lstat only: symlinks are stored as
//! symlinks and never followed, so a container cannot make us archive host
//! files by planting links in its upperdir.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tar::{Builder, EntryType, Header};

use crate::error::{io_err, Error, Result};
use crate::{OPAQUE_MARKER, WHITEOUT_PREFIX};

/// What [`write_diff`] archived.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiffStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub fifos: u64,
    /// Whiteouts recorded as `.wh.` entries.
    pub deletions: u64,
    pub opaque_dirs: u64,
    /// Regular-file content bytes.
    pub bytes: u64,
    /// Sockets and real device nodes, which cannot be checkpointed as files
    /// (sockets are recreated by CRIU; devices are refused on apply anyway).
    pub skipped: Vec<PathBuf>,
}

/// Archive everything in `upperdir` into `out` as a tar stream.
pub fn write_diff(upperdir: &Path, out: impl Write) -> Result<DiffStats> {
    let mut w = Walker {
        b: Builder::new(out),
        stats: DiffStats::default(),
        inodes: HashMap::new(),
    };
    w.b.follow_symlinks(false);
    w.dir(upperdir, Path::new(""))?;
    w.b.into_inner()
        .map_err(Error::Tar)?
        .flush()
        .map_err(Error::Tar)?;
    Ok(w.stats)
}

struct Walker<W: Write> {
    b: Builder<W>,
    stats: DiffStats,
    /// (dev, ino) → first archived path, to emit later links as hardlinks.
    inodes: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> Walker<W> {
    fn dir(&mut self, abs: &Path, rel: &Path) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(abs)
            .map_err(io_err("read dir", abs))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(io_err("read dir", abs))?;
        names.sort(); // deterministic archives
        for name in names {
            let (a, r) = (abs.join(&name), rel.join(&name));
            if name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
                return Err(Error::ReservedName { path: r });
            }
            self.entry(&a, &r)?;
        }
        Ok(())
    }

    fn entry(&mut self, abs: &Path, rel: &Path) -> Result<()> {
        let meta = fs::symlink_metadata(abs).map_err(io_err("lstat", abs))?;
        let ft = meta.file_type();
        let mut h = header(&meta);
        let tar_err = Error::Tar;
        if ft.is_dir() {
            h.set_entry_type(EntryType::Directory);
            self.b
                .append_data(&mut h, rel, io::empty())
                .map_err(tar_err)?;
            self.stats.dirs += 1;
            if is_opaque(abs) {
                self.marker(&rel.join(OPAQUE_MARKER))?;
                self.stats.opaque_dirs += 1;
            }
            return self.dir(abs, rel);
        }
        if ft.is_symlink() {
            let target = fs::read_link(abs).map_err(io_err("readlink", abs))?;
            h.set_entry_type(EntryType::Symlink);
            self.b.append_link(&mut h, rel, &target).map_err(tar_err)?;
            self.stats.symlinks += 1;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = self.inodes.get(&(meta.dev(), meta.ino())) {
                    h.set_entry_type(EntryType::Link);
                    h.set_size(0);
                    self.b.append_link(&mut h, rel, first).map_err(tar_err)?;
                    self.stats.hardlinks += 1;
                    return Ok(());
                }
                self.inodes
                    .insert((meta.dev(), meta.ino()), rel.to_path_buf());
            }
            // O_NOFOLLOW: the path was a file at lstat time; keep it that way.
            let f = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(abs)
                .map_err(io_err("open", abs))?;
            h.set_size(meta.len());
            self.b
                .append_data(&mut h, rel, exact(f, meta.len()))
                .map_err(tar_err)?;
            self.stats.files += 1;
            self.stats.bytes += meta.len();
        } else if ft.is_char_device() && meta.rdev() == 0 {
            // overlayfs whiteout: record deletion of `rel`.
            let name = rel.file_name().expect("walked entries have names");
            let mut wh = std::ffi::OsString::from(WHITEOUT_PREFIX);
            wh.push(name);
            self.marker(&rel.with_file_name(wh))?;
            self.stats.deletions += 1;
        } else if ft.is_fifo() {
            h.set_entry_type(EntryType::Fifo);
            self.b
                .append_data(&mut h, rel, io::empty())
                .map_err(tar_err)?;
            self.stats.fifos += 1;
        } else {
            self.stats.skipped.push(rel.to_path_buf());
        }
        Ok(())
    }

    /// Empty regular file used for whiteout and opaque markers.
    fn marker(&mut self, rel: &Path) -> Result<()> {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        self.b
            .append_data(&mut h, rel, io::empty())
            .map_err(Error::Tar)
    }
}

fn header(meta: &fs::Metadata) -> Header {
    let mut h = Header::new_gnu();
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(meta.uid().into());
    h.set_gid(meta.gid().into());
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_size(0);
    h
}

/// Reader yielding exactly `len` bytes: a file that shrank since lstat would
/// otherwise desynchronise the archive, so fail loudly instead.
fn exact(f: File, len: u64) -> impl Read {
    struct Exact(io::Take<File>, u64);
    impl Read for Exact {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1 -= n as u64;
            if n == 0 && self.1 > 0 && !buf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while archiving",
                ));
            }
            Ok(n)
        }
    }
    Exact(f.take(len), len)
}

/// Overlay marks opaque dirs with this xattr ("y"); `user.` is used by
/// unprivileged (userxattr) mounts.
fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|attr| {
            let (Ok(p), Ok(a)) = (
                CString::new(path.as_os_str().as_bytes()),
                CString::new(*attr),
            ) else {
                return false;
            };
            let mut buf = [0u8; 4];
            // SAFETY: valid C strings and buffer with its true length.
            let n = unsafe {
                libc::lgetxattr(p.as_ptr(), a.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            };
            n == 1 && buf[0] == b'y'
        })
}
