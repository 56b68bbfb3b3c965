#!/usr/bin/env bash
# make bench: ARCH beside io.containerd.runc.v2 on one private containerd
# (its own socket, state, namespace and checkpoint root, so it never
# disturbs the test instance). Extra arguments go to bench/run.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "$(id -u)" = 0 ] || { echo "[bench] must run as root" >&2; exit 1; }

hack/install-deps.sh
cargo build --release -p containerd-shim-arch-v1 -p archctl

export ARCH_TEST_DIR=/run/arch-bench
export ARCH_TEST_ROOT=/var/lib/arch-bench/containerd
export ARCH_TEST_NS=arch-bench
export ARCH_SHIM_DIR="$PWD/target/release"
export ARCH_CHECKPOINT_ROOT=/var/lib/arch-bench/checkpoint
# The host configuration the shims read when they start; the throttled-root
# figure rewrites it (compression off, then on). Empty: the defaults.
export ARCH_CONFIG=/var/lib/arch-bench/config.toml
mkdir -p "$(dirname "$ARCH_CONFIG")"
: >"$ARCH_CONFIG"
# containerd unpacks each checkpoint it restores for runc-v2 into
# $XDG_RUNTIME_DIR (else /tmp) and leaves it there: the bench's own
# directory, emptied after each restore (bench/run.py) and at the end.
export XDG_RUNTIME_DIR=/var/lib/arch-bench/xdg
rm -rf "$XDG_RUNTIME_DIR" && mkdir -m 0700 -p "$XDG_RUNTIME_DIR"
trap 'hack/containerd-test.sh stop >/dev/null 2>&1 || true; rm -rf "$XDG_RUNTIME_DIR"' EXIT
hack/containerd-test.sh start >/dev/null

out="results/bench/$(date -u +%Y-%m-%dT%H%M%SZ)"
python3 bench/run.py --address "$ARCH_TEST_DIR/containerd.sock" --namespace arch-bench \
    --checkpoint-root "$ARCH_CHECKPOINT_ROOT" --out "$out" "$@"
echo "[bench] results in $out"
