#!/bin/bash
# Runs INSIDE the guest (installed as /usr/local/sbin/arch-vm-run by
# build-guest.sh, started by arch-vm-run.service): mounts the host's 9p
# shares, runs the command the host left in the "out" share, writes its
# output and exit code there, and powers the guest off.
#   kernel command line: arch.repo=PATH  where the repo share is mounted
#                        (the host's path, so built-in paths stay valid)
set -u
OUT=/run/arch-vm-out
REPO=/repo
for a in $(cat /proc/cmdline); do
    case "$a" in arch.repo=*) REPO="${a#arch.repo=}" ;; esac
done
modprobe 9pnet_virtio 2>/dev/null || true
mkdir -p "$OUT" "$REPO"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 out "$OUT" || { echo "[guest] cannot mount the out share"; poweroff -f; }
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=loose repo "$REPO" ||
    { echo "[guest] cannot mount the repo share" >"$OUT/log"; echo 125 >"$OUT/rc"; sync; poweroff -f; }
echo "[guest] up after $(cut -d' ' -f1 /proc/uptime) s; $(stat -fc %T /sys/fs/cgroup) on /sys/fs/cgroup; controllers: $(cat /sys/fs/cgroup/cgroup.controllers)" >"$OUT/log"
cd "$REPO"
bash "$OUT/cmd" >>"$OUT/log" 2>&1 </dev/null
rc=$?
echo "[guest] exit $rc after $(cut -d' ' -f1 /proc/uptime) s" >>"$OUT/log"
echo "$rc" >"$OUT/rc"
sync
umount "$OUT" 2>/dev/null
poweroff -f
