"""console.py: host keys read from cloud-init's console block, spoofs and noise refused."""

from __future__ import annotations

from bastion.domain.console import host_keys_from_console

ED_A = "AAAAC3NzaC1lZDI1NTE5AAAAIB6kHkhZ0PHVzT4ZOQ9sV0XxBqY1c2d3e4f5g6h7i8j9"
ED_B = "AAAAC3NzaC1lZDI1NTE5AAAAIC0lK8yq2s5y1S8sY7nPpQnRrStTuUvVwWxXyYzZ0a1b"
ECDSA = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPq0"


def console(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def test_the_one_ed25519_key_between_the_markers_is_read_despite_prefixes_and_noise() -> None:
    text = console(
        "[    3.120000] systemd[1]: Started ssh.service",
        "ec2: #############################################################",
        "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----",
        "ec2: 256 SHA256:abc root@gw (ED25519)",
        "ec2: -----END SSH HOST KEY FINGERPRINTS-----",
        "-----BEGIN SSH HOST KEY KEYS-----\r",
        f"ecdsa-sha2-nistp256 {ECDSA} root@gw",
        f"ssh-ed25519 {ED_A} root@gw\r",
        "-----END SSH HOST KEY KEYS-----",
        "cloud-init[612]: Cloud-init v. 25.1 finished",
    )
    keys = host_keys_from_console(text)
    assert keys.blocks == 1
    assert keys.key_of_type() == f"ssh-ed25519 {ED_A}"
    assert not keys.contradicts()


def test_a_key_outside_the_markers_is_ignored() -> None:
    # Anything can print a key line; only cloud-init's block counts.
    keys = host_keys_from_console(console(f"ssh-ed25519 {ED_B} attacker", "login:"))
    assert keys.blocks == 0
    assert keys.key_of_type() is None


def test_two_blocks_naming_the_same_key_agree() -> None:
    block = [
        "-----BEGIN SSH HOST KEY KEYS-----",
        f"ssh-ed25519 {ED_A}",
        "-----END SSH HOST KEY KEYS-----",
    ]
    keys = host_keys_from_console(console(*block, "reboot", *block))
    assert keys.blocks == 2
    assert keys.key_of_type() == f"ssh-ed25519 {ED_A}"


def test_a_second_block_naming_another_key_is_a_contradiction_and_pins_nothing() -> None:
    text = console(
        "-----BEGIN SSH HOST KEY KEYS-----",
        f"ssh-ed25519 {ED_A} root@gw",
        "-----END SSH HOST KEY KEYS-----",
        "-----BEGIN SSH HOST KEY KEYS-----",
        f"ssh-ed25519 {ED_B} root@gw",
        "-----END SSH HOST KEY KEYS-----",
    )
    keys = host_keys_from_console(text)
    assert keys.contradicts()
    assert keys.key_of_type() is None


def test_an_empty_or_unfinished_console_has_no_key() -> None:
    assert host_keys_from_console("").key_of_type() is None
    cut = host_keys_from_console(f"-----BEGIN SSH HOST KEY KEYS-----\nssh-ed25519 {ED_A}\n")
    assert cut.blocks == 0
    assert cut.key_of_type() is None
