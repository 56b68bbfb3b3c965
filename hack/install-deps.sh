#!/usr/bin/env bash
# Install the ARCH test rig on a fresh Debian 12 (bookworm) host. Run as root.
#
# Three containerds, side by side (hack/containerd-test.sh ARCH_CONTAINERD=):
#   system -> containerd 1.7.x from trixie, the package, in /usr/bin
#   sid    -> containerd 2.1.x from sid, its .deb unpacked (never installed)
#             into $ARCH_CONTAINERD_PREFIX/sid (default /opt/arch-containerd)
#   newest -> the newest containerd release (2.3+: the bootstrap protocol),
#             built with `go install` of its module into
#             $ARCH_CONTAINERD_PREFIX/newest/bin; ARCH_CONTAINERD_NEWEST
#             (default: the module's latest release) picks another version
#   ARCH_CRIU_WORKDIR (default /var/cache/arch-hack/criu) -> CRIU build dir
#   ARCH_CRIU_FORCE_BUILD=1                -> rebuild CRIU even if it works
#
# Apt mirrors are never hard-coded: the URIs of the bookworm stanza in
# /etc/apt/sources.list.d/debian.sources are reused for the extra suites.
# trixie is pinned at priority 100 (nothing else gets upgraded), sid at 50
# (below any installed package: apt never installs or upgrades from it;
# only its containerd .deb is downloaded and unpacked).
set -euo pipefail

log() { echo "[hack] $*" >&2; }
die() { echo "[hack] ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"

[ -z "${ARCH_CONTAINERD_SUITE:-}" ] || die "ARCH_CONTAINERD_SUITE is gone: every containerd is installed side by side (ARCH_CONTAINERD=system|sid|newest selects one)"
CRIU_WORKDIR="${ARCH_CRIU_WORKDIR:-/var/cache/arch-hack/criu}"
DEBIAN_SOURCES=/etc/apt/sources.list.d/debian.sources
export DEBIAN_FRONTEND=noninteractive
APT_Q=(-q -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=300)
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- apt sources
# Print "URIS<TAB>SIGNED_BY<TAB>COMPONENTS" of the deb822 stanza whose Suites
# contain exactly "bookworm" (not bookworm-security / bookworm-updates).
bookworm_stanza() {
    awk 'BEGIN { RS = ""; FS = "\n" }
    {
        uris = ""; suites = ""; sb = ""; comps = ""
        for (i = 1; i <= NF; i++) {
            line = $i
            if (line ~ /^URIs:/)       { sub(/^URIs:[ \t]*/, "", line); uris = line }
            if (line ~ /^Suites:/)     { sub(/^Suites:[ \t]*/, "", line); suites = line }
            if (line ~ /^Signed-By:/)  { sub(/^Signed-By:[ \t]*/, "", line); sb = line }
            if (line ~ /^Components:/) { sub(/^Components:[ \t]*/, "", line); comps = line }
        }
        n = split(suites, s, /[ \t]+/)
        for (j = 1; j <= n; j++) if (s[j] == "bookworm") { print uris "\t" sb "\t" comps; exit }
    }' "$DEBIAN_SOURCES"
}

add_suite() { # add_suite SUITE PRIORITY -> writes arch-SUITE.sources + pin; returns 0 if changed
    local suite="$1" prio="$2" line uris sb src pref tmp changed=1
    [ -r "$DEBIAN_SOURCES" ] || die "$DEBIAN_SOURCES not found (need deb822 sources)"
    line="$(bookworm_stanza)"
    [ -n "$line" ] || die "no stanza with Suites: bookworm in $DEBIAN_SOURCES"
    IFS=$'\t' read -r uris sb _ <<<"$line"
    [ -n "$uris" ] || die "bookworm stanza has no URIs"
    [ -n "$sb" ] || sb=/usr/share/keyrings/debian-archive-keyring.gpg
    src="/etc/apt/sources.list.d/arch-${suite}.sources"
    pref="/etc/apt/preferences.d/arch-${suite}"
    tmp="$(mktemp)"
    printf 'Types: deb deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
        "$uris" "$suite" "$sb" >"$tmp"
    if ! cmp -s "$tmp" "$src" 2>/dev/null; then install -m 0644 "$tmp" "$src"; changed=0; fi
    printf 'Package: *\nPin: release n=%s\nPin-Priority: %s\n' "$suite" "$prio" >"$tmp"
    if ! cmp -s "$tmp" "$pref" 2>/dev/null; then install -m 0644 "$tmp" "$pref"; changed=0; fi
    rm -f "$tmp"
    log "apt source for $suite: $src (pinned $prio in $pref)"
    return $changed
}

t0=$SECONDS
need_update=1
add_suite trixie 100 && need_update=0
add_suite sid 50 && need_update=0
# Always refresh on first run of the day-ish: cheap compared to a stale index.
if [ $need_update = 0 ] || [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*sid*Packages*' -mmin -720 2>/dev/null)" ]; then
    log "apt-get update"
    apt-get "${APT_Q[@]}" update >/dev/null
fi

# ------------------------------------------------------- keep services quiet
# Prevent maintainer scripts from starting daemons (containerd) during install.
quiet_services

# ---------------------------------------------------------- base packages
BASE_PKGS=(
    iptables busybox-static pkg-config pkgconf build-essential gcc python3 jq
    ca-certificates xz-utils git
    # CRIU build deps
    libbsd-dev libcap-dev libgnutls28-dev libnet1-dev libnftables-dev
    libnl-3-dev libprotobuf-c-dev libprotobuf-dev protobuf-c-compiler
    protobuf-compiler uuid-dev python3-protobuf libaio-dev
    # the shim itself
    libseccomp-dev
    # Debian 12 runc (runc-v2 shim side-by-side benchmarks)
    runc
)
log "installing base packages (bookworm)"
apt-get "${APT_Q[@]}" install -y --no-install-recommends "${BASE_PKGS[@]}" >/dev/null

# --------------------------------------------------------------- containerd
# NB: "apt-get install -t trixie containerd" raises *all* of trixie to the
# target-release priority and tries to upgrade libc6, systemd, apt, python3...
# "containerd/trixie" selects only that package's version; its deps
# (runc >= 0.1.0, libc6 >= 2.34) are satisfied from bookworm.
SUITE=trixie
log "installing containerd/$SUITE (no recommends, keep bookworm runc)"
sim="$(apt-get -s install -y --no-install-recommends --allow-downgrades "containerd/$SUITE" 2>&1)" || { echo "$sim" >&2; die "containerd simulation failed"; }
# (Whole-input filters, no `grep -q`: with pipefail an early exit can
# SIGPIPE the writer and turn a match into "no match", or kill the script.)
core="$(echo "$sim" | grep -E '^Inst (libc6|libc-bin|base-files|runc) ' | grep -vE '\(1\.1\.5' || true)"
if [ -n "$core" ]; then
    echo "$sim" | grep '^Inst' >&2
    die "installing containerd/$SUITE would upgrade core packages; refusing"
fi
apt-get "${APT_Q[@]}" install -y --no-install-recommends --allow-downgrades "containerd/$SUITE" >/dev/null
apt-mark hold runc >/dev/null || true

# The package ships a systemd unit; we never want the system instance.
if command -v systemctl >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        systemctl stop containerd.service >/dev/null 2>&1 || true
    fi
    systemctl disable containerd.service >/dev/null 2>&1 || true
fi
if [ -x /etc/init.d/containerd ]; then
    /etc/init.d/containerd stop >/dev/null 2>&1 || true
    command -v update-rc.d >/dev/null && update-rc.d containerd disable >/dev/null 2>&1 || true
fi
# Anything left running from the package's (system) config? stop it by pid.
for pid in $(pgrep -x containerd 2>/dev/null || true); do
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    case "$cmdline" in *--config*) continue ;; esac
    log "stopping system containerd pid $pid"; kill "$pid" 2>/dev/null || true
done

for b in containerd ctr containerd-shim-runc-v2 runc; do
    command -v "$b" >/dev/null || die "$b missing after install"
done

# ------------------------------------------------- containerd 2.1 (sid)
# The .deb unpacked into a private prefix: the 1.7 package stays the
# system's containerd. Re-unpacked only when sid has another version.
SID_DIR="$ARCH_CONTAINERD_PREFIX/sid"
tc=$SECONDS
sid_version="$(apt-cache show containerd/sid 2>/dev/null | awk '/^Version:/ && !v {v = $2} END {print v}')"
[ -n "$sid_version" ] || die "no containerd in sid (apt source arch-sid.sources)"
if [ "$(cat "$SID_DIR/.deb-version" 2>/dev/null)" != "$sid_version" ] || [ ! -x "$SID_DIR/usr/bin/containerd" ]; then
    debs=/var/cache/arch-hack/debs
    mkdir -p "$debs"; chmod 0755 "$debs"
    rm -f "$debs"/containerd_*.deb
    (cd "$debs" && apt-get -q download "containerd/sid" >"$debs/download.log" 2>&1) ||
        { cat "$debs/download.log" >&2; die "could not download containerd/sid"; }
    rm -rf "$SID_DIR.tmp"; mkdir -p "$SID_DIR.tmp"
    dpkg-deb -x "$debs"/containerd_*.deb "$SID_DIR.tmp"
    echo "$sid_version" >"$SID_DIR.tmp/.deb-version"
    rm -rf "$SID_DIR"; mv "$SID_DIR.tmp" "$SID_DIR"
    log "containerd $sid_version (sid) unpacked in $SID_DIR in $((SECONDS - tc))s"
fi
"$SID_DIR/usr/bin/containerd" --version >/dev/null || die "$SID_DIR/usr/bin/containerd does not run"

# ------------------------------------------- containerd newest (go install)
# The newest release, which Debian does not package yet: the ordinary
# `go install` of its module (the Go toolchain on this machine is needed).
NEWEST_DIR="$ARCH_CONTAINERD_PREFIX/newest"
NEWEST_MOD=github.com/containerd/containerd/v2
command -v go >/dev/null || die "go not found: the newest containerd is built with go install"
tc=$SECONDS
newest="${ARCH_CONTAINERD_NEWEST:-}"
if [ -z "$newest" ]; then
    newest="$(go list -m -f '{{.Version}}' "$NEWEST_MOD@latest" 2>/dev/null)" || newest=""
fi
have="$(cat "$NEWEST_DIR/.version" 2>/dev/null || true)"
if [ -z "$newest" ]; then
    # No answer about the latest release: a build already here will do.
    [ -n "$have" ] && [ -x "$NEWEST_DIR/bin/containerd" ] ||
        die "cannot resolve $NEWEST_MOD@latest and no build in $NEWEST_DIR"
    log "WARNING: cannot resolve $NEWEST_MOD@latest; keeping containerd $have"
    newest="$have"
fi
if [ "$have" != "$newest" ] || [ ! -x "$NEWEST_DIR/bin/containerd" ] || [ ! -x "$NEWEST_DIR/bin/ctr" ]; then
    log "containerd $newest: go install (a few minutes on a cold module cache)"
    rm -rf "$NEWEST_DIR"; mkdir -p "$NEWEST_DIR/bin"
    # no_btrfs: the btrfs snapshotter needs libbtrfs headers, and no test uses it.
    GOBIN="$NEWEST_DIR/bin" GOFLAGS="${GOFLAGS:-} -buildvcs=false -tags=no_btrfs" \
        go install "$NEWEST_MOD/cmd/containerd@$newest" "$NEWEST_MOD/cmd/ctr@$newest" \
        >"/var/cache/arch-hack/go-install-containerd.log" 2>&1 ||
        { tail -n 30 /var/cache/arch-hack/go-install-containerd.log >&2; die "go install of containerd $newest failed"; }
    echo "$newest" >"$NEWEST_DIR/.version"
    log "containerd $newest built in $NEWEST_DIR in $((SECONDS - tc))s"
fi
"$NEWEST_DIR/bin/containerd" --version >/dev/null || die "$NEWEST_DIR/bin/containerd does not run"

# ------------------------------------------- checkpointctl (trixie, private)
"$(dirname "${BASH_SOURCE[0]}")/install-checkpointctl.sh"

# --------------------------------------------------------------------- CRIU
# 4.2 is the first CRIU that dumps TCP and UDP sockets on kernels >= 6.16,
# which refuse SO_PASSCRED/SO_PASSSEC on them (4.1 fails the whole dump:
# "Can't get 1:16 opt"). Debian has it in sid only; its source builds here.
CRIU_MIN=4.2
CRIU_SUITE=sid
version_at_least() { # version_at_least HAVE WANT
    [ -n "$1" ] && [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}
criu_ok() { # criu_ok BIN
    local v
    [ -x "$1" ] || return 1
    v="$("$1" --version 2>/dev/null | awk '/^Version:/ {print $2}')"
    version_at_least "$v" "$CRIU_MIN" || return 1
    "$1" check >/dev/null 2>&1
}

if [ "${ARCH_CRIU_FORCE_BUILD:-0}" != 1 ] && criu_ok /usr/local/sbin/criu; then
    log "criu: /usr/local/sbin/criu already works, skipping build"
elif [ "${ARCH_CRIU_FORCE_BUILD:-0}" != 1 ] && command -v criu >/dev/null && criu_ok "$(command -v criu)"; then
    log "criu: $(command -v criu) already works, skipping build"
else
    tc=$SECONDS
    log "criu: building from Debian $CRIU_SUITE source in $CRIU_WORKDIR"
    mkdir -p "$CRIU_WORKDIR"
    cd "$CRIU_WORKDIR"
    # compgen fails when nothing matches (a fresh host): that is not an
    # error here, and under pipefail it would end the script silently.
    newest_orig() { { compgen -G 'criu_*.orig.tar.*' || true; } | sort -V | tail -n1; }
    orig_version() { basename "$1" | sed -E 's/^criu_([^.]+\.[^.]+(\.[0-9]+)?)\.orig\.tar\..*/\1/'; }
    orig="$(newest_orig)"
    if [ -z "$orig" ] || ! version_at_least "$(orig_version "$orig")" "$CRIU_MIN"; then
        # Only the upstream orig tarball is needed. Some mirrors/proxies 404
        # the .dsc / .debian.tar.xz, so tolerate failure if the orig arrived.
        apt-get -q source --download-only "criu/$CRIU_SUITE" >apt-source.log 2>&1 || true
        orig="$(newest_orig)"
        [ -n "$orig" ] && version_at_least "$(orig_version "$orig")" "$CRIU_MIN" ||
            { cat apt-source.log >&2; die "could not download criu >= $CRIU_MIN source from $CRIU_SUITE"; }
    fi
    ver="$(orig_version "$orig")"
    src="$CRIU_WORKDIR/criu-$ver"
    if [ ! -f "$src/Makefile" ]; then
        rm -rf "$src" "$CRIU_WORKDIR/unpack"; mkdir -p "$CRIU_WORKDIR/unpack"
        tar -xf "$orig" -C "$CRIU_WORKDIR/unpack"
        mv "$CRIU_WORKDIR/unpack"/* "$src"; rmdir "$CRIU_WORKDIR/unpack"
    fi
    log "criu: make -j$(nproc) criu ($ver)"
    if ! make -C "$src" -j"$(nproc)" criu >"$CRIU_WORKDIR/build.log" 2>&1; then
        tail -n 40 "$CRIU_WORKDIR/build.log" >&2
        die "criu build failed (full log: $CRIU_WORKDIR/build.log)"
    fi
    install -D -m 0755 "$src/criu/criu" /usr/local/sbin/criu
    log "criu: built and installed in $((SECONDS - tc))s"
fi
/usr/local/sbin/criu --version >/dev/null 2>&1 || true
if ! criu check >/dev/null 2>&1; then
    criu check >&2 || true
    die "criu check failed"
fi

# ------------------------------------------------------------------ summary
log "done in $((SECONDS - t0))s"
echo "containerd: $(containerd --version 2>/dev/null | awk '{print $3}') ($(command -v containerd))"
echo "  sid:      $("$SID_DIR/usr/bin/containerd" --version | awk '{print $3}') ($SID_DIR/usr/bin)"
echo "  newest:   $("$NEWEST_DIR/bin/containerd" --version | awk '{print $3}') ($NEWEST_DIR/bin)"
echo "ctr:        $(ctr --version 2>/dev/null | awk '{print $3}')"
echo "shim:       $(command -v containerd-shim-runc-v2)"
echo "runc:       $(runc --version 2>/dev/null | awk 'NR==1 {print $3}') ($(command -v runc))"
echo "criu:       $(criu --version 2>/dev/null | awk '/^Version:/ {print $2}') ($(command -v criu)); criu check: $(criu check 2>&1 | tail -n1)"
echo "iptables:   $(iptables --version 2>/dev/null)"
echo "checkpointctl: $(cat "${ARCH_CHECKPOINTCTL_PREFIX:-/opt/arch-checkpointctl}/.deb-version" 2>/dev/null)"
echo "busybox:    $(/bin/busybox 2>/dev/null | head -n1 || true)"
