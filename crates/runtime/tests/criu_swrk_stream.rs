//! Whether CRIU in swrk mode (the shim's RPC path) can stream its images
//! when `--stream` is on its command line, as the shim's launcher could
//! put it there. It cannot in CRIU 4.1.1: `setup_opts_from_req`
//! (criu/cr-service.c) opens the images directory with mode -1 ("Image
//! streaming is not supported with CRIU's service feature ... we punt for
//! now"), and `img_streamer_init` then hits `BUG()` in
//! `socket_name_for_mode` (criu/img-streamer.c): CRIU aborts (status 134)
//! before it logs anything. So the shim streams a dump through CRIU's CLI
//! (`criu dump --stream`), and this test says when a CRIU lifts the limit.
//! Needs root and CRIU; it fails (never skips) without them.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::Arc;

use arch_imgstream::{Capture, Codec, DirStore, Store};

#[test]
fn swrk_mode_cannot_stream_in_criu_4_1() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("criu");
    std::fs::create_dir(&images).unwrap();
    // A process tree CRIU can take: its own session, no terminal.
    let mut child = Command::new("setsid")
        .args(["sh", "-c", "while :; do sleep 0.05; done"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = child.id() as i32;
    let store: Arc<dyn Store> = Arc::new(DirStore::open_path(&images).unwrap());
    let codec = Codec::Zstd {
        level: 1,
        threads: 1,
    };
    let capture = Capture::start(&images, store, codec, None).unwrap();
    let dir = File::open(&images).unwrap();
    // What the launcher would do: exec criu with --stream before `swrk <fd>`.
    let wrapper = tmp.path().join("criu-stream");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\ncriu --stream \"$@\" 2>\"$0.err\"; echo \"exit $?\" >>\"$0.err\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut criu = rust_criu::Criu::new_with_criu_path(wrapper.display().to_string()).unwrap();
    criu.set_images_dir_fd(dir.as_raw_fd());
    criu.set_log_file("dump.log".into());
    criu.set_log_level(4);
    criu.set_pid(pid);
    criu.set_shell_job(false);
    criu.set_leave_running(true);
    let dumped = criu.dump();
    let captured = capture.finish();
    let err = std::fs::read_to_string(tmp.path().join("criu-stream.err")).unwrap_or_default();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = child.wait();
    assert!(
        dumped.is_err() && captured.is_err(),
        "CRIU streamed in swrk mode: the shim may use its RPC path for streaming now"
    );
    // CRIU ran and aborted (BUG()), rather than not running at all.
    assert!(err.contains("exit 134"), "criu: {err}");
}
