//! A committed image read back from disk, with full validation: the manifest
//! must parse, match its directory, and describe the files exactly.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{io_err, Error, Result};
use crate::fsutil::{hash_open, open_file_beneath};
use crate::manifest::Manifest;
use crate::sign::{Trust, MAX_SIGNATURE_BYTES, SIGNATURE};

/// Largest manifest we will read; a real one is a few KiB. Guards memory
/// against a hostile or corrupted file.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// A validated checkpoint image.
#[derive(Debug, Clone)]
pub struct Image {
    dir: PathBuf,
    manifest: Manifest,
}

impl Image {
    /// The image directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// manifest.json and manifest.sig as stored, for carrying the image
    /// elsewhere with its signature (an archive): the signature covers these
    /// exact bytes, not a re-serialisation of [`Image::manifest`].
    pub fn signed_manifest(&self) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        Ok((read_manifest_bytes(&self.dir)?, read_signature(&self.dir)?))
    }

    /// The validated manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// `criu/` inside the image.
    pub fn criu_dir(&self) -> PathBuf {
        self.dir.join(crate::CRIU_DIR)
    }
    /// `rootfs-diff.tar` inside the image.
    pub fn rootfs_diff(&self) -> PathBuf {
        self.dir.join(crate::ROOTFS_DIFF)
    }
    /// `config.json` inside the image.
    pub fn config(&self) -> PathBuf {
        self.dir.join(crate::CONFIG)
    }

    pub(crate) fn new(dir: PathBuf, manifest: Manifest) -> Self {
        Image { dir, manifest }
    }

    /// Read and fully validate the image in `dir`, expected to be `ns`/`key`:
    /// the signature first (as `trust` demands), then the manifest, then
    /// every file against it.
    pub(crate) fn load(dir: PathBuf, ns: &str, key: &str, trust: &Trust) -> Result<Image> {
        let bytes = read_manifest_bytes(&dir)?;
        verify_signature(&dir, &bytes, trust)?;
        let manifest = Manifest::parse(&bytes, &dir.join(crate::MANIFEST))?;
        if manifest.namespace != ns || manifest.key != key {
            return Err(Error::InvalidManifest {
                field: "namespace/key",
                reason: format!(
                    "manifest says {}/{}, directory is {ns}/{key}",
                    manifest.namespace, manifest.key
                ),
            });
        }
        verify_files(&dir, &manifest)?;
        Ok(Image { dir, manifest })
    }
}

/// manifest.sig against the manifest's bytes (see [`Trust::check`]).
pub(crate) fn verify_signature(dir: &Path, manifest: &[u8], trust: &Trust) -> Result<()> {
    trust.check(manifest, read_signature(dir)?.as_deref())
}

/// manifest.sig's bytes, None if the image has none.
fn read_signature(dir: &Path) -> Result<Option<Vec<u8>>> {
    match read_beneath(dir, SIGNATURE, MAX_SIGNATURE_BYTES) {
        Err(Error::MissingFile { .. }) => Ok(None),
        r => Ok(Some(r?.ok_or_else(|| Error::BadSignature {
            reason: format!("{SIGNATURE} is too large"),
        })?)),
    }
}

pub(crate) fn read_manifest_bytes(dir: &Path) -> Result<Vec<u8>> {
    read_beneath(dir, crate::MANIFEST, MAX_MANIFEST_BYTES)?.ok_or_else(|| Error::InvalidManifest {
        field: "manifest.json",
        reason: "too large".into(),
    })
}

/// Up to `max` bytes of the regular file `name` in `dir` (neither `dir`
/// nor `name` a link; a FIFO or device refused); None if larger.
fn read_beneath(dir: &Path, name: &str, max: u64) -> Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    open_file_beneath(dir, name)?
        .take(max + 1)
        .read_to_end(&mut buf)
        .map_err(io_err("read", dir.join(name)))?;
    Ok((buf.len() as u64 <= max).then_some(buf))
}

/// Read manifest.json from `dir`, refusing symlinks, FIFOs, devices and
/// oversized files (no signature check: for inspection and bookkeeping).
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let bytes = read_manifest_bytes(dir)?;
    Manifest::parse(&bytes, &dir.join(crate::MANIFEST))
}

/// Check every listed file (no symlink on the way, size, sha256), then make
/// sure nothing unlisted sits in the directory.
fn verify_files(dir: &Path, m: &Manifest) -> Result<()> {
    for f in &m.files {
        // Opened beneath the image directory: no link on the way, no FIFO.
        let file = open_file_beneath(dir, &f.path)?;
        let (size, sha) = hash_open(file, &dir.join(&f.path))?;
        if size != f.size {
            return Err(Error::SizeMismatch {
                path: f.path.clone(),
                expected: f.size,
                actual: size,
            });
        }
        if sha != f.sha256 {
            return Err(Error::ChecksumMismatch {
                path: f.path.clone(),
                expected: f.sha256.clone(),
                actual: sha,
            });
        }
    }
    let listed: BTreeSet<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    check_unlisted(dir, "", &listed)
}

pub(crate) fn check_unlisted(dir: &Path, prefix: &str, listed: &BTreeSet<&str>) -> Result<()> {
    for ent in fs::read_dir(dir).map_err(io_err("read dir", dir))? {
        let ent = ent.map_err(io_err("read dir", dir))?;
        let name = ent.file_name();
        let name = name.to_string_lossy();
        let rel = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let ft = ent.file_type().map_err(io_err("stat", ent.path()))?;
        if ft.is_dir() {
            check_unlisted(&ent.path(), &rel, listed)?;
        } else if ft.is_file() {
            if rel != crate::MANIFEST && rel != SIGNATURE && !listed.contains(rel.as_str()) {
                return Err(Error::UnlistedFile { path: rel });
            }
        } else {
            return Err(Error::UnexpectedFileType { path: rel });
        }
    }
    Ok(())
}
