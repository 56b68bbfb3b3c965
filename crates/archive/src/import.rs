//! One archive stream into the image store, checked entry by entry.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path};

use arch_image::{CommitInfo, FileEntry, Image, ImageStore, Manifest, CRIU_DIR};
use sha2::{Digest, Sha256};

use crate::error::{io, ArchiveError, Result};
use crate::foreign::{import_foreign, ForeignFacts};
use crate::layout::{
    image_path, ARCH_MANIFEST, ARCH_SIGNATURE, CHECKPOINT_DIR, CONFIG_DUMP, DELETED_FILES,
};

/// Bounds on what an import accepts, so a hostile archive cannot fill the
/// disk or memory before it is refused.
#[derive(Debug, Clone, Copy)]
pub struct ImportLimits {
    /// The whole image (sum of its files).
    pub max_total: u64,
    /// The manifest, config.dump and deleted.files, which are read whole.
    pub max_metadata: u64,
}

impl Default for ImportLimits {
    fn default() -> Self {
        Self {
            max_total: 1 << 40,
            max_metadata: 16 << 20,
        }
    }
}

/// Where the image lands; None keeps the archive's namespace or key.
#[derive(Debug, Default, Clone)]
pub struct ImportTarget {
    pub namespace: Option<String>,
    pub key: Option<String>,
    /// The operator vouches for the archive (`archctl import
    /// --allow-unsigned`): its signature is not checked - it may be missing or
    /// made with another host's key. Every file is still checked against the
    /// archive's manifest, and the image is signed with this host's key.
    pub skip_signature: bool,
}

/// Imports the archive read from `input` (zstd-compressed, as `archctl
/// export` writes it, or a plain tar, as the kubelet does) into `store`;
/// nothing lands unless every entry matched the archive's manifest. An
/// archive without ARCH's manifest (CRI-O's layout) imports only with
/// `foreign` facts, `skip_signature` and both a namespace and a key.
pub fn import(
    store: &ImageStore,
    input: impl Read,
    target: &ImportTarget,
    limits: &ImportLimits,
    foreign: Option<&ForeignFacts<'_>>,
) -> Result<Image> {
    let mut archive = tar::Archive::new(decompressed(input)?);
    let mut entries = archive.entries().map_err(corrupt)?.peekable();
    let (manifest, manifest_bytes) = {
        let first = entries
            .peek()
            .ok_or_else(|| ArchiveError::Manifest("the archive is empty".into()))?;
        let name = match first {
            Ok(e) => entry_name(e)?,
            Err(e) => return Err(ArchiveError::Corrupt(e.to_string())),
        };
        if name != ARCH_MANIFEST {
            return match (foreign, &target.namespace, &target.key) {
                (Some(facts), Some(ns), Some(key)) if target.skip_signature => {
                    import_foreign(store, entries, (ns, key), limits, facts)
                }
                _ => Err(ArchiveError::Manifest(format!(
                    "the first entry is {name:?}, not {ARCH_MANIFEST}; a CRI-O or kubelet checkpoint archive imports with --allow-unsigned --namespace NS --key KEY"
                ))),
            };
        }
        let mut first = entries.next().expect("peeked").map_err(corrupt)?;
        let bytes = read_small(&mut first, &name, limits)?;
        let manifest = Manifest::parse(&bytes, Path::new(ARCH_MANIFEST))
            .map_err(|e| ArchiveError::Manifest(e.to_string()))?;
        (manifest, bytes)
    };
    // The signature, if any, is second: checked before anything is written.
    let signature = match entries.peek() {
        Some(Ok(e)) if entry_name(e).is_ok_and(|n| n == ARCH_SIGNATURE) => {
            let mut e = entries.next().expect("peeked").map_err(corrupt)?;
            Some(read_small(&mut e, ARCH_SIGNATURE, limits)?)
        }
        _ => None,
    };
    if !target.skip_signature {
        store
            .trust()
            .check(&manifest_bytes, signature.as_deref())
            .map_err(ArchiveError::Signature)?;
    }
    if manifest.total_size > limits.max_total {
        return Err(ArchiveError::TooLarge(format!(
            "an image of {} bytes",
            manifest.total_size
        )));
    }
    let ns = target.namespace.as_deref().unwrap_or(&manifest.namespace);
    let key = target.key.as_deref().unwrap_or(&manifest.key);
    if manifest.encryption().is_some() && (ns != manifest.namespace || key != manifest.key) {
        // Each file's authenticated identity names its namespace and key:
        // under another name, no file would pass its tags at restore.
        return Err(refused(
            ARCH_MANIFEST,
            format!(
                "an encrypted image keeps its name {}/{} (it is in every file's authenticated identity); import it without --namespace/--key",
                manifest.namespace, manifest.key
            ),
        ));
    }
    refuse_existing(store, ns, key)?;
    let mut staging = store.begin(ns, key)?;
    let expected: BTreeMap<&str, &FileEntry> = manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), f))
        .collect();
    let mut seen = BTreeSet::new();
    for entry in entries {
        let mut entry = entry.map_err(corrupt)?;
        let Some(name) = file_name(&entry)? else {
            continue;
        };
        if name == CONFIG_DUMP {
            read_small(&mut entry, &name, limits)?;
            continue;
        }
        if name == DELETED_FILES {
            let list = read_small(&mut entry, &name, limits)?;
            let deleted: Vec<String> = serde_json::from_slice(&list)
                .map_err(|e| refused(&name, format!("not a JSON list: {e}")))?;
            if !deleted.is_empty() {
                return Err(refused(&name, "ARCH images carry deletions in rootfs-diff.tar; a list of deleted files is not supported".into()));
            }
            continue;
        }
        let path = image_path(&name)
            .ok_or_else(|| refused(&name, "not a file of a checkpoint archive".into()))?;
        let file = expected
            .get(path.as_str())
            .ok_or_else(|| ArchiveError::Mismatch {
                entry: name.clone(),
                reason: "not listed in the manifest".into(),
            })?;
        if !seen.insert(path.clone()) {
            return Err(refused(&name, "a second entry with this name".into()));
        }
        let size = entry.header().size().map_err(corrupt)?;
        if size != file.size {
            return Err(ArchiveError::Mismatch {
                entry: name,
                reason: format!("{size} bytes, the manifest says {}", file.size),
            });
        }
        let digest = write_checked(&mut entry, staging.path(), &path, size)?;
        if digest != file.sha256 {
            return Err(ArchiveError::Mismatch {
                entry: name,
                reason: "sha256 differs".into(),
            });
        }
    }
    if let Some(missing) = expected.keys().find(|p| !seen.contains(**p)) {
        return Err(ArchiveError::Mismatch {
            entry: (*missing).to_string(),
            reason: "listed in the manifest but not in the archive (truncated?)".into(),
        });
    }
    // Streamed files keep their codec and original digests (checked as
    // they were written above, not read again by the commit).
    let streamed: Vec<_> = manifest.files.iter().filter_map(|f| f.record()).collect();
    staging.add_streamed(&streamed);
    let info = CommitInfo {
        container_id: manifest.container_id.clone(),
        durations_ms: manifest.durations_ms.clone(),
        criu_version: manifest.criu_version.clone(),
        kernel: manifest.kernel.clone(),
        arch: manifest.arch.clone(),
        cgroup_version: manifest.cgroup_version,
        profile: manifest.profile.clone(),
    };
    Ok(staging.commit(info)?)
}

/// zstd (what `archctl export` and Podman write) or a plain tar (the
/// kubelet's checkpoint archives), told apart by zstd's magic number.
fn decompressed<'a>(input: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
    let mut input = std::io::BufReader::new(input);
    let head = std::io::BufRead::fill_buf(&mut input).map_err(corrupt)?;
    if head.len() >= 4 && head[..4] == ZSTD_MAGIC {
        Ok(Box::new(
            zstd::Decoder::with_buffer(input).map_err(corrupt)?,
        ))
    } else {
        Ok(Box::new(input))
    }
}

/// An import never replaces an image: the operator removes it first.
pub(crate) fn refuse_existing(store: &ImageStore, ns: &str, key: &str) -> Result<()> {
    match store.open(ns, key) {
        Ok(_) => Err(refused(
            &format!("{ns}/{key}"),
            "an image with this name exists; remove it first (archctl rm)".into(),
        )),
        Err(_) => Ok(()),
    }
}

pub(crate) fn corrupt(e: std::io::Error) -> ArchiveError {
    ArchiveError::Corrupt(e.to_string())
}

pub(crate) fn refused(entry: &str, reason: String) -> ArchiveError {
    ArchiveError::Entry {
        entry: entry.to_string(),
        reason,
    }
}

/// A regular file's name; None for the `checkpoint/` directory's own
/// entry; any other kind (links, devices, other directories) is refused.
pub(crate) fn file_name<R: Read>(entry: &tar::Entry<'_, R>) -> Result<Option<String>> {
    let name = entry_name(entry)?;
    let kind = entry.header().entry_type();
    if kind.is_dir() && name.trim_end_matches('/') == CHECKPOINT_DIR {
        return Ok(None);
    }
    if !kind.is_file() {
        return Err(refused(
            &name,
            format!("a {kind:?} entry; only regular files are allowed"),
        ));
    }
    Ok(Some(name))
}

/// The entry's name, if it is a plain relative path (no `..`, no root).
pub(crate) fn entry_name<R: Read>(entry: &tar::Entry<'_, R>) -> Result<String> {
    let raw = entry.path_bytes();
    let name = String::from_utf8_lossy(&raw).into_owned();
    let path = Path::new(&name);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain || name.is_empty() || raw.contains(&0) {
        return Err(refused(&name, "not a plain relative path".into()));
    }
    Ok(name)
}

pub(crate) fn read_small<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    name: &str,
    limits: &ImportLimits,
) -> Result<Vec<u8>> {
    let size = entry.header().size().map_err(corrupt)?;
    if size > limits.max_metadata {
        return Err(ArchiveError::TooLarge(format!("{name} ({size} bytes)")));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry
        .take(limits.max_metadata + 1)
        .read_to_end(&mut bytes)
        .map_err(corrupt)?;
    Ok(bytes)
}

/// Writes an entry to `dir/rel` (a new file; `criu/` made as needed) and
/// returns the sha256 of what was written.
pub(crate) fn write_checked<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    dir: &Path,
    rel: &str,
    size: u64,
) -> Result<String> {
    if let Some(parent) = Path::new(rel)
        .parent()
        .filter(|p| *p == Path::new(CRIU_DIR) || p.to_str().is_some_and(arch_image::is_predump_dir))
    {
        let parent = dir.join(parent);
        if !parent.exists() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
    }
    let path = dir.join(rel);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        // The staging directory is ours, but never follow a link.
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(io(format!("creating {}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = entry.read(&mut buf[..want]).map_err(corrupt)?;
        if n == 0 {
            return Err(ArchiveError::Corrupt(format!(
                "{rel} ends after {} of {size} bytes",
                size - left
            )));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(io(format!("writing {}", path.display())))?;
        left -= n as u64;
    }
    Ok(hex::encode(hasher.finalize()))
}
