//! A read-only view of the checkpoint root that, unlike
//! `ImageStore::list`, also reports sidecars (`{key}@restored`,
//! `{key}@failed-…`, `{key}@tmp-…`, …), plus the removal primitive used by
//! `rm` and `gc`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use arch_image::{ImageStore, Manifest};

use crate::error::{io_err, Error, Result};

/// What a directory entry under `{root}/{ns}/` is, judged by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Committed,
    Restored,
    Failed,
    /// `@tmp-`: a checkpoint being written (or abandoned).
    Staging,
    /// `@old-`: an image being replaced (or left by a crash).
    Old,
    /// `@rm-`: being removed by archctl (or left by a crash).
    Removing,
    /// `@claim`: a network-fs restore claim (a file).
    Claim,
    /// `@taken-`: an image a restorer took (being restored).
    Taken,
    /// `@restoring-`: a taken image past its fence (CRIU reads its copy).
    Restoring,
    /// `@gen-`: an older generation of the key's image (host `generations`).
    Generation,
}

impl Kind {
    fn of(name: &str) -> Option<(&str, Kind)> {
        let Some((key, what)) = name.split_once('@') else {
            return arch_image::validate_key(name)
                .ok()
                .map(|_| (name, Kind::Committed));
        };
        let kind = match what {
            "restored" => Kind::Restored,
            "claim" => Kind::Claim,
            w if w.starts_with("failed-") => Kind::Failed,
            w if w.starts_with("tmp-") => Kind::Staging,
            w if w.starts_with("old-") => Kind::Old,
            w if w.starts_with("rm-") => Kind::Removing,
            w if w.starts_with("taken-") => Kind::Taken,
            w if w.starts_with("restoring-") => Kind::Restoring,
            w if arch_image::is_generation(w) => Kind::Generation,
            _ => return None,
        };
        Some((key, kind))
    }
}

/// One image or sidecar found under the root.
#[derive(Debug, Clone)]
pub struct Entry {
    pub namespace: String,
    /// Directory (or file) name: the key, or `key@…` for a sidecar.
    pub name: String,
    pub key: String,
    pub kind: Kind,
    pub path: PathBuf,
    /// The parsed manifest, or why it could not be read (structure only:
    /// checksums are `validate`'s job).
    pub manifest: std::result::Result<Manifest, String>,
    /// Modification time of the entry, unix seconds.
    pub mtime: u64,
}

impl Entry {
    /// Commit time from the manifest, else the entry's mtime.
    pub fn created(&self) -> u64 {
        match &self.manifest {
            Ok(m) => m.created_at.secs,
            Err(_) => self.mtime,
        }
    }

    /// Bytes from the manifest, else measured on disk.
    pub fn size(&self) -> u64 {
        match &self.manifest {
            Ok(m) => m.total_size,
            Err(_) => du(&self.path),
        }
    }

    /// `committed`, `restored`, `failed`, … or `invalid` when an image's
    /// manifest does not parse.
    pub fn status(&self) -> &'static str {
        match (self.kind, &self.manifest) {
            (Kind::Committed, Err(_)) => "invalid",
            (Kind::Committed, _) => "committed",
            (Kind::Restored, _) => "restored",
            (Kind::Failed, _) => "failed",
            (Kind::Staging, _) => "staging",
            (Kind::Old, _) => "old",
            (Kind::Removing, _) => "removing",
            (Kind::Claim, _) => "claim",
            (Kind::Taken, _) => "taken",
            (Kind::Restoring, _) => "restoring",
            (Kind::Generation, _) => "generation",
        }
    }

    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Current unix time in seconds.
pub use arch_host::now_secs;

/// The store at `root` after checking the root is an existing directory.
pub fn open_root(root: &Path) -> Result<ImageStore> {
    let fail = |reason: &str| Error::Root {
        path: root.to_path_buf(),
        reason: reason.to_string(),
    };
    match fs::metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(fail(
            "does not exist (pass --root or set ARCH_CHECKPOINT_ROOT)",
        )),
        Err(e) => Err(fail(&e.to_string())),
        Ok(m) if !m.is_dir() => Err(fail("is not a directory")),
        Ok(_) => Ok(ImageStore::new(root)),
    }
}

/// Every image and sidecar under the root, sorted by namespace then name.
pub fn scan(store: &ImageStore) -> Result<Vec<Entry>> {
    let root = store.root();
    let mut out = Vec::new();
    for ns_ent in fs::read_dir(root).map_err(io_err("read dir", root))? {
        let ns_ent = ns_ent.map_err(io_err("read dir", root))?;
        let Ok(ns) = ns_ent.file_name().into_string() else {
            continue;
        };
        let is_dir = ns_ent.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if !is_dir || arch_image::validate_namespace(&ns).is_err() || ns.starts_with('.') {
            continue;
        }
        let ns_path = ns_ent.path();
        for ent in fs::read_dir(&ns_path).map_err(io_err("read dir", &ns_path))? {
            let ent = ent.map_err(io_err("read dir", &ns_path))?;
            let Ok(name) = ent.file_name().into_string() else {
                continue;
            };
            let Some((key, kind)) = Kind::of(&name) else {
                continue;
            };
            let meta = match fs::symlink_metadata(ent.path()) {
                Ok(m) => m,
                // Renamed or removed since readdir (a shim committing,
                // taking or retiring it): not there any more.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("stat", ent.path())(e)),
            };
            if meta.is_dir() == (kind == Kind::Claim) {
                continue; // images are real dirs; claims are files
            }
            let path = ent.path();
            let manifest = if matches!(
                kind,
                Kind::Committed | Kind::Restored | Kind::Failed | Kind::Generation
            ) {
                read_manifest(&path)
            } else {
                Err("no manifest".into())
            };
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            out.push(Entry {
                namespace: ns.clone(),
                key: key.to_string(),
                name: name.clone(),
                kind,
                path,
                manifest,
                mtime,
            });
        }
    }
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(out)
}

/// Bounded, never through a link, never blocking on a FIFO.
fn read_manifest(dir: &Path) -> std::result::Result<Manifest, String> {
    arch_image::read_manifest(dir).map_err(|e| e.to_string())
}

/// Total size of regular files under `path` (symlinks not followed).
pub fn du(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return if meta.is_file() { meta.len() } else { 0 };
    }
    fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| du(&e.path())).sum())
        .unwrap_or(0)
}

/// `{ns}/{key}@claim` exists: a restore may be reading the image.
pub fn is_claimed(store: &ImageStore, ns: &str, key: &str) -> bool {
    store.root().join(ns).join(format!("{key}@claim")).exists()
}

/// Remove an image or sidecar directory so no reader ever sees it half
/// deleted: rename it to `{key}@rm-{pid}-{nanos}` first (a crash leaves a
/// `@rm-` dir that the next `gc` sweeps), then delete.
pub fn remove_entry(ns_dir: &Path, name: &str) -> Result<()> {
    let src = ns_dir.join(name);
    let key = name.split('@').next().unwrap_or(name);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = ns_dir.join(format!("{key}@rm-{}-{nanos}", std::process::id()));
    let target = if name.contains("@rm-") {
        src
    } else {
        fs::rename(&src, &tmp).map_err(io_err("rename", &src))?;
        tmp
    };
    fs::remove_dir_all(&target).map_err(io_err("remove", &target))
}
