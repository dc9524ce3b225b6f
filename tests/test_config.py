"""Configuration from the environment: every BASELINE_* and GUARD_* variable, and its errors.

Each error must name the variable that caused it (and, for baseline fields, the values it
accepts), because that one line is all an operator sees in the function's log.
"""

from __future__ import annotations

import json
import re
from datetime import date

import pytest

from samples import env_text
from secpref_guard import fields as F
from secpref_guard.config import ConfigError, load_config

FIELD_IDS = [f.api_name for f in F.FIELDS]
BOOL_FIELDS = [f for f in F.FIELDS if f.kind == "bool"]
IDLE_DAYS_FIELDS = [f for f in F.FIELDS if f.api_name.startswith("MaxIdleDaysFor")]
SOME_BASELINE = {"BASELINE_ENABLE_SAVE_MFA_TICKET": "false"}


def baseline_of(variable: str, text: str) -> F.Value:
    """The canonical baseline value that this one variable configures."""
    config = load_config({variable: text})
    return config.baseline[F.BY_ENV_VAR[variable].api_name]


def config_error(environ: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load_config(environ)
    return err.value


def accepted_values(f: F.Field) -> list[str]:
    """The values the field's wording of ``allowed`` names, which an error must repeat."""
    words = f.allowed.split("(")[0]
    for marker in ("one of ", "subset of "):
        if marker in words:
            return [w.strip() for w in words.split(marker, 1)[1].split(",")]
    if f.kind == "bool":
        return ["true", "false"]
    if f.kind == "masks":
        return ["IPv4 CIDR"]
    return re.findall(r"\d+", words)


# --- every baseline field, derived from the table ------------------------------------------


@pytest.mark.parametrize("f", F.FIELDS, ids=FIELD_IDS)
def test_a_valid_value_of_each_field_becomes_its_baseline(f):
    from secpref_guard.emulator.models import documented_defaults

    value = documented_defaults(f.setting)[f.api_name]
    config = load_config({f.env_var: env_text(f, value)})
    assert config.baseline == {f.api_name: value}
    assert config.source_of(f.api_name) == f.env_var


@pytest.mark.parametrize("f", F.FIELDS, ids=FIELD_IDS)
@pytest.mark.parametrize("text", ["yes", "None", "flase", "1.5.x"])
def test_an_invalid_value_names_the_variable_and_the_allowed_values(f, text):
    error = config_error({f.env_var: text})
    assert error.variable == f.env_var
    assert str(error).startswith(f"{f.env_var}: ")
    for value in accepted_values(f):
        assert value in error.problem
    assert text in error.problem


@pytest.mark.parametrize(
    "f", [f for f in F.FIELDS if f.kind not in ("masks", "types")], ids=lambda f: f.api_name
)
def test_an_empty_scalar_variable_is_an_error_not_a_silent_unset(f):
    error = config_error({f.env_var: "  "})
    assert error.variable == f.env_var
    assert "empty" in error.problem


@pytest.mark.parametrize(
    "f", [f for f in F.FIELDS if f.kind in ("masks", "types")], ids=lambda f: f.api_name
)
def test_an_empty_set_variable_pins_the_empty_set(f):
    assert baseline_of(f.env_var, "") == frozenset()


# --- booleans ------------------------------------------------------------------------------


@pytest.mark.parametrize("f", BOOL_FIELDS, ids=lambda f: f.api_name)
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("tRuE", True),
        ("false", False),
        ("FALSE", False),
        ("False", False),
    ],
)
def test_booleans_accept_true_and_false_in_any_case(f, text, expected):
    assert baseline_of(f.env_var, text) is expected


@pytest.mark.parametrize("f", BOOL_FIELDS, ids=lambda f: f.api_name)
@pytest.mark.parametrize("text", ["yes", "no", "1", "0", "flase", "on", "t"])
def test_booleans_accept_nothing_else(f, text):
    error = config_error({f.env_var: text})
    assert error.variable == f.env_var
    assert "true or false" in str(error)


# --- integers and enums -------------------------------------------------------------------


@pytest.mark.parametrize("hours", [1, 6, 24])
def test_login_session_duration_accepts_1_to_24_hours(hours):
    assert baseline_of("BASELINE_LOGIN_SESSION_DURATION", str(hours)) == hours


@pytest.mark.parametrize("text", ["0", "25", "-1", "6.5", "six", "6h"])
def test_login_session_duration_rejects_anything_else(text):
    error = config_error({"BASELINE_LOGIN_SESSION_DURATION": text})
    assert error.variable == "BASELINE_LOGIN_SESSION_DURATION"
    assert "1 to 24" in str(error)


@pytest.mark.parametrize("f", IDLE_DAYS_FIELDS, ids=lambda f: f.api_name)
@pytest.mark.parametrize("days", [90, 180, 365, 730])
def test_idle_days_accept_the_four_documented_choices(f, days):
    assert baseline_of(f.env_var, str(days)) == days


@pytest.mark.parametrize("f", IDLE_DAYS_FIELDS, ids=lambda f: f.api_name)
@pytest.mark.parametrize("text", ["30", "91", "1000", "-90", "90d"])
def test_idle_days_reject_other_numbers(f, text):
    error = config_error({f.env_var: text})
    assert error.variable == f.env_var
    assert "90, 180, 365, 730" in str(error)


@pytest.mark.parametrize("choice", ["mandatory", "independent", "adaptive"])
def test_mfa_operation_accepts_the_three_documented_choices(choice):
    assert baseline_of("BASELINE_MFA_OPERATION_FOR_LOGIN", choice) == choice


@pytest.mark.parametrize("text", ["true", "enforced", "always"])
def test_mfa_operation_rejects_other_words(text):
    error = config_error({"BASELINE_MFA_OPERATION_FOR_LOGIN": text})
    assert error.variable == "BASELINE_MFA_OPERATION_FOR_LOGIN"
    assert "mandatory, independent, adaptive" in str(error)


# --- the two set-valued fields ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sms", {"sms"}),
        ("email", {"email"}),
        ("sms,email", {"sms", "email"}),
        ("email, SMS", {"sms", "email"}),
        ("sms,sms", {"sms"}),
    ],
)
def test_verification_types_are_a_subset_of_sms_and_email(text, expected):
    assert baseline_of("BASELINE_VERIFICATION_TYPES", text) == frozenset(expected)


@pytest.mark.parametrize("text", ["voice", "sms;email", "sms,u2f"])
def test_verification_types_reject_other_types(text):
    error = config_error({"BASELINE_VERIFICATION_TYPES": text})
    assert error.variable == "BASELINE_VERIFICATION_TYPES"
    assert "sms, email" in str(error)


def test_network_masks_are_compared_as_a_set_whatever_the_spelling():
    spellings = [
        "10.0.0.0/8;192.168.0.0/16",
        "192.168.0.0/16;10.0.0.0/8",
        " 192.168.0.0/16 ; 10.0.0.0/8 ",
        "10.20.30.40/8;192.168.1.1/16;10.0.0.0/8",
    ]
    values = {baseline_of("BASELINE_LOGIN_NETWORK_MASKS", text) for text in spellings}
    assert values == {frozenset({"10.0.0.0/8", "192.168.0.0/16"})}


def test_network_masks_empty_means_no_restriction():
    assert baseline_of("BASELINE_LOGIN_NETWORK_MASKS", "") == frozenset()
    assert baseline_of("BASELINE_LOGIN_NETWORK_MASKS", " ; ") == frozenset()


def test_more_than_forty_network_masks_are_rejected():
    text = ";".join(f"{i}.0.0.0/8" for i in range(1, 42))
    assert len(baseline_of("BASELINE_LOGIN_NETWORK_MASKS", text.rsplit(";", 1)[0])) == 40
    error = config_error({"BASELINE_LOGIN_NETWORK_MASKS": text})
    assert error.variable == "BASELINE_LOGIN_NETWORK_MASKS"
    assert "at most 40" in str(error)


def test_network_masks_longer_than_512_characters_are_rejected():
    text = ";".join(f"192.168.{100 + i}.0/24" for i in range(35))
    error = config_error({"BASELINE_LOGIN_NETWORK_MASKS": text})
    assert error.variable == "BASELINE_LOGIN_NETWORK_MASKS"
    assert "512" in str(error)


def test_a_network_mask_that_is_not_ipv4_names_the_variable():
    error = config_error({"BASELINE_LOGIN_NETWORK_MASKS": "10.0.0.0/8;fd00::/8"})
    assert error.variable == "BASELINE_LOGIN_NETWORK_MASKS"
    assert "fd00::/8" in str(error)


# --- the baseline as a whole ------------------------------------------------------------


def test_no_baseline_at_all_is_an_error():
    error = config_error({"GUARD_MODE": "enforce"})
    assert error.variable == "BASELINE_*"
    assert "GUARD_PRESET" in str(error)


def test_unrelated_variables_are_not_a_baseline():
    error = config_error({"BASELINE": "x", "HOME": "/root"})
    assert error.variable == "BASELINE_*"
    # an unknown BASELINE_ name is not ignored: it is named (see the misspelling test below)
    assert config_error({"BASELINE_UNKNOWN_FIELD": "true"}).variable == "BASELINE_UNKNOWN_FIELD"


def test_an_unset_field_is_not_enforced():
    config = load_config({"BASELINE_MAX_IDLE_DAYS_FOR_USERS": "90"})
    assert config.baseline == {"MaxIdleDaysForUsers": 90}


def test_the_preset_applies_and_a_baseline_variable_overrides_it():
    config = load_config({"GUARD_PRESET": "cis-2.0", "BASELINE_MAX_IDLE_DAYS_FOR_USERS": "180"})
    assert config.baseline["MFAOperationForLogin"] == "mandatory"
    assert config.baseline["MaxIdleDaysForAccessKeys"] == 90
    assert config.baseline["MaxIdleDaysForUsers"] == 180
    assert config.source_of("MFAOperationForLogin") == "preset cis-2.0"
    assert config.source_of("MaxIdleDaysForUsers") == "BASELINE_MAX_IDLE_DAYS_FOR_USERS"


def test_the_cis_preset_covers_1_4_to_1_14_with_one_citation_each():
    from secpref_guard.presets import PRESETS

    preset = PRESETS["cis-2.0"]
    recommendations = {}
    for api_name, entry in preset.items():
        f = F.field(api_name)
        assert f.parse_param(f.render_param(entry.value)) == entry.value, api_name
        match = re.search(r"v2\.0\.0, (1\.\d+)", entry.citation)
        assert match, entry.citation
        assert "\n" not in entry.citation
        recommendations[api_name] = match.group(1)
    assert recommendations == {
        "MFAOperationForLogin": "1.4",
        "MaxIdleDaysForUsers": "1.5",
        "MaxIdleDaysForAccessKeys": "1.6",
        "RequireUppercaseCharacters": "1.7",
        "RequireLowercaseCharacters": "1.8",
        "RequireSymbols": "1.9",
        "RequireNumbers": "1.10",
        "MinimumPasswordLength": "1.11",
        "PasswordReusePrevention": "1.12",
        "MaxPasswordAge": "1.13",
        "MaxLoginAttemps": "1.14",
    }
    values = {name: entry.value for name, entry in preset.items()}
    assert values["MinimumPasswordLength"] == 14
    assert values["PasswordReusePrevention"] == 5
    assert values["MaxPasswordAge"] == 365
    assert values["MaxLoginAttemps"] == 5


def test_the_cis_preset_thresholds_keep_a_stricter_account():
    config = load_config({"GUARD_PRESET": "cis-2.0"})
    length, attempts = F.field("MinimumPasswordLength"), F.field("MaxLoginAttemps")
    assert length.satisfies(20, config.baseline["MinimumPasswordLength"])  # "14 or greater"
    assert not length.satisfies(12, config.baseline["MinimumPasswordLength"])
    assert attempts.satisfies(3, config.baseline["MaxLoginAttemps"])
    assert not attempts.satisfies(0, config.baseline["MaxLoginAttemps"])
    assert config.is_exact("MaxPasswordAge")  # CIS 2.0 and 1.0 disagree on the direction


def test_an_unknown_preset_names_the_variable():
    error = config_error({"GUARD_PRESET": "cis-9"})
    assert error.variable == "GUARD_PRESET"
    assert "cis-2.0" in str(error)


# --- the password policy ------------------------------------------------------------------

PASSWORD_RANGES = {
    "BASELINE_PASSWORD_MINIMUM_LENGTH": (8, 32),
    "BASELINE_PASSWORD_REUSE_PREVENTION": (0, 24),
    "BASELINE_PASSWORD_MAX_AGE": (0, 1095),
    "BASELINE_PASSWORD_MAX_LOGIN_ATTEMPTS": (0, 32),
    "BASELINE_PASSWORD_MINIMUM_DIFFERENT_CHARACTERS": (0, 8),
    "BASELINE_PASSWORD_INITIAL_AGE": (0, 90),
}


@pytest.mark.parametrize("variable", sorted(PASSWORD_RANGES))
def test_a_password_integer_accepts_its_range_and_names_it_otherwise(variable):
    low, high = PASSWORD_RANGES[variable]
    assert baseline_of(variable, str(low)) == low
    assert baseline_of(variable, f" {high} ") == high
    for text in (str(low - 1), str(high + 1), "14.0", "fourteen", "١٤", "0x10"):
        error = config_error({variable: text})
        assert error.variable == variable
        assert f"from {low} to {high}" in error.problem, text


def test_the_password_policy_and_the_security_preference_share_one_baseline():
    config = load_config(
        {
            "BASELINE_PASSWORD_MINIMUM_LENGTH": "14",
            "BASELINE_PASSWORD_REQUIRE_SYMBOLS": "TRUE",
            "BASELINE_PASSWORD_MAX_LOGIN_ATTEMPTS": "5",
            "BASELINE_LOGIN_SESSION_DURATION": "4",
        }
    )
    assert config.baseline == {
        "MinimumPasswordLength": 14,
        "RequireSymbols": True,
        "MaxLoginAttemps": 5,
        "LoginSessionDuration": 4,
    }
    assert config.baseline_of(F.PASSWORD_POLICY) == {
        "MinimumPasswordLength": 14,
        "RequireSymbols": True,
        "MaxLoginAttemps": 5,
    }
    assert config.baseline_of(F.SECURITY_PREFERENCE) == {"LoginSessionDuration": 4}
    assert config.source_of("MaxLoginAttemps") == "BASELINE_PASSWORD_MAX_LOGIN_ATTEMPTS"


def test_a_password_baseline_alone_leaves_the_security_preference_unenforced():
    config = load_config({"BASELINE_PASSWORD_HARD_EXPIRE": "true"})
    assert config.baseline_of(F.SECURITY_PREFERENCE) == {}
    assert config.enforced_settings == (F.PASSWORD_POLICY,)
    assert load_config({"BASELINE_LOGIN_SESSION_DURATION": "4"}).enforced_settings == (
        F.SECURITY_PREFERENCE,
    )
    assert load_config({"GUARD_PRESET": "cis-2.0"}).enforced_settings == F.SETTINGS


def test_a_misspelt_password_variable_is_named_with_the_right_spelling():
    error = config_error({"BASELINE_PASSWORD_MAX_LOGIN_ATTEMPS": "5"})
    assert error.variable == "BASELINE_PASSWORD_MAX_LOGIN_ATTEMPS"
    assert "BASELINE_PASSWORD_MAX_LOGIN_ATTEMPTS" in error.problem


# --- GUARD_EXACT_FIELDS ---------------------------------------------------------------------


def test_exact_fields_default_to_none_and_directional_fields_are_thresholds():
    config = load_config(SOME_BASELINE)
    assert config.settings.exact_fields == frozenset()
    assert not config.is_exact("MinimumPasswordLength")
    assert not config.is_exact("LoginSessionDuration")
    # a field without a safer direction is always compared for equality
    assert config.is_exact("MaxPasswordAge")
    assert config.is_exact("LoginNetworkMasks")


def test_exact_fields_are_read_from_a_comma_separated_list():
    config = load_config(
        {**SOME_BASELINE, "GUARD_EXACT_FIELDS": " MinimumPasswordLength, LoginSessionDuration ,"}
    )
    assert config.settings.exact_fields == {"MinimumPasswordLength", "LoginSessionDuration"}
    assert config.is_exact("MinimumPasswordLength")
    assert config.is_exact("LoginSessionDuration")
    assert not config.is_exact("MaxLoginAttemps")


@pytest.mark.parametrize("text", ["MinimumPasswordLenght", "BASELINE_PASSWORD_MINIMUM_LENGTH"])
def test_an_unknown_exact_field_names_the_variable_and_the_known_fields(text):
    error = config_error({**SOME_BASELINE, "GUARD_EXACT_FIELDS": text})
    assert error.variable == "GUARD_EXACT_FIELDS"
    assert text in error.problem
    assert "MinimumPasswordLength" in error.problem
    assert "LoginSessionDuration" in error.problem


# --- GUARD_* settings ---------------------------------------------------------------------


def test_settings_default_to_the_documented_values():
    settings = load_config(SOME_BASELINE).settings
    assert settings.mode == "enforce"
    assert settings.ims_endpoint == "https://ims.aliyuncs.com"
    assert settings.targets == "self"
    assert settings.member_role == "ResourceDirectoryAccountAccessRole"
    assert settings.report_only_fields == frozenset()
    assert settings.exemptions == ()
    assert settings.max_reverts == 3
    assert settings.revert_window_minutes == 60


def test_dry_run_mode_is_read_in_any_case():
    assert load_config({**SOME_BASELINE, "GUARD_MODE": "Dry-Run"}).dry_run


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("GUARD_MODE", "revert", "enforce"),
        ("GUARD_IMS_ENDPOINT", "http://ims.aliyuncs.com", "plain http"),
        ("GUARD_IMS_ENDPOINT", "http://10.0.0.5:8765", "plain http"),
        ("GUARD_IMS_ENDPOINT", "ftp://ims.aliyuncs.com", "https://"),
        ("GUARD_IMS_ENDPOINT", "https://ims.aliyuncs.com/path", "host"),
        ("GUARD_IMS_ENDPOINT", " ", "empty"),
        ("GUARD_STS_ENDPOINT", "http://sts.aliyuncs.com", "plain http"),
        ("GUARD_TARGETS", "everyone", "account id"),
        ("GUARD_TARGETS", "123,abc", "'abc'"),
        ("GUARD_TARGETS", ",", "self, resource-directory"),
        ("GUARD_EXCLUDE_ACCOUNTS", "123,me", "'me'"),
        ("GUARD_MEMBER_ROLE", "role with spaces", "RAM role name"),
        ("GUARD_REPORT_ONLY_FIELDS", "LoginNetworkMasks,LoginNetworkMask", "LoginNetworkMask"),
        ("GUARD_REPORT_ONLY_FIELDS", "BASELINE_LOGIN_NETWORK_MASKS", "unknown"),
        ("GUARD_EXEMPTIONS", "{not json", "not valid JSON"),
        ("GUARD_EXEMPTIONS", '{"account": "1"}', "JSON array"),
        ("GUARD_MAX_REVERTS", "three", "whole number"),
        ("GUARD_MAX_REVERTS", "0", "greater than or equal to 1"),
        ("GUARD_MAX_REVERTS", "-1", "whole number"),
        ("GUARD_MAX_REVERTS", "2.5", "whole number"),
        ("GUARD_REVERT_WINDOW_MINUTES", "an hour", "whole number"),
        ("GUARD_WEBHOOK_URL", "http://hooks.example.com/x", "https://"),
        ("GUARD_DINGTALK_WEBHOOK", "ftp://oapi.dingtalk.com/robot", "https://"),
    ],
)
def test_a_bad_guard_setting_names_its_variable(variable, value, problem):
    error = config_error({**SOME_BASELINE, variable: value})
    assert error.variable == variable
    assert str(error).startswith(f"{variable}: ")
    assert problem in error.problem


def test_the_unknown_report_only_field_is_named_with_the_known_ones():
    error = config_error({**SOME_BASELINE, "GUARD_REPORT_ONLY_FIELDS": "Nope"})
    assert "Nope" in error.problem
    assert "LoginNetworkMasks" in error.problem


@pytest.mark.parametrize(
    "endpoint", ["http://127.0.0.1:8765", "http://localhost:8765", "https://ims.aliyuncs.com"]
)
def test_plain_http_is_allowed_to_this_machine_and_https_anywhere(endpoint):
    settings = load_config({**SOME_BASELINE, "GUARD_IMS_ENDPOINT": endpoint}).settings
    assert settings.ims_endpoint == endpoint


def test_an_endpoint_without_a_scheme_is_https():
    settings = load_config({**SOME_BASELINE, "GUARD_IMS_ENDPOINT": "ims.aliyuncs.com/"}).settings
    assert settings.ims_endpoint == "https://ims.aliyuncs.com"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("self", "self"),
        ("resource-directory", "resource-directory"),
        (" 1234567890123456 , 2234567890123456 ", "1234567890123456,2234567890123456"),
    ],
)
def test_targets(text, expected):
    assert load_config({**SOME_BASELINE, "GUARD_TARGETS": text}).settings.targets == expected


def test_report_only_fields_are_api_field_names():
    settings = load_config(
        {**SOME_BASELINE, "GUARD_REPORT_ONLY_FIELDS": "LoginNetworkMasks, LoginSessionDuration"}
    ).settings
    assert settings.report_only_fields == {"LoginNetworkMasks", "LoginSessionDuration"}


def test_max_reverts_is_read_as_a_number():
    env = {**SOME_BASELINE, "GUARD_MAX_REVERTS": " 5 ", "GUARD_BUDGET_BUCKET": "my-budget"}
    assert load_config(env).settings.max_reverts == 5


def test_a_revert_budget_without_a_bucket_is_a_configuration_error():
    """Without a store the budget could not be counted across instances: say so, loudly."""
    with pytest.raises(ConfigError) as raised:
        load_config({**SOME_BASELINE, "GUARD_MAX_REVERTS": "3"})
    assert raised.value.variable == "GUARD_BUDGET_BUCKET"
    assert "GUARD_MAX_REVERTS" in str(raised.value)


# --- exemptions ---------------------------------------------------------------------------

EXEMPTION = {
    "account": "1234567890123456",
    "fields": ["LoginNetworkMasks"],
    "until": "2026-12-31",
    "reason": "office move, ticket SEC-42",
}


def test_an_exemption_is_read_with_its_date():
    settings = load_config({**SOME_BASELINE, "GUARD_EXEMPTIONS": json.dumps([EXEMPTION])}).settings
    (exemption,) = settings.exemptions
    assert exemption.account == "1234567890123456"
    assert exemption.fields == ("LoginNetworkMasks",)
    assert exemption.until == date(2026, 12, 31)
    assert exemption.active_on(date(2026, 12, 31))
    assert not exemption.active_on(date(2027, 1, 1))


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        ({**EXEMPTION, "fields": ["LoginNetworkMask"]}, "LoginNetworkMask"),
        ({**EXEMPTION, "fields": []}, "fields"),
        ({**EXEMPTION, "until": "31/12/2026"}, "until"),
        ({**EXEMPTION, "account": 1234567890123456}, "account"),
        ({**EXEMPTION, "account": "acme"}, "account"),
        ({k: v for k, v in EXEMPTION.items() if k != "reason"}, "reason"),
        ({**EXEMPTION, "until_date": "2026-12-31"}, "until_date"),
    ],
    ids=[
        "unknown-field",
        "no-fields",
        "bad-date",
        "number-account",
        "word-account",
        "no-reason",
        "extra-key",
    ],
)
def test_a_malformed_exemption_entry_is_named(broken, problem):
    entries = json.dumps([EXEMPTION, broken])
    error = config_error({**SOME_BASELINE, "GUARD_EXEMPTIONS": entries})
    assert error.variable == "GUARD_EXEMPTIONS"
    assert "entry 1" in error.problem
    assert problem in error.problem


def test_an_empty_exemption_variable_means_none():
    assert load_config({**SOME_BASELINE, "GUARD_EXEMPTIONS": " "}).settings.exemptions == ()


def test_a_dingtalk_secret_without_a_webhook_is_an_error():
    error = config_error({**SOME_BASELINE, "GUARD_DINGTALK_SECRET": "SECabcdef"})
    assert error.variable == "GUARD_DINGTALK_SECRET"
    assert "GUARD_DINGTALK_WEBHOOK" in error.problem


def test_the_configuration_reads_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("BASELINE_LOGIN_SESSION_DURATION", "4")
    monkeypatch.setenv("GUARD_MODE", "dry-run")
    config = load_config()
    assert config.baseline == {"LoginSessionDuration": 4}
    assert config.dry_run


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEY", "BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS"),
        ("GUARD_EXCLUDE_ACCOUNT", "GUARD_EXCLUDE_ACCOUNTS"),
        ("GUARD_SOMETHING_ELSE", None),
    ],
)
def test_a_misspelt_variable_is_an_error_not_a_silently_dropped_field(name, hint):
    with pytest.raises(ConfigError) as raised:
        load_config({**SOME_BASELINE, name: "false"})
    assert raised.value.variable == name
    if hint:
        assert f"did you mean {hint}?" in str(raised.value)


@pytest.mark.parametrize("text", ["²", "--5", "٣", "1²", "+", ""])
@pytest.mark.parametrize(
    "variable", ["BASELINE_LOGIN_SESSION_DURATION", "BASELINE_MAX_IDLE_DAYS_FOR_USERS"]
)
def test_numbers_in_other_scripts_are_errors_naming_the_variable(variable, text):
    with pytest.raises(ConfigError) as raised:
        load_config({variable: text})
    assert raised.value.variable == variable


@pytest.mark.parametrize(
    ("variable", "text"),
    [("GUARD_MAX_REVERTS", "³"), ("GUARD_EXCLUDE_ACCOUNTS", "١٢٣"), ("GUARD_BATCH_SIZE", "²")],
)
def test_non_ascii_digits_in_guard_settings_are_errors_naming_the_variable(variable, text):
    with pytest.raises(ConfigError) as raised:
        load_config({**SOME_BASELINE, variable: text, "GUARD_BUDGET_BUCKET": "my-budget"})
    assert raised.value.variable == variable
