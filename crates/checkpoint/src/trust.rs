//! The host's trust in its checkpoint root: the key that signs and
//! verifies images, and whether unsigned ones may be restored.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arch_image::{SigningKey, Trust};

use crate::config::{ArchConfig, Mode, DEFAULT_HOST_KEY};
use crate::error::{CheckpointError, Result};

fn key_err(path: &Path, reason: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Config {
        origin: path.display().to_string(),
        reason: format!("signing key: {reason}"),
    }
}

/// The trust `cfg` describes. In basic mode without a named key, the
/// host's own key at `host_key` (normally [`DEFAULT_HOST_KEY`]) is read,
/// or made if it does not exist yet; network-fs needs the named fleet key.
pub fn load_trust(cfg: &ArchConfig, host_key: &Path) -> Result<Trust> {
    let path: PathBuf = match (&cfg.signing_key_file, cfg.mode) {
        (Some(p), _) => p.clone(),
        (None, Mode::Basic) => {
            make_host_key(host_key)?;
            host_key.to_path_buf()
        }
        (None, Mode::NetworkFs) => {
            return Err(key_err(
                Path::new(DEFAULT_HOST_KEY),
                "network-fs mode needs signing_key_file",
            ))
        }
    };
    let key = SigningKey::from_file(&path).map_err(|e| key_err(&path, e))?;
    log::debug!("signing images with key {} ({})", key.id(), path.display());
    Ok(Trust {
        key: Some(Arc::new(key)),
        allow_unsigned: cfg.allow_unsigned && cfg.mode == Mode::Basic,
    })
}

/// 32 random bytes, 0600, published with link() so that shims racing to
/// make it all end up with the one that won, complete.
fn make_host_key(path: &Path) -> Result<()> {
    if fs::symlink_metadata(path).is_ok() {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| key_err(path, e))?;
    let mut key = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key))
        .map_err(|e| key_err(path, format!("reading /dev/urandom: {e}")))?;
    let tmp = dir.join(format!(".host.key.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(&key)?;
        f.sync_all()?;
        match fs::hard_link(&tmp, path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    };
    let res = write();
    let _ = fs::remove_file(&tmp);
    res.map_err(|e| key_err(path, e))?;
    log::info!("made this host's image signing key {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_mode_makes_one_host_key_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let host_key = dir.path().join("sub/host.key");
        let cfg = ArchConfig::default();
        let a = load_trust(&cfg, &host_key).unwrap();
        let b = load_trust(&cfg, &host_key).unwrap();
        assert_eq!(a.key.unwrap().id(), b.key.unwrap().id());
        assert!(!a.allow_unsigned);
        let mode = fs::metadata(&host_key).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn a_named_key_must_exist_and_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ArchConfig {
            mode: Mode::NetworkFs,
            signing_key_file: Some(dir.path().join("missing.key")),
            ..ArchConfig::default()
        };
        let e = load_trust(&cfg, &dir.path().join("h")).unwrap_err();
        assert!(e.to_string().contains("missing.key"), "{e}");
        assert!(
            !dir.path().join("h").exists(),
            "network-fs never makes a key"
        );
    }
}
