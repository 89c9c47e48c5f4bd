"""sshconfig.py: the generated client config (golden file) and the careful ~/.ssh/config edit."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from bastion.adapters import sshconfig
from bastion.adapters.sshconfig import (
    AppHost,
    ClientConfig,
    GatewayEntry,
    cidr_patterns,
    ensure_include,
    host_blocks,
    include_line,
    render_client_config,
    write_if_changed,
)
from bastion.domain.errors import UsageError

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "ssh_config_demo.txt"
GATEWAY_DIR = Path("/home/alice/.local/share/bastion/eu-west-1/demo")


def sample_config() -> ClientConfig:
    return ClientConfig(
        gateway=GatewayEntry(
            alias="bastion-demo",
            host="203.0.113.10",
            port=62222,
            user="bastion",
            identity_file=GATEWAY_DIR / "login_ed25519",
            known_hosts=GATEWAY_DIR / "known_hosts",
        ),
        app_hosts=(
            AppHost("i-0bbbbbbbbbbbbbbbb", "web 2", "172.31.7.20"),
            AppHost("i-0aaaaaaaaaaaaaaaa", "app-1", "172.31.3.5"),
            AppHost("i-0ccccccccccccccc1", "worker", "172.31.9.1"),
            AppHost("i-0ccccccccccccccc2", "worker", "172.31.9.2"),
            AppHost("i-0ddddddddddddddddd", None, "172.31.9.3"),
        ),
        patterns=cidr_patterns("172.31.0.0/16"),
        pattern_source="vpc-0123 172.31.0.0/16",
        app_user="ec2-user",
        app_identity=Path("/home/alice/.ssh/app key"),
        app_known_hosts=GATEWAY_DIR / "app_known_hosts",
    )


def test_output_matches_the_golden_file() -> None:
    text = render_client_config(sample_config())
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_same_input_gives_byte_identical_output_whatever_the_host_order() -> None:
    config = sample_config()
    shuffled = replace(config, app_hosts=tuple(reversed(config.app_hosts)))
    assert render_client_config(config).encode() == render_client_config(shuffled).encode()


def test_hosts_with_a_shared_name_are_reachable_by_instance_id_only() -> None:
    blocks = {b.instance_id: b.aliases for b in host_blocks(sample_config())}
    assert blocks["i-0ccccccccccccccc1"] == ("i-0ccccccccccccccc1",)
    assert blocks["i-0aaaaaaaaaaaaaaaa"] == ("app-1", "i-0aaaaaaaaaaaaaaaa")
    assert blocks["i-0bbbbbbbbbbbbbbbb"] == ("web-2", "i-0bbbbbbbbbbbbbbbb")
    assert sshconfig.ambiguous_names(sample_config()) == ("worker",)


def test_an_app_host_named_like_the_gateway_does_not_shadow_it() -> None:
    config = replace(sample_config(), app_hosts=(AppHost("i-0e", "bastion-demo", "172.31.1.1"),))
    assert host_blocks(config)[0].aliases == ("i-0e",)


@pytest.mark.parametrize(
    ("cidr", "patterns"),
    [
        ("10.0.0.0/8", ("10.*",)),
        ("172.31.0.0/16", ("172.31.*",)),
        ("10.1.2.0/24", ("10.1.2.*",)),
        ("10.0.16.0/20", tuple(f"10.0.{i}.*" for i in range(16, 32))),
        ("10.0.0.16/28", tuple(f"10.0.0.{i}" for i in range(16, 32))),
        ("2001:db8::/56", ()),
    ],
)
def test_vpc_ranges_become_exact_host_patterns(cidr: str, patterns: tuple[str, ...]) -> None:
    assert cidr_patterns(cidr) == patterns


@pytest.mark.parametrize("bad", ["*", "10.0.* ; rm", "a b", "host,other"])
def test_host_patterns_that_would_catch_everything_or_inject_are_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="--hosts"):
        sshconfig.validate_patterns((bad,))


def test_an_address_with_blanks_cannot_inject_options() -> None:
    config = replace(sample_config(), app_hosts=(AppHost("i-0f", "x", "1.2.3.4\n  ProxyCommand"),))
    with pytest.raises(UsageError, match="blanks"):
        render_client_config(config)


def test_paths_with_percent_and_spaces_are_escaped_and_quoted() -> None:
    config = replace(sample_config(), app_identity=Path("/keys/100% sure"))
    assert '    IdentityFile "/keys/100%% sure"\n' in render_client_config(config)


# --- the Include line in ~/.ssh/config ----------------------------------------------------------

USER_CONTENT = b"# my own config\nHost work\n    HostName work.example.com\n\tUser me  \n"


def test_include_keeps_every_byte_once_after_two_writes_and_keeps_the_mode(tmp_path: Path) -> None:
    user_config = tmp_path / ".ssh" / "config"
    user_config.parent.mkdir()
    user_config.write_bytes(USER_CONTENT)
    user_config.chmod(0o640)
    directory = sshconfig.config_dir(tmp_path)

    first = ensure_include(user_config, directory)
    second = ensure_include(user_config, directory)

    line = include_line(directory).encode() + b"\n"
    assert user_config.read_bytes() == line + USER_CONTENT
    assert user_config.read_bytes().count(b"Include ") == 1
    assert stat.S_IMODE(user_config.stat().st_mode) == 0o640
    assert first.added and not second.added
    assert first.backup is not None and first.backup.read_bytes() == USER_CONTENT
    assert stat.S_IMODE(first.backup.stat().st_mode) == 0o640
    assert sorted(p.name for p in user_config.parent.iterdir()) == [
        "config",
        "config" + sshconfig.BACKUP_SUFFIX,
    ]


def test_include_the_user_already_has_in_another_spelling_is_not_added_again(
    tmp_path: Path,
) -> None:
    directory = sshconfig.config_dir(tmp_path)
    user_config = tmp_path / "config"
    content = f"Host *\n  ServerAliveInterval 30\n\n  include = {directory}/bastion-*\n".encode()
    user_config.write_bytes(content)
    assert not ensure_include(user_config, directory).added
    assert user_config.read_bytes() == content


def test_include_creates_a_missing_config_private(tmp_path: Path) -> None:
    user_config = tmp_path / ".ssh" / "config"
    change = ensure_include(user_config, sshconfig.config_dir(tmp_path))
    assert change.added and change.backup is None
    assert stat.S_IMODE(user_config.stat().st_mode) == 0o600
    assert stat.S_IMODE(user_config.parent.stat().st_mode) == 0o700


def test_include_edits_the_target_of_a_symlinked_config(tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles" / "ssh_config"
    dotfiles.parent.mkdir()
    dotfiles.write_bytes(USER_CONTENT)
    user_config = tmp_path / "config"
    user_config.symlink_to(dotfiles)
    ensure_include(user_config, sshconfig.config_dir(tmp_path))
    assert user_config.is_symlink()
    assert dotfiles.read_bytes().endswith(USER_CONTENT)
    assert dotfiles.read_bytes().startswith(b"Include ")


def test_generated_file_is_private_and_rewritten_only_when_it_changes(tmp_path: Path) -> None:
    path = sshconfig.config_path(tmp_path, "demo")
    assert write_if_changed(path, "one\n")
    assert not write_if_changed(path, "one\n")
    assert write_if_changed(path, "two\n")
    assert path.read_text() == "two\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["bastion-demo"]


def test_writing_the_config_creates_a_missing_dot_ssh_0700_as_ssh_keygen_does(
    tmp_path: Path,
) -> None:
    old = os.umask(0o022)
    try:
        sshconfig.write_if_changed(sshconfig.config_path(tmp_path, "default"), "Host x\n")
    finally:
        os.umask(old)
    for folder in (tmp_path / ".ssh", tmp_path / ".ssh" / "config.d"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
