//! Taking an image for a restore. The image directory is renamed to a name
//! of the restorer's own, `{key}@taken-{boot}-{pid}-{rand}`: a rename is
//! atomic (on local disks and on NFS/EFS), so of two restorers racing for
//! one image exactly one gets it, in `basic` mode too, and the one that
//! gets it validates and restores the very directory it holds: nobody can
//! swap another image in under the key between the check and CRIU.
//!
//! A taken image ends retired (`@restored`, after a restore), failed
//! (`@failed-…`, kept for inspection) or put back under its key (the
//! restore did not happen, e.g. the container was deleted before Start).
//! A restorer that died leaves `@taken-`, which stale-temp cleanup puts
//! back once its process is gone (or, from another host, once it is old).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{io_err, Error, Result};
use crate::fsutil::{fsync, mkdir_all, mkdir_new, owner_tag, rand_suffix, write_new};
use crate::image::Image;
use crate::lease::{lease_path, Lease};
use crate::manifest::{Status, Timestamp};
use crate::store::{set_status, ImageStore, FAILURE_REASON_FILE};
use crate::verify_behind::{deferrable, Deferred, Pending};
use crate::write_behind::CopyWriter;
use crate::SIDECAR_SEP as SEP;
use arch_imgstream::{OriginalDigest, OwnedWrite};

/// The sidecar kind of a taken image.
pub(crate) const TAKEN: &str = "taken-";
/// The sidecar kind of a taken image past its fence ([`Taken::fence`]):
/// CRIU is about to read it, and no other host may give it back.
pub(crate) const RESTORING: &str = "restoring-";

/// An image this process took for a restore. Dropping it undecided puts it
/// back under its key (if that is still free).
#[derive(Debug)]
pub struct Taken {
    /// The taken image's name path under the root (for logs and callers).
    dir: PathBuf,
    /// Its name in the scope directory.
    name: String,
    /// The `{owner}-{rand}` part of its name, shared by its lease.
    tag: String,
    /// The held scope directory's `/proc/self/fd/N` path: every rename,
    /// write and removal goes through it, so a scope directory swapped for
    /// a symlink meanwhile cannot redirect them.
    ns_dir: PathBuf,
    namespace: String,
    key: String,
    /// What it was taken from: `{key}` or an older generation's name.
    origin: String,
    trust: crate::Trust,
    /// The host's key, for an encrypted image.
    encryption: crate::HostKey,
    /// network-fs: the lease beside it, touched until the image is decided.
    lease: Option<Lease>,
    done: bool,
    /// Kept open for `ns_dir`; declared last, so it is closed after the
    /// lease (whose file is named through it) is removed.
    _ns_held: crate::fsutil::HeldDir,
}

impl ImageStore {
    /// Takes the committed image of `ns`/`key` by renaming it to a name of
    /// this process's own. [`Error::NotFound`] when there is none, or when
    /// another restorer took it first.
    pub fn take(&self, ns: &str, key: &str) -> Result<Taken> {
        self.take_inner(ns, key, key, None)
    }

    /// [`ImageStore::take`] for a shared root: a lease file
    /// `{key}@lease-{tag}` is created first and touched every quarter of
    /// `lease` until the image is decided, so that another host gives the
    /// image back to the next restorer only once this process stopped
    /// touching it (see lease.rs). `owner` is written into the lease.
    pub fn take_leased(&self, ns: &str, key: &str, owner: &str, lease: Duration) -> Result<Taken> {
        self.take_inner(ns, key, key, Some((owner, lease)))
    }

    /// Takes the newest older generation of `ns`/`key` (see
    /// generations.rs) as [`ImageStore::take`] or, with `lease`,
    /// [`ImageStore::take_leased`] takes the current image. Only a
    /// restorer whose own newer image of the key turned out bad calls
    /// this: one that found no image under the key (another restorer has
    /// it) never falls back to the older ones. None when there is none
    /// left; one another process took or removed first is skipped.
    pub fn take_generation(
        &self,
        ns: &str,
        key: &str,
        lease: Option<(&str, Duration)>,
    ) -> Result<Option<Taken>> {
        // A host keeping one image never reaches for older ones, even
        // those a host that kept more left behind.
        if self.generations < 2 {
            return Ok(None);
        }
        for g in self.generations(ns, key)? {
            match self.take_inner(ns, key, &g.name, lease) {
                Ok(t) => return Ok(Some(t)),
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Takes `from` (the key's image, or one of its generations) in the
    /// scope directory as this process's own `{key}@taken-{tag}`.
    fn take_inner(
        &self,
        ns: &str,
        key: &str,
        from: &str,
        lease: Option<(&str, Duration)>,
    ) -> Result<Taken> {
        self.checked_ns(ns)?;
        let src = self.image_dir(ns, key)?;
        let ns_dir = src.parent().expect("image dir has a parent").to_path_buf();
        let tag = format!("{}-{}", owner_tag(), rand_suffix());
        let name = format!("{key}{SEP}{TAKEN}{tag}");
        let dir = ns_dir.join(&name);
        let ns_held = crate::fsutil::HeldDir::beneath(self.root(), ns)?;
        let (src, ns_dir) = (ns_held.path().join(from), ns_held.path().to_path_buf());
        let meta = fs::symlink_metadata(&src).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                namespace: ns.into(),
                key: key.into(),
            },
            _ => io_err("stat", &src)(e),
        })?;
        if !meta.file_type().is_dir() {
            return Err(Error::UnexpectedFileType {
                path: src.display().to_string(),
            });
        }
        // The lease exists before the taken image does: a reclaimer never
        // sees a taken image of a live restorer without its lease.
        let lease = match lease {
            Some((owner, d)) => Some(Lease::acquire(lease_path(&ns_dir, key, &tag), owner, d)?),
            None => None,
        };
        fs::rename(&src, ns_dir.join(&name)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                namespace: ns.into(),
                key: key.into(),
            },
            _ => io_err("rename", &src)(e),
        })?;
        fsync(&ns_dir)?;
        Ok(Taken {
            dir,
            name,
            tag,
            ns_dir,
            _ns_held: ns_held,
            namespace: ns.into(),
            key: key.into(),
            origin: from.into(),
            trust: self.trust().clone(),
            encryption: self.encryption().clone(),
            lease,
            done: false,
        })
    }
}

impl Taken {
    /// Where the taken image is now.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name it was taken from in its scope directory: the key (the
    /// newest image) or an older generation's `{key}@gen-…`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The fence, right before CRIU runs: renames the taken image to
    /// `{key}@restoring-{tag}`. A lease alone is not a fence (a restorer
    /// stalled past it between a check and CRIU could restore an image
    /// another host gave back meanwhile); a rename is atomic on the file
    /// server, and another host gives back only `@taken-` names. So either
    /// the give-back's rename won (this one finds no `@taken-`:
    /// [`Error::LeaseLost`], and this restorer starts fresh), or this one
    /// did, and the image is this restorer's for good: the lease ends.
    pub fn fence(&mut self) -> Result<()> {
        if self.lease.as_ref().is_some_and(|l| !l.beat()) {
            return Err(Error::LeaseLost {
                path: self.dir.clone(),
            });
        }
        let name = format!("{}{SEP}{RESTORING}{}", self.key, self.tag);
        match fs::rename(self.held(), self.ns_dir.join(&name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::LeaseLost {
                    path: self.dir.clone(),
                })
            }
            Err(e) => return Err(self.rename_err(e)),
        }
        self.dir = self.dir.with_file_name(&name);
        self.name = name;
        self.lease = None;
        fsync(&self.ns_dir)
    }

    /// Reads and fully validates the taken image (the one CRIU will read).
    pub fn open(&self) -> Result<Image> {
        Image::load(self.dir.clone(), &self.namespace, &self.key, &self.trust)
    }

    /// What a verified copy of the taken image will hold, in bytes, read
    /// from its manifest before the copy is made, to choose where the copy
    /// goes. Only a hint: the copy reads the manifest again and checks its
    /// signature, so a manifest changed in between can only make a copy
    /// chosen for memory too large for it, and fail there.
    pub fn decoded_size(&self) -> Result<u64> {
        let bytes = crate::image::read_manifest_bytes(&self.held())?;
        let manifest = crate::Manifest::parse(&bytes, &self.dir.join(crate::MANIFEST))?;
        Ok(manifest.decoded_size())
    }

    /// Verifies the taken image into `dest`, a new private directory on
    /// this host's own disk, and returns the copy: every listed file is
    /// read once from the taken image (no link followed, no FIFO opened),
    /// hashed as it is copied, and compared with the signed manifest. What
    /// CRIU reads at Start is then exactly what was verified here, whatever
    /// another host writes into the shared root in between.
    pub fn verify_into(&self, dest: &Path) -> Result<Image> {
        let (image, deferred) = self.copy_into(dest, false)?;
        debug_assert!(deferred.is_empty());
        Ok(image)
    }

    /// [`Self::verify_into`], except that large CRIU page images are copied
    /// unhashed (sizes and cipher tags checked) and their digests are
    /// returned to be checked behind the copy (verify_behind.rs says why
    /// and when). Everything CRIU interprets is verified before this
    /// returns.
    pub fn verify_into_deferring(&self, dest: &Path) -> Result<(Image, Deferred)> {
        self.copy_into(dest, true)
    }

    fn copy_into(&self, dest: &Path, defer: bool) -> Result<(Image, Deferred)> {
        let held = self.held();
        let bytes = crate::image::read_manifest_bytes(&held)?;
        crate::image::verify_signature(&held, &bytes, &self.trust)?;
        let manifest = crate::Manifest::parse(&bytes, &self.dir.join(crate::MANIFEST))?;
        if manifest.namespace != self.namespace || manifest.key != self.key {
            return Err(Error::InvalidManifest {
                field: "namespace/key",
                reason: format!(
                    "manifest says {}/{}, directory is {}/{}",
                    manifest.namespace, manifest.key, self.namespace, self.key
                ),
            });
        }
        // An encrypted image needs this host's key: a wrong or missing key
        // is named (both key ids) before any file is opened.
        let key = match manifest.encryption() {
            Some(e) => Some((self.encryption.for_image(&e.key_id)?, e.image_id.clone())),
            None => None,
        };
        // Nothing unlisted (a planted link, a FIFO) either, as for open().
        let listed = manifest.files.iter().map(|f| f.path.as_str()).collect();
        crate::image::check_unlisted(&held, "", &listed)?;
        mkdir_new(dest)?;
        let mut deferred = Deferred::default();
        let copied = (|| {
            for f in &manifest.files {
                let src = crate::fsutil::open_file_beneath(&held, &f.path)?;
                let to = dest.join(&f.path);
                if let Some(parent) = to.parent() {
                    mkdir_all(parent)?;
                }
                if let Some(rec) = f.record() {
                    // A streamed file: decoded into the copy under CRIU's
                    // name, its stored and its original bytes checked (a
                    // large page image's original bytes behind the copy).
                    let identity = key
                        .as_ref()
                        .map(|(k, image_id)| (*k, manifest.file_identity(image_id, &rec.name)));
                    let to = to.with_file_name(&rec.name);
                    let behind = defer && deferrable(&rec.name, rec.original_size);
                    let crypt = identity.as_ref().map(|(k, id)| (*k, id.as_str()));
                    decode_into(src, &rec, crypt, &self.dir.join(&f.path), &to, behind)?;
                    if behind {
                        deferred.pending.push(Pending {
                            copy: to,
                            shown: f.path.clone(),
                            size: rec.original_size,
                            sha256: rec.original_sha256.clone(),
                            digest: OriginalDigest::for_record(&rec, crypt),
                        });
                    }
                    continue;
                }
                let name = to.file_name().map(|n| n.to_string_lossy().into_owned());
                let behind = defer && name.is_some_and(|n| deferrable(&n, f.size));
                let from = self.dir.join(&f.path);
                let (size, sha256) = copy_file(src, f.size, &from, &to, !behind)?;
                if size != f.size {
                    return Err(Error::SizeMismatch {
                        path: f.path.clone(),
                        expected: f.size,
                        actual: size,
                    });
                }
                match sha256 {
                    None => deferred.pending.push(Pending {
                        copy: to,
                        shown: f.path.clone(),
                        size: f.size,
                        sha256: f.sha256.clone(),
                        digest: OriginalDigest::default(),
                    }),
                    Some(actual) if actual != f.sha256 => {
                        return Err(Error::ChecksumMismatch {
                            path: f.path.clone(),
                            expected: f.sha256.clone(),
                            actual,
                        })
                    }
                    Some(_) => {}
                }
            }
            // Not fsync'd, like the rest of the copy: it is read at once and
            // means nothing after a crash.
            create_private(&dest.join(crate::MANIFEST))?
                .write_all(&bytes)
                .map_err(io_err("write", &dest.join(crate::MANIFEST)))
        })();
        if let Err(e) = copied {
            let _ = fs::remove_dir_all(dest);
            return Err(e);
        }
        Ok((Image::new(dest.to_path_buf(), manifest), deferred))
    }

    /// The taken image through the held scope directory.
    fn held(&self) -> PathBuf {
        self.ns_dir.join(&self.name)
    }

    /// `{key}@{what}`: its path through the held scope directory, and its
    /// name path under the root (for callers; valid after this is gone).
    fn sidecar(&self, what: &str) -> (PathBuf, PathBuf) {
        let name = format!("{}{SEP}{what}", self.key);
        (self.ns_dir.join(&name), self.dir.with_file_name(&name))
    }

    fn rename_to(&mut self, dest: &Path) -> Result<()> {
        fs::rename(self.held(), dest).map_err(|e| self.rename_err(e))?;
        self.done = true;
        self.lease = None;
        fsync(&self.ns_dir)
    }

    /// Whether this process still holds the image: false once a lease
    /// was lost (another host took the image back), or the taken
    /// directory is gone.
    fn still_held(&self) -> Result<()> {
        let lost = self.lease.as_ref().is_some_and(|l| !l.beat());
        if lost || fs::symlink_metadata(self.held()).is_err() {
            return Err(Error::LeaseLost {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// A taken image that vanished was reclaimed by another host after our
    /// lease expired: say so rather than "no such file".
    fn rename_err(&self, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::NotFound && self.lease.is_some() {
            Error::LeaseLost {
                path: self.dir.clone(),
            }
        } else {
            io_err("rename", &self.dir)(e)
        }
    }

    /// After a restore: `{key}@restored` (replacing an older one, so only
    /// the latest is kept), status `restored`.
    pub fn retire(mut self) -> Result<PathBuf> {
        // Given back after a lost lease: keep the previous retired image.
        self.still_held()?;
        let (dest, shown) = self.sidecar("restored");
        if fs::symlink_metadata(&dest).is_ok() {
            fs::remove_dir_all(&dest).map_err(io_err("remove", &shown))?;
        }
        self.rename_to(&dest)?;
        set_status(&dest, Status::Restored, None)?;
        // The key's older generations are older state of the run this
        // restore continues: never to be restored after it.
        match crate::generations::retire_superseded(&self.ns_dir, &self.key) {
            Ok(0) => {}
            Ok(n) => log::info!("{}: retired {n} older generations", shown.display()),
            Err(e) => log::warn!("{}: retiring older generations: {e}", shown.display()),
        }
        Ok(shown)
    }

    /// After a failed restore: `{key}@failed-{secs}-{rand}` with
    /// `failure-reason.txt`, status `failed` when the manifest parses.
    pub fn fail(mut self, reason: &str) -> Result<PathBuf> {
        let what = format!("failed-{}-{}", Timestamp::now().secs, &rand_suffix()[..8]);
        let (dest, shown) = self.sidecar(&what);
        self.rename_to(&dest)?;
        write_new(
            &dest.join(FAILURE_REASON_FILE),
            format!("{reason}\n").as_bytes(),
        )?;
        let _ = set_status(&dest, Status::Failed, Some(reason));
        Ok(shown)
    }

    /// Not restored after all: back under its key, unless a newer image
    /// took the key meanwhile (then this one is stale and removed).
    pub fn put_back(mut self) -> Result<()> {
        self.put_back_inner()
    }

    fn put_back_inner(&mut self) -> Result<()> {
        self.done = true;
        let slot = self.ns_dir.join(&self.key);
        if fs::symlink_metadata(&slot).is_ok() {
            log::info!(
                "{}: a newer image took its key; removing it",
                self.dir.display()
            );
            return fs::remove_dir_all(self.held()).map_err(io_err("remove", &self.dir));
        }
        fs::rename(self.held(), &slot).map_err(|e| self.rename_err(e))?;
        self.lease = None;
        fsync(&self.ns_dir)
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.put_back_inner() {
                log::warn!("putting back {}: {e}", self.dir.display());
            }
        }
    }
}

/// Decodes the stored streamed file `src` (at `from`) of `rec` into a new
/// 0600 file `to`, checking the stored and the decoded bytes as they pass:
/// the copy is private and removed whole on an error.
/// With `unhashed`, only the sizes (and an encrypted file's tags) are
/// checked: the caller checks the copy's digest later (verify_behind.rs).
fn decode_into(
    mut src: fs::File,
    rec: &arch_imgstream::FileRecord,
    crypt: Option<(&arch_imgcrypt::Key, &str)>,
    from: &Path,
    to: &Path,
    unhashed: bool,
) -> Result<()> {
    let dst = create_private(to)?;
    let mut out = CopyWriter::for_size(dst, rec.original_size).map_err(io_err("write", to))?;
    let decoded = match unhashed {
        false => arch_imgstream::decode_verified(rec, &mut src, &mut out, crypt),
        true => arch_imgstream::decode_unhashed(rec, &mut src, &mut out, crypt),
    };
    decoded.map_err(|source| Error::Stream {
        path: from.to_path_buf(),
        source,
    })?;
    out.finish().map_err(io_err("write", to))
}

/// A new file of the private copy: never an existing one, never through a link.
fn create_private(to: &Path) -> Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(crate::fsutil::FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(to)
        .map_err(io_err("create", to))
}

/// Copies `from` to a new 0600 file `to`, returning the size and, when
/// asked, the sha256 of the bytes written (read once: what was hashed is
/// what was copied).
fn copy_file(
    mut src: fs::File,
    size: u64,
    from: &Path,
    to: &Path,
    hash: bool,
) -> Result<(u64, Option<String>)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut dst = CopyWriter::for_size(create_private(to)?, size).map_err(io_err("write", to))?;
    let mut h = hash.then(Sha256::new);
    let mut size = 0u64;
    loop {
        // Each chunk is read, hashed and handed to the writer as is.
        let mut buf = vec![0u8; 1 << 20];
        let n = src.read(&mut buf).map_err(io_err("read", from))?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        if let Some(h) = h.as_mut() {
            h.update(&buf);
        }
        dst.write_owned(buf).map_err(io_err("write", to))?;
        size += n as u64;
    }
    dst.finish().map_err(io_err("write", to))?;
    Ok((size, h.map(|h| hex::encode(h.finalize()))))
}
