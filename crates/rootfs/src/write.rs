//! Upperdir → tar, walked by directory descriptors, never by path: each
//! directory is opened `O_NOFOLLOW` relative to its parent's descriptor,
//! each file `O_NOFOLLOW|O_NONBLOCK` relative to its directory, and what
//! was opened must be what `fstatat` saw (same inode, same type). A
//! container that swaps a directory for a symlink to /etc while it is being
//! archived (a leave-running checkpoint that is not frozen, a tree that
//! escaped the freezer) makes the diff fail; it never gets a host file into
//! its image. Symlinks are stored as symlinks, never followed.
//!
//! Files and directories keep their `security.*` and `user.*` extended
//! attributes (`security.capability` above all; see xattr.rs).

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tar::{Builder, EntryType, Header};

use crate::error::{io_err, Error, Result};
use crate::sys;
use crate::xattr;
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
    /// Extended attributes kept (see xattr.rs).
    pub xattrs: u64,
    /// Sockets and real device nodes, which cannot be checkpointed as files
    /// (sockets are recreated by CRIU; devices are refused on apply anyway).
    pub skipped: Vec<PathBuf>,
}

/// Archive everything in `upperdir` into `out` as a tar stream.
pub fn write_diff(upperdir: &Path, out: impl Write) -> Result<DiffStats> {
    let root = sys::open_root(upperdir).map_err(io_err("open", upperdir))?;
    let mut w = Walker {
        b: Builder::new(out),
        stats: DiffStats::default(),
        inodes: HashMap::new(),
        upperdir,
    };
    w.b.follow_symlinks(false);
    w.dir(root.as_fd(), Path::new(""))?;
    w.b.into_inner()
        .map_err(Error::Tar)?
        .flush()
        .map_err(Error::Tar)?;
    Ok(w.stats)
}

#[cfg(test)]
type Hook = Box<dyn FnMut(&Path)>;

#[cfg(test)]
thread_local! {
    /// Called with each entry's relative path after it was looked at and
    /// before it is opened: the tests swap things in here.
    pub(crate) static BEFORE_OPEN: std::cell::RefCell<Option<Hook>> =
        std::cell::RefCell::new(None);
}

fn before_open(_rel: &Path) {
    #[cfg(test)]
    BEFORE_OPEN.with(|h| {
        if let Some(f) = h.borrow_mut().as_mut() {
            f(_rel)
        }
    });
}

struct Walker<'a, W: Write> {
    b: Builder<W>,
    stats: DiffStats,
    /// (dev, ino) → first archived path, to emit later links as hardlinks.
    inodes: HashMap<(u64, u64), PathBuf>,
    upperdir: &'a Path,
}

impl<W: Write> Walker<'_, W> {
    fn io(&self, op: &'static str, rel: &Path) -> impl FnOnce(io::Error) -> Error {
        io_err(op, self.upperdir.join(rel))
    }

    fn changed(&self, rel: &Path) -> Error {
        Error::Changed {
            path: rel.to_path_buf(),
        }
    }

    fn dir(&mut self, dir: BorrowedFd, rel: &Path) -> Result<()> {
        let mut names = sys::list_names(dir).map_err(self.io("read dir", rel))?;
        names.sort(); // deterministic archives
        for name in names {
            let r = rel.join(OsStr::from_bytes(name.to_bytes()));
            if name.to_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
                return Err(Error::ReservedName { path: r });
            }
            self.entry(dir, &name, &r)?;
        }
        Ok(())
    }

    fn entry(&mut self, dir: BorrowedFd, name: &CStr, rel: &Path) -> Result<()> {
        let Some(st) = sys::lstat_at(dir, name).map_err(self.io("lstat", rel))? else {
            return Err(self.changed(rel));
        };
        let mut h = header(&st);
        let kind = st.st_mode & libc::S_IFMT;
        before_open(rel);
        match kind {
            libc::S_IFDIR => {
                let sub = self.open_same(dir, name, rel, &st, true)?;
                h.set_entry_type(EntryType::Directory);
                self.xattrs(sub.as_fd(), rel)?;
                self.b
                    .append_data(&mut h, rel, io::empty())
                    .map_err(Error::Tar)?;
                self.stats.dirs += 1;
                if is_opaque(sub.as_fd()) {
                    self.marker(&rel.join(OPAQUE_MARKER))?;
                    self.stats.opaque_dirs += 1;
                }
                self.dir(sub.as_fd(), rel)
            }
            libc::S_IFLNK => {
                let target = sys::readlink_at(dir, name).map_err(self.io("readlink", rel))?;
                h.set_entry_type(EntryType::Symlink);
                self.b
                    .append_link(&mut h, rel, OsStr::from_bytes(&target))
                    .map_err(Error::Tar)?;
                self.stats.symlinks += 1;
                Ok(())
            }
            libc::S_IFREG => self.file(dir, name, rel, &st, h),
            libc::S_IFCHR if st.st_rdev == 0 => {
                // overlayfs whiteout: record deletion of `rel`.
                let mut wh = std::ffi::OsString::from(WHITEOUT_PREFIX);
                wh.push(OsStr::from_bytes(name.to_bytes()));
                self.marker(&rel.with_file_name(wh))?;
                self.stats.deletions += 1;
                Ok(())
            }
            libc::S_IFIFO => {
                h.set_entry_type(EntryType::Fifo);
                self.b
                    .append_data(&mut h, rel, io::empty())
                    .map_err(Error::Tar)?;
                self.stats.fifos += 1;
                Ok(())
            }
            _ => {
                self.stats.skipped.push(rel.to_path_buf());
                Ok(())
            }
        }
    }

    fn file(
        &mut self,
        dir: BorrowedFd,
        name: &CStr,
        rel: &Path,
        st: &libc::stat,
        mut h: Header,
    ) -> Result<()> {
        let key = (st.st_dev, st.st_ino);
        if st.st_nlink > 1 {
            if let Some(first) = self.inodes.get(&key) {
                h.set_entry_type(EntryType::Link);
                h.set_size(0);
                self.b.append_link(&mut h, rel, first).map_err(Error::Tar)?;
                self.stats.hardlinks += 1;
                return Ok(());
            }
        }
        let f = self.open_same(dir, name, rel, st, false)?;
        self.xattrs(f.as_fd(), rel)?;
        if st.st_nlink > 1 {
            self.inodes.insert(key, rel.to_path_buf());
        }
        let len = st.st_size as u64;
        h.set_entry_type(EntryType::Regular);
        h.set_size(len);
        self.b
            .append_data(&mut h, rel, exact(File::from(f), len))
            .map_err(Error::Tar)?;
        self.stats.files += 1;
        self.stats.bytes += len;
        Ok(())
    }

    /// Opens `name` without following a link, and checks it is the inode
    /// (and type) `st` described: anything swapped in meanwhile fails.
    fn open_same(
        &self,
        dir: BorrowedFd,
        name: &CStr,
        rel: &Path,
        st: &libc::stat,
        is_dir: bool,
    ) -> Result<std::os::fd::OwnedFd> {
        let opened = if is_dir {
            sys::open_dir_at(dir, name)
        } else {
            sys::open_read_at(dir, name)
        };
        let fd = match opened {
            Ok(fd) => fd,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ELOOP | libc::ENOTDIR | libc::ENOENT)
                ) =>
            {
                return Err(self.changed(rel))
            }
            Err(e) => return Err(self.io("open", rel)(e)),
        };
        let now = sys::fstat(fd.as_fd()).map_err(self.io("fstat", rel))?;
        let same = now.st_dev == st.st_dev
            && now.st_ino == st.st_ino
            && now.st_mode & libc::S_IFMT == st.st_mode & libc::S_IFMT;
        if !same {
            return Err(self.changed(rel));
        }
        Ok(fd)
    }

    /// The kept extended attributes of `fd`, as PAX records before its entry.
    fn xattrs(&mut self, fd: BorrowedFd, rel: &Path) -> Result<()> {
        let attrs = xattr::read(fd).map_err(self.io("reading xattrs of", rel))?;
        if attrs.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = attrs
            .iter()
            .map(|(n, _)| format!("{}{n}", xattr::PAX_PREFIX))
            .collect();
        self.b
            .append_pax_extensions(
                keys.iter()
                    .map(String::as_str)
                    .zip(attrs.iter().map(|(_, v)| v.as_slice())),
            )
            .map_err(Error::Tar)?;
        self.stats.xattrs += attrs.len() as u64;
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

fn header(st: &libc::stat) -> Header {
    let mut h = Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid.into());
    h.set_gid(st.st_gid.into());
    h.set_mtime(st.st_mtime.max(0) as u64);
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
fn is_opaque(dir: BorrowedFd) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|attr| {
            let a = CString::new(*attr).expect("no NUL");
            matches!(xattr::get_opt(dir, &a), Ok(Some(v)) if v == b"y")
        })
}
