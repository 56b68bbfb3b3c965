//! `criu dump --stream` into `Capture` and `criu restore --stream` from
//! `Serve`, with the real CRIU of the test rig (root). Fails, never skips,
//! when CRIU or root is missing.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arch_imgstream::{Capture, Codec, DirStore, FileRecord, Serve, Store};

const CRIU: &str = "/usr/local/sbin/criu";

fn prerequisites() {
    assert!(
        Path::new(CRIU).exists(),
        "{CRIU} is missing: the test rig's CRIU is required"
    );
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "CRIU dump/restore needs root"
    );
}

/// A session leader (CRIU restores it without --shell-job) counting into
/// `file`. One process: a shell's `sleep` children would leave zombies
/// whose pids the restore needs, and this container's PID 1 reaps slowly.
fn spawn_counter(file: &Path) -> Child {
    let script = format!(
        "import time\ni = 0\nwhile True:\n    i += 1\n    open({:?}, 'w').write(str(i))\n    time.sleep(0.05)\n",
        file.display().to_string()
    );
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    wait_for(|| count(file) > 3, "the counter to start");
    child
}

fn count(file: &Path) -> u64 {
    fs::read_to_string(file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn wait_for(mut ok: impl FnMut() -> bool, what: &str) {
    let t = Instant::now();
    while !ok() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs CRIU with a deadline: a CRIU stuck on a pipe must fail the test, not hang it.
fn criu(args: &[&str], images: &Path) -> ExitStatus {
    let mut c = Command::new(CRIU)
        .args(args)
        .args(["-D", images.to_str().unwrap(), "-v4"])
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s;
        }
        if t.elapsed() > Duration::from_secs(120) {
            let _ = c.kill();
            panic!("criu {args:?} did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_tail(images: &Path, log: &str) -> String {
    let s = fs::read_to_string(images.join(log)).unwrap_or_default();
    s.lines()
        .filter(|l| l.contains("Error"))
        .take(10)
        .collect::<Vec<_>>()
        .join("\n")
}

struct Dumped {
    pid: i32,
    images: tempfile::TempDir,
    stored: tempfile::TempDir,
    records: Vec<FileRecord>,
    counter: PathBuf,
    _work: tempfile::TempDir,
}

fn dump(codec: Codec) -> Dumped {
    prerequisites();
    let work = tempfile::tempdir().unwrap();
    let counter = work.path().join("count");
    let mut child = spawn_counter(&counter);
    let pid = child.id() as i32;
    let images = tempfile::tempdir().unwrap();
    let stored = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(DirStore::open_path(stored.path()).unwrap());
    let cap = Capture::start(images.path(), store, codec, None).unwrap();
    let st = criu(
        &["dump", "--stream", "-t", &pid.to_string(), "-o", "dump.log"],
        images.path(),
    );
    let records = cap.finish();
    child.wait().unwrap(); // CRIU ended it; its pid must be free for the restore
    assert!(
        st.success(),
        "criu dump --stream: {st}\n{}",
        log_tail(images.path(), "dump.log")
    );
    let records = records.unwrap();
    for must in ["inventory.img", "pstree.img", "pages-1.img"] {
        assert!(
            records.iter().any(|r| r.name == must),
            "{must} not captured: {records:#?}"
        );
    }
    // CRIU's images went to the store; only its own local files are in -D.
    let mut local: Vec<_> = fs::read_dir(images.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    local.sort();
    assert_eq!(local, ["dump.log", "stats-dump"]);
    Dumped {
        pid,
        images,
        stored,
        records,
        counter,
        _work: work,
    }
}

fn restore(
    d: &Dumped,
) -> (
    ExitStatus,
    arch_imgstream::Result<arch_imgstream::ServeReport>,
) {
    let store: Arc<dyn Store> = Arc::new(DirStore::open_path(d.stored.path()).unwrap());
    let serve = Serve::start(d.images.path(), store, d.records.clone()).unwrap();
    let st = criu(
        &["restore", "--stream", "-d", "-o", "restore.log"],
        d.images.path(),
    );
    (st, serve.finish())
}

fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn dump_and_restore_through_the_streamer() {
    let d = dump(Codec::Zstd {
        level: 3,
        threads: 2,
    });
    let before = count(&d.counter);
    let total: u64 = d.records.iter().map(|r| r.original_size).sum();
    let stored: u64 = d.records.iter().map(|r| r.stored_size).sum();
    let order: Vec<_> = d.records.iter().map(|r| r.name.as_str()).collect();
    eprintln!("captured {total} bytes, stored {stored}, in CRIU's order: {order:?}");
    assert!(stored < total, "zstd stored {stored} of {total}");
    let (st, report) = restore(&d);
    assert!(
        st.success(),
        "criu restore --stream: {st}\n{}",
        log_tail(d.images.path(), "restore.log")
    );
    let report = report.unwrap();
    eprintln!("served {:?}\nabsent {:?}", report.served, report.absent);
    assert!(report.served.iter().any(|n| n == "pages-1.img"));
    assert!(alive(d.pid), "the restored counter runs");
    // It counts on from where it was dumped, not from zero.
    wait_for(
        || count(&d.counter) > before + 5,
        "the restored counter to count on",
    );
    unsafe { libc::kill(d.pid, libc::SIGKILL) };
}

#[test]
fn a_damaged_image_fails_the_restore() {
    let d = dump(Codec::None);
    let pages = d.records.iter().find(|r| r.name == "pages-1.img").unwrap();
    let path = d.stored.path().join(&pages.stored_name);
    let mut b = fs::read(&path).unwrap();
    let i = b.len() / 2;
    b[i] ^= 1;
    fs::write(&path, b).unwrap();
    let (st, report) = restore(&d);
    let alive_after = alive(d.pid);
    if alive_after {
        unsafe { libc::kill(d.pid, libc::SIGKILL) };
    }
    assert!(!st.success(), "CRIU must fail on a damaged image");
    assert!(!alive_after, "nothing restored from damaged pages");
    let e = report.unwrap_err();
    eprintln!(
        "serve: {e}\nCRIU: {}",
        log_tail(d.images.path(), "restore.log")
    );
    assert!(e.to_string().contains("pages-1.img"), "{e}");
}

/// A tiny tmpfs as the store: the capture hits a real ENOSPC mid-dump.
struct TinyTmpfs(tempfile::TempDir);

impl TinyTmpfs {
    fn mount(bytes: usize) -> Self {
        let d = tempfile::tempdir().unwrap();
        let target = std::ffi::CString::new(d.path().to_str().unwrap()).unwrap();
        let opts = std::ffi::CString::new(format!("size={bytes},mode=0700")).unwrap();
        let r = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        assert_eq!(r, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
        TinyTmpfs(d)
    }
}

impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        let target = std::ffi::CString::new(self.0.path().to_str().unwrap()).unwrap();
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// The streamer failing mid-dump (its disk full) fails CRIU's dump, the
/// process keeps running, and nothing stays in the store.
#[test]
fn a_full_store_fails_the_dump_and_the_process_runs_on() {
    prerequisites();
    let work = tempfile::tempdir().unwrap();
    let counter = work.path().join("count");
    let mut child = spawn_counter(&counter);
    let pid = child.id() as i32;
    let images = tempfile::tempdir().unwrap();
    let tiny = TinyTmpfs::mount(256 << 10); // the counter's pages are ~2.5 MiB
    let store: Arc<dyn Store> = Arc::new(DirStore::open_path(tiny.0.path()).unwrap());
    let cap = Capture::start(images.path(), store, Codec::None, None).unwrap();
    let st = criu(
        &["dump", "--stream", "-t", &pid.to_string(), "-o", "dump.log"],
        images.path(),
    );
    let e = cap.finish().unwrap_err();
    let running = alive(pid);
    let before = count(&counter);
    if running {
        wait_for(
            || count(&counter) > before + 3,
            "the counter to go on after the failed dump",
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    eprintln!(
        "capture: {e}\nCRIU: {}",
        log_tail(images.path(), "dump.log")
    );
    assert!(
        !st.success(),
        "CRIU's dump must fail when the streamer does"
    );
    assert!(running, "a failed dump leaves the process running");
    assert!(e.to_string().contains("No space left"), "{e}");
    assert_eq!(
        fs::read_dir(tiny.0.path()).unwrap().count(),
        0,
        "nothing half-written stays"
    );
}

/// A store that stops in the first write of the pages file until told to
/// go on, so CRIU can be killed in the middle of its dump.
struct Stalling {
    inner: DirStore,
    reached: Arc<std::sync::atomic::AtomicBool>,
    go: Arc<std::sync::atomic::AtomicBool>,
}

struct StallingFile {
    inner: Box<dyn arch_imgstream::StoredFile>,
    reached: Arc<std::sync::atomic::AtomicBool>,
    go: Arc<std::sync::atomic::AtomicBool>,
}

impl std::io::Write for StallingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::sync::atomic::Ordering::SeqCst;
        self.reached.store(true, SeqCst);
        while !self.go.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl arch_imgstream::StoredFile for StallingFile {
    fn sync_all(&mut self) -> std::io::Result<()> {
        self.inner.sync_all()
    }
}

impl Store for Stalling {
    fn create(&self, name: &str) -> std::io::Result<Box<dyn arch_imgstream::StoredFile>> {
        let inner = self.inner.create(name)?;
        if !name.starts_with("pages-") {
            return Ok(inner);
        }
        Ok(Box::new(StallingFile {
            inner,
            reached: self.reached.clone(),
            go: self.go.clone(),
        }))
    }
    fn open(&self, name: &str) -> std::io::Result<fs::File> {
        self.inner.open(name)
    }
    fn remove(&self, name: &str) -> std::io::Result<()> {
        self.inner.remove(name)
    }
    fn sync_dir(&self) -> std::io::Result<()> {
        self.inner.sync_dir()
    }
}

/// CRIU killed mid-dump: every pipe just ends, which the protocol cannot
/// tell from a finished file; the capture still fails, as the inventory
/// (written last) never came, and keeps nothing.
#[test]
fn criu_killed_mid_dump_fails_the_capture() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    prerequisites();
    let work = tempfile::tempdir().unwrap();
    let mut child = spawn_counter(&work.path().join("count"));
    let images = tempfile::tempdir().unwrap();
    let stored = tempfile::tempdir().unwrap();
    let (reached, go) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let store = Stalling {
        inner: DirStore::open_path(stored.path()).unwrap(),
        reached: reached.clone(),
        go: go.clone(),
    };
    let cap = Capture::start(images.path(), Arc::new(store), Codec::None, None).unwrap();
    let mut criu = Command::new(CRIU)
        .args([
            "dump",
            "--stream",
            "-t",
            &child.id().to_string(),
            "-o",
            "dump.log",
            "-v4",
            "-D",
        ])
        .arg(images.path())
        .spawn()
        .unwrap();
    wait_for(|| reached.load(SeqCst), "CRIU to send pages");
    criu.kill().unwrap();
    let st = criu.wait().unwrap();
    go.store(true, SeqCst);
    let r = cap.finish();
    let _ = child.kill();
    let _ = child.wait();
    assert!(!st.success());
    assert!(
        matches!(r, Err(arch_imgstream::StreamError::Incomplete)),
        "{r:?}"
    );
    assert_eq!(
        fs::read_dir(stored.path()).unwrap().count(),
        0,
        "nothing stays"
    );
}
