"""The field tables: names, defaults, and every conversion a value goes through.

A value travels environment text -> canonical value -> Set parameter -> emulator state -> Get
response JSON -> canonical value. These tests pin each hop for every field of every setting in
``FIELDS``, so a field added to a table is checked without touching this file.
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

SP = F.SECURITY_PREFERENCE  # the grouped setting these tests read and render

FIELD_IDS = [f.api_name for f in F.FIELDS]
SP_FIELDS = F.SECURITY_PREFERENCE.fields


def default_of(f: F.Field) -> F.Value:
    return documented_defaults(f.setting)[f.api_name]


def env_name_for(api_name: str) -> str:
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", api_name)
    return "BASELINE_" + words.upper()


# --- the table itself ------------------------------------------------------------------------


def test_every_field_has_a_unique_api_name_and_variable():
    assert len(set(F.BY_API_NAME)) == len(F.FIELDS)
    assert len(set(F.BY_ENV_VAR)) == len(F.FIELDS)


@pytest.mark.parametrize("f", SP_FIELDS, ids=lambda f: f.api_name)
def test_each_security_preference_variable_is_named_after_its_api_field(f):
    assert f.env_var == env_name_for(f.api_name)


def test_the_password_policy_variables_are_the_interfaces():
    assert {f.api_name: f.env_var for f in F.PASSWORD_POLICY.fields} == {
        "MinimumPasswordLength": "BASELINE_PASSWORD_MINIMUM_LENGTH",
        "RequireLowercaseCharacters": "BASELINE_PASSWORD_REQUIRE_LOWERCASE",
        "RequireUppercaseCharacters": "BASELINE_PASSWORD_REQUIRE_UPPERCASE",
        "RequireNumbers": "BASELINE_PASSWORD_REQUIRE_NUMBERS",
        "RequireSymbols": "BASELINE_PASSWORD_REQUIRE_SYMBOLS",
        "PasswordReusePrevention": "BASELINE_PASSWORD_REUSE_PREVENTION",
        "MaxPasswordAge": "BASELINE_PASSWORD_MAX_AGE",
        "HardExpire": "BASELINE_PASSWORD_HARD_EXPIRE",
        "MaxLoginAttemps": "BASELINE_PASSWORD_MAX_LOGIN_ATTEMPTS",
        "MinimumPasswordDifferentCharacter": "BASELINE_PASSWORD_MINIMUM_DIFFERENT_CHARACTERS",
        "PasswordNotContainUserName": "BASELINE_PASSWORD_NOT_CONTAIN_USER_NAME",
        "InitialPasswordAge": "BASELINE_PASSWORD_INITIAL_AGE",
        "InterceptRiskPasswordOnApi": "BASELINE_PASSWORD_INTERCEPT_RISK_PASSWORD_ON_API",
    }


@pytest.mark.parametrize("f", F.FIELDS, ids=FIELD_IDS)
def test_each_field_sits_where_its_setting_puts_it(f):
    s = F.setting_of(f.api_name)
    assert f in s.fields
    if s.flat:
        assert f.group is None
    else:
        assert f.group in s.groups
    assert f.allowed, "the allowed values are worded for error messages"


def test_the_settings_are_the_interfaces():
    assert [s.name for s in F.SETTINGS] == ["security-preference", "password-policy"]
    sp, pp = F.setting("security-preference"), F.setting("password-policy")
    assert (sp.get_action, sp.set_action, sp.response_key, sp.events) == (
        "GetSecurityPreference",
        "SetSecurityPreference",
        "SecurityPreference",
        ("SetSecurityPreference",),
    )
    assert (pp.get_action, pp.set_action, pp.response_key, pp.events) == (
        "GetPasswordPolicy",
        "SetPasswordPolicy",
        "PasswordPolicy",
        ("SetPasswordPolicy",),
    )
    assert len(pp.fields) == 13
    assert pp.flat
    assert sp.groups[0] == "LoginProfilePreference"
    assert F.setting_of("MaxLoginAttemps") is pp
    assert F.setting_of("LoginSessionDuration") is sp
    assert set(F.BY_API_NAME) == {f.api_name for s in F.SETTINGS for f in s.fields}


def test_an_unknown_setting_lists_the_known_ones():
    with pytest.raises(KeyError, match="security-preference, password-policy"):
        F.setting("access-key-policy")


def test_unknown_field_name_lists_the_known_ones():
    with pytest.raises(KeyError) as err:
        F.field("EnforceMFAForLogin")
    assert "EnforceMFAForLogin" in str(err.value)
    assert "MFAOperationForLogin" in str(err.value)


def test_the_deprecated_risk_login_field_is_never_enforceable():
    assert "OperationForRiskLogin" in F.SECURITY_PREFERENCE.read_only
    assert "OperationForRiskLogin" not in F.BY_API_NAME


# --- every hop of every field ----------------------------------------------------------------


@pytest.mark.parametrize("f", F.FIELDS, ids=FIELD_IDS)
def test_a_value_survives_the_set_parameter_and_the_get_response(f):
    for value in sample_values(f):
        assert f.parse_param(f.render_param(value)) == value
        assert f.from_api(f.to_api(value)) == value


@pytest.mark.parametrize("f", F.FIELDS, ids=FIELD_IDS)
def test_the_documented_default_is_a_valid_value(f):
    default = default_of(f)
    assert f.parse_param(f.render_param(default)) == default


@pytest.mark.parametrize("f", F.FIELDS, ids=FIELD_IDS)
def test_the_sdks_str_of_python_values_is_rejected_as_a_parameter(f):
    # The SDK sends str(value): True goes out as "True", None as "None". Neither is valid.
    for text in ("True", "None"):
        with pytest.raises(F.FieldValueError):
            f.parse_param(text)


def test_booleans_are_rendered_as_lower_case_json_literals():
    params = SP.render_params({"EnableSaveMFATicket": True, "AllowUserToChangePassword": False})
    assert params == {"EnableSaveMFATicket": "true", "AllowUserToChangePassword": "false"}


def test_render_params_sends_only_the_given_fields_in_table_order():
    values = {"MaxIdleDaysForUsers": 90, "EnableSaveMFATicket": False, "LoginSessionDuration": 4}
    assert list(SP.render_params(values)) == [
        "EnableSaveMFATicket",
        "LoginSessionDuration",
        "MaxIdleDaysForUsers",
    ]


def test_no_restriction_is_sent_as_an_explicit_empty_string():
    assert SP.render_params({"LoginNetworkMasks": frozenset()}) == {"LoginNetworkMasks": ""}


def test_verification_types_are_sent_as_one_json_array_parameter():
    params = SP.render_params({"VerificationTypes": frozenset({"sms", "email"})})
    assert params == {"VerificationTypes": '["email","sms"]'}


# --- reading a Get response --------------------------------------------------------------


def test_a_full_response_reads_back_as_the_values_it_was_rendered_from():
    values = documented_defaults()
    values.update(LoginNetworkMasks=frozenset({"10.0.0.0/8"}), MaxIdleDaysForUsers=90)
    assert SP.parse_response(SP.render_response(values)) == values


def test_a_field_the_account_does_not_return_is_left_out_not_false():
    body = SP.render_response(documented_defaults())
    del body["AccessKeyPreference"]["AllowUserToManageServiceCredentials"]
    body["PersonalInfoPreference"]["AllowUserToManagePersonalDingTalk"] = None
    del body["MaxIdleDays"]

    values = SP.parse_response(body)

    for absent in (
        "AllowUserToManageServiceCredentials",
        "AllowUserToManagePersonalDingTalk",
        "MaxIdleDaysForUsers",
        "MaxIdleDaysForAccessKeys",
    ):
        assert absent not in values
    assert values["AllowUserToManageAccessKeys"] is False


def test_an_unreadable_response_value_names_its_place():
    body = SP.render_response(documented_defaults())
    body["LoginProfilePreference"]["LoginSessionDuration"] = [6]
    with pytest.raises(F.FieldValueError, match=r"LoginProfilePreference\.LoginSessionDuration"):
        SP.parse_response(body)


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


# --- the password policy ---------------------------------------------------------------------

PASSWORD_RANGES = {
    "MinimumPasswordLength": (8, 32, 8),
    "PasswordReusePrevention": (0, 24, 0),
    "MaxPasswordAge": (0, 1095, 0),
    "MaxLoginAttemps": (0, 32, 0),
    "MinimumPasswordDifferentCharacter": (0, 8, 0),
    "InitialPasswordAge": (0, 90, 14),
}
PASSWORD_BOOLEANS = (
    "RequireLowercaseCharacters",
    "RequireUppercaseCharacters",
    "RequireNumbers",
    "RequireSymbols",
    "HardExpire",
    "PasswordNotContainUserName",
    "InterceptRiskPasswordOnApi",
)


def test_the_password_policy_has_the_thirteen_fields_of_the_api():
    assert {f.api_name for f in F.PASSWORD_POLICY.fields} == set(PASSWORD_RANGES) | set(
        PASSWORD_BOOLEANS
    )


@pytest.mark.parametrize("name", sorted(PASSWORD_RANGES))
def test_each_password_integer_takes_exactly_its_documented_range(name):
    f = F.field(name)
    low, high, default = PASSWORD_RANGES[name]
    assert default_of(f) == default
    assert f.bounds == (low, high)
    for text in (str(low), str(high), str((low + high) // 2)):
        assert f.parse_text(text) == int(text)
        assert f.parse_param(text) == int(text)
    for outside in (low - 1, high + 1):
        with pytest.raises(F.FieldValueError, match=f"from {low} to {high}") as err:
            f.parse_text(str(outside))
        assert err.value.reason == "range"
    for bad in ("ten", "1.5", "²", "--5", ""):
        with pytest.raises(F.FieldValueError) as err:
            f.parse_param(bad)
        assert err.value.reason == "format"


@pytest.mark.parametrize("name", PASSWORD_BOOLEANS)
def test_each_password_boolean_defaults_to_false_and_reads_strictly(name):
    f = F.field(name)
    assert default_of(f) is False
    assert f.parse_text("TRUE") is True
    assert f.parse_text("false") is False
    for bad in ("yes", "1", "flase"):
        with pytest.raises(F.FieldValueError):
            f.parse_text(bad)


def test_the_password_policy_response_is_flat_and_reads_back():
    values = documented_defaults("password-policy")
    values.update(MinimumPasswordLength=14, RequireSymbols=True, MaxLoginAttemps=5)
    body = F.PASSWORD_POLICY.render_response(values)
    assert body["MinimumPasswordLength"] == 14
    assert body["RequireSymbols"] is True
    assert F.PASSWORD_POLICY.read_response(body) == (values, {})


def test_a_password_field_the_account_does_not_return_is_unknown_and_a_bad_one_is_named():
    body = F.PASSWORD_POLICY.render_response(documented_defaults("password-policy"))
    del body["InterceptRiskPasswordOnApi"]
    assert "InterceptRiskPasswordOnApi" not in F.PASSWORD_POLICY.parse_response(body)
    body["MaxLoginAttemps"] = "five"
    with pytest.raises(F.FieldValueError, match=r"GetPasswordPolicy returned .* MaxLoginAttemps"):
        F.PASSWORD_POLICY.parse_response(body)


def test_each_setting_renders_only_its_own_fields():
    values = {"MinimumPasswordLength": 14, "LoginSessionDuration": 4}
    assert F.PASSWORD_POLICY.render_params(values) == {"MinimumPasswordLength": "14"}
    assert SP.render_params(values) == {"LoginSessionDuration": "4"}


# --- at least as strict ------------------------------------------------------------------------

DIRECTIONS = {
    "LoginSessionDuration": "lower",
    "MaxIdleDaysForAccessKeys": "lower",
    "MaxIdleDaysForUsers": "lower",
    "MaxLoginAttemps": "lower",
    "InitialPasswordAge": "lower",
    "MinimumPasswordLength": "higher",
    "PasswordReusePrevention": "higher",
    "MinimumPasswordDifferentCharacter": "higher",
    "MFAOperationForLogin": "order",
    **dict.fromkeys(PASSWORD_BOOLEANS, "true"),
}
DIRECTIONAL = [F.field(name) for name in DIRECTIONS]
EXACT_ONLY = [f for f in F.FIELDS if f.api_name not in DIRECTIONS]


def test_the_safer_directions_are_the_references():
    assert {f.api_name: f.direction for f in F.FIELDS if f.direction} == DIRECTIONS
    assert {f.api_name for f in EXACT_ONLY} >= {
        "LoginNetworkMasks",
        "VerificationTypes",
        "MaxPasswordAge",
        "AllowUserToChangePassword",
        "AllowUserToManageAccessKeys",
    }
    assert F.field("MFAOperationForLogin").order == ("independent", "adaptive", "mandatory")
    assert F.field("MaxLoginAttemps").off == 0
    assert F.field("InitialPasswordAge").off == 0


def values_of(f: F.Field) -> st.SearchStrategy:
    if f.kind == "bool":
        return st.booleans()
    if f.bounds is not None:
        return st.integers(*f.bounds)
    if f.kind == "enum" and f.order:
        return st.sampled_from(f.order)
    return st.sampled_from(sample_values(f))


def stricter_by_direction(f: F.Field, a: F.Value, b: F.Value) -> bool:
    """The reference's rule, written out per direction: is ``a`` at least as strict as ``b``?"""
    if f.direction == "lower":
        if f.off is not None and b == f.off:
            return True
        if f.off is not None and a == f.off:
            return False
        return a <= b  # type: ignore[operator]
    if f.direction == "higher":
        return a >= b  # type: ignore[operator]
    if f.direction == "true":
        return bool(a) or not b
    return f.order.index(a) >= f.order.index(b)


@pytest.mark.parametrize("f", DIRECTIONAL, ids=lambda f: f.api_name)
@given(data=st.data())
def test_satisfies_is_a_total_preorder_consistent_with_the_direction(f, data):
    a, b, c = (data.draw(values_of(f)) for _ in range(3))
    assert f.satisfies(a, a)
    assert f.satisfies(a, a, exact=True)
    assert f.satisfies(a, b) or f.satisfies(b, a)  # total
    if f.satisfies(a, b) and f.satisfies(b, c):
        assert f.satisfies(a, c)  # transitive
    assert f.satisfies(a, b) == stricter_by_direction(f, a, b)
    assert f.satisfies(a, b, exact=True) == (a == b)
    assert (f.strictness(a) >= f.strictness(b)) == f.satisfies(a, b)
    if f.rule(b) == "any value":
        assert f.satisfies(a, b)
    assert f.rule(b, exact=True).startswith("exactly ")


@pytest.mark.parametrize("f", EXACT_ONLY, ids=lambda f: f.api_name)
def test_a_field_without_a_direction_is_compared_for_equality(f):
    samples = sample_values(f)
    for a in samples:
        for b in samples:
            assert f.satisfies(a, b) == (a == b)
    assert f.rule(samples[0]).startswith("exactly ")


@pytest.mark.parametrize("f", F.FIELDS, ids=FIELD_IDS)
def test_an_unknown_live_value_is_never_compliant(f):
    assert not f.satisfies(None, sample_values(f)[0])


def test_off_is_the_weakest_value_of_a_limit():
    attempts = F.field("MaxLoginAttemps")
    assert attempts.satisfies(3, 5)
    assert not attempts.satisfies(6, 5)
    assert not attempts.satisfies(0, 5)  # no lock-out is weaker than any lock-out
    assert attempts.satisfies(32, 0)  # any lock-out is at least as strict as none
    assert F.field("InitialPasswordAge").satisfies(7, 14)
    assert not F.field("InitialPasswordAge").satisfies(0, 14)


def test_an_mfa_value_the_table_does_not_know_is_never_taken_for_stricter():
    mfa = F.field("MFAOperationForLogin")
    assert mfa.satisfies("mandatory", "adaptive")
    assert not mfa.satisfies("adaptive", "mandatory")
    assert not mfa.satisfies("biometric", "adaptive")
    # against the weakest of the order any value complies, as the rule says ("any value"):
    # reverting an unknown value to the weakest could loosen the account
    assert mfa.satisfies("biometric", "independent")
    assert mfa.rule("independent") == "any value"


@pytest.mark.parametrize(
    ("name", "baseline", "exact", "rule"),
    [
        ("MinimumPasswordLength", 14, False, "at least 14"),
        ("LoginSessionDuration", 4, False, "at most 4"),
        ("MaxLoginAttemps", 5, False, "at most 5, not 0 (off)"),
        ("MaxLoginAttemps", 0, False, "any value"),
        ("RequireSymbols", True, False, "true"),
        ("RequireSymbols", False, False, "any value"),
        ("MFAOperationForLogin", "independent", False, "any value"),
        ("MFAOperationForLogin", "adaptive", False, "at least adaptive (adaptive or mandatory)"),
        ("MFAOperationForLogin", "mandatory", False, "exactly mandatory"),
        ("MinimumPasswordLength", 14, True, "exactly 14"),
        ("RequireSymbols", False, True, "exactly false"),
        ("MaxPasswordAge", 365, False, "exactly 365"),
        (
            "LoginNetworkMasks",
            frozenset({"192.168.0.0/16", "10.0.0.0/8"}),
            False,
            "exactly 10.0.0.0/8;192.168.0.0/16",
        ),
        ("LoginNetworkMasks", frozenset(), False, "exactly empty"),
        ("VerificationTypes", frozenset({"sms", "email"}), False, "exactly email,sms"),
    ],
)
def test_the_rule_says_what_a_live_value_is_held_to(name, baseline, exact, rule):
    assert F.field(name).rule(baseline, exact) == rule
