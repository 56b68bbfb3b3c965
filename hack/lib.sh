# shellcheck shell=bash
# Helpers shared by the hack/ scripts; sourced, never run.

# daemon_pid PIDFILE CONFIG: the pid in PIDFILE, if that process is alive and
# was started with CONFIG on its command line (guards against pid reuse).
daemon_pid() {
    local pid
    [ -f "$1" ] || return 1
    pid="$(cat "$1")"
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    local cmdline
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    case "$cmdline" in *"$2"*) ;; *) return 1 ;; esac
    echo "$pid"
}

# quiet_services: until the script exits, package maintainer scripts may not
# start daemons (a policy-rc.d that denies, removed again if we added it).
quiet_services() {
    QUIET_POLICY_RC=/usr/sbin/policy-rc.d
    QUIET_POLICY_ADDED=0
    if [ ! -e "$QUIET_POLICY_RC" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$QUIET_POLICY_RC"
        chmod 0755 "$QUIET_POLICY_RC"
        QUIET_POLICY_ADDED=1
    fi
    trap 'if [ "$QUIET_POLICY_ADDED" = 1 ]; then rm -f "$QUIET_POLICY_RC"; fi' EXIT
}

# Where hack/install-deps.sh puts the containerd 2.x builds beside the
# system's 1.7 (never on the default PATH).
ARCH_CONTAINERD_PREFIX="${ARCH_CONTAINERD_PREFIX:-/opt/arch-containerd}"

# containerd_bin_dir NAME: the bin dir of containerd NAME (system|sid|newest);
# empty for system (whatever is on PATH).
containerd_bin_dir() {
    case "$1" in
        system|"") echo "" ;;
        sid) echo "$ARCH_CONTAINERD_PREFIX/sid/usr/bin" ;;
        newest) echo "$ARCH_CONTAINERD_PREFIX/newest/bin" ;;
        *) echo "[hack] ERROR: ARCH_CONTAINERD must be system, sid or newest (got $1)" >&2; return 1 ;;
    esac
}
