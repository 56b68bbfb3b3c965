//! The runtime options containerd hands the shim: at `start` (stdin, or
//! an extension of the bootstrap params) and in CreateTaskRequest.options.
//!
//! Two message types arrive in practice:
//! - `containerd.runc.v1.Options` (the Go client's `WithRuntime(.., &options.Options{..})`,
//!   or a runtime configured with runc's options);
//! - `runtimeoptions.v1.Options`, what CRI sends for any runtime type other
//!   than runc's (the runtime's `options` table as a TOML `config_body`, or a
//!   `ConfigPath`) and what `ctr run --runtime-config-path FILE` sends. ARCH
//!   reads the TOML with runc's key names (`ShimCgroup`, `IoUid`, `IoGid`, ...).
//!
//! Every option ARCH cannot honour is refused with an error that names it:
//! a silently dropped option is a container that runs other than asked.

use std::path::Path;

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{CodedInputStream, Message};
use containerd_shim::protos::shim::oci::Options as RuncOptions;
use serde::Deserialize;
use thiserror::Error;

/// The runc options' type, as containerd's typeurl names it.
pub const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";
/// CRI's and ctr's generic runtime options.
pub const RUNTIME_OPTIONS: &str = "runtimeoptions.v1.Options";

#[derive(Debug, Error, PartialEq)]
pub enum OptionsError {
    #[error("runtime options {type_url}: cannot decode: {reason}")]
    Decode { type_url: String, reason: String },
    #[error("runtime options type {0} is not supported by io.containerd.arch.v1 (supported: {RUNC_OPTIONS}, {RUNTIME_OPTIONS})")]
    UnknownType(String),
    #[error("runtime option {name} is not supported by io.containerd.arch.v1: {why}")]
    Refused {
        name: &'static str,
        why: &'static str,
    },
    #[error("runtime options: unknown key {0:?} (ARCH reads ShimCgroup, IoUid, IoGid; see docs/operations.md)")]
    UnknownKey(String),
    #[error("runtime options config file {path}: {reason}")]
    ConfigFile { path: String, reason: String },
}

/// What ARCH does with the options it honours.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// The cgroup the shim runs in (runc's `ShimCgroup`).
    pub shim_cgroup: Option<String>,
    /// Owner of the stdio pipes the shim makes (runc's `IoUid`/`IoGid`);
    /// None when both are 0 (root, what the shim creates anyway).
    pub io_owner: Option<(u32, u32)>,
    /// runc's `SystemdCgroup = true` (None otherwise): which cgroup driver
    /// Create uses (see service/runtime_options.rs).
    pub systemd_cgroup: Option<bool>,
}

impl RuntimeOptions {
    fn new(shim_cgroup: &str, io_uid: u32, io_gid: u32) -> Self {
        RuntimeOptions {
            shim_cgroup: (!shim_cgroup.is_empty()).then(|| shim_cgroup.to_string()),
            io_owner: (io_uid != 0 || io_gid != 0).then_some((io_uid, io_gid)),
            systemd_cgroup: None,
        }
    }
}

/// Whether `type_url` names `name` (typeurl writes bare names, protobuf's
/// Any::pack prefixes a host).
fn is_type(type_url: &str, name: &str) -> bool {
    type_url.rsplit('/').next() == Some(name)
}

/// Decodes and checks runtime options; `None` or an empty Any is no options.
/// `read_file` reads a `ConfigPath` (a seam for the unit tests).
pub fn parse(
    any: Option<&Any>,
    read_file: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<RuntimeOptions, OptionsError> {
    let Some(any) = any else {
        return Ok(RuntimeOptions::default());
    };
    if any.type_url.is_empty() && any.value.is_empty() {
        return Ok(RuntimeOptions::default());
    }
    let decode = |reason: String| OptionsError::Decode {
        type_url: any.type_url.clone(),
        reason,
    };
    if is_type(&any.type_url, RUNC_OPTIONS) {
        let opts = RuncOptions::parse_from_bytes(&any.value).map_err(|e| decode(e.to_string()))?;
        return from_runc(&opts);
    }
    if is_type(&any.type_url, RUNTIME_OPTIONS) {
        let generic = GenericOptions::decode(&any.value).map_err(decode)?;
        let (body, source) = if !generic.config_path.is_empty() {
            let path = generic.config_path.clone();
            let body = read_file(Path::new(&path)).map_err(|e| OptionsError::ConfigFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            (body, Some(path))
        } else {
            (generic.config_body, None)
        };
        return from_toml(&body).map_err(|e| match (e, source) {
            (OptionsError::Decode { reason, .. }, Some(path)) => {
                OptionsError::ConfigFile { path, reason }
            }
            (e, _) => e,
        });
    }
    Err(OptionsError::UnknownType(any.type_url.clone()))
}

/// Reads `path` as the runtime options' ConfigPath.
pub fn read_config_file(path: &Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}

fn refuse(name: &'static str, why: &'static str) -> OptionsError {
    OptionsError::Refused { name, why }
}

const NO_RUNC: &str = "ARCH runs containers in-process with libcontainer, not with a runc binary";
const NO_PIVOT: &str = "containers always pivot_root into their rootfs";
const NO_KEYRING: &str = "containers always get a new session keyring";
const NO_TASK_API: &str = "the shim serves the task API on its own socket only";

/// runc's options: honour ShimCgroup, IoUid, IoGid; CRIU paths belong to
/// checkpoint/restore requests; refuse the rest when set.
fn from_runc(o: &RuncOptions) -> Result<RuntimeOptions, OptionsError> {
    if !o.binary_name.is_empty() {
        return Err(refuse("BinaryName", NO_RUNC));
    }
    if !o.root.is_empty() {
        return Err(refuse("Root", NO_RUNC));
    }
    if o.no_pivot_root {
        return Err(refuse("NoPivotRoot", NO_PIVOT));
    }
    if o.no_new_keyring {
        return Err(refuse("NoNewKeyring", NO_KEYRING));
    }
    #[allow(deprecated)]
    if !o.task_api_address.is_empty() || o.task_api_version != 0 {
        return Err(refuse("TaskApiAddress/TaskApiVersion", NO_TASK_API));
    }
    Ok(RuntimeOptions {
        // Only `true` says something: false is also what options that never
        // mention it decode to, and then the cgroupsPath's form decides.
        systemd_cgroup: o.systemd_cgroup.then_some(true),
        ..RuntimeOptions::new(&o.shim_cgroup, o.io_uid, o.io_gid)
    })
}

/// The TOML form (CRI's options table, ctr's --runtime-config-path file),
/// with runc's key names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlOptions {
    #[serde(rename = "ShimCgroup", default)]
    shim_cgroup: String,
    #[serde(rename = "IoUid", default)]
    io_uid: u32,
    #[serde(rename = "IoGid", default)]
    io_gid: u32,
    #[serde(rename = "SystemdCgroup", default)]
    systemd_cgroup: bool,
    #[serde(rename = "BinaryName", default)]
    binary_name: String,
    #[serde(rename = "Root", default)]
    root: String,
    #[serde(rename = "NoPivotRoot", default)]
    no_pivot_root: bool,
    #[serde(rename = "NoNewKeyring", default)]
    no_new_keyring: bool,
    #[serde(rename = "CriuImagePath", default)]
    criu_image_path: String,
    #[serde(rename = "CriuWorkPath", default)]
    criu_work_path: String,
    // CRI's own keys of the same table (runtimeoptions.v1.Options).
    #[serde(rename = "TypeUrl", default)]
    _type_url: String,
    #[serde(rename = "ConfigPath", default)]
    _config_path: String,
}

fn from_toml(body: &[u8]) -> Result<RuntimeOptions, OptionsError> {
    let text = std::str::from_utf8(body).map_err(|e| OptionsError::Decode {
        type_url: RUNTIME_OPTIONS.into(),
        reason: format!("config body is not UTF-8: {e}"),
    })?;
    let t: TomlOptions = toml::from_str(text).map_err(|e| {
        let msg = e.message().to_string();
        match msg.strip_prefix("unknown field `") {
            Some(rest) => OptionsError::UnknownKey(rest.split('`').next().unwrap_or("").into()),
            None => OptionsError::Decode {
                type_url: RUNTIME_OPTIONS.into(),
                reason: msg,
            },
        }
    })?;
    let runc = RuncOptions {
        shim_cgroup: t.shim_cgroup,
        io_uid: t.io_uid,
        io_gid: t.io_gid,
        systemd_cgroup: t.systemd_cgroup,
        binary_name: t.binary_name,
        root: t.root,
        no_pivot_root: t.no_pivot_root,
        no_new_keyring: t.no_new_keyring,
        criu_image_path: t.criu_image_path,
        criu_work_path: t.criu_work_path,
        ..Default::default()
    };
    from_runc(&runc)
}

/// `runtimeoptions.v1.Options` (not among the crate's generated types):
/// 1 type_url, 2 config_path, 3 config_body.
#[derive(Debug, Default, PartialEq)]
struct GenericOptions {
    config_path: String,
    config_body: Vec<u8>,
}

impl GenericOptions {
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut out = GenericOptions::default();
        let mut input = CodedInputStream::from_bytes(bytes);
        let err = |e: containerd_shim::protos::protobuf::Error| e.to_string();
        while let Some(tag) = input.read_raw_tag_or_eof().map_err(err)? {
            match tag {
                10 => {
                    input.read_string().map_err(err)?;
                }
                18 => out.config_path = input.read_string().map_err(err)?,
                26 => out.config_body = input.read_bytes().map_err(err)?,
                t => {
                    let wire = containerd_shim::protos::protobuf::rt::WireType::new(t & 7)
                        .ok_or_else(|| format!("bad wire type in tag {t}"))?;
                    input.skip_field(wire).map_err(err)?;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::CodedOutputStream;

    fn no_file(_: &Path) -> std::io::Result<Vec<u8>> {
        Err(std::io::Error::from(std::io::ErrorKind::NotFound))
    }

    fn runc_any(o: &RuncOptions) -> Any {
        Any {
            type_url: RUNC_OPTIONS.into(),
            value: o.write_to_bytes().unwrap(),
            ..Default::default()
        }
    }

    fn generic_any(path: &str, body: &str) -> Any {
        let mut value = Vec::new();
        {
            let mut out = CodedOutputStream::vec(&mut value);
            out.write_string(1, "").unwrap();
            if !path.is_empty() {
                out.write_string(2, path).unwrap();
            }
            if !body.is_empty() {
                out.write_bytes(3, body.as_bytes()).unwrap();
            }
            out.flush().unwrap();
        }
        Any {
            type_url: RUNTIME_OPTIONS.into(),
            value,
            ..Default::default()
        }
    }

    #[test]
    fn no_options_is_default() {
        assert_eq!(parse(None, &no_file), Ok(RuntimeOptions::default()));
        assert_eq!(
            parse(Some(&Any::default()), &no_file),
            Ok(RuntimeOptions::default())
        );
        // Default runc options encode to nothing: just a type URL.
        assert_eq!(
            parse(Some(&runc_any(&RuncOptions::default())), &no_file),
            Ok(RuntimeOptions::default())
        );
    }

    #[test]
    fn runc_options_honoured() {
        let o = RuncOptions {
            shim_cgroup: "/arch-shims".into(),
            io_uid: 1000,
            io_gid: 1001,
            criu_work_path: "/tmp/w".into(),
            ..Default::default()
        };
        let got = parse(Some(&runc_any(&o)), &no_file).unwrap();
        assert_eq!(got.shim_cgroup.as_deref(), Some("/arch-shims"));
        assert_eq!(got.io_owner, Some((1000, 1001)));
        // A prefixed type URL (protobuf's Any::pack) is the same type.
        let mut any = runc_any(&o);
        any.type_url = format!("type.googleapis.com/{RUNC_OPTIONS}");
        assert_eq!(parse(Some(&any), &no_file).unwrap(), got);
    }

    #[test]
    fn runc_options_refused_by_name() {
        let cases: Vec<(RuncOptions, &str)> = vec![
            (
                RuncOptions {
                    binary_name: "crun".into(),
                    ..Default::default()
                },
                "BinaryName",
            ),
            (
                RuncOptions {
                    root: "/run/x".into(),
                    ..Default::default()
                },
                "Root",
            ),
            (
                RuncOptions {
                    no_pivot_root: true,
                    ..Default::default()
                },
                "NoPivotRoot",
            ),
            (
                RuncOptions {
                    no_new_keyring: true,
                    ..Default::default()
                },
                "NoNewKeyring",
            ),
        ];
        for (o, name) in cases {
            let err = parse(Some(&runc_any(&o)), &no_file).unwrap_err();
            assert!(
                err.to_string().contains(name) && err.to_string().contains("not supported"),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn toml_body_as_cri_sends_it() {
        let any = generic_any("", "ShimCgroup = \"/arch\"\nIoUid = 7\nIoGid = 8\n");
        let got = parse(Some(&any), &no_file).unwrap();
        assert_eq!(got.shim_cgroup.as_deref(), Some("/arch"));
        assert_eq!(got.io_owner, Some((7, 8)));
        // CRI's own keys may sit in the same table.
        let any = generic_any("", "TypeUrl = \"x\"\nIoUid = 7\n");
        assert_eq!(parse(Some(&any), &no_file).unwrap().io_owner, Some((7, 0)));
    }

    #[test]
    fn toml_config_path_as_ctr_sends_it() {
        let any = generic_any("/etc/arch/opts.toml", "");
        let read = |p: &Path| -> std::io::Result<Vec<u8>> {
            assert_eq!(p, Path::new("/etc/arch/opts.toml"));
            Ok(b"ShimCgroup = \"/s\"\n".to_vec())
        };
        let got = parse(Some(&any), &read).unwrap();
        assert_eq!(got.shim_cgroup.as_deref(), Some("/s"));
        let err = parse(Some(&any), &no_file).unwrap_err();
        assert!(
            matches!(&err, OptionsError::ConfigFile { path, .. } if path == "/etc/arch/opts.toml"),
            "{err}"
        );
        let bad = |_: &Path| -> std::io::Result<Vec<u8>> { Ok(b"IoUid = \"x\"".to_vec()) };
        let err = parse(Some(&any), &bad).unwrap_err();
        assert!(matches!(err, OptionsError::ConfigFile { .. }), "{err}");
    }

    #[test]
    fn toml_refusals_and_typos() {
        let systemd = parse(Some(&generic_any("", "SystemdCgroup = true\n")), &no_file).unwrap();
        assert_eq!(
            systemd.systemd_cgroup,
            Some(true),
            "the systemd driver is honoured"
        );
        let err = parse(Some(&generic_any("", "ShimCgroupp = \"/x\"\n")), &no_file).unwrap_err();
        assert_eq!(err, OptionsError::UnknownKey("ShimCgroupp".into()));
        assert!(err.to_string().contains("ShimCgroupp"));
        // An empty table is no options.
        assert_eq!(
            parse(Some(&generic_any("", "")), &no_file),
            Ok(RuntimeOptions::default())
        );
    }

    #[test]
    fn unknown_type_refused() {
        let any = Any {
            type_url: "example.v1.Options".into(),
            value: vec![1, 2],
            ..Default::default()
        };
        let err = parse(Some(&any), &no_file).unwrap_err();
        assert_eq!(err, OptionsError::UnknownType("example.v1.Options".into()));
    }

    #[test]
    fn generic_decode_skips_unknown_fields() {
        let mut value = Vec::new();
        {
            let mut out = CodedOutputStream::vec(&mut value);
            out.write_uint32(9, 5).unwrap();
            out.write_string(2, "/p").unwrap();
            out.flush().unwrap();
        }
        let g = GenericOptions::decode(&value).unwrap();
        assert_eq!(g.config_path, "/p");
        assert!(GenericOptions::decode(&[0x12, 0x05, b'a']).is_err());
    }
}
