#!/usr/bin/env bash
# Install dockerd (Debian trixie's docker.io, Docker 26) for the Docker
# how-to test. Run as root after hack/install-deps.sh, which adds the trixie
# apt source pinned at priority 100. Idempotent: a no-op when a dockerd that
# supports shim runtimes (runtimeType, Docker >= 23) is installed.
# The package's services are never started or enabled: hack/docker-test.sh
# runs a private dockerd.
set -euo pipefail

log() { echo "[hack] $*" >&2; }
die() { echo "[hack] ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
export DEBIAN_FRONTEND=noninteractive
APT_Q=(-q -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=300)

dockerd_ok() {
    local v
    command -v dockerd >/dev/null || return 1
    v="$(dockerd --version 2>/dev/null | sed -E 's/^Docker version ([0-9]+)\..*/\1/')"
    [ -n "$v" ] && [ "$v" -ge 23 ] 2>/dev/null
}

if dockerd_ok; then
    log "dockerd: $(dockerd --version) already installed"
    exit 0
fi
[ -e /etc/apt/sources.list.d/arch-trixie.sources ] || die "no trixie apt source: run hack/install-deps.sh first"

# Keep the package's maintainer scripts from starting dockerd.
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
quiet_services

# "docker.io/trixie" selects that package's version only (see the note on
# containerd in install-deps.sh); its dependencies come from bookworm or
# are already installed (containerd from trixie).
log "installing docker.io/trixie (no recommends)"
sim="$(apt-get -s install -y --no-install-recommends docker.io/trixie 2>&1)" || { echo "$sim" >&2; die "docker.io simulation failed"; }
core="$(echo "$sim" | grep -E '^Inst (libc6|libc-bin|base-files|runc|containerd) ' || true)"
if [ -n "$core" ]; then
    echo "$sim" | grep '^Inst' >&2
    die "installing docker.io/trixie would replace core packages or the installed containerd; refusing"
fi
apt-get "${APT_Q[@]}" install -y --no-install-recommends docker.io/trixie >/dev/null

# Never the system instance: the test runs its own dockerd and containerd.
if command -v systemctl >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        systemctl stop docker.service docker.socket >/dev/null 2>&1 || true
    fi
    systemctl disable docker.service docker.socket >/dev/null 2>&1 || true
fi
if [ -x /etc/init.d/docker ]; then
    /etc/init.d/docker stop >/dev/null 2>&1 || true
    if command -v update-rc.d >/dev/null; then update-rc.d docker disable >/dev/null 2>&1 || true; fi
fi

dockerd_ok || die "dockerd missing or older than 23 after install"
log "dockerd: $(dockerd --version)"
