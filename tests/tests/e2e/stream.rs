//! Streamed checkpoints (issue 15): the rig's shims stream and compress
//! (the default: stream = auto, CRIU 4.1 has --stream; zstd level 1).
//! The restored process keeps its state; a format 2 image (CRIU's files as
//! written) still restores; a damaged or truncated stored file makes the
//! next create start fresh, with a record naming the file; the streamer
//! failing mid-dump leaves nothing and the container gets its stop signal.

use std::path::Path;
use std::time::Duration;

use arch_e2e::{ctr, records_for, unique_id};
use arch_records::{Operation, Outcome};
use sha2::{Digest, Sha256};

use crate::restore::{assert_fresh, assert_restored, image_dir, run_and_stop, start, store};

/// The streamed entries of an image's manifest: (path, stored size, original size).
fn streamed(dir: &Path) -> Vec<(String, u64, u64)> {
    let m = arch_image::read_manifest(dir).unwrap();
    m.files
        .iter()
        .filter_map(|f| {
            f.stream
                .as_ref()
                .map(|s| (f.path.clone(), f.size, s.original_size))
        })
        .collect()
}

fn pages_file(dir: &Path) -> String {
    streamed(dir)
        .into_iter()
        .map(|(p, _, _)| p)
        .find(|p| p.starts_with("criu/pages-") && p.ends_with(".img.zst"))
        .expect("a compressed pages file")
}

#[test]
fn a_streamed_compressed_checkpoint_restores_the_process_state() {
    let c = ctr();
    let key = unique_id("skey");
    let (boot, seen) = run_and_stop(&c, &key);
    let dir = image_dir(&c, &key);
    let files = streamed(&dir);
    assert!(
        files.iter().any(|(p, _, _)| p == "criu/inventory.img.zst"),
        "CRIU's images were streamed and compressed: {files:?}"
    );
    let pages = pages_file(&dir);
    let (_, stored, original) = files.iter().find(|(p, _, _)| *p == pages).unwrap();
    assert!(stored < original, "{pages}: {stored} of {original} bytes");
    // CRIU wrote no image by name: only what the manifest lists is there.
    assert!(!dir.join("criu/inventory.img").exists());
    let i = arch_e2e::archctl(
        store().root(),
        &["inspect", &format!("{}/{key}", c.namespace)],
    );
    assert_eq!(i.code, 0, "{}", i.stderr);
    assert!(
        i.stdout.contains("streamed:") && i.stdout.contains("ratio"),
        "{}",
        i.stdout
    );
    let id = unique_id("sagain");
    let _ct = start(&c, &id, &key);
    assert_restored(&c, &id, &key, &boot, seen);
}

/// Rewrites a streamed image as format 2 wrote it: CRIU's files decoded
/// under their own names, no stream fields, format_version 2, signed again.
fn to_format_2(dir: &Path) {
    let path = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["format_version"] = 2.into();
    for f in m["files"].as_array_mut().unwrap() {
        let Some(codec) = f["stream"]["codec"].as_str().map(str::to_string) else {
            continue;
        };
        let stored_path = dir.join(f["path"].as_str().unwrap());
        let stored = std::fs::read(&stored_path).unwrap();
        let raw = match codec.as_str() {
            "zstd" => zstd::decode_all(&stored[..]).unwrap(),
            _ => stored,
        };
        let rel = f["path"]
            .as_str()
            .unwrap()
            .trim_end_matches(".zst")
            .to_string();
        std::fs::remove_file(&stored_path).unwrap();
        std::fs::write(dir.join(&rel), &raw).unwrap();
        f["path"] = rel.into();
        f["size"] = raw.len().into();
        f["sha256"] = hex::encode(Sha256::digest(&raw)).into();
        f.as_object_mut().unwrap().remove("stream");
    }
    m["files"]
        .as_array_mut()
        .unwrap()
        .sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    // reseal recomputes the total and signs with the shims' key.
    arch_e2e::reseal(dir, "config.json");
}

#[test]
fn a_format_2_image_still_restores() {
    let c = ctr();
    let key = unique_id("v2key");
    let (boot, seen) = run_and_stop(&c, &key);
    let dir = image_dir(&c, &key);
    assert!(
        !streamed(&dir).is_empty(),
        "the shim wrote a streamed image"
    );
    to_format_2(&dir);
    let m = arch_image::read_manifest(&dir).unwrap();
    assert_eq!(m.format_version, 2);
    assert!(!m.streamed() && dir.join("criu/inventory.img").is_file());
    store()
        .open(&c.namespace, &key)
        .expect("a valid format 2 image");
    let id = unique_id("v2again");
    let _ct = start(&c, &id, &key);
    assert_restored(&c, &id, &key, &boot, seen);
}

/// The restore fell back, and its record names the damaged file.
fn fell_back_naming(c: &arch_e2e::Ctr, key: &str, file: &str) {
    let recs = records_for(store().root(), key);
    let named = recs.iter().any(|r| {
        r.op == Operation::Restore
            && r.outcome == Outcome::Fallback
            && r.error.as_deref().is_some_and(|e| e.contains(file))
    });
    assert!(named, "no fallback record naming {file}: {recs:?}");
    let _ = c;
}

#[test]
fn a_corrupted_stored_file_starts_fresh_with_a_clear_record() {
    let c = ctr();
    let key = unique_id("zbad");
    let (boot, _) = run_and_stop(&c, &key);
    let dir = image_dir(&c, &key);
    let pages = pages_file(&dir);
    let p = dir.join(&pages);
    let mut data = std::fs::read(&p).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x5a;
    std::fs::write(&p, data).unwrap();
    let id = unique_id("zfresh");
    let _ct = start(&c, &id, &key);
    assert_fresh(&c, &id, &key, &boot);
    fell_back_naming(&c, &key, pages.trim_start_matches("criu/"));
}

#[test]
fn a_truncated_compressed_stream_starts_fresh_even_when_resealed() {
    let c = ctr();
    let key = unique_id("ztrunc");
    let (boot, _) = run_and_stop(&c, &key);
    let dir = image_dir(&c, &key);
    let pages = pages_file(&dir);
    let p = dir.join(&pages);
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len - len / 3)
        .unwrap();
    // Stored digest and signature made to match the cut file: only the
    // compressed stream itself (and the original digest) can tell.
    arch_e2e::reseal(&dir, &pages);
    store()
        .open(&c.namespace, &key)
        .expect("the stored bytes check out");
    let id = unique_id("ztfresh");
    let _ct = start(&c, &id, &key);
    assert_fresh(&c, &id, &key, &boot);
    fell_back_naming(&c, &key, pages.trim_start_matches("criu/"));
}

const TRAPPED: &str = "trap 'echo got-term > /tmp/term; exit 143' TERM; \
    while true; do sleep 0.1; done";

#[test]
fn the_streamer_failing_mid_dump_leaves_nothing_and_delivers_the_stop_signal() {
    let c = ctr();
    let (id, key) = (unique_id("sfail"), unique_id("sfkey"));
    let armed = format!("{}={}=error", arch_faults::ANNOTATION, "stream:capture");
    let runner = {
        let c = c.clone();
        let (id, key, armed) = (id.clone(), key.clone(), armed.clone());
        std::thread::spawn(move || {
            c.run_arch_with(
                "--rm",
                &id,
                Some(&key),
                &["--annotation", &armed],
                &["sh", "-c", TRAPPED],
            )
        })
    };
    c.wait_status(&id, "RUNNING");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.run(&["task", "kill", &id]).code, 0);
    let r = runner.join().unwrap();
    assert_eq!(
        r.code, 143,
        "the stop signal reached the container: {}",
        r.stderr
    );
    assert!(
        store().open(&c.namespace, &key).is_err(),
        "nothing committed"
    );
    let recs = records_for(store().root(), &key);
    assert!(
        recs.iter().any(|r| r.op == Operation::Checkpoint
            && r.outcome == Outcome::Failed
            && r.error
                .as_deref()
                .is_some_and(|e| e.contains("stream:capture"))),
        "the failed checkpoint names the streamer: {recs:?}"
    );
    assert!(
        arch_e2e::image_entries(&c.namespace, &key).is_empty(),
        "no staging directory left: {:?}",
        arch_e2e::image_entries(&c.namespace, &key)
    );
}
