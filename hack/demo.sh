#!/usr/bin/env bash
# Demo: install the rig, build the shim, and run containers under
# io.containerd.arch.v1 on a private containerd, beside runc-v2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "$(id -u)" = 0 ] || { echo "[demo] must run as root" >&2; exit 1; }

hack/install-deps.sh
cargo build --release -p containerd-shim-arch-v1 -p archctl

export ARCH_SHIM_DIR="$PWD/target/release"
export ARCH_TEST_DIR="${ARCH_TEST_DIR:-/run/arch-test}"
export ARCH_CHECKPOINT_ROOT="${ARCH_CHECKPOINT_ROOT:-/var/lib/arch-demo/checkpoint}"
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

echo
echo "# ARCH: a counter is stopped (checkpointed), re-created with a new id, and continues"
counter='i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.2; done'
show "${ctr[@]}" run -d --runtime io.containerd.arch.v1 --env ARCH_ENABLE=1 --env ARCH_KEY=demo-counter "$image" counter-a sh -c "$counter"
sleep 2
show "${ctr[@]}" task exec --exec-id c1 counter-a cat /tmp/count
show "${ctr[@]}" task kill counter-a
sleep 1
show "${ctr[@]}" task rm counter-a
show "${ctr[@]}" container rm counter-a
archctl=("$PWD/target/release/archctl" --root "$ARCH_CHECKPOINT_ROOT")
show "${archctl[@]}" ls
show "${archctl[@]}" inspect arch-test/demo-counter
show "${archctl[@]}" validate
show "${ctr[@]}" run -d --runtime io.containerd.arch.v1 --env ARCH_ENABLE=1 --env ARCH_KEY=demo-counter "$image" counter-b sh -c "$counter"
sleep 1
show "${ctr[@]}" task exec --exec-id c2 counter-b cat /tmp/count
show "${archctl[@]}" ls --all
show "${archctl[@]}" stats
show "${ctr[@]}" task kill -s SIGKILL counter-b
sleep 0.5
show "${ctr[@]}" task rm counter-b
show "${ctr[@]}" container rm counter-b
