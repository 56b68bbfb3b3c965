//! Times committing a staged image of one large page file, the part of a
//! checkpoint after CRIU (hash + fsync + rename).
//!   cargo run --release -p arch-image --example commit_bench -- DIR [MiB]
//! DIR must be on the disk to measure (not tmpfs); it is left empty.

mod common;

use std::io::Write;
use std::time::Instant;

use arch_image::ImageStore;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: commit_bench DIR [MiB]");
    let mib: usize = args.next().map_or(1024, |v| v.parse().expect("MiB"));
    let store = ImageStore::new(std::path::Path::new(&dir).join("bench-root"));
    let staging = store.begin("bench", "commit").expect("staging");
    std::fs::create_dir(staging.path().join("criu")).unwrap();
    let mut f = std::fs::File::create(staging.path().join("criu/pages-1.img")).unwrap();
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    for _ in 0..mib {
        f.write_all(&chunk).unwrap();
    }
    drop(f);
    let info = common::commit_info();
    {
        use sha2::{Digest, Sha256};
        let t = Instant::now();
        let mut h = Sha256::new();
        for _ in 0..mib {
            h.update(&chunk);
        }
        let _ = h.finalize();
        println!(
            "sha2 in memory: {:.2} GB/s",
            (mib as f64 * 1048576.0) / t.elapsed().as_secs_f64() / 1e9
        );
    }
    let t = Instant::now();
    let image = staging.commit(info).expect("commit");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "commit of {mib} MiB: {:.0} ms, {:.2} GB/s",
        secs * 1000.0,
        (mib as f64 * 1048576.0) / secs / 1e9
    );
    std::fs::remove_dir_all(image.dir()).unwrap();
    let _ = std::fs::remove_dir_all(store.root());
}
