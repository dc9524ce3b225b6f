"""Both Function Compute handlers, loaded by the handler names template.yml declares, driven
with the sample events in events/ against the emulator (both Set semantics)."""

from __future__ import annotations

import gc
import json
import sys
import types
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from secpref_guard import handlers, instance
from secpref_guard.emulator import DEFAULT_ACCOUNT, Emulator
from secpref_guard.local import LocalContext, LocalCredentials, LocalFunction, load_handler

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
Handler = Callable[[bytes, Any], str]

RELEVANT_EVENTS = ["set-by-ram-user.json", "set-in-console.json", "bare-record.json"]
SKIPPED_EVENTS = {
    "set-by-guard.json": "guard's own role",
    "set-failed.json": "the call failed (NoPermission)",
    "unrelated-call.json": "CreateUser is not SetSecurityPreference",
}


def template_handlers() -> dict[str, str]:
    """function resource name -> handler, as template.yml declares them."""
    template = yaml.safe_load((ROOT / "template.yml").read_text())
    return {
        name: resource["props"]["handler"]
        for name, resource in template["resources"].items()
        if resource["component"] == "fc3"
    }


HANDLERS = template_handlers()
SCHEDULED = HANDLERS["guard-scheduled"]
AUDIT = HANDLERS["guard-audit-event"]


def load(handler: str) -> Handler:
    return load_handler(handler, ROOT / "functions")


EMULATOR_KEY = LocalCredentials("test-key-id", "test-key-secret")


def context(
    credentials: LocalCredentials | None = EMULATOR_KEY,
    account_id: str | None = DEFAULT_ACCOUNT,
) -> LocalContext:
    return LocalContext(
        request_id="req-1",
        function=LocalFunction("secpref-guard", "x.handler"),
        credentials=credentials,
        account_id=account_id,
    )


def event(name: str) -> bytes:
    return (EVENTS / name).read_bytes()


@pytest.fixture(autouse=True)
def fresh_instance() -> Iterator[None]:
    handlers.reset_instance()
    yield
    handlers.reset_instance()


@pytest.fixture
def baseline(guard_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    guard_env.setenv("BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS", "false")
    guard_env.setenv("BASELINE_ENABLE_SAVE_MFA_TICKET", "false")
    guard_env.setenv("BASELINE_MFA_OPERATION_FOR_LOGIN", "mandatory")
    guard_env.setenv("GUARD_SELF_ROLE", "secpref-guard-role")
    return guard_env


def drift_account(emulator: Emulator) -> None:
    """A person loosened two baseline fields and set two fields the baseline does not own."""
    emulator.ims.put(
        DEFAULT_ACCOUNT,
        AllowUserToManageAccessKeys=True,
        EnableSaveMFATicket=True,
        LoginNetworkMasks="10.0.0.0/8;192.168.1.0/24",
        LoginSessionDuration=12,
    )


def sets(emulator: Emulator) -> list[Any]:
    return emulator.ims.calls_of("SetSecurityPreference")


def test_template_names_a_handler_for_each_trigger() -> None:
    assert SCHEDULED == "scheduled.handler"
    assert AUDIT == "audit_event.handler"


def test_timer_reverts_drift_and_keeps_fields_outside_the_baseline(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    drift_account(emulator)
    result = json.loads(load(SCHEDULED)(event("timer.json"), context()))

    assert result["status"] == "reverted"
    assert {d["field"] for d in result["drift"]} == {
        "AllowUserToManageAccessKeys",
        "EnableSaveMFATicket",
        "MFAOperationForLogin",
    }
    assert result["api_calls"] == 3
    # before, baseline and after (as the verification read saw it) of every field
    assert all(d["after"] == d["expected"] != d["actual"] for d in result["drift"])
    assert result["trigger"] == {
        "type": "schedule",
        "name": "every-5-minutes",
        "time": "2026-11-25T04:00:00Z",
    }
    state = emulator.ims.state(DEFAULT_ACCOUNT)
    assert state["AllowUserToManageAccessKeys"] is False
    assert state["EnableSaveMFATicket"] is False
    assert state["MFAOperationForLogin"] == "mandatory"
    # not owned by the baseline: untouched whether the API keeps or resets omitted fields
    assert state["LoginNetworkMasks"] == frozenset({"10.0.0.0/8", "192.168.1.0/24"})
    assert state["LoginSessionDuration"] == 12


def test_timer_on_a_compliant_account_costs_one_read(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    emulator.ims.put(DEFAULT_ACCOUNT, MFAOperationForLogin="mandatory")
    result = json.loads(load(SCHEDULED)(event("timer.json"), context()))

    assert result["status"] == "compliant"
    assert result["drift"] == []
    assert [c.action for c in emulator.ims.calls] == ["GetSecurityPreference"]


class Cycle:
    """An object that refers to itself: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.mark.freezes
def test_an_invocation_freezes_the_imports_before_its_run_and_after_and_later_garbage_is_freed(
    emulator: Emulator, baseline: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13: the handler's imports leave the collector's generations (gc.freeze) before
    the run, what the run imported after it; an invocation that imports nothing new freezes
    nothing, so a cycle it made is still collected."""
    from secpref_guard.timer import TimerPayload

    handler = load(SCHEDULED)
    steps: list[str] = []
    freeze, services = gc.freeze, instance.services
    cycles: list[weakref.ref[Cycle]] = []

    def recorded_freeze() -> None:
        steps.append("freeze")
        freeze()

    def services_making_a_cycle(*args: Any) -> Any:
        steps.append("run")
        cycles.append(weakref.ref(Cycle()))
        return services(*args)

    monkeypatch.setattr(gc, "freeze", recorded_freeze)
    monkeypatch.setattr(instance, "services", services_making_a_cycle)
    monkeypatch.setattr(instance, "_frozen_modules", 0)  # as in a new instance
    monkeypatch.setattr(instance, "_freezes", 0)
    monkeypatch.delitem(sys.modules, "secpref_guard.timer")  # the run imports it again
    gc.unfreeze()
    try:
        handler(event("timer.json"), context())
        assert steps == ["freeze", "run", "freeze"]
        tracked = {id(o) for o in gc.get_objects()}  # the permanent generation is not listed
        assert id(handlers) not in tracked
        timer_payload = sys.modules["secpref_guard.timer"].TimerPayload
        assert timer_payload is not TimerPayload  # imported by the run, then frozen
        assert id(timer_payload) not in tracked

        handler(event("timer.json"), context())
        assert steps == ["freeze", "run", "freeze", "run"]  # nothing new: nothing frozen
        gc.collect()
        assert cycles[1]() is None
    finally:
        gc.unfreeze()


@pytest.mark.freezes
def test_freezing_stops_after_a_few_freezes_whatever_a_process_keeps_importing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frozen: list[int] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(len(sys.modules)))
    monkeypatch.setattr(instance, "_freezes", 0)
    for number in range(instance.MAX_FREEZES + 3):
        monkeypatch.setitem(sys.modules, f"imported_later_{number}", types.ModuleType("later"))
        instance.freeze_imports()
        instance.freeze_imports()  # nothing imported in between: no freeze
    assert len(frozen) == instance.MAX_FREEZES


def test_timer_accepts_an_empty_manual_invocation(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    result = json.loads(load(SCHEDULED)(b"", context()))
    assert result["status"] in ("compliant", "reverted")
    assert result["trigger"]["type"] == "schedule"


def test_dry_run_reports_and_writes_nothing(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    baseline.setenv("GUARD_MODE", "dry-run")
    drift_account(emulator)
    before = dict(emulator.ims.state(DEFAULT_ACCOUNT))

    for handler, name in ((SCHEDULED, "timer.json"), (AUDIT, "set-by-ram-user.json")):
        result = json.loads(load(handler)(event(name), context()))
        assert result["status"] == "drift"
        assert result["reason"] == "GUARD_MODE is dry-run"
        assert {d["action"] for d in result["drift"]} == {"dry-run"}
        assert all(d["after"] == d["actual"] for d in result["drift"])  # nothing written

    assert sets(emulator) == []
    assert emulator.ims.state(DEFAULT_ACCOUNT) == before


@pytest.mark.parametrize("name", RELEVANT_EVENTS)
def test_audit_event_reverts_and_names_who_made_the_change(
    emulator: Emulator, baseline: pytest.MonkeyPatch, name: str
) -> None:
    drift_account(emulator)
    result = json.loads(load(AUDIT)(event(name), context()))

    assert result["status"] == "reverted"
    assert result["api_calls"] == 3
    record = json.loads(event(name))
    record = record.get("data", record)
    actor = result["actor"]
    assert actor["type"] == record["userIdentity"]["type"]
    assert actor["account"] == record["userIdentity"]["accountId"]
    assert actor["source_ip"] == record["sourceIpAddress"]
    assert actor["time"] == record["eventTime"]
    assert result["trigger"]["name"] == "SetSecurityPreference"
    assert emulator.ims.state(DEFAULT_ACCOUNT)["LoginSessionDuration"] == 12


def test_console_change_is_attributed_to_the_console_user(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    drift_account(emulator)
    result = json.loads(load(AUDIT)(event("set-in-console.json"), context()))
    assert result["actor"]["name"] == "bob@example.onaliyun.com"
    assert result["actor"]["via"] == "console"
    assert result["trigger"]["id"] == "9b7e33d0-1a2f-4c6e-8d41-5f0a2c9e7b22"


@pytest.mark.parametrize(("name", "why"), sorted(SKIPPED_EVENTS.items()))
def test_irrelevant_events_are_skipped_without_any_api_call(
    emulator: Emulator, baseline: pytest.MonkeyPatch, name: str, why: str
) -> None:
    drift_account(emulator)
    result = json.loads(load(AUDIT)(event(name), context()))

    assert result["status"] == "skipped"
    assert why in result["reason"]
    assert result["drift"] == []
    assert emulator.ims.calls == []


def test_own_role_is_matched_without_regard_to_case(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    baseline.setenv("GUARD_SELF_ROLE", "SecPref-Guard-Role")
    result = json.loads(load(AUDIT)(event("set-by-guard.json"), context()))
    assert result["status"] == "skipped"
    assert emulator.ims.calls == []


def test_without_self_role_the_guards_own_event_costs_one_read_and_no_write(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    """Idempotence is the backstop against loops: the guard's own change leaves nothing to do."""
    baseline.delenv("GUARD_SELF_ROLE")
    emulator.ims.put(DEFAULT_ACCOUNT, MFAOperationForLogin="mandatory")
    result = json.loads(load(AUDIT)(event("set-by-guard.json"), context()))
    assert result["status"] == "compliant"
    assert [c.action for c in emulator.ims.calls] == ["GetSecurityPreference"]


def test_a_forged_event_can_only_cause_a_read(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    """The event claims a change that never happened; the live state is the truth."""
    emulator.ims.put(DEFAULT_ACCOUNT, MFAOperationForLogin="mandatory")
    forged = json.loads(event("set-by-ram-user.json"))
    forged["data"]["requestParameters"] = {"AllowUserToManageAccessKeys": "true"}
    forged["data"]["responseElements"] = {"SecurityPreference": {"anything": "goes"}}
    result = json.loads(load(AUDIT)(json.dumps(forged).encode(), context()))

    assert result["status"] == "compliant"
    assert sets(emulator) == []


def test_event_for_another_account_is_skipped_in_self_mode(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    other = json.loads(event("set-by-ram-user.json"))
    other["aliyunaccountid"] = "9999999999999999"
    other["data"]["userIdentity"]["accountId"] = "9999999999999999"
    result = json.loads(load(AUDIT)(json.dumps(other).encode(), context()))
    assert result["status"] == "skipped"
    assert "9999999999999999" in result["reason"]
    assert emulator.ims.calls == []


@pytest.mark.parametrize(
    ("payload", "names"),
    [
        (b"not json at all", "not JSON"),
        (b"[1, 2, 3]", "expected a JSON object, got list"),
        (b'{"id": "x", "type": "t", "specversion": "1.0"}', "data"),
        (b'{"id": "x", "type": "t", "data": "just text"}', "not JSON"),
        (b'{"id": "x", "type": "t", "data": [1]}', "data is list"),
        (b'{"id": "x", "type": "t", "data": {"eventName": 5}}', "data.eventName"),
        (b'{"hello": "world"}', "neither an EventBridge envelope"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "nested deeper"),
        (b'{"data": "' + b"x" * 300_000 + b'"}', "bytes, more than"),
        (b"", "got nothing"),
    ],
)
def test_malformed_audit_events_fail_loudly_naming_the_cause_and_call_nothing(
    emulator: Emulator, baseline: pytest.MonkeyPatch, payload: bytes, names: str
) -> None:
    with pytest.raises(handlers.HandlerError, match="malformed event") as raised:
        load(AUDIT)(payload, context())
    assert names in str(raised.value)
    assert emulator.ims.calls == []


def test_malformed_timer_payload_fails_loudly(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    with pytest.raises(handlers.HandlerError, match="timer payload: not JSON"):
        load(SCHEDULED)(b"{oops", context())
    assert emulator.ims.calls == []


def test_configuration_error_fails_every_invocation_with_the_same_message(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    baseline.setenv("BASELINE_ENABLE_SAVE_MFA_TICKET", "yes")
    messages = []
    for handler, name in ((SCHEDULED, "timer.json"), (AUDIT, "set-by-ram-user.json")) * 2:
        with pytest.raises(handlers.HandlerError) as raised:
            load(handler)(event(name), context())
        messages.append(str(raised.value))
    assert len(set(messages)) == 1
    assert "BASELINE_ENABLE_SAVE_MFA_TICKET" in messages[0]
    assert "true or false" in messages[0]
    assert emulator.ims.calls == []


def test_configuration_is_read_once_per_instance(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    load(SCHEDULED)(event("timer.json"), context())
    baseline.setenv("BASELINE_ENABLE_SAVE_MFA_TICKET", "not a boolean")
    # the warm instance keeps the configuration it validated at cold start
    result = json.loads(load(SCHEDULED)(event("timer.json"), context()))
    assert result["status"] == "compliant"


def test_context_credentials_win_over_the_environment(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    """python3.10: the function role's STS credentials are on the context."""
    emulator.add_key("STS.role-key", "role-secret-value", DEFAULT_ACCOUNT, "role-token-value")
    baseline.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "someone-else")
    baseline.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "someone-elses-secret")
    creds = LocalCredentials("STS.role-key", "role-secret-value", "role-token-value")
    result = json.loads(load(SCHEDULED)(event("timer.json"), context(credentials=creds)))
    assert result["status"] in ("compliant", "reverted")


def test_python312_context_without_credentials_uses_the_environment(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    """python3.12: no context.credentials; the runtime sets ALIBABA_CLOUD_* instead."""
    emulator.add_key("STS.env-key", "env-secret-value", DEFAULT_ACCOUNT, "env-token-value")
    baseline.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "STS.env-key")
    baseline.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret-value")
    baseline.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", "env-token-value")

    class Python312Context:
        request_id = "req-312"
        account_id = DEFAULT_ACCOUNT

    result = json.loads(load(SCHEDULED)(event("timer.json"), Python312Context()))
    assert result["status"] in ("compliant", "reverted")


def test_api_error_fails_the_invocation_with_code_and_request_id(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    emulator.ims.inject_fault("NoPermission", 403, action="GetSecurityPreference")
    with pytest.raises(handlers.HandlerError) as raised:
        load(SCHEDULED)(event("timer.json"), context())
    message = str(raised.value)
    assert "NoPermission" in message
    assert "HTTP 403" in message
    assert "request id" in message
    assert sets(emulator) == []


def test_every_sample_event_runs_through_its_handler(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    """Each file in events/ is a valid input of the handler it belongs to."""
    for path in sorted(EVENTS.glob("*.json")):
        by_file = {"timer.json": SCHEDULED, "worker-batch.json": HANDLERS["guard-worker"]}
        handler = by_file.get(path.name, AUDIT)
        handlers.reset_instance()
        result = json.loads(load(handler)(path.read_bytes(), context()))
        assert result["status"] in ("compliant", "reverted", "skipped"), path.name


# --- notifications from the handlers ------------------------------------------------------


@pytest.fixture
def webhook(baseline: pytest.MonkeyPatch) -> Iterator[Any]:
    import responses

    baseline.setenv("GUARD_WEBHOOK_URL", "https://hooks.example.com/secpref?token=hook-secret-123")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.POST, "https://hooks.example.com/secpref", json={"ok": True})
        yield rsps


def test_a_revert_is_announced_once_on_the_webhook(emulator: Emulator, webhook: Any) -> None:
    drift_account(emulator)
    result = json.loads(load(AUDIT)(event("set-by-ram-user.json"), context()))

    assert result["notifications"] == [
        {"channel": "webhook", "outcome": "sent", "detail": result["notifications"][0]["detail"]}
    ]
    (call,) = webhook.calls
    body = json.loads(call.request.body)
    assert body["status"] == "reverted"
    assert body["actor"]["name"] == "alice"
    assert {d["field"] for d in body["drift"]} >= {"AllowUserToManageAccessKeys"}


def test_compliant_and_skipped_runs_notify_nobody(emulator: Emulator, webhook: Any) -> None:
    emulator.ims.put(DEFAULT_ACCOUNT, MFAOperationForLogin="mandatory")
    load(SCHEDULED)(event("timer.json"), context())
    load(AUDIT)(event("unrelated-call.json"), context())
    assert len(webhook.calls) == 0


def test_a_failed_run_is_announced_before_the_invocation_fails(
    emulator: Emulator, webhook: Any
) -> None:
    emulator.ims.inject_fault("NoPermission", 403, action="GetSecurityPreference")
    with pytest.raises(handlers.HandlerError, match="NoPermission"):
        load(SCHEDULED)(event("timer.json"), context())
    (call,) = webhook.calls
    body = json.loads(call.request.body)
    assert body["status"] == "error"
    assert body["error"]["code"] == "NoPermission"


def test_a_channel_that_is_down_never_fails_the_enforcement(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    import responses

    baseline.setenv("GUARD_WEBHOOK_URL", "https://hooks.example.com/secpref")
    drift_account(emulator)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, "https://hooks.example.com/secpref", status=503)
        result = json.loads(load(SCHEDULED)(event("timer.json"), context()))
    assert result["status"] == "reverted"
    assert result["notifications"][0]["outcome"] == "failed"
    assert emulator.ims.state(DEFAULT_ACCOUNT)["AllowUserToManageAccessKeys"] is False


def test_an_excluded_own_account_is_never_touched_by_the_timer(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    baseline.setenv("GUARD_EXCLUDE_ACCOUNTS", DEFAULT_ACCOUNT)
    drift_account(emulator)
    result = json.loads(load(SCHEDULED)(event("timer.json"), context()))
    assert result["status"] == "skipped"
    assert "GUARD_EXCLUDE_ACCOUNTS" in result["reason"]
    assert emulator.ims.calls == []
    assert json.loads(load(AUDIT)(event("set-by-ram-user.json"), context()))["status"] == "skipped"


def test_a_role_named_like_the_guards_in_another_account_is_not_the_guard(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    """A role of the same name created in another account, assumed into this one."""
    drift_account(emulator)
    document = json.loads(event("set-by-guard.json"))
    identity = document["data"]["userIdentity"]
    identity["accountId"] = "5555555555555555"
    identity["arn"] = "acs:ram::5555555555555555:assumed-role/secpref-guard-role/x"
    result = json.loads(load(AUDIT)(json.dumps(document).encode(), context()))
    assert result["status"] == "reverted"


def test_a_record_without_service_name_is_read_not_skipped(
    emulator: Emulator, baseline: pytest.MonkeyPatch
) -> None:
    drift_account(emulator)
    record = json.loads(event("bare-record.json"))
    del record["serviceName"]
    result = json.loads(load(AUDIT)(json.dumps(record).encode(), context()))
    assert result["status"] == "reverted"
