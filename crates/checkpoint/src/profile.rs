//! The security profile of a container: everything in its OCI spec that
//! decides what its processes may do and see, reduced to one digest per
//! field. An image records the profile of the container it was taken from;
//! it is restored only into a container with the same one, so a workload
//! cannot carry another's memory into different privileges, mounts or a
//! different image, nor take it out to weaker ones.
//!
//! All of the canonical forms live in this file. They are chosen so that
//! two specs that grant the same thing compare equal even when written
//! differently:
//! - absent capability sets and empty ones are the same (the shim may
//!   write absent sets out as empty ones for libcontainer);
//! - recursive propagation forms (`rshared`, `rslave`, `rprivate`,
//!   `runbindable`) are the same as the plain ones, in mount options and in
//!   `linux.rootfsPropagation`;
//! - absent `noNewPrivileges` is `false`; absent labels are empty;
//! - capability sets, groups, masked and readonly paths are sets (sorted,
//!   without duplicates);
//! - a joined namespace is "joined", not the path it was joined by (a new
//!   pod's sandbox has a new pid);
//! - in a bind-mount source, a path component that names this container's
//!   instance (the container id, under CRI the sandbox id and pod uid) is a
//!   placeholder: a re-created container gets a new id, its `/etc/hosts`
//!   a new directory, and it is still the same workload.

use std::collections::{BTreeMap, BTreeSet};

use arch_image::ProfileDigest;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// CRI: the Kubernetes namespace of the pod (written by containerd).
pub const SANDBOX_NAMESPACE_ANNOTATION: &str = "io.kubernetes.cri.sandbox-namespace";
/// CRI: the image the container was created from, as the kubelet named it.
pub const IMAGE_NAME_ANNOTATION: &str = "io.kubernetes.cri.image-name";
/// CRI: the pod sandbox's id and uid, which appear in mount sources.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
pub const SANDBOX_UID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-uid";

/// The profile's fields, in the order they are reported.
pub const PROFILE_FIELDS: [&str; 12] = [
    "image",
    "user",
    "capabilities",
    "no_new_privileges",
    "seccomp",
    "apparmor",
    "selinux",
    "namespaces",
    "devices",
    "masked_paths",
    "readonly_paths",
    "mounts",
];

/// What the spec alone does not say about a container.
#[derive(Clone, Debug, Default)]
pub struct ProfileContext {
    /// The container's id (a placeholder in mount sources).
    pub container_id: String,
    /// The rootfs's layers as containerd sent them (overlay lowerdirs), the
    /// image's identity when the spec does not name the image.
    pub layers: Option<String>,
}

/// A recorded profile that does not match the container's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("security profile differs in {field}: the image was taken from a container with another {field}")]
pub struct ProfileMismatch {
    /// The first field (in [`PROFILE_FIELDS`] order) that differs.
    pub field: String,
}

/// The profile of the container whose OCI spec (config.json) is `spec`.
pub fn security_profile(spec: &Value, ctx: &ProfileContext) -> ProfileDigest {
    let canonical = canonical_fields(spec, ctx);
    let fields: BTreeMap<String, String> = canonical
        .iter()
        .map(|(name, v)| (name.to_string(), sha256_hex(v.to_string().as_bytes())))
        .collect();
    let mut all = Sha256::new();
    for name in PROFILE_FIELDS {
        all.update(format!("{name}={}\n", fields[name]).as_bytes());
    }
    ProfileDigest {
        digest: hex::encode(all.finalize()),
        fields,
    }
}

/// Ok when `current` grants what `recorded` did; else the first field
/// that differs (a field missing on one side differs).
pub fn compare_profiles(
    recorded: &ProfileDigest,
    current: &ProfileDigest,
) -> Result<(), ProfileMismatch> {
    if recorded.digest == current.digest && recorded.fields == current.fields {
        return Ok(());
    }
    let names: BTreeSet<&String> = recorded
        .fields
        .keys()
        .chain(current.fields.keys())
        .collect();
    let ordered = PROFILE_FIELDS
        .iter()
        .map(|s| s.to_string())
        .chain(names.into_iter().cloned());
    for name in ordered {
        if recorded.fields.get(&name) != current.fields.get(&name) {
            return Err(ProfileMismatch { field: name });
        }
    }
    Err(ProfileMismatch {
        field: "digest".into(),
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Each field's canonical JSON (serde_json's maps are sorted, so the text
/// of a value is canonical too).
fn canonical_fields(spec: &Value, ctx: &ProfileContext) -> Vec<(&'static str, Value)> {
    let process = &spec["process"];
    let linux = &spec["linux"];
    let annotations = &spec["annotations"];
    let placeholders = instance_ids(annotations, ctx);
    vec![
        ("image", image(annotations, ctx)),
        ("user", user(&process["user"])),
        ("capabilities", capabilities(&process["capabilities"])),
        (
            "no_new_privileges",
            Value::Bool(process["noNewPrivileges"].as_bool().unwrap_or(false)),
        ),
        ("seccomp", linux["seccomp"].clone()),
        ("apparmor", text(&process["apparmorProfile"])),
        (
            "selinux",
            json!([text(&process["selinuxLabel"]), text(&linux["mountLabel"])]),
        ),
        ("namespaces", namespaces(linux)),
        ("devices", devices(linux)),
        ("masked_paths", string_set(&linux["maskedPaths"])),
        (
            "readonly_paths",
            json!({
                "paths": string_set(&linux["readonlyPaths"]),
                "root": spec["root"]["readonly"].as_bool().unwrap_or(false),
            }),
        ),
        ("mounts", mounts(spec, &placeholders)),
    ]
}

fn text(v: &Value) -> Value {
    Value::String(v.as_str().unwrap_or_default().to_string())
}

fn string_set(v: &Value) -> Value {
    let set: BTreeSet<&str> = v
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    json!(set)
}

/// The image by its layers' content, and by name too under CRI: a tag
/// moved to another digest has other layers, so it is another image.
/// Empty when neither is known (an engine-mounted rootfs outside CRI).
fn image(annotations: &Value, ctx: &ProfileContext) -> Value {
    let layers = ctx.layers.as_deref().unwrap_or_default();
    match annotations[IMAGE_NAME_ANNOTATION].as_str() {
        Some(name) => json!({ "name": name, "layers": layers }),
        None => json!({ "layers": layers }),
    }
}

fn user(u: &Value) -> Value {
    let groups: BTreeSet<u64> = u["additionalGids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    json!({
        "uid": u["uid"].as_u64().unwrap_or(0),
        "gid": u["gid"].as_u64().unwrap_or(0),
        "additional_gids": groups,
        "umask": u["umask"],
    })
}

/// Absent sets and empty sets alike; names upper-cased with their `CAP_`.
fn capabilities(c: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for set in [
        "bounding",
        "effective",
        "inheritable",
        "permitted",
        "ambient",
    ] {
        let caps: BTreeSet<String> = c[set]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| {
                        let s = s.to_ascii_uppercase();
                        if s.starts_with("CAP_") {
                            s
                        } else {
                            format!("CAP_{s}")
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.insert(set.into(), json!(caps));
    }
    Value::Object(out)
}

/// Which namespaces are new and which joined, and the user namespace's maps.
fn namespaces(linux: &Value) -> Value {
    let kinds: BTreeMap<String, &str> = linux["namespaces"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|ns| {
                    let kind = ns["type"].as_str().unwrap_or_default().to_string();
                    let joined = ns["path"].as_str().is_some_and(|p| !p.is_empty());
                    (kind, if joined { "joined" } else { "new" })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "kinds": kinds,
        "uid_mappings": linux["uidMappings"],
        "gid_mappings": linux["gidMappings"],
    })
}

fn devices(linux: &Value) -> Value {
    let mut nodes: Vec<Value> = linux["devices"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    json!({
                        "path": d["path"], "type": d["type"], "major": d["major"],
                        "minor": d["minor"], "file_mode": d["fileMode"],
                        "uid": d["uid"], "gid": d["gid"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    nodes.sort_by_key(|v| v.to_string());
    let rules: Vec<Value> = linux["resources"]["devices"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    json!({
                        "allow": r["allow"].as_bool().unwrap_or(false),
                        "type": r["type"].as_str().unwrap_or("a"),
                        "major": r["major"], "minor": r["minor"],
                        "access": r["access"].as_str().unwrap_or("rwm"),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({ "nodes": nodes, "cgroup_rules": rules })
}

/// The plain form of a propagation flag.
fn propagation(flag: &str) -> &str {
    match flag {
        "rshared" => "shared",
        "rslave" => "slave",
        "rprivate" => "private",
        "runbindable" => "unbindable",
        other => other,
    }
}

/// The ids that name this instance of the container in host paths.
fn instance_ids(annotations: &Value, ctx: &ProfileContext) -> Vec<String> {
    let mut ids = vec![ctx.container_id.clone()];
    for a in [SANDBOX_ID_ANNOTATION, SANDBOX_UID_ANNOTATION] {
        if let Some(v) = annotations[a].as_str() {
            ids.push(v.to_string());
        }
    }
    ids.retain(|s| !s.is_empty());
    ids
}

fn mounts(spec: &Value, instance: &[String]) -> Value {
    let list: Vec<Value> = spec["mounts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    let options: BTreeSet<&str> = m["options"]
                        .as_array()
                        .map(|o| {
                            o.iter()
                                .filter_map(Value::as_str)
                                .map(propagation)
                                .collect()
                        })
                        .unwrap_or_default();
                    let source = m["source"].as_str().unwrap_or_default();
                    json!({
                        "destination": m["destination"],
                        "type": m["type"].as_str().unwrap_or_default(),
                        "source": placeholder_ids(source, instance),
                        "options": options,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let root = spec["linux"]["rootfsPropagation"]
        .as_str()
        .map(propagation)
        .unwrap_or_default();
    json!({ "list": list, "rootfs_propagation": root })
}

fn placeholder_ids(path: &str, instance: &[String]) -> String {
    path.split('/')
        .map(|part| {
            if instance.iter().any(|id| id == part) {
                "{instance}"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(id: &str) -> ProfileContext {
        ProfileContext {
            container_id: id.into(),
            layers: Some("/snap/2/fs:/snap/1/fs".into()),
        }
    }

    fn spec() -> Value {
        json!({
            "ociVersion": "1.0.2",
            "process": {
                "user": {"uid": 1000, "gid": 1000, "additionalGids": [20, 10]},
                "args": ["sh"],
                "capabilities": {
                    "bounding": ["CAP_CHOWN", "CAP_KILL"],
                    "effective": ["CAP_KILL", "CAP_CHOWN"],
                    "permitted": ["CAP_CHOWN", "CAP_KILL"]
                },
                "noNewPrivileges": true,
                "apparmorProfile": "cri-containerd.apparmor.d"
            },
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/etc/hosts", "type": "bind",
                 "source": "/var/lib/docker/containers/c-1/hosts", "options": ["rbind", "rprivate"]},
                {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "ro"]}
            ],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "mount"},
                               {"type": "network", "path": "/proc/4242/ns/net"}],
                "maskedPaths": ["/proc/kcore", "/proc/keys"],
                "readonlyPaths": ["/proc/sys"],
                "rootfsPropagation": "rshared",
                "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []}
            }
        })
    }

    fn differs(f: impl FnOnce(&mut Value)) -> String {
        let base = security_profile(&spec(), &ctx("c-1"));
        let mut changed = spec();
        f(&mut changed);
        compare_profiles(&base, &security_profile(&changed, &ctx("c-1")))
            .expect_err("a changed profile")
            .field
    }

    #[test]
    fn the_same_spec_has_the_same_profile() {
        let a = security_profile(&spec(), &ctx("c-1"));
        assert_eq!(a.fields.len(), PROFILE_FIELDS.len());
        compare_profiles(&a, &security_profile(&spec(), &ctx("c-1"))).unwrap();
    }

    #[test]
    fn a_recreated_container_in_a_new_pod_keeps_its_profile() {
        let mut other = spec();
        other["mounts"][1]["source"] = "/var/lib/docker/containers/c-2/hosts".into();
        other["linux"]["namespaces"][2]["path"] = "/proc/777/ns/net".into();
        compare_profiles(
            &security_profile(&spec(), &ctx("c-1")),
            &security_profile(&other, &ctx("c-2")),
        )
        .unwrap();
    }

    #[test]
    fn normalised_specs_compare_equal() {
        // What the shim's normalisation for libcontainer may do to a spec:
        // absent capability sets become empty ones, rshared becomes shared.
        let mut normalised = spec();
        normalised["process"]["capabilities"]["inheritable"] = json!([]);
        normalised["process"]["capabilities"]["ambient"] = json!([]);
        normalised["linux"]["rootfsPropagation"] = "shared".into();
        normalised["mounts"][1]["options"] = json!(["rbind", "private"]);
        normalised["process"]["capabilities"]["effective"] = json!(["CAP_CHOWN", "CAP_KILL"]);
        compare_profiles(
            &security_profile(&spec(), &ctx("c-1")),
            &security_profile(&normalised, &ctx("c-1")),
        )
        .unwrap();
        // No capabilities at all is the same as every set empty.
        let mut none = spec();
        none["process"]
            .as_object_mut()
            .unwrap()
            .remove("capabilities");
        let mut empty = spec();
        empty["process"]["capabilities"] = json!({"bounding": [], "effective": [],
            "inheritable": [], "permitted": [], "ambient": []});
        compare_profiles(
            &security_profile(&none, &ctx("c-1")),
            &security_profile(&empty, &ctx("c-1")),
        )
        .unwrap();
    }

    #[test]
    fn each_privilege_change_is_named() {
        assert_eq!(differs(|s| s["process"]["user"]["uid"] = 0.into()), "user");
        assert_eq!(
            differs(|s| s["process"]["user"]["additionalGids"] = json!([0])),
            "user"
        );
        assert_eq!(
            differs(|s| s["process"]["capabilities"]["bounding"] = json!(["CAP_SYS_ADMIN"])),
            "capabilities"
        );
        assert_eq!(
            differs(|s| s["process"]["noNewPrivileges"] = false.into()),
            "no_new_privileges"
        );
        assert_eq!(
            differs(|s| s["linux"]
                .as_object_mut()
                .unwrap()
                .remove("seccomp")
                .map(drop)
                .unwrap()),
            "seccomp"
        );
        assert_eq!(
            differs(|s| s["process"]["apparmorProfile"] = "unconfined".into()),
            "apparmor"
        );
        assert_eq!(
            differs(|s| s["process"]["selinuxLabel"] = "system_u:system_r:spc_t:s0".into()),
            "selinux"
        );
        assert_eq!(
            differs(|s| s["linux"]["namespaces"][2] = json!({"type": "network"})),
            "namespaces"
        );
        assert_eq!(
            differs(|s| s["linux"]["namespaces"].as_array_mut().unwrap().truncate(2)),
            "namespaces"
        );
        assert_eq!(
            differs(|s| s["linux"]["devices"] =
                json!([{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}])),
            "devices"
        );
        assert_eq!(
            differs(|s| s["linux"]["resources"] =
                json!({"devices": [{"allow": true, "access": "rwm"}]})),
            "devices"
        );
        assert_eq!(
            differs(|s| s["linux"]["maskedPaths"] = json!([])),
            "masked_paths"
        );
        assert_eq!(
            differs(|s| s["linux"]["readonlyPaths"] = json!([])),
            "readonly_paths"
        );
        assert_eq!(
            differs(|s| s["mounts"][2]["source"] = "/root".into()),
            "mounts"
        );
        assert_eq!(
            differs(|s| s["mounts"][2]["destination"] = "/etc".into()),
            "mounts"
        );
        assert_eq!(
            differs(|s| s["mounts"][2]["options"] = json!(["rbind", "rw"])),
            "mounts"
        );
    }

    #[test]
    fn another_image_is_another_profile() {
        let base = security_profile(&spec(), &ctx("c-1"));
        let mut other_layers = ctx("c-1");
        other_layers.layers = Some("/snap/9/fs:/snap/1/fs".into());
        let e = compare_profiles(&base, &security_profile(&spec(), &other_layers)).unwrap_err();
        assert_eq!(e.field, "image");
        assert!(e.to_string().contains("image"), "{e}");
        let mut cri = spec();
        cri["annotations"] = json!({IMAGE_NAME_ANNOTATION: "docker.io/library/app:1"});
        let mut cri2 = cri.clone();
        cri2["annotations"][IMAGE_NAME_ANNOTATION] = "docker.io/library/app:2".into();
        let e = compare_profiles(
            &security_profile(&cri, &ctx("c-1")),
            &security_profile(&cri2, &ctx("c-1")),
        )
        .unwrap_err();
        assert_eq!(e.field, "image");
        // The same name on other layers: the tag moved to a new digest.
        let e = compare_profiles(
            &security_profile(&cri, &ctx("c-1")),
            &security_profile(&cri, &other_layers),
        )
        .unwrap_err();
        assert_eq!(e.field, "image");
    }

    #[test]
    fn a_field_missing_from_a_record_differs() {
        let base = security_profile(&spec(), &ctx("c-1"));
        let mut old = base.clone();
        old.fields.remove("seccomp");
        assert_eq!(compare_profiles(&old, &base).unwrap_err().field, "seccomp");
    }
}
