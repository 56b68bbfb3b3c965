//! Times a restore's verified copy of one streamed (zstd 1) page file,
//! the part of a restore before CRIU (read, decode, sha256, write).
//!   cargo run --release -p arch-image --example copy_bench -- DIR [MiB] [repeats]
//! Even rounds verify as they copy, odd ones hash the page image behind;
//! `COPY_BENCH_MODE=verified` or `behind` runs every round one way.
//! `COPY_BENCH_REST=S` waits S seconds before each round: on a VM that
//! reports freed memory to its host (virtio-balloon free page reporting,
//! after about 2 s) the copy then writes into cold memory, as a restore
//! some seconds after the stop does (docs/benchmarks.md, run 8).
//! `COPY_BENCH_TO=A:B…` writes round i's copy under the i-th directory
//! of the list, in turn (default DIR): disk and tmpfs alternated compare
//! where a restore's copy goes (`restore_copy`, docs/benchmarks.md run 9).
//! DIR holds the image and is left empty.

mod common;

use std::io::Read;
use std::time::Instant;

use arch_image::ImageStore;
use arch_imgstream::{Codec, DirStore, Store};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: copy_bench DIR [MiB] [repeats]");
    let mib: u64 = args.next().map_or(1024, |v| v.parse().expect("MiB"));
    let repeats: usize = args.next().map_or(3, |v| v.parse().expect("repeats"));
    let mode = std::env::var("COPY_BENCH_MODE").ok();
    let rest = std::env::var("COPY_BENCH_REST").map_or(0, |s| s.parse().expect("seconds"));
    let to_dirs: Vec<String> = std::env::var("COPY_BENCH_TO").map_or(vec![dir.clone()], |v| {
        v.split(':').map(str::to_string).collect()
    });
    let root = std::path::Path::new(&dir).join("copy-bench-root");
    let store = ImageStore::new(root.clone());
    let mut staging = store.begin("bench", "copy").expect("staging");
    let criu = staging.path().join("criu");
    std::fs::create_dir(&criu).unwrap();
    let random = std::fs::File::open("/dev/urandom").unwrap().take(mib << 20);
    let files = DirStore::open_path(&criu).unwrap();
    let codec = Codec::Zstd {
        level: 1,
        threads: 0,
    };
    let rec = arch_imgstream::store_file(
        "pages-1.img",
        random,
        |s| files.create(s),
        codec,
        None,
        || false,
    )
    .expect("store");
    staging.add_streamed(&[rec]);
    let info = common::commit_info();
    staging.commit(info).expect("commit");
    for i in 0..repeats {
        let taken = store.take("bench", "copy").expect("take");
        let to_dir = &to_dirs[i % to_dirs.len()];
        let to = std::path::Path::new(to_dir).join(format!("copy-bench-{i}"));
        // Odd rounds copy with the page image hashed behind (what a
        // restore's Create waits for is the copy alone).
        let behind = match mode.as_deref() {
            Some("behind") => true,
            Some("verified") => false,
            Some(m) => panic!("COPY_BENCH_MODE is verified or behind, not {m}"),
            None => i % 2 == 1,
        };
        std::thread::sleep(std::time::Duration::from_secs(rest));
        let t = Instant::now();
        let (copy, deferred) = match behind {
            false => (taken.verify_into(&to).expect("copy"), Default::default()),
            true => taken.verify_into_deferring(&to).expect("copy"),
        };
        let secs = t.elapsed().as_secs_f64();
        let t = Instant::now();
        deferred.start().wait().expect("digests");
        let check = t.elapsed().as_secs_f64();
        println!(
            "{} copy of {mib} MiB into {to_dir}: {:.0} ms, {:.2} GB/s{}",
            if behind { "unhashed" } else { "verified" },
            secs * 1000.0,
            (mib << 20) as f64 / secs / 1e9,
            if behind {
                format!(", then digests behind: {:.0} ms", check * 1000.0)
            } else {
                String::new()
            }
        );
        drop(copy);
        let _ = std::fs::remove_dir_all(&to);
        taken.put_back().expect("put back");
    }
    let _ = std::fs::remove_dir_all(&root);
}
