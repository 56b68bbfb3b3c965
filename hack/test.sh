#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run → make test):
# installs the rig, builds, runs the unit tests, then the end-to-end tests
# against a private containerd that this script starts and stops.
# The e2e suite runs against each containerd install-deps.sh installed:
# 1.7 (the system's), 2.1 (sid) and the newest release (bootstrap protocol),
# each timed, with its counts in the summary at the end; the other suites
# (faults, fault points, CRI, Docker) run against 1.7 only.
#   env: ARCH_E2E_CONTAINERDS      which e2e runs (default "system sid newest")
#        ARCH_E2E_THREADS          parallel e2e tests (default 4)
#        ARCH_CRI_TEST_DIR, ARCH_CRI_TEST_ROOT, ARCH_CRI_CHECKPOINT_ROOT
#                                  the CRI tests' containerd instance
#                                  (default /run/arch-cri, /var/lib/arch-cri/…)
# After the ctr suites: the fault-point sweep, the CRI tests against a
# CRI-enabled containerd, critest (the CRI validation suite) under runc and
# arch with CNI (hack/conformance.sh, about 6 minutes), and the Docker
# how-to test against a private dockerd (hack/docker-test.sh). Last, the
# cgroup v2 subset in a QEMU guest with both cgroup drivers (make test-vm).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=hack/lib.sh
. hack/lib.sh
log() { echo "[test] $*" >&2; }
SUMMARY=()
stage() { # stage NAME START_SECONDS: record how long a stage took
    SUMMARY+=("$1: $(($SECONDS - $2))s")
}

[ "$(id -u)" = 0 ] || { echo "[test] must run as root (containers, mounts, cgroups)" >&2; exit 1; }

t=$SECONDS
hack/install-deps.sh
hack/install-docker.sh
stage "install" $t

t=$SECONDS
log "unit tests"
cargo test --workspace --exclude arch-e2e
stage "unit tests" $t

# After the unit tests, whose build may relink the shim without features.
log "building (with fault injection: the reliability suites arm fault points)"
cargo build --workspace --bins --features containerd-shim-arch-v1/fault-injection
grep -q "Features: fault-injection" <<<"$(target/debug/containerd-shim-arch-v1 -v)" ||
    { echo "[test] the shim was built without fault injection" >&2; exit 1; }

export ARCH_SHIM_DIR="$PWD/target/debug"
# containerd passes its environment to the shims: the host configuration.
export ARCH_CHECKPOINT_ROOT="${ARCH_CHECKPOINT_ROOT:-/var/lib/arch-test/checkpoint}"
rm -rf "$ARCH_CHECKPOINT_ROOT"
export ARCH_TEST_DIR="${ARCH_TEST_DIR:-/run/arch-test}"
# The CRI tests' own containerd instance (CRI enabled, namespace k8s.io).
CRI_ENV=(
    ARCH_TEST_CRI=1
    ARCH_TEST_DIR="${ARCH_CRI_TEST_DIR:-/run/arch-cri}"
    ARCH_TEST_ROOT="${ARCH_CRI_TEST_ROOT:-/var/lib/arch-cri/containerd}"
    ARCH_CHECKPOINT_ROOT="${ARCH_CRI_CHECKPOINT_ROOT:-/var/lib/arch-cri/checkpoint}"
)
trap 'for c in system sid newest; do ARCH_CONTAINERD=$c hack/containerd-test.sh stop >/dev/null 2>&1 || true; done; env "${CRI_ENV[@]}" hack/containerd-test.sh stop || true; hack/docker-test.sh stop >/dev/null 2>&1 || true' EXIT
export ARCH_E2E_ADDRESS="$ARCH_TEST_DIR/containerd.sock" ARCH_E2E_CHECKPOINT_ROOT="$ARCH_CHECKPOINT_ROOT"

t=$SECONDS
log "end-to-end tests against containerd 1.7, 2.1 and the newest (hack/e2e-matrix.sh)"
hack/e2e-matrix.sh
stage "e2e on every containerd" $t

hack/containerd-test.sh restart
t=$SECONDS
log "fault tests (one at a time: they restart containerd, kill shims and CRIU)"
cargo test -p arch-e2e --test faults -- --test-threads=1 --nocapture
stage "faults (containerd 1.7)" $t

t=$SECONDS
log "fault tests again on the newest containerd (2.x: task API v3, the bootstrap protocol), with its own ctr"
hack/containerd-test.sh stop
ARCH_CONTAINERD=newest hack/containerd-test.sh restart
PATH="$(containerd_bin_dir newest):$PATH" ARCH_CONTAINERD=newest \
    cargo test -p arch-e2e --test faults -- --test-threads=1 --nocapture
ARCH_CONTAINERD=newest hack/containerd-test.sh stop
hack/containerd-test.sh restart
stage "faults (containerd newest)" $t

t=$SECONDS
log "fault-point sweep (every point of a checkpoint and a restore; one case removes the checkpoint root)"
cargo test -p arch-e2e --test fault_points -- --test-threads=1 --nocapture
# Streamed dumps (the default) pass stream:capture, not CRIU's notifies: the
# RPC dump's points (criu:network-lock, criu:post-dump) are swept with
# streaming off (docs/architecture.md, "Streamed checkpoints").
hack/containerd-test.sh stop
ARCH_STREAM=off hack/containerd-test.sh restart
ARCH_STREAM=off cargo test -p arch-e2e --test fault_points -- every_checkpoint_fault_point --test-threads=1 --nocapture
hack/containerd-test.sh restart
stage "fault-point sweep (containerd 1.7)" $t

t=$SECONDS
log "CRI tests (containerd's CRI plugin with docs/examples/containerd-*-cri.toml, handler from runtimeclass.yaml)"
hack/containerd-test.sh stop
env "${CRI_ENV[@]}" bash -c 'rm -rf "$ARCH_CHECKPOINT_ROOT"; exec hack/containerd-test.sh restart'
(
    export "${CRI_ENV[@]}"
    export ARCH_CRI_ADDRESS="$ARCH_TEST_DIR/containerd.sock" ARCH_E2E_CHECKPOINT_ROOT="$ARCH_CHECKPOINT_ROOT"
    cargo test -p arch-e2e --test cri -- --test-threads="${ARCH_E2E_THREADS:-4}"
)
stage "CRI tests (containerd 1.7)" $t

t=$SECONDS
log "CRI conformance: critest under runc and arch side by side (hack/conformance.sh, docs/conformance.md)"
env "${CRI_ENV[@]}" hack/containerd-test.sh stop
hack/conformance.sh
stage "CRI conformance (critest, runc and arch)" $t

t=$SECONDS
log "docker how-to test (dockerd $(dockerd --version | awk '{print $3}' | tr -d ,), docs/examples/daemon.json)"
export ARCH_DOCKER_CHECKPOINT_ROOT="${ARCH_DOCKER_CHECKPOINT_ROOT:-/var/lib/arch-docker/checkpoint}"
hack/docker-test.sh stop
rm -rf "$ARCH_DOCKER_CHECKPOINT_ROOT"
hack/docker-test.sh start >/dev/null
ARCH_E2E_DOCKER_HOST="unix://${ARCH_DOCKER_DIR:-/run/arch-docker}/docker.sock" \
    ARCH_E2E_CHECKPOINT_ROOT="$ARCH_DOCKER_CHECKPOINT_ROOT" \
    cargo test -p arch-e2e --test docker -- --test-threads=2
hack/docker-test.sh stop
stage "docker how-to" $t

t=$SECONDS
log "cgroup v2 in a QEMU guest (TCG): the e2e subset with the cgroupfs and the systemd driver (hack/vm/test-vm.sh)"
# Builds the guest on the first run (about 8 minutes, cached in
# /var/cache/arch-vm); the two drivers take about 11 minutes together.
ARCH_VM_TIMEOUT="${ARCH_VM_TIMEOUT:-2400}" hack/vm/test-vm.sh
stage "cgroup v2 guest (cgroupfs + systemd drivers)" $t

log "summary"
printf '[test] %s\n' "${SUMMARY[@]}" >&2
