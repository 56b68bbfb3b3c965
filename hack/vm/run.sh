#!/usr/bin/env bash
# Boot the cgroup v2 guest (QEMU TCG; KVM is not usable on these machines),
# run one command inside it and exit with that command's exit code. The
# command's output streams to stdout. Run as root, after build-guest.sh.
#   usage: hack/vm/run.sh [--] COMMAND [ARG...]   (by bash in the guest, cwd = the repo)
#          hack/vm/run.sh 'SCRIPT'               (one argument: a shell script)
#   env:   ARCH_VM_DIR, ARCH_VM_MEM (3G), ARCH_VM_CPUS (2),
#          ARCH_VM_TIMEOUT (seconds, default 3600), ARCH_VM_KEEP=1 (keep the run dir),
#          ARCH_VM_SCRATCH (a raw disk image for the guest's /dev/vdb, written through)
# The repository (with target/) is shared over 9p read-only at the same
# path as on the host; a per-run directory is shared read-write as "out"
# (cmd, log, rc, console.log). The disk is opened with -snapshot: every
# run starts from the built image and leaves it unchanged.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# shellcheck source=hack/vm/lib.sh
. "$HERE/lib.sh"
[ "$(id -u)" = 0 ] || vm_die "must run as root"
[ "${1:-}" = -- ] && shift
[ $# -gt 0 ] || vm_die "usage: $0 COMMAND..."
[ -s "$VM_IMG" ] && [ -s "$VM_KERNEL" ] || vm_die "no guest in $VM_DIR: run hack/vm/build-guest.sh"
QEMU="$(qemu_bin)" || vm_die "no qemu-system-x86_64: run hack/vm/build-guest.sh"
case "$QEMU" in "$VM_QEMU_PREFIX"/*)
    export LD_LIBRARY_PATH="$VM_QEMU_PREFIX/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    BIOS=(-L "$VM_QEMU_PREFIX/usr/share/qemu" -L "$VM_QEMU_PREFIX/usr/share/seabios") ;;
*) BIOS=() ;;
esac

mkdir -p "$VM_DIR/runs"
RUN="$(mktemp -d "$VM_DIR/runs/run.XXXXXX")"
chmod 0755 "$RUN"
# One argument is a shell script; several are one command and its words.
if [ $# = 1 ]; then printf '%s\n' "$1" >"$RUN/cmd"; else printf '%q ' "$@" >"$RUN/cmd"; echo >>"$RUN/cmd"; fi
: >"$RUN/log"
cleanup() {
    [ -z "${TAIL_PID:-}" ] || kill "$TAIL_PID" 2>/dev/null || true
    [ -z "${QEMU_PID:-}" ] || kill "$QEMU_PID" 2>/dev/null || true
    if [ "${ARCH_VM_KEEP:-0}" = 1 ]; then vm_log "run dir kept: $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT

t0=$SECONDS
vm_log "booting $(basename "$VM_KERNEL") under TCG ($QEMU), ${ARCH_VM_CPUS:-2} cpus, ${ARCH_VM_MEM:-3G}"
"$QEMU" "${BIOS[@]}" -machine q35 -accel tcg,thread=multi -cpu max \
    -smp "${ARCH_VM_CPUS:-2}" -m "${ARCH_VM_MEM:-3G}" \
    -display none -monitor none -serial "file:$RUN/console.log" -no-reboot -nic none \
    -kernel "$VM_KERNEL" -initrd "$VM_INITRD" \
    -append "root=/dev/vda rw console=ttyS0 quiet systemd.unified_cgroup_hierarchy=1 systemd.show_status=0 arch.repo=$REPO" \
    -drive "file=$VM_IMG,format=raw,if=virtio,cache=unsafe" -snapshot \
    ${ARCH_VM_SCRATCH:+-drive "file=$ARCH_VM_SCRATCH,format=raw,if=virtio,cache=unsafe,snapshot=off"} \
    -virtfs "local,path=$REPO,mount_tag=repo,security_model=none,readonly=on" \
    -virtfs "local,path=$RUN,mount_tag=out,security_model=none" &
QEMU_PID=$!
tail -n +1 -f "$RUN/log" &
TAIL_PID=$!
deadline=$((SECONDS + ${ARCH_VM_TIMEOUT:-3600}))
while kill -0 "$QEMU_PID" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        vm_log "timeout after ${ARCH_VM_TIMEOUT:-3600} s; killing the guest"
        kill "$QEMU_PID" 2>/dev/null || true
    fi
    sleep 1
done
wait "$QEMU_PID" 2>/dev/null || true
QEMU_PID=
sleep 0.5
if [ ! -s "$RUN/rc" ]; then
    vm_log "the guest gave no exit code; console:"
    tail -n 40 "$RUN/console.log" >&2 || true
    exit 125
fi
rc="$(cat "$RUN/rc")"
vm_log "guest exit $rc, $((SECONDS - t0)) s from boot to power-off"
exit "$rc"
