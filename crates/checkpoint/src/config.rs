//! Host configuration: where images go and how stops are handled. Only the
//! host decides this (a TOML file and the shim's own environment, which is
//! containerd's); nothing in a container's spec can point the shim elsewhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{CheckpointError, Result};
use crate::restore_copy::{parse_restore_copy, RestoreCopy};
use crate::stream_config::{
    parse_compression, parse_stream, parse_zstd_level, parse_zstd_threads, StreamConfig,
};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/containerd-arch/config.toml";
/// Names another config file.
pub const CONFIG_ENV: &str = "ARCH_CONFIG";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Local disk.
    Basic,
    /// NFS/EFS shared by several hosts: fsync, atomic rename, exclusive claims.
    NetworkFs,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchConfig {
    pub checkpoint_root: PathBuf,
    pub mode: Mode,
    /// The signal that, sent to an ARCH container's init, means "checkpoint, then stop".
    pub stop_signal: i32,
    /// How long a SIGKILL waits for a checkpoint in progress to commit.
    pub kill_deadline: Duration,
    /// CRIU dumps allowed at once on this host; more wait their turn.
    pub max_concurrent_dumps: usize,
    /// The shortest `ARCH_INTERVAL` a container may ask for.
    pub min_interval: Duration,
    /// Periodic dumps allowed at once on this host; a tick that finds none
    /// free is skipped (and counted), so periodic dumps never pile up in
    /// front of the stop-checkpoints that share the dump slots.
    pub max_periodic_dumps: usize,
    /// The fleet key that signs and verifies images (a file, 0600). Required
    /// in network-fs mode; in basic mode the host's own key
    /// ([`DEFAULT_HOST_KEY`]) is used, and made, when none is named.
    pub signing_key_file: Option<PathBuf>,
    /// Restore images without a signature (basic mode only; never the
    /// default). A bad signature is refused regardless.
    pub allow_unsigned: bool,
    /// network-fs: how long a restorer's lease on a taken image lasts
    /// without a heartbeat before another host gives the image back.
    pub claim_lease: Duration,
    /// Images kept per key, the newest included (1 = the newest only):
    /// a restore whose newest image is bad falls back to the older ones.
    pub generations: usize,
    /// Streaming and compression of CRIU's images.
    pub stream: StreamConfig,
    /// Encryption at rest (a root-owned 0600 file of 64 hex digits; off
    /// when none). Every checkpoint is then streamed and encrypted (a
    /// terminal's sealed after CRIU writes it); one that can be neither
    /// (pre-dumps) fails instead of being written in the clear.
    pub encryption_key_file: Option<PathBuf>,
    /// Where a restore's verified copy is written (memory or disk).
    pub restore_copy: RestoreCopy,
}

/// Half the dump slots: the other half stays free for stop-checkpoints.
pub fn default_max_periodic_dumps() -> usize {
    (default_max_concurrent_dumps() / 2).max(1)
}

/// The host's own signing key in basic mode when the configuration names
/// none: created (32 random bytes, 0600) by the first shim that needs it.
pub const DEFAULT_HOST_KEY: &str = "/var/lib/containerd-arch/host.key";

/// Four dumps per CPU: CRIU waits on the disk as much as it computes, so a
/// few per core keep both busy, while hundreds at once (a spot interruption
/// stopping every container) make CRIU time out freezing tasks.
pub fn default_max_concurrent_dumps() -> usize {
    4 * std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl Default for ArchConfig {
    fn default() -> Self {
        Self {
            checkpoint_root: PathBuf::from("/checkpoint"),
            mode: Mode::Basic,
            stop_signal: libc::SIGTERM,
            kill_deadline: Duration::from_secs(30),
            max_concurrent_dumps: default_max_concurrent_dumps(),
            min_interval: Duration::from_secs(1),
            max_periodic_dumps: default_max_periodic_dumps(),
            signing_key_file: None,
            encryption_key_file: None,
            allow_unsigned: false,
            claim_lease: DEFAULT_CLAIM_LEASE,
            generations: 1,
            stream: StreamConfig::default(),
            restore_copy: RestoreCopy::Auto,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    checkpoint_root: Option<String>,
    mode: Option<String>,
    stop_signal: Option<String>,
    kill_deadline_secs: Option<u64>,
    max_concurrent_dumps: Option<usize>,
    min_interval_secs: Option<u64>,
    max_periodic_dumps: Option<usize>,
    signing_key_file: Option<String>,
    allow_unsigned: Option<bool>,
    claim_lease_secs: Option<u64>,
    generations: Option<usize>,
    stream: Option<String>,
    compression: Option<String>,
    zstd_level: Option<i64>,
    zstd_threads: Option<i64>,
    encryption_key_file: Option<String>,
    restore_copy: Option<String>,
}

fn config_err(origin: &str, reason: impl Into<String>) -> CheckpointError {
    CheckpointError::Config {
        origin: origin.to_string(),
        reason: reason.into(),
    }
}

fn parse_mode(v: &str, origin: &str) -> Result<Mode> {
    match v {
        "basic" => Ok(Mode::Basic),
        "network-fs" => Ok(Mode::NetworkFs),
        other => Err(config_err(
            origin,
            format!("mode {other:?}: use \"basic\" or \"network-fs\""),
        )),
    }
}

/// "SIGTERM", "TERM" or "15".
pub fn parse_signal(v: &str, origin: &str) -> Result<i32> {
    let name = v.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let sig = match name {
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "HUP" => libc::SIGHUP,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "PWR" => libc::SIGPWR,
        n => n
            .parse::<i32>()
            .map_err(|_| config_err(origin, format!("stop signal {v:?} is not a signal")))?,
    };
    if !(1..=64).contains(&sig) || sig == libc::SIGKILL || sig == libc::SIGSTOP {
        return Err(config_err(
            origin,
            format!("stop signal {v:?} cannot be used (it cannot be intercepted)"),
        ));
    }
    Ok(sig)
}

fn parse_root(v: &str, origin: &str) -> Result<PathBuf> {
    let p = PathBuf::from(v);
    if !p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(config_err(
            origin,
            format!("checkpoint_root {v:?} must be an absolute path without .."),
        ));
    }
    Ok(p)
}

fn parse_key_path(v: &str, origin: &str) -> Result<PathBuf> {
    parse_abs_path("signing_key_file", v, origin)
}

fn parse_abs_path(name: &str, v: &str, origin: &str) -> Result<PathBuf> {
    let p = PathBuf::from(v);
    if !p.is_absolute() {
        return Err(config_err(
            origin,
            format!("{name} {v:?} must be an absolute path"),
        ));
    }
    Ok(p)
}

fn parse_dump_limit(n: usize, origin: &str) -> Result<usize> {
    match n {
        1..=1024 => Ok(n),
        _ => Err(config_err(
            origin,
            format!("{n} dumps at once: must be between 1 and 1024"),
        )),
    }
}

fn parse_min_interval(secs: u64, origin: &str) -> Result<Duration> {
    match secs {
        1.. => Ok(Duration::from_secs(secs)),
        0 => Err(config_err(origin, "min_interval_secs must be at least 1")),
    }
}

/// A minute: a restorer touches its lease every 15 s, so a few missed
/// touches (a slow NFS server) never lose it, and an image whose restorer
/// died waits about a minute for the next one.
pub const DEFAULT_CLAIM_LEASE: Duration = Duration::from_secs(60);

fn parse_claim_lease(secs: u64, origin: &str) -> Result<Duration> {
    match secs {
        2..=86400 => Ok(Duration::from_secs(secs)),
        _ => Err(config_err(
            origin,
            format!("claim_lease_secs {secs}: must be between 2 and 86400"),
        )),
    }
}

/// Most images a host may keep per key (each is a whole checkpoint): the
/// image store's bound.
use arch_image::MAX_GENERATIONS;

fn parse_generations(n: usize, origin: &str) -> Result<usize> {
    match n {
        1..=MAX_GENERATIONS => Ok(n),
        _ => Err(config_err(
            origin,
            format!("generations {n}: must be between 1 and {MAX_GENERATIONS}"),
        )),
    }
}

fn env_number<T: std::str::FromStr>(v: &str, origin: &str) -> Result<T> {
    v.trim()
        .parse()
        .map_err(|_| config_err(origin, format!("{v:?} is not a number")))
}

impl ArchConfig {
    /// Defaults, then the file (`$ARCH_CONFIG` or the default path, if it
    /// exists), then `ARCH_CHECKPOINT_ROOT`, `ARCH_MODE`, `ARCH_STOP_SIGNAL`,
    /// `ARCH_KILL_DEADLINE_SECS`, `ARCH_MAX_CONCURRENT_DUMPS`,
    /// `ARCH_SIGNING_KEY_FILE`, `ARCH_ALLOW_UNSIGNED`, `ARCH_CLAIM_LEASE_SECS`,
    /// `ARCH_GENERATIONS`, `ARCH_STREAM`, `ARCH_COMPRESSION`,
    /// `ARCH_ZSTD_LEVEL`, `ARCH_ZSTD_THREADS`, `ARCH_ENCRYPTION_KEY_FILE`,
    /// `ARCH_RESTORE_COPY` from the environment.
    pub fn load(env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let path = env(CONFIG_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
        let mut cfg = match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_toml(&text, &path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && env(CONFIG_ENV).is_none() => {
                Self::default()
            }
            Err(e) => return Err(config_err(&path.display().to_string(), e.to_string())),
        };
        if let Some(v) = env("ARCH_CHECKPOINT_ROOT") {
            cfg.checkpoint_root = parse_root(&v, "ARCH_CHECKPOINT_ROOT")?;
        }
        if let Some(v) = env("ARCH_MODE") {
            cfg.mode = parse_mode(&v, "ARCH_MODE")?;
        }
        if let Some(v) = env("ARCH_STOP_SIGNAL") {
            cfg.stop_signal = parse_signal(&v, "ARCH_STOP_SIGNAL")?;
        }
        if let Some(v) = env("ARCH_KILL_DEADLINE_SECS") {
            let secs = v.parse().map_err(|_| {
                config_err(
                    "ARCH_KILL_DEADLINE_SECS",
                    format!("{v:?} is not a number of seconds"),
                )
            })?;
            cfg.kill_deadline = Duration::from_secs(secs);
        }
        if let Some(v) = env("ARCH_MAX_CONCURRENT_DUMPS") {
            let n = v.parse().map_err(|_| {
                config_err(
                    "ARCH_MAX_CONCURRENT_DUMPS",
                    format!("{v:?} is not a number"),
                )
            })?;
            cfg.max_concurrent_dumps = parse_dump_limit(n, "ARCH_MAX_CONCURRENT_DUMPS")?;
        }
        if let Some(v) = env("ARCH_MIN_INTERVAL_SECS") {
            let origin = "ARCH_MIN_INTERVAL_SECS";
            cfg.min_interval = parse_min_interval(env_number(&v, origin)?, origin)?;
        }
        if let Some(v) = env("ARCH_MAX_PERIODIC_DUMPS") {
            let origin = "ARCH_MAX_PERIODIC_DUMPS";
            cfg.max_periodic_dumps = parse_dump_limit(env_number(&v, origin)?, origin)?;
        }
        if let Some(v) = env("ARCH_ENCRYPTION_KEY_FILE") {
            let origin = "ARCH_ENCRYPTION_KEY_FILE";
            cfg.encryption_key_file = match v.trim() {
                // Set but empty: off (an override of the file's key).
                "" => None,
                v => Some(parse_abs_path("encryption_key_file", v, origin)?),
            };
        }
        if let Some(v) = env("ARCH_SIGNING_KEY_FILE") {
            cfg.signing_key_file = Some(parse_key_path(&v, "ARCH_SIGNING_KEY_FILE")?);
        }
        if let Some(v) = env("ARCH_ALLOW_UNSIGNED") {
            cfg.allow_unsigned = match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" => false,
                _ => {
                    return Err(config_err(
                        "ARCH_ALLOW_UNSIGNED",
                        format!("{v:?}: use true or false"),
                    ))
                }
            };
        }
        if let Some(v) = env("ARCH_CLAIM_LEASE_SECS") {
            let origin = "ARCH_CLAIM_LEASE_SECS";
            cfg.claim_lease = parse_claim_lease(env_number(&v, origin)?, origin)?;
        }
        if let Some(v) = env("ARCH_GENERATIONS") {
            let origin = "ARCH_GENERATIONS";
            cfg.generations = parse_generations(env_number(&v, origin)?, origin)?;
        }
        if let Some(v) = env("ARCH_STREAM") {
            cfg.stream.mode = parse_stream(&v, "ARCH_STREAM")?;
        }
        if let Some(v) = env("ARCH_COMPRESSION") {
            cfg.stream.compression = parse_compression(&v, "ARCH_COMPRESSION")?;
        }
        if let Some(v) = env("ARCH_ZSTD_LEVEL") {
            let origin = "ARCH_ZSTD_LEVEL";
            cfg.stream.zstd_level = parse_zstd_level(env_number(&v, origin)?, origin)?;
        }
        if let Some(v) = env("ARCH_ZSTD_THREADS") {
            let origin = "ARCH_ZSTD_THREADS";
            cfg.stream.zstd_threads = parse_zstd_threads(env_number(&v, origin)?, origin)?;
        }
        if let Some(v) = env("ARCH_RESTORE_COPY") {
            cfg.restore_copy = parse_restore_copy(&v, "ARCH_RESTORE_COPY")?;
        }
        cfg.check_trust("the configuration")?;
        cfg.check_encryption("the configuration")?;
        Ok(cfg)
    }

    /// Encryption happens in the streamer: with streaming off every
    /// checkpoint would fail, so say it once, here.
    fn check_encryption(&self, origin: &str) -> Result<()> {
        if self.encryption_key_file.is_some() && self.stream.mode == crate::StreamMode::Off {
            return Err(config_err(
                origin,
                "encryption_key_file needs streamed dumps (stream \"auto\" or \"on\"): only the streamer encrypts",
            ));
        }
        Ok(())
    }

    /// network-fs: the root is shared with other hosts, so every image must
    /// be signed with the fleet key, which the configuration must name.
    fn check_trust(&self, origin: &str) -> Result<()> {
        if self.mode == Mode::NetworkFs {
            if self.allow_unsigned {
                return Err(config_err(
                    origin,
                    "allow_unsigned cannot be used in network-fs mode: a shared root is not trusted",
                ));
            }
            if self.signing_key_file.is_none() {
                return Err(config_err(
                    origin,
                    "network-fs mode needs signing_key_file (ARCH_SIGNING_KEY_FILE): the fleet key that signs images",
                ));
            }
        }
        Ok(())
    }

    pub fn from_process_env() -> Result<Self> {
        Self::load(|k| std::env::var(k).ok())
    }

    pub fn from_toml(text: &str, path: &Path) -> Result<Self> {
        let origin = path.display().to_string();
        let file: FileConfig =
            toml::from_str(text).map_err(|e| config_err(&origin, e.to_string()))?;
        let mut cfg = Self::default();
        if let Some(v) = file.checkpoint_root {
            cfg.checkpoint_root = parse_root(&v, &origin)?;
        }
        if let Some(v) = file.mode {
            cfg.mode = parse_mode(&v, &origin)?;
        }
        if let Some(v) = file.stop_signal {
            cfg.stop_signal = parse_signal(&v, &origin)?;
        }
        if let Some(v) = file.kill_deadline_secs {
            cfg.kill_deadline = Duration::from_secs(v);
        }
        if let Some(v) = file.max_concurrent_dumps {
            cfg.max_concurrent_dumps = parse_dump_limit(v, &origin)?;
        }
        if let Some(v) = file.min_interval_secs {
            cfg.min_interval = parse_min_interval(v, &origin)?;
        }
        if let Some(v) = file.max_periodic_dumps {
            cfg.max_periodic_dumps = parse_dump_limit(v, &origin)?;
        }
        if let Some(v) = file.encryption_key_file {
            cfg.encryption_key_file = Some(parse_abs_path("encryption_key_file", &v, &origin)?);
        }
        if let Some(v) = file.signing_key_file {
            cfg.signing_key_file = Some(parse_key_path(&v, &origin)?);
        }
        if let Some(v) = file.allow_unsigned {
            cfg.allow_unsigned = v;
        }
        if let Some(v) = file.claim_lease_secs {
            cfg.claim_lease = parse_claim_lease(v, &origin)?;
        }
        if let Some(v) = file.generations {
            cfg.generations = parse_generations(v, &origin)?;
        }
        if let Some(v) = file.stream {
            cfg.stream.mode = parse_stream(&v, &origin)?;
        }
        if let Some(v) = file.compression {
            cfg.stream.compression = parse_compression(&v, &origin)?;
        }
        if let Some(v) = file.zstd_level {
            cfg.stream.zstd_level = parse_zstd_level(v, &origin)?;
        }
        if let Some(v) = file.zstd_threads {
            cfg.stream.zstd_threads = parse_zstd_threads(v, &origin)?;
        }
        if let Some(v) = file.restore_copy {
            cfg.restore_copy = parse_restore_copy(&v, &origin)?;
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<ArchConfig> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ArchConfig::load(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_without_file_or_env() {
        let cfg = load(&[("ARCH_CONFIG_UNUSED", "")]).unwrap();
        assert_eq!(cfg.checkpoint_root, PathBuf::from("/checkpoint"));
        assert_eq!(cfg.mode, Mode::Basic);
        assert_eq!(cfg.stop_signal, libc::SIGTERM);
        assert_eq!(cfg.claim_lease, DEFAULT_CLAIM_LEASE);
        assert_eq!(cfg.generations, 1, "the newest image only");
        assert_eq!(cfg.restore_copy, RestoreCopy::Auto);
    }

    #[test]
    fn file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "checkpoint_root = \"/srv/ckpt\"\nmode = \"network-fs\"\nsigning_key_file = \"/etc/arch/fleet.key\"\nstop_signal = \"SIGUSR1\"\nkill_deadline_secs = 5\nmax_concurrent_dumps = 3\nmin_interval_secs = 10\nmax_periodic_dumps = 2\nclaim_lease_secs = 30\ngenerations = 3\nstream = \"off\"\ncompression = \"none\"\nzstd_level = 5\nzstd_threads = 2\nrestore_copy = \"disk\"\n").unwrap();
        let f = file.to_str().unwrap();
        let cfg = load(&[("ARCH_CONFIG", f)]).unwrap();
        assert_eq!(cfg.restore_copy, RestoreCopy::Disk);
        assert_eq!(cfg.checkpoint_root, PathBuf::from("/srv/ckpt"));
        assert_eq!(cfg.mode, Mode::NetworkFs);
        assert_eq!(cfg.stop_signal, libc::SIGUSR1);
        assert_eq!(cfg.kill_deadline, Duration::from_secs(5));
        assert_eq!(cfg.max_concurrent_dumps, 3);
        assert_eq!(cfg.min_interval, Duration::from_secs(10));
        assert_eq!(cfg.max_periodic_dumps, 2);
        assert_eq!(cfg.claim_lease, Duration::from_secs(30));
        assert_eq!(cfg.generations, 3);
        assert_eq!(
            cfg.stream,
            StreamConfig {
                mode: crate::StreamMode::Off,
                compression: crate::Compression::None,
                zstd_level: 5,
                zstd_threads: 2
            }
        );
        let cfg = load(&[
            ("ARCH_CONFIG", f),
            ("ARCH_CHECKPOINT_ROOT", "/mnt/efs"),
            ("ARCH_STOP_SIGNAL", "2"),
            ("ARCH_RESTORE_COPY", "auto"),
        ])
        .unwrap();
        assert_eq!(cfg.checkpoint_root, PathBuf::from("/mnt/efs"));
        assert_eq!(cfg.stop_signal, libc::SIGINT);
        assert_eq!(cfg.restore_copy, RestoreCopy::Auto);
    }

    #[test]
    fn network_fs_needs_a_key_and_never_allows_unsigned() {
        let e = load(&[("ARCH_MODE", "network-fs")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("signing_key_file"), "{e}");
        let e = load(&[
            ("ARCH_MODE", "network-fs"),
            ("ARCH_SIGNING_KEY_FILE", "/etc/arch/fleet.key"),
            ("ARCH_ALLOW_UNSIGNED", "true"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("allow_unsigned"), "{e}");
        let cfg = load(&[
            ("ARCH_MODE", "network-fs"),
            ("ARCH_SIGNING_KEY_FILE", "/etc/arch/fleet.key"),
        ])
        .unwrap();
        assert_eq!(cfg.signing_key_file, Some("/etc/arch/fleet.key".into()));
        assert!(!cfg.allow_unsigned, "never unsigned by default");
        assert!(
            load(&[("ARCH_ALLOW_UNSIGNED", "1")])
                .unwrap()
                .allow_unsigned
        );
        assert!(load(&[("ARCH_SIGNING_KEY_FILE", "rel.key")]).is_err());
    }

    #[test]
    fn encryption_key_file_from_file_or_env() {
        assert_eq!(
            load(&[]).unwrap().encryption_key_file,
            None,
            "off by default"
        );
        let cfg = load(&[("ARCH_ENCRYPTION_KEY_FILE", "/etc/arch/images.key")]).unwrap();
        assert_eq!(cfg.encryption_key_file, Some("/etc/arch/images.key".into()));
        let e = load(&[("ARCH_ENCRYPTION_KEY_FILE", "images.key")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ARCH_ENCRYPTION_KEY_FILE") && e.contains("absolute"),
            "{e}"
        );
        let e = load(&[
            ("ARCH_ENCRYPTION_KEY_FILE", "/etc/arch/images.key"),
            ("ARCH_STREAM", "off"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("encryption_key_file needs streamed dumps"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "encryption_key_file = \"/k/images.key\"\n").unwrap();
        let f = file.to_str().unwrap();
        let cfg = load(&[("ARCH_CONFIG", f)]).unwrap();
        assert_eq!(cfg.encryption_key_file, Some("/k/images.key".into()));
        // The environment can turn the file's key off.
        let cfg = load(&[("ARCH_CONFIG", f), ("ARCH_ENCRYPTION_KEY_FILE", "")]).unwrap();
        assert_eq!(cfg.encryption_key_file, None);
    }

    #[test]
    fn bad_values_are_clear_errors() {
        for (k, v) in [
            ("ARCH_CHECKPOINT_ROOT", "relative/dir"),
            ("ARCH_CHECKPOINT_ROOT", "/a/../etc"),
            ("ARCH_MODE", "s3"),
            ("ARCH_STOP_SIGNAL", "SIGKILL"),
            ("ARCH_STOP_SIGNAL", "NOPE"),
            ("ARCH_KILL_DEADLINE_SECS", "soon"),
            ("ARCH_MAX_CONCURRENT_DUMPS", "0"),
            ("ARCH_MAX_CONCURRENT_DUMPS", "many"),
            ("ARCH_MIN_INTERVAL_SECS", "0"),
            ("ARCH_MIN_INTERVAL_SECS", "soon"),
            ("ARCH_MAX_PERIODIC_DUMPS", "0"),
            ("ARCH_CLAIM_LEASE_SECS", "1"),
            ("ARCH_CLAIM_LEASE_SECS", "soon"),
            ("ARCH_GENERATIONS", "0"),
            ("ARCH_GENERATIONS", "17"),
            ("ARCH_GENERATIONS", "two"),
            ("ARCH_STREAM", "maybe"),
            ("ARCH_COMPRESSION", "lz4"),
            ("ARCH_ZSTD_LEVEL", "0"),
            ("ARCH_ZSTD_THREADS", "many"),
            ("ARCH_RESTORE_COPY", "memory"),
        ] {
            let e = load(&[(k, v)]).unwrap_err().to_string();
            assert!(e.contains(k), "{k}={v}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "generations = 0\n").unwrap();
        let e = load(&[("ARCH_CONFIG", file.to_str().unwrap())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("generations 0"), "{e}");
        std::fs::write(&file, "checkpoint_rot = \"/x\"\n").unwrap();
        assert!(load(&[("ARCH_CONFIG", file.to_str().unwrap())])
            .unwrap_err()
            .to_string()
            .contains("unknown field"));
        assert!(
            load(&[("ARCH_CONFIG", "/does/not/exist.toml")]).is_err(),
            "a named file must exist"
        );
    }
}
