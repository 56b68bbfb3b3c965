#!/usr/bin/env bash
# make test-vm: the ARCH e2e subset on cgroup v2, in the guest, once per
# cgroup driver (cgroupfs, then systemd). Run as root on the host: builds
# the guest if missing (hack/vm/build-guest.sh), the shim (with fault
# injection) and the test binaries here, then boots the guest once and runs
# hack/vm/guest-e2e.sh there against a private containerd.
#   env: ARCH_VM_DRIVERS   drivers to run (default "cgroupfs systemd")
#        ARCH_VM_THREADS   parallel e2e tests in the guest (default 2)
#        ARCH_VM_TIMEOUT   seconds for the whole guest run (default 3600)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
log() { echo "[test-vm] $*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
t0=$SECONDS

hack/vm/build-guest.sh

# The test binaries first: their build may relink the shim without features.
log "building the test binaries"
tests="$(cargo test -p arch-e2e --test e2e --test faults --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"] + "=" + m["executable"])
')"
E2E="$(echo "$tests" | sed -n 's/^e2e=//p')"
FAULTS="$(echo "$tests" | sed -n 's/^faults=//p')"
[ -x "$E2E" ] && [ -x "$FAULTS" ] || { log "no test binaries ($tests)"; exit 1; }
log "building the shim (with fault injection)"
cargo build --workspace --bins --features containerd-shim-arch-v1/fault-injection
grep -q "Features: fault-injection" <<<"$(target/debug/containerd-shim-arch-v1 -v)" ||
    { log "the shim was built without fault injection"; exit 1; }

# The test image, inside the shared tree (the guest sees the repo only).
mkdir -p target/arch-vm
hack/build-test-image.sh "$PWD/target/arch-vm/arch-test-busybox.oci.tar" >/dev/null
log "host side ready after $((SECONDS - t0)) s"

# Paths relative to the repo: the guest mounts it at the same place.
hack/vm/run.sh hack/vm/guest-e2e.sh "${E2E#"$PWD"/}" "${FAULTS#"$PWD"/}" ${ARCH_VM_DRIVERS:-cgroupfs systemd}
rc=$?
log "done in $((SECONDS - t0)) s (exit $rc)"
exit $rc
