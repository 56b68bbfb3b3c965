//! manifest.json: the versioned description of a checkpoint image.
//!
//! Parsing is two-step on purpose: we first read only `format_version` from
//! an untyped JSON value, so a manifest from a future ARCH yields "version N
//! is not supported" instead of a confusing unknown-field error.

use std::collections::BTreeMap;
use std::path::{Component, Path};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The newest manifest format this build reads and writes. Version 2
/// added the security profile (and scope names with a Kubernetes
/// namespace); a version 1 image has no profile to check, so it is
/// refused. Version 3 added streamed files ([`Streamed`]); a version 2
/// image (every file as CRIU wrote it) still reads and restores. Version 4
/// lets the image's own files ([`crate::SEALED_FILES`]) be streamed too,
/// at the top level: an encrypted checkpoint seals them. Version 5 keys
/// an encrypted image's original digests (`Encryption::digest`). Each
/// image is written with the oldest version that describes it
/// ([`version_for`]).
pub const FORMAT_VERSION: u32 = 5;

/// The oldest version that describes `files`: 5 with keyed digests, 4 with
/// a sealed file at the top level, else 3. An image without them stays
/// readable by an older ARCH (another host mid rolling upgrade); one with
/// them is refused there by its version, not by a field or file it does
/// not expect.
pub fn version_for(files: &[FileEntry]) -> u32 {
    let streamed = || {
        files
            .iter()
            .filter_map(|f| f.stream.as_ref().map(|s| (f, s)))
    };
    let keyed = streamed().any(|(_, s)| {
        s.encryption
            .as_ref()
            .is_some_and(arch_imgstream::Encryption::keyed_digest)
    });
    let sealed_at_top = streamed().any(|(f, _)| !f.path.contains('/'));
    match (keyed, sealed_at_top) {
        (true, _) => FORMAT_VERSION,
        (false, true) => 4,
        (false, false) => 3,
    }
}

/// The oldest manifest format this build reads.
pub const OLDEST_READABLE_VERSION: u32 = 2;

/// Lifecycle state recorded in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fully written and renamed into place; restorable.
    Committed,
    /// Restore failed; kept aside for inspection.
    Failed,
    /// Consumed by a successful restore (retired).
    Restored,
}

/// Host cgroup layout at checkpoint time (restore needs the same one).
pub use arch_host::CgroupVersion;

/// Wall-clock time as unix seconds + nanoseconds (no time-zone ambiguity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timestamp {
    pub secs: u64,
    pub nanos: u32,
}

impl Timestamp {
    /// The current time; a clock before 1970 is reported as the epoch.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            secs: d.as_secs(),
            nanos: d.subsec_nanos(),
        }
    }
}

/// One file of the image, relative to the image directory. `size` and
/// `sha256` are those of the bytes on disk, so every check of the image
/// as stored (verification, export, import) reads them the same way
/// whether the file was streamed or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative path with `/` separators, e.g. `criu/pages-1.img`,
    /// `criu/pages-1.img.zst` for a compressed streamed file, or
    /// `rootfs-diff.tar.zst.enc` for a sealed one (version 4).
    pub path: String,
    pub size: u64,
    /// Lower-case hex sha256 of the content.
    pub sha256: String,
    /// Set for a CRIU image the shim's streamer stored (version 3), or one
    /// of the image's own files sealed the same way (version 4): how it is
    /// encoded and what the original bytes were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<Streamed>,
}

/// How a streamed CRIU image is stored. Its name for CRIU is not repeated:
/// it is the path's file name less the codec's suffix (one source of truth).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Streamed {
    /// `none` or `zstd`.
    pub codec: String,
    /// The zstd level (none for `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<i32>,
    /// Size of the bytes CRIU wrote.
    pub original_size: u64,
    /// Lower-case hex sha256 of the bytes CRIU wrote.
    pub original_sha256: String,
    /// Set when the stored bytes are encrypted after the codec (the path
    /// then ends in `.enc`): cipher, key id, image id. Every streamed file
    /// of an image has the same one, or none has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<arch_imgstream::Encryption>,
}

impl FileEntry {
    /// The entry of a file a streamer captured into the image's `criu/`,
    /// or of one of the image's own files sealed at its top level.
    pub fn streamed(rec: &arch_imgstream::FileRecord) -> FileEntry {
        let path = match crate::SEALED_FILES.contains(&rec.name.as_str()) {
            true => rec.stored_name.clone(),
            false => format!("{}/{}", crate::CRIU_DIR, rec.stored_name),
        };
        FileEntry {
            path,
            size: rec.stored_size,
            sha256: rec.stored_sha256.clone(),
            stream: Some(Streamed {
                codec: rec.codec.clone(),
                level: rec.level,
                original_size: rec.original_size,
                original_sha256: rec.original_sha256.clone(),
                encryption: rec.encryption.clone(),
            }),
        }
    }

    /// The streamer's record of a streamed entry: what a restore decodes
    /// and checks. None for a file stored as written, or one whose name
    /// does not fit its codec or its place (refused when the manifest is
    /// read): a sealed file at the top level, CRIU's images under `criu/`.
    pub fn record(&self) -> Option<arch_imgstream::FileRecord> {
        let s = self.stream.as_ref()?;
        let under_criu = self
            .path
            .strip_prefix(crate::CRIU_DIR)
            .and_then(|p| p.strip_prefix('/'));
        let (stored_name, top_level) = match under_criu {
            Some(name) => (name, false),
            None if !self.path.contains('/') => (self.path.as_str(), true),
            None => return None,
        };
        let codec = arch_imgstream::Codec::from_record(&s.codec, s.level)?;
        let encoded = match s.encryption {
            Some(_) => stored_name.strip_suffix(arch_imgstream::ENCRYPTED_SUFFIX)?,
            None => stored_name,
        };
        let name = codec.original_name(encoded)?;
        if top_level != crate::SEALED_FILES.contains(&name) {
            return None;
        }
        Some(arch_imgstream::FileRecord {
            name: name.to_string(),
            stored_name: stored_name.to_string(),
            original_size: s.original_size,
            original_sha256: s.original_sha256.clone(),
            stored_size: self.size,
            stored_sha256: self.sha256.clone(),
            codec: s.codec.clone(),
            level: s.level,
            encryption: s.encryption.clone(),
        })
    }
}

/// The security profile of the checkpointed container, as digests: one per
/// field (so a mismatch can name the field) and one over all of them.
/// arch-checkpoint's `profile` module computes it from the OCI spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileDigest {
    /// Lower-case hex sha256 over every field's name and digest.
    pub digest: String,
    /// Field name (`image`, `user`, `capabilities`, ...) → lower-case hex
    /// sha256 of its canonical form.
    pub fields: BTreeMap<String, String>,
}

/// Facts about the checkpointing host and container, supplied by the caller
/// at commit time; the store fills in identity, files, sizes and times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    pub container_id: String,
    /// Phase name ("dump", "rootfs", ...) → milliseconds.
    pub durations_ms: BTreeMap<String, u64>,
    pub criu_version: String,
    pub kernel: String,
    pub arch: String,
    pub cgroup_version: CgroupVersion,
    /// The container's security profile; a restore needs the same one.
    pub profile: ProfileDigest,
}

/// The parsed manifest.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub namespace: String,
    pub key: String,
    pub container_id: String,
    pub created_at: Timestamp,
    pub durations_ms: BTreeMap<String, u64>,
    /// Sum of all listed file sizes.
    pub total_size: u64,
    pub files: Vec<FileEntry>,
    pub criu_version: String,
    pub kernel: String,
    pub arch: String,
    pub cgroup_version: CgroupVersion,
    /// The checkpointed container's security profile.
    pub profile: ProfileDigest,
    pub status: Status,
    /// Why the image was set aside (only for `Status::Failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl Manifest {
    /// Parse and structurally validate manifest bytes (no file checks).
    pub fn parse(bytes: &[u8], origin: &Path) -> Result<Manifest> {
        let parse_err = |source| Error::ManifestParse {
            path: origin.to_path_buf(),
            source,
        };
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(parse_err)?;
        let version = value
            .get("format_version")
            .ok_or_else(|| Error::InvalidManifest {
                field: "format_version",
                reason: "missing".into(),
            })?;
        let found = version.as_u64().ok_or_else(|| Error::InvalidManifest {
            field: "format_version",
            reason: format!("expected an unsigned integer, got {version}"),
        })?;
        if !(u64::from(OLDEST_READABLE_VERSION)..=u64::from(FORMAT_VERSION)).contains(&found) {
            return Err(Error::UnsupportedVersion {
                found,
                supported: FORMAT_VERSION,
            });
        }
        let m: Manifest = serde_json::from_value(value).map_err(parse_err)?;
        m.check_structure()?;
        Ok(m)
    }

    /// Serialize as pretty JSON (humans read these while debugging).
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }

    fn check_structure(&self) -> Result<()> {
        crate::ident::validate_namespace(&self.namespace)?;
        crate::ident::validate_key(&self.key)?;
        let mut seen = std::collections::BTreeSet::new();
        let mut total = 0u64;
        // One encryption (or none) for every streamed file of the image.
        let mut encryption = None;
        for f in &self.files {
            check_rel_path(&f.path)?;
            if !seen.insert(f.path.as_str()) {
                return Err(invalid("files", format!("duplicate path {:?}", f.path)));
            }
            if f.sha256.len() != 64
                || !f
                    .sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return Err(invalid("files", format!("bad sha256 for {:?}", f.path)));
            }
            check_streamed(f, self.format_version)?;
            if let Some(s) = &f.stream {
                if *encryption.get_or_insert(&s.encryption) != &s.encryption {
                    return Err(invalid(
                        "files",
                        format!("{:?}: not encrypted as the image's other files", f.path),
                    ));
                }
            }
            total = total
                .checked_add(f.size)
                .ok_or_else(|| invalid("total_size", "overflow".into()))?;
        }
        let hex64 =
            |s: &str| s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !hex64(&self.profile.digest) || !self.profile.fields.values().all(|d| hex64(d)) {
            return Err(invalid(
                "profile",
                "digests must be 64 lower-case hex digits".into(),
            ));
        }
        if total != self.total_size {
            return Err(invalid(
                "total_size",
                format!("{} != sum of files {total}", self.total_size),
            ));
        }
        Ok(())
    }

    /// Whether CRIU's images were streamed (stored by the shim's
    /// streamer): a restore must then decode them first.
    pub fn streamed(&self) -> bool {
        self.files.iter().any(|f| f.stream.is_some())
    }

    /// The bytes a verified copy of the image holds: CRIU's streamed
    /// files decoded (their original size), every other file as stored.
    pub fn decoded_size(&self) -> u64 {
        self.files
            .iter()
            .map(|f| f.stream.as_ref().map_or(f.size, |s| s.original_size))
            .sum()
    }

    /// How the image's streamed files are encrypted (all alike: checked
    /// on read); none for an unencrypted image.
    pub fn encryption(&self) -> Option<&arch_imgstream::Encryption> {
        self.files
            .iter()
            .find_map(|f| f.stream.as_ref().and_then(|s| s.encryption.as_ref()))
    }

    /// The associated data streamed file `name` (CRIU's name) of this
    /// image was sealed with (arch_imgstream::identity).
    pub fn file_identity(&self, image_id: &str, name: &str) -> String {
        arch_imgstream::identity(&self.namespace, &self.key, image_id, name)
    }

    /// (original, stored) byte counts of the streamed files.
    pub fn streamed_sizes(&self) -> (u64, u64) {
        self.files
            .iter()
            .filter_map(|f| f.stream.as_ref().map(|s| (s.original_size, f.size)))
            .fold((0, 0), |(o, s), (fo, fs)| (o + fo, s + fs))
    }
}

/// A streamed entry must be of version 3, name a plain CRIU image under
/// `criu/` with its codec's suffix (or, from version 4, a sealed file at
/// the top level), and agree with itself.
fn check_streamed(f: &FileEntry, version: u32) -> Result<()> {
    let Some(s) = &f.stream else {
        return Ok(());
    };
    let bad = |why: &str| Err(invalid("files", format!("{:?}: {why}", f.path)));
    if version < 3 {
        return bad("a streamed file in a version 2 manifest");
    }
    let hex64 = s.original_sha256.len() == 64
        && s.original_sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !hex64 {
        return bad("bad original sha256");
    }
    if let Some(e) = &s.encryption {
        if let Err(why) = e.check() {
            return bad(&why.to_string());
        }
        if e.keyed_digest() && version < 5 {
            return bad(&format!(
                "a keyed original digest in a version {version} manifest"
            ));
        }
    }
    let Some(rec) = f.record() else {
        return bad(
            "neither a CRIU image name under criu/ nor a sealed image file at the top level, \
             with its codec's (and cipher's) suffix",
        );
    };
    if !f.path.contains('/') && version < 4 {
        return bad("a sealed image file in a version 3 manifest");
    }
    if !arch_imgstream::valid_name(&rec.name) {
        return bad("not a plain CRIU image name");
    }
    let encrypted = s.encryption.is_some();
    match (s.codec.as_str(), s.level) {
        ("none", None) if encrypted => Ok(()),
        ("none", None) if s.original_size == f.size && s.original_sha256 == f.sha256 => Ok(()),
        ("none", _) => bad("codec none stores the bytes as written"),
        ("zstd", Some(_)) => Ok(()),
        _ => bad("zstd needs its level"),
    }
}

/// Which of [`crate::SEALED_FILES`] a stored top-level path holds
/// (`rootfs-diff.tar.zst.enc` → `rootfs-diff.tar`); none for any other
/// path, the plain names included. Archives keep such a path as it is.
pub fn sealed_name(path: &str) -> Option<&'static str> {
    use arch_imgstream::Codec;
    if path.contains('/') {
        return None;
    }
    let encoded = path
        .strip_suffix(arch_imgstream::ENCRYPTED_SUFFIX)
        .unwrap_or(path);
    let codecs = [
        Codec::None,
        Codec::Zstd {
            level: 0,
            threads: 0,
        },
    ];
    crate::SEALED_FILES.into_iter().find(|sealed| {
        path != *sealed
            && codecs
                .iter()
                .any(|c| c.original_name(encoded) == Some(*sealed))
    })
}

fn invalid(field: &'static str, reason: String) -> Error {
    Error::InvalidManifest { field, reason }
}

/// A listed path must be relative, plain (no `.`/`..`/empty parts) and not
/// the manifest itself. Symlink components are checked against the disk
/// separately, since that needs the directory.
pub(crate) fn check_rel_path(p: &str) -> Result<()> {
    let unsafe_path = |reason| {
        Err(Error::UnsafePath {
            path: p.to_string(),
            reason,
        })
    };
    if p.is_empty() || p.contains('\0') {
        return unsafe_path("empty or contains NUL");
    }
    if p.starts_with('/') {
        return unsafe_path("absolute path");
    }
    // Split on '/' ourselves: Path::components silently drops "." and "//".
    for part in p.split('/') {
        match part {
            "" | "." => return unsafe_path("empty or '.' component"),
            ".." => return unsafe_path("'..' component"),
            _ => {}
        }
    }
    debug_assert!(Path::new(p)
        .components()
        .all(|c| matches!(c, Component::Normal(_))));
    if p == crate::MANIFEST {
        return unsafe_path("manifest cannot list itself");
    }
    Ok(())
}
