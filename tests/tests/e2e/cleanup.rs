use std::path::Path;
use std::time::Duration;

use arch_e2e::{ctr, mounts_containing, shim_pids, unique_id, wait_until, zombie_children};

#[test]
fn delete_leaves_no_mounts_cgroups_state_or_shim() {
    let c = ctr();
    let id = unique_id("clean");
    let r = c.run_container(&id, &[], &["sh", "-c", "echo x > /tmp/f"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        wait_until(Duration::from_secs(10), || shim_pids(&id).is_empty()),
        "shim for {id} still running"
    );
    assert!(
        mounts_containing(&id).is_empty(),
        "mounts left: {:?}",
        mounts_containing(&id)
    );
    for hierarchy in ["memory", "pids", "cpu", "freezer", "devices", "unified", ""] {
        let dir = Path::new("/sys/fs/cgroup")
            .join(hierarchy)
            .join("arch-test")
            .join(&id);
        assert!(!dir.exists(), "cgroup left: {}", dir.display());
    }
    let v2 = arch_e2e::cgroup_v2_dir(&id);
    assert!(!v2.exists(), "cgroup left: {}", v2.display());
    assert!(
        !Path::new("/run/containerd-arch/arch-test")
            .join(&id)
            .exists(),
        "libcontainer state left"
    );
    assert!(c.task_status(&id).is_none());
}

#[test]
fn shim_reaps_every_child() {
    let c = ctr();
    let id = unique_id("reap");
    let _ct = c.start_detached(&id, &["sleep", "600"]);
    for i in 0..5 {
        let r = c.run(&["task", "exec", "--exec-id", &format!("z{i}"), &id, "true"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let shims = shim_pids(&id);
    assert!(!shims.is_empty());
    std::thread::sleep(Duration::from_millis(300));
    for pid in shims {
        assert!(
            zombie_children(pid).is_empty(),
            "zombies under shim {pid}: {:?}",
            zombie_children(pid)
        );
    }
}

#[test]
fn force_delete_of_a_running_task() {
    let c = ctr();
    let id = unique_id("force");
    let ct = c.start_detached(&id, &["sleep", "600"]);
    let r = c.run(&["task", "rm", "-f", &id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(c.task_status(&id).is_none());
    drop(ct);
    assert!(
        wait_until(Duration::from_secs(10), || shim_pids(&id).is_empty()),
        "shim for {id} still running"
    );
}
