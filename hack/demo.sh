#!/usr/bin/env bash
# Demo: install the rig, build the shim, and run containers under
# io.containerd.arch.v1 on a private containerd, beside runc-v2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "$(id -u)" = 0 ] || { echo "[demo] must run as root" >&2; exit 1; }

hack/install-deps.sh
cargo build --release -p containerd-shim-arch-v1

export ARCH_SHIM_DIR="$PWD/target/release"
export ARCH_TEST_DIR="${ARCH_TEST_DIR:-/run/arch-test}"
trap 'hack/containerd-test.sh stop >/dev/null 2>&1 || true' EXIT
hack/containerd-test.sh start >/dev/null

ctr=(ctr --address "$ARCH_TEST_DIR/containerd.sock" --namespace arch-test)
image=localhost/arch-test/busybox:latest
show() { echo "\$ $*"; "$@" || echo "(exit status $?)"; }

show "$ARCH_SHIM_DIR/containerd-shim-arch-v1" -v
show "${ctr[@]}" run --rm --runtime io.containerd.arch.v1 "$image" demo1 \
    sh -c 'echo "hello from $(hostname), pid $$"; uname -r; exit 3'
show "${ctr[@]}" run -d --runtime io.containerd.arch.v1 "$image" demo2 sh -c 'while true; do sleep 1; done'
show "${ctr[@]}" task ls
show "${ctr[@]}" task exec --exec-id e1 demo2 sh -c 'echo exec sees: $(ps | wc -l) lines of ps'
show "${ctr[@]}" task metrics demo2
show "${ctr[@]}" task kill -s SIGKILL demo2
sleep 0.5
show "${ctr[@]}" task rm demo2
show "${ctr[@]}" container rm demo2
