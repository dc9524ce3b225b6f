"""Policy controls through the handlers and the CLI against the emulator: presets, report-only
fields, exemptions with expiry, the revert budget (in a local fake of OSS, through oss2's real
HTTP path) and the control policy."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from fake_oss import FakeOss, appends_per_revert
from secpref_guard import cli, handlers
from secpref_guard import fields as F
from secpref_guard.emulator import DEFAULT_ACCOUNT, Emulator
from secpref_guard.local import LocalContext, LocalCredentials, LocalFunction, load_handler
from secpref_guard.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]
TIMER = (ROOT / "events" / "timer.json").read_bytes()
RAM_USER_EVENT = (ROOT / "events" / "set-by-ram-user.json").read_bytes()
CONTEXT = LocalContext(
    request_id="req-policy",
    function=LocalFunction("secpref-guard-scheduled", "scheduled.handler"),
    credentials=LocalCredentials("test-key-id", "test-key-secret"),
    account_id=DEFAULT_ACCOUNT,
)


def scheduled(payload: bytes = TIMER) -> dict[str, Any]:
    handlers.reset_instance()
    return json.loads(load_handler("scheduled.handler", ROOT / "functions")(payload, CONTEXT))


def audit(payload: bytes = RAM_USER_EVENT) -> dict[str, Any]:
    handlers.reset_instance()
    return json.loads(load_handler("audit_event.handler", ROOT / "functions")(payload, CONTEXT))


def set_params(emulator: Emulator) -> list[dict[str, str]]:
    return [c.params for c in emulator.ims.calls_of("SetSecurityPreference")]


def today() -> datetime:
    return datetime.now(timezone.utc)


# --- presets ------------------------------------------------------------------------------


def test_preset_applies_and_a_variable_overrides_its_field(
    emulator: Emulator, guard_env: pytest.MonkeyPatch
) -> None:
    guard_env.setenv("GUARD_PRESET", "cis-2.0")
    guard_env.setenv("BASELINE_MAX_IDLE_DAYS_FOR_USERS", "180")
    result = scheduled()

    assert result["status"] == "reverted"
    sources = {d["field"]: d["source"] for d in result["drift"]}
    # a new account's password policy is weaker than CIS 1.7-1.14 in every field they name
    password = {f.api_name for f in F.PASSWORD_POLICY.fields}
    assert {n: s for n, s in sources.items() if n not in password} == {
        "MFAOperationForLogin": "preset cis-2.0",
        "MaxIdleDaysForAccessKeys": "preset cis-2.0",
        "MaxIdleDaysForUsers": "BASELINE_MAX_IDLE_DAYS_FOR_USERS",
    }
    assert {n: s for n, s in sources.items() if n in password} == {
        name: "preset cis-2.0" for name in PRESETS["cis-2.0"] if name in password
    }
    assert len([n for n in sources if n in password]) == 8
    state = emulator.ims.state(DEFAULT_ACCOUNT)
    assert state["MFAOperationForLogin"] == "mandatory"
    assert state["MaxIdleDaysForAccessKeys"] == 90
    assert state["MaxIdleDaysForUsers"] == 180
    policy = emulator.ims.state(DEFAULT_ACCOUNT, "password-policy")
    assert policy["MinimumPasswordLength"] == 14
    assert policy["MaxLoginAttemps"] == 5
    assert result["api_calls"] == 6  # a read, a write and a verification of each setting


def test_check_shows_where_each_expected_value_came_from(
    emulator: Emulator, guard_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    guard_env.setenv("GUARD_PRESET", "cis-2.0")
    guard_env.setenv("BASELINE_MAX_IDLE_DAYS_FOR_USERS", "365")
    assert cli.main(["check"]) == 2
    table = capsys.readouterr().out
    assert "preset cis-2.0" in table
    assert "BASELINE_MAX_IDLE_DAYS_FOR_USERS" in table


def test_unknown_preset_is_a_configuration_error(
    emulator: Emulator, guard_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    guard_env.setenv("GUARD_PRESET", "cis-9")
    assert cli.main(["check"]) == 1
    assert "GUARD_PRESET" in capsys.readouterr().err
    assert emulator.ims.calls == []


# --- report-only fields ---------------------------------------------------------------------


def test_report_only_field_is_reported_and_never_sent_with_a_changed_value(
    emulator: Emulator, guard_env: pytest.MonkeyPatch
) -> None:
    guard_env.setenv("BASELINE_LOGIN_NETWORK_MASKS", "10.0.0.0/8")
    guard_env.setenv("BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS", "false")
    guard_env.setenv("GUARD_REPORT_ONLY_FIELDS", "LoginNetworkMasks")
    emulator.ims.put(
        DEFAULT_ACCOUNT, LoginNetworkMasks="192.168.0.0/16", AllowUserToManageAccessKeys=True
    )
    result = scheduled()

    assert result["status"] == "reverted"
    actions = {d["field"]: d["action"] for d in result["drift"]}
    assert actions == {"LoginNetworkMasks": "report-only", "AllowUserToManageAccessKeys": "revert"}
    (params,) = set_params(emulator)
    assert params["LoginNetworkMasks"] == "192.168.0.0/16"  # the live value, unchanged
    assert params["AllowUserToManageAccessKeys"] == "false"
    assert emulator.ims.state(DEFAULT_ACCOUNT)["LoginNetworkMasks"] == frozenset({"192.168.0.0/16"})


def test_only_report_only_drift_writes_nothing(
    emulator: Emulator, guard_env: pytest.MonkeyPatch
) -> None:
    guard_env.setenv("BASELINE_LOGIN_SESSION_DURATION", "4")
    guard_env.setenv("GUARD_REPORT_ONLY_FIELDS", "LoginSessionDuration")
    result = scheduled()
    assert result["status"] == "drift"
    assert result["reason"] == "report-only fields"
    assert set_params(emulator) == []


def test_unknown_report_only_field_is_a_configuration_error(
    emulator: Emulator, guard_env: pytest.MonkeyPatch
) -> None:
    guard_env.setenv("BASELINE_LOGIN_SESSION_DURATION", "4")
    guard_env.setenv("GUARD_REPORT_ONLY_FIELDS", "LoginSessionDuration,LoginMasks")
    with pytest.raises(handlers.HandlerError, match=r"GUARD_REPORT_ONLY_FIELDS.*LoginMasks"):
        scheduled()
    assert emulator.ims.calls == []


# --- exemptions with expiry -----------------------------------------------------------------


def exemption(until: datetime, account: str = DEFAULT_ACCOUNT) -> str:
    return json.dumps(
        [
            {
                "account": account,
                "fields": ["AllowUserToManageAccessKeys"],
                "until": until.date().isoformat(),
                "reason": "CHG-1042 migration keys",
            }
        ]
    )


def test_exemption_holds_through_its_last_day(
    emulator: Emulator, guard_env: pytest.MonkeyPatch
) -> None:
    guard_env.setenv("BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS", "false")
    guard_env.setenv("GUARD_EXEMPTIONS", exemption(today()))
    emulator.ims.put(DEFAULT_ACCOUNT, AllowUserToManageAccessKeys=True)
    result = scheduled()

    assert result["status"] == "drift"
    (drift,) = result["drift"]
    assert drift["action"] == "exempt"
    assert "CHG-1042" in drift["note"]
    assert today().date().isoformat() in drift["note"]
    assert set_params(emulator) == []


def test_exemption_lapses_the_day_after_and_is_reported_as_expired(
    emulator: Emulator, guard_env: pytest.MonkeyPatch
) -> None:
    guard_env.setenv("BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS", "false")
    guard_env.setenv("GUARD_EXEMPTIONS", exemption(today() - timedelta(days=1)))
    emulator.ims.put(DEFAULT_ACCOUNT, AllowUserToManageAccessKeys=True)
    result = scheduled()

    assert result["status"] == "reverted"
    (drift,) = result["drift"]
    assert drift["action"] == "revert"
    assert "expired" in drift["note"]
    assert emulator.ims.state(DEFAULT_ACCOUNT)["AllowUserToManageAccessKeys"] is False


def test_malformed_exemption_is_a_configuration_error_naming_the_entry(
    emulator: Emulator, guard_env: pytest.MonkeyPatch
) -> None:
    guard_env.setenv("BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS", "false")
    bad = [
        {
            "account": DEFAULT_ACCOUNT,
            "fields": ["AllowUserToManageAccessKeys"],
            "until": "2026-11-31",
            "reason": "x",
        }
    ]
    guard_env.setenv("GUARD_EXEMPTIONS", json.dumps(bad))
    with pytest.raises(handlers.HandlerError, match=r"GUARD_EXEMPTIONS: entry 0: until"):
        scheduled()
    assert emulator.ims.calls == []


# --- the revert budget ----------------------------------------------------------------------


def second_automation(emulator: Emulator) -> None:
    """Another tool that flips the field back right after every write the guard makes."""

    def flip_back(account: str, sent: dict[str, Any]) -> None:
        if sent.get("AllowUserToManageAccessKeys") is False:
            emulator.ims.state(account)["AllowUserToManageAccessKeys"] = True

    emulator.ims.put(DEFAULT_ACCOUNT, AllowUserToManageAccessKeys=True)
    emulator.ims.after_set.append(flip_back)


def test_a_fight_stops_at_the_budget_with_status_contested(
    emulator: Emulator, oss: FakeOss, budget_env: pytest.MonkeyPatch
) -> None:
    second_automation(emulator)
    # the other automation's flip lands after the guard's write, so verification fails: each
    # run is a revert that did not stick, counted against the budget all the same
    outcomes = []
    for _ in range(3):
        with pytest.raises(handlers.HandlerError, match="still differs"):
            scheduled()
        outcomes.append("error")
    writes_before = len(set_params(emulator))
    assert writes_before == 3

    result = audit()
    assert result["status"] == "contested"
    assert result["drift"][0]["field"] == "AllowUserToManageAccessKeys"
    assert "GUARD_MAX_REVERTS=3" in result["reason"]
    assert len(result["budget"]["recent"]) == 3
    assert result["budget"]["allowed"] is False
    assert result["budget"]["last_actor"] is None  # timer runs know no actor
    # nothing more is written, on either trigger
    assert scheduled()["status"] == "contested"
    assert len(set_params(emulator)) == writes_before


def test_reverts_that_stick_are_counted_and_the_budget_spends_across_triggers(
    emulator: Emulator, oss: FakeOss, budget_env: pytest.MonkeyPatch
) -> None:
    for trigger in (scheduled, audit, scheduled):
        emulator.ims.put(DEFAULT_ACCOUNT, AllowUserToManageAccessKeys=True)
        assert trigger()["status"] == "reverted"
    emulator.ims.put(DEFAULT_ACCOUNT, AllowUserToManageAccessKeys=True)
    result = audit()
    assert result["status"] == "contested"
    assert "alice" in (result["budget"]["last_actor"] or "")
    assert emulator.ims.state(DEFAULT_ACCOUNT)["AllowUserToManageAccessKeys"] is True


def test_the_budget_costs_a_compliant_run_nothing(
    emulator: Emulator, oss: FakeOss, budget_env: pytest.MonkeyPatch
) -> None:
    assert scheduled()["status"] == "compliant"
    assert oss.calls == []


def test_the_budget_adds_one_read_before_a_write_and_one_append_after(
    emulator: Emulator, oss: FakeOss, budget_env: pytest.MonkeyPatch
) -> None:
    emulator.ims.put(DEFAULT_ACCOUNT, AllowUserToManageAccessKeys=True)
    assert scheduled()["status"] == "reverted"
    assert oss.count("GetObject") == 1
    assert oss.count("AppendObject") == appends_per_revert()
    assert len(oss.calls) == 1 + appends_per_revert()


def test_a_store_outage_still_reverts_and_says_the_budget_was_not_checked(
    emulator: Emulator, oss: FakeOss, budget_env: pytest.MonkeyPatch
) -> None:
    oss.fail(503, "ServiceUnavailable", times=None)
    emulator.ims.put(DEFAULT_ACCOUNT, AllowUserToManageAccessKeys=True)
    result = scheduled()

    assert result["status"] == "reverted"
    assert "could not be checked" in result["reason"]
    assert "could not be checked" in result["budget"]["error"]
    assert emulator.ims.state(DEFAULT_ACCOUNT)["AllowUserToManageAccessKeys"] is False


def test_cli_enforce_is_contested_once_the_budget_is_spent(
    emulator: Emulator,
    oss: FakeOss,
    budget_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    budget_env.setenv("GUARD_MAX_REVERTS", "1")
    emulator.ims.put(DEFAULT_ACCOUNT, AllowUserToManageAccessKeys=True)
    assert cli.main(["enforce", "--json"]) == 0
    emulator.ims.put(DEFAULT_ACCOUNT, AllowUserToManageAccessKeys=True)
    capsys.readouterr()
    assert cli.main(["enforce", "--json"]) == 2  # drift left by policy (the interface)
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "contested"
    assert len(set_params(emulator)) == 1


# --- prevention -----------------------------------------------------------------------------


def test_control_policy_command_prints_a_valid_deny_policy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["control-policy", "--guard-role", "SecPref-Guard-Role"]) == 0
    text = capsys.readouterr().out.strip()
    document = json.loads(text)
    (statement,) = document["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Action"] == ["ram:SetSecurityPreference", "ram:SetPasswordPolicy"]
    assert statement["Condition"]["StringNotLike"]["acs:PrincipalARN"] == [
        "acs:ram:*:*:role/secpref-guard-role",
        "acs:ram:*:*:role/resourcedirectoryaccountaccessrole",
    ]
    assert len(text) <= 4096


def test_control_policy_follows_the_member_role_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GUARD_MEMBER_ROLE", "OrgAdminAccess")
    assert cli.main(["control-policy"]) == 0
    document = json.loads(capsys.readouterr().out)
    principals = document["Statement"][0]["Condition"]["StringNotLike"]["acs:PrincipalARN"]
    assert principals == ["acs:ram:*:*:role/orgadminaccess"]


def test_an_active_exemption_wins_over_an_expired_one_for_the_same_field(
    emulator: Emulator, guard_env: pytest.MonkeyPatch
) -> None:
    guard_env.setenv("BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS", "false")
    active = json.loads(exemption(today()))[0]
    expired = {
        **active,
        "until": (today() - timedelta(days=3)).date().isoformat(),
        "reason": "old ticket",
    }
    guard_env.setenv("GUARD_EXEMPTIONS", json.dumps([active, expired]))
    emulator.ims.put(DEFAULT_ACCOUNT, AllowUserToManageAccessKeys=True)
    (drift,) = scheduled()["drift"]
    assert drift["action"] == "exempt"
    assert "CHG-1042" in drift["note"]
    assert "expired" not in drift["note"]
