"""The field table: names, defaults, and every conversion a value goes through.

A value travels environment text -> canonical value -> SetSecurityPreference parameter ->
emulator state -> GetSecurityPreference JSON -> canonical value. These tests pin each hop for
every field in ``FIELDS``, so a field added to the table is checked without touching this file.
"""

from __future__ import annotations

import ipaddress
import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from samples import sample_values
from secpref_guard import fields as F
from secpref_guard.emulator.models import documented_defaults

FIELD_IDS = [f.api_name for f in F.FIELDS]


def env_name_for(api_name: str) -> str:
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", api_name)
    return "BASELINE_" + words.upper()


# --- the table itself ------------------------------------------------------------------------


def test_every_field_has_a_unique_api_name_and_variable():
    assert len(set(F.BY_API_NAME)) == len(F.FIELDS)
    assert len(set(F.BY_ENV_VAR)) == len(F.FIELDS)


@pytest.mark.parametrize("f", F.FIELDS, ids=FIELD_IDS)
def test_each_variable_is_named_after_its_api_field(f):
    assert f.env_var == env_name_for(f.api_name)


@pytest.mark.parametrize("f", F.FIELDS, ids=FIELD_IDS)
def test_each_field_sits_in_a_known_response_group(f):
    assert f.group in F.GROUPS
    assert f.allowed, "the allowed values are worded for error messages"


def test_unknown_field_name_lists_the_known_ones():
    with pytest.raises(KeyError) as err:
        F.field("EnforceMFAForLogin")
    assert "EnforceMFAForLogin" in str(err.value)
    assert "MFAOperationForLogin" in str(err.value)


def test_the_deprecated_risk_login_field_is_never_enforceable():
    assert "OperationForRiskLogin" in F.READ_ONLY_FIELDS
    assert "OperationForRiskLogin" not in F.BY_API_NAME


# --- every hop of every field ----------------------------------------------------------------


@pytest.mark.parametrize("f", F.FIELDS, ids=FIELD_IDS)
def test_a_value_survives_the_set_parameter_and_the_get_response(f):
    for value in sample_values(f):
        assert f.parse_param(f.render_param(value)) == value
        assert f.from_api(f.to_api(value)) == value


@pytest.mark.parametrize("f", F.FIELDS, ids=FIELD_IDS)
def test_the_documented_default_is_a_valid_value(f):
    default = documented_defaults()[f.api_name]
    assert f.parse_param(f.render_param(default)) == default


@pytest.mark.parametrize("f", F.FIELDS, ids=FIELD_IDS)
def test_the_sdks_str_of_python_values_is_rejected_as_a_parameter(f):
    # The SDK sends str(value): True goes out as "True", None as "None". Neither is valid.
    for text in ("True", "None"):
        with pytest.raises(F.FieldValueError):
            f.parse_param(text)


def test_booleans_are_rendered_as_lower_case_json_literals():
    params = F.render_params({"EnableSaveMFATicket": True, "AllowUserToChangePassword": False})
    assert params == {"EnableSaveMFATicket": "true", "AllowUserToChangePassword": "false"}


def test_render_params_sends_only_the_given_fields_in_table_order():
    values = {"MaxIdleDaysForUsers": 90, "EnableSaveMFATicket": False, "LoginSessionDuration": 4}
    assert list(F.render_params(values)) == [
        "EnableSaveMFATicket",
        "LoginSessionDuration",
        "MaxIdleDaysForUsers",
    ]


def test_no_restriction_is_sent_as_an_explicit_empty_string():
    assert F.render_params({"LoginNetworkMasks": frozenset()}) == {"LoginNetworkMasks": ""}


def test_verification_types_are_sent_as_one_json_array_parameter():
    params = F.render_params({"VerificationTypes": frozenset({"sms", "email"})})
    assert params == {"VerificationTypes": '["email","sms"]'}


# --- reading a Get response --------------------------------------------------------------


def test_a_full_response_reads_back_as_the_values_it_was_rendered_from():
    values = documented_defaults()
    values.update(LoginNetworkMasks=frozenset({"10.0.0.0/8"}), MaxIdleDaysForUsers=90)
    assert F.parse_response(F.render_response(values)) == values


def test_a_field_the_account_does_not_return_is_left_out_not_false():
    body = F.render_response(documented_defaults())
    del body["AccessKeyPreference"]["AllowUserToManageServiceCredentials"]
    body["PersonalInfoPreference"]["AllowUserToManagePersonalDingTalk"] = None
    del body["MaxIdleDays"]

    values = F.parse_response(body)

    for absent in (
        "AllowUserToManageServiceCredentials",
        "AllowUserToManagePersonalDingTalk",
        "MaxIdleDaysForUsers",
        "MaxIdleDaysForAccessKeys",
    ):
        assert absent not in values
    assert values["AllowUserToManageAccessKeys"] is False


def test_an_unreadable_response_value_names_its_place():
    body = F.render_response(documented_defaults())
    body["LoginProfilePreference"]["LoginSessionDuration"] = [6]
    with pytest.raises(F.FieldValueError, match=r"LoginProfilePreference\.LoginSessionDuration"):
        F.parse_response(body)


@pytest.mark.parametrize(
    "raw",
    [{"VerificationType": ["sms", "email"]}, ["email", "sms"], '["sms","email"]'],
    ids=["wrapped-list", "bare-list", "json-text"],
)
def test_verification_types_are_read_in_every_shape_the_api_uses(raw):
    assert F.field("VerificationTypes").from_api(raw) == frozenset({"sms", "email"})


@pytest.mark.parametrize("raw", ["true", "false", "True"])
def test_booleans_returned_as_text_are_read(raw):
    assert F.field("EnableSaveMFATicket").from_api(raw) is (raw.lower() == "true")


def test_an_empty_mask_string_from_the_api_means_no_restriction():
    assert F.field("LoginNetworkMasks").from_api("") == frozenset()


def test_reports_show_masks_in_network_order_and_absent_as_none():
    masks = F.field("LoginNetworkMasks")
    value = frozenset({"192.168.0.0/16", "10.0.0.0/8", "9.0.0.0/8"})
    assert masks.display(value) == ["9.0.0.0/8", "10.0.0.0/8", "192.168.0.0/16"]
    assert masks.display(frozenset()) == []
    assert masks.display(None) is None
    assert F.field("VerificationTypes").display(frozenset({"sms", "email"})) == ["email", "sms"]


# --- login network masks -----------------------------------------------------------------


def test_masks_are_normalised_host_bits_spaces_and_bare_addresses():
    assert F.normalise_masks([" 10.1.2.3/8", "192.168.7.9 ", "", "10.0.0.0/8"]) == frozenset(
        {"10.0.0.0/8", "192.168.7.9/32"}
    )


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "::1/128", "10.0.0", "example.com", "10.0.0.0/8,"])
def test_anything_but_an_ipv4_cidr_is_rejected(bad):
    with pytest.raises(F.FieldValueError, match="IPv4 CIDR"):
        F.normalise_masks([bad])


def test_forty_masks_are_accepted_and_forty_one_rejected():
    masks = [f"{i}.0.0.0/8" for i in range(1, 42)]
    assert len(F.normalise_masks(masks[:40])) == 40
    with pytest.raises(F.FieldValueError, match="at most 40 masks"):
        F.normalise_masks(masks)


def test_masks_longer_than_512_characters_are_rejected():
    masks = [f"192.168.{100 + i}.0/24" for i in range(35)]  # 35 masks, 594 characters
    with pytest.raises(F.FieldValueError, match="at most 512"):
        F.normalise_masks(masks)


def test_duplicates_after_normalisation_count_once():
    masks = [f"10.0.0.{i}/8" for i in range(60)]  # 60 spellings of one network
    assert F.normalise_masks(masks) == frozenset({"10.0.0.0/8"})


networks = st.builds(
    lambda address, prefix: (ipaddress.IPv4Address(address), prefix),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=0, max_value=32),
)


@given(
    entries=st.lists(networks, min_size=0, max_size=25),
    seed=st.integers(min_value=0, max_value=2**16),
    pads=st.lists(st.sampled_from(["", " ", "  ", "\t"]), min_size=2, max_size=2),
)
def test_mask_normalisation_ignores_order_whitespace_and_host_bits(entries, seed, pads):
    expected = frozenset(
        str(ipaddress.IPv4Network((address, prefix), strict=False)) for address, prefix in entries
    )
    with_host_bits = [f"{address}/{prefix}" for address, prefix in entries]
    shuffled = with_host_bits[:]
    random.Random(seed).shuffle(shuffled)
    padded = ";".join(f"{pads[0]}{item}{pads[1]}" for item in shuffled)
    masks = F.field("LoginNetworkMasks")

    assert masks.parse_text(";".join(with_host_bits)) == expected
    assert masks.parse_text(padded) == expected
    assert masks.parse_text(masks.render_param(expected)) == expected


# --- verification types ------------------------------------------------------------------


def test_verification_types_are_a_lower_case_set():
    assert F.normalise_verification_types([" SMS", "email", "sms", ""]) == frozenset(
        {"sms", "email"}
    )


@pytest.mark.parametrize("text", ['"sms"', "sms", '{"sms": 1}', "[1]", '["voice"]'])
def test_a_verification_types_parameter_must_be_a_json_array_of_known_types(text):
    with pytest.raises(F.FieldValueError):
        F.field("VerificationTypes").parse_param(text)
