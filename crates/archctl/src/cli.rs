//! Command-line interface (clap derive).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::parse::{parse_duration, ImageId};
use crate::tags::validate_tag;

/// Operator CLI for ARCH checkpoint images and hosts.
#[derive(Debug, Parser)]
#[command(name = "archctl", version)]
pub struct Cli {
    /// Checkpoint root (default: the host configuration's checkpoint_root,
    /// from ARCH_CONFIG / ARCH_CHECKPOINT_ROOT / /etc/containerd-arch/config.toml).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List images: NAMESPACE KEY CONTAINER AGE SIZE STATUS TAGS.
    Ls {
        #[arg(long)]
        json: bool,
        /// Also show restored and failed sidecars.
        #[arg(long)]
        all: bool,
        /// Only images carrying this tag.
        #[arg(long, value_name = "T", value_parser = validate_tag)]
        tag: Option<String>,
    },
    /// Show an image's manifest, phase durations and files.
    Inspect {
        #[arg(value_name = "NS/KEY")]
        image: ImageId,
        #[arg(long)]
        json: bool,
    },
    /// Write one file of an image to stdout as it was written (decoded,
    /// decrypted with the host's encryption_key_file), checked against the
    /// manifest: `archctl cat ns/job criu/dump.log`.
    Cat {
        #[arg(value_name = "NS/KEY")]
        image: ImageId,
        /// As CRIU or the shim named it: criu/dump.log, criu/pstree.img,
        /// config.json (not the stored name, criu/dump.log.zst.enc).
        #[arg(value_name = "FILE")]
        file: String,
    },
    /// Re-verify sizes and checksums of the given images (default: all).
    Validate {
        #[arg(value_name = "NS/KEY")]
        images: Vec<ImageId>,
        /// Verify signatures with this fleet key file (default: the host
        /// configuration's signing_key_file, if it names one); unsigned
        /// images then fail unless the configuration allows them.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// Remove images.
    Rm {
        #[arg(value_name = "NS/KEY", required = true)]
        images: Vec<ImageId>,
    },
    /// Remove old images, failed sidecars and stale temporaries.
    Gc {
        /// Remove images committed longer ago than this (7d, 12h, 30m).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        older_than: Option<Duration>,
        /// Always keep the N newest images per namespace.
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// Also remove @failed- sidecars (subject to --older-than).
        #[arg(long)]
        failed: bool,
        /// Age after which @tmp-/@old- leftovers are stale.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
        tmp_age: Duration,
        /// Print what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Add a tag to an image.
    Tag {
        #[arg(value_name = "NS/KEY")]
        image: ImageId,
        #[arg(value_parser = validate_tag)]
        tag: String,
    },
    /// Remove a tag from an image.
    Untag {
        #[arg(value_name = "NS/KEY")]
        image: ImageId,
        #[arg(value_parser = validate_tag)]
        tag: String,
    },
    /// Image counts and bytes per namespace; record counts by op/outcome.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Check the host: CRIU, kernel features, cgroups, containerd, config, root.
    Check {
        /// containerd socket (default: $CONTAINERD_ADDRESS or /run/containerd/containerd.sock).
        #[arg(long, value_name = "SOCKET")]
        address: Option<PathBuf>,
    },
    /// Write an image as one portable archive (zstd tar, CRI-O checkpoint
    /// layout plus ARCH's manifest) to FILE, or to stdout with `-`.
    Export {
        #[arg(value_name = "NS/KEY")]
        image: ImageId,
        /// Where to write (default `-`, stdout); also `-o FILE`.
        #[arg(value_name = "FILE|-", conflicts_with = "output")]
        to: Option<PathBuf>,
        #[arg(short, long, value_name = "FILE|-")]
        output: Option<PathBuf>,
        /// zstd level (1 fast … 19 small).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
        level: i32,
    },
    /// Validate an archive fully, then add its image to the root (from
    /// FILE, or stdin with `-`): `archctl export ns/job - | ssh b archctl import -`.
    Import {
        #[arg(value_name = "FILE|-")]
        input: PathBuf,
        /// Land it in this namespace instead of the archive's.
        #[arg(long, value_name = "NS")]
        namespace: Option<String>,
        /// Land it under this key instead of the archive's.
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
        /// Import an archive that is unsigned or signed with a key this host
        /// does not have (another host's basic-mode key, CRI-O): you vouch for
        /// it. Its files are still checked against its manifest.
        #[arg(long)]
        allow_unsigned: bool,
    },
    /// Prometheus text metrics from records and the store.
    Metrics {
        /// Serve GET /metrics over HTTP on ADDR (e.g. 127.0.0.1:9464).
        #[arg(long, value_name = "ADDR")]
        serve: Option<String>,
    },
}
