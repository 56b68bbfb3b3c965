//! Where a restore's verified copy is written (shim/src/lifecycle/
//! copy_place.rs): in memory, a private directory on the host's /dev/shm,
//! by default when the host has room for it (a test image is small); on
//! the host's disk with `restore_copy = "disk"`. Either way the restore
//! continues the job, and the copy is gone once the container runs. A copy
//! in memory that fails is made again on disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arch_e2e::{unique_id, wait_until};

use crate::two_hosts::{bases, checkpoint, restore_paused, run, run_with, Host, IMAGE_NAME};

const MEMORY: &str = "/dev/shm/containerd-arch-restore";
const DISK: &str = "/var/lib/containerd-arch/restore";

/// Copies for container `id` under `base` (`{pid}-{nanos}-{id}`).
fn copies_of(base: &str, id: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    let suffix = format!("-{id}");
    dir.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(&suffix))
        .collect()
}

/// On a host `name` with settings `env`: stop a job, re-create it (the
/// restore pauses 3 s after staging) and find its copy under `expected`
/// while it pauses, never under `other`.
fn copy_goes_to(name: &str, env: &[(&str, &str)], expected: &str, other: &str) {
    let job = Stopped::on(name, env);
    let (c, key, boot) = (&job.host.ctr, &job.key, &job.boot);
    let second = unique_id(name);
    std::thread::scope(|s| {
        let creating = s.spawn(|| restore_paused(c, &second, key));
        let staged = wait_until(Duration::from_secs(20), || {
            copies_of(expected, &second).iter().any(|n| {
                Path::new(expected)
                    .join(n)
                    .join("image/manifest.json")
                    .is_file()
            })
        });
        assert!(staged, "no copy of {second}'s image under {expected}");
        assert!(
            copies_of(other, &second).is_empty(),
            "a copy under {other}: {:?}",
            copies_of(other, &second)
        );
        let r = creating.join().unwrap();
        assert_eq!(r.code, 0, "ctr run {second}: {}", r.stderr);
    });
    assert_eq!(
        &c.exec_file(&second, "/tmp/boot"),
        boot,
        "the job continued"
    );
    no_copy_under(expected, &second);
    job.finish(&second);
}

/// No copy for `id` is left under `base` once it runs.
fn no_copy_under(base: &str, id: &str) {
    let left = copies_of(base, id);
    assert!(left.is_empty(), "a copy of {id} outlived Start: {left:?}");
}

/// A job run and stopped (checkpointed) under a new key, on a host `name`
/// of its own with settings `env` and its own checkpoint root.
struct Stopped {
    host: Host,
    root: PathBuf,
    key: String,
    /// The job's boot uuid: a restore keeps it, a fresh start does not.
    boot: String,
}

impl Stopped {
    fn on(name: &str, env: &[(&str, &str)]) -> Stopped {
        let (_, disk) = bases();
        let root = disk.join(format!("{name}-checkpoint"));
        let _ = std::fs::remove_dir_all(&root);
        let host = Host::with_env(name, &root, env);
        let (first, key) = (unique_id(name), unique_id("copykey"));
        let boot = run(&host.ctr, &first, &key);
        checkpoint(&host.ctr, &first);
        Stopped {
            host,
            root,
            key,
            boot,
        }
    }

    /// Removes container `id` (the job restored) and the checkpoint root.
    fn finish(&self, id: &str) {
        self.host.ctr.run(&["task", "rm", "-f", id]);
        self.host.ctr.run(&["container", "rm", id]);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn a_restore_copies_the_image_into_memory_when_there_is_room() {
    copy_goes_to("copy-mem", &[], MEMORY, DISK);
}

#[test]
fn restore_copy_disk_keeps_the_copy_on_disk() {
    copy_goes_to("copy-disk", &[("ARCH_RESTORE_COPY", "disk")], DISK, MEMORY);
}

/// The copy in memory is made, then fails (the debug shim's fault point
/// `restore:copy-memory`, as if /dev/shm filled up under it): the copy is
/// made again on disk and the restore still continues the job. Without
/// the retry the container would start fresh with a new boot uuid.
#[test]
fn a_failed_copy_in_memory_is_made_again_on_disk() {
    let job = Stopped::on("copy-retry", &[]);
    let c = &job.host.ctr;
    let second = unique_id("copy-retry");
    let fault = [
        "--annotation",
        "io.arch.test.fault=restore:copy-memory=error",
        "--annotation",
        IMAGE_NAME,
    ];
    assert_eq!(
        run_with(c, &second, &job.key, &fault),
        job.boot,
        "the job continued"
    );
    let log = job.host.log();
    let said = |what: &str| {
        log.lines()
            .any(|l| l.contains(&format!("{second}: ")) && l.contains(what))
    };
    assert!(said("copy in memory failed"), "no retry logged:\n{log}");
    assert!(
        said("bytes on disk in"),
        "the copy was not staged on disk:\n{log}"
    );
    no_copy_under(MEMORY, &second);
    no_copy_under(DISK, &second);
    job.finish(&second);
}
