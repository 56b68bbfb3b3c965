#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run → make test):
# installs the rig, builds, runs the unit tests, then the end-to-end tests
# against a private containerd that this script starts and stops.
#   env: ARCH_CONTAINERD_SUITE=sid  test against containerd 2.x instead of 1.7
#        ARCH_E2E_THREADS          parallel e2e tests (default 4)
#        ARCH_CRI_TEST_DIR, ARCH_CRI_TEST_ROOT, ARCH_CRI_CHECKPOINT_ROOT
#                                  the CRI tests' containerd instance
#                                  (default /run/arch-cri, /var/lib/arch-cri/…)
# After the ctr suites: the fault-point sweep, the CRI tests against a
# CRI-enabled containerd, critest (the CRI validation suite) under runc and
# arch with CNI (hack/conformance.sh, about 6 minutes), and the Docker
# how-to test against a private dockerd (hack/docker-test.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { echo "[test] $*" >&2; }

[ "$(id -u)" = 0 ] || { echo "[test] must run as root (containers, mounts, cgroups)" >&2; exit 1; }

hack/install-deps.sh
hack/install-docker.sh

log "unit tests"
cargo test --workspace --exclude arch-e2e

# After the unit tests, whose build may relink the shim without features.
log "building (with fault injection: the reliability suites arm fault points)"
cargo build --workspace --bins --features containerd-shim-arch-v1/fault-injection
target/debug/containerd-shim-arch-v1 -v | grep -q "Features: fault-injection" ||
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
trap 'hack/containerd-test.sh stop || true; env "${CRI_ENV[@]}" hack/containerd-test.sh stop || true; hack/docker-test.sh stop >/dev/null 2>&1 || true' EXIT
# Always a fresh daemon: one left running may have another config or shim.
hack/containerd-test.sh restart

log "end-to-end tests (containerd $(containerd --version | awk '{print $3}'), criu $(criu --version | awk '/^Version/ {print $2}'))"
export ARCH_E2E_ADDRESS="$ARCH_TEST_DIR/containerd.sock" ARCH_E2E_CHECKPOINT_ROOT="$ARCH_CHECKPOINT_ROOT"
cargo test -p arch-e2e --test e2e -- --test-threads="${ARCH_E2E_THREADS:-4}"

log "fault tests (one at a time: they restart containerd, kill shims and CRIU)"
cargo test -p arch-e2e --test faults -- --test-threads=1 --nocapture

log "fault-point sweep (every point of a checkpoint and a restore; one case removes the checkpoint root)"
cargo test -p arch-e2e --test fault_points -- --test-threads=1 --nocapture

log "CRI tests (containerd's CRI plugin with docs/examples/containerd-*-cri.toml, handler from runtimeclass.yaml)"
hack/containerd-test.sh stop
env "${CRI_ENV[@]}" bash -c 'rm -rf "$ARCH_CHECKPOINT_ROOT"; exec hack/containerd-test.sh restart'
(
    export "${CRI_ENV[@]}"
    export ARCH_CRI_ADDRESS="$ARCH_TEST_DIR/containerd.sock" ARCH_E2E_CHECKPOINT_ROOT="$ARCH_CHECKPOINT_ROOT"
    cargo test -p arch-e2e --test cri -- --test-threads="${ARCH_E2E_THREADS:-4}"
)

log "CRI conformance: critest under runc and arch side by side (hack/conformance.sh, docs/conformance.md)"
env "${CRI_ENV[@]}" hack/containerd-test.sh stop
hack/conformance.sh

log "docker how-to test (dockerd $(dockerd --version | awk '{print $3}' | tr -d ,), docs/examples/daemon.json)"
export ARCH_DOCKER_CHECKPOINT_ROOT="${ARCH_DOCKER_CHECKPOINT_ROOT:-/var/lib/arch-docker/checkpoint}"
hack/docker-test.sh stop
rm -rf "$ARCH_DOCKER_CHECKPOINT_ROOT"
hack/docker-test.sh start >/dev/null
ARCH_E2E_DOCKER_HOST="unix://${ARCH_DOCKER_DIR:-/run/arch-docker}/docker.sock" \
    ARCH_E2E_CHECKPOINT_ROOT="$ARCH_DOCKER_CHECKPOINT_ROOT" \
    cargo test -p arch-e2e --test docker -- --test-threads=2
hack/docker-test.sh stop
