#!/usr/bin/env bash
# The e2e suite against each containerd hack/install-deps.sh installed, one
# after the other, each on a fresh private instance (hack/containerd-test.sh):
#   ARCH_E2E_CONTAINERDS  which ones (default "system sid newest": 1.7, 2.1,
#                         the newest release)
#   ARCH_E2E_THREADS      parallel tests (default 4)
# Needs the shim built with fault injection (make build-test) in
# ARCH_SHIM_DIR, ARCH_CHECKPOINT_ROOT and ARCH_TEST_DIR as hack/test.sh sets
# them. Prints each run's counts and time; fails if any run failed or ran
# no test. Run as root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=hack/lib.sh
. hack/lib.sh
log() { echo "[e2e] $*" >&2; }

: "${ARCH_SHIM_DIR:?set ARCH_SHIM_DIR (the dir of the fault-injection shim build)}"
: "${ARCH_CHECKPOINT_ROOT:?set ARCH_CHECKPOINT_ROOT}"
export ARCH_TEST_DIR="${ARCH_TEST_DIR:-/run/arch-test}"
export ARCH_E2E_ADDRESS="$ARCH_TEST_DIR/containerd.sock" ARCH_E2E_CHECKPOINT_ROOT="$ARCH_CHECKPOINT_ROOT"
trap 'for c in system sid newest; do ARCH_CONTAINERD=$c hack/containerd-test.sh stop >/dev/null 2>&1 || true; done' EXIT

SUMMARY=()
FAILED=()
for name in ${ARCH_E2E_CONTAINERDS:-system sid newest}; do
    t=$SECONDS
    rc=0
    dir="$(containerd_bin_dir "$name")"
    path="$PATH"
    [ -z "$dir" ] || path="$dir:$PATH"
    [ -x "${dir:-/usr/bin}/containerd" ] || { log "containerd $name is not installed (hack/install-deps.sh)"; exit 1; }
    ver="$(PATH="$path" containerd --version | awk '{print $3}')"
    log "containerd $ver ($name), criu $(criu --version | awk '/^Version/ {print $2}')"
    rm -rf "$ARCH_CHECKPOINT_ROOT"
    # Always a fresh daemon: one left running may have another config or shim.
    ARCH_CONTAINERD="$name" hack/containerd-test.sh restart >/dev/null
    out="$(mktemp)" leaks="$(mktemp)"
    cargo run -q -p arch-e2e --bin arch-leaks -- baseline "$leaks"
    PATH="$path" cargo test -p arch-e2e --test e2e -- --test-threads="${ARCH_E2E_THREADS:-4}" 2>&1 | tee "$out" || rc=$?
    # The tests run in parallel: the suite as a whole answers for leaks.
    cargo run -q -p arch-e2e --bin arch-leaks -- check "$leaks" || rc=1
    rm -f "$leaks"
    ARCH_CONTAINERD="$name" hack/containerd-test.sh stop
    counts="$(grep -E '^test result:' "$out" | tail -n1 | grep -oE '[0-9]+ passed; [0-9]+ failed' | tr ';' ',' || true)"
    rm -f "$out"
    case "$counts" in ""|"0 passed"*) rc=1 ;; esac
    SUMMARY+=("containerd $ver ($name): ${counts:-no test result} in $((SECONDS - t))s")
    [ "$rc" = 0 ] || FAILED+=("$name")
done
printf '[e2e] %s\n' "${SUMMARY[@]}" >&2
[ ${#FAILED[@]} = 0 ] || { echo "[e2e] failed on: ${FAILED[*]}" >&2; exit 1; }
