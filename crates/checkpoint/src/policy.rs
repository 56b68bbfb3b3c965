//! Opt-in and identity, from the container's OCI spec: `ARCH_ENABLE` /
//! `ARCH_KEY` in the process environment, or the `io.arch.enable` /
//! `io.arch.key` annotations. The environment wins over annotations, as it
//! is what ECS task definitions and `docker run -e` set.

use std::collections::HashMap;

use crate::error::{CheckpointError, Result};

pub const ENABLE_ENV: &str = "ARCH_ENABLE";
pub const KEY_ENV: &str = "ARCH_KEY";
pub const ENABLE_ANNOTATION: &str = "io.arch.enable";
pub const KEY_ANNOTATION: &str = "io.arch.key";

/// An opted-in container's identity across re-creations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchIdentity {
    pub namespace: String,
    pub key: String,
}

pub(crate) fn env_value<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    // The last definition wins, as in execve's environment handling by libc.
    env.iter()
        .rev()
        .find_map(|kv| kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
}

fn parse_enable(value: &str, origin: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err(CheckpointError::Policy(format!(
            "invalid {origin}={value:?}: use 1/true/yes to enable ARCH or 0/false/no to disable it"
        ))),
    }
}

/// Decides whether a container is opted in, and under which key.
/// Returns None for containers that are not; an error for invalid values,
/// which must fail Create.
pub fn arch_identity(
    env: &[String],
    annotations: &HashMap<String, String>,
    namespace: &str,
    container_id: &str,
) -> Result<Option<ArchIdentity>> {
    let enabled = match (
        env_value(env, ENABLE_ENV),
        annotations.get(ENABLE_ANNOTATION),
    ) {
        (Some(v), _) => parse_enable(v, ENABLE_ENV)?,
        (None, Some(v)) => parse_enable(v, ENABLE_ANNOTATION)?,
        (None, None) => false,
    };
    if !enabled {
        return Ok(None);
    }
    let (key, origin) = match (env_value(env, KEY_ENV), annotations.get(KEY_ANNOTATION)) {
        (Some(k), _) => (k.to_string(), KEY_ENV),
        (None, Some(k)) => (k.clone(), KEY_ANNOTATION),
        (None, None) => (container_id.to_string(), "container id"),
    };
    arch_image::validate_key(&key)
        .map_err(|e| CheckpointError::Policy(format!("{origin}: {e}")))?;
    // The scope: what the workload cannot set. The containerd namespace is
    // the shim's own; under CRI, containerd writes the pod's Kubernetes
    // namespace into the spec, after any annotations the pod passed on.
    let kubernetes = annotations
        .get(crate::profile::SANDBOX_NAMESPACE_ANNOTATION)
        .map(String::as_str);
    let scope = arch_image::scope_name(namespace, kubernetes).map_err(|e| {
        CheckpointError::Policy(format!(
            "namespace {namespace:?} (kubernetes namespace {kubernetes:?}) cannot hold ARCH images: {e}"
        ))
    })?;
    Ok(Some(ArchIdentity {
        namespace: scope,
        key,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(env: &[&str], ann: &[(&str, &str)]) -> Result<Option<ArchIdentity>> {
        let env: Vec<String> = env.iter().map(|s| s.to_string()).collect();
        let ann = ann
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        arch_identity(&env, &ann, "default", "ctr-1")
    }

    #[test]
    fn not_opted_in_by_default() {
        assert_eq!(id(&["PATH=/bin"], &[]).unwrap(), None);
    }

    #[test]
    fn accepted_spellings() {
        for v in ["1", "true", "YES", "True"] {
            assert!(
                id(&[&format!("ARCH_ENABLE={v}")], &[]).unwrap().is_some(),
                "{v}"
            );
        }
        for v in ["0", "false", "no", "NO"] {
            assert!(
                id(&[&format!("ARCH_ENABLE={v}")], &[]).unwrap().is_none(),
                "{v}"
            );
        }
    }

    #[test]
    fn invalid_enable_is_an_error_naming_the_value() {
        let e = id(&["ARCH_ENABLE=maybe"], &[]).unwrap_err().to_string();
        assert!(e.contains("ARCH_ENABLE") && e.contains("maybe"), "{e}");
        let e = id(&[], &[("io.arch.enable", "on")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("io.arch.enable"), "{e}");
    }

    #[test]
    fn key_defaults_to_container_id_and_env_beats_annotation() {
        assert_eq!(id(&["ARCH_ENABLE=1"], &[]).unwrap().unwrap().key, "ctr-1");
        let ident = id(
            &["ARCH_ENABLE=1", "ARCH_KEY=job-7"],
            &[("io.arch.key", "other")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(ident.key, "job-7");
        let ident = id(
            &[],
            &[("io.arch.enable", "true"), ("io.arch.key", "ann-key")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(ident.key, "ann-key");
        assert_eq!(ident.namespace, "default");
    }

    #[test]
    fn hostile_keys_are_refused() {
        let long = format!("ARCH_KEY={}", "a".repeat(129));
        for bad in [
            "ARCH_KEY=..",
            "ARCH_KEY=.",
            "ARCH_KEY=a/b",
            "ARCH_KEY=a\0b",
            "ARCH_KEY=",
            long.as_str(),
        ] {
            let e = id(&["ARCH_ENABLE=1", bad], &[]);
            assert!(e.is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cri_containers_are_scoped_to_their_kubernetes_namespace() {
        let key = ["ARCH_ENABLE=1", "ARCH_KEY=job"];
        let a = id(&key, &[("io.kubernetes.cri.sandbox-namespace", "team-a")])
            .unwrap()
            .unwrap();
        let b = id(&key, &[("io.kubernetes.cri.sandbox-namespace", "team-b")])
            .unwrap()
            .unwrap();
        assert_eq!(a.namespace, "default+team-a");
        assert_ne!(a.namespace, b.namespace, "same key, other pods' namespace");
        let e = id(&key, &[("io.kubernetes.cri.sandbox-namespace", "../x")]).unwrap_err();
        assert!(e.to_string().contains("kubernetes namespace"), "{e}");
    }

    #[test]
    fn last_env_definition_wins() {
        assert!(id(&["ARCH_ENABLE=1", "ARCH_ENABLE=0"], &[])
            .unwrap()
            .is_none());
    }
}
