//! Portable archives: a job checkpointed under one name moves, through
//! `archctl export - | archctl import -`, to another name (another host's
//! root in real use) and restores there.

use std::process::Command;

use arch_e2e::{checkpoint_root, ctr, unique_id, Ctr};

const WORKLOAD: &str = "boot=$(cat /proc/sys/kernel/random/uuid); i=0; \
    while true; do i=$((i+1)); echo $i > /tmp/count; echo $boot > /tmp/boot; sleep 0.1; done";

fn boot(c: &Ctr, id: &str) -> String {
    c.rootfs_file(id, "tmp/boot")
}

/// Runs the workload as `id` under `key` and stops it, which checkpoints
/// it; returns its boot id.
fn checkpoint_job(c: &Ctr, id: &str, key: &str) -> String {
    let ct = c.start_arch(id, Some(key), WORKLOAD);
    let boot = boot(c, id);
    assert_eq!(c.run(&["task", "kill", id]).code, 0);
    c.wait_status(id, "STOPPED");
    drop(ct);
    boot
}

fn archctl_bin() -> String {
    std::env::var("ARCH_E2E_ARCHCTL").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target/debug/archctl").to_string()
    })
}

#[test]
fn an_exported_job_imports_under_a_new_name_and_restores() {
    let c = ctr();
    let (id, key, moved) = (unique_id("exp"), unique_id("expkey"), unique_id("moved"));
    let before = checkpoint_job(&c, &id, &key);

    let root = checkpoint_root();
    let (bin, root) = (archctl_bin(), root.display().to_string());
    let pipe = format!(
        "{bin} --root {root} export {ns}/{key} - | {bin} --root {root} import - --key {moved}",
        ns = c.namespace
    );
    let out = Command::new("sh").args(["-c", &pipe]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "export | import: {stderr}");
    assert!(
        stderr.contains("exported") && stderr.contains("imported"),
        "{stderr}"
    );

    let again = unique_id("imp");
    let _ct = c.start_arch(&again, Some(&moved), WORKLOAD);
    c.wait_status(&again, "RUNNING");
    assert_eq!(boot(&c, &again), before, "restored from the imported image");
}

#[test]
fn a_tampered_archive_is_refused_and_lands_nothing() {
    let c = ctr();
    let (id, key) = (unique_id("tamper"), unique_id("tkey"));
    checkpoint_job(&c, &id, &key);
    let root = checkpoint_root();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.tar.zst");
    let r = arch_e2e::archctl(
        &root,
        &[
            "export",
            &format!("{}/{key}", c.namespace),
            "-o",
            file.to_str().unwrap(),
            "--level",
            "1",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Cut the archive short, as a failed copy between hosts would.
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let moved = unique_id("cut");
    let r = arch_e2e::archctl(&root, &["import", file.to_str().unwrap(), "--key", &moved]);
    assert_ne!(r.code, 0, "a truncated archive was imported");
    assert!(
        r.stderr.contains("truncated") || r.stderr.contains("corrupt"),
        "{}",
        r.stderr
    );
    assert!(
        arch_e2e::image_entries(&c.namespace, &moved).is_empty(),
        "nothing lands"
    );
}

fn checkpointctl_bin() -> String {
    std::env::var("ARCH_E2E_CHECKPOINTCTL")
        .unwrap_or_else(|_| "/opt/arch-checkpointctl/bin/checkpointctl".to_string())
}

/// Issue 16 §2: the archive is the Kubernetes/CRI-O checkpoint layout, so
/// the ecosystem's reader, checkpointctl (trixie's, installed by
/// hack/install-checkpointctl.sh), shows it.
#[test]
fn checkpointctl_shows_an_exported_archive() {
    let bin = checkpointctl_bin();
    assert!(
        std::path::Path::new(&bin).exists(),
        "{bin} missing: run hack/install-deps.sh (it runs hack/install-checkpointctl.sh)"
    );
    let c = ctr();
    let (id, key) = (unique_id("cpctl"), unique_id("cpctlkey"));
    checkpoint_job(&c, &id, &key);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.tar.zst");
    let root = checkpoint_root();
    let out = Command::new(archctl_bin())
        .args(["--root", root.to_str().unwrap(), "export"])
        .arg(format!("{}/{key}", c.namespace))
        .arg("-o")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(&bin).arg("show").arg(&file).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "checkpointctl show: {stdout}{stderr}");
    // checkpointctl shows IDs cut to 12 characters, as docker does.
    let short_id = &id[..id.len().min(12)];
    for want in [short_id, "io.containerd.arch.v1", "containerd"] {
        assert!(stdout.contains(want), "{want} in {stdout}");
    }
}

/// The kubelet's layout of the same job: a plain tar, no ARCH manifest or
/// signature (what `kubectl checkpoint` leaves in /var/lib/kubelet/checkpoints).
fn as_kubelet_archive(exported: &std::path::Path, out: &std::path::Path) {
    let input = std::fs::File::open(exported).unwrap();
    let mut archive = tar::Archive::new(zstd::Decoder::new(input).unwrap());
    let mut builder = tar::Builder::new(std::fs::File::create(out).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        if name.starts_with("arch-manifest") {
            continue;
        }
        let mut header = entry.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        // The kubelet's archives hold CRIU's images as CRIU wrote them;
        // ARCH's streamed images are stored compressed.
        let (name, data) = match name.strip_suffix(".zst") {
            Some(raw) if name.starts_with("checkpoint/") => {
                let raw_data = zstd::decode_all(&data[..]).unwrap();
                header.set_size(raw_data.len() as u64);
                (raw.to_string(), raw_data)
            }
            _ => (name, data),
        };
        builder.append_data(&mut header, &name, &data[..]).unwrap();
    }
    builder.finish().unwrap();
}

/// Issue 16 §2: a checkpoint archive in the kubelet/CRI-O layout imports,
/// only when the operator vouches for it (it carries no signature).
#[test]
fn a_kubelet_layout_archive_imports_when_vouched_for() {
    let c = ctr();
    let (id, key, landed) = (unique_id("kubelet"), unique_id("kkey"), unique_id("kland"));
    checkpoint_job(&c, &id, &key);

    let dir = tempfile::tempdir().unwrap();
    let (exported, kubelet) = (dir.path().join("job.tar.zst"), dir.path().join("job.tar"));
    let root = checkpoint_root().display().to_string();
    let archctl = |args: &[&str]| {
        Command::new(archctl_bin())
            .args(["--root", &root])
            .args(args)
            .output()
            .unwrap()
    };
    let ns_key = format!("{}/{key}", c.namespace);
    let out = archctl(&["export", &ns_key, "-o", exported.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    as_kubelet_archive(&exported, &kubelet);

    let import = |extra: &[&str]| {
        let mut args = vec![
            "import",
            kubelet.to_str().unwrap(),
            "--namespace",
            c.namespace.as_str(),
            "--key",
            landed.as_str(),
        ];
        args.extend_from_slice(extra);
        archctl(&args)
    };
    let refused = import(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "an unsigned archive imported without --allow-unsigned"
    );
    assert!(stderr.contains("--allow-unsigned"), "{stderr}");

    let out = import(&["--allow-unsigned"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("imported"), "{stderr}");
    let shown = archctl(&["inspect", &format!("{}/{landed}", c.namespace)]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&id),
        "the container id from config.dump: {shown}"
    );
}
