//! Tasks a test leaves behind, found by what a leaked task cannot hide: its
//! pid namespace, its parent and its cgroup. Not by command line or
//! environment: a container init stuck in its pid namespace's teardown
//! (`zap_pid_ns_processes`) has released its memory, so both read empty.
//!
//! - an **orphan** is a task in a pid namespace other than the host's whose
//!   parent is PID 1 (its shim is gone and nothing cleaned it up), or a
//!   `criu` whose parent is PID 1 (a worker that outlived its shim);
//! - a task **in a container's cgroup** after the container was removed.
//!
//! Zombies are not counted: they are dead and only wait for their parent
//! to reap them, and this CI's PID 1 (not an init) never reaps orphans; on
//! a host with a real init they vanish at once.

use std::time::Duration;

/// One task, from /proc.
#[derive(Clone, Debug)]
pub struct Task {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    pub comm: String,
    /// `pid:[…]` of its pid namespace (empty if unreadable).
    pub pid_ns: String,
    /// In a pid namespace below ours (`NSpid` in /proc/PID/status has more
    /// than one pid; readable even where the ns link is not).
    pub nested: bool,
    /// The cgroup path of each hierarchy (`/proc/PID/cgroup`'s last field).
    pub cgroups: Vec<String>,
    /// The command line, spaces for NULs (empty for a task stuck in exit).
    pub cmdline: String,
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} ({}) state {} parent {} {} cgroup {} cmd {:?}",
            self.pid,
            self.comm,
            self.state,
            self.ppid,
            self.pid_ns,
            self.cgroups.first().map_or("?", String::as_str),
            self.cmdline.chars().take(300).collect::<String>()
        )
    }
}

fn read_task(pid: i32) -> Option<Task> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parens: the fields after the last ')'.
    let (head, tail) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let mut fields = tail.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pid_ns = std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .map(|l| l.display().to_string())
        .unwrap_or_default();
    let nested = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .is_some_and(|pids| pids.split_whitespace().count() > 1);
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_string))
        .collect();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default();
    Some(Task {
        pid,
        ppid,
        state,
        comm,
        pid_ns,
        nested,
        cgroups,
        cmdline,
    })
}

/// Every task on the host but zombies.
pub fn tasks() -> Vec<Task> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(read_task)
                .filter(|t| t.state != 'Z')
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `t` is an orphan. The tests run in the host's pid namespace,
/// so "another pid namespace" is one nested below theirs. `root` is this
/// rig's checkpoint root: a CRIU whose command line (`criu: dump --rpc -t
/// PID -D DIR`) names an images directory elsewhere is another rig's on a
/// shared host, not this suite's.
pub fn is_orphan(t: &Task, root: Option<&str>) -> bool {
    let criu_of_ours = || {
        t.comm == "criu"
            && match (root, t.cmdline.split_once(" -D ")) {
                (Some(root), Some((_, dir))) => dir.starts_with(root),
                _ => true,
            }
    };
    t.ppid == 1 && (t.nested || criu_of_ours())
}

/// The container init a CRIU dumps (`-t PID` in its command line) when
/// that CRIU is another rig's (its images directory is outside `root`).
fn dumped_by_another_rig(t: &Task, root: &str) -> Option<i32> {
    let (_, dir) = t.cmdline.split_once(" -D ")?;
    if t.comm != "criu" || dir.starts_with(root) {
        return None;
    }
    let (_, after) = t.cmdline.split_once(" -t ")?;
    after.split_whitespace().next()?.parse().ok()
}

/// Orphaned container tasks and CRIU workers, now. On a shared host,
/// another rig's leak (a CRIU of its root, and the init that CRIU holds)
/// is not this suite's.
pub fn orphans() -> Vec<Task> {
    let root = std::env::var("ARCH_E2E_CHECKPOINT_ROOT").ok();
    let all = tasks();
    let theirs: Vec<i32> = match &root {
        Some(root) => all
            .iter()
            .filter_map(|t| dumped_by_another_rig(t, root))
            .collect(),
        None => Vec::new(),
    };
    all.into_iter()
        .filter(|t| is_orphan(t, root.as_deref()) && !theirs.contains(&t.pid))
        .collect()
}

/// Whether `t` is in the cgroup of container `id` (ctr's default cgroup
/// path `/{namespace}/{id}`, or a systemd scope named after it), in any
/// hierarchy.
pub fn in_cgroup_of(t: &Task, id: &str) -> bool {
    t.cgroups.iter().any(|c| {
        c.split('/')
            .any(|part| part == id || part.strip_suffix(".scope").is_some_and(|s| s.ends_with(id)))
    })
}

/// Tasks in the cgroup of container `id`.
pub fn tasks_of(id: &str) -> Vec<Task> {
    tasks()
        .into_iter()
        .filter(|t| in_cgroup_of(t, id))
        .collect()
}

/// The pids of the orphans that exist now: a test's baseline, so it only
/// answers for what it made (other rigs may share the host).
pub fn baseline() -> Vec<i32> {
    orphans().into_iter().map(|t| t.pid).collect()
}

/// Orphans that were not in `before` and are still there after `limit`
/// (containerd's cleanup of a dead shim gets that long to end them);
/// an error listing them.
pub fn no_new_orphans(before: &[i32], limit: Duration) -> Result<(), String> {
    let new = || -> Vec<Task> {
        orphans()
            .into_iter()
            .filter(|t| !before.contains(&t.pid))
            .collect()
    };
    if crate::wait_until(limit, || new().is_empty()) {
        return Ok(());
    }
    let list: Vec<String> = new().iter().map(Task::to_string).collect();
    Err(format!("leaked tasks: {}", list.join("; ")))
}

/// Tasks still in container `id`'s cgroup after `limit`; an error listing
/// them.
pub fn nothing_in_cgroup_of(id: &str, limit: Duration) -> Result<(), String> {
    if crate::wait_until(limit, || tasks_of(id).is_empty()) {
        return Ok(());
    }
    let list: Vec<String> = tasks_of(id).iter().map(Task::to_string).collect();
    Err(format!(
        "tasks left in the cgroup of {id}: {}",
        list.join("; ")
    ))
}

/// A test's leak check: the orphans at its start are the baseline; when it
/// ends (dropped last: declare it first), new ones fail it.
pub struct LeakCheck(Vec<i32>);

impl LeakCheck {
    pub fn start() -> Self {
        LeakCheck(baseline())
    }
}

impl Drop for LeakCheck {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test failed already; what it leaked must still show (a
            // frozen tree left by a failed test once went unreported).
            if let Err(e) = no_new_orphans(&self.0, Duration::from_secs(5)) {
                eprintln!("and besides the failure: {e}");
            }
            return;
        }
        if let Err(e) = no_new_orphans(&self.0, Duration::from_secs(30)) {
            panic!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(ppid: i32, comm: &str, nested: bool, cgroup: &str) -> Task {
        Task {
            pid: 100,
            ppid,
            state: 'S',
            comm: comm.into(),
            pid_ns: String::new(),
            nested,
            cgroups: vec![cgroup.into()],
            cmdline: String::new(),
        }
    }

    #[test]
    fn orphans_are_found_by_namespace_and_parent_not_by_name() {
        // An init stuck in exit: no name worth matching, the root cgroup.
        assert!(is_orphan(&task(1, "", true, "/"), None));
        assert!(is_orphan(&task(1, "criu", false, "/"), Some("/r")));
        assert!(!is_orphan(&task(1, "sshd", false, "/"), None));
        assert!(
            !is_orphan(&task(4242, "sh", true, "/arch-test/c"), None),
            "a container init under its shim"
        );
        let mut criu = task(1, "criu", false, "/");
        criu.cmdline = "criu: dump --rpc -t 7 -D /r/ns/k@tmp-1/criu".into();
        assert!(is_orphan(&criu, Some("/r")));
        assert!(!is_orphan(&criu, Some("/other")), "another rig's");
        assert_eq!(dumped_by_another_rig(&criu, "/other"), Some(7));
        assert_eq!(dumped_by_another_rig(&criu, "/r"), None);
    }

    #[test]
    fn the_cgroup_names_the_container() {
        assert!(in_cgroup_of(
            &task(9, "sh", false, "/arch-test/fp-1-2"),
            "fp-1-2"
        ));
        assert!(in_cgroup_of(
            &task(9, "sh", false, "/system.slice/arch-fp-1-2.scope"),
            "fp-1-2"
        ));
        assert!(!in_cgroup_of(
            &task(9, "sh", false, "/arch-test/fp-1-22"),
            "fp-1-2"
        ));
        assert!(!in_cgroup_of(&task(9, "sh", false, "/"), "fp-1-2"));
    }

    #[test]
    fn this_process_is_no_orphan() {
        let me = read_task(std::process::id() as i32).unwrap();
        assert!(!me.nested && !is_orphan(&me, None), "{me}");
    }
}
