# shellcheck shell=bash
# Helpers shared by the hack/ scripts; sourced, never run.

# daemon_pid PIDFILE CONFIG: the pid in PIDFILE, if that process is alive and
# was started with CONFIG on its command line (guards against pid reuse).
daemon_pid() {
    local pid
    [ -f "$1" ] || return 1
    pid="$(cat "$1")"
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
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
