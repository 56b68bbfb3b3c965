//! One file of an image as it was written, for an operator (`archctl
//! cat`): CRIU's log or an image to feed `crit`, the spec, the rootfs diff.
//! A streamed file is decoded (decrypted with the host's key when sealed)
//! and a plain one copied; either way its digest is checked against the
//! manifest as the bytes pass, and a mismatch is an error once they have.
//! The manifest's signature is not checked here (`archctl validate` does).

use std::io::{self, Write};
use std::path::Path;

use arch_imgstream::OriginalDigest;

use crate::error::{Error, Result};
use crate::{FileEntry, HostKey, Manifest};

/// The name an entry is asked for by: its path, or for a streamed file the
/// path it decodes to (`criu/dump.log`, not `criu/dump.log.zst.enc`).
fn original_path(entry: &FileEntry) -> String {
    match (entry.record(), entry.path.rsplit_once('/')) {
        (Some(rec), Some((dir, _))) => format!("{dir}/{}", rec.name),
        (Some(rec), None) => rec.name,
        (None, _) => entry.path.clone(),
    }
}

/// Writes image file `name` (as [`original_path`] names it) of the image in
/// `dir`, described by `manifest`, to `out`; returns its size.
pub fn copy_out(
    dir: &Path,
    manifest: &Manifest,
    name: &str,
    key: &HostKey,
    out: &mut impl Write,
) -> Result<u64> {
    let entry = manifest
        .files
        .iter()
        .find(|f| original_path(f) == name || f.path == name)
        .ok_or_else(|| Error::MissingFile {
            path: name.to_string(),
        })?;
    let mut src = crate::fsutil::open_file_beneath(dir, &entry.path)?;
    let mut hashed = Hashed {
        out,
        digest: OriginalDigest::default(),
        size: 0,
    };
    let write_err = |e: io::Error| Error::Io {
        op: "write",
        path: name.into(),
        source: e,
    };
    let expected = match entry.record() {
        None => {
            io::copy(&mut src, &mut hashed).map_err(write_err)?;
            (entry.size, entry.sha256.clone())
        }
        Some(rec) => {
            let identity = match manifest.encryption() {
                Some(e) => Some((
                    key.for_image(&e.key_id)?,
                    manifest.file_identity(&e.image_id, &rec.name),
                )),
                None => None,
            };
            let crypt = identity.as_ref().map(|(k, id)| (*k, id.as_str()));
            hashed.digest = OriginalDigest::for_record(&rec, crypt);
            arch_imgstream::decode_unhashed(&rec, &mut src, &mut hashed, crypt).map_err(
                |source| Error::Stream {
                    path: dir.join(&entry.path),
                    source,
                },
            )?;
            (rec.original_size, rec.original_sha256.clone())
        }
    };
    hashed.out.flush().map_err(write_err)?;
    let actual = hashed.digest.hex();
    if hashed.size != expected.0 {
        return Err(Error::SizeMismatch {
            path: name.to_string(),
            expected: expected.0,
            actual: hashed.size,
        });
    }
    if actual != expected.1 {
        return Err(Error::ChecksumMismatch {
            path: name.to_string(),
            expected: expected.1,
            actual,
        });
    }
    Ok(hashed.size)
}

/// Hashes and counts what passes to `out`.
struct Hashed<'a, W: Write> {
    out: &'a mut W,
    digest: OriginalDigest,
    size: u64,
}

impl<W: Write> Write for Hashed<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.digest.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
