#!/bin/sh
# bastion-keyctl: manage the authorized keys of the gateway's daily login user ({{ login_user }}).
# Installed by cloud-init; run as root through `sudo -n` from the admin user's forced command.
# The request is the command the admin client sent: $1, or $SSH_ORIGINAL_COMMAND when run by hand.
#   list                          print the login user's authorized_keys lines
#   add-login ssh-ed25519 KEY [COMMENT]   authorize another Ed25519 login key (idempotent)
#   remove-login SHA256:FP        revoke a login key; the last key is never removed
# Exit codes: 0 ok, 1 error, 2 bad request, 3 key not found, 8 would remove the last key.
set -eu
umask 022
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

# sudo resets the environment (env_reset), so only a direct run (the tests) can move the file.
keys_dir=${BASTION_KEYCTL_KEYS_DIR:-{{ authorized_keys_dir }}}
keys_file="$keys_dir/{{ login_user }}"
login_options='restrict,port-forwarding'
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
    ;;
*)
    die 2 "unknown request '${verb}'; use list, add-login or remove-login"
    ;;
esac
