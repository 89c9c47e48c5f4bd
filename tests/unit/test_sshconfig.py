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
from bastion.domain.sshnames import UserHostName, globs_overlap

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
        user_names=(
            UserHostName("work", "~/.ssh/config line 2"),
            UserHostName("172.31.5.5", "~/.ssh/config line 5"),
        ),
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


def test_app_hosts_are_named_only_inside_the_gateways_namespace() -> None:
    blocks = {b.instance_id: b.aliases for b in host_blocks(sample_config())}
    app_1 = ("app-1.demo.bastion", "i-0aaaaaaaaaaaaaaaa.demo.bastion")
    assert blocks["i-0aaaaaaaaaaaaaaaa"] == app_1
    # A shared name and one with a blank name no host: each is reached by its instance id.
    assert blocks["i-0ccccccccccccccc1"] == ("i-0ccccccccccccccc1.demo.bastion",)
    assert blocks["i-0bbbbbbbbbbbbbbbb"] == ("i-0bbbbbbbbbbbbbbbb.demo.bastion",)
    refused = {r.name: r for r in sshconfig.refused_names(sample_config())}
    assert refused["worker"].instance_ids == ("i-0ccccccccccccccc1", "i-0ccccccccccccccc2")
    assert refused["worker"].reason == "shared by 2 hosts"
    assert refused["web 2"].instance_ids == ("i-0bbbbbbbbbbbbbbbb",)


HOSTILE_NAMES = [
    "github.com",
    "*",
    "?*",
    "10.0.1.5",
    "172.31.3.5",
    "10.1",
    "i-0aaaaaaaaaaaaaaaa",
    "web 2",
    "app-1\n    ProxyCommand nc evil 22",
    "100%h",
    "'quoted'",
    '"quoted"',
    "work",
    "bastion-demo",
]


@pytest.mark.parametrize("hostile", HOSTILE_NAMES)
def test_a_hostile_name_tag_never_names_a_host_outside_the_namespace(hostile: str) -> None:
    victim = AppHost("i-0aaaaaaaaaaaaaaaa", "app-1", "172.31.3.5")
    config = replace(
        sample_config(), app_hosts=(victim, AppHost("i-0eeeeeeeeeeeeeeee", hostile, "172.31.6.6"))
    )
    text = render_client_config(config)
    names = [w for line in text.splitlines() if line.startswith("Host ") for w in line.split()[1:]]
    app_names = [n for n in names if n != "bastion-demo" and not n.startswith(("172.31.", "!"))]
    assert app_names and all(n.endswith(".demo.bastion") for n in app_names), app_names
    assert hostile.lower() not in app_names
    assert "ProxyCommand" not in text
    # The victim keeps its own names: the hostile one captures neither of them.
    assert host_blocks(config)[0].aliases == (
        "app-1.demo.bastion",
        "i-0aaaaaaaaaaaaaaaa.demo.bastion",
    )


@pytest.mark.parametrize("name", ["github.com", "app-1", "App-1", "web.prod", "db_2", "a1"])
def test_a_plain_name_tag_names_its_host_in_the_namespace(name: str) -> None:
    config = replace(sample_config(), app_hosts=(AppHost("i-0e", name, "172.31.6.6"),))
    assert host_blocks(config)[0].aliases == (f"{name.lower()}.demo.bastion", "i-0e.demo.bastion")


@pytest.mark.parametrize(
    ("user_pattern", "refused"),
    [("work", True), ("WORK", True), ("wo*", True), ("*", False), ("?*", False), ("web-*", False)],
)
def test_a_name_the_users_own_config_names_is_refused(user_pattern: str, refused: bool) -> None:
    config = replace(
        sample_config(),
        app_hosts=(AppHost("i-0e", "work", "172.31.6.6"),),
        user_names=(UserHostName(user_pattern, "~/.ssh/config line 1"),),
    )
    assert [r.name for r in sshconfig.refused_names(config)] == (["work"] if refused else [])


def test_the_address_patterns_leave_the_users_own_hosts_to_the_users_config() -> None:
    config = replace(
        sample_config(),
        user_names=tuple(
            UserHostName(p, "x")
            for p in ("172.31.5.5", "172.31.9.*", "*.example.com", "10.*", "i-*", "*", "work")
        ),
    )
    assert sshconfig.address_patterns(config) == (
        "172.31.*",
        "!172.31.5.5",
        "!172.31.9.*",
        "!*.example.com",
    )
    assert "Host 172.31.* !172.31.5.5 !172.31.9.* !*.example.com\n" in render_client_config(config)


def test_bastion_ssh_maps_a_short_name_or_instance_id_to_its_alias() -> None:
    config = sample_config()
    assert sshconfig.ssh_target(config, "app-1") == "app-1.demo.bastion"
    assert sshconfig.ssh_target(config, "APP-1") == "app-1.demo.bastion"
    assert sshconfig.ssh_target(config, "i-0ccccccccccccccc1") == "i-0ccccccccccccccc1.demo.bastion"
    for unchanged in ("172.31.3.5", "app-1.demo.bastion", "bastion-demo", "elsewhere"):
        assert sshconfig.ssh_target(config, unchanged) == unchanged


def test_bastion_ssh_to_a_refused_name_says_which_instance_ids_to_use() -> None:
    with pytest.raises(UsageError, match=r"i-0ccccccccccccccc1, i-0ccccccccccccccc2.*shared"):
        sshconfig.ssh_target(sample_config(), "worker")


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        ("172.31.*", "172.31.5.5", True),
        ("172.31.*", "*.example.com", True),
        ("172.31.*", "i-*", False),
        ("10.0.1.*", "10.0.2.?", False),
        ("10.0.?.*", "10.0.12.1", False),
        ("10.*", "*", True),
        ("a*b", "*c", False),
    ],
)
def test_two_patterns_overlap_when_some_name_matches_both(
    first: str, second: str, overlap: bool
) -> None:
    assert globs_overlap(first, second) is overlap
    assert globs_overlap(second, first) is overlap


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


@pytest.mark.parametrize(
    "bad",
    ["*", "?*", "*.*", "!*", "10.0.* ; rm", "a b", "host,other", "*.internal", "*.com",
     "github.com", "web-*", "1*", "[10.0.0.1]"],
)  # fmt: skip
def test_host_patterns_without_a_literal_network_prefix_are_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="--hosts"):
        sshconfig.validate_patterns((bad,))


@pytest.mark.parametrize(
    "good", [("10.*",), ("10.0.1.*", "!10.0.1.5"), ("172.31.?.*",), ("*.ec2.internal",)]
)
def test_host_patterns_with_a_network_prefix_are_kept(good: tuple[str, ...]) -> None:
    assert sshconfig.validate_patterns(good) == good


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


# --- the names the operator's own config uses -------------------------------------------------


def test_the_users_names_are_read_through_include_lines_as_ssh_reads_them(
    tmp_path: Path,
) -> None:
    ssh_dir = tmp_path / ".ssh"
    (ssh_dir / "conf.d").mkdir(parents=True)
    (ssh_dir / "config").write_text(
        "Include conf.d/*.conf\n"
        f"Include {sshconfig.config_dir(tmp_path)}/bastion-*\n"
        'Host work "db 1" !skip\n    HostName work.example.com\n'
        'Match originalhost jump,!nope exec "true" host 10.9.*\n'
        "  # Host commented\n"
        "Include ~/.ssh/config\n"  # a loop: ssh stops at its depth limit, so does this
    )
    # `Include more` is relative to ~/.ssh, not to conf.d, as ssh reads it.
    (ssh_dir / "conf.d" / "a.conf").write_text("host = 172.31.5.5\nInclude more\n")
    (ssh_dir / "more").write_text("Host deep.example.com\n")
    generated = sshconfig.config_path(tmp_path, "demo")
    write_if_changed(generated, "Host app-1.demo.bastion\n")

    found = sshconfig.user_host_names(ssh_dir / "config", skip=(generated,))

    assert [n.pattern for n in found] == [
        "172.31.5.5", "deep.example.com", "work", "db 1", "jump", "10.9.*",
    ]  # fmt: skip
    assert found[0].where.endswith("a.conf line 1") and found[2].where.endswith("config line 3")


def test_a_missing_user_config_names_nothing(tmp_path: Path) -> None:
    assert sshconfig.user_host_names(tmp_path / ".ssh" / "config") == ()


# --- what `ssh-config` (and `up`'s refresh) warns about, one warning each --------------------


def test_refused_names_and_excluded_own_names_are_each_one_warning_on_one_line() -> None:
    from bastion.usecases.shared.clientconfig import name_warnings

    hostile = AppHost("i-0eeeeeeeeeeeeeeee", "x\n    ProxyCommand nc evil 22", "172.31.6.6")
    config = replace(sample_config(), app_hosts=(*sample_config().app_hosts, hostile))
    refused, excluded = name_warnings(config)
    assert refused.startswith("app host names left out of the ssh config (reach those hosts as ")
    assert "INSTANCE_ID.demo.bastion" in refused and "\n" not in refused
    assert "'web 2' on i-0bbbbbbbbbbbbbbbb (not a plain host name" in refused
    assert "'worker' on i-0ccccccccccccccc1, i-0ccccccccccccccc2 (shared by 2 hosts)" in refused
    assert "'x\\n    ProxyCommand nc evil 22' on i-0eeeeeeeeeeeeeeee" in refused
    assert excluded.endswith("!172.31.5.5 (~/.ssh/config line 5)")


def test_another_gateways_file_routing_the_same_addresses_is_warned_about() -> None:
    from bastion.usecases.shared.clientconfig import name_warnings

    other = (
        UserHostName("bastion-eu", "~/.ssh/config.d/bastion-eu line 4"),
        UserHostName("app-1.eu.bastion", "~/.ssh/config.d/bastion-eu line 20"),
        UserHostName("172.31.*", "~/.ssh/config.d/bastion-eu line 40"),
    )
    config = replace(sample_config(), user_names=(), other_gateway_names=other)
    warnings = [w for w in name_warnings(config) if w.startswith("another gateway")]
    assert len(warnings) == 1
    assert "172.31.* (~/.ssh/config.d/bastion-eu line 40)" in warnings[0]
    assert "bastion-eu line 4)" not in warnings[0] and "app-1.eu" not in warnings[0]
    apart = replace(config, patterns=("10.1.*",))
    assert not [w for w in name_warnings(apart) if w.startswith("another gateway")]


def test_the_users_own_block_for_the_gateway_alias_is_warned_about() -> None:
    from bastion.usecases.shared.clientconfig import name_warnings

    own = (UserHostName("bastion-*", "~/.ssh/config line 9"), UserHostName("*", "line 1"))
    warnings = name_warnings(replace(sample_config(), app_hosts=(), user_names=own))
    assert warnings == (
        "your own ssh config names bastion-demo too (~/.ssh/config line 9): bastion's block, "
        "Included first, wins for that name; rename or remove yours",
    )
