//! The network namespace in ARCH's images: one nothing in the container
//! could change is left out and made afresh at restore (loopback up, the
//! tree in a namespace of its own, never the host's); one a process could
//! change (CAP_NET_ADMIN, the container's or an exec's) is dumped and
//! restored as it was, also by a later checkpoint of the restored
//! container.

use arch_e2e::{ctr, unique_id, Container, Ctr};

/// Whether CRIU dumped a network namespace into `key`'s image.
fn image_has_network(c: &Ctr, key: &str) -> bool {
    let criu = arch_e2e::checkpoint_root()
        .join(&c.namespace)
        .join(key)
        .join("criu");
    std::fs::read_dir(&criu)
        .unwrap_or_else(|e| panic!("{}: {e}", criu.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .any(|n| n.starts_with("netns-"))
}

/// Stops `id` (its stop signal checkpoints it) and removes it.
fn stop(c: &Ctr, id: &str, ct: Container) {
    assert_eq!(c.run(&["task", "kill", id]).code, 0);
    c.wait_status(id, "STOPPED");
    drop(ct);
}

fn start(c: &Ctr, id: &str, key: &str, extra: &[&str], cmd: &str) -> Container {
    let r = c.run_arch_with("-d", id, Some(key), extra, &["sh", "-c", cmd]);
    assert_eq!(r.code, 0, "ctr run -d {id}: {}", r.stderr);
    Container {
        ctr: c.clone(),
        id: id.to_string(),
    }
}

fn assert_restored(c: &Ctr, key: &str) {
    let entries = arch_e2e::image_entries(&c.namespace, key);
    assert!(
        entries.iter().any(|e| e.ends_with("@restored")),
        "restored, not started fresh: {entries:?}"
    );
}

/// `ip -o addr show lo` in `id`.
fn lo_addresses(c: &Ctr, id: &str) -> String {
    c.exec_output(id, "ip -o addr show lo")
}

#[test]
fn an_unchangeable_network_is_left_out_and_made_afresh() {
    let c = ctr();
    let key = unique_id("qnet");
    let first = unique_id("qfirst");
    let ct = start(&c, &first, &key, &[], "sleep 600");
    stop(&c, &first, ct);
    assert!(
        !image_has_network(&c, &key),
        "the namespace was left out of the image"
    );

    let again = unique_id("qagain");
    let _ct = start(&c, &again, &key, &[], "sleep 600");
    assert_restored(&c, &key);
    let pid = c.task_pid(&again);
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    // The tests run in containerd's (the shims') namespace.
    let hosts = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(theirs, hosts, "a namespace of its own, not the host's");
    let lo = lo_addresses(&c, &again);
    assert!(
        lo.contains("127.0.0.1/8"),
        "loopback up in the new namespace: {lo}"
    );
}

#[test]
fn a_changed_network_is_dumped_and_stays_in_later_checkpoints() {
    let c = ctr();
    let key = unique_id("anet");
    let first = unique_id("afirst");
    let admin = ["--cap-add", "CAP_NET_ADMIN"];
    let ct = start(
        &c,
        &first,
        &key,
        &admin,
        "ip addr add 10.9.8.7/32 dev lo && sleep 600",
    );
    assert!(lo_addresses(&c, &first).contains("10.9.8.7"));
    stop(&c, &first, ct);
    assert!(
        image_has_network(&c, &key),
        "a namespace CAP_NET_ADMIN could change is dumped"
    );

    // The address comes back, and the restored container's own
    // checkpoint keeps the namespace.
    let second = unique_id("asecond");
    let ct = start(&c, &second, &key, &admin, "sleep 600");
    assert_restored(&c, &key);
    assert!(
        lo_addresses(&c, &second).contains("10.9.8.7"),
        "restored as dumped"
    );
    stop(&c, &second, ct);
    assert!(image_has_network(&c, &key), "still dumped after a restore");

    let third = unique_id("athird");
    let _ct = start(&c, &third, &key, &admin, "sleep 600");
    assert_restored(&c, &key);
    assert!(lo_addresses(&c, &third).contains("10.9.8.7"), "and again");
}

/// An exec under the container's seccomp filter without
/// no_new_privileges (ctr's `--seccomp --allow-new-privs`, as
/// Docker's default profile and CRI's RuntimeDefault) holds CAP_SYS_ADMIN
/// only to install the filter: it could not change the network, and the
/// namespace stays out of the image. Every such exec (a liveness probe)
/// used to mark it changeable.
#[test]
fn an_exec_under_a_seccomp_filter_leaves_the_network_out() {
    let c = ctr();
    let key = unique_id("snet");
    let first = unique_id("sfirst");
    let ct = start(
        &c,
        &first,
        &key,
        &["--seccomp", "--allow-new-privs"],
        "sleep 600",
    );
    assert_eq!(c.exec_output(&first, "echo probed"), "probed");
    stop(&c, &first, ct);
    assert!(
        !image_has_network(&c, &key),
        "the namespace was left out of the image"
    );
}

/// Runs `script` in `id` as an exec holding CAP_NET_ADMIN the container
/// lacks, as `docker exec --privileged` or a debug exec does; straight to
/// the shim, since ctr's exec copies the container's capabilities.
fn exec_as_net_admin(c: &Ctr, id: &str, script: &str) {
    use arch_e2e::shim_client::{api, ctx, Any};
    let caps = ["CAP_NET_ADMIN"];
    let process = serde_json::json!({
        "args": ["sh", "-c", script],
        "cwd": "/",
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "user": {"uid": 0, "gid": 0},
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
    });
    let shim = c.shim(id);
    let exec_id = unique_id("admin");
    let spec = Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
        value: serde_json::to_vec(&process).unwrap(),
        ..Default::default()
    };
    let req = api::ExecProcessRequest {
        id: id.into(),
        exec_id: exec_id.clone(),
        spec: Some(spec).into(),
        ..Default::default()
    };
    shim.exec(ctx(), &req).expect("exec");
    let start = api::StartRequest {
        id: id.into(),
        exec_id: exec_id.clone(),
        ..Default::default()
    };
    shim.start(ctx(), &start).expect("start");
    let wait = api::WaitRequest {
        id: id.into(),
        exec_id: exec_id.clone(),
        ..Default::default()
    };
    let waited = shim.wait(ctx(), &wait).expect("wait");
    assert_eq!(waited.exit_status, 0, "{script}");
    let delete = api::DeleteRequest {
        id: id.into(),
        exec_id,
        ..Default::default()
    };
    shim.delete(ctx(), &delete).expect("delete the exec");
}

/// A container without CAP_NET_ADMIN whose network an exec changed: left
/// out of the image, the address would be lost at restore with no error.
#[test]
fn a_network_an_exec_changed_is_dumped_and_restored() {
    let c = ctr();
    let key = unique_id("enet");
    let first = unique_id("efirst");
    let ct = start(&c, &first, &key, &[], "sleep 600");
    exec_as_net_admin(&c, &first, "ip addr add 10.9.8.6/32 dev lo");
    assert!(lo_addresses(&c, &first).contains("10.9.8.6"));
    stop(&c, &first, ct);
    assert!(
        image_has_network(&c, &key),
        "a namespace an exec with CAP_NET_ADMIN changed is dumped"
    );

    let second = unique_id("esecond");
    let _ct = start(&c, &second, &key, &[], "sleep 600");
    assert_restored(&c, &key);
    assert!(
        lo_addresses(&c, &second).contains("10.9.8.6"),
        "restored as the exec left it"
    );
}

/// What a client inside `id` reads from the server on 127.0.0.1:8080
/// ("" when the connection is refused).
fn ask_server(c: &Ctr, id: &str) -> String {
    c.exec_output(id, "nc -w 5 127.0.0.1 8080")
}

/// A server's listening TCP socket is dumped (CRIU >= 4.2 on kernels that
/// refuse SO_PASSCRED on inet sockets, 6.16 and later) and listens again
/// after the restore, in the container's new network namespace.
#[test]
fn a_listening_server_is_checkpointed_and_answers_after_restore() {
    let c = ctr();
    let key = unique_id("srv");
    let server = "nc -ll -p 8080 -e echo hello & sleep 600";
    let first = unique_id("sfirst");
    let ct = start(&c, &first, &key, &[], server);
    assert!(
        arch_e2e::wait_until(std::time::Duration::from_secs(10), || {
            ask_server(&c, &first) == "hello"
        }),
        "the server answers before the stop"
    );
    stop(&c, &first, ct);
    let image = arch_e2e::checkpoint_root().join(&c.namespace).join(&key);
    assert!(
        image.join("manifest.json").exists(),
        "the stop committed an image of the listening server (see the shim's log for CRIU's error)"
    );

    let again = unique_id("sagain");
    let _ct = start(&c, &again, &key, &[], server);
    assert_restored(&c, &key);
    assert_eq!(
        ask_server(&c, &again),
        "hello",
        "the restored listener answers"
    );
}
