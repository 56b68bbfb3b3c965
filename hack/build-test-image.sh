#!/usr/bin/env bash
# Build the ARCH test image (busybox-static) as an OCI image-layout tar.
#   usage: hack/build-test-image.sh [OUT_TAR]
#   env:   ARCH_TEST_IMAGE_TAR (default OUT_TAR) /var/cache/arch-hack/arch-test-busybox.oci.tar
#          ARCH_TEST_IMAGE     (image ref)       localhost/arch-test/busybox:latest
#          ARCH_BUSYBOX        (binary)          /bin/busybox (from busybox-static)
#          ARCH_TEST_IMAGE_ENTRYPOINT          (none: Cmd /bin/sh); e.g.
#              /usr/local/bin/pause for the CRI tests' pod sandbox image
# Output is deterministic; prints the manifest digest on stdout.
set -euo pipefail
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-${ARCH_TEST_IMAGE_TAR:-/var/cache/arch-hack/arch-test-busybox.oci.tar}}"
REF="${ARCH_TEST_IMAGE:-localhost/arch-test/busybox:latest}"
BB="${ARCH_BUSYBOX:-/bin/busybox}"

[ -x "$BB" ] || { echo "[hack] ERROR: $BB not found (apt-get install busybox-static)" >&2; exit 1; }
if ldd "$BB" >/dev/null 2>&1; then
    echo "[hack] ERROR: $BB is dynamically linked; need busybox-static" >&2; exit 1
fi
mkdir -p "$(dirname "$OUT")"
# Static C test programs (hack/testbin/*.c) go to /usr/local/bin in the image.
BIN_DIR="$(dirname "$OUT")/testbin"
mkdir -p "$BIN_DIR"
extras=()
for src in "$HACK_DIR"/testbin/*.c; do
    name="$(basename "$src" .c)"
    gcc -static -O2 -Wall -Werror -o "$BIN_DIR/$name" "$src"
    extras+=(--extra "$BIN_DIR/$name:/usr/local/bin/$name")
done
PY="$(command -v python3)"
[ -z "${ARCH_TEST_IMAGE_ENTRYPOINT:-}" ] || extras+=(--entrypoint "$ARCH_TEST_IMAGE_ENTRYPOINT")
exec "$PY" "$HACK_DIR/oci_image.py" --out "$OUT" --busybox "$BB" --ref "$REF" "${extras[@]}"
