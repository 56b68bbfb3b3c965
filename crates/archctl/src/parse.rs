//! Parsing of command-line values (durations, `NS/KEY`) and formatting of
//! sizes and ages for tables.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A committed image's identity as given on the command line: `NS/KEY`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageId {
    pub namespace: String,
    pub key: String,
}

impl FromStr for ImageId {
    type Err = String;

    /// `NS/KEY`, both valid store identities. Sidecar names (`key@...`)
    /// are refused because `@` is never valid in a key.
    fn from_str(s: &str) -> Result<Self, String> {
        let (ns, key) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected NAMESPACE/KEY"))?;
        if key.contains('@') {
            return Err(format!(
                "{s:?} names a sidecar ({key}), not an image; use `archctl gc` for those"
            ));
        }
        arch_image::validate_namespace(ns).map_err(|e| e.to_string())?;
        arch_image::validate_key(key).map_err(|e| e.to_string())?;
        Ok(ImageId {
            namespace: ns.to_string(),
            key: key.to_string(),
        })
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.key)
    }
}

/// `30s`, `30m`, `12h`, `7d`, `2w`, or a sum such as `1h30m`. A unit is
/// required: a bare number is ambiguous.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("invalid duration {s:?}: {why} (e.g. 7d, 12h, 30m, 1h30m)");
    if s.is_empty() {
        return Err(bad("empty"));
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad(&format!("unknown unit {c:?}"))),
        };
        let n: u64 = num
            .parse()
            .map_err(|_| bad("a unit needs a number before it"))?;
        num.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad("too large"))?;
    }
    if !num.is_empty() {
        return Err(bad("missing unit"));
    }
    Ok(Duration::from_secs(total))
}

/// `1.5 KiB`-style size for tables.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Coarse age for tables: `45s`, `12m`, `3h`, `5d`.
pub fn human_age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |s| parse_duration(s).unwrap().as_secs();
        assert_eq!(d("7d"), 7 * 86_400);
        assert_eq!(d("12h"), 12 * 3600);
        assert_eq!(d("30m"), 1800);
        assert_eq!(d("45s"), 45);
        assert_eq!(d("2w"), 14 * 86_400);
        assert_eq!(d("1h30m"), 5400);
        assert_eq!(d("0s"), 0);
        for bad in [
            "",
            "7",
            "d",
            "7x",
            "-1d",
            "1.5h",
            "h7",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration("7").unwrap_err().contains("missing unit"));
    }

    #[test]
    fn image_ids() {
        let id: ImageId = "default/job-1".parse().unwrap();
        assert_eq!(
            (id.namespace.as_str(), id.key.as_str()),
            ("default", "job-1")
        );
        assert_eq!(id.to_string(), "default/job-1");
        let k8s: ImageId = "k8s.io/a.b_c".parse().unwrap();
        assert_eq!(k8s.namespace, "k8s.io");
        for bad in [
            "job", "/job", "ns/", "ns/a/b", "../x", "ns/..", "ns/a b", "",
        ] {
            assert!(bad.parse::<ImageId>().is_err(), "{bad:?}");
        }
        let e = "ns/job@restored".parse::<ImageId>().unwrap_err();
        assert!(e.contains("sidecar"), "{e}");
    }

    #[test]
    fn formatting() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
        assert_eq!(human_age(59), "59s");
        assert_eq!(human_age(3600 * 5), "5h");
        assert_eq!(human_age(86_400 * 8), "8d");
    }
}
