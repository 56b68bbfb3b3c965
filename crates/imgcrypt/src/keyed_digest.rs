//! The digest an encrypted image records of a file's plaintext.
//!
//! A plain sha256 of the plaintext would let anyone who can read the store
//! confirm a guess of a whole file whose every byte is predictable (the
//! hostname in `utsns-*.img`). This one is HMAC-SHA256 under a key
//! derived from the image key, so only the key's holders can take or check
//! it. The file's identity (namespace, key, image id, name: the same
//! associated data its tags bind) comes first, so equal files of two
//! images, or two names, do not show as equal either.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

use crate::key::Key;

/// The digest's name in a manifest. One name, checked on read.
pub const KEYED_DIGEST_NAME: &str = "hmac-sha256";

/// Domain separation: the digest key is the image key's HMAC of a label
/// no other use of the key shares (the cipher uses the key itself, the
/// key id a sha256 under another label).
const DIGEST_KEY_LABEL: &[u8] = b"arch-imgcrypt plaintext digest key v1\0";

/// A running keyed digest of one file's plaintext. No `Debug`: its state
/// is derived from the key.
#[derive(Clone)]
pub struct KeyedDigest(Hmac<Sha256>);

impl KeyedDigest {
    /// For the file named by `identity` (arch-imgstream's `identity`).
    pub fn new(key: &Key, identity: &str) -> KeyedDigest {
        let mut derive = mac(key.bytes());
        derive.update(DIGEST_KEY_LABEL);
        let mut digest_key: [u8; 32] = derive.finalize().into_bytes().into();
        let mut running = mac(&digest_key);
        digest_key.zeroize();
        running.update(identity.as_bytes());
        running.update(&[0]);
        KeyedDigest(running)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Lower-case hex, as the manifest keeps digests.
    pub fn hex(self) -> String {
        hex::encode(self.0.finalize().into_bytes())
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn digest(key: u8, identity: &str, bytes: &[u8]) -> String {
        let mut d = KeyedDigest::new(&Key::from_bytes([key; 32]), identity);
        d.update(bytes);
        d.hex()
    }

    #[test]
    fn only_the_key_gives_the_digest_and_it_is_not_the_plain_one() {
        let plain = hex::encode(Sha256::digest(b"myhost"));
        let keyed = digest(1, "arch-image/ns/k/id/utsns-1.img", b"myhost");
        assert_eq!(keyed.len(), 64);
        assert_ne!(keyed, plain);
        assert_eq!(
            keyed,
            digest(1, "arch-image/ns/k/id/utsns-1.img", b"myhost")
        );
        assert_ne!(
            keyed,
            digest(2, "arch-image/ns/k/id/utsns-1.img", b"myhost")
        );
    }

    #[test]
    fn equal_bytes_under_two_identities_differ() {
        assert_ne!(
            digest(1, "arch-image/ns/k/a/pages-1.img", b"same"),
            digest(1, "arch-image/ns/k/b/pages-1.img", b"same")
        );
    }

    #[test]
    fn chunks_and_one_update_agree() {
        let key = Key::from_bytes([3; 32]);
        let mut d = KeyedDigest::new(&key, "x");
        d.update(b"ab");
        d.update(b"cd");
        assert_eq!(d.hex(), digest(3, "x", b"abcd"));
    }
}
