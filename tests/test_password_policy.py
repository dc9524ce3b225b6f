"""The RAM password policy on the same machinery as the security preference: every field's
drift reverted with the complete state (whether the API keeps or resets omitted parameters),
a Set that does not stick, API errors, dry-run, report-only, exemptions, the revert budget, a
SetPasswordPolicy audit event, calls per run with both settings, and an organisation-wide run.
All through the SDK's real HTTP path against the emulator."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from conftest import ENDPOINT
from fake_oss import FakeOss, appends_per_revert
from org_support import serve
from samples import env_text
from secpref_guard import engine, handlers
from secpref_guard import fields as F
from secpref_guard.client import ApiError
from secpref_guard.config import load_config
from secpref_guard.emulator import DEFAULT_ACCOUNT
from secpref_guard.emulator.models import documented_defaults
from secpref_guard.emulator.resourcemanager import organisation
from secpref_guard.local import LocalContext, LocalCredentials, LocalFunction, load_handler

ACCOUNT = DEFAULT_ACCOUNT
TODAY = date(2026, 11, 25)
PP = F.PASSWORD_POLICY
SP = F.SECURITY_PREFERENCE
PP_FIELDS = PP.fields
PP_NAMES = {f.api_name for f in PP_FIELDS}
GET, SET = PP.get_action, PP.set_action
ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
TIMER = (ROOT / "events" / "timer.json").read_bytes()

# A policy an admin loosened: every field away from its documented default, each at a value
# with room on both sides of it.
LOOSENED: dict[str, Any] = {
    "MinimumPasswordLength": 10,
    "RequireLowercaseCharacters": True,
    "RequireUppercaseCharacters": True,
    "RequireNumbers": True,
    "RequireSymbols": True,
    "PasswordReusePrevention": 3,
    "MaxPasswordAge": 180,
    "HardExpire": True,
    "MaxLoginAttemps": 10,
    "MinimumPasswordDifferentCharacter": 2,
    "PasswordNotContainUserName": True,
    "InitialPasswordAge": 30,
    "InterceptRiskPasswordOnApi": True,
}


def weaker(f: F.Field, value: Any) -> Any:
    """A valid value of the field that is not at least as strict as ``value`` (for a field
    with no direction: any other value)."""
    if f.kind == "bool":
        return not value
    low, _ = f.bounds or (0, 0)
    candidates = [low, value // 2, value + 5, value * 2, 0]
    for candidate in candidates:
        try:
            f.parse_text(str(candidate))
        except F.FieldValueError:
            continue
        if candidate != value and not f.satisfies(candidate, value):
            return candidate
    raise AssertionError(f"no weaker value for {f.api_name}={value}")


def config_for(baseline: dict[str, Any], **guard: str):
    environ = {F.field(n).env_var: env_text(F.field(n), v) for n, v in baseline.items()}
    return load_config({**environ, "GUARD_IMS_ENDPOINT": ENDPOINT, **guard})


def policy(emulator) -> dict[str, Any]:
    return emulator.ims.state(ACCOUNT, PP.name)


def actions(emulator) -> list[str]:
    return [call.action for call in emulator.ims.calls]


@pytest.fixture
def loosened(emulator):
    emulator.ims.put(ACCOUNT, **LOOSENED)
    assert set(LOOSENED) == PP_NAMES
    assert all(LOOSENED[n] != documented_defaults(PP.name)[n] for n in LOOSENED)
    return emulator


# --- the rules of one enforcement, for each field --------------------------------------------


@pytest.mark.parametrize("f", PP_FIELDS, ids=[f.api_name for f in PP_FIELDS])
def test_drift_in_each_field_is_reverted_and_every_other_field_keeps_its_value(
    loosened, client, f
) -> None:
    baseline = LOOSENED[f.api_name]
    live = weaker(f, baseline)
    loosened.ims.put(ACCOUNT, **{f.api_name: live})
    before = policy(loosened)
    loosened.ims.calls.clear()

    outcome = engine.run(client, config_for({f.api_name: baseline}), account=ACCOUNT, today=TODAY)

    assert outcome.status == "reverted"
    (drift,) = outcome.drift
    assert (drift.setting, drift.actual, drift.expected) == ("password-policy", live, baseline)
    assert policy(loosened) == {**before, f.api_name: baseline}
    assert actions(loosened) == [GET, SET, GET]  # the security preference is never read
    (call,) = loosened.ims.calls_of(SET)
    assert set(call.params) == PP_NAMES  # the complete desired state


def test_a_compliant_policy_costs_one_read(loosened, client) -> None:
    outcome = engine.run(client, config_for(dict(LOOSENED)), account=ACCOUNT, today=TODAY)
    assert (outcome.status, outcome.api_calls, actions(loosened)) == ("compliant", 1, [GET])


def test_a_set_that_does_not_stick_is_a_verification_error(loosened, client) -> None:
    loosened.ims.put(ACCOUNT, MinimumPasswordLength=8)
    loosened.ims.ignored_sets = 1
    with pytest.raises(engine.VerificationError) as raised:
        engine.run(client, config_for({"MinimumPasswordLength": 14}), account=ACCOUNT, today=TODAY)
    assert raised.value.mismatches == [{"field": "MinimumPasswordLength", "sent": 14, "read": 8}]
    assert "SetPasswordPolicy was accepted but a fresh GetPasswordPolicy" in str(raised.value)
    assert raised.value.as_dict()["setting"] == "password-policy"


@pytest.mark.parametrize(
    ("code", "status", "action"), [("NoPermission", 403, SET), ("NoPermission", 403, GET)]
)
def test_an_api_error_is_raised_and_nothing_is_written(loosened, client, code, status, action):
    loosened.ims.put(ACCOUNT, MinimumPasswordLength=8)
    before = policy(loosened)
    loosened.ims.inject_fault(code, status, action=action)
    with pytest.raises(ApiError) as raised:
        engine.run(client, config_for({"MinimumPasswordLength": 14}), account=ACCOUNT, today=TODAY)
    assert (raised.value.action, raised.value.code) == (action, code)
    assert policy(loosened) == before


def test_the_emulator_rejects_what_the_service_rejects(loosened, client) -> None:
    with pytest.raises(ApiError) as raised:
        client.set_setting(PP, {**LOOSENED, "MinimumPasswordLength": 40})
    assert raised.value.code == "InvalidParameter.MinimumPasswordLength.Range"
    assert raised.value.http_status == 400


# --- policy: dry-run, report-only, exemptions ---------------------------------------------------


def test_dry_run_reports_and_writes_nothing(loosened, client) -> None:
    loosened.ims.put(ACCOUNT, MaxLoginAttemps=0)
    outcome = engine.run(
        client,
        config_for({"MaxLoginAttemps": 5}, GUARD_MODE="dry-run"),
        account=ACCOUNT,
        today=TODAY,
    )
    assert outcome.status == "drift"
    assert outcome.drift[0].action == "dry-run"
    assert loosened.ims.calls_of(SET) == []


def test_a_report_only_field_is_reported_and_sent_with_its_live_value(loosened, client) -> None:
    loosened.ims.put(ACCOUNT, MaxPasswordAge=0, MinimumPasswordLength=8)
    config = config_for(
        {"MaxPasswordAge": 365, "MinimumPasswordLength": 14},
        GUARD_REPORT_ONLY_FIELDS="MaxPasswordAge",
    )
    outcome = engine.run(client, config, account=ACCOUNT, today=TODAY)
    actions_by_field = {d.field: d.action for d in outcome.drift}
    assert actions_by_field == {"MaxPasswordAge": "report-only", "MinimumPasswordLength": "revert"}
    (call,) = loosened.ims.calls_of(SET)
    assert call.params["MaxPasswordAge"] == "0"
    assert policy(loosened)["MaxPasswordAge"] == 0


def test_an_exemption_holds_until_its_day(loosened, client) -> None:
    loosened.ims.put(ACCOUNT, RequireSymbols=False)
    exemption = [
        {"account": ACCOUNT, "fields": ["RequireSymbols"], "until": "2026-11-25", "reason": "CHG-1"}
    ]
    config = config_for({"RequireSymbols": True}, GUARD_EXEMPTIONS=json.dumps(exemption))
    held = engine.run(client, config, account=ACCOUNT, today=TODAY)
    assert (held.status, held.drift[0].action) == ("drift", "exempt")
    lapsed = engine.run(client, config, account=ACCOUNT, today=date(2026, 11, 26))
    assert lapsed.status == "reverted"
    assert policy(loosened)["RequireSymbols"] is True


# --- both settings in one run ------------------------------------------------------------------


def test_both_settings_compliant_cost_one_read_each(loosened, client) -> None:
    loosened.ims.put(ACCOUNT, LoginSessionDuration=4)
    config = config_for({"LoginSessionDuration": 4, "MinimumPasswordLength": 10})
    outcome = engine.run(client, config, account=ACCOUNT, today=TODAY)
    assert outcome.status == "compliant"
    assert actions(loosened) == [SP.get_action, GET]
    assert outcome.settings == ("security-preference", "password-policy")


def test_a_drifted_setting_is_written_and_the_other_left_untouched(loosened, client) -> None:
    loosened.ims.put(ACCOUNT, LoginSessionDuration=12)
    config = config_for({"LoginSessionDuration": 4, "MinimumPasswordLength": 10})
    outcome = engine.run(client, config, account=ACCOUNT, today=TODAY)
    assert outcome.status == "reverted"
    assert actions(loosened) == [SP.get_action, GET, SP.set_action, SP.get_action]


def test_both_drifted_are_one_write_and_one_verification_each(loosened, client) -> None:
    loosened.ims.put(ACCOUNT, LoginSessionDuration=12, MinimumPasswordLength=8)
    config = config_for({"LoginSessionDuration": 4, "MinimumPasswordLength": 14})
    outcome = engine.run(client, config, account=ACCOUNT, today=TODAY)
    assert outcome.status == "reverted"
    assert sorted(actions(loosened)) == sorted([SP.get_action, GET] * 2 + [SP.set_action, SET])
    assert {d.setting for d in outcome.drift} == {"security-preference", "password-policy"}
    assert outcome.api_calls == 6


# --- through the handlers: events, the budget, many accounts ------------------------------------


def context(account: str = ACCOUNT, key: tuple[str, ...] = ("test-key-id", "test-key-secret")):
    return LocalContext(
        request_id="req-pp",
        function=LocalFunction("secpref-guard", "x.handler"),
        credentials=LocalCredentials(*key),
        account_id=account,
    )


def handler_run(name: str, payload: bytes, ctx: Any = None) -> dict[str, Any]:
    handlers.reset_instance()
    try:
        return json.loads(load_handler(name, FUNCTIONS)(payload, ctx or context()))
    finally:
        handlers.reset_instance()


def password_event(**identity: Any) -> bytes:
    document = json.loads((ROOT / "events" / "set-by-ram-user.json").read_bytes())
    document["data"]["eventName"] = "SetPasswordPolicy"
    document["data"]["userIdentity"].update(identity)
    return json.dumps(document).encode()


@pytest.fixture
def pp_env(guard_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    guard_env.setenv("BASELINE_PASSWORD_MINIMUM_LENGTH", "14")
    guard_env.setenv("BASELINE_LOGIN_SESSION_DURATION", "4")
    guard_env.setenv("GUARD_SELF_ROLE", "secpref-guard-role")
    return guard_env


def test_a_set_password_policy_event_runs_the_password_policy_only(loosened, pp_env) -> None:
    loosened.ims.put(ACCOUNT, MinimumPasswordLength=8, LoginSessionDuration=12)
    result = handler_run("audit_event.handler", password_event())
    assert result["status"] == "reverted"
    assert [d["setting"] for d in result["drift"]] == ["password-policy"]
    assert result["actor"]["name"] == "alice"
    assert loosened.ims.calls_of(SP.get_action) == []  # the other setting is not read
    assert loosened.ims.state(ACCOUNT)["LoginSessionDuration"] == 12  # nor written


def test_the_guards_own_password_policy_change_is_skipped(loosened, pp_env) -> None:
    arn = f"acs:ram::{ACCOUNT}:assumed-role/secpref-guard-role/fc-session"
    result = handler_run(
        "audit_event.handler",
        password_event(type="assumed-role", arn=arn, accountId=ACCOUNT, accessKeyId="test-key-id"),
    )
    assert result["status"] == "skipped"
    assert "own role" in result["reason"]
    assert loosened.ims.calls == []


def test_an_event_for_a_setting_the_baseline_does_not_pin_is_skipped(
    loosened, guard_env: pytest.MonkeyPatch
) -> None:
    guard_env.setenv("BASELINE_LOGIN_SESSION_DURATION", "4")
    result = handler_run("audit_event.handler", password_event())
    assert result["status"] == "skipped"
    assert "pins no field" in result["reason"]
    assert loosened.ims.calls == []


def test_the_timer_runs_both_settings(loosened, pp_env) -> None:
    loosened.ims.put(ACCOUNT, MinimumPasswordLength=8, LoginSessionDuration=12)
    result = handler_run("scheduled.handler", TIMER)
    assert result["status"] == "reverted"
    assert {d["setting"] for d in result["drift"]} == {"security-preference", "password-policy"}
    assert result["api_calls"] == 6


def test_the_budget_counts_a_password_policy_revert(
    loosened, oss: FakeOss, budget_env: pytest.MonkeyPatch
) -> None:
    budget_env.setenv("BASELINE_PASSWORD_MINIMUM_LENGTH", "14")
    budget_env.setenv("GUARD_MAX_REVERTS", "1")
    loosened.ims.put(ACCOUNT, MinimumPasswordLength=8)
    assert handler_run("scheduled.handler", TIMER)["status"] == "reverted"
    assert oss.count("AppendObject") == appends_per_revert()
    loosened.ims.put(ACCOUNT, MinimumPasswordLength=8)  # someone keeps loosening it
    result = handler_run("scheduled.handler", TIMER)
    assert result["status"] == "contested"
    assert len(loosened.ims.calls_of(SET)) == 1
    assert policy(loosened)["MinimumPasswordLength"] == 8


def test_an_organisation_wide_run_enforces_every_members_password_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "GUARD_IMS_ENDPOINT": ENDPOINT,
        "GUARD_STS_ENDPOINT": ENDPOINT,
        "GUARD_RESOURCEMANAGER_ENDPOINT": ENDPOINT,
        "GUARD_TARGETS": "resource-directory",
        "BASELINE_PASSWORD_MINIMUM_LENGTH": "14",
        "BASELINE_PASSWORD_MAX_LOGIN_ATTEMPTS": "5",
    }.items():
        monkeypatch.setenv(name, value)
    with serve(organisation(3)) as o:
        o.emulator.ims.put(o.members[1], MinimumPasswordLength=20, MaxLoginAttemps=0)
        result = handler_run("scheduled.handler", TIMER, context(o.management_account, o.guard_key))
        states = {a: o.emulator.ims.state(a, PP.name) for a in [o.management_account, *o.members]}
    assert result["counts"]["reverted"] == 4
    for account, state in states.items():
        # 20 is stricter than 14 and stays; an unset lock-out is set
        expected_length = 20 if account == o.members[1] else 14
        assert (state["MinimumPasswordLength"], state["MaxLoginAttemps"]) == (expected_length, 5)
