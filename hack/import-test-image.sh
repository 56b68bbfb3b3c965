#!/usr/bin/env bash
# Import the ARCH busybox test image into a containerd instance and unpack it
# for the overlayfs snapshotter, so `ctr run` works right away.
#   usage: hack/import-test-image.sh ADDRESS NAMESPACE
#   env:   ARCH_TEST_IMAGE_TAR, ARCH_TEST_IMAGE (see build-test-image.sh)
#          ARCH_TEST_SNAPSHOTTER (default overlayfs)
set -euo pipefail
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { echo "[hack] $*" >&2; }

[ $# -eq 2 ] || { echo "usage: $0 ADDRESS NAMESPACE" >&2; exit 2; }
ADDR="$1"; NS="$2"
TAR="${ARCH_TEST_IMAGE_TAR:-/var/cache/arch-hack/arch-test-busybox.oci.tar}"
REF="${ARCH_TEST_IMAGE:-localhost/arch-test/busybox:latest}"
SNAP="${ARCH_TEST_SNAPSHOTTER:-overlayfs}"
export ARCH_TEST_IMAGE_TAR="$TAR" ARCH_TEST_IMAGE="$REF"
CTR=(ctr --address "$ADDR" -n "$NS")

# (Re)build when missing or older than the generator / busybox binary.
stale=0
for f in "$HACK_DIR/oci_image.py" "$HACK_DIR/build-test-image.sh" "${ARCH_BUSYBOX:-/bin/busybox}" "$HACK_DIR"/testbin/*.c; do
    [ "$f" -nt "$TAR" ] && stale=1
done
if [ ! -s "$TAR" ] || [ "$stale" = 1 ]; then
    "$HACK_DIR/build-test-image.sh" "$TAR" >/dev/null
fi
want="$(tar -xOf "$TAR" index.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["manifests"][0]["digest"])')"

have="$("${CTR[@]}" image ls | awk -v r="$REF" '$1 == r {print $3}')"
if [ "$have" != "$want" ]; then
    # The name comes from the io.containerd.image.name annotation in
    # index.json (a full ref, so no --base-name/--index-name is needed).
    # --local: do it client-side (works the same on containerd 1.7 and 2.x);
    # unpacking into $SNAP happens as part of the import.
    log "importing $REF ($want) into $ADDR ns=$NS"
    "${CTR[@]}" image import --local --snapshotter "$SNAP" "$TAR" >/dev/null
fi

have="$("${CTR[@]}" image ls | awk -v r="$REF" '$1 == r {print $3}')"
[ "$have" = "$want" ] || { "${CTR[@]}" image ls >&2; log "ERROR: $REF not present after import"; exit 1; }

# Make sure the image is complete and unpacked for $SNAP (last column of
# "image check"; note "image check -q" does NOT consider unpack state). ctr 1.7 has no "image unpack",
# so if needed re-run the import, which unpacks.
ready() {
    "${CTR[@]}" image check --snapshotter "$SNAP" "name==$REF" 2>/dev/null |
        awk -v r="$REF" '$1 == r && / complete / && $NF == "true" {ok = 1} END {exit !ok}'
}
if ! ready; then
    log "unpacking $REF for $SNAP"
    "${CTR[@]}" image import --local --snapshotter "$SNAP" "$TAR" >/dev/null
    ready || { "${CTR[@]}" image check --snapshotter "$SNAP" >&2; log "ERROR: $REF not unpacked for $SNAP"; exit 1; }
fi
log "image $REF ready (ns=$NS, snapshotter=$SNAP)"
