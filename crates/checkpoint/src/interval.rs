//! Periodic checkpoints: `ARCH_INTERVAL` in the process environment or the
//! `io.arch.interval` annotation (the environment wins, as for the opt-in),
//! e.g. `30s`, `5m`, `1h`. A spot host that dies without warning still
//! leaves an image at most one interval old.

use std::collections::HashMap;
use std::time::Duration;

use crate::error::{CheckpointError, Result};
use crate::policy::env_value;

pub const INTERVAL_ENV: &str = "ARCH_INTERVAL";
pub const INTERVAL_ANNOTATION: &str = "io.arch.interval";

/// Parses `<number><unit>` with unit `s`, `m` or `h`.
pub fn parse_interval(value: &str, origin: &str) -> Result<Duration> {
    let invalid = |why: &str| {
        CheckpointError::Policy(format!(
            "invalid {origin}={value:?}: {why} (use e.g. 30s, 5m or 1h)"
        ))
    };
    let v = value.trim();
    let unit_at = v
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| invalid("no unit"))?;
    let (number, unit) = v.split_at(unit_at);
    let n: u64 = number.parse().map_err(|_| invalid("not a whole number"))?;
    let secs_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(invalid("unknown unit")),
    };
    let secs = n
        .checked_mul(secs_per)
        .filter(|s| *s > 0)
        .ok_or_else(|| invalid("must be more than zero"))?;
    Ok(Duration::from_secs(secs))
}

/// The container's periodic checkpoint interval, if it asks for one; an
/// invalid value, or one under the host's `floor`, fails Create.
pub fn periodic_interval(
    env: &[String],
    annotations: &HashMap<String, String>,
    floor: Duration,
) -> Result<Option<Duration>> {
    let (value, origin) = match (
        env_value(env, INTERVAL_ENV),
        annotations.get(INTERVAL_ANNOTATION),
    ) {
        (Some(v), _) => (v, INTERVAL_ENV),
        (None, Some(v)) => (v.as_str(), INTERVAL_ANNOTATION),
        (None, None) => return Ok(None),
    };
    let interval = parse_interval(value, origin)?;
    if interval < floor {
        return Err(CheckpointError::Policy(format!(
            "{origin}={value:?} is below this host's minimum interval of {}s",
            floor.as_secs()
        )));
    }
    Ok(Some(interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_interval("30s", "x").unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_interval(" 5m", "x").unwrap(),
            Duration::from_secs(300)
        );
        assert_eq!(
            parse_interval("1h", "x").unwrap(),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn invalid_values_name_the_origin_and_value() {
        for bad in [
            "",
            "10",
            "s",
            "1.5s",
            "-1s",
            "0s",
            "3d",
            "99999999999999999999h",
        ] {
            let e = parse_interval(bad, "ARCH_INTERVAL")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("ARCH_INTERVAL") && e.contains(&format!("{bad:?}")),
                "{e}"
            );
        }
    }

    #[test]
    fn env_beats_annotation_and_the_floor_holds() {
        let ann: HashMap<String, String> =
            [(INTERVAL_ANNOTATION.to_string(), "1h".to_string())].into();
        let env = vec!["ARCH_INTERVAL=2s".to_string()];
        let one = Duration::from_secs(1);
        assert_eq!(
            periodic_interval(&env, &ann, one).unwrap(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            periodic_interval(&[], &ann, one).unwrap(),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(periodic_interval(&[], &HashMap::new(), one).unwrap(), None);
        let e = periodic_interval(&env, &ann, Duration::from_secs(10)).unwrap_err();
        assert!(e.to_string().contains("minimum"), "{e}");
    }
}
