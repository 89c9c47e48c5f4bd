#!/bin/sh
# bastion-keyctl: manage the authorized keys of the gateway's daily login user ({{ login_user }}).
# Installed by cloud-init; run as root through `sudo -n` from the admin user's forced command.
# The request is the command the admin client sent: $1, or $SSH_ORIGINAL_COMMAND when run by hand.
#   list                          print the login user's authorized_keys lines
#   add-login ssh-ed25519 KEY [COMMENT]   authorize another Ed25519 login key (idempotent)
#   remove-login SHA256:FP        revoke a login key (the last key is never removed), then end
#                                 the sessions it opened
#   sessions                      print "FINGERPRINT ADDRESS PORT" for each open login session
#   end-sessions SHA256:FP        end the open sessions (tunnels) that key opened
#   list-host-keys                print "active KEY" and, mid-rotation, "staged KEY"
#   add-host-key ssh-ed25519 KEY  stage a new host key (its private half on stdin, never in the
#                                 request) as the second HostKey file, then reload sshd
#   activate-host-key SHA256:FP   swap the staged key into first place (sshd presents it), reload
#   remove-host-key SHA256:FP     delete the staged key and reload; the active key is never removed
#   set-revoked-keys              replace sshd's RevokedKeys KRL with the base64 KRL on stdin
#   cert-log                      print sshd's log lines of certificate logins and disconnects
# Exit codes: 0 ok, 1 error, 2 bad request, 3 key not found, 8 would remove the last/active key.
set -eu
umask 022
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

# sudo resets the environment (env_reset), so only a direct run (the tests) can move the file.
keys_dir=${BASTION_KEYCTL_KEYS_DIR:-{{ authorized_keys_dir }}}
keys_file="$keys_dir/{{ login_user }}"
login_options='restrict,port-forwarding'
host_key=${BASTION_KEYCTL_HOST_KEY:-{{ host_key_path }}}
staged_key="$host_key.next"
# sshd_config Includes *.conf from here: this file names the staged key only during a rotation,
# so sshd never warns about a missing key file.
staged_conf_dir=${BASTION_KEYCTL_STAGED_CONF_DIR:-{{ staged_host_key_config_dir }}}
staged_conf="$staged_conf_dir/staged-host-key.conf"
pid_file=${BASTION_KEYCTL_PID_FILE:-{{ pid_file }}}
revoked_keys=${BASTION_KEYCTL_REVOKED_KEYS:-{{ revoked_keys }}}
# Where sshd logs (LogLevel VERBOSE names the key of every accepted login): empty means the
# journal, else a file of bare sshd messages (`sshd -E FILE`, as the loopback stand-in logs).
sshd_log=${BASTION_KEYCTL_SSHD_LOG:-}
ss=${BASTION_KEYCTL_SS:-ss}
request=${1-${SSH_ORIGINAL_COMMAND-}}

die() {
    printf 'bastion-keyctl: %s\n' "$2" >&2
    exit "$1"
}

# Print the SHA256 fingerprint of the key in one authorized_keys line.
fingerprint_of() {
    printf '%s\n' "$1" | ssh-keygen -l -E sha256 -f - 2>/dev/null | awk '{print $2}'
}

# Replace the keys file atomically with stdin (temp file in the same directory, then rename).
replace_keys_file() {
    tmp=$(mktemp "$keys_dir/.{{ login_user }}.XXXXXX")
    trap 'rm -f "$tmp"' EXIT
    cat >"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$keys_file"
    trap - EXIT
}

key_lines() {
    if [ -f "$keys_file" ]; then
        grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$keys_file" || true
    fi
}

# Print "ssh-ed25519 BASE64" of a private key file (empty when it is missing or unreadable).
public_of() {
    [ -f "$1" ] || return 0
    ssh-keygen -y -f "$1" 2>/dev/null | awk '{print $1" "$2}'
}

host_fingerprint_of() {
    pub=$(public_of "$1")
    [ -z "$pub" ] || fingerprint_of "$pub"
}

# Keep KEY.pub in step with the private key KEY (sshd and people read it).
refresh_pub() {
    if [ ! -f "$1" ]; then
        rm -f "$1.pub"
        return 0
    fi
    public_of "$1" >"$1.pub.tmp"
    chmod 0644 "$1.pub.tmp"
    mv -f "$1.pub.tmp" "$1.pub"
}

check_fingerprint() {
    case $1 in SHA256:*) ;; *) die 2 "give the key's SHA256 fingerprint (ssh-keygen -lf KEY)" ;; esac
    case ${1#SHA256:} in '' | *[!A-Za-z0-9+/=]*) die 2 "not a SHA256 fingerprint: $1" ;; esac
}

# Make sshd re-read its host keys: SIGHUP makes it re-execute itself, and it writes its pid file
# again once it listens, so the next connection after this returns meets the new keys.
reload_sshd() {
    [ -f "$pid_file" ] || die 1 "sshd's pid file $pid_file is missing; cannot reload sshd"
    pid=$(cat "$pid_file")
    case $pid in '' | *[!0-9]*) die 1 "sshd's pid file $pid_file holds no pid" ;; esac
    rm -f "$pid_file"
    if ! kill -HUP "$pid"; then
        printf '%s\n' "$pid" >"$pid_file"
        die 1 "cannot signal sshd (pid $pid) to reload"
    fi
    tries=0
    while [ ! -f "$pid_file" ]; do
        tries=$((tries + 1))
        [ "$tries" -le 100 ] || die 1 "sshd did not come back within 10s of the reload"
        sleep 0.1
    done
}

# Name the staged key in sshd's config (or stop naming it), atomically.
name_staged_key() {
    mkdir -p "$staged_conf_dir"
    printf 'HostKey %s\n' "$staged_key" >"$staged_conf.tmp"
    chmod 0644 "$staged_conf.tmp"
    mv -f "$staged_conf.tmp" "$staged_conf"
}

# Print "ADDRESS PORT FINGERPRINT" for every accepted login of the login user, oldest first.
# Only whole messages count (anchored), and in the journal only those sshd itself logged (_COMM
# is set by journald, not by the sender), so nobody can forge an entry through a user name.
accepted_logins() {
    if [ -n "$sshd_log" ]; then
        cat -- "$sshd_log" 2>/dev/null || true
    else
        journalctl --sync 2>/dev/null || true
        journalctl -q -o cat --no-pager _COMM=sshd _COMM=sshd-session _COMM=sshd-auth 2>/dev/null || true
    fi | tr -d '\r' | awk -v user='{{ login_user }}' '
        /^Accepted publickey for / && $4 == user && $5 == "from" && $7 == "port" && $9 == "ssh2:" && $11 ~ /^SHA256:/ {
            print $6, $8, $11
        }'
}

# Print "ADDRESS PORT PID..." for every established connection to the ports this gateway's sshd
# (the pid in its pid file) listens on, with the sshd processes that hold it (the session's
# monitor and its unprivileged child).
sshd_connections() {
    listener=$(cat "$pid_file" 2>/dev/null || true)
    case $listener in '' | *[!0-9]*) return 0 ;; esac
    { $ss -Htlnp 2>/dev/null | sed 's/^/L /'; $ss -Htnp state established 2>/dev/null | sed 's/^/E /'; } | awk -v listener="$listener" '
        function port_of(ep) { sub(/.*:/, "", ep); return ep }
        function address_of(ep) {
            sub(/:[^:]*$/, "", ep); gsub(/[][]/, "", ep); sub(/%.*/, "", ep)
            if (ep ~ /^::ffff:[0-9.]+$/) sub(/^::ffff:/, "", ep)
            return ep
        }
        {
            users = ""
            for (i = 2; i <= NF; i++) if ($i ~ /^users:/) { users = $i; local = $(i - 2); peer = $(i - 1) }
            if (users == "") next
            pids = ""
            rest = users
            while (match(rest, /\("sshd(-session)?",pid=[0-9]+/)) {
                found = substr(rest, RSTART, RLENGTH); sub(/.*pid=/, "", found)
                pids = pids " " found
                rest = substr(rest, RSTART + RLENGTH)
            }
            if (pids == "") next
            if ($1 == "L") { if (index(users, "pid=" listener ",")) listening[port_of(local)] = 1 }
            else if (port_of(local) in listening) print address_of(peer), port_of(peer) pids
        }'
}

# Print "FINGERPRINT ADDRESS PORT PID..." for every open login session: each connection with
# the key of the latest accepted login from its address and port (a reused client port is
# matched to the login that came last).
login_sessions() {
    { accepted_logins | sed 's/^/A /'; sshd_connections | sed 's/^/C /'; } | awk '
        $1 == "A" { key[$2 " " $3] = $4; next }
        $1 == "C" && ($2 " " $3) in key {
            line = key[$2 " " $3] " " $2 " " $3
            for (i = 4; i <= NF; i++) line = line " " $i
            print line
        }'
}

# End the sessions that the key with fingerprint $1 opened; print how many were ended.
end_sessions() {
    ended=0
    sessions=$(login_sessions | awk -v fp="$1" '$1 == fp')
    while read -r fp address port pids; do
        [ -n "$fp" ] || continue
        ended=$((ended + 1))
        for pid in $pids; do
            # Only an sshd process: never a pid that something else reused meanwhile.
            case $(cat "/proc/$pid/comm" 2>/dev/null) in
            sshd | sshd-session) kill -TERM "$pid" 2>/dev/null || true ;;
            esac
        done
    done <<EOF
$sessions
EOF
    printf 'ended %s session(s) of %s\n' "$ended" "$1"
}

# One request at a time: parallel requests would read, change and replace the same files.
exec 9>>"$keys_dir/.bastion-keyctl.lock"
flock 9 || die 1 "cannot lock $keys_dir/.bastion-keyctl.lock"

set -f
# shellcheck disable=SC2086 # word splitting of the request is intended (globbing is off)
set -- $request
verb=${1-}
[ $# -gt 0 ] && shift

case $verb in
list)
    [ $# -eq 0 ] || die 2 "usage: list"
    key_lines
    ;;
add-login)
    [ $# -ge 2 ] || die 2 "usage: add-login ssh-ed25519 BASE64 [COMMENT]"
    [ "$1" = ssh-ed25519 ] || die 2 "only ssh-ed25519 keys are accepted, not '$1'"
    case $2 in *[!A-Za-z0-9+/=]*) die 2 "the key is not base64" ;; esac
    key_type=$1
    key_blob=$2
    shift 2
    comment="$*"
    case $comment in *[!A-Za-z0-9@._:+=/\ -]*) die 2 "the key comment has characters other than A-Z a-z 0-9 @._:+=/- and space" ;; esac
    line="$login_options $key_type $key_blob${comment:+ $comment}"
    new_fp=$(fingerprint_of "$line")
    [ -n "$new_fp" ] || die 2 "ssh-keygen cannot read that key"
    existing=$(key_lines)
    for fp in $(printf '%s\n' "$existing" | while IFS= read -r l; do [ -n "$l" ] && fingerprint_of "$l"; done); do
        if [ "$fp" = "$new_fp" ]; then
            printf 'already authorized %s\n' "$new_fp"
            exit 0
        fi
    done
    { [ -z "$existing" ] || printf '%s\n' "$existing"; printf '%s\n' "$line"; } | replace_keys_file
    printf 'added %s\n' "$new_fp"
    ;;
remove-login)
    [ $# -eq 1 ] || die 2 "usage: remove-login SHA256:FINGERPRINT"
    case $1 in SHA256:*) ;; *) die 2 "give the key's SHA256 fingerprint (ssh-keygen -lf KEY)" ;; esac
    case ${1#SHA256:} in '' | *[!A-Za-z0-9+/=]*) die 2 "not a SHA256 fingerprint: $1" ;; esac
    target=$1
    kept=''
    found=0
    total=0
    newline='
'
    while IFS= read -r l; do
        [ -n "$l" ] || continue
        total=$((total + 1))
        if [ "$(fingerprint_of "$l")" = "$target" ]; then
            found=$((found + 1))
        else
            kept="$kept$l$newline"
        fi
    done <<EOF
$(key_lines)
EOF
    [ "$found" -gt 0 ] || die 3 "no login key with fingerprint $target"
    [ "$found" -lt "$total" ] || die 8 "refusing to remove the last login key; add its replacement first"
    printf '%s' "$kept" | replace_keys_file
    printf 'removed %s\n' "$target"
    end_sessions "$target"
    ;;
sessions)
    [ $# -eq 0 ] || die 2 "usage: sessions"
    login_sessions | awk '{ print $1, $2, $3 }'
    ;;
end-sessions)
    [ $# -eq 1 ] || die 2 "usage: end-sessions SHA256:FINGERPRINT"
    check_fingerprint "$1"
    end_sessions "$1"
    ;;
list-host-keys)
    [ $# -eq 0 ] || die 2 "usage: list-host-keys"
    active=$(public_of "$host_key")
    staged=$(public_of "$staged_key")
    [ -z "$active" ] || printf 'active %s\n' "$active"
    [ -z "$staged" ] || printf 'staged %s\n' "$staged"
    ;;
add-host-key)
    [ $# -eq 2 ] || die 2 "usage: add-host-key ssh-ed25519 BASE64 (the private key on stdin)"
    [ "$1" = ssh-ed25519 ] || die 2 "only ssh-ed25519 host keys are accepted, not '$1'"
    case $2 in '' | *[!A-Za-z0-9+/=]*) die 2 "the key is not base64" ;; esac
    want="$1 $2"
    new_fp=$(fingerprint_of "$want")
    [ -n "$new_fp" ] || die 2 "ssh-keygen cannot read that key"
    if [ "$(public_of "$host_key")" = "$want" ]; then
        printf 'already active %s\n' "$new_fp"
        exit 0
    fi
    if [ "$(public_of "$staged_key")" = "$want" ]; then
        printf 'already staged %s\n' "$new_fp"
        exit 0
    fi
    umask 077
    tmp=$(mktemp "$(dirname "$host_key")/.bastion-host-key.XXXXXX")
    trap 'rm -f "$tmp"' EXIT
    head -c 16384 >"$tmp"
    chmod 0600 "$tmp"
    [ "$(public_of "$tmp")" = "$want" ] || die 2 "the private key sent on stdin is not the one of $new_fp"
    mv -f "$tmp" "$staged_key"
    trap - EXIT
    umask 022
    refresh_pub "$staged_key"
    name_staged_key
    reload_sshd
    printf 'staged %s\n' "$new_fp"
    ;;
activate-host-key)
    [ $# -eq 1 ] || die 2 "usage: activate-host-key SHA256:FINGERPRINT"
    check_fingerprint "$1"
    if [ "$(host_fingerprint_of "$host_key")" = "$1" ]; then
        printf 'already active %s\n' "$1"
        exit 0
    fi
    [ "$(host_fingerprint_of "$staged_key")" = "$1" ] || die 3 "no staged host key with fingerprint $1"
    # The first HostKey file always holds a valid key: copy the old one aside, then rename.
    cp -p "$host_key" "$host_key.swap"
    mv -f "$staged_key" "$host_key"
    mv -f "$host_key.swap" "$staged_key"
    refresh_pub "$host_key"
    refresh_pub "$staged_key"
    reload_sshd
    printf 'activated %s\n' "$1"
    ;;
remove-host-key)
    [ $# -eq 1 ] || die 2 "usage: remove-host-key SHA256:FINGERPRINT"
    check_fingerprint "$1"
    [ "$(host_fingerprint_of "$host_key")" != "$1" ] || die 8 "refusing to remove the active host key; activate its replacement first"
    [ "$(host_fingerprint_of "$staged_key")" = "$1" ] || die 3 "no staged host key with fingerprint $1"
    rm -f "$staged_conf" "$staged_key" "$staged_key.pub"
    reload_sshd
    printf 'removed %s\n' "$1"
    ;;
set-revoked-keys)
    [ $# -eq 0 ] || die 2 "usage: set-revoked-keys (the base64 KRL on stdin)"
    tmp=$(mktemp "$revoked_keys.XXXXXX")
    trap 'rm -f "$tmp"' EXIT
    base64 -d >"$tmp" 2>/dev/null || die 2 "the KRL on stdin is not base64"
    # sshd refuses every key when RevokedKeys is unreadable: only a KRL ssh-keygen reads goes in.
    if [ -s "$tmp" ]; then ssh-keygen -Q -l -f "$tmp" >/dev/null 2>&1 || die 2 "stdin is not a KRL (ssh-keygen -k)"; fi
    chmod 0644 "$tmp"
    mv -f "$tmp" "$revoked_keys"
    trap - EXIT
    printf 'revoked keys replaced (%s bytes)\n' "$(wc -c <"$revoked_keys")"
    ;;
cert-log)
    [ $# -eq 0 ] || die 2 "usage: cert-log"
    # Whole messages only (a user name cannot start a line): a bare log line, or the journal's
    # "TIME HOST sshd[PID]: " before it.
    journal_prefix='[0-9T:.+-]+ [^ ]+ sshd(-session|-auth)?\[[0-9]+\]: '
    if [ -n "$sshd_log" ]; then
        cat -- "$sshd_log" 2>/dev/null || true
    else
        journalctl -q -o short-iso --no-pager _COMM=sshd _COMM=sshd-session _COMM=sshd-auth 2>/dev/null || true
    fi | tr -d '\r' | grep -E -e "^($journal_prefix)?Accepted publickey for [^ ]+ from [^ ]+ port [0-9]+ ssh2: [^ ]+-CERT " -e "^($journal_prefix)?(Disconnected from|Connection closed by|Received disconnect from) " || true
    ;;
*)
    die 2 "unknown request '${verb}'; use list, add-login, remove-login, sessions, end-sessions, list-host-keys, add-host-key, activate-host-key, remove-host-key, set-revoked-keys or cert-log"
    ;;
esac
