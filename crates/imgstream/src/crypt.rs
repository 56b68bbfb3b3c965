//! Encryption at rest in the pipeline: CRIU's bytes → codec → cipher →
//! store, so the stored sha256 covers the ciphertext; the read side
//! undoes it in the other order. The cipher is arch-imgcrypt's.
//!
//! Each file is sealed with an identity (associated data) that binds it to
//! its image, not only to its name: [`identity`] of the image's namespace,
//! key and image id (random, made at capture start) and CRIU's file name.
//! A file of another image, even of the same key and name, fails its tags.

use std::io::{self, Read, Write};
use std::sync::Arc;

use arch_imgcrypt::{DecryptReader, EncryptWriter, Key};
use serde::{Deserialize, Serialize};

/// The suffix of an encrypted stored file, after the codec's.
pub const SUFFIX: &str = ".enc";

/// How a streamed file is encrypted, as its record and the manifest say.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    /// [`arch_imgcrypt::CIPHER_NAME`].
    pub cipher: String,
    /// The key's id (16 hex digits), never the key.
    pub key_id: String,
    /// The image's id in every file's identity (32 hex digits).
    pub image_id: String,
    /// How each file's `original_sha256` was taken:
    /// [`arch_imgcrypt::KEYED_DIGEST_NAME`] since format 5; absent before,
    /// a plain sha256 (which lets a reader of the store confirm a guess of
    /// a whole file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// A malformed [`Encryption`] record.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadEncryption {
    #[error("unknown cipher {0:?}")]
    Cipher(String),
    #[error("bad key id {0:?}")]
    KeyId(String),
    #[error("bad image id {0:?}")]
    ImageId(String),
    #[error("unknown original digest {0:?}")]
    Digest(String),
}

impl Encryption {
    /// Whether the fields are well formed: the known cipher, a key id, an
    /// image id of 32 lower-case hex digits.
    pub fn check(&self) -> Result<(), BadEncryption> {
        if self.cipher != arch_imgcrypt::CIPHER_NAME {
            return Err(BadEncryption::Cipher(self.cipher.clone()));
        }
        let hex =
            |s: &str, n| s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !hex(&self.key_id, 2 * arch_imgcrypt::KEY_ID_LEN) {
            return Err(BadEncryption::KeyId(self.key_id.clone()));
        }
        if !hex(&self.image_id, 32) {
            return Err(BadEncryption::ImageId(self.image_id.clone()));
        }
        match &self.digest {
            Some(d) if d != arch_imgcrypt::KEYED_DIGEST_NAME => {
                Err(BadEncryption::Digest(d.clone()))
            }
            _ => Ok(()),
        }
    }

    /// Whether the files' original digests are keyed.
    pub fn keyed_digest(&self) -> bool {
        self.digest.is_some()
    }
}

/// The associated data of file `name` of the image `image_id` under
/// `namespace`/`key`. One definition for the writer and the reader.
pub fn identity(namespace: &str, key: &str, image_id: &str, name: &str) -> String {
    format!("arch-image/{namespace}/{key}/{image_id}/{name}")
}

/// A fresh image id: 16 random bytes as hex, from getrandom(2).
pub fn new_image_id() -> io::Result<String> {
    let mut b = [0u8; 16];
    let mut filled = 0;
    while filled < b.len() {
        // SAFETY: writes at most the rest of `b`.
        let n = unsafe { libc::getrandom(b[filled..].as_mut_ptr().cast(), b.len() - filled, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(hex::encode(b))
}

/// What a capture encrypts with: the key and the image's identity parts.
#[derive(Clone, Debug)]
pub struct Crypt {
    pub key: Arc<Key>,
    pub namespace: String,
    pub image_key: String,
    pub image_id: String,
}

impl Crypt {
    pub fn identity(&self, name: &str) -> String {
        identity(&self.namespace, &self.image_key, &self.image_id, name)
    }

    pub fn record(&self) -> Encryption {
        Encryption {
            cipher: arch_imgcrypt::CIPHER_NAME.to_string(),
            key_id: self.key.id().to_string(),
            image_id: self.image_id.clone(),
            digest: Some(arch_imgcrypt::KEYED_DIGEST_NAME.to_string()),
        }
    }
}

/// The write side's last stage: the stored bytes, sealed or not.
pub(crate) enum Sealed<W: Write> {
    Plain(W),
    Encrypted(EncryptWriter<W>),
}

impl<W: Write> Sealed<W> {
    pub fn new(out: W, crypt: Option<(&Key, &str)>) -> io::Result<Self> {
        Ok(match crypt {
            None => Sealed::Plain(out),
            Some((key, id)) => Sealed::Encrypted(EncryptWriter::new(out, key, id.as_bytes())?),
        })
    }

    /// Seals the final chunk and gives the writer back.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Sealed::Plain(w) => Ok(w),
            Sealed::Encrypted(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Sealed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sealed::Plain(w) => w.write(buf),
            Sealed::Encrypted(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealed::Plain(w) => w.flush(),
            Sealed::Encrypted(e) => e.flush(),
        }
    }
}

/// The read side's first stage: the stored bytes, opened (tags checked).
pub(crate) enum Opened<R: Read> {
    Plain(R),
    Decrypted(DecryptReader<R>),
}

impl<R: Read> Opened<R> {
    pub fn new(input: R, crypt: Option<(&Key, &str)>) -> io::Result<Self> {
        Ok(match crypt {
            None => Opened::Plain(input),
            Some((key, id)) => Opened::Decrypted(DecryptReader::new(input, key, id.as_bytes())?),
        })
    }

    /// Reads what is left (an encrypted file: up to its authenticated
    /// final chunk, so a cut or changed tail fails here), then gives the
    /// stored reader back.
    pub fn drain(mut self) -> io::Result<R> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(match self {
            Opened::Plain(r) => r,
            Opened::Decrypted(d) => d.into_inner(),
        })
    }
}

impl<R: Read> Read for Opened<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Opened::Plain(r) => r.read(buf),
            Opened::Decrypted(d) => d.read(buf),
        }
    }
}
