"""Boot a real Debian 13 gateway from its own user data: mmdebstrap, systemd-nspawn, NoCloud.

The stand-in (`stand_in.py`) starts sshd by hand from the user data; this module boots the user
data for real. It builds, once and cached between runs, a Debian 13 (trixie) root filesystem
with `mmdebstrap --variant minbase` and the package list of Debian's official EC2 image, cleaned
up as that image is (empty /etc/machine-id, no SSH host keys, empty /etc/hostname). Each
`BootedGateway` extracts it, writes a NoCloud seed (the exact user data, and meta-data carrying
the instance id, hostname and the launch key pair as EC2 passes it), and boots it with
`systemd-nspawn --boot` in a network namespace of its own. systemd, cloud-init and OpenSSH then
run exactly as they would on the instance; a loopback TCP port on this machine is forwarded to
the guest's SSH port once sshd listens there, and the guest's console is kept (cloud-init
prints the host keys on it).

From the shell (as root):

    python -m bastion.testing.boot build          # build or refresh the cached image
    python -m bastion.testing.boot check          # exit 0 only if this machine can boot it
    python -m bastion.testing.boot serve --port N # boot every gateway moto runs, on 127.0.0.1:N
    python -m bastion.testing.boot moto-server -p N [--console-dir D]  # moto_server with
        # Debian's AMI parameter (and, with D, each booted guest's real console, see console.py)

What it does not prove: EC2's own datasource (NoCloud stands in for the metadata service),
EC2 itself (moto stands in), and the kernel (under nspawn the guest runs on this machine's).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import errno
import fcntl
import hashlib
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Literal, cast

from bastion.domain.errors import BastionError
from bastion.testing.app_network import AppNetwork

SUITE = "trixie"
# The package lists of Debian's official EC2 image: the FAI classes of debian-cloud-images'
# config_space that an EC2 amd64 build uses, as of trixie. Left out: the boot loader (AMD64's
# grub-cloud-amd64; nspawn needs none) and EC2's awscli (nothing here talks to AWS).
PACKAGES_BY_CLASS: Mapping[str, tuple[str, ...]] = {
    "SYSTEM_BOOT": (
        "sudo",
        "libpam-systemd",
        "systemd-resolved",
        "libnss-resolve",
        "libnss-myhostname",
        "netplan.io",
        "polkitd",
        "unattended-upgrades",
        "apparmor",
        "zstd",
        "apt-utils",
        "init",
        "iptables",
        "iputils-ping",
        "linux-sysctl-defaults",
        "less",
        "nano",
        "netbase",
        "vim-tiny",
        "whiptail",
        "chrony",  # TIME_CHRONY: EC2 uses chrony (Amazon Time Sync)
    ),
    "CLOUD": ("openssh-server", "ssh-import-id", "cloud-initramfs-growroot"),
    "EC2": ("cloud-init", "cloud-guest-utils", "amazon-ec2-utils"),
    "AMD64": ("linux-image-cloud-amd64",),
}
PACKAGES: tuple[str, ...] = tuple(sorted({p for ps in PACKAGES_BY_CLASS.values() for p in ps}))
# Bump when the customisation below changes, so that cached images are rebuilt.
RECIPE_VERSION = 1

MachineId = Literal["empty", "uninitialized"]
MACHINE_IDS: tuple[MachineId, ...] = ("empty", "uninitialized")

DEFAULT_CACHE = Path("/var/cache/bastion/boot")
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
TRIXIE_KEY = Path("/usr/share/keyrings/debian-archive-trixie-stable.gpg")
# Host commands the boot tier runs, and the Debian package that has each.
HOST_TOOLS: Mapping[str, str] = {
    "mmdebstrap": "mmdebstrap",
    "systemd-nspawn": "systemd-container",
    "socat": "socat",
    "zstd": "zstd",
    "ip": "iproute2",
    "ss": "iproute2",
    "nsenter": "util-linux",
}
BUILD_TIMEOUT = 1800.0
BOOT_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NETNS_PREFIX = "bastion-boot-"
DEBIAN_IMAGE_PARAMETER = "/aws/service/debian/release/13/latest/amd64"
DEBIAN_AMI_ID = "ami-0d13b1e5a9c7f2468"

_SERIALS = itertools.count(1)
_PORT_RE = re.compile(r"^\s*Port\s+(\d+)\s*$", re.I | re.M)


class BootError(BastionError):
    """The real Debian system could not be built, booted or reached."""


# --- the image ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Mirrors:
    """Where the Debian archive and its security archive are fetched from."""

    debian: str
    security: str | None = None


def configured_mirrors(apt_dir: Path = Path("/etc/apt")) -> Mirrors:
    """Return this machine's configured Debian mirrors (BASTION_BOOT_MIRROR overrides)."""
    override = os.environ.get("BASTION_BOOT_MIRROR")
    if override:
        return Mirrors(override.rstrip("/"), os.environ.get("BASTION_BOOT_SECURITY_MIRROR"))
    debian: str | None = None
    security: str | None = None
    for uri, suites in _apt_entries(apt_dir):
        if any(s.endswith("-security") or s.endswith("/updates") for s in suites):
            security = security or uri
        elif suites:
            debian = debian or uri
    if debian is None:
        raise BootError(
            f"no Debian mirror is configured in {apt_dir}/sources.list(.d); "
            "set BASTION_BOOT_MIRROR to the archive's URL"
        )
    return Mirrors(debian, security)


def _apt_entries(apt_dir: Path) -> Iterator[tuple[str, list[str]]]:
    """Yield (URI, suites) of every `deb` source, deb822 and one-line formats alike."""
    files = sorted((apt_dir / "sources.list.d").glob("*.sources"))
    for path in files:
        for stanza in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                if uri.startswith(("http://", "https://")):
                    yield uri.rstrip("/"), fields.get("suites", "").split()
    lists = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            words = re.sub(r"\[[^\]]*\]", "", line).split()
            if len(words) >= 3 and words[0] == "deb" and words[1].startswith("http"):
                yield words[1].rstrip("/"), [words[2]]


@dataclass(frozen=True)
class ImageSpec:
    """What the cached root filesystem holds: a suite and a package list."""

    suite: str = SUITE
    packages: tuple[str, ...] = PACKAGES

    def key(self) -> str:
        """Return the cache key: a hash of the suite, the packages and the recipe."""
        recipe = {"suite": self.suite, "packages": sorted(self.packages), "v": RECIPE_VERSION}
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    """Return where built images are kept (BASTION_BOOT_CACHE, else /var/cache/bastion/boot)."""
    return Path(os.environ.get("BASTION_BOOT_CACHE") or DEFAULT_CACHE)


def image_path(spec: ImageSpec | None = None) -> Path:
    """Return the path of the zstd tarball for `spec` (it may not be built yet)."""
    spec = spec or ImageSpec()
    return cache_dir() / f"debian-{spec.suite}-ec2-{spec.key()}.tar.zst"


def build_image(
    spec: ImageSpec | None = None,
    *,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Build the root filesystem tarball unless it is cached; return its path."""
    spec = spec or ImageSpec()
    say = log or _stderr
    target = image_path(spec)
    if target.exists() and not force:
        return target
    _require_root("building the Debian image")
    ensure_host_tools(("mmdebstrap", "zstd"), log=say)
    _ensure_trixie_keyring(say)
    mirrors = configured_mirrors()
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with _locked(target.parent / ".build.lock", BUILD_TIMEOUT):
        if target.exists() and not force:
            return target  # another process built it while we waited
        started = time.monotonic()
        say(f"boot: building Debian {spec.suite} ({len(spec.packages)} packages) into {target}")
        partial = target.parent / f".partial-{os.getpid()}-{target.name}"
        with tempfile.TemporaryDirectory(prefix="bastion-mmdebstrap-") as scratch:
            hook = Path(scratch) / "customize.sh"
            hook.write_text(_customize_script(spec.suite, mirrors), encoding="utf-8")
            command = [
                "mmdebstrap",
                "--mode=root",
                "--variant=minbase",
                "--format=tar",
                f"--keyring={KEYRING}",
                "--include=" + ",".join(spec.packages),
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                f'--customize-hook=sh {shlex.quote(str(hook))} "$1"',
                spec.suite,
                str(partial),
                *_mirror_lines(spec.suite, mirrors),
            ]
            try:
                result = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=BUILD_TIMEOUT,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                partial.unlink(missing_ok=True)
                raise BootError(f"mmdebstrap did not finish within {BUILD_TIMEOUT:.0f}s") from exc
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            tail = " | ".join(result.stderr.strip().splitlines()[-8:])
            raise BootError(f"mmdebstrap failed (exit {result.returncode}): {tail}")
        os.replace(partial, target)
        for old in target.parent.glob(f"debian-{spec.suite}-ec2-*.tar.zst"):
            if old != target:
                old.unlink(missing_ok=True)  # an image of an older package list or recipe
        size = target.stat().st_size / 2**20
        say(f"boot: built {target} ({size:.0f} MiB) in {time.monotonic() - started:.0f}s")
    return target


def _mirror_lines(suite: str, mirrors: Mirrors) -> list[str]:
    lines = [f"deb {mirrors.debian} {suite} main", f"deb {mirrors.debian} {suite}-updates main"]
    if mirrors.security:
        lines.append(f"deb {mirrors.security} {suite}-security main")
    return lines


# What Debian's image build does after installing the packages (its SYSTEM_BOOT scripts, its
# cloud.cfg.d file for EC2 and its LAST/10-cleanup), applied to the mmdebstrap root "$1".
_CUSTOMIZE = r"""set -eu
root="$1"
chroot "$root" systemctl enable systemd-resolved.service >/dev/null 2>&1
mkdir -p "$root/etc/cloud/cloud.cfg.d"
cat >"$root/etc/cloud/cloud.cfg.d/01_debian_cloud.cfg" <<'EOF'
apt:
  generate_mirrorlists: true

system_info:
  default_user:
    name: admin
    sudo: ALL=(ALL) NOPASSWD:ALL
    shell: /bin/bash
    lock_passwd: True
    gecos: Debian
    groups: [adm, audio, cdrom, dialout, dip, floppy, plugdev, sudo, video]
EOF
mkdir -p "$root/etc/apt/mirrors"
printf '%s\n' @DEBIAN@ >"$root/etc/apt/mirrors/debian.list"
printf '%s\n' @SECURITY@ >"$root/etc/apt/mirrors/debian-security.list"
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: mirror+file:///etc/apt/mirrors/debian.list
Suites: @SUITE@ @SUITE@-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: mirror+file:///etc/apt/mirrors/debian-security.list
Suites: @SUITE@-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
cat >"$root/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
rm -rf "$root"/etc/ssh/ssh_host_* "$root/var/lib/dbus/machine-id" "$root/etc/mailname" \
    "$root/var/log/alternatives.log" "$root/var/log/apt" "$root/var/log/bootstrap.log" \
    "$root/var/log/dpkg.log" "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
    "$root"/tmp/* "$root"/var/tmp/* "$root"/var/lib/cloud/*
: >"$root/etc/hostname"
: >"$root/etc/machine-id"
: >"$root/var/lib/dpkg/available"
"""


def _customize_script(suite: str, mirrors: Mirrors) -> str:
    return (
        _CUSTOMIZE.replace("@SUITE@", suite)
        .replace("@DEBIAN@", shlex.quote(mirrors.debian))
        .replace("@SECURITY@", shlex.quote(mirrors.security or mirrors.debian))
    )


def _ensure_trixie_keyring(say: Callable[[str], None]) -> None:
    # bookworm's debian-archive-keyring carries trixie's keys since 2023.3+deb12u1; an older
    # one cannot verify trixie's Release file, so update it first.
    if TRIXIE_KEY.exists():
        return
    if shutil.which("apt-get") is None:
        raise BootError(f"{TRIXIE_KEY} is missing: install a newer debian-archive-keyring")
    say("boot: updating debian-archive-keyring (it must know trixie's keys)")
    _apt_install(["debian-archive-keyring"])
    if not TRIXIE_KEY.exists():
        raise BootError(f"{TRIXIE_KEY} is still missing: this release's keyring predates trixie")


# --- host tools --------------------------------------------------------------------------


def missing_tools(tools: Sequence[str] = tuple(HOST_TOOLS)) -> list[str]:
    """Return the host commands of `tools` that are not installed."""
    return [t for t in tools if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]


def ensure_host_tools(
    tools: Sequence[str] = tuple(HOST_TOOLS), log: Callable[[str], None] | None = None
) -> None:
    """Install (with apt, as root) the Debian packages of whichever of `tools` are missing."""
    missing = missing_tools(tools)
    if not missing:
        return
    packages = sorted({HOST_TOOLS[t] for t in missing})
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BootError(f"missing {', '.join(missing)}: install {' '.join(packages)} (as root)")
    (log or _stderr)(f"boot: installing {' '.join(packages)}")
    _apt_install(packages)
    still = missing_tools(tools)
    if still:
        raise BootError(f"still missing after apt-get install: {', '.join(still)}")


def _apt_install(packages: Sequence[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        if result.returncode != 0:
            tail = " | ".join(result.stderr.strip().splitlines()[-4:])
            raise BootError(f"{' '.join(command[:2])} failed: {tail}")


# --- one booted system -------------------------------------------------------------------


@dataclass
class _Forward:
    """A socat process and what it forwards."""

    process: subprocess.Popen[bytes]
    description: str


@dataclass
class BootedGateway:
    """A Debian 13 system booted under systemd-nspawn from a gateway's own user data.

    `port` (on 127.0.0.1) is forwarded to the guest's sshd port once sshd listens there, so
    that, as on EC2, nothing answers while the instance boots. `host_ports` are the other
    way round: each host 127.0.0.1 port is reachable from inside the guest on its own
    127.0.0.1, for root (the login user's egress rule refuses the loopback: app hosts for
    ProxyJump belong in `app_network`, the VPC stand-in).
    """

    user_data: str = field(repr=False)
    instance_id: str = "i-0b00700000000000"
    hostname: str = "ip-10-0-0-10"
    public_keys: Mapping[str, str] = field(default_factory=dict)
    machine_id: MachineId = "empty"
    port: int | None = None
    guest_port: int | None = None
    host_ports: tuple[int, ...] = ()
    image: Path | None = None
    console_path: Path | None = None
    boot_timeout: float = BOOT_TIMEOUT
    # The VPC stand-in this system is wired into (`ens5` with `private_ip`) once sshd listens:
    # late, so that cloud-init's network detection at boot sees no interface to configure.
    app_network: AppNetwork | None = None
    private_ip: str = "172.31.0.10"

    def __post_init__(self) -> None:
        if self.machine_id not in MACHINE_IDS:
            raise BootError(f"machine id variant {self.machine_id!r}: use empty or uninitialized")
        if self.port is None:
            self.port = _free_port()
        if self.guest_port is None:
            self.guest_port = sshd_port_of(self.user_data)
        serial = next(_SERIALS)
        self.name = f"{NETNS_PREFIX}{os.getpid()}-{serial}-{_safe(self.instance_id)}"[:60]
        self.netns_path = Path("/run/netns") / self.name
        self.workdir: Path | None = None
        self.root: Path | None = None
        self.leader: int | None = None
        self.boot_seconds: float | None = None
        self._nspawn: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._forwards: list[_Forward] = []
        self._forwarder: threading.Thread | None = None
        self._netns_created = False
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.forward_error: str | None = None
        self._last_console = ""

    # -- lifecycle

    def start(self) -> BootedGateway:
        """Extract the image, seed cloud-init, boot it; forward the port once sshd listens."""
        _require_root("booting the Debian system")
        ensure_host_tools(("systemd-nspawn", "socat", "ip", "ss", "nsenter", "zstd"))
        cgroup_env = _nspawn_cgroup_env()
        image = self.image or build_image()
        started = time.monotonic()
        try:
            run_dir = cache_dir() / "run"
            run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.workdir = Path(
                tempfile.mkdtemp(prefix=f"{os.getpid()}-{_safe(self.instance_id)}-", dir=run_dir)
            )
            self.root = self.workdir / "root"
            self.root.mkdir(mode=0o755)
            self._extract(image)
            self._seed()
            if self.console_path is None:
                self.console_path = self.workdir / "console.log"
            self.console_path.parent.mkdir(parents=True, exist_ok=True)
            self.console_path.write_bytes(b"")
            _run(["ip", "netns", "add", self.name])
            self._netns_created = True
            _run(["ip", "-n", self.name, "link", "set", "lo", "up"])
            self._boot(cgroup_env)
            self.boot_seconds = time.monotonic() - started
            for host_port in self.host_ports:
                self._expose_host_port(host_port)
            self._forwarder = threading.Thread(
                target=self._forward_when_listening, name=f"{self.name}-forward", daemon=True
            )
            self._forwarder.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Power the guest off (or kill it), remove its network namespace and its files."""
        self._stopping.set()
        if self._forwarder is not None and self._forwarder is not threading.current_thread():
            self._forwarder.join(timeout=5)
        with self._lock:
            forwards, self._forwards = self._forwards, []
        for forward in forwards:
            _terminate_group(forward.process)
        nspawn, self._nspawn = self._nspawn, None
        if nspawn is not None and nspawn.poll() is None:
            # SIGTERM makes nspawn ask the guest's systemd to power off (SIGRTMIN+3).
            nspawn.send_signal(signal.SIGTERM)
            try:
                nspawn.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                if self.leader is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.leader, signal.SIGKILL)  # ends the whole PID namespace
                nspawn.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    nspawn.wait(timeout=STOP_TIMEOUT)
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        self.leader = None
        if self._netns_created:
            _kill_netns_processes(self.name)
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, check=False)
            self._netns_created = False
        with contextlib.suppress(OSError):
            Path("/run/systemd/nspawn/propagate", self.name).rmdir()
        if self.workdir is not None:
            console = self.console_path
            if console is not None and console.is_relative_to(self.workdir):
                self._last_console = self.console_text()
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
            self.root = None

    def __enter__(self) -> BootedGateway:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def forwarding(self) -> bool:
        """Tell whether the loopback port forwards to sshd (which listened at least once)."""
        with self._lock:
            return any(f.description == "ssh" for f in self._forwards)

    @property
    def running(self) -> bool:
        """Tell whether the guest is still up."""
        return self._nspawn is not None and self._nspawn.poll() is None

    # -- looking inside

    def console_text(self) -> str:
        """Return everything the guest printed on its console so far."""
        if self.console_path is not None and self.console_path.exists():
            return self.console_path.read_text(encoding="utf-8", errors="replace")
        return self._last_console

    def run(
        self,
        command: Sequence[str] | str,
        *,
        timeout: float = 60.0,
        input: str | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command as root inside the guest (all of its namespaces, a clean PATH)."""
        if self.leader is None or not self.running:
            raise BootError(f"{self.instance_id}: the guest is not running")
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        full = [
            "nsenter",
            f"--target={self.leader}",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--pid",
            "--cgroup",
            "--",
            "/usr/bin/env",
            "-i",
            f"PATH={GUEST_PATH}",
            "LANG=C.UTF-8",
            "SYSTEMD_COLORS=0",
            "SYSTEMD_PAGER=",
            *argv,
        ]
        try:
            result = subprocess.run(
                full, input=input, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BootError(f"{argv!r} did not finish within {timeout:.0f}s in the guest") from exc
        if check and result.returncode != 0:
            raise BootError(
                f"{argv!r} failed in the guest (exit {result.returncode}): {result.stderr.strip()}"
            )
        return result

    def cloud_init_status(self) -> dict[str, Any]:
        """Return `cloud-init status --long --format json` from inside the guest."""
        result = self.run(["cloud-init", "status", "--long", "--format", "json"])
        try:
            status = json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            raise BootError(
                f"cloud-init status printed no JSON (exit {result.returncode}): "
                f"{result.stdout.strip()[:200]} {result.stderr.strip()[:200]}"
            ) from exc
        return cast(dict[str, Any], status)

    def wait_for_cloud_init(self, timeout: float = BOOT_TIMEOUT) -> dict[str, Any]:
        """Wait until cloud-init has finished (done, error or disabled); return its status."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(BootError):
                status = self.cloud_init_status()
                if status.get("status") in ("done", "error", "disabled"):
                    return status
            if not self.running:
                raise BootError(f"{self.instance_id}: the guest stopped while booting")
            time.sleep(0.2)
        raise BootError(
            f"cloud-init did not finish within {timeout:.0f}s (status {status.get('status')!r})"
        )

    def listening_ports(self) -> set[int]:
        """Return the TCP ports something listens on inside the guest (seen from outside)."""
        result = _run(["nsenter", f"--net={self.netns_path}", "ss", "-Hltn"], check=False)
        ports: set[int] = set()
        for line in result.stdout.splitlines():
            words = line.split()
            if len(words) >= 4 and words[3].rpartition(":")[2].isdigit():
                ports.add(int(words[3].rpartition(":")[2]))
        return ports

    def wait_for_port(self, timeout: float = BOOT_TIMEOUT) -> int:
        """Wait until the loopback port forwards to a listening sshd; return the port.

        It never connects to sshd (each probe would count towards OpenSSH's penalties).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.forward_error:
                raise BootError(self.forward_error)
            if self.forwarding and self.guest_port in self.listening_ports():
                assert self.port is not None
                return self.port
            if not self.running:
                raise BootError(f"{self.instance_id}: the guest stopped while booting")
            time.sleep(0.1)
        raise BootError(
            f"sshd in the guest did not listen on port {self.guest_port} within {timeout:.0f}s"
            f" (listening: {sorted(self.listening_ports()) or 'nothing'})"
        )

    def journal(self, *args: str) -> str:
        """Return this boot's journal inside the guest (journalctl -b ARGS, plain text)."""
        return self.run(["journalctl", "-b", "--no-pager", "-o", "cat", *args]).stdout

    # -- the parts of start()

    def _extract(self, image: Path) -> None:
        assert self.root is not None
        try:
            _run(
                ["tar", "--zstd", "-xpf", str(image), "-C", str(self.root), "--numeric-owner"],
                timeout=300,
            )
        except BootError as exc:
            raise BootError(
                f"cannot extract {image}: {exc}; rebuild it with `build --force`"
            ) from exc

    def _seed(self) -> None:
        assert self.root is not None
        machine_id = self.root / "etc" / "machine-id"
        machine_id.write_text("" if self.machine_id == "empty" else "uninitialized\n")
        seed = self.root / "var" / "lib" / "cloud" / "seed" / "nocloud"
        seed.mkdir(mode=0o755, parents=True, exist_ok=True)
        # 0600 from the start, as cloud-init keeps its copy (user data may hold secrets).
        fd = os.open(seed / "user-data", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.user_data)
        (seed / "meta-data").write_text(self.meta_data(), encoding="utf-8")
        # The guest shares this machine's clock: chronyd cannot run in it (no CAP_SYS_TIME, as
        # it must not set the host's time), so chrony-wait, which systemd's first boot enables
        # by preset, would hold cloud-final back for minutes waiting for a sync.
        masked = self.root / "etc" / "systemd" / "system" / "chrony-wait.service"
        masked.unlink(missing_ok=True)
        masked.symlink_to("/dev/null")

    def meta_data(self) -> str:
        """Return the NoCloud meta-data: what EC2's metadata service says about the instance."""
        lines = [
            f"instance-id: {json.dumps(self.instance_id)}",
            f"local-hostname: {json.dumps(self.hostname)}",
        ]
        if self.public_keys:
            # As EC2 passes a key pair: public-keys/0=NAME/openssh-key, the key named NAME.
            lines.append("public-keys:")
            for name, key in self.public_keys.items():
                lines.append(f"  {json.dumps(name)}:")
                lines.append(f"    - {json.dumps(key.strip())}")
        return "\n".join(lines) + "\n"

    def _boot(self, cgroup_env: Mapping[str, str]) -> None:
        assert self.root is not None and self.console_path is not None
        command = [
            "systemd-nspawn",
            "--quiet",
            "--boot",
            f"--directory={self.root}",
            f"--machine={self.name}",
            # No systemd-machined, no D-Bus on the host: stay in our own process tree.
            "--register=no",
            "--keep-unit",
            f"--network-namespace-path={self.netns_path}",
            # root on an instance may change its own firewall (bootcmd's egress rule); nspawn
            # keeps CAP_NET_ADMIN only for --private-network, which a given namespace is not.
            "--capability=CAP_NET_ADMIN",
            # A pty whose output is forwarded: the guest's /dev/console, as EC2's serial console.
            "--console=read-only",
            "--link-journal=no",
            "--resolv-conf=off",
            "--timezone=off",
        ]
        self._nspawn = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**_clean_env(), **cgroup_env},
        )
        stream = self._nspawn.stdout
        assert stream is not None
        self._reader = threading.Thread(
            target=_copy_stream, args=(stream, self.console_path), name=f"{self.name}-console"
        )
        self._reader.daemon = True
        self._reader.start()
        deadline = time.monotonic() + 20
        while self.leader is None:
            if self._nspawn.poll() is not None:
                raise BootError(
                    f"systemd-nspawn exited with {self._nspawn.returncode}: "
                    + " | ".join(self.console_text().strip().splitlines()[-5:])
                )
            if time.monotonic() > deadline:
                raise BootError("systemd-nspawn started no init process within 20s")
            self.leader = _container_leader(self._nspawn.pid)
            if self.leader is None:
                time.sleep(0.02)

    def _forward_when_listening(self) -> None:
        deadline = time.monotonic() + self.boot_timeout
        while not self._stopping.is_set():
            if self.guest_port in self.listening_ports():
                break
            if time.monotonic() > deadline or not self.running:
                self.forward_error = (
                    f"sshd in the guest did not listen on port {self.guest_port} within"
                    f" {self.boot_timeout:.0f}s (listening: {sorted(self.listening_ports())})"
                )
                return
            time.sleep(0.1)
        else:
            return
        inner = f"nsenter --net={self.netns_path} socat STDIO TCP\\:127.0.0.1\\:{self.guest_port}"
        try:
            if self.app_network is not None:
                self.app_network.attach(self.netns_path, self.private_ip)
            self._start_socat(
                [f"TCP-LISTEN:{self.port},bind=127.0.0.1,reuseaddr,fork", f"EXEC:{inner}"],
                "ssh",
                netns=None,
            )
        except Exception as exc:
            self.forward_error = str(exc)

    def _expose_host_port(self, host_port: int) -> None:
        inner = (
            f"nsenter --net=/proc/{os.getpid()}/ns/net socat STDIO TCP\\:127.0.0.1\\:{host_port}"
        )
        self._start_socat(
            [f"TCP-LISTEN:{host_port},bind=127.0.0.1,reuseaddr,fork", f"EXEC:{inner}"],
            f"host port {host_port}",
            netns=self.netns_path,
        )

    def _start_socat(self, addresses: list[str], description: str, netns: Path | None) -> None:
        prefix = ["nsenter", f"--net={netns}"] if netns else []
        process = subprocess.Popen(
            [*prefix, "socat", *addresses],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its forked children go with it on stop
        )
        time.sleep(0.05)
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise BootError(f"socat for {description} exited: {error.strip()}")
        with self._lock:
            if self._stopping.is_set():
                _terminate_group(process)
                return
            self._forwards.append(_Forward(process, description))


def sshd_port_of(user_data: str) -> int:
    """Return the Port the user data's sshd_config sets (22 when it sets none)."""
    found = _PORT_RE.findall(_sshd_config_of(user_data))
    return int(found[0]) if found else 22


def _sshd_config_of(user_data: str) -> str:
    import yaml

    try:
        loaded = yaml.safe_load(user_data)
    except yaml.YAMLError:
        return ""
    if not isinstance(loaded, dict):
        return ""
    for entry in loaded.get("write_files") or []:
        if isinstance(entry, dict) and entry.get("path") == "/etc/ssh/sshd_config":
            return str(entry.get("content", ""))
    return ""


def _container_leader(nspawn_pid: int) -> int | None:
    """Return the host PID of the guest's init (the child of nspawn in another PID namespace)."""
    own = os.readlink("/proc/self/ns/pid")
    try:
        children = Path(f"/proc/{nspawn_pid}/task/{nspawn_pid}/children").read_text().split()
    except OSError:
        return None
    for child in children:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{child}/ns/pid") != own:
                return int(child)
    return None


def _nspawn_cgroup_env() -> dict[str, str]:
    """Return the environment that gives the guest a unified (v2) cgroup hierarchy."""
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return {}  # the host is cgroup v2 only; nspawn hands the guest v2
    if Path("/sys/fs/cgroup/unified/cgroup.controllers").exists():
        # A hybrid host: nspawn would give the guest a hybrid hierarchy, which systemd >= 256
        # refuses; the unified one (no controllers delegated) is enough to boot.
        return {"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
    raise BootError("this machine has no cgroup v2 hierarchy; systemd 257 in the guest needs one")


def _copy_stream(stream: IO[bytes], path: Path) -> None:
    with path.open("ab", buffering=0) as out:
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not chunk:
                return
            out.write(chunk)


def _terminate_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # forked children of a dead listener
    if process.stderr is not None:
        process.stderr.close()


def _kill_netns_processes(name: str) -> None:
    result = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    for pid in result.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def cleanup_stale() -> list[str]:
    """Remove the network namespaces and run folders of boot-tier processes that died."""
    removed: list[str] = []
    netns_dir = Path("/run/netns")
    for path in sorted(netns_dir.glob(f"{NETNS_PREFIX}*")) if netns_dir.is_dir() else []:
        owner = path.name[len(NETNS_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not _alive(int(owner)):
            _kill_netns_processes(path.name)
            subprocess.run(["ip", "netns", "delete", path.name], capture_output=True)
            removed.append(path.name)
    run_dir = cache_dir() / "run"
    for path in sorted(run_dir.iterdir()) if run_dir.is_dir() else []:
        owner = path.name.split("-", 1)[0]
        if owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- moto: every running gateway, booted -------------------------------------------------


@dataclass(frozen=True)
class GatewayInstance:
    """What the watcher needs of one running gateway instance in moto."""

    instance_id: str
    user_data: str
    hostname: str
    public_keys: Mapping[str, str]
    private_ip: str = "172.31.0.10"


def running_gateway_ids(ec2: Any, name: str) -> list[str]:
    """Return the ids of every running instance of gateway `name`, the newest generation first."""
    reservations = ec2.describe_instances(
        Filters=[
            {"Name": "tag:bastion:name", "Values": [name]},
            {"Name": "tag:bastion:role", "Values": ["gateway"]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )["Reservations"]
    instances = [i for r in reservations for i in r["Instances"]]
    # A blue/green relaunch runs two for a while: the newer generation is the one served.
    instances.sort(key=lambda i: (_generation(i), str(i.get("LaunchTime", ""))), reverse=True)
    return [str(i["InstanceId"]) for i in instances]


def running_gateway_id(ec2: Any, name: str) -> str | None:
    """Return the id of the gateway `name` running now: the newest generation, if any."""
    ids = running_gateway_ids(ec2, name)
    return ids[0] if ids else None


def running_gateway(ec2: Any, name: str) -> GatewayInstance | None:
    """Return what booting the gateway `name` running now needs, if one runs."""
    instance_id = running_gateway_id(ec2, name)
    if instance_id is None:
        return None
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    attribute = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    encoded = (attribute.get("UserData") or {}).get("Value", "")
    user_data = base64.b64decode(encoded).decode() if encoded else ""
    keys: dict[str, str] = {}
    key_name = instance.get("KeyName")
    if key_name:
        with contextlib.suppress(Exception):  # a key pair deleted meanwhile: boot without it
            pairs = ec2.describe_key_pairs(KeyNames=[key_name], IncludePublicKey=True)
            for pair in pairs.get("KeyPairs", []):
                if pair.get("PublicKey"):
                    # EC2 serves an imported key with the key pair's name as its comment.
                    key_type, blob = str(pair["PublicKey"]).split()[:2]
                    keys[key_name] = f"{key_type} {blob} {key_name}"
    private_ip = str(instance.get("PrivateIpAddress") or "10.0.0.10")
    hostname = str(instance.get("PrivateDnsName") or "").split(".")[0]
    return GatewayInstance(
        instance_id, user_data, hostname or f"ip-{private_ip.replace('.', '-')}", keys, private_ip
    )


def _generation(instance: Mapping[str, Any]) -> int:
    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
    try:
        return int(tags.get("bastion:generation", "0"))
    except ValueError:
        return 0


class GatewayWatcher:
    """Serve, on one loopback port, the real boot of the gateway `name` running in moto now.

    Each running gateway instance is booted from its own user data; a relaunched one (a new
    instance) replaces the old system. The port is open only while the current system's sshd
    listens (as an instance's port is closed while it boots), and each connection asks moto at
    accept time whether that system is still the gateway running now: a terminated gateway's
    host key never answers for its replacement.
    """

    def __init__(
        self,
        ec2: Any,
        name: str,
        port: int,
        machine_id: MachineId = "empty",
        host_ports: Sequence[int] = (),
        console_dir: Path | None = None,
        log: Callable[[str], None] | None = None,
        boot_timeout: float = BOOT_TIMEOUT,
        app_network: AppNetwork | None = None,
    ) -> None:
        self.ec2 = ec2
        self.app_network = app_network
        self.name = name
        self.port = port
        self.machine_id = machine_id
        self.host_ports = tuple(host_ports)
        self.console_dir = console_dir
        self.log = log or _stdout
        self.boot_timeout = boot_timeout
        self.image = build_image(log=self.log)
        self.boots: list[str] = []
        self.errors: list[str] = []
        self._current: BootedGateway | None = None
        self._serving: str | None = None
        self._failed: set[str] = set()
        self._changed = threading.Condition()
        self._listener: socket.socket | None = None
        self._ec2_lock = threading.Lock()  # boto3 clients are not shared across threads safely

    @property
    def current(self) -> BootedGateway | None:
        """Return the booted system of the gateway running now, if any."""
        with self._changed:
            return self._current

    def sync(self) -> None:
        """Boot, replace or stop the system so that it matches moto's running gateway."""
        with self._ec2_lock:
            found = running_gateway(self.ec2, self.name)
        current = self.current
        if current and (found is None or found.instance_id != current.instance_id):
            self.log(f"boot: {current.instance_id} is gone; powering its system off")
            self._set(None)
            current.stop()
            current = None
        if current is not None:
            if self._serving != current.instance_id and current.forwarding:
                self._open(current)
            return
        if found is None or not found.user_data or found.instance_id in self._failed:
            return
        console = self.console_dir / f"{found.instance_id}.console" if self.console_dir else None
        gateway = BootedGateway(
            found.user_data,
            instance_id=found.instance_id,
            hostname=found.hostname,
            public_keys=found.public_keys,
            machine_id=self.machine_id,
            host_ports=self.host_ports,
            image=self.image,
            console_path=console,
            boot_timeout=self.boot_timeout,
            app_network=self.app_network,
            private_ip=found.private_ip,
        )
        try:
            gateway.start()
        except BootError as exc:
            self._failed.add(found.instance_id)
            self.errors.append(f"{found.instance_id}: {exc}")
            self.log(f"boot: {found.instance_id} did not boot: {exc}")
            return
        self.log(
            f"boot: {found.instance_id} boots Debian 13 ({self.machine_id} machine-id) in"
            f" {gateway.boot_seconds:.1f}s; its sshd (port {gateway.guest_port}) will answer on"
            f" 127.0.0.1:{self.port}"
        )
        self.boots.append(found.instance_id)
        self._set(gateway)

    def run(self, stop: threading.Event, poll: float = 0.2) -> None:
        """Sync until `stop` is set, then power the system off."""
        try:
            while not stop.is_set():
                try:
                    self.sync()
                except Exception as exc:  # moto restarting, a failed boot: keep watching
                    self.errors.append(str(exc))
                    self.log(f"boot: {type(exc).__name__}: {exc}")
                stop.wait(poll)
        finally:
            self.close()

    def wait_for_boot(
        self, other_than: str | None = None, timeout: float = BOOT_TIMEOUT, serving: bool = False
    ) -> BootedGateway:
        """Wait until a system (of an instance other than `other_than`) is booted; return it.

        With `serving`, also wait until its sshd answers on the watcher's port.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                current = self._current
                if current is not None and current.instance_id != other_than:
                    if not serving or self._serving == current.instance_id:
                        return current
                    if current.forward_error:
                        raise BootError(current.forward_error)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BootError(
                        f"no gateway {'served' if serving else 'booted'} within {timeout:.0f}s"
                        + (f"; errors: {'; '.join(self.errors)}" if self.errors else "")
                    )
                self._changed.wait(min(remaining, 0.5))

    def close(self) -> None:
        """Close the port and power the current system off."""
        current = self.current
        self._set(None)
        if current is not None:
            current.stop()

    def _set(self, gateway: BootedGateway | None) -> None:
        with self._changed:
            if gateway is None:
                self._close_listener()
            self._current = gateway
            self._changed.notify_all()

    def _open(self, gateway: BootedGateway) -> None:
        with self._changed:
            if self._listener is None:
                self._listener = socket.create_server(("127.0.0.1", self.port), backlog=64)
                self._listener.settimeout(0.2)
                threading.Thread(
                    target=self._accept, args=(self._listener,), name="boot-router", daemon=True
                ).start()
            self._serving = gateway.instance_id
            self._changed.notify_all()

    def _close_listener(self) -> None:
        listener, self._listener, self._serving = self._listener, None, None
        if listener is not None:
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                if listener.fileno() == -1:
                    return
                continue
            except OSError:
                return
            threading.Thread(target=self._route, args=(client,), daemon=True).start()

    def _route(self, client: socket.socket) -> None:
        with client:
            gateway = self.current
            try:
                with self._ec2_lock:
                    now = running_gateway_id(self.ec2, self.name)
            except Exception:  # moto unreachable: answer nothing rather than a stale system
                return
            if gateway is None or now != gateway.instance_id or self._serving != now:
                return  # the system served so far is no longer the running gateway
            assert gateway.port is not None
            try:
                upstream = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
            except OSError:
                return
            with upstream:
                upstream.settimeout(None)
                client.settimeout(None)
                back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
                back.start()
                _pipe(client, upstream)
                back.join(timeout=600)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes from source to target until EOF, then half-close target."""
    with contextlib.suppress(OSError):
        while True:
            chunk = source.recv(65536)
            if not chunk:
                break
            target.sendall(chunk)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


# --- moto_server with Debian's public image parameter ------------------------------------


def moto_server(argv: Sequence[str], console_dir: Path | None = None) -> None:
    """Run moto_server with a Debian 13 AMI and its SSM public parameter (moto has neither).

    With `console_dir`, GetConsoleOutput answers the consoles written there (`serve --console-dir`
    writes each guest's real console), through `bastion.testing.console`.
    """
    amis_path = Path(tempfile.mkstemp(prefix="bastion-moto-amis-", suffix=".json")[1])
    from moto.utilities.utils import load_resource

    amis = list(load_resource("ec2/resources/amis.json"))
    amis.append(
        {
            "ami_id": DEBIAN_AMI_ID,
            "state": "available",
            "public": True,
            "owner_id": "136693071363",
            "image_location": "amazon/debian-13-amd64",
            "sriov": "simple",
            "root_device_type": "ebs",
            "root_device_name": "/dev/xvda",
            "description": "Debian 13 (trixie) amd64 (the boot tier boots it under nspawn)",
            "image_type": "machine",
            "platform": None,
            "architecture": "x86_64",
            "name": "debian-13-amd64",
            "virtualization_type": "hvm",
            "hypervisor": "xen",
        }
    )
    amis_path.write_text(json.dumps(amis), encoding="utf-8")
    os.environ["MOTO_AMIS_PATH"] = str(amis_path)
    import datetime

    from moto.server import main as moto_main
    from moto.ssm import models as ssm_models

    loader = ssm_models.ParameterDict._check_loading_status

    def with_debian(self: Any, key: str) -> None:
        loader(self, key)
        if str(key or "").startswith("/aws/service/debian") and not getattr(self, "_debian", False):
            self._debian = True
            dict.setdefault(self, DEBIAN_IMAGE_PARAMETER, []).append(
                ssm_models.Parameter(  # type: ignore[abstract]
                    account_id=self.account_id,
                    name=DEBIAN_IMAGE_PARAMETER,
                    value=DEBIAN_AMI_ID,
                    parameter_type="String",
                    description=None,
                    allowed_pattern=None,
                    keyid=None,
                    last_modified_date=datetime.datetime.now(datetime.UTC),
                    version=1,
                    data_type="aws:ec2:image",
                )
            )

    ssm_models.ParameterDict._check_loading_status = with_debian  # type: ignore[method-assign]
    try:
        if console_dir is None:
            moto_main(list(argv))
        else:
            from bastion.testing.console import serve_moto

            host = argv[list(argv).index("-H") + 1] if "-H" in argv else "127.0.0.1"
            serve_moto(host, int(argv[list(argv).index("-p") + 1]), console_dir)
    finally:
        amis_path.unlink(missing_ok=True)


# --- can this machine boot it? -----------------------------------------------------------


def problems(boot: bool = False) -> list[str]:
    """Return why this machine cannot run the boot tier (empty when it can)."""
    found: list[str] = []
    if sys.platform != "linux":
        return ["the boot tier needs Linux (systemd-nspawn)"]
    if os.geteuid() != 0:
        return ["not root: systemd-nspawn and network namespaces need root"]
    if not _has_capability(21):  # CAP_SYS_ADMIN
        found.append("no CAP_SYS_ADMIN: run it in a privileged container or on a VM")
    try:
        _nspawn_cgroup_env()
    except BootError as exc:
        found.append(str(exc))
    apt = shutil.which("apt-get") is not None
    missing = missing_tools()
    if missing and not apt:
        found.append(f"missing {', '.join(missing)} and no apt-get to install them")
    if not image_path().exists():
        try:
            configured_mirrors()
        except BootError as exc:
            found.append(f"no image built and none buildable: {exc}")
        if "mmdebstrap" in missing and not apt:
            found.append("no image built and no mmdebstrap to build one")
    if not found and "ip" not in missing:
        probe = f"{NETNS_PREFIX}{os.getpid()}-check"
        made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
        if made.returncode != 0:
            found.append(f"cannot create a network namespace: {made.stderr.strip()}")
        else:
            subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    if boot and not found:
        try:
            with BootedGateway("#cloud-config\n{}\n", instance_id="i-check") as gateway:
                gateway.wait_for_cloud_init(timeout=BOOT_TIMEOUT)
        except BootError as exc:
            found.append(f"the image does not boot: {exc}")
    return found


def _has_capability(bit: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


# --- small helpers -----------------------------------------------------------------------


def _run(
    command: Sequence[str], *, timeout: float = 60.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            list(command), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BootError(f"{command[0]} did not finish within {timeout:.0f}s") from exc
    except FileNotFoundError as exc:
        raise BootError(f"{command[0]} is not installed") from exc
    if check and result.returncode != 0:
        raise BootError(f"{' '.join(command)}: {result.stderr.strip() or result.returncode}")
    return result


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise BootError(f"{what} needs root (systemd-nspawn, network namespaces, chroot)")


def _clean_env() -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TERM")
    return {k: v for k, v in os.environ.items() if k in keep}


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", text)[:40] or "gw"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _locked(path: Path, timeout: float) -> Iterator[None]:
    with path.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise BootError(f"another build holds {path} for over {timeout:.0f}s") from exc
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _stdout(message: str) -> None:
    print(message, flush=True)


# --- command line ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Build, check or serve the boot tier (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bastion.testing.boot")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build (or refresh) the cached Debian image")
    build.add_argument("--force", action="store_true", help="rebuild even when cached")
    check = commands.add_parser("check", help="exit 0 only if this machine can boot the image")
    check.add_argument("--boot", action="store_true", help="also boot it once to prove it")
    serve = commands.add_parser("serve", help="boot every running gateway moto has")
    serve.add_argument("--name", default="default", help="gateway name")
    serve.add_argument("--port", type=int, required=True, help="loopback port for its sshd")
    serve.add_argument("--machine-id", choices=MACHINE_IDS, default="empty")
    serve.add_argument(
        "--expose-host-port",
        type=int,
        action="append",
        default=[],
        metavar="PORT",
        help="make this machine's 127.0.0.1:PORT reachable from the guest's own 127.0.0.1:PORT"
        " (for root: the login user may not forward to the loopback; see --vpc-netns)",
    )
    serve.add_argument("--console-dir", type=Path, help="keep each guest's console log here")
    serve.add_argument(
        "--vpc-netns",
        metavar="NAME",
        help="wire each guest into a VPC stand-in: a network namespace NAME with the default"
        " VPC's CIDR (app hosts listen there: app_network add-host, app_host --netns)",
    )
    moto = commands.add_parser("moto-server", help="moto_server with Debian 13's AMI parameter")
    moto.add_argument("-H", "--host", default="127.0.0.1")
    moto.add_argument("-p", "--port", type=int, required=True)
    moto.add_argument(
        "--console-dir", type=Path, help="answer GetConsoleOutput from INSTANCE_ID.console here"
    )
    args = parser.parse_args(argv)

    try:
        if args.command == "build":
            print(build_image(force=args.force))
            return 0
        if args.command == "check":
            found = problems(boot=args.boot)
            if found:
                print(f"boot tier unavailable: {'; '.join(found)}", file=sys.stderr)
                return 1
            path = image_path()
            print(f"boot tier ready ({path if path.exists() else 'image not built yet'})")
            return 0
        if args.command == "moto-server":
            moto_server(["-H", args.host, "-p", str(args.port)], args.console_dir)
            return 0
        return _serve(args)
    except BootError as exc:
        print(f"boot: {exc}", file=sys.stderr)
        return 1


def _serve(args: argparse.Namespace) -> int:
    import boto3

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()  # not an exception: a power-off or a cleanup in progress must finish

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cleanup_stale()
    ec2 = boto3.client("ec2")
    network: AppNetwork | None = None
    if args.vpc_netns:
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        network = AppNetwork(str(vpcs[0]["CidrBlock"]), name=args.vpc_netns).start()
    try:
        watcher = GatewayWatcher(
            ec2,
            args.name,
            args.port,
            machine_id=args.machine_id,
            host_ports=args.expose_host_port,
            console_dir=args.console_dir,
            app_network=network,
        )
        try:
            watcher.run(stop)
        finally:
            watcher.close()
    finally:
        if network is not None:
            network.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
