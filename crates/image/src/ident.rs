//! Identity rules for namespaces and keys. Both become directory names under
//! the checkpoint root, so anything that could name another place ("..",
//! "a/b", NUL) must be refused before it reaches a path join.

use crate::error::{Error, Result};

/// Longest key the product allows.
pub const MAX_KEY_LEN: usize = 128;
/// containerd caps namespace labels at 76 characters.
pub const MAX_NAMESPACE_LEN: usize = 76;

/// Validate an ARCH key: 1–128 of `[A-Za-z0-9_.-]`, never `.` or `..`.
pub fn validate_key(key: &str) -> Result<()> {
    validate("key", key, MAX_KEY_LEN)
}

/// Kubernetes caps namespace names (DNS labels) at 63 characters.
pub const MAX_KUBERNETES_NAMESPACE_LEN: usize = 63;

/// Separates the containerd namespace from the Kubernetes namespace in a
/// scope name. Neither containerd nor Kubernetes allows it in a namespace,
/// so `k8s.io+team-a` can never be a plain containerd namespace.
pub const SCOPE_SEP: char = '+';

/// Validate a scope, the first directory level under the root: a
/// containerd namespace (1–76 of `[A-Za-z0-9_.-]`, never `.`/`..`), or
/// `{containerd namespace}+{kubernetes namespace}` for CRI containers.
pub fn validate_namespace(ns: &str) -> Result<()> {
    match ns.split_once(SCOPE_SEP) {
        None => validate("namespace", ns, MAX_NAMESPACE_LEN),
        Some((containerd, kubernetes)) => {
            validate("namespace", containerd, MAX_NAMESPACE_LEN)?;
            validate(
                "kubernetes namespace",
                kubernetes,
                MAX_KUBERNETES_NAMESPACE_LEN,
            )
        }
    }
}

/// The scope an image belongs to: what a workload cannot choose. The
/// containerd namespace is the shim's own; under CRI the Kubernetes
/// namespace is the one containerd wrote into the spec.
pub fn scope_name(containerd_ns: &str, kubernetes_ns: Option<&str>) -> Result<String> {
    validate("namespace", containerd_ns, MAX_NAMESPACE_LEN)?;
    match kubernetes_ns {
        None => Ok(containerd_ns.to_string()),
        Some(k) => {
            validate("kubernetes namespace", k, MAX_KUBERNETES_NAMESPACE_LEN)?;
            Ok(format!("{containerd_ns}{SCOPE_SEP}{k}"))
        }
    }
}

/// A hostile value, kept short enough for a one-line error.
fn shorten(value: &str) -> String {
    const SHOWN: usize = 64;
    match value.char_indices().nth(SHOWN) {
        None => value.to_string(),
        Some((cut, _)) => format!("{}… ({} bytes)", &value[..cut], value.len()),
    }
}

fn validate(kind: &'static str, value: &str, max: usize) -> Result<()> {
    let fail = |reason| {
        Err(Error::InvalidIdentity {
            kind,
            value: shorten(value),
            reason,
        })
    };
    if value.is_empty() {
        return fail("must not be empty");
    }
    // Byte length == char count here because only ASCII passes the next check.
    if value.len() > max {
        return fail("too long");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return fail("only [A-Za-z0-9_.-] allowed");
    }
    if value == "." || value == ".." {
        return fail("must not be . or ..");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid() {
        for k in ["a", "job-1", "A.b_c-9", "..a", ".hidden", &"x".repeat(128)] {
            validate_key(k).unwrap();
        }
        validate_namespace("k8s.io").unwrap();
        validate_namespace(&"n".repeat(76)).unwrap();
    }

    #[test]
    fn rejects_hostile() {
        let long = "x".repeat(129);
        for k in [
            "",
            ".",
            "..",
            "a/b",
            "/abs",
            "a\0b",
            "a b",
            "ü",
            "a\\b",
            long.as_str(),
        ] {
            let e = validate_key(k).unwrap_err();
            assert!(
                matches!(e, Error::InvalidIdentity { kind: "key", .. }),
                "{k:?}"
            );
        }
        assert!(validate_namespace(&"n".repeat(77)).is_err());
        assert!(validate_namespace("..").is_err());
    }

    #[test]
    fn kubernetes_scopes_never_collide_with_plain_namespaces() {
        assert_eq!(scope_name("k8s.io", None).unwrap(), "k8s.io");
        let scoped = scope_name("k8s.io", Some("team-a")).unwrap();
        assert_eq!(scoped, "k8s.io+team-a");
        validate_namespace(&scoped).unwrap();
        for bad in ["k8s.io+", "+team", "a+b+c", "k8s.io+..", "k8s.io+a/b"] {
            assert!(validate_namespace(bad).is_err(), "{bad}");
        }
        assert!(scope_name("k8s.io", Some("../x")).is_err());
        assert!(
            scope_name("a+b", None).is_err(),
            "no + in a containerd namespace"
        );
    }
}
