"""Structured logs: every decision of an invocation is one JSON line on stderr, with the trigger,
the account, the fields with their actual and expected values, what was done, the API's
request ids, the duration and the invocation's request id, at a level users can filter on
(INFO compliant or skipped, WARNING reverted or drift, ERROR failures), and GUARD_LOG_LEVEL
decides what is written."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secpref_guard import handlers
from secpref_guard import run as run_module
from secpref_guard.emulator import DEFAULT_ACCOUNT, Emulator
from secpref_guard.local import LocalContext, LocalCredentials, LocalFunction, load_handler
from secpref_guard.logs import silence_sdk_loggers

ROOT = Path(__file__).resolve().parents[1]
Handler = Callable[[bytes, Any], str]
SCHEDULED: Handler = load_handler("scheduled.handler", ROOT / "functions")
AUDIT: Handler = load_handler("audit_event.handler", ROOT / "functions")
TIMER = ("schedule", SCHEDULED, "timer.json")
EVENT = ("event", AUDIT, "set-by-ram-user.json")
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}
DECISION_LEVELS = {
    "compliant": "INFO",
    "skipped": "INFO",
    "reverted": "WARNING",
    "drift": "WARNING",
    "error": "ERROR",
}


class Invocation:
    """One handler invocation: its result or error, and every line it wrote to stderr."""

    def __init__(self, lines: list[dict[str, Any]], result: dict[str, Any] | None, error: str):
        self.lines = lines
        self.result = result
        self.error = error

    @property
    def decisions(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if "status" in line]

    @property
    def decision(self) -> dict[str, Any]:
        (only,) = self.decisions
        return only


@pytest.fixture
def replies(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every reply the emulator sent: the request ids the logs must carry."""
    seen: list[dict[str, Any]] = []
    handle = emulator.handle

    def recording(*args: Any) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = handle(*args)
        seen.append(json.loads(body))
        return status, headers, body

    monkeypatch.setattr(emulator, "handle", recording)
    return seen


@pytest.fixture
def logged(
    emulator: Emulator, guard_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[..., Invocation]]:
    guard_env.setenv("BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS", "false")
    guard_env.setenv("BASELINE_MFA_OPERATION_FOR_LOGIN", "mandatory")
    guard_env.setenv("GUARD_SELF_ROLE", "secpref-guard-role")

    def invoke(
        trigger: tuple[str, Handler, str], level: str | None = "DEBUG", payload: bytes = b""
    ) -> Invocation:
        if level is None:
            guard_env.delenv("GUARD_LOG_LEVEL", raising=False)
        else:
            guard_env.setenv("GUARD_LOG_LEVEL", level)
        handlers.reset_instance()  # a new instance: configuration and logging set up anew
        handlers._logging_ready = False
        capsys.readouterr()
        _, handler, event_file = trigger
        context = LocalContext(
            request_id=f"fc-{trigger[0]}-{level}",
            function=LocalFunction("secpref-guard", "x.handler"),
            credentials=LocalCredentials("test-key-id", "test-key-secret"),
            account_id=DEFAULT_ACCOUNT,
        )
        result, error = None, ""
        try:
            result = json.loads(
                handler(payload or (ROOT / "events" / event_file).read_bytes(), context)
            )
        except handlers.HandlerError as exc:
            error = str(exc)
        stderr = capsys.readouterr().err
        lines = [json.loads(line) for line in stderr.splitlines()]  # every line is JSON
        for line in lines:
            assert line["request_id"] == context.request_id
            assert line["trigger"] == trigger[0]
            assert line["function"] == "secpref-guard"
            assert LEVELS[line["level"]] >= LEVELS.get((level or "INFO").upper(), LEVELS["INFO"])
        return Invocation(lines, result, error)

    yield invoke
    handlers.reset_instance()
    handlers._logging_ready = False


def drift(emulator: Emulator) -> None:
    emulator.ims.put(DEFAULT_ACCOUNT, AllowUserToManageAccessKeys=True, LoginSessionDuration=9)


def assert_decision(line: dict[str, Any], status: str) -> None:
    assert line["status"] == status
    assert line["level"] == DECISION_LEVELS[status]
    assert line["account"] == DEFAULT_ACCOUNT
    if status != "skipped":
        assert isinstance(line["duration_ms"], (int, float))
        assert line["duration_ms"] >= 0


@pytest.mark.parametrize("trigger", [TIMER, EVENT], ids=["timer", "event"])
def test_a_compliant_account_is_one_info_line(
    emulator: Emulator, logged: Callable[..., Invocation], replies: list[Any], trigger: Any
) -> None:
    emulator.ims.put(DEFAULT_ACCOUNT, MFAOperationForLogin="mandatory")
    run = logged(trigger)

    assert_decision(run.decision, "compliant")
    assert run.decision["drift"] == []
    assert run.decision["request_ids"] == [replies[0]["RequestId"]]
    assert run.decision["api_calls"] == 1


@pytest.mark.parametrize("trigger", [TIMER, EVENT], ids=["timer", "event"])
def test_a_revert_is_one_warning_line_with_each_field_actual_and_expected(
    emulator: Emulator, logged: Callable[..., Invocation], replies: list[Any], trigger: Any
) -> None:
    drift(emulator)
    run = logged(trigger)

    line = run.decision
    assert_decision(line, "reverted")
    assert {d["field"]: (d["actual"], d["expected"], d["action"]) for d in line["drift"]} == {
        "AllowUserToManageAccessKeys": (True, False, "revert"),
        "MFAOperationForLogin": ("independent", "mandatory", "revert"),
    }
    assert line["request_ids"] == [reply["RequestId"] for reply in replies]
    assert len(line["request_ids"]) == 3  # read, write, verification
    assert "reverted" in line["reason"]
    if trigger is EVENT:  # who made the change that was reverted
        assert line["actor"] == "alice"
        assert line["event_id"] == "4f1c2a9e-7b3d-4e1a-9c55-0d2b7e8f6a11"


def test_dry_run_drift_is_one_warning_line(
    emulator: Emulator, logged: Callable[..., Invocation], guard_env: pytest.MonkeyPatch
) -> None:
    guard_env.setenv("GUARD_MODE", "dry-run")
    drift(emulator)
    run = logged(TIMER)

    assert_decision(run.decision, "drift")
    assert {d["action"] for d in run.decision["drift"]} == {"dry-run"}
    assert run.decision["reason"] == "GUARD_MODE is dry-run"


def test_a_skipped_event_is_one_info_line_with_the_reason(
    emulator: Emulator, logged: Callable[..., Invocation]
) -> None:
    run = logged(("event", AUDIT, "set-by-guard.json"))

    assert_decision(run.decision, "skipped")
    assert "the guard's own role" in run.decision["reason"]
    assert run.decision["actor"]["name"] == "secpref-guard-role/secpref-guard"
    assert run.decision["event_id"] == "1d5a8c4b-0e9f-4b37-a2c6-8e1f3d7b9a44"
    assert emulator.ims.calls == []


@pytest.mark.parametrize("trigger", [TIMER, EVENT], ids=["timer", "event"])
def test_an_api_failure_is_one_error_line_with_code_and_both_request_ids(
    emulator: Emulator, logged: Callable[..., Invocation], replies: list[Any], trigger: Any
) -> None:
    drift(emulator)
    emulator.ims.inject_fault("NoPermission", 403, action="SetSecurityPreference")
    run = logged(trigger)

    line = run.decision
    assert_decision(line, "error")
    assert line["message"] == run.error  # the same words as the failed invocation
    assert line["api_message"] == "emulated NoPermission"
    assert (line["action"], line["code"], line["http_status"]) == (
        "SetSecurityPreference",
        "NoPermission",
        403,
    )
    assert line["api_request_id"] == replies[-1]["RequestId"]  # the API's, for its support
    assert line["request_id"].startswith("fc-")  # the invocation's, for Function Compute's
    assert line["attempts"] == 1


def test_retries_are_warning_lines_before_the_decision(
    emulator: Emulator,
    logged: Callable[..., Invocation],
    replies: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from secpref_guard.client import RetryPolicy

    monkeypatch.setattr(run_module, "ImsClient", _without_waits(monkeypatch, RetryPolicy))
    emulator.ims.put(DEFAULT_ACCOUNT, MFAOperationForLogin="mandatory")
    emulator.ims.inject_fault("Throttling.User", 400, action="GetSecurityPreference", times=2)
    run = logged(TIMER)

    retries = [line for line in run.lines if line["message"] == "retrying API call"]
    assert [(r["level"], r["attempt"], r["code"]) for r in retries] == [
        ("WARNING", 1, "Throttling.User"),
        ("WARNING", 2, "Throttling.User"),
    ]
    assert [r["api_request_id"] for r in retries] == [reply["RequestId"] for reply in replies[:2]]
    assert all(r["wait_seconds"] > 0 for r in retries)
    assert_decision(run.decision, "compliant")
    assert run.lines[-1] is run.decision


def _without_waits(monkeypatch: pytest.MonkeyPatch, policy: Any) -> Any:
    from dataclasses import replace

    from secpref_guard.ims import ImsClient

    no_wait = replace(policy(), sleep=lambda seconds: None)
    return lambda *args, **kwargs: ImsClient(*args, **kwargs, retry=no_wait)


def test_a_verification_failure_is_one_error_line_with_the_mismatches(
    emulator: Emulator, logged: Callable[..., Invocation], replies: list[Any]
) -> None:
    drift(emulator)
    emulator.ims.ignored_sets = 1
    run = logged(TIMER)

    line = run.decision
    assert_decision(line, "error")
    assert line["error_type"] == "VerificationError"
    assert {m["field"]: (m["sent"], m["read"]) for m in line["mismatches"]} == {
        "AllowUserToManageAccessKeys": (False, True),
        "MFAOperationForLogin": ("mandatory", "independent"),
    }
    assert line["api_request_id"] == replies[1]["RequestId"]  # the Set's


@pytest.mark.parametrize(
    ("variable", "value", "trigger"),
    [
        ("BASELINE_ENABLE_SAVE_MFA_TICKET", "yes", TIMER),
        ("GUARD_MODE", "on", EVENT),
        ("GUARD_LOG_LEVEL", "VERBOSE", TIMER),
    ],
)
def test_a_configuration_error_is_one_error_line_naming_the_variable(
    emulator: Emulator,
    logged: Callable[..., Invocation],
    guard_env: pytest.MonkeyPatch,
    variable: str,
    value: str,
    trigger: Any,
) -> None:
    guard_env.setenv(variable, value)
    run = logged(trigger, level=value if variable == "GUARD_LOG_LEVEL" else "DEBUG")

    line = run.decision
    assert_decision(line, "error")
    assert line["variable"] == variable
    assert run.error.startswith(f"configuration error: {variable}: ")
    assert repr(value) in run.error or value in run.error
    assert emulator.ims.calls == []


def test_a_malformed_event_is_one_error_line(
    emulator: Emulator, logged: Callable[..., Invocation]
) -> None:
    run = logged(EVENT, payload=b'{"id": "x", "type": "t", "data": {"eventName": 5}}')

    assert_decision(run.decision, "error")
    assert run.decision["error_type"] == "EventError"
    assert "data.eventName" in run.decision["message"]


# --- what GUARD_LOG_LEVEL lets through ---------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "compliant", "reverted", "failed"),
    [
        (None, 1, 1, 1),  # INFO by default
        ("DEBUG", 1, 1, 1),
        ("info", 1, 1, 1),
        ("WARNING", 0, 1, 1),
        ("ERROR", 0, 0, 1),
    ],
)
def test_guard_log_level_filters_the_decisions(
    emulator: Emulator,
    logged: Callable[..., Invocation],
    level: str | None,
    compliant: int,
    reverted: int,
    failed: int,
) -> None:
    emulator.ims.put(DEFAULT_ACCOUNT, MFAOperationForLogin="mandatory")
    assert len(logged(TIMER, level).lines) == compliant

    drift(emulator)
    assert len(logged(EVENT, level).decisions) == reverted

    emulator.ims.inject_fault("NoPermission", 403)
    assert len(logged(TIMER, level).decisions) == failed


# --- one record, one line (issue 14, finding 5) --------------------------------------------------

LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def _formatted(message: str, **fields: Any) -> str:
    from secpref_guard.logs import JsonFormatter

    record = logging.LogRecord("secpref_guard", logging.INFO, __file__, 1, message, None, None)
    record.fields = fields
    try:
        raise ValueError(message)
    except ValueError:
        record.exc_info = sys.exc_info()
    return JsonFormatter().format(record)


@pytest.mark.parametrize("separator", list(LINE_BREAKS))
def test_every_line_separator_in_a_record_is_escaped(separator):
    text = f"eventName{separator}SetSecurityPreference"
    line = _formatted(text, userName=text, nested={"k": [text]})
    assert line.splitlines() == [line]
    assert separator not in line
    document = json.loads(line)
    assert document["message"] == text
    assert document["userName"] == text
    assert document["nested"] == {"k": [text]}
    assert document["error"] == text


def test_a_record_from_an_event_with_unicode_separators_stays_one_line():
    """The finding: U+2028, U+2029 and U+0085 from an event reached log lines raw."""
    hostile = 'alice\u2028{"level": "INFO", "message": "forged"}\u2029\x85end'
    line = _formatted("actor", actor=hostile, plain="ünïcödé stays as it is")
    assert len(line.splitlines()) == 1
    assert json.loads(line)["actor"] == hostile
    assert "ünïcödé" in line  # only line separators are escaped, not every non-ASCII letter


def test_a_secret_containing_a_separator_is_still_masked():
    from secpref_guard.logs import forget_secrets, register_secret

    secret = "s3cret\u2028value"
    register_secret(secret, scope="test-line-separators")
    try:
        line = _formatted(f"token {secret}")
    finally:
        forget_secrets("test-line-separators")
    assert "s3cret" not in line
    assert line.splitlines() == [line]


@given(st.text(alphabet=st.sampled_from([*LINE_BREAKS, *'ab é"\\']), max_size=40))
def test_any_text_is_one_line_and_reads_back(text):
    line = _formatted(text, field=text)
    assert line.splitlines() == [line]
    assert json.loads(line)["field"] == text


def test_an_event_with_line_separators_in_its_fields_logs_one_json_object_per_line(
    emulator: Emulator, logged: Callable[..., Invocation]
) -> None:
    """End to end: the separators reach the log (the actor's name is logged) and every line
    still parses as one JSON object (the ``logged`` fixture parses each line)."""
    drift(emulator)
    document = json.loads((ROOT / "events" / "set-by-ram-user.json").read_bytes())
    hostile = 'alice\u2028{"level": "INFO", "status": "compliant"}\u2029x\x85y'
    identity = document["data"]["userIdentity"]
    for key in ("userName", "arn", "principalId"):
        if key in identity:
            identity[key] = f"{identity[key]}{hostile}"
    payload = json.dumps(document, ensure_ascii=False).encode()
    assert "\u2028".encode() in payload

    invocation = logged(EVENT, payload=payload)

    text = json.dumps(invocation.lines, ensure_ascii=False)
    assert "\u2028" in text  # the name was logged, escaped on the wire, intact when read
    assert invocation.decisions


def test_sdk_loggers_are_silenced_again_after_a_reset_and_left_alone_when_silent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every client made calls silence_sdk_loggers: a logger someone turned up again (a new SDK
    logger, or DEBUG with a handler) is silenced, and a silent one costs no setLevel (which
    clears the level cache of every logger)."""
    import io

    sdk_logger = logging.getLogger("aliyunsdkcore.test_reset")
    monkeypatch.setattr(sdk_logger, "handlers", [logging.StreamHandler(io.StringIO())])
    monkeypatch.setattr(sdk_logger, "level", logging.DEBUG)
    monkeypatch.setattr(sdk_logger, "propagate", True)
    silence_sdk_loggers()
    assert (sdk_logger.level, sdk_logger.handlers, sdk_logger.propagate) == (
        logging.CRITICAL + 1,
        [],
        False,
    )
    levels_set: list[str] = []
    set_level = logging.Logger.setLevel

    def recorded(self: logging.Logger, level: int | str) -> None:
        levels_set.append(self.name)
        set_level(self, level)

    monkeypatch.setattr(logging.Logger, "setLevel", recorded)
    silence_sdk_loggers()
    assert levels_set == []
