"""Login network masks as the API holds them: read whatever the API returns, compare them as sets
of networks, and send back exactly the text read when the guard does not change them.

The API keeps the text it was given (36 bare addresses take 457 characters, within its limit of
512; normalised to /32 they would take 565) and may hold IPv6 blocks. The emulator stores
canonical values and renders them normalised, so the ``as_written`` fixture makes it answer a
Get with the text last written for the account, as the API does, for as long as the stored
value is still what that text means.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

import pytest

from secpref_guard import engine
from secpref_guard import fields as F
from secpref_guard.config import ConfigError, load_config
from secpref_guard.emulator import DEFAULT_ACCOUNT, Emulator
from secpref_guard.emulator.responses import IMS_VERSION
from secpref_guard.ims import ImsClient, Preference

SP = F.SECURITY_PREFERENCE  # the grouped setting these tests read and render

ACCOUNT = DEFAULT_ACCOUNT
TODAY = date(2026, 11, 25)
GET, SET = "GetSecurityPreference", "SetSecurityPreference"
MASKS = F.field("LoginNetworkMasks")
# 36 bare addresses: 457 characters as the API holds them, 565 once each is a /32
BARE_ADDRESSES = ";".join(f"192.168.{i}.1" for i in range(36))

WriteMasks = Callable[[str, str], None]


@pytest.fixture
def as_written(emulator: Emulator) -> WriteMasks:
    """Make the emulator keep the mask text it is given, as the API does; returns a function
    that puts a text in an account, as a person in the console would."""
    texts: dict[str, str] = {}
    service = emulator.services[IMS_VERSION]
    get, set_ = service[GET], service[SET]

    def get_as_written(account: str, params: Mapping[str, str]) -> dict[str, Any]:
        document = get(account, params)
        login = document["SecurityPreference"]["LoginProfilePreference"]
        text = texts.get(account)
        if text is not None and MASKS.from_api(login["LoginNetworkMasks"]) == MASKS.from_api(text):
            login["LoginNetworkMasks"] = text
        return document

    def set_as_written(account: str, params: Mapping[str, str]) -> dict[str, Any]:
        document = set_(account, params)
        if "LoginNetworkMasks" in params:
            texts[account] = params["LoginNetworkMasks"]
        return document

    service[GET], service[SET] = get_as_written, set_as_written

    def write(account: str, text: str) -> None:
        texts[account] = text
        with emulator.ims.lock:
            emulator.ims.state(account)["LoginNetworkMasks"] = MASKS.from_api(text)

    return write


def actions(emulator: Emulator) -> list[str]:
    return [call.action for call in emulator.ims.calls]


def the_set(emulator: Emulator) -> dict[str, str]:
    (call,) = emulator.ims.calls_of(SET)
    return call.params


# --- through the emulator -------------------------------------------------------------------


def test_an_account_with_36_bare_addresses_is_enforced_and_its_masks_go_back_as_read(
    emulator, client, as_written
):
    assert len(BARE_ADDRESSES) == 457
    assert len(MASKS.render_param(MASKS.from_api(BARE_ADDRESSES))) == 565
    as_written(ACCOUNT, BARE_ADDRESSES)
    config = load_config({"BASELINE_MAX_IDLE_DAYS_FOR_USERS": "90"})

    outcome = engine.run(client, config, account=ACCOUNT, today=TODAY)

    assert outcome.status == "reverted", outcome.reason
    assert [d.field for d in outcome.drift] == ["MaxIdleDaysForUsers"]
    assert actions(emulator) == [GET, SET, GET]
    sent = the_set(emulator)
    assert sent["LoginNetworkMasks"] == BARE_ADDRESSES  # the exact live text
    assert sent["MaxIdleDaysForUsers"] == "90"
    assert emulator.ims.state(ACCOUNT)["LoginNetworkMasks"] == frozenset(
        f"192.168.{i}.1/32" for i in range(36)
    )
    assert client.get_security_preference().live_params["LoginNetworkMasks"] == BARE_ADDRESSES


@pytest.mark.parametrize("text", ["10.1.2.3/24", "192.168.7.9; 10.1.2.3/24"])
def test_unpinned_masks_with_host_bits_are_sent_back_as_read(emulator, client, as_written, text):
    as_written(ACCOUNT, text)

    outcome = engine.run(
        client,
        load_config({"BASELINE_ENABLE_SAVE_MFA_TICKET": "true"}),
        account=ACCOUNT,
        today=TODAY,
    )

    assert outcome.status == "reverted", outcome.reason
    assert the_set(emulator)["LoginNetworkMasks"] == text  # not 10.1.2.0/24, not a /32
    assert emulator.ims.state(ACCOUNT)["EnableSaveMFATicket"] is True


def test_masks_with_an_ipv6_block_are_read_and_sent_back_as_read(emulator, client, as_written):
    text = "10.0.0.0/8;2001:DB8::1/32"
    as_written(ACCOUNT, text)

    preference = client.get_security_preference()
    outcome = engine.run(
        client,
        load_config({"BASELINE_LOGIN_SESSION_DURATION": "2"}),
        account=ACCOUNT,
        today=TODAY,
    )

    assert preference.values["LoginNetworkMasks"] == frozenset({"10.0.0.0/8", "2001:db8::/32"})
    assert outcome.status == "reverted", outcome.reason
    assert the_set(emulator)["LoginNetworkMasks"] == text


def test_a_pinned_baseline_compares_the_masks_as_a_set_of_networks(emulator, client, as_written):
    as_written(ACCOUNT, "192.168.1.1/16; 10.0.0.0/8")
    config = load_config({"BASELINE_LOGIN_NETWORK_MASKS": "10.0.0.0/8;192.168.0.0/16"})

    outcome = engine.run(client, config, account=ACCOUNT, today=TODAY)

    assert outcome.status == "compliant"
    assert actions(emulator) == [GET]


def test_a_pinned_baseline_still_reverts_drifted_masks(emulator, client, as_written):
    as_written(ACCOUNT, "10.1.2.3/24;2001:db8::/32")
    config = load_config({"BASELINE_LOGIN_NETWORK_MASKS": "10.0.0.0/8; 172.16.0.1/12"})

    outcome = engine.run(client, config, account=ACCOUNT, today=TODAY)

    assert outcome.status == "reverted", outcome.reason
    (drift,) = outcome.drift
    assert drift.as_dict()["actual"] == ["10.1.2.0/24", "2001:db8::/32"]
    assert drift.as_dict()["after"] == ["10.0.0.0/8", "172.16.0.0/12"]
    assert the_set(emulator)["LoginNetworkMasks"] == "10.0.0.0/8;172.16.0.0/12"
    assert emulator.ims.state(ACCOUNT)["LoginNetworkMasks"] == frozenset(
        {"10.0.0.0/8", "172.16.0.0/12"}
    )


def test_report_only_masks_are_sent_back_as_read_while_another_field_is_reverted(
    emulator, client, as_written
):
    as_written(ACCOUNT, "10.1.2.3/24")
    config = load_config(
        {
            "BASELINE_LOGIN_NETWORK_MASKS": "172.16.0.0/12",
            "BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS": "false",
            "GUARD_REPORT_ONLY_FIELDS": "LoginNetworkMasks",
        }
    )
    emulator.ims.put(ACCOUNT, AllowUserToManageAccessKeys=True)

    outcome = engine.run(client, config, account=ACCOUNT, today=TODAY)

    assert outcome.status == "reverted", outcome.reason
    assert the_set(emulator)["LoginNetworkMasks"] == "10.1.2.3/24"


# --- the client -----------------------------------------------------------------------------


def test_the_client_sends_the_live_text_only_for_fields_left_as_they_were(emulator, client):
    live = Preference(
        values={
            "LoginNetworkMasks": frozenset({"10.1.2.0/24"}),
            "VerificationTypes": frozenset({"sms", "email"}),
            "LoginSessionDuration": 6,
        },
        live_params={"LoginNetworkMasks": "10.1.2.3/24", "VerificationTypes": '["sms","email"]'},
    )
    unchanged = dict(live.values)
    changed = {**unchanged, "LoginNetworkMasks": frozenset({"10.0.0.0/8"})}

    client.set_security_preference(unchanged, live=live)
    client.set_security_preference(changed, live=live)
    client.set_security_preference(unchanged)  # no live read: the canonical rendering

    first, second, third = (call.params for call in emulator.ims.calls_of(SET))
    assert first == {
        "LoginSessionDuration": "6",
        "LoginNetworkMasks": "10.1.2.3/24",
        "VerificationTypes": '["sms","email"]',
    }
    assert second["LoginNetworkMasks"] == "10.0.0.0/8"
    assert second["VerificationTypes"] == '["sms","email"]'
    assert third["LoginNetworkMasks"] == "10.1.2.0/24"
    assert third["VerificationTypes"] == '["email","sms"]'


# --- the field table ------------------------------------------------------------------------


def test_reading_accepts_any_value_the_api_returns_without_the_input_limits():
    many = ";".join(f"10.{i}.0.0/16" for i in range(60))  # 60 masks, 719 characters
    assert len(MASKS.from_api(many)) == 60
    assert len(MASKS.from_api(BARE_ADDRESSES)) == 36
    assert MASKS.from_api(" 2001:DB8::1/32 ;10.1.2.3/24;") == frozenset(
        {"2001:db8::/32", "10.1.2.0/24"}
    )
    # an entry that is no network is kept as read: never equal to a configured baseline
    assert MASKS.from_api("10.0.0.0/8;office") == frozenset({"10.0.0.0/8", "office"})


def test_a_response_reads_back_the_exact_text_of_masks_and_verification_types():
    body = SP.render_response({"LoginSessionDuration": 6, "EnableSaveMFATicket": True})
    body["LoginProfilePreference"]["LoginNetworkMasks"] = "10.1.2.3/24; 192.168.7.9"
    body["VerificationPreference"]["VerificationTypes"] = {"VerificationType": ["sms", "email"]}

    values, live = SP.read_response(body)

    assert values["LoginNetworkMasks"] == frozenset({"10.1.2.0/24", "192.168.7.9/32"})
    assert values["VerificationTypes"] == frozenset({"sms", "email"})
    assert live == {
        "LoginNetworkMasks": "10.1.2.3/24; 192.168.7.9",
        "VerificationTypes": '["sms","email"]',
    }
    assert SP.parse_response(body) == values


def test_the_emulator_checks_a_set_parameter_on_the_text_as_sent():
    assert len(MASKS.parse_param(BARE_ADDRESSES)) == 36  # 457 characters: valid
    assert MASKS.parse_param("2001:db8::/32") == frozenset({"2001:db8::/32"})
    with pytest.raises(F.FieldValueError, match="at most 512"):
        MASKS.parse_param(";".join(f"192.168.{100 + i}.0/24" for i in range(35)))
    with pytest.raises(F.FieldValueError, match="at most 40 masks"):
        MASKS.parse_param(";".join(f"10.0.0.{i}" for i in range(41)))
    for bad in ("10.0.0.0/33", "office", "True"):
        with pytest.raises(F.FieldValueError, match="CIDR"):
            MASKS.parse_param(bad)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (BARE_ADDRESSES, "at most 512"),  # the guard would send it normalised: 565
        ("2001:db8::/32", "IPv4 CIDR"),
        (";".join(f"{i}.0.0.0/8" for i in range(1, 42)), "at most 40"),
    ],
)
def test_configured_masks_keep_the_input_limits(text, problem):
    with pytest.raises(ConfigError, match=problem):
        load_config({"BASELINE_LOGIN_NETWORK_MASKS": text})


def test_json_of_verification_types_as_read_is_valid_for_the_api():
    assert F.field("VerificationTypes").parse_param(json.dumps(["sms", "email"])) == frozenset(
        {"sms", "email"}
    )


def test_a_set_of_36_bare_addresses_through_the_client_is_accepted(emulator, client):
    live = Preference(
        values={"LoginNetworkMasks": MASKS.from_api(BARE_ADDRESSES)},
        live_params={"LoginNetworkMasks": BARE_ADDRESSES},
    )
    ImsClient.set_security_preference(client, dict(live.values), live=live)
    assert the_set(emulator) == {"LoginNetworkMasks": BARE_ADDRESSES}
