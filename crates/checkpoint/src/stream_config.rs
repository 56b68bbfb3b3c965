//! How dumps store CRIU's images (issue 15): streamed through the shim
//! (CRIU's `--stream`) and compressed, or written by CRIU as files.

use crate::error::{CheckpointError, Result};

/// Whether dumps stream CRIU's images through the shim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamMode {
    /// Streamed when CRIU supports `--stream` (CRIU 4.x built with it).
    Auto,
    /// Always streamed: a CRIU without streaming fails the checkpoint.
    On,
    /// CRIU writes its image files itself, hashed at commit (format 2's way).
    Off,
}

/// How streamed files are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    pub mode: StreamMode,
    pub compression: Compression,
    /// zstd's level (1..=19): 1 by default, the fastest that still halves
    /// typical memory (docs/configuration.md).
    pub zstd_level: i32,
    /// zstd worker threads per streamed file (0 or 1: the file's own
    /// thread). CRIU streams several files at once already.
    pub zstd_threads: u32,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            mode: StreamMode::Auto,
            compression: Compression::Zstd,
            zstd_level: 1,
            zstd_threads: 1,
        }
    }
}

impl StreamConfig {
    /// The codec of a streamed dump.
    pub fn codec(&self) -> arch_imgstream::Codec {
        match self.compression {
            Compression::None => arch_imgstream::Codec::None,
            Compression::Zstd => arch_imgstream::Codec::Zstd {
                level: self.zstd_level,
                threads: self.zstd_threads,
            },
        }
    }

    /// Whether a dump streams, given whether this host's CRIU can.
    pub fn streams(&self, criu_can_stream: bool) -> bool {
        match self.mode {
            StreamMode::Auto => criu_can_stream,
            StreamMode::On => true,
            StreamMode::Off => false,
        }
    }
}

fn err(origin: &str, reason: String) -> CheckpointError {
    CheckpointError::Config {
        origin: origin.to_string(),
        reason,
    }
}

pub(crate) fn parse_stream(v: &str, origin: &str) -> Result<StreamMode> {
    match v.trim() {
        "auto" => Ok(StreamMode::Auto),
        "on" => Ok(StreamMode::On),
        "off" => Ok(StreamMode::Off),
        other => Err(err(
            origin,
            format!("stream {other:?}: use \"auto\", \"on\" or \"off\""),
        )),
    }
}

pub(crate) fn parse_compression(v: &str, origin: &str) -> Result<Compression> {
    match v.trim() {
        "zstd" => Ok(Compression::Zstd),
        "none" => Ok(Compression::None),
        other => Err(err(
            origin,
            format!("compression {other:?}: use \"zstd\" or \"none\""),
        )),
    }
}

pub(crate) fn parse_zstd_level(n: i64, origin: &str) -> Result<i32> {
    match n {
        1..=19 => Ok(n as i32),
        _ => Err(err(
            origin,
            format!("zstd_level {n}: must be between 1 and 19"),
        )),
    }
}

pub(crate) fn parse_zstd_threads(n: i64, origin: &str) -> Result<u32> {
    match n {
        0..=64 => Ok(n as u32),
        _ => Err(err(
            origin,
            format!("zstd_threads {n}: must be between 0 and 64"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_decide() {
        assert_eq!(parse_stream("auto", "x").unwrap(), StreamMode::Auto);
        assert_eq!(parse_stream("off", "x").unwrap(), StreamMode::Off);
        assert!(parse_stream("yes", "x").is_err());
        assert_eq!(parse_compression("none", "x").unwrap(), Compression::None);
        assert!(parse_compression("lz4", "x").is_err());
        assert!(parse_zstd_level(0, "x").is_err() && parse_zstd_level(20, "x").is_err());
        assert!(parse_zstd_threads(65, "x").is_err());
        let d = StreamConfig::default();
        assert!(d.streams(true) && !d.streams(false));
        assert_eq!(
            d.codec(),
            arch_imgstream::Codec::Zstd {
                level: 1,
                threads: 1
            }
        );
        let off = StreamConfig {
            mode: StreamMode::Off,
            ..d
        };
        assert!(!off.streams(true));
        let none = StreamConfig {
            compression: Compression::None,
            ..d
        };
        assert_eq!(none.codec(), arch_imgstream::Codec::None);
    }
}
