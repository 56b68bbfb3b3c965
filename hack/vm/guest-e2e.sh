#!/usr/bin/env bash
# Runs IN THE GUEST (hack/vm/test-vm.sh starts it through run.sh): the
# ARCH e2e subset against a private containerd, once per cgroup driver.
#   usage: hack/vm/guest-e2e.sh E2E_BINARY FAULTS_BINARY DRIVER...
#   DRIVER: cgroupfs (ctr's /arch-test/ID cgroupsPath) or systemd (the
#           tests pass `--cgroup system.slice:arch-test:ID`, which selects
#           the systemd driver: a transient scope per container)
# The subset: lifecycle, exec, stats/update/pause/ps/OOM (control::),
# events (OOM event included), cleanup, checkpoint on stop, checkpoint RPC,
# restore and its fallbacks, pre-copy (ARCH_PREDUMP), and the shim killed
# mid-restore (faults).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
log() { echo "[guest-e2e] $*"; }
E2E="$1" FAULTS="$2"; shift 2
E2E_FILTERS=(
    lifecycle:: exec:: control:: events:: cleanup::delete_leaves
    checkpoint::stop_signal_commits checkpoint::checkpoint_rpc_leaves
    restore::re_created restore::same_container_id restore::restored_output
    restore::an_image_is_restored_only_once restore::corrupted_memory
    restore::truncated_rootfs restore::criu_failure_falls_back
    predump::
)
FAULT_FILTERS=(a_shim_killed_mid_restore_leaves_nothing_running)

export ARCH_TEST_DIR=/run/arch-vm ARCH_TEST_ROOT=/var/lib/arch-vm/containerd
export ARCH_CHECKPOINT_ROOT=/var/lib/arch-vm/checkpoint ARCH_SHIM_DIR="$PWD/target/debug"
export ARCH_TEST_IMAGE_TAR="$PWD/target/arch-vm/arch-test-busybox.oci.tar"
export ARCH_E2E_ADDRESS="$ARCH_TEST_DIR/containerd.sock" ARCH_E2E_CHECKPOINT_ROOT="$ARCH_CHECKPOINT_ROOT"
export RUST_BACKTRACE=1
# The guest kernel tracks dirty pages: predump:: must checkpoint and
# restore with ARCH_PREDUMP here, never take the host's error path.
export ARCH_E2E_EXPECT_SOFT_DIRTY=1
# TCG emulates the CPU: waits for a state (a checkpoint committing) take longer.
export ARCH_E2E_TIME_SCALE="${ARCH_E2E_TIME_SCALE:-5}"
# Dumps stream here as on any host, uncompressed: emulated zstd takes
# minutes per GiB, and the codec does not depend on the cgroup version
# (the host suites test it).
export ARCH_COMPRESSION="${ARCH_COMPRESSION:-none}"
summary=()
fail=0
counts() { # the "test result" line of a libtest run -> "P passed, F failed"
    sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 passed, \2 failed/p' "$1" | tail -n 1
}
for driver in "$@"; do
    case "$driver" in
        cgroupfs) unset ARCH_E2E_SYSTEMD_SLICE ;;
        systemd) export ARCH_E2E_SYSTEMD_SLICE=system.slice ;;
        *) log "unknown driver $driver"; exit 2 ;;
    esac
    rm -rf "$ARCH_CHECKPOINT_ROOT"
    hack/containerd-test.sh restart >/dev/null || { log "containerd did not start"; exit 1; }
    t=$SECONDS
    log "$driver: e2e subset"
    "$E2E" --test-threads="${ARCH_VM_THREADS:-2}" "${E2E_FILTERS[@]}" 2>&1 | tee /tmp/e2e-$driver.log
    e2e_rc=${PIPESTATUS[0]}
    log "$driver: faults (the shim killed mid-restore)"
    "$FAULTS" --test-threads=1 --nocapture "${FAULT_FILTERS[@]}" 2>&1 | tee /tmp/faults-$driver.log
    faults_rc=${PIPESTATUS[0]}
    hack/containerd-test.sh stop >/dev/null 2>&1
    summary+=("$driver: e2e $(counts /tmp/e2e-$driver.log), faults $(counts /tmp/faults-$driver.log), $((SECONDS - t)) s")
    [ "$e2e_rc" = 0 ] && [ "$faults_rc" = 0 ] || fail=1
    # A filter that matches nothing must not pass as green.
    passed() { sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed.*/\1/p' "$1" | tail -n 1; }
    [ "$(passed /tmp/e2e-$driver.log)" -ge 30 ] && [ "$(passed /tmp/faults-$driver.log)" -ge 1 ] ||
        { log "$driver: fewer tests ran than the subset holds"; fail=1; }
done
for s in "${summary[@]}"; do log "$s"; done
exit $fail
