//! Ending the shim's CRIU workers. Not only a fault action: the runtime
//! uses it after any failed CRIU request (see arch-runtime's notify.rs).

/// SIGKILLs every `criu` process whose parent is this process (rust-criu
/// runs `criu swrk` as a child of the calling process). Returns how many
/// were killed.
pub fn kill_criu_children() -> usize {
    let mut killed = 0;
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for pid in dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // comm may hold spaces and parens: the fields after the last ')'.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = tail.split_whitespace().nth(1);
        if head.ends_with("(criu") && ppid == Some(me.as_str()) {
            // SAFETY: kill(2) with a pid read from /proc.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
    }
    killed
}
