//! The host's image key: loaded from a root-only key file, wiped on drop,
//! never printed, and named by a key id that images record.
//!
//! Key file format: 64 hex characters (either case) and at most one
//! trailing `\n`, nothing else. Text, not 32 raw bytes, because it is made
//! and checked with ordinary tools (`openssl rand -hex 32`, `cat`) and
//! passes unchanged through secret stores and config management that
//! expect text; a raw file can gain or lose a byte in such hands without
//! anyone seeing it.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::error::{Error, KeyFileProblem};

pub const KEY_LEN: usize = 32;
/// Hex of the key plus one optional newline.
const HEX_LEN: usize = 2 * KEY_LEN;
/// Domain separation: the key id is a hash of the key under a label no
/// other use of the key shares, so it reveals nothing usable about it.
const KEY_ID_LABEL: &[u8] = b"arch-imgcrypt key id v1\0";

/// A 256-bit XChaCha20-Poly1305 key. Zeroized on drop; `Debug` shows only
/// the key id.
pub struct Key([u8; KEY_LEN]);

impl Key {
    /// For tests and callers that hold key material already.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        Key(bytes)
    }

    /// Loads the key file at `path`: a regular file (not followed if it is
    /// a symlink), owned by root, mode 0600 or stricter.
    pub fn load(path: &Path) -> Result<Key, Error> {
        load_owned_by(path, 0)
    }

    pub fn id(&self) -> KeyId {
        let mut h = Sha256::new();
        h.update(KEY_ID_LABEL);
        h.update(self.0);
        let digest = h.finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        KeyId(id)
    }

    /// The check a caller makes with the key id from an image's manifest,
    /// before it opens any encrypted file.
    pub fn check_id(&self, image: KeyId) -> Result<(), Error> {
        let host = self.id();
        if host == image {
            Ok(())
        } else {
            Err(Error::WrongKey { image, host })
        }
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key {{ id: {}, .. }}", self.id())
    }
}

pub const KEY_ID_LEN: usize = 8;

/// The first 8 bytes of sha256(label || key), shown as 16 hex characters.
/// A label, not a secret and not an integrity check: only the tags are.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut id = [0u8; KEY_ID_LEN];
        hex::decode_to_slice(s, &mut id)?;
        Ok(KeyId(id))
    }
}

/// `load` with the owner as a parameter, so tests run as any user.
pub(crate) fn load_owned_by(path: &Path, owner: u32) -> Result<Key, Error> {
    let fail = |reason| Error::KeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = open_no_follow(path).map_err(&fail)?;
    // fstat of the open file, not stat of the path: nothing can swap the
    // file between the check and the read.
    let meta = file.metadata().map_err(|e| fail(KeyFileProblem::Io(e)))?;
    check_metadata(meta.file_type().is_file(), meta.uid(), meta.mode(), owner).map_err(&fail)?;
    read_key(&mut file).map_err(fail)
}

fn open_no_follow(path: &Path) -> Result<File, KeyFileProblem> {
    File::options()
        .read(true)
        // O_NONBLOCK: a FIFO put at the path must not hang the open (it
        // is then refused as not a regular file).
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                KeyFileProblem::Symlink
            } else {
                KeyFileProblem::Io(e)
            }
        })
}

/// The key file's metadata rules, apart from the file system so they are
/// unit tested for any owner and mode.
pub(crate) fn check_metadata(
    regular: bool,
    uid: u32,
    mode: u32,
    owner: u32,
) -> Result<(), KeyFileProblem> {
    if !regular {
        return Err(KeyFileProblem::NotRegular);
    }
    if uid != owner {
        return Err(KeyFileProblem::NotRootOwned { uid });
    }
    // Only owner read and write may be set: no group/other bits, and no
    // execute, setuid, setgid or sticky bit either.
    if mode & 0o7777 & !0o600 != 0 {
        return Err(KeyFileProblem::TooOpen {
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

fn read_key(file: &mut impl Read) -> Result<Key, KeyFileProblem> {
    // One byte more than the longest valid file, to see a longer one.
    let mut buf = [0u8; HEX_LEN + 2];
    let result = read_up_to(file, &mut buf).and_then(|n| parse_key(&buf[..n]));
    buf.zeroize();
    result
}

fn read_up_to(file: &mut impl Read, buf: &mut [u8]) -> Result<usize, KeyFileProblem> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(m) => n += m,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(KeyFileProblem::Io(e)),
        }
    }
    Ok(n)
}

fn parse_key(content: &[u8]) -> Result<Key, KeyFileProblem> {
    let hex_part = match content {
        [rest @ .., b'\n'] => rest,
        all => all,
    };
    if hex_part.len() != HEX_LEN {
        return Err(KeyFileProblem::BadLength { len: content.len() });
    }
    // Decoded straight into the Key, so no stray copy outlives it.
    let mut key = Key([0u8; KEY_LEN]);
    hex::decode_to_slice(hex_part, &mut key.0).map_err(|_| KeyFileProblem::NotHex)?;
    Ok(key)
}

#[cfg(test)]
#[path = "key_tests.rs"]
mod tests;
