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

/// Validate a containerd namespace: 1–76 of `[A-Za-z0-9_.-]`, never `.`/`..`.
pub fn validate_namespace(ns: &str) -> Result<()> {
    validate("namespace", ns, MAX_NAMESPACE_LEN)
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
}
