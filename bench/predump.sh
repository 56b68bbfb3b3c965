#!/usr/bin/env bash
# make bench-predump: the pre-copy measurement of issue 14 §4, in the
# cgroup v2 guest (its kernel tracks dirty pages; this host's does not).
# Builds the shim and the e2e tests as make test-vm does, a static
# workload (bench/dirtier.c), and a scratch disk for the images, then runs
# hack/vm/guest-bench-predump.sh in the guest. Root; one VM at a time.
#   env: ARCH_BENCH_SIZE_MIB (1024), ARCH_BENCH_RUNS (3),
#        ARCH_BENCH_INTERVAL (30, seconds between checkpoints),
#        ARCH_BENCH_DIRTY_PCT (5, % of the job's memory written a second),
#        ARCH_VM_MEM (4G here: the job plus CRIU and the page cache)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { echo "[bench-predump] $*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
hack/vm/build-guest.sh
E2E="$(cargo test -p arch-e2e --test e2e --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "e2e":
        print(m["executable"])
')"
[ -x "$E2E" ] || { log "no e2e test binary"; exit 1; }
cargo build --workspace --bins --features containerd-shim-arch-v1/fault-injection
mkdir -p target/arch-vm
gcc -static -O2 -o target/arch-vm/dirtier bench/dirtier.c
hack/build-test-image.sh "$PWD/target/arch-vm/arch-test-busybox.oci.tar" >/dev/null
scratch="${ARCH_VM_DIR:-/var/cache/arch-vm}/bench-scratch.img"
rm -f "$scratch"
truncate -s 12G "$scratch"
mkfs.ext4 -q -F "$scratch"
trap 'rm -f "$scratch"' EXIT
ARCH_VM_MEM="${ARCH_VM_MEM:-4G}" ARCH_VM_SCRATCH="$scratch" \
    hack/vm/run.sh hack/vm/guest-bench-predump.sh "${E2E#"$PWD"/}" "${ARCH_BENCH_SIZE_MIB:-1024}" "${ARCH_BENCH_RUNS:-3}" "${ARCH_BENCH_INTERVAL:-30}" "${ARCH_BENCH_DIRTY_PCT:-5}"
