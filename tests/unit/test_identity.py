"""The identity decision (domain.identity): tags alone never make an instance bastion's gateway."""

from __future__ import annotations

import pytest

from bastion.domain.errors import ConflictError, NotFoundError
from bastion.domain.identity import GatewayRecord, Proof, choose_instances, require_record, tie
from bastion.domain.model import InstanceInfo
from bastion.domain.tags import TAG_CREATED_BY, TAG_GENERATION

PIN = "SHA256:pinned"


def _instance(iid: str, generation: int = 1, **tags: str) -> InstanceInfo:
    return InstanceInfo(
        instance_id=iid,
        state="running",
        public_ip=None,
        private_ip=None,
        subnet_id=None,
        vpc_id=None,
        key_name=None,
        image_id="ami-1",
        launch_time=None,
        security_group_ids=(),
        tags={TAG_GENERATION: str(generation), **tags},
    )


OWN = GatewayRecord(frozenset({"i-real"}), PIN, holds_keys=True)
REAL = _instance("i-real")
DECOY = _instance("i-decoy", generation=99)


def test_the_recorded_instance_is_tied_without_any_proof() -> None:
    assert tie(REAL, OWN, None)


def test_a_console_printing_the_pinned_key_ties_an_unrecorded_instance() -> None:
    legacy = GatewayRecord(frozenset(), PIN, holds_keys=True)
    assert tie(REAL, legacy, Proof(console_fingerprint=PIN))
    assert not tie(REAL, legacy, Proof(console_fingerprint="SHA256:other"))


def test_the_pinned_key_answering_ties_an_unrecorded_instance() -> None:
    legacy = GatewayRecord(frozenset(), PIN, holds_keys=True)
    assert tie(REAL, legacy, Proof(pinned_key_answered=True))


def test_taking_the_operators_admin_certificate_ties_an_instance_on_another_machine() -> None:
    certificate_operator = GatewayRecord(holds_keys=True)  # only their own key, no pin
    accepted = {"i-real": Proof(admin_certificate_accepted=True), "i-decoy": Proof()}
    assert tie(REAL, certificate_operator, accepted["i-real"])
    with pytest.raises(ConflictError, match=r"i-decoy.*i-real"):
        choose_instances("default", [REAL, DECOY], certificate_operator, accepted, "burn")


def test_tags_copied_from_the_gateway_tie_nothing() -> None:
    # Every tag (fingerprints included) is attacker-writable: no proof, no tie.
    assert not tie(_instance("i-decoy", 99, **{"bastion:host-key-fingerprint": PIN}), OWN, Proof())


def test_a_decoy_beside_the_real_gateway_is_refused_naming_both() -> None:
    with pytest.raises(ConflictError) as error:
        choose_instances("default", [REAL, DECOY], OWN, {}, "burn")
    message = error.value.message
    assert "i-decoy" in message and "i-real" in message and "--instance i-real" in message
    assert "\n" not in message


def test_a_decoy_alone_is_refused_with_the_record_named() -> None:
    with pytest.raises(ConflictError, match=r"launched here: i-real.*--instance i-decoy"):
        choose_instances("default", [DECOY], OWN, {"i-decoy": Proof()}, "down")


def test_an_explicit_instance_is_the_operators_choice() -> None:
    assert choose_instances("default", [REAL, DECOY], OWN, {}, "burn", chosen="i-decoy") == (DECOY,)


def test_an_explicit_instance_that_is_not_a_candidate_is_not_found() -> None:
    with pytest.raises(NotFoundError, match="i-nope"):
        choose_instances("default", [REAL], OWN, {}, "burn", chosen="i-nope")


def test_every_tied_instance_is_kept_mid_relaunch() -> None:
    standby = _instance("i-next", 2)
    record = GatewayRecord(frozenset({"i-real", "i-next"}), PIN, holds_keys=True)
    assert choose_instances("default", [REAL, standby], record, {}, "down") == (REAL, standby)


def test_a_machine_without_keys_is_refused_unless_it_says_so() -> None:
    made = _instance("i-theirs", **{TAG_CREATED_BY: "arn:aws:iam::1:user/alice"})
    with pytest.raises(ConflictError, match=r"made by arn:aws:iam::1:user/alice.*--without-keys"):
        choose_instances("default", [made], GatewayRecord(), {}, "down")
    assert choose_instances("default", [made], GatewayRecord(), {}, "down", without_keys=True)


def test_without_keys_still_needs_a_choice_between_several_instances() -> None:
    with pytest.raises(ConflictError, match="--without-keys --instance"):
        choose_instances("default", [REAL, DECOY], GatewayRecord(), {}, "burn", without_keys=True)


def test_rotate_never_offers_without_keys() -> None:
    with pytest.raises(ConflictError) as error:
        choose_instances("default", [REAL], GatewayRecord(), {}, "rotate")
    assert "--without-keys" not in error.value.message


def test_require_record_shows_who_made_the_gateway() -> None:
    tags = {TAG_CREATED_BY: "arn:aws:iam::1:user/alice"}
    with pytest.raises(ConflictError, match="alice"):
        require_record("default", GatewayRecord(), tags, "down", without_keys=False)
    warning = require_record("default", GatewayRecord(), tags, "down", without_keys=True)
    assert warning and "alice" in warning
    assert require_record("default", OWN, tags, "down", without_keys=False) is None
    assert require_record("default", GatewayRecord(), None, "down", without_keys=False) is None


def test_only_names_bastion_gives_are_bastions_groups_and_key_pairs() -> None:
    from bastion.domain.identity import named_by_bastion
    from bastion.domain.tags import group_name, key_pair_name

    assert named_by_bastion("default", group_name("default", 12))
    assert named_by_bastion("default", key_pair_name("default", "SHA256:abc+/def123456789"))
    assert not named_by_bastion("default", "sg-rds")
    assert not named_by_bastion("default", "prod-deploy-key")
    assert not named_by_bastion("default", group_name("default-gw", 1))  # another gateway's
