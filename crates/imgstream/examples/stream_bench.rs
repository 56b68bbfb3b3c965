//! Capture throughput against a plain `criu dump` (docs/benchmarks.md,
//! "Streaming prototype"). Root; run in release (zstd's C code is built
//! without optimisation in dev):
//!
//!     cargo run --release -p arch-imgstream --example stream_bench -- DIR [MiB] [repeats]
//!
//! The workload is one python3 process holding MiB of memory, the first
//! half written with zeros (present pages, not untouched ones), the second
//! with os.urandom. Each mode dumps a fresh workload into DIR (a real disk:
//! /tmp may be anything), then restores it (stream modes through `Serve`).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arch_imgstream::{Capture, Codec, DirStore, Serve, Store};

const CRIU: &str = "/usr/local/sbin/criu";

const WORKLOAD: &str = r#"
import os, sys, time
n = int(sys.argv[1]) << 20
mib = 1 << 20
b = bytearray(n)
z = bytes(mib)
for off in range(0, n // 2, mib):
    b[off:off + mib] = z
for off in range(n // 2, n, mib):
    b[off:off + mib] = os.urandom(mib)
open(sys.argv[2], "w").write("ready")
while True:
    time.sleep(1)
"#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = PathBuf::from(
        args.get(1)
            .expect("usage: stream_bench DIR [MiB] [repeats]"),
    );
    let mib: u64 = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(512);
    let repeats: usize = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(2);
    let modes: Vec<(&str, Option<Codec>)> = vec![
        ("plain criu dump", None),
        ("stream none", Some(Codec::None)),
        (
            "stream zstd-1 t1",
            Some(Codec::Zstd {
                level: 1,
                threads: 1,
            }),
        ),
        (
            "stream zstd-1 t2",
            Some(Codec::Zstd {
                level: 1,
                threads: 2,
            }),
        ),
        (
            "stream zstd-3 t1",
            Some(Codec::Zstd {
                level: 3,
                threads: 1,
            }),
        ),
        (
            "stream zstd-3 t2",
            Some(Codec::Zstd {
                level: 3,
                threads: 2,
            }),
        ),
    ];
    println!("| mode | run | dump s | MiB/s (original) | + sha256 after (plain) s | original MiB | stored MiB | ratio | restore s | load avg |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in 1..=repeats {
        for (label, codec) in &modes {
            let dir = base.join(format!("{}-{r}", label.replace(' ', "_")));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("images")).unwrap();
            std::fs::create_dir_all(dir.join("store")).unwrap();
            let m = run(&dir, mib, *codec);
            let orig = m.original as f64 / (1u64 << 20) as f64;
            let stored = m.stored as f64 / (1u64 << 20) as f64;
            println!(
                "| {label} | {r} | {:.2} | {:.0} | {} | {orig:.0} | {stored:.0} | {:.2} | {:.2} | {} |",
                m.dump.as_secs_f64(),
                orig / m.dump.as_secs_f64(),
                m.hash.map(|h| format!("{:.2}", h.as_secs_f64())).unwrap_or_else(|| "-".into()),
                stored / orig,
                m.restore.as_secs_f64(),
                loadavg()
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

struct Measure {
    dump: Duration,
    /// Plain dumps: hashing the images afterwards, as the shim's commit does.
    hash: Option<Duration>,
    restore: Duration,
    original: u64,
    stored: u64,
}

fn run(dir: &Path, mib: u64, codec: Option<Codec>) -> Measure {
    let ready = dir.join("ready");
    let mut child = Command::new("/usr/bin/python3");
    child.args(["-c", WORKLOAD, &mib.to_string(), ready.to_str().unwrap()]);
    child
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    unsafe {
        child.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = child.spawn().unwrap();
    while !ready.exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    let images = dir.join("images");
    let store_dir = dir.join("store");
    let store: Arc<dyn Store> = Arc::new(DirStore::open_path(&store_dir).unwrap());
    let t = Instant::now();
    let (original, stored, records) = match codec {
        None => {
            criu(&["dump", "-t", &pid, "-o", "dump.log"], &images);
            // The streamer fsyncs what it stores; a plain dump does not.
            sync_dir(&images);
            let b = dir_bytes(&images);
            (b, b, None)
        }
        Some(c) => {
            let cap = Capture::start(&images, store.clone(), c, None).unwrap();
            criu(&["dump", "--stream", "-t", &pid, "-o", "dump.log"], &images);
            let recs = cap.finish().unwrap();
            let o = recs.iter().map(|r| r.original_size).sum();
            let s = recs.iter().map(|r| r.stored_size).sum();
            (o, s, Some(recs))
        }
    };
    let dump = t.elapsed();
    let hash = records.is_none().then(|| {
        let t = Instant::now();
        hash_dir(&images);
        t.elapsed()
    });
    child.wait().unwrap();
    let t = Instant::now();
    match records {
        None => criu(&["restore", "-d", "-o", "restore.log"], &images),
        Some(recs) => {
            let serve = Serve::start(&images, store, recs).unwrap();
            criu(&["restore", "--stream", "-d", "-o", "restore.log"], &images);
            serve.finish().unwrap();
        }
    }
    let restore = t.elapsed();
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    Measure {
        dump,
        hash,
        restore,
        original,
        stored,
    }
}

fn criu(args: &[&str], images: &Path) {
    let st = Command::new(CRIU)
        .args(args)
        .args(["-D", images.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(
        st.success(),
        "criu {args:?}: {st} (see {}/*.log)",
        images.display()
    );
}

/// fsync of every file and the directory, as the streamer does (not
/// syncfs: the disk is shared with other builds).
fn sync_dir(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        std::fs::File::open(e.unwrap().path())
            .unwrap()
            .sync_all()
            .unwrap();
    }
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
}

fn hash_dir(dir: &Path) {
    use sha2::Digest;
    for e in std::fs::read_dir(dir).unwrap() {
        let mut h = sha2::Sha256::new();
        std::io::copy(&mut std::fs::File::open(e.unwrap().path()).unwrap(), &mut h).unwrap();
        std::hint::black_box(h.finalize());
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".img"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .next()
        .unwrap_or("?")
        .to_string()
}
