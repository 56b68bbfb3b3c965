#!/usr/bin/env bash
# Build the cgroup v2 test guest: Debian 12 minbase with systemd (unified
# hierarchy, the default of systemd 252), containerd 1.7 (the same trixie
# package as the host rig), iptables, the libraries the host's CRIU needs
# plus that CRIU binary, and Debian's 6.1 kernel. Run as root.
#   usage: hack/vm/build-guest.sh [--force]   (--force: from scratch)
#   ARCH_VM_REFRESH=1: keep the rootfs, redo its configuration and the image
#   (done by itself when the host's CRIU is not the one the guest got)
#   env:   ARCH_VM_DIR (default /var/cache/arch-vm), ARCH_VM_DISK_SIZE (3G)
#          ARCH_VM_CRIU (default /usr/local/sbin/criu: copied into the guest)
# Only directories and an ext4 image file are written: nothing on the host
# is mounted except debootstrap's own /proc and /sys inside the new root.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/vm/lib.sh
. "$HERE/lib.sh"
[ "$(id -u)" = 0 ] || vm_die "must run as root"
FORCE=0; [ "${1:-}" = --force ] && FORCE=1
CRIU_BIN="${ARCH_VM_CRIU:-/usr/local/sbin/criu}"
t0=$SECONDS
export DEBIAN_FRONTEND=noninteractive
APT_Q=(-q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300)

# The guest carries a copy of the host's CRIU: a host whose CRIU changed
# (hack/install-deps.sh moved to a newer one) gets the guest refreshed.
CRIU_STAMP="$VM_DIR/criu.sha256"
criu_digest() { sha256sum "$CRIU_BIN" 2>/dev/null | cut -d' ' -f1; }
[ -x "$CRIU_BIN" ] || vm_die "no CRIU at $CRIU_BIN (hack/install-deps.sh installs it)"
if [ "$FORCE" = 0 ] && [ "${ARCH_VM_REFRESH:-0}" = 0 ] && [ -s "$VM_IMG" ] && [ -s "$VM_KERNEL" ] && [ -s "$VM_INITRD" ] && qemu_bin >/dev/null; then
    if [ "$(cat "$CRIU_STAMP" 2>/dev/null)" = "$(criu_digest)" ]; then
        vm_log "guest present in $VM_DIR (--force rebuilds)"; exit 0
    fi
    vm_log "the host's CRIU ($CRIU_BIN) is not the guest's: refreshing the guest"
fi
mkdir -p "$VM_DIR"

# ------------------------------------------------------------------- QEMU
install_qemu() {
    command -v debootstrap >/dev/null || apt-get "${APT_Q[@]}" install -y --no-install-recommends debootstrap >/dev/null
    command -v mke2fs >/dev/null || apt-get "${APT_Q[@]}" install -y --no-install-recommends e2fsprogs >/dev/null
    qemu_bin >/dev/null && return 0
    if apt-get -s install -y --no-install-recommends qemu-system-x86 >/dev/null 2>&1; then
        vm_log "installing qemu-system-x86 (bookworm)"
        apt-get "${APT_Q[@]}" install -y --no-install-recommends qemu-system-x86 >/dev/null
        return 0
    fi
    # It conflicts with what is installed: unpack it and the dependencies
    # that are missing into a private prefix instead.
    vm_log "qemu-system-x86 cannot be installed beside this host's packages; unpacking into $VM_QEMU_PREFIX"
    local dl pkgs p
    dl="$(mktemp -d)"
    pkgs="$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
        --no-replaces --no-enhances qemu-system-x86 | awk '/^[a-z0-9]/ {print $1}' | sort -u)"
    for p in $pkgs; do
        dpkg -s "$p" >/dev/null 2>&1 && [ "$p" != qemu-system-x86 ] && continue
        (cd "$dl" && apt-get "${APT_Q[@]}" download "$p/bookworm" >/dev/null 2>&1) || true
    done
    mkdir -p "$VM_QEMU_PREFIX"
    for p in "$dl"/*.deb; do dpkg -x "$p" "$VM_QEMU_PREFIX"; done
    rm -rf "$dl"
    qemu_bin >/dev/null || vm_die "no qemu-system-x86_64 after unpacking"
}
install_qemu
vm_log "qemu: $(qemu_bin)"

# ------------------------------------------------------------- the rootfs
MIRROR="$(bookworm_uri)"
[ -n "$MIRROR" ] || vm_die "no bookworm stanza in $DEBIAN_SOURCES"
PKGS=(
    systemd systemd-sysv udev dbus kmod iproute2 iptables procps util-linux
    linux-image-amd64 initramfs-tools python3 ca-certificates
    # the libraries of the host's CRIU build (ldd /usr/local/sbin/criu)
    libbsd0 libgnutls30 libnftables1 libprotobuf-c1 libnl-3-200 libnet1 libuuid1
    libjansson4 libxtables12 libnftnl11 libmnl0
    # the shim
    libseccomp2
)
# debootstrap mounts /proc and /sys inside the new root while it runs; one
# that failed may leave them: unmount those (only under $VM_ROOTFS) before
# anything is removed, and never cross into another filesystem.
unmount_rootfs_leftovers() {
    local mp
    awk -v r="$VM_ROOTFS/" 'index($5, r) == 1 {print length($5) " " $5}' /proc/self/mountinfo |
        sort -rn | cut -d' ' -f2- | while read -r mp; do umount -l "$mp" || true; done
}
if [ ! -x "$VM_ROOTFS/usr/bin/containerd" ] || [ "$FORCE" = 1 ]; then
    unmount_rootfs_leftovers
    rm -rf --one-file-system "$VM_ROOTFS"
    vm_log "debootstrap bookworm minbase into $VM_ROOTFS"
    t=$SECONDS
    debootstrap --variant=minbase --include="$(IFS=,; echo "${PKGS[*]}")" \
        bookworm "$VM_ROOTFS" "$MIRROR" >"$VM_DIR/debootstrap.log" 2>&1 ||
        { tail -n 30 "$VM_DIR/debootstrap.log" >&2; vm_die "debootstrap failed"; }
    vm_log "debootstrap took $((SECONDS - t)) s"

    # containerd 1.7 from trixie, as hack/install-deps.sh does on the host
    # (the host's mirror, pinned at 100 so nothing else moves).
    printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$MIRROR" >"$VM_ROOTFS/etc/apt/sources.list.d/arch-trixie.sources"
    printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' >"$VM_ROOTFS/etc/apt/preferences.d/arch-trixie"
    printf '#!/bin/sh\nexit 101\n' >"$VM_ROOTFS/usr/sbin/policy-rc.d"; chmod 0755 "$VM_ROOTFS/usr/sbin/policy-rc.d"
    chroot "$VM_ROOTFS" apt-get "${APT_Q[@]}" update >/dev/null
    chroot "$VM_ROOTFS" apt-get "${APT_Q[@]}" install -y --no-install-recommends containerd/trixie >/dev/null
    chroot "$VM_ROOTFS" systemctl disable containerd.service >/dev/null 2>&1 || true
    rm -f "$VM_ROOTFS/usr/sbin/policy-rc.d"
    chroot "$VM_ROOTFS" apt-get clean
    rm -rf "$VM_ROOTFS"/var/lib/apt/lists/* "$VM_ROOTFS"/usr/share/doc/* "$VM_ROOTFS"/usr/share/man/* "$VM_ROOTFS"/usr/share/locale/*
fi

# A rootfs from an older version of this script: add what PKGS gained since.
missing=()
for p in "${PKGS[@]}"; do
    chroot "$VM_ROOTFS" dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    vm_log "adding ${missing[*]} to the guest"
    printf '#!/bin/sh\nexit 101\n' >"$VM_ROOTFS/usr/sbin/policy-rc.d"; chmod 0755 "$VM_ROOTFS/usr/sbin/policy-rc.d"
    chroot "$VM_ROOTFS" apt-get "${APT_Q[@]}" update >/dev/null
    chroot "$VM_ROOTFS" apt-get "${APT_Q[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
    rm -f "$VM_ROOTFS/usr/sbin/policy-rc.d"
    chroot "$VM_ROOTFS" apt-get clean
    rm -rf "$VM_ROOTFS"/var/lib/apt/lists/*
fi

# ------------------------------------------------------ guest configuration
install -m 0755 "$CRIU_BIN" "$VM_ROOTFS/usr/local/sbin/criu"
install -m 0755 "$HERE/guest-run.sh" "$VM_ROOTFS/usr/local/sbin/arch-vm-run"
cat >"$VM_ROOTFS/etc/systemd/system/arch-vm-run.service" <<'UNIT'
[Unit]
Description=ARCH: run the host's command from the 9p share, then power off
After=multi-user.target
[Service]
Type=oneshot
StandardOutput=journal+console
StandardError=journal+console
ExecStart=/usr/local/sbin/arch-vm-run
UNIT
mkdir -p "$VM_ROOTFS/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/arch-vm-run.service "$VM_ROOTFS/etc/systemd/system/multi-user.target.wants/arch-vm-run.service"
# nothing else to wait for: no getty, no network wait
for u in getty@tty1.service serial-getty@ttyS0.service systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer; do
    ln -sf /dev/null "$VM_ROOTFS/etc/systemd/system/$u"
done
echo arch-vm >"$VM_ROOTFS/etc/hostname"
printf '127.0.0.1 localhost arch-vm\n' >"$VM_ROOTFS/etc/hosts"
printf '/dev/vda / ext4 rw,noatime 0 1\n' >"$VM_ROOTFS/etc/fstab"
printf '9p\n9pnet_virtio\noverlay\n' >"$VM_ROOTFS/etc/modules-load.d/arch-vm.conf"
passwd -R "$VM_ROOTFS" -d root >/dev/null 2>&1 || true
cp -L "$VM_ROOTFS"/boot/vmlinuz-* "$VM_KERNEL"
cp -L "$VM_ROOTFS"/boot/initrd.img-* "$VM_INITRD"

# ------------------------------------------------------------ the disk image
unmount_rootfs_leftovers
t=$SECONDS
rm -f "$VM_IMG"
mke2fs -q -t ext4 -L arch-vm -d "$VM_ROOTFS" "$VM_IMG" "${ARCH_VM_DISK_SIZE:-3G}"
vm_log "image $VM_IMG ($(du -sh "$VM_IMG" | cut -f1) used of ${ARCH_VM_DISK_SIZE:-3G}) in $((SECONDS - t)) s"
criu_digest >"$CRIU_STAMP"
vm_log "guest built in $((SECONDS - t0)) s"
