# shellcheck shell=sh
# Shared by the fake FreeBSD tools in this directory (mount, umount, jls,
# service); sourced by them, never run. They stand in for the real tools in
# tests/freebsd_commands.rs, on Linux, where there is no FreeBSD: nothing is
# mounted and no jail runs, the state below is all there is.
#
# The state lives in the directory $FAKE_STATE:
#   calls        every invocation, one line each: the program and its
#                arguments separated by one space; an argument that is empty
#                or holds white space is written in single quotes
#   mounts       the mount table in mount order: source TAB target TAB
#                fstype TAB options (options as `mount -p` prints them)
#   running      the names of the running jails, one per line
#   busy         mount points whose unmount fails with "Device busy", as a
#                jail that still holds the template makes it fail
#   raw-mount-p  when present, `mount -p` prints paths unescaped, exactly as
#                FreeBSD's mount(8) does (putfsent() prints f_mntonname
#                with printf "%s"); otherwise white space is written \040
#   crash-at     one call line: once that call has taken effect, the
#                jailswap process that made it is killed with SIGKILL (the
#                marker is removed first, so the crash happens once)
#   fail-at      one call line, then the lines that call prints on stderr:
#                that call fails once (exit 1) and changes nothing, as a
#                tool that meets an error the state does not model
#   zfs/         the fake zfs(8): datasets, snapshots and their data (see zfs)
#   jail-fstab.NAME  see service: the jail mounts its own fstab
#   lock         held (a directory) while a fake changes the state

: "${FAKE_STATE:?FAKE_STATE must name the directory of the fake host state}"

# Appends the call to the log and remembers it in FAKE_CALL.
fake_record() {
    FAKE_CALL=$1
    shift
    for argument in "$@"; do
        case $argument in
        '' | *[[:space:]]*) FAKE_CALL="$FAKE_CALL '$argument'" ;;
        *) FAKE_CALL="$FAKE_CALL $argument" ;;
        esac
    done
    printf '%s\n' "$FAKE_CALL" >>"$FAKE_STATE/calls"
}

# Serializes changes of the state: jailswap may run several tools at once
# (parallel > 1). A directory is the lock, as mkdir is atomic.
fake_lock() {
    while ! mkdir "$FAKE_STATE/lock" 2>/dev/null; do
        sleep 0.01
    done
    trap 'rmdir "$FAKE_STATE/lock" 2>/dev/null' EXIT
}

fake_unlock() {
    rmdir "$FAKE_STATE/lock"
    trap - EXIT
}

# Replaces a state file with standard input, atomically.
fake_replace() {
    cat >"$FAKE_STATE/$1.new.$$" && mv "$FAKE_STATE/$1.new.$$" "$FAKE_STATE/$1"
}

# SIGKILLs the nearest ancestor process named jailswap (the caller may be
# a child of jailswap or of the `/bin/sh -c` it runs). Linux /proc only:
# these fakes exist for Linux test hosts.
fake_kill_jailswap() {
    pid=$$
    while [ "$pid" -gt 1 ]; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || break
        # The fields after the command name, which may hold spaces: state ppid ...
        rest=${stat##*) }
        pid=$(printf '%s\n' "$rest" | cut -d ' ' -f 2)
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = jailswap ]; then
            kill -9 "$pid"
            return 0
        fi
    done
    echo "fake: no jailswap process above $$ to kill" >&2
    return 1
}

# Called before a call acts: fails it, once, when asked to.
fake_fail_at() {
    [ -f "$FAKE_STATE/fail-at" ] || return 0
    [ "$(head -n 1 "$FAKE_STATE/fail-at")" = "$FAKE_CALL" ] || return 0
    tail -n +2 "$FAKE_STATE/fail-at" >&2
    rm -f "$FAKE_STATE/fail-at"
    exit 1
}

# Called once a call has taken effect: crashes jailswap when asked to.
fake_after() {
    [ -f "$FAKE_STATE/crash-at" ] || return 0
    [ "$(cat "$FAKE_STATE/crash-at")" = "$FAKE_CALL" ] || return 0
    rm -f "$FAKE_STATE/crash-at"
    fake_kill_jailswap
}
