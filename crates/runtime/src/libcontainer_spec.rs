//! What containerd writes, said the way libcontainer 0.7 reads it as runc
//! would: the bundle's config.json and an exec's process JSON are rewritten
//! before libcontainer sees them.
//!
//! Two places where libcontainer and runc read the same spec differently:
//! - An absent `process.capabilities` (or an absent set in it) means *no*
//!   capabilities to runc; libcontainer then keeps every capability of root.
//!   A container whose spec leaves them out must not get more than under
//!   runc, so every absent set becomes an explicit empty one.
//! - `linux.rootfsPropagation` may be `rshared`, `rslave`, `rprivate` or
//!   `runbindable` (containerd's CRI writes the first two for pods that use
//!   mount propagation). libcontainer knows only the short forms, and it
//!   already applies them recursively (MS_REC) as runc does for the long ones.
//!
//! The edits are made on the JSON tree, not through `oci_spec::Spec`, so
//! fields this crate's oci-spec doesn't know survive, and a spec already
//! normalised is left byte for byte as it is.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Result, RuntimeError};

/// The five capability sets of the OCI process, by their JSON names.
pub const CAPABILITY_SETS: [&str; 5] = [
    "bounding",
    "effective",
    "inheritable",
    "permitted",
    "ambient",
];

/// Gives every absent capability set of an OCI process an explicit empty
/// one; returns whether anything changed.
pub fn explicit_capabilities(process: &mut Map<String, Value>) -> bool {
    let caps = process
        .entry("capabilities")
        .or_insert_with(|| Value::Object(Map::new()));
    if caps.is_null() {
        *caps = Value::Object(Map::new());
    }
    let Some(caps) = caps.as_object_mut() else {
        return false; // not an object: libcontainer refuses it with a reason
    };
    let mut changed = false;
    for set in CAPABILITY_SETS {
        let entry = caps.entry(set).or_insert(Value::Null);
        if entry.is_null() {
            *entry = Value::Array(Vec::new());
            changed = true;
        }
    }
    changed
}

/// The short name libcontainer knows for a rootfs propagation mode.
pub fn short_propagation(mode: &str) -> Option<&'static str> {
    match mode {
        "rshared" => Some("shared"),
        "rslave" => Some("slave"),
        "rprivate" => Some("private"),
        "runbindable" => Some("unbindable"),
        _ => None,
    }
}

/// Normalises a whole runtime spec (config.json); returns whether it changed.
pub fn normalise_spec(spec: &mut Value) -> bool {
    let mut changed = false;
    if let Some(process) = spec.get_mut("process").and_then(Value::as_object_mut) {
        changed |= explicit_capabilities(process);
    }
    if let Some(linux) = spec.get_mut("linux").and_then(Value::as_object_mut) {
        let short = linux
            .get("rootfsPropagation")
            .and_then(Value::as_str)
            .and_then(short_propagation);
        if let Some(short) = short {
            linux.insert("rootfsPropagation".into(), Value::String(short.into()));
            changed = true;
        }
    }
    changed
}

/// Normalises an exec's process JSON; returns whether it changed.
pub fn normalise_process(process: &mut Value) -> bool {
    process.as_object_mut().is_some_and(explicit_capabilities)
}

/// Rewrites `bundle/config.json` in place if it needs normalising. In place,
/// because everything that reads the spec later (libcontainer's exec, the
/// dump, hooks given the bundle) must read the same one.
/// Returns the spec as written.
pub fn normalise_bundle(bundle: &Path) -> Result<Value> {
    let path = bundle.join("config.json");
    rewrite_json(&path, normalise_spec)
}

/// Reads a JSON file, applies `edit`, and writes it back if `edit` changed
/// it; returns the value as it now is.
pub fn rewrite_json(path: &Path, edit: impl FnOnce(&mut Value) -> bool) -> Result<Value> {
    let mut value = read_json(path)?;
    if edit(&mut value) {
        write_json(path, &value)?;
    }
    Ok(value)
}

pub fn read_json(path: &Path) -> Result<Value> {
    let bytes =
        std::fs::read(path).map_err(RuntimeError::io(format!("reading {}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| RuntimeError::InvalidSpec(format!("{}: {e}", path.display())))
}

/// Writes atomically, through a temporary beside `path`: a reader (or a
/// crash) never sees half a spec.
pub fn write_json(path: &Path, value: &Value) -> Result<()> {
    let tmp = path.with_extension("json.arch-tmp");
    let json = serde_json::to_vec(value).expect("a JSON value serialises");
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(RuntimeError::io(format!("rewriting {}", path.display())))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn absent_capabilities_become_explicit_empty_sets() {
        let mut spec = json!({"process": {"args": ["sh"]}});
        assert!(normalise_spec(&mut spec));
        for set in CAPABILITY_SETS {
            assert_eq!(spec["process"]["capabilities"][set], json!([]), "{set}");
        }
    }

    #[test]
    fn absent_sets_are_empty_and_given_sets_stay() {
        let mut p = json!({"capabilities": {"bounding": ["CAP_KILL"], "effective": null}});
        assert!(normalise_process(&mut p));
        assert_eq!(p["capabilities"]["bounding"], json!(["CAP_KILL"]));
        assert_eq!(p["capabilities"]["effective"], json!([]));
        assert_eq!(p["capabilities"]["ambient"], json!([]));
    }

    #[test]
    fn recursive_propagation_names_get_the_short_form() {
        for (long, short) in [
            ("rshared", "shared"),
            ("rslave", "slave"),
            ("rprivate", "private"),
            ("runbindable", "unbindable"),
        ] {
            let mut spec = json!({"linux": {"rootfsPropagation": long}});
            assert!(normalise_spec(&mut spec));
            assert_eq!(spec["linux"]["rootfsPropagation"], json!(short));
        }
        let mut spec = json!({"linux": {"rootfsPropagation": "slave"}});
        assert!(!normalise_spec(&mut spec), "a short form is left alone");
    }

    #[test]
    fn a_normalised_spec_is_not_rewritten_and_unknown_fields_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            json!({"process": {"args": ["sh"]}, "linux": {"rootfsPropagation": "rshared"}, "x-vendor": 1}).to_string(),
        )
        .unwrap();
        normalise_bundle(dir.path()).unwrap();
        let once = std::fs::read(&path).unwrap();
        let v: Value = serde_json::from_slice(&once).unwrap();
        assert_eq!(v["x-vendor"], json!(1));
        assert_eq!(v["linux"]["rootfsPropagation"], json!("shared"));
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        normalise_bundle(dir.path()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), once);
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            modified
        );
    }
}
