# shellcheck shell=bash
# Shared by the hack/vm scripts; sourced, never run.
#   ARCH_VM_DIR  where the guest lives (default /var/cache/arch-vm): rootfs/,
#                guest.img (ext4, booted read-only-backed with -snapshot),
#                vmlinuz, initrd.img, qemu/ (a private QEMU when none is installed)
VM_DIR="${ARCH_VM_DIR:-/var/cache/arch-vm}"
VM_ROOTFS="$VM_DIR/rootfs"
VM_IMG="$VM_DIR/guest.img"
VM_KERNEL="$VM_DIR/vmlinuz"
VM_INITRD="$VM_DIR/initrd.img"
VM_QEMU_PREFIX="$VM_DIR/qemu"
DEBIAN_SOURCES=/etc/apt/sources.list.d/debian.sources

vm_log() { echo "[vm] $*" >&2; }
vm_die() { echo "[vm] ERROR: $*" >&2; exit 1; }

# The URIs of the deb822 stanza whose Suites contain exactly "bookworm": the
# host's own mirror, so no registry host name is ever written down here.
bookworm_uri() {
    [ -r "$DEBIAN_SOURCES" ] || vm_die "$DEBIAN_SOURCES not found (need deb822 sources)"
    awk 'BEGIN { RS = ""; FS = "\n" }
    {
        uris = ""; suites = ""
        for (i = 1; i <= NF; i++) {
            line = $i
            if (line ~ /^URIs:/)   { sub(/^URIs:[ \t]*/, "", line); uris = line }
            if (line ~ /^Suites:/) { sub(/^Suites:[ \t]*/, "", line); suites = line }
        }
        n = split(suites, s, /[ \t]+/)
        for (j = 1; j <= n; j++) if (s[j] == "bookworm") { split(uris, u, /[ \t]+/); print u[1]; exit }
    }' "$DEBIAN_SOURCES"
}

# qemu-system-x86_64: the installed one, else the private prefix that
# build-guest.sh unpacks (bookworm's package may conflict with a newer
# qemu-utils on the host, so it is unpacked, not installed).
qemu_bin() {
    if [ -x "$VM_QEMU_PREFIX/usr/bin/qemu-system-x86_64" ]; then
        echo "$VM_QEMU_PREFIX/usr/bin/qemu-system-x86_64"
    elif command -v qemu-system-x86_64 >/dev/null; then
        command -v qemu-system-x86_64
    else
        return 1
    fi
}
