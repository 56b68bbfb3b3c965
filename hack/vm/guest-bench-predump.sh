#!/usr/bin/env bash
# Runs IN THE GUEST (bench/predump.sh starts it through hack/vm/run.sh):
# the ARCH_PREDUMP e2e test (it must pass here: the guest kernel tracks
# dirty pages), then the pre-copy measurement: a SIZE MiB job that dirties
# PCT% (default 5) of its memory a second, checkpointed periodically with ARCH_PREDUMP=0
# and then 2; prints each checkpoint's freeze, dump and pre-dump times from
# the shim's records.
#   usage: hack/vm/guest-bench-predump.sh E2E_BINARY SIZE_MIB RUNS INTERVAL_SECS [PCT]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
log() { echo "[bench-predump] $*"; }
E2E="$1" SIZE="${2:-1024}" RUNS="${3:-3}" INTERVAL="${4:-30}" PCT="${5:-5}"

export ARCH_TEST_DIR=/run/arch-vm ARCH_TEST_ROOT=/var/lib/arch-vm/containerd
export ARCH_CHECKPOINT_ROOT=/var/lib/arch-vm/checkpoint ARCH_SHIM_DIR="$PWD/target/debug"
export ARCH_TEST_IMAGE_TAR="$PWD/target/arch-vm/arch-test-busybox.oci.tar"
export ARCH_E2E_ADDRESS="$ARCH_TEST_DIR/containerd.sock" ARCH_E2E_CHECKPOINT_ROOT="$ARCH_CHECKPOINT_ROOT"
export ARCH_E2E_TIME_SCALE="${ARCH_E2E_TIME_SCALE:-5}" ARCH_E2E_EXPECT_SOFT_DIRTY=1
# A dump after pre-dumps is never streamed (CRIU streams no incremental
# images): the single dump it is measured against is not streamed either,
# so the two differ only by the pre-dumps (zstd under TCG would dominate).
export ARCH_STREAM="${ARCH_STREAM:-off}"
mkdir -p "$ARCH_CHECKPOINT_ROOT"
# Images of a GiB job outgrow the guest's 3 GB disk: a scratch disk, if given.
if [ -b /dev/vdb ]; then mount /dev/vdb "$ARCH_CHECKPOINT_ROOT" && log "checkpoint root on /dev/vdb"; fi
log "kernel $(uname -r), $(free -m | awk '/Mem:/ {print $2}') MiB RAM; $(criu check --feature mem_dirty_track 2>&1 | tail -n 1)"
hack/containerd-test.sh restart >/dev/null || { log "containerd did not start"; exit 1; }

"$E2E" --test-threads=1 predump:: 2>&1 | tee /tmp/e2e-predump.log
e2e_rc=${PIPESTATUS[0]}

C=(ctr --address "$ARCH_E2E_ADDRESS" --namespace arch-test)
records() { cat "$ARCH_CHECKPOINT_ROOT"/.records/*.jsonl 2>/dev/null; }
count_ok() { # periodic checkpoints committed for key $1
    records | python3 -c '
import json, sys
print(sum(1 for l in sys.stdin if l.strip() and (r := json.loads(l))["key"] == sys.argv[1]
          and r["trigger"] == "periodic" and r["outcome"] == "ok"))' "$1"
}
for n in 0 2; do
    key="bench-pd$n-$$"
    log "ARCH_PREDUMP=$n: ${SIZE} MiB, ${PCT}%/s dirtied, a checkpoint every ${INTERVAL}s; $RUNS measured after a first"
    "${C[@]}" run -d --runtime io.containerd.arch.v1 --env ARCH_ENABLE=1 --env "ARCH_KEY=$key" \
        --env "ARCH_PREDUMP=$n" --env "ARCH_INTERVAL=${INTERVAL}s" \
        --mount "type=bind,src=$PWD/target/arch-vm/dirtier,dst=/dirtier,options=rbind:ro" \
        localhost/arch-test/busybox:latest "$key" /dirtier "$SIZE" "$PCT" ||
        { log "ctr run failed"; exit 1; }
    deadline=$((SECONDS + 60 * (RUNS + 1) * 3))
    while [ "$(count_ok "$key")" -lt $((RUNS + 1)) ] && [ $SECONDS -lt $deadline ]; do sleep 5; done
    "${C[@]}" task kill -s SIGKILL "$key" >/dev/null 2>&1
    sleep 2
    "${C[@]}" task delete "$key" >/dev/null 2>&1
    "${C[@]}" container rm "$key" >/dev/null 2>&1
    records | python3 -c '
import json, sys
key, n = sys.argv[1], sys.argv[2]
rs = [r for l in sys.stdin if l.strip() for r in [json.loads(l)] if r["key"] == key and r["trigger"] == "periodic"]
print("[bench-predump] ARCH_PREDUMP=%s: %d periodic records (%s)" % (n, len(rs), ", ".join(r["outcome"] for r in rs)))
for i, r in enumerate([r for r in rs if r["outcome"] == "ok"]):
    d = r["durations_ms"]
    print("[bench-predump] ARCH_PREDUMP=%s %s: freeze %s ms, dump %s ms, rootfs %s ms, predump %s ms, commit %s ms, total %s ms, image %d MiB"
          % (n, "warm-up" if i == 0 else "run %d" % i, d.get("freeze"), d.get("dump"), d.get("rootfs"),
             d.get("predump"), d.get("commit"), r["total_ms"], r["bytes"] >> 20))
' "$key" "$n"
    rm -rf "$ARCH_CHECKPOINT_ROOT/arch-test/$key"
done
hack/containerd-test.sh stop >/dev/null 2>&1
log "e2e predump:: exit $e2e_rc"
exit "$e2e_rc"
