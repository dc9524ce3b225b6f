"""The drift engine against the emulator, in both Set semantics (omitted fields reset or kept).

Each scenario starts from an account whose fields outside the baseline hold non-default
values, so a write that sent only the drifted fields would visibly change them under 'reset'.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from conftest import ENDPOINT
from samples import env_text, other_than, sample_values
from secpref_guard import engine
from secpref_guard import fields as F
from secpref_guard.client import ApiError
from secpref_guard.config import load_config
from secpref_guard.emulator import DEFAULT_ACCOUNT
from secpref_guard.emulator.models import documented_defaults
from secpref_guard.run import Services, enforce_account
from secpref_guard.scope import Decision

ACCOUNT = DEFAULT_ACCOUNT  # the emulator's default key belongs to it (see conftest)
# the engine runs the security preference until it takes a list of settings (issue 12)
SP_FIELDS = F.SECURITY_PREFERENCE.fields
SP_NAMES = {f.api_name for f in SP_FIELDS}
FIELD_IDS = [f.api_name for f in SP_FIELDS]
TODAY = date(2026, 11, 25)
GET, SET = "GetSecurityPreference", "SetSecurityPreference"


def non_default(f: F.Field) -> F.Value:
    default = documented_defaults()[f.api_name]
    return next(v for v in sample_values(f) if v != default)


def config_for(baseline: dict[str, F.Value], **guard: str):
    """The baseline compared for equality: these tests are about reading, writing and
    verifying; the "at least as strict" rule has its own tests (tests/test_strictness.py)."""
    environ = {F.field(name).env_var: env_text(F.field(name), v) for name, v in baseline.items()}
    environ["GUARD_EXACT_FIELDS"] = ",".join(baseline)
    environ.update(guard)
    return load_config(environ)


def actions(emulator) -> list[str]:
    return [call.action for call in emulator.ims.calls]


def sent_values(emulator) -> dict[str, F.Value]:
    (call,) = emulator.ims.calls_of(SET)
    return {name: F.field(name).parse_param(text) for name, text in call.params.items()}


@pytest.fixture
def loosened_account(emulator):
    """An account where every field holds a value other than its documented default."""
    emulator.ims.put(ACCOUNT, **{f.api_name: non_default(f) for f in SP_FIELDS})
    return emulator.ims


# --- the rules of one enforcement -----------------------------------------------------------


@pytest.mark.parametrize("f", SP_FIELDS, ids=FIELD_IDS)
def test_drift_in_each_field_is_reverted_and_every_other_field_keeps_its_value(
    emulator, loosened_account, client, f
):
    before = dict(loosened_account.state(ACCOUNT))
    expected = other_than(f, before[f.api_name])
    config = config_for({f.api_name: expected})

    outcome = engine.run(client, config, account=ACCOUNT, today=TODAY)

    assert outcome.status == "reverted"
    assert [d.as_dict()["field"] for d in outcome.drift] == [f.api_name]
    assert outcome.drift[0].actual == before[f.api_name]
    assert outcome.drift[0].expected == expected
    assert loosened_account.state(ACCOUNT) == {**before, f.api_name: expected}
    assert actions(emulator) == [GET, SET, GET]
    assert outcome.api_calls == 3


@pytest.mark.parametrize("f", SP_FIELDS, ids=FIELD_IDS)
def test_the_set_carries_the_complete_state_of_live_and_baseline_values_only(
    emulator, loosened_account, client, f
):
    before = dict(loosened_account.state(ACCOUNT))
    config = config_for({f.api_name: other_than(f, before[f.api_name])})

    engine.run(client, config, account=ACCOUNT, today=TODAY)

    sent = sent_values(emulator)
    assert set(sent) == SP_NAMES
    for name, value in sent.items():
        assert value in (before[name], config.baseline.get(name)), name


def test_a_compliant_account_costs_one_read_and_no_write(emulator, loosened_account, client):
    config = config_for(dict(loosened_account.state(ACCOUNT)))  # every field pinned, all match

    outcome = engine.run(client, config, account=ACCOUNT, today=TODAY)

    assert outcome.status == "compliant"
    assert outcome.drift == []
    assert outcome.api_calls == 1
    assert actions(emulator) == [GET]


def test_drift_in_every_field_at_once_is_one_write_and_one_verification(
    emulator, loosened_account, client
):
    live = dict(loosened_account.state(ACCOUNT))
    baseline = {f.api_name: other_than(f, live[f.api_name]) for f in SP_FIELDS}

    outcome = engine.run(client, config_for(baseline), account=ACCOUNT, today=TODAY)

    assert outcome.status == "reverted"
    assert {d.field for d in outcome.drift} == SP_NAMES
    assert loosened_account.state(ACCOUNT) == baseline
    assert actions(emulator) == [GET, SET, GET]


def test_a_login_network_restriction_is_removed_with_an_explicit_empty_value(
    emulator, loosened_account, client
):
    before = dict(loosened_account.state(ACCOUNT))
    assert before["LoginNetworkMasks"]

    outcome = engine.run(
        client, load_config({"BASELINE_LOGIN_NETWORK_MASKS": ""}), account=ACCOUNT, today=TODAY
    )

    assert outcome.status == "reverted"
    assert emulator.ims.calls_of(SET)[0].params["LoginNetworkMasks"] == ""
    assert loosened_account.state(ACCOUNT) == {**before, "LoginNetworkMasks": frozenset()}


def test_the_same_masks_in_another_order_are_not_drift(emulator, client):
    emulator.ims.put(ACCOUNT, LoginNetworkMasks="192.168.0.0/16;10.0.0.0/8")
    config = load_config({"BASELINE_LOGIN_NETWORK_MASKS": "10.1.1.1/8; 192.168.0.0/16"})

    outcome = engine.run(client, config, account=ACCOUNT, today=TODAY)

    assert outcome.status == "compliant"
    assert actions(emulator) == [GET]


# --- reporting without writing ----------------------------------------------------------


def test_dry_run_reports_the_drift_and_writes_nothing(emulator, loosened_account, client):
    before = dict(loosened_account.state(ACCOUNT))
    config = config_for(
        {"AllowUserToManageAccessKeys": False, "LoginSessionDuration": 4}, GUARD_MODE="dry-run"
    )

    outcome = engine.run(client, config, account=ACCOUNT, today=TODAY)

    assert outcome.status == "drift"
    assert outcome.mode == "dry-run"
    assert {(d.field, d.action) for d in outcome.drift} == {
        ("LoginSessionDuration", "dry-run"),
        ("AllowUserToManageAccessKeys", "dry-run"),
    }
    assert "GUARD_MODE is dry-run" in outcome.reason
    assert actions(emulator) == [GET]
    assert loosened_account.state(ACCOUNT) == before


def test_check_reports_the_drift_and_writes_nothing_even_in_enforce_mode(
    emulator, loosened_account, client
):
    before = dict(loosened_account.state(ACCOUNT))
    config = config_for({"AllowUserToManageAccessKeys": False})

    outcome = engine.run(client, config, account=ACCOUNT, write=False, today=TODAY)

    assert outcome.status == "drift"
    assert outcome.mode == "check"
    assert outcome.reason == "check only: nothing is written"
    assert actions(emulator) == [GET]
    assert loosened_account.state(ACCOUNT) == before


def test_a_report_only_field_is_reported_and_sent_with_its_live_value(
    emulator, loosened_account, client
):
    before = dict(loosened_account.state(ACCOUNT))
    config = config_for(
        {"LoginNetworkMasks": frozenset({"172.16.0.0/12"}), "EnableSaveMFATicket": False},
        GUARD_REPORT_ONLY_FIELDS="LoginNetworkMasks",
    )

    outcome = engine.run(client, config, account=ACCOUNT, today=TODAY)

    assert outcome.status == "reverted"
    drift = {d.field: d for d in outcome.drift}
    assert drift["LoginNetworkMasks"].action == "report-only"
    assert "GUARD_REPORT_ONLY_FIELDS" in drift["LoginNetworkMasks"].note
    assert drift["EnableSaveMFATicket"].action == "revert"
    assert sent_values(emulator)["LoginNetworkMasks"] == before["LoginNetworkMasks"]
    assert loosened_account.state(ACCOUNT) == {**before, "EnableSaveMFATicket": False}
    assert "not written: LoginNetworkMasks" in outcome.reason


def test_drift_only_in_report_only_fields_writes_nothing(emulator, loosened_account, client):
    before = dict(loosened_account.state(ACCOUNT))
    config = config_for(
        {"LoginNetworkMasks": frozenset({"172.16.0.0/12"})},
        GUARD_REPORT_ONLY_FIELDS="LoginNetworkMasks",
    )

    outcome = engine.run(client, config, account=ACCOUNT, today=TODAY)

    assert outcome.status == "drift"
    assert outcome.reason == "report-only fields"
    assert actions(emulator) == [GET]
    assert loosened_account.state(ACCOUNT) == before


def exemptions(until: date, account: str = ACCOUNT) -> str:
    return json.dumps(
        [
            {
                "account": account,
                "fields": ["LoginSessionDuration"],
                "until": until.isoformat(),
                "reason": "long migration, SEC-7",
            }
        ]
    )


def test_an_active_exemption_is_reported_not_written_up_to_its_last_day(
    emulator, loosened_account, client
):
    before = dict(loosened_account.state(ACCOUNT))
    config = config_for(
        {"LoginSessionDuration": 4, "EnableSaveMFATicket": False},
        GUARD_EXEMPTIONS=exemptions(until=TODAY),
    )

    outcome = engine.run(client, config, account=ACCOUNT, today=TODAY)

    drift = {d.field: d for d in outcome.drift}
    assert drift["LoginSessionDuration"].action == "exempt"
    assert drift["LoginSessionDuration"].note == (
        f"exempt until {TODAY.isoformat()}: long migration, SEC-7"
    )
    assert sent_values(emulator)["LoginSessionDuration"] == before["LoginSessionDuration"]
    assert loosened_account.state(ACCOUNT) == {**before, "EnableSaveMFATicket": False}


def test_an_exemption_of_another_account_does_not_apply(emulator, loosened_account, client):
    config = config_for(
        {"LoginSessionDuration": 4},
        GUARD_EXEMPTIONS=exemptions(until=TODAY, account="9999999999999999"),
    )

    outcome = engine.run(client, config, account=ACCOUNT, today=TODAY)

    assert outcome.status == "reverted"
    assert loosened_account.state(ACCOUNT)["LoginSessionDuration"] == 4


def test_an_expired_exemption_is_reverted_and_says_it_expired(emulator, loosened_account, client):
    yesterday = TODAY - timedelta(days=1)
    config = config_for({"LoginSessionDuration": 4}, GUARD_EXEMPTIONS=exemptions(yesterday))

    outcome = engine.run(client, config, account=ACCOUNT, today=TODAY)

    assert outcome.status == "reverted"
    (drift,) = outcome.drift
    assert drift.action == "revert"
    assert "expired" in drift.note
    assert yesterday.isoformat() in drift.note
    assert loosened_account.state(ACCOUNT)["LoginSessionDuration"] == 4


# --- fields the account does not return ---------------------------------------------------


def test_a_field_the_account_does_not_return_is_absent_not_false(emulator, client):
    emulator.ims.hide_field(ACCOUNT, "AllowUserToManageServiceCredentials")
    config = load_config({"BASELINE_ALLOW_USER_TO_MANAGE_SERVICE_CREDENTIALS": "false"})

    outcome = engine.run(client, config, account=ACCOUNT, write=False, today=TODAY)

    assert outcome.status == "drift"  # a hidden field is never taken as a compliant false
    (drift,) = outcome.drift
    assert drift.actual is None
    assert drift.as_dict()["actual"] is None


def test_a_pinned_field_the_account_does_not_return_cannot_be_verified(emulator, client):
    emulator.ims.hide_field(ACCOUNT, "AllowUserToManageServiceCredentials")
    config = load_config({"BASELINE_ALLOW_USER_TO_MANAGE_SERVICE_CREDENTIALS": "false"})

    with pytest.raises(engine.VerificationError) as err:
        engine.run(client, config, account=ACCOUNT, today=TODAY)

    assert [m["field"] for m in err.value.mismatches] == ["AllowUserToManageServiceCredentials"]
    assert err.value.mismatches[0]["read"] is None


def test_an_unowned_field_the_account_does_not_return_is_not_sent(
    emulator, loosened_account, client
):
    loosened_account.hide_field(ACCOUNT, "VerificationTypes")
    loosened_account.put(ACCOUNT, LoginSessionDuration=24)  # weaker than the baseline's 4

    outcome = engine.run(
        client, load_config({"BASELINE_LOGIN_SESSION_DURATION": "4"}), account=ACCOUNT, today=TODAY
    )

    assert outcome.status == "reverted"
    assert "VerificationTypes" not in emulator.ims.calls_of(SET)[0].params
    # what the guard cannot read it cannot send back: the run says so
    assert outcome.unread == ("VerificationTypes",)
    assert outcome.as_dict()["unread_fields"] == ["VerificationTypes"]
    assert "not returned by the read, so not sent: VerificationTypes" in outcome.reason


# --- the window between the read and the write ---------------------------------------------


def change_after_first(emulator, action, **values):
    """Someone changes the account right after the guard's first call of ``action``."""
    handle = emulator.handle
    seen = 0

    def handling(*args):
        nonlocal seen
        reply = handle(*args)
        if any(action in str(a) for a in args[:2]):
            seen += 1
            if seen == 1:
                emulator.ims.put(ACCOUNT, **values)
        return reply

    emulator.handle = handling


def test_a_write_on_a_stale_read_reads_again_and_keeps_what_changed_meanwhile(
    emulator, loosened_account, client, monkeypatch
):
    monkeypatch.setattr(engine, "STALE_READ_SECONDS", 0.0)  # every write counts as stale
    idle = 180 if loosened_account.state(ACCOUNT)["MaxIdleDaysForUsers"] != 180 else 365
    change_after_first(emulator, GET, LoginNetworkMasks="172.16.0.0/12", MaxIdleDaysForUsers=idle)

    outcome = engine.run(
        client, config_for({"LoginSessionDuration": 4}), account=ACCOUNT, today=TODAY
    )

    assert actions(emulator) == [GET, GET, SET, GET]
    assert outcome.status == "reverted"
    assert set(outcome.changed_during_run) == {"LoginNetworkMasks", "MaxIdleDaysForUsers"}
    state = emulator.ims.state(ACCOUNT)
    assert state["LoginNetworkMasks"] == frozenset({"172.16.0.0/12"})  # not rolled back
    assert state["MaxIdleDaysForUsers"] == idle
    assert state["LoginSessionDuration"] == 4
    assert "changed by someone else meanwhile and kept" in outcome.reason


def test_a_fresh_read_costs_nothing_more_and_a_compliant_run_stays_one_call(
    emulator, loosened_account, client
):
    config = config_for({"LoginSessionDuration": 4})
    assert engine.run(client, config, account=ACCOUNT, today=TODAY).status == "reverted"
    assert actions(emulator) == [GET, SET, GET]  # the read was fresh: no second read
    emulator.ims.calls.clear()
    assert engine.run(client, config, account=ACCOUNT, today=TODAY).status == "compliant"
    assert actions(emulator) == [GET]


def test_drift_put_right_by_someone_else_meanwhile_is_not_written(
    emulator, loosened_account, client, monkeypatch
):
    monkeypatch.setattr(engine, "STALE_READ_SECONDS", 0.0)
    change_after_first(emulator, GET, LoginSessionDuration=4)

    outcome = engine.run(
        client, config_for({"LoginSessionDuration": 4}), account=ACCOUNT, today=TODAY
    )

    assert actions(emulator) == [GET, GET]
    assert outcome.status == "compliant"
    assert emulator.ims.calls_of(SET) == []


# --- failures --------------------------------------------------------------------------------


def test_a_set_that_does_not_stick_is_a_verification_error(emulator, loosened_account, client):
    before = dict(loosened_account.state(ACCOUNT))
    assert before["MaxIdleDaysForUsers"] != 365
    loosened_account.ignored_sets = 1

    with pytest.raises(engine.VerificationError) as err:
        engine.run(client, config_for({"MaxIdleDaysForUsers": 365}), account=ACCOUNT, today=TODAY)

    assert err.value.mismatches == [
        {"field": "MaxIdleDaysForUsers", "sent": 365, "read": before["MaxIdleDaysForUsers"]}
    ]
    assert err.value.request_id
    assert "MaxIdleDaysForUsers" in str(err.value)
    assert actions(emulator) == [GET, SET, GET]


@pytest.mark.parametrize(
    ("code", "status", "action"),
    [
        ("NoPermission", 403, SET),
        ("InvalidParameter.LoginSessionDuration", 400, SET),
        ("NoPermission", 403, GET),
    ],
)
def test_an_api_error_is_raised_with_its_details_and_nothing_is_written(
    emulator, loosened_account, client, code, status, action
):
    before = dict(loosened_account.state(ACCOUNT))
    emulator.ims.inject_fault(code, status, action=action, message=f"emulated {code} message")

    with pytest.raises(ApiError) as err:
        engine.run(client, config_for({"LoginSessionDuration": 4}), account=ACCOUNT, today=TODAY)

    error = err.value
    assert (error.action, error.code, error.http_status) == (action, code, status)
    assert error.message == f"emulated {code} message"
    assert error.request_id
    assert error.request_id in client.log.request_ids
    assert loosened_account.state(ACCOUNT) == before
    assert actions(emulator) == ([GET, SET] if action == SET else [GET])


def test_a_failed_run_becomes_an_error_outcome_with_the_api_details(emulator, client):
    emulator.ims.inject_fault("NoPermission", 403, action=GET)
    config = load_config({"BASELINE_LOGIN_SESSION_DURATION": "4", "GUARD_IMS_ENDPOINT": ENDPOINT})
    services = Services(config=config, base=client.rpc.credentials, own_account=ACCOUNT)
    decision = Decision(ACCOUNT, True, own=True)

    outcome = enforce_account(decision, services).as_dict()

    assert outcome["status"] == "error"
    assert outcome["api_calls"] == 1
    assert outcome["error"]["code"] == "NoPermission"
    assert outcome["error"]["http_status"] == 403
    assert "NoPermission" in outcome["reason"]


# --- the report ----------------------------------------------------------------------------


def test_the_outcome_document_has_status_drift_and_reason(emulator, client):
    emulator.ims.put(ACCOUNT, LoginNetworkMasks="192.168.0.0/16;10.0.0.0/8")
    config = load_config({"BASELINE_LOGIN_NETWORK_MASKS": "10.0.0.0/8"})

    document = engine.run(client, config, account=ACCOUNT, today=TODAY).as_dict()

    assert document["status"] == "reverted"
    assert document["reason"] == "reverted LoginNetworkMasks"
    assert document["drift"] == [
        {
            "setting": "security-preference",
            "field": "LoginNetworkMasks",
            "actual": ["10.0.0.0/8", "192.168.0.0/16"],
            "expected": ["10.0.0.0/8"],
            "action": "revert",
            "rule": "exactly 10.0.0.0/8",  # masks have no safer direction
            "source": "BASELINE_LOGIN_NETWORK_MASKS",
            "after": ["10.0.0.0/8"],  # as the verification read saw it
        }
    ]
    assert document["api_calls"] == 3
    assert len(document["request_ids"]) == 3
    json.dumps(document)  # the handlers return it as JSON


def test_a_set_tried_again_after_throttling_is_planned_on_a_fresh_read(
    emulator, loosened_account, client
):
    """The wait before a throttled Set's next try is a window in which an admin may change a
    field outside the baseline: the retry reads again and keeps that change."""
    emulator.ims.inject_fault("Throttling.User", 400, action=SET, times=1)
    # the throttled try: an admin acts during the wait
    change_after_first(emulator, SET, LoginNetworkMasks="172.16.0.0/12")
    loosened_account.put(ACCOUNT, LoginSessionDuration=12)

    outcome = engine.run(
        client, config_for({"LoginSessionDuration": 4}), account=ACCOUNT, today=TODAY
    )

    assert actions(emulator) == [GET, SET, GET, SET, GET]
    assert outcome.status == "reverted"
    assert outcome.changed_during_run == ("LoginNetworkMasks",)
    state = emulator.ims.state(ACCOUNT)
    assert state["LoginNetworkMasks"] == frozenset({"172.16.0.0/12"})  # kept, not rolled back
    assert state["LoginSessionDuration"] == 4
