//! Manifest signatures. The checkpoint root, shared or not, is not trusted:
//! whoever can write it could plant an image (memory, files) for a workload
//! to run. Each manifest is signed with the fleet key the host's
//! configuration names, in `manifest.sig` beside it; the manifest lists the
//! sha256 of every other file, so the signature covers the whole image.
//!
//! HMAC-SHA256, not Ed25519: every host that restores also checkpoints, so
//! every host needs the signing secret anyway and an asymmetric scheme buys
//! nothing; HMAC needs no new primitives (sha2 is already here), its keys
//! are any 32+ random bytes an operator can make with `head -c 32
//! /dev/urandom`, and verification is constant-time via `hmac`.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{io_err, Error, Result};

/// The signature file beside manifest.json.
pub const SIGNATURE: &str = "manifest.sig";
/// The only algorithm this build writes and accepts.
pub const SIGNATURE_ALG: &str = "hmac-sha256";
/// Fewer bytes than this is not a key.
pub const MIN_KEY_LEN: usize = 32;
const MAX_KEY_LEN: u64 = 4096;
/// A signature file is a few hundred bytes.
pub(crate) const MAX_SIGNATURE_BYTES: u64 = 4096;

type HmacSha256 = Hmac<Sha256>;

/// The fleet key. Its bytes never appear in Debug output or errors.
pub struct SigningKey {
    key: Vec<u8>,
    id: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.id)
    }
}

impl SigningKey {
    /// A key from its bytes (at least [`MIN_KEY_LEN`]).
    pub fn from_bytes(key: &[u8]) -> Result<SigningKey> {
        if key.len() < MIN_KEY_LEN {
            return Err(Error::BadKey(format!(
                "{} bytes; a key needs at least {MIN_KEY_LEN}",
                key.len()
            )));
        }
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(b"arch key id");
        let id = hex::encode(&mac.finalize().into_bytes()[..8]);
        Ok(SigningKey {
            key: key.to_vec(),
            id,
        })
    }

    /// Reads the key file: a regular file (never through a symlink),
    /// owned by root or by this user, readable by nobody else (0600 or
    /// stricter), 32 bytes to 4 KiB.
    pub fn from_file(path: &Path) -> Result<SigningKey> {
        let bad = |reason: String| Error::BadKey(format!("{}: {reason}", path.display()));
        let f = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| bad(format!("cannot open it ({e})")))?;
        let meta = f.metadata().map_err(io_err("stat", path))?;
        if !meta.file_type().is_file() {
            return Err(bad("not a regular file".into()));
        }
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != 0 && meta.uid() != euid {
            return Err(bad(format!("owned by uid {}, not root", meta.uid())));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(bad(format!(
                "mode {:o}: group and others must have no access (chmod 600)",
                meta.mode() & 0o777
            )));
        }
        let mut key = Vec::new();
        f.take(MAX_KEY_LEN + 1)
            .read_to_end(&mut key)
            .map_err(io_err("read", path))?;
        if key.len() as u64 > MAX_KEY_LEN {
            return Err(bad("larger than 4 KiB".into()));
        }
        SigningKey::from_bytes(&key).map_err(|e| bad(e.to_string()))
    }

    /// A short public name of the key (not the key's hash: an HMAC of a
    /// fixed label), recorded with each signature.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self, manifest: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(manifest);
        mac
    }

    /// The signature file's content for `manifest` (manifest.json's bytes).
    pub fn sign(&self, manifest: &[u8]) -> Vec<u8> {
        let sig = SignatureFile {
            alg: SIGNATURE_ALG.into(),
            key_id: self.id.clone(),
            mac: hex::encode(self.mac(manifest).finalize().into_bytes()),
        };
        let mut v = serde_json::to_vec_pretty(&sig).expect("signature serializes");
        v.push(b'\n');
        v
    }

    /// Checks `sig` (manifest.sig's bytes) against `manifest`.
    pub(crate) fn verify(&self, manifest: &[u8], sig: &[u8]) -> Result<()> {
        let bad = |reason: String| Error::BadSignature { reason };
        let sig: SignatureFile =
            serde_json::from_slice(sig).map_err(|e| bad(format!("malformed {SIGNATURE}: {e}")))?;
        if sig.alg != SIGNATURE_ALG {
            return Err(bad(format!(
                "algorithm {:?} is not {SIGNATURE_ALG}",
                sig.alg
            )));
        }
        if sig.key_id != self.id {
            return Err(bad(format!(
                "signed with key {:?}, this host has key {}",
                sig.key_id, self.id
            )));
        }
        let mac = hex::decode(&sig.mac).map_err(|_| bad("mac is not hex".into()))?;
        self.mac(manifest)
            .verify_slice(&mac)
            .map_err(|_| bad("the manifest does not match its signature".into()))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    alg: String,
    key_id: String,
    mac: String,
}

/// What a store demands of the images it reads and does to those it writes.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// Signs every image committed and verifies every image read.
    pub key: Option<Arc<SigningKey>>,
    /// Accept an image without `manifest.sig` (basic mode, by explicit
    /// configuration only). A present but bad signature is always refused.
    pub allow_unsigned: bool,
}

impl Trust {
    /// A manifest's signature (None: there is none) against this policy: a
    /// bad signature is always refused; a missing one unless unsigned images
    /// are allowed.
    pub fn check(&self, manifest: &[u8], sig: Option<&[u8]>) -> Result<()> {
        match (&self.key, sig) {
            (Some(key), Some(sig)) => key.verify(manifest, sig),
            (None, Some(_)) if !self.allow_unsigned => Err(Error::BadSignature {
                reason: "this host has no key to verify it with".into(),
            }),
            (_, None) if !self.allow_unsigned => Err(Error::Unsigned),
            _ => Ok(()),
        }
    }

    /// No key, unsigned images accepted: for tools that only inspect.
    pub fn inspect_only() -> Trust {
        Trust {
            key: None,
            allow_unsigned: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_signature_verifies_only_the_manifest_it_was_made_for() {
        let k = SigningKey::from_bytes(&[7u8; 32]).unwrap();
        let sig = k.sign(b"{\"a\":1}");
        k.verify(b"{\"a\":1}", &sig).unwrap();
        let e = k.verify(b"{\"a\":2}", &sig).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        let other = SigningKey::from_bytes(&[8u8; 32]).unwrap();
        let e = other.verify(b"{\"a\":1}", &sig).unwrap_err();
        assert!(e.to_string().contains("signed with key"), "{e}");
        assert!(other.verify(b"x", b"not json").is_err());
        assert!(!format!("{k:?}").contains("7, 7"), "Debug hides the key");
    }

    #[test]
    fn key_files_must_be_private_regular_and_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("fleet.key");
        std::fs::write(&good, [1u8; 32]).unwrap();
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o600)).unwrap();
        SigningKey::from_file(&good).unwrap();
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = SigningKey::from_file(&good).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o600)).unwrap();
        let short = dir.path().join("short.key");
        std::fs::write(&short, [1u8; 8]).unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(SigningKey::from_file(&short).is_err());
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert!(
            SigningKey::from_file(&link).is_err(),
            "never through a link"
        );
        let fifo = dir.path().join("fifo.key");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(
            SigningKey::from_file(&fifo).is_err(),
            "a FIFO does not hang"
        );
    }
}
