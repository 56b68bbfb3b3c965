#!/usr/bin/env bash
# Install critest (the CRI validation suite of cri-tools) and the CNI
# plugins that hack/conformance.sh needs. Run as root.
#
#   ARCH_CRITEST_VERSION (default v1.34.0)  cri-tools module version
#   ARCH_CRITEST_PREFIX  (default /opt/arch-critest)  private prefix:
#                        bin/critest, bin/critest.src (the module's source
#                        dir), go/ (GOPATH: module and build cache),
#                        busybox/ (Debian's dynamic busybox, unpacked)
#
# The version: cri-tools v1.30.x matches containerd 1.7's CRI, but the Go
# module proxy here does not serve it (v1.30.1: "This module version is not
# available"); v1.34.0 is the closest release it serves. critest speaks CRI
# v1, which containerd 1.7 serves; specs for features newer than 1.7 fail
# under both handlers alike (see docs/conformance.md).
#
# How: `go install sigs.k8s.io/cri-tools/cmd/critest@VERSION` is what the
# brief asks for, but cmd/critest holds only a _test.go file (a Ginkgo
# suite), so `go install` answers "no non-test Go files"; cri-tools' own
# Makefile builds it with `go test -c`. So: the module comes from the Go
# module proxy with `go mod download`, and `go test -c` builds the suite
# from the module cache (dependencies from the proxy too, -mod=mod: module
# zips carry no vendor/). Needs Go >= 1.24 on PATH (or /usr/local/go/bin).
#
# CNI: Debian's containernetworking-plugins (bridge, host-local, loopback,
# portmap in /usr/lib/cni).
set -euo pipefail
log() { echo "[hack] $*" >&2; }
die() { echo "[hack] ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
VERSION="${ARCH_CRITEST_VERSION:-v1.34.0}"
PREFIX="${ARCH_CRITEST_PREFIX:-/opt/arch-critest}"
BIN="$PREFIX/bin/critest"
STAMP="$PREFIX/bin/critest.version"

export DEBIAN_FRONTEND=noninteractive
if [ ! -x /usr/lib/cni/bridge ] || [ ! -x /usr/lib/cni/portmap ]; then
    log "installing containernetworking-plugins"
    apt-get -q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300 install -y --no-install-recommends \
        containernetworking-plugins >/dev/null
fi
for p in bridge host-local loopback portmap; do
    [ -x "/usr/lib/cni/$p" ] || die "/usr/lib/cni/$p missing after install"
done
command -v ipcmk >/dev/null || die "ipcmk missing (util-linux): critest's HostIpc specs run it"

# critest's images are busybox images. Debian's busybox-static runs its
# applets in-process from sh (a "standalone" shell), so a masked /bin/ls
# would still run: the images use the dynamic busybox (and its libraries),
# unpacked here (the package conflicts with the busybox-static the rig uses).
BUSYBOX_DIR="$PREFIX/busybox"
mkdir -p "$PREFIX/bin"
if [ ! -x "$BUSYBOX_DIR/bin/busybox" ]; then
    log "busybox (dynamic) for critest's images: apt-get download busybox"
    tmp="$(mktemp -d)"
    (cd "$tmp" && chown _apt "$tmp" 2>/dev/null; apt-get -q download busybox >/dev/null)
    rm -rf "$BUSYBOX_DIR.tmp" && dpkg-deb -x "$tmp"/busybox_*.deb "$BUSYBOX_DIR.tmp"
    rm -rf "$BUSYBOX_DIR" && mv "$BUSYBOX_DIR.tmp" "$BUSYBOX_DIR"
    rm -rf "$tmp"
fi

if [ -x "$BIN" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$VERSION" ] && [ -d "$(cat "$BIN.src" 2>/dev/null)" ]; then
    log "critest $VERSION already in $BIN"
    exit 0
fi

PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || die "go not found (needs Go >= 1.24)"
export GOPATH="$PREFIX/go" GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=0
mkdir -p "$PREFIX/bin" "$GOPATH"
log "critest $VERSION: go mod download sigs.k8s.io/cri-tools@$VERSION (into $GOPATH)"
dir="$(go mod download -json "sigs.k8s.io/cri-tools@$VERSION" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir","")) if not d.get("Error") else sys.exit(d["Error"])')"
[ -d "$dir/cmd/critest" ] || die "no cmd/critest in $dir"
log "critest $VERSION: go test -c ./cmd/critest (first build: a few minutes)"
t0=$SECONDS
if ! (cd "$dir" && go test -c -o "$BIN.tmp" -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$VERSION" ./cmd/critest) >"$PREFIX/build.log" 2>&1; then
    tail -n 30 "$PREFIX/build.log" >&2
    die "critest build failed (log: $PREFIX/build.log)"
fi
mv "$BIN.tmp" "$BIN"
echo "$VERSION" >"$STAMP"
# The suite's source: hack/conformance_images.py reads critest's image refs there.
echo "$dir" >"$BIN.src"
log "critest $VERSION installed in $BIN ($((SECONDS - t0))s)"
