//! The host's key for encryption at rest, as the store uses it: written
//! images are encrypted with it, and an encrypted image restores only
//! when its key id is this key's (checked before any file is opened).

use std::path::Path;
use std::sync::Arc;

use arch_imgcrypt::{Key, KeyId};

use crate::error::{Error, Result};

/// The host configuration's `encryption_key_file`, loaded.
#[derive(Clone, Default)]
pub enum HostKey {
    /// No key configured: checkpoints are not encrypted.
    #[default]
    None,
    Loaded(Arc<Key>),
    /// Configured, but the file did not load (why, never key bytes): a
    /// checkpoint fails, an encrypted image does not restore.
    Unloadable(String),
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostKey::None => f.write_str("HostKey::None"),
            HostKey::Loaded(k) => write!(f, "HostKey::Loaded({})", k.id()),
            HostKey::Unloadable(why) => write!(f, "HostKey::Unloadable({why})"),
        }
    }
}

impl HostKey {
    /// Loads the configured key file, if any.
    pub fn load(path: Option<&Path>) -> HostKey {
        match path {
            None => HostKey::None,
            Some(p) => match Key::load(p) {
                Ok(k) => HostKey::Loaded(Arc::new(k)),
                Err(e) => HostKey::Unloadable(e.to_string()),
            },
        }
    }

    /// Whether the host asks for encryption (loaded or not).
    pub fn configured(&self) -> bool {
        !matches!(self, HostKey::None)
    }

    /// The key that opens an image encrypted under `image_key_id`: a clear
    /// error naming both key ids when this host has another one or none.
    pub fn for_image(&self, image_key_id: &str) -> Result<&Key> {
        let no_key = |why: String| Error::NoDecryptionKey {
            image: image_key_id.to_string(),
            why,
        };
        match self {
            HostKey::None => Err(no_key("no encryption_key_file is configured".into())),
            HostKey::Unloadable(why) => Err(no_key(why.clone())),
            HostKey::Loaded(k) => {
                let id: KeyId = image_key_id
                    .parse()
                    .map_err(|_| no_key(format!("bad key id {image_key_id:?}")))?;
                k.check_id(id).map_err(|_| Error::WrongDecryptionKey {
                    image: image_key_id.to_string(),
                    host: k.id().to_string(),
                })?;
                Ok(k)
            }
        }
    }
}
