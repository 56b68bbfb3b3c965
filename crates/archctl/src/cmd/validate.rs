//! `archctl validate [NS/KEY...]`: full re-verification via ImageStore::open.

use arch_image::ImageStore;

use crate::error::Result;
use crate::parse::{human_size, ImageId};
use crate::progress::Progress;

pub fn run(store: &ImageStore, ids: &[ImageId]) -> Result<i32> {
    let targets: Vec<ImageId> = if ids.is_empty() {
        store
            .list()?
            .into_iter()
            .map(|r| ImageId {
                namespace: r.namespace,
                key: r.key,
            })
            .collect()
    } else {
        ids.to_vec()
    };
    if targets.is_empty() {
        println!("no images under {}", store.root().display());
        return Ok(0);
    }
    let progress = Progress::new("validated", targets.len());
    let mut failed = 0;
    for (i, id) in targets.iter().enumerate() {
        match store.open(&id.namespace, &id.key) {
            Ok(img) => {
                let m = img.manifest();
                println!(
                    "ok      {id} ({} files, {})",
                    m.files.len(),
                    human_size(m.total_size)
                );
            }
            Err(e) => {
                failed += 1;
                println!("FAILED  {id}: {}", crate::escape::printable(&e.to_string()));
            }
        }
        progress.tick(i + 1);
    }
    if failed > 0 {
        eprintln!(
            "archctl: {failed} of {} images failed validation",
            targets.len()
        );
        return Ok(1);
    }
    Ok(0)
}
