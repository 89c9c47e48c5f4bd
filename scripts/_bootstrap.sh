# Shared by scripts/test and scripts/demo: a venv with the project and its test tools, and the
# Debian packages for the real parts (sshd, ssh client, cloud-init, sudo) when running as root.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BASTION_VENV:-$ROOT/.venv}"

ensure_debian_packages() {
    local missing=()
    command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
    command -v cloud-init >/dev/null 2>&1 || missing+=(cloud-init)
    # The gateway's key-management channel runs its forced command through sudo.
    command -v sudo >/dev/null 2>&1 || missing+=(sudo)
    # The local gateway runs the key-management channel for real: sudo -n bastion-keyctl.
    command -v sudo >/dev/null 2>&1 || missing+=(sudo)
    if [ "${#missing[@]}" -eq 0 ]; then return 0; fi
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: missing ${missing[*]} (install them; tests needing them will skip)" >&2
        return 0
    fi
    echo "bootstrap: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # --no-install-recommends keeps it quick; policy-rc.d stops the package from starting services.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
}

ensure_venv() {
    local python="${PYTHON:-python3}"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "bootstrap: creating $VENV" >&2
        "$python" -m venv "$VENV"
    fi
    local stamp="$VENV/.bastion-installed"
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        echo "bootstrap: installing bastion and its test tools into $VENV" >&2
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[test]"
        touch "$stamp"
    fi
}

# The boot tier (tests/boot, scripts/demo): a Debian 13 system built with mmdebstrap, booted with
# systemd-nspawn, its SSH port forwarded with socat. As root with apt-get only; elsewhere the tier
# skips (and scripts/demo falls back to the stand-in sshd).
ensure_boot_packages() {
    local missing=()
    command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
    command -v systemd-nspawn >/dev/null 2>&1 || missing+=(systemd-container)
    command -v socat >/dev/null 2>&1 || missing+=(socat)
    command -v zstd >/dev/null 2>&1 || missing+=(zstd)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    # mmdebstrap verifies trixie's Release file: bookworm's keyring has its keys since 2023.3+deb12u1.
    [ -e /usr/share/keyrings/debian-archive-trixie-stable.gpg ] || missing+=(debian-archive-keyring)
    if [ "${#missing[@]}" -eq 0 ]; then return 0; fi
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: missing ${missing[*]} for the boot tier (it will skip)" >&2
        return 0
    fi
    echo "bootstrap: installing ${missing[*]} (the boot tier)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
}
