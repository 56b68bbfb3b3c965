#!/usr/bin/env bash
# Installs checkpointctl from Debian trixie into a private prefix, for the
# e2e test that checks `checkpointctl show` reads an `archctl export`
# archive (issue 16). trixie's build needs glibc 2.38 and Debian 12 has 2.36,
# so trixie's libc6 is unpacked beside it and the binary runs under that
# loader: a wrapper script, $ARCH_CHECKPOINTCTL_PREFIX/bin/checkpointctl.
# Nothing is installed into the system; re-run is a no-op for the same version.
# Needs the arch-trixie apt source that install-deps.sh adds.
set -euo pipefail
log() { echo "[hack] $*" >&2; }
die() { echo "[hack] ERROR: $*" >&2; exit 1; }

PREFIX="${ARCH_CHECKPOINTCTL_PREFIX:-/opt/arch-checkpointctl}"
version="$(apt-cache show checkpointctl/trixie 2>/dev/null | awk '/^Version:/ && !v {v = $2} END {print v}')"
[ -n "$version" ] || die "no checkpointctl in trixie (apt source arch-trixie.sources; run hack/install-deps.sh)"
if [ "$(cat "$PREFIX/.deb-version" 2>/dev/null)" = "$version" ] && "$PREFIX/bin/checkpointctl" --help >/dev/null 2>&1; then
    exit 0
fi
debs=/var/cache/arch-hack/debs-checkpointctl
rm -rf "$debs" "$PREFIX.tmp"; mkdir -p "$debs" "$PREFIX.tmp/bin"; chmod 0755 "$debs"
(cd "$debs" && apt-get -q download checkpointctl/trixie libc6/trixie >"$debs/download.log" 2>&1) ||
    { cat "$debs/download.log" >&2; die "could not download checkpointctl/trixie and libc6/trixie"; }
for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$PREFIX.tmp/root"; done
libdir=$PREFIX/root/usr/lib/x86_64-linux-gnu
cat >"$PREFIX.tmp/bin/checkpointctl" <<WRAP
#!/bin/sh
# trixie's checkpointctl under trixie's own glibc (hack/install-checkpointctl.sh)
exec $libdir/ld-linux-x86-64.so.2 --library-path $libdir $PREFIX/root/usr/bin/checkpointctl "\$@"
WRAP
chmod 0755 "$PREFIX.tmp/bin/checkpointctl"
echo "$version" >"$PREFIX.tmp/.deb-version"
rm -rf "$PREFIX"; mv "$PREFIX.tmp" "$PREFIX"
"$PREFIX/bin/checkpointctl" --help >/dev/null || die "$PREFIX/bin/checkpointctl does not run"
log "checkpointctl $version (trixie) in $PREFIX"
