#!/usr/bin/env bash
# Run a PRIVATE dockerd for the Docker how-to test (never the system one).
#   usage: hack/docker-test.sh start|stop|restart|status|env
#   env:
#     ARCH_DOCKER_DIR    sockets, pid files, logs, the merged daemon.json
#                        (default /run/arch-docker)
#     ARCH_DOCKER_ROOT   dockerd data-root and containerd root, on disk
#                        (default /var/lib/arch-docker)
#     ARCH_SHIM_DIR      dir holding containerd-shim-arch-v1 (put on PATH)
#     ARCH_DOCKER_CHECKPOINT_ROOT  the shims' checkpoint root, given to
#                        containerd as ARCH_CHECKPOINT_ROOT
#                        (default ARCH_DOCKER_ROOT/checkpoint)
#
# dockerd runs on a private containerd (hack/containerd-test.sh), as on a
# host where docker uses the system containerd: that containerd spawns the
# shims, so it carries the shim's PATH and the ARCH_* host configuration.
# The daemon.json is docs/examples/daemon.json, the documented snippet,
# merged with settings that only keep this instance apart from the host
# (paths, sockets, no bridge or iptables changes).
set -euo pipefail
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/lib.sh
. "$HACK_DIR/lib.sh"
REPO="$(cd "$HACK_DIR/.." && pwd)"
log() { echo "[hack] $*" >&2; }
die() { echo "[hack] ERROR: $*" >&2; exit 1; }

DIR="${ARCH_DOCKER_DIR:-/run/arch-docker}"
ROOT="${ARCH_DOCKER_ROOT:-/var/lib/arch-docker}"
EXAMPLE="$REPO/docs/examples/daemon.json"
CONFIG="$DIR/daemon.json"
SOCK="$DIR/docker.sock"
PIDF="$DIR/dockerd.pid"
LOGF="$DIR/dockerd.log"
# Its own tar: the one the containerd rig shares may predate manifest.json.
TAR="${ARCH_DOCKER_IMAGE_TAR:-/var/cache/arch-hack/docker/arch-docker-busybox.tar}"
REF="${ARCH_TEST_IMAGE:-localhost/arch-test/busybox:latest}"
# The private containerd under this instance; it spawns the shims, which
# read the host configuration from the environment it passes on.
export ARCH_TEST_DIR="$DIR/containerd" ARCH_TEST_ROOT="$ROOT/containerd" ARCH_TEST_NO_IMPORT=1
export ARCH_CHECKPOINT_ROOT="${ARCH_DOCKER_CHECKPOINT_ROOT:-$ROOT/checkpoint}"
DOCKER=(docker --host "unix://$SOCK")

running_pid() { daemon_pid "$PIDF" "$CONFIG"; }

write_config() {
    mkdir -p "$DIR" "$ROOT/docker"
    python3 - "$EXAMPLE" "$CONFIG" <<EOF
import json, sys
example, out = sys.argv[1], sys.argv[2]
with open(example) as f:
    cfg = json.load(f)
test_only = {
    "data-root": "$ROOT/docker",
    "exec-root": "$DIR/exec",
    "pidfile": "$PIDF",
    "hosts": ["unix://$SOCK"],
    "containerd": "$ARCH_TEST_DIR/containerd.sock",
    # overlay2 is docker's default: it mounts the rootfs itself.
    "storage-driver": "overlay2",
    # Leave the host's network alone: containers run with --network none.
    "bridge": "none",
    "iptables": False,
    "ip6tables": False,
    "ip-forward": False,
    "ip-masq": False,
}
clash = sorted(set(cfg) & set(test_only))
if clash:
    sys.exit("docs/examples/daemon.json sets test-only keys: %s" % clash)
cfg.update(test_only)
with open(out, "w") as f:
    json.dump(cfg, f, indent=2, sort_keys=True)
EOF
}

load_image() {
    local want have f stale=0
    for f in "$HACK_DIR/oci_image.py" "$HACK_DIR/build-test-image.sh" "${ARCH_BUSYBOX:-/bin/busybox}" "$HACK_DIR"/testbin/*.c; do
        [ "$f" -nt "$TAR" ] && stale=1
    done
    if [ ! -s "$TAR" ] || [ "$stale" = 1 ]; then
        ARCH_TEST_IMAGE="$REF" "$HACK_DIR/build-test-image.sh" "$TAR" >/dev/null
    fi
    # docker load reads manifest.json; the image id is the config digest.
    want="$(tar -xOf "$TAR" manifest.json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Config"].split("/")[-1])')"
    have="$("${DOCKER[@]}" image inspect --format '{{.Id}}' "$REF" 2>/dev/null || true)"
    if [ -z "$want" ] || [ "${have#sha256:}" != "$want" ]; then
        log "loading $REF into dockerd"
        "${DOCKER[@]}" load --input "$TAR" >/dev/null
    fi
    "${DOCKER[@]}" image inspect "$REF" >/dev/null || die "$REF not present after docker load"
}

do_start() {
    local pid path
    command -v dockerd >/dev/null || die "dockerd not installed (hack/install-docker.sh)"
    "$HACK_DIR/containerd-test.sh" start >/dev/null
    if pid="$(running_pid)"; then
        log "dockerd already running (pid $pid, $SOCK)"
    else
        write_config
        path="$PATH"
        [ -z "${ARCH_SHIM_DIR:-}" ] || path="$(cd "$ARCH_SHIM_DIR" && pwd):$PATH"
        : >>"$LOGF"
        echo "=== start $(date -u +%FT%TZ)" >>"$LOGF"
        log "starting dockerd $(dockerd --version | awk '{print $3}' | tr -d ,) (config $CONFIG, log $LOGF)"
        PATH="$path" setsid dockerd --config-file "$CONFIG" </dev/null >>"$LOGF" 2>&1 &
        pid=$!
        for _ in $(seq 1 300); do
            if [ -S "$SOCK" ] && "${DOCKER[@]}" version >/dev/null 2>&1; then break; fi
            if [ ! -d "/proc/$pid" ]; then tail -n 40 "$LOGF" >&2; die "dockerd exited during startup"; fi
            sleep 0.1
        done
        "${DOCKER[@]}" version >/dev/null 2>&1 || { tail -n 40 "$LOGF" >&2; die "dockerd did not answer on $SOCK within 30 s"; }
        log "dockerd up (pid $pid)"
    fi
    load_image
    print_env
}

do_stop() {
    local pid ids
    if pid="$(running_pid)"; then
        ids="$("${DOCKER[@]}" ps -aq 2>/dev/null || true)"
        # shellcheck disable=SC2086
        [ -z "$ids" ] || "${DOCKER[@]}" rm -f $ids >/dev/null 2>&1 || true
        log "stopping dockerd pid $pid"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 150); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
        [ ! -d "/proc/$pid" ] || { log "dockerd did not exit after 15 s, sending KILL"; kill -KILL "$pid" 2>/dev/null || true; }
    else
        log "dockerd not running"
    fi
    "$HACK_DIR/containerd-test.sh" stop
    # docker's own mounts (overlay2 layers, shm, netns) under our dirs.
    awk -v a="$ROOT/" -v b="$DIR/" 'index($5, a) == 1 || index($5, b) == 1 {print length($5) " " $5}' /proc/self/mountinfo |
        sort -rn | cut -d' ' -f2- | while read -r mp; do umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true; done
    rm -f "$SOCK" "$PIDF"
}

print_env() {
    echo "export DOCKER_HOST=unix://$SOCK"
    echo "# checkpoint root: $ARCH_CHECKPOINT_ROOT (archctl --root $ARCH_CHECKPOINT_ROOT ls)"
    echo "# e.g.: docker run --rm --network none $REF echo hi"
}

case "${1:-}" in
    start) do_start ;;
    stop) do_stop ;;
    restart) do_stop; do_start ;;
    status) if pid="$(running_pid)"; then echo "running pid=$pid host=unix://$SOCK"; else echo "not running"; exit 1; fi ;;
    env) print_env ;;
    *) echo "usage: $0 start|stop|restart|status|env" >&2; exit 2 ;;
esac
