#!/usr/bin/env bash
# Kubernetes CRI conformance: critest (cri-tools' CRI validation suite)
# against a private CRI-enabled containerd with CNI, once with the runtime
# handler `runc` (io.containerd.runc.v2) and once with `arch`
# (io.containerd.arch.v1), on the same setup. Run as root (make conformance).
#
# The setup, all of it private to this script:
#   - a network namespace (ARCH_CONFORMANCE_NETNS, default arch-conform)
#     with only its loopback: containerd, its shims and critest run in it
#     (nsenter --net), CNI's bridge is made in it, host-network pods share
#     it; it has no route out, so nothing reaches any address but the pods'
#     own and its loopback;
#   - CNI: Debian's bridge + host-local (10.88.77.0/24) + portmap plugins;
#   - containerd with the CRI plugin (hack/containerd-test.sh, ARCH_TEST_CRI=1,
#     the documented handler snippet), its own dirs (/run/arch-conformance,
#     /var/lib/arch-conformance);
#   - no image registry: critest's images are built here from Debian's busybox
#     and small stand-ins (hack/conformance_images.py, hack/conformance-images/)
#     and imported under the refs critest looks for; specs that need a
#     registry (pulls) are skipped, each with its reason
#     (hack/conformance-skip.txt).
# Results: results/conformance/{runc,arch}.tsv (state, seconds, spec,
# failure), the JSON reports and logs; a table of counts per handler and of
# every spec whose result differs. Exits non-zero if arch fails a spec that
# runc passes and hack/conformance-known.txt does not list it.
#   env: ARCH_CONFORMANCE_HANDLERS  (default "runc arch")
#        ARCH_CONFORMANCE_FOCUS     ginkgo focus regexp (default: all)
#        ARCH_CRITEST               critest binary (default from hack/install-critest.sh)
#        ARCH_CONFORMANCE_NO_BUILD=1  use the shim in target/debug as is
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"
log() { echo "[conformance] $*" >&2; }
die() { echo "[conformance] ERROR: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (containers, mounts, network namespaces)"

NETNS="${ARCH_CONFORMANCE_NETNS:-arch-conform}"
SUBNET="10.88.77.0/24"
HANDLERS="${ARCH_CONFORMANCE_HANDLERS:-runc arch}"
RESULTS="$REPO/results/conformance"
CRITEST="${ARCH_CRITEST:-${ARCH_CRITEST_PREFIX:-/opt/arch-critest}/bin/critest}"
SKIP_FILE="$REPO/hack/conformance-skip.txt"
KNOWN_FILE="$REPO/hack/conformance-known.txt"
IMAGES_DIR="/var/cache/arch-hack/conformance"
export ARCH_TEST_CRI=1 ARCH_TEST_NETNS="$NETNS"
export ARCH_TEST_DIR="${ARCH_CONFORMANCE_DIR:-/run/arch-conformance}"
export ARCH_TEST_ROOT="${ARCH_CONFORMANCE_ROOT:-/var/lib/arch-conformance/containerd}"
export ARCH_CHECKPOINT_ROOT="${ARCH_CONFORMANCE_CHECKPOINT_ROOT:-/var/lib/arch-conformance/checkpoint}"
export ARCH_SHIM_DIR="$REPO/target/debug"
SOCK="$ARCH_TEST_DIR/containerd.sock"
IN_NETNS=(nsenter "--net=/run/netns/$NETNS")
t_start=$SECONDS

hack/install-critest.sh
if [ "${ARCH_CONFORMANCE_NO_BUILD:-0}" != 1 ]; then
    # The same build as hack/test.sh's suites (no relink between them).
    log "building the shim"
    cargo build --workspace --bins --features containerd-shim-arch-v1/fault-injection
fi
[ -x "$ARCH_SHIM_DIR/containerd-shim-arch-v1" ] || die "no shim in $ARCH_SHIM_DIR"

# ------------------------------------------------------------ network
setup_netns() {
    if [ ! -e "/run/netns/$NETNS" ]; then
        log "network namespace $NETNS (loopback only, no route out)"
        ip netns add "$NETNS"
    fi
    ip -n "$NETNS" link set lo up
    # The bridge's pods talk to each other and to the namespace's own
    # addresses (portmap's 127.0.0.1 host ports): forwarding stays inside.
    ip netns exec "$NETNS" sysctl -qw net.ipv4.ip_forward=1
}

setup_cni() {
    local d="$ARCH_TEST_DIR/cni" p
    mkdir -p "$d/bin" "$d/net.d"
    for p in bridge host-local loopback portmap; do ln -sfn "/usr/lib/cni/$p" "$d/bin/$p"; done
    cat >"$d/net.d/10-arch-conformance.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "arch-conformance",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "archconf0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$SUBNET"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

cleanup() {
    hack/containerd-test.sh stop >/dev/null 2>&1 || true
    # The namespace goes with its bridge, routes and portmap rules.
    ip netns del "$NETNS" 2>/dev/null || true
}
trap cleanup EXIT

setup_netns
setup_cni

# ------------------------------------------------------------ containerd
rm -rf "$ARCH_CHECKPOINT_ROOT"
hack/containerd-test.sh restart >/dev/null
# critest's images, built here from busybox-static and stand-ins
# (hack/conformance_images.py), imported as the refs critest looks for.
CRI_TOOLS_SRC="$(cat "${ARCH_CRITEST_PREFIX:-/opt/arch-critest}/bin/critest.src")"
mkdir -p "$IMAGES_DIR"
python3 hack/conformance_images.py --cri-tools "$CRI_TOOLS_SRC" --out-dir "$IMAGES_DIR" \
    --busybox "${ARCH_CRITEST_PREFIX:-/opt/arch-critest}/busybox/bin/busybox" >"$IMAGES_DIR/images.tsv"
while IFS=$'\t' read -r ref tar; do
    ARCH_TEST_IMAGE="$ref" ARCH_TEST_IMAGE_TAR="$tar" hack/import-test-image.sh "$SOCK" k8s.io
done <"$IMAGES_DIR/images.tsv"

rm -rf "$RESULTS" && mkdir -p "$RESULTS"
cat >"$RESULTS/images.yaml" <<EOF
defaultTestContainerImage: localhost/arch-conformance/busybox:latest
webServerTestImage: localhost/arch-conformance/webserver:latest
EOF

# --ginkgo.skip from hack/conformance-skip.txt: "REGEXP  # reason" lines.
skip_re="$(sed -E 's/[[:space:]]+#.*$//; /^[[:space:]]*(#|$)/d' "$SKIP_FILE" | paste -sd'|')"

# ------------------------------------------------------------ critest
run_handler() {
    local h="$1" t0=$SECONDS rc=0 args
    args=(
        --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK"
        --runtime-handler "$h" --test-images-file "$RESULTS/images.yaml"
        --ginkgo.json-report "$RESULTS/$h.json" --ginkgo.no-color
        --ginkgo.timeout 30m
    )
    [ -z "$skip_re" ] || args+=(--ginkgo.skip "$skip_re")
    [ -z "${ARCH_CONFORMANCE_FOCUS:-}" ] || args+=(--ginkgo.focus "$ARCH_CONFORMANCE_FOCUS")
    log "critest --runtime-handler $h (log $RESULTS/$h.log)"
    # critest is in the namespace too: it reaches pod IPs, host ports on
    # 127.0.0.1 and containerd's streaming server there.
    (cd "$RESULTS" && "${IN_NETNS[@]}" "$CRITEST" "${args[@]}") >"$RESULTS/$h.log" 2>&1 || rc=$?
    echo "$((SECONDS - t0))" >"$RESULTS/$h.seconds"
    python3 hack/conformance_report.py tsv "$RESULTS/$h.json" >"$RESULTS/$h.tsv"
    log "$h: critest exit $rc in $((SECONDS - t0))s: $(cut -f1 "$RESULTS/$h.tsv" | sort | uniq -c | xargs)"
}

first=1
for h in $HANDLERS; do
    if [ "$first" = 0 ]; then
        # Between handlers: a fresh daemon, as if the other had never run.
        hack/containerd-test.sh stop >/dev/null 2>&1 || true
        hack/containerd-test.sh start >/dev/null
    fi
    first=0
    run_handler "$h"
done
hack/containerd-test.sh stop >/dev/null 2>&1 || true

rc=0
# shellcheck disable=SC2086
python3 hack/conformance_report.py compare --known "$KNOWN_FILE" --skip "$SKIP_FILE" \
    --out "$RESULTS/summary.md" $(for h in $HANDLERS; do echo "$h=$RESULTS/$h.tsv"; done) || rc=$?
log "total $((SECONDS - t_start))s (results in $RESULTS)"
exit $rc
