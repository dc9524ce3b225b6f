"""Notifications: what each channel receives, the policy around it, and secrets kept out of logs.

Every HTTP call goes through `responses`; the clock is fixed, so DingTalk's and EventBridge's
signatures are recomputed here, independently of the module, from what was actually sent.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import io
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from secpref_guard import __version__, logs
from secpref_guard import notify as notify_package
from secpref_guard.client import ApiError
from secpref_guard.config import Settings
from secpref_guard.credentials import Credentials
from secpref_guard.errors import GuardError
from secpref_guard.notify import ChannelResult, DedupWindow, Notifier, should_notify
from secpref_guard.notify.eventbridge import EventBus, eventbridge_signature
from secpref_guard.notify.policy import dedup_key
from secpref_guard.notify.render import (
    cloudevent_subject,
    render_markdown,
    render_title,
    render_webhook_body,
    summarize,
)
from secpref_guard.report import (
    AccountReport,
    Actor,
    Dispatch,
    Drift,
    RunReport,
    Status,
    Trigger,
)

NOW = 1_795_579_200.0  # 2026-11-25T04:00:00Z
ACCOUNT = "1234567890123456"
ACCESS_TOKEN = "d0c5a1b2e3f4a5b6c7d8e9f0aabbccddeeff00112233445566778899aabbccdd"
DINGTALK_HOST_PATH = "https://oapi.dingtalk.com/robot/send"
DINGTALK_URL = f"{DINGTALK_HOST_PATH}?access_token={ACCESS_TOKEN}"
DINGTALK_SECRET = "SECf3a9c1d2e4b5a6978877665544332211ffeeddccbbaa99887766554433221100"
WEBHOOK_TOKEN = "wh-secret-token-4242"
WEBHOOK_URL = f"https://hooks.example.com/secpref?token={WEBHOOK_TOKEN}"
BUS = "guard-alerts"
EVENTBRIDGE_URL = f"https://{ACCOUNT}.eventbridge.cn-hangzhou.aliyuncs.com/openapi/putEvents"
KEY_ID = "LTAI-test-key-id"
KEY_SECRET = "test-key-secret-for-eventbridge"
STS_TOKEN = "CAIS-sts-token-for-the-function-role"

# --- run reports, as the run builds them ----------------------------------------------------

SESSION = Drift("LoginSessionDuration", 24, 4, "revert", source="BASELINE_LOGIN_SESSION_DURATION")
MASKS = Drift(
    "LoginNetworkMasks",
    frozenset({"192.168.0.0/16"}),
    frozenset({"10.0.0.0/8", "192.168.0.0/16"}),
    "report-only",
    source="BASELINE_LOGIN_NETWORK_MASKS",
    note="listed in GUARD_REPORT_ONLY_FIELDS",
)
EVENT = Trigger("event", id="evt-0f3c2a9e", time="2026-11-25T04:00:02Z")
ALICE = Actor(
    "ram-user", "alice", account=ACCOUNT, source_ip="203.0.113.7", time="2026-11-25T03:59:58Z"
)
REVERTED_REASON = (
    "reverted LoginSessionDuration; not written: LoginNetworkMasks (report-only fields)"
)


def ended(status: Status, drift: list[Drift]) -> list[Drift]:
    """The drift entries as the run leaves them: a reverted account's written fields verified
    at the baseline, every field of an account written nothing keeps its live value, and a
    failed account's values are unknown."""
    if status == "reverted":
        return [d.with_after(d.expected if d.action == "revert" else d.actual) for d in drift]
    if status in ("drift", "contested"):
        return [d.with_after(d.actual) for d in drift]
    return list(drift)


def account_report(
    account: str,
    status: Status,
    drift: list[Drift] | None = None,
    *,
    reason: str = "",
    mode: str = "enforce",
    error: GuardError | ApiError | None = None,
) -> AccountReport:
    settings = tuple(dict.fromkeys(d.setting for d in drift or [])) or ("security-preference",)
    return AccountReport(
        account,
        status,
        mode,
        drift=ended(status, drift if drift is not None else []),
        reason=reason,
        error=error,  # type: ignore[arg-type]  # ApiError becomes a GuardError with issue 11
        settings=settings,
    )


def report(
    status: Status = "reverted",
    *,
    drift: list[Drift] | None = None,
    reason: str = REVERTED_REASON,
    mode: str = "enforce",
    trigger: Trigger = EVENT,
    actor: Actor | None = ALICE,
    error: GuardError | ApiError | None = None,
    run_id: str = "evt-run-1",
) -> RunReport:
    """A run of one account (the audit event's, by default), its drift as the run ended."""
    one = account_report(
        ACCOUNT,
        status,
        [SESSION, MASKS] if drift is None else drift,
        reason=reason,
        mode=mode,
        error=error,
    )
    return RunReport(run_id, mode, trigger, targets="event", accounts=[one], actor=actor)


class NotVerified(GuardError):
    """The engine's verification failure, as the guard's errors describe themselves."""

    code = "VerificationError"


REVERTED = report()


@dataclass
class FakeClock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class CapturedLogs:
    stream: io.StringIO = field(default_factory=io.StringIO)
    records: list[logging.LogRecord] = field(default_factory=list)

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    @property
    def everything(self) -> str:
        """The formatted lines and the raw records (before the formatter's redaction)."""
        raw = [
            record.getMessage() + json.dumps(getattr(record, "fields", {}), default=str)
            for record in self.records
        ]
        return self.stream.getvalue() + "\n".join(raw)


@pytest.fixture
def captured() -> Iterator[CapturedLogs]:
    logger = logs.get_logger()
    capture = CapturedLogs()

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            capture.records.append(record)

    formatted = logging.StreamHandler(capture.stream)
    formatted.setFormatter(logs.JsonFormatter())
    keep = Keep()
    level = logger.level
    logger.addHandler(formatted)
    logger.addHandler(keep)
    logger.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        logger.removeHandler(formatted)
        logger.removeHandler(keep)
        logger.setLevel(level)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def credentials() -> Credentials:
    return Credentials(KEY_ID, KEY_SECRET, STS_TOKEN, source="function context")


def all_channels() -> Settings:
    return Settings(
        dingtalk_webhook=DINGTALK_URL,
        dingtalk_secret=DINGTALK_SECRET,
        webhook_url=WEBHOOK_URL,
        eventbridge_bus=BUS,
    )


@pytest.fixture
def notifier(clock: FakeClock, credentials: Credentials) -> Notifier:
    return Notifier.from_settings(
        all_channels(),
        credentials=credentials,
        account_id=ACCOUNT,
        region="cn-hangzhou",
        clock=clock,
    )


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def all_up(http: responses.RequestsMock) -> None:
    http.post(DINGTALK_HOST_PATH, json={"errcode": 0, "errmsg": "ok"})
    http.post("https://hooks.example.com/secpref", status=204)
    http.post(
        EVENTBRIDGE_URL,
        json={
            "RequestId": "5E9AB1DF333245F1D800TEST",
            "FailedEntryCount": 0,
            "EntryList": [{"EventId": "99418e3a-2025-41c6-a914-b8d6568eTEST", "TraceId": "t-1"}],
        },
    )


def calls_to(http: responses.RequestsMock, prefix: str) -> list[Any]:
    return [call for call in http.calls if call.request.url.startswith(prefix)]


def outcomes(results: list[ChannelResult]) -> dict[str, str]:
    return {r.channel: r.outcome for r in results}


# --- rendering ------------------------------------------------------------------------------


def test_markdown_shows_before_baseline_after_who_and_what_the_guard_did() -> None:
    text = render_markdown(REVERTED)

    assert text.startswith("#### secpref-guard: drift reverted in account 1234567890123456\n")
    assert "**Account**: 1234567890123456 (mode enforce)" in text
    assert "**Trigger**: audit event evt-0f3c2a9e at 2026-11-25T04:00:02Z" in text
    assert (
        "**Changed by**: ram-user alice of account 1234567890123456 from 203.0.113.7 "
        "at 2026-11-25T03:59:58Z" in text
    )
    assert "**Fields** (before → baseline → after)" in text
    # reverted: after is the baseline, verified by the engine's fresh read; every field line
    # names its setting
    assert (
        "- security-preference **LoginSessionDuration**: 24 → 4 → 4 (reverted; baseline from "
        "BASELINE" in text
    )
    # report-only: after is what the account still has
    assert (
        "- security-preference **LoginNetworkMasks**: 192.168.0.0/16 → 10.0.0.0/8;192.168.0.0/16 "
        "→ 192.168.0.0/16 (report-only: listed in GUARD\\_REPORT\\_ONLY\\_FIELDS" in text
    )
    assert "**What the guard did**: Wrote the baseline back with SetSecurityPreference" in text
    assert "Reverted LoginSessionDuration; not written: LoginNetworkMasks" in text
    assert "|" not in text  # DingTalk's markdown has no tables: one list item per field


def test_a_reverted_field_without_a_verified_value_shows_the_baseline_after() -> None:
    unverified = AccountReport(ACCOUNT, "reverted", "enforce", drift=[SESSION])
    text = render_markdown(RunReport("r", "enforce", EVENT, accounts=[unverified]))

    assert "**LoginSessionDuration**: 24 → 4 → 4 (reverted;" in text


def test_markdown_of_a_dry_run_keeps_the_live_value_after() -> None:
    dry = report(
        "drift",
        mode="dry-run",
        reason="GUARD_MODE is dry-run",
        drift=[Drift("EnableSaveMFATicket", True, False, "dry-run", source="preset cis-2.0")],
        trigger=Trigger("schedule", id="guard-timer", time="2026-11-25T04:00:00Z"),
        actor=None,
    )
    text = render_markdown(dry)

    assert "drift found, nothing written" in text
    assert (
        "- security-preference **EnableSaveMFATicket**: true → false → true (not written: dry "
        "run;" in text
    )
    assert "**Trigger**: scheduled check guard-timer at 2026-11-25T04:00:00Z" in text
    assert "**Changed by**: unknown (found by the scheduled check; see ActionTrail)" in text
    assert "Reported the drift and wrote nothing. GUARD\\_MODE is dry-run." in text


def test_markdown_of_a_contested_account_says_nothing_was_written() -> None:
    contested = report("contested", reason="revert budget of 3 in 60 minutes is spent")
    text = render_markdown(contested)

    assert "**LoginSessionDuration**: 24 → 4 → 24 (not written: revert budget spent;" in text
    assert "revert budget (GUARD\\_MAX\\_REVERTS within GUARD\\_REVERT\\_WINDOW\\_MINUTES)" in text


def test_markdown_of_an_error_shows_the_code_and_what_a_fresh_read_showed() -> None:
    message = (
        "SetSecurityPreference was accepted but a fresh GetSecurityPreference still differs in "
        "LoginSessionDuration (request id REQ-1)"
    )
    failed = report(
        "error",
        reason=message,
        # the fresh read after the write still showed 24; the masks were not read back
        drift=[SESSION.with_after(24), MASKS],
        error=NotVerified(message),
    )
    text = render_markdown(failed)

    assert text.startswith("#### secpref-guard: guard error in account")
    assert "**LoginSessionDuration**: 24 → 4 → 24 (not written;" in text
    assert "**LoginNetworkMasks**: 192.168.0.0/16 → 10.0.0.0/8;192.168.0.0/16 → unknown" in text
    assert f"**What the guard did**: Failed: VerificationError: {message}." in text
    assert "**Changed by**" in text  # the audit event's actor
    assert "**Failed accounts**" not in text  # a run of one says it once, in what it did


def test_text_from_the_event_cannot_format_the_message_or_inject_a_link() -> None:
    hostile = report(
        actor=Actor("ram-user", "[click](https://evil.example)\n# big", source_ip="203.0.113.7")
    )
    text = render_markdown(hostile)

    assert "[click](" not in text
    assert "\\[click\\](https://evil.example) \\# big" in text
    assert "\n# big" not in text


def test_webhook_body_is_the_report_plus_a_summary_and_the_guard_version() -> None:
    body = render_webhook_body(REVERTED)

    as_json = json.loads(json.dumps(REVERTED.as_dict()))
    assert {k: v for k, v in body.items() if k not in ("summary", "guard")} == as_json
    assert [d["setting"] for d in body["drift"]] == ["security-preference"] * 2
    assert body["guard"] == {"name": "secpref-guard", "version": __version__}
    assert body["summary"] == (
        "secpref-guard reverted LoginSessionDuration in account 1234567890123456; not written: "
        "LoginNetworkMasks; changed by ram-user alice of account 1234567890123456 from "
        "203.0.113.7 at 2026-11-25T03:59:58Z"
    )


def test_summaries_of_every_notified_status() -> None:
    assert summarize(report("drift", actor=None)) == (
        "secpref-guard found drift in account 1234567890123456: LoginSessionDuration, "
        "LoginNetworkMasks; nothing written"
    )
    assert summarize(report("contested", actor=None)).startswith(
        "secpref-guard stopped reverting account 1234567890123456: the revert budget is spent"
    )
    api = ApiError("GetSecurityPreference", "NoPermission", "denied", 403, "REQ-7")
    assert summarize(report("error", drift=[], reason=str(api), error=api)) == (
        "secpref-guard failed on account 1234567890123456: GetSecurityPreference failed: "
        "NoPermission: denied (HTTP 403, request id REQ-7)"
    )
    bare = GuardError("denied")
    bare.code = "NoPermission"
    assert summarize(report("error", drift=[], reason="denied", error=bare)) == (
        "secpref-guard failed on account 1234567890123456: NoPermission: denied"
    )


def test_every_field_line_names_its_setting_and_the_write_it_took() -> None:
    length = Drift(
        "MinimumPasswordLength",
        8,
        14,
        "revert",
        source="BASELINE_PASSWORD_MINIMUM_LENGTH",
        setting="password-policy",
        rule="at least 14",
    )
    text = render_markdown(report(drift=[SESSION, length], reason="reverted both"))

    assert "- security-preference **LoginSessionDuration**: 24 → 4 → 4 (reverted;" in text
    assert "- password-policy **MinimumPasswordLength**: 8 → 14 → 14 (reverted;" in text
    assert (
        "**What the guard did**: Wrote the baseline back with SetSecurityPreference and "
        "SetPasswordPolicy and verified it with a fresh read." in text
    )


# --- each channel's request -------------------------------------------------------------------


def test_dingtalk_gets_a_signed_markdown_message(
    notifier: Notifier, http: responses.RequestsMock
) -> None:
    all_up(http)

    results = notifier.notify(REVERTED)

    assert outcomes(results)["dingtalk"] == "sent"
    (call,) = calls_to(http, DINGTALK_HOST_PATH)
    query = parse_qs(urlsplit(call.request.url).query)
    assert query["access_token"] == [ACCESS_TOKEN]
    timestamp = str(int(NOW * 1000))
    assert query["timestamp"] == [timestamp]
    # DingTalk's scheme, recomputed: HMAC-SHA256 keyed with the secret over "timestamp\nsecret",
    # base64, URL-encoded in the query (parse_qs decodes it)
    expected = base64.b64encode(
        hmac.new(
            DINGTALK_SECRET.encode(), f"{timestamp}\n{DINGTALK_SECRET}".encode(), hashlib.sha256
        ).digest()
    ).decode()
    assert query["sign"] == [expected]
    assert call.request.url.endswith("&sign=" + requests.utils.quote(expected, safe=""))
    assert call.request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(call.request.body) == {
        "msgtype": "markdown",
        "markdown": {"title": render_title(REVERTED), "text": render_markdown(REVERTED)},
    }
    assert call.request.req_kwargs["timeout"] == 3.0


def test_dingtalk_without_a_secret_is_not_signed(clock: FakeClock) -> None:
    notifier = Notifier.from_settings(Settings(dingtalk_webhook=DINGTALK_URL), clock=clock)
    with responses.RequestsMock() as http:
        http.post(DINGTALK_HOST_PATH, json={"errcode": 0, "errmsg": "ok"})
        assert outcomes(notifier.notify(REVERTED)) == {"dingtalk": "sent"}
        assert http.calls[0].request.url == DINGTALK_URL


def test_dingtalk_errcode_is_a_failure(
    notifier: Notifier, http: responses.RequestsMock, captured: CapturedLogs
) -> None:
    all_up(http)
    http.replace(
        responses.POST, DINGTALK_HOST_PATH, json={"errcode": 310000, "errmsg": "sign not match"}
    )

    results = notifier.notify(REVERTED)

    dingtalk = next(r for r in results if r.channel == "dingtalk")
    assert dingtalk.outcome == "failed"
    assert dingtalk.detail == "DingTalk errcode 310000: sign not match"
    failures = [line for line in captured.lines if line["message"] == "notification failed"]
    assert failures == [
        {
            **failures[0],
            "channel": "dingtalk",
            "status": "reverted",
            "account": ACCOUNT,
            "destination": "https://oapi.dingtalk.com/...",
            "error": "DingTalk errcode 310000: sign not match",
        }
    ]


def test_webhook_gets_the_report_as_json(notifier: Notifier, http: responses.RequestsMock) -> None:
    all_up(http)

    assert outcomes(notifier.notify(REVERTED))["webhook"] == "sent"

    (call,) = calls_to(http, "https://hooks.example.com/")
    assert call.request.url == WEBHOOK_URL
    assert call.request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert call.request.headers["User-Agent"] == f"secpref-guard/{__version__}"
    assert json.loads(call.request.body) == render_webhook_body(REVERTED)
    assert call.request.req_kwargs["timeout"] == 3.0


def test_eventbridge_gets_one_signed_cloudevent(
    notifier: Notifier, http: responses.RequestsMock
) -> None:
    all_up(http)

    results = notifier.notify(REVERTED)

    eventbridge = next(r for r in results if r.channel == "eventbridge")
    assert eventbridge.outcome == "sent"
    assert eventbridge.detail == (
        "request id 5E9AB1DF333245F1D800TEST, event id 99418e3a-2025-41c6-a914-b8d6568eTEST"
    )
    (call,) = calls_to(http, EVENTBRIDGE_URL)
    sent = call.request
    headers = {k.lower(): v for k, v in sent.headers.items()}
    assert headers["content-type"] == "application/cloudevents-batch+json; charset=utf-8"
    assert headers["date"] == formatdate(NOW, usegmt=True)
    assert headers["x-eventbridge-version"] == "2015-06-06"  # what the official SDKs send
    assert "content-md5" not in headers  # nor do they send this: its line is signed empty
    assert headers["x-acs-security-token"] == STS_TOKEN
    assert headers["x-acs-accesskey-id"] == KEY_ID
    # the official SDKs' signature, recomputed from what was sent
    canonical = "".join(f"{k}:{headers[k]}\n" for k in sorted(headers) if k.startswith("x-acs"))
    string_to_sign = (
        f"POST\n\n{headers['content-type']}\n{headers['date']}\n{canonical}/openapi/putEvents"
    )
    signature = base64.b64encode(
        hmac.new(KEY_SECRET.encode(), string_to_sign.encode(), hashlib.sha1).digest()
    ).decode()
    assert headers["authorization"] == f"acs:{KEY_ID}:{signature}"
    assert "x-acs-security-token:" + STS_TOKEN in canonical  # the token is signed too

    (event,) = json.loads(sent.body)
    assert event == {
        "specversion": "1.0",
        "id": event["id"],
        "source": "secpref-guard",
        "type": "secpref-guard:Report:reverted",
        "subject": f"{ACCOUNT}/SecurityPreference",
        "time": "2026-11-25T04:00:00.000Z",
        "datacontenttype": "application/json",
        "data": render_webhook_body(REVERTED),
        "aliyuneventbusname": BUS,
    }
    assert sent.req_kwargs["timeout"] == 3.0


def test_eventbridge_signature_matches_the_official_util_test_vector() -> None:
    # alibabacloud_eventbridge_util's own unit test: secret "secret" over "GET\n\n\n\n"
    assert eventbridge_signature("GET\n\n\n\n", "secret") == "Mzu+31oD5IDdv3WFBNIi4Y7JZto="


def test_the_signer_stays_importable_from_the_package_and_signs_as_before() -> None:
    headers = {
        "Content-Type": "application/cloudevents-batch+json; charset=utf-8",
        "Date": "Wed, 25 Nov 2026 04:00:00 GMT",
        "x-acs-signature-nonce": "n-1",
        "X-Acs-Signature-Method": "HMAC-SHA1",
        "x-eventbridge-version": "2015-06-06",  # not x-acs-*: not signed
        "accept": "application/json",
    }
    # what notify.py signed before it became a package, for the same headers
    string_to_sign = notify_package.eventbridge_string_to_sign(
        "post", "/openapi/putEvents", headers
    )
    assert string_to_sign == (
        "POST\n\napplication/cloudevents-batch+json; charset=utf-8\nWed, 25 Nov 2026 04:00:00 "
        "GMT\nx-acs-signature-method:HMAC-SHA1\nx-acs-signature-nonce:n-1\n/openapi/putEvents"
    )
    assert (
        notify_package.eventbridge_signature(string_to_sign, "secret")
        == "mlnYYpTh1G1OFu2QvkvJxZ6YD+E="
    )


def test_eventbridge_bus_given_as_an_arn_names_its_own_account_and_region(
    clock: FakeClock, credentials: Credentials
) -> None:
    arn = "acs:eventbridge:cn-shanghai:5555666677778888:eventbus/alerts"
    assert EventBus.parse(arn) == EventBus("alerts", "5555666677778888", "cn-shanghai")
    notifier = Notifier.from_settings(
        Settings(eventbridge_bus=arn), credentials=credentials, clock=clock
    )
    url = "https://5555666677778888.eventbridge.cn-shanghai.aliyuncs.com/openapi/putEvents"
    with responses.RequestsMock() as http:
        http.post(url, json={"RequestId": "R", "FailedEntryCount": 0, "EntryList": []})
        assert outcomes(notifier.notify(REVERTED)) == {"eventbridge": "sent"}
        assert json.loads(http.calls[0].request.body)[0]["aliyuneventbusname"] == "alerts"


def test_eventbridge_rejected_entry_is_a_failure(
    notifier: Notifier, http: responses.RequestsMock
) -> None:
    all_up(http)
    http.replace(
        responses.POST,
        EVENTBRIDGE_URL,
        json={
            "RequestId": "R-2",
            "FailedEntryCount": 1,
            "EntryList": [
                {"EventId": "e", "ErrorCode": "EventBusNotExist", "ErrorMessage": "no bus"}
            ],
        },
    )

    result = next(r for r in notifier.notify(REVERTED) if r.channel == "eventbridge")

    assert result == ChannelResult(
        "eventbridge",
        "failed",
        "PutEvents rejected the event: EventBusNotExist: no bus (request id R-2)",
    )


def test_eventbridge_error_answer_names_the_code(
    notifier: Notifier, http: responses.RequestsMock
) -> None:
    all_up(http)
    http.replace(
        responses.POST,
        EVENTBRIDGE_URL,
        status=403,
        json={
            "code": "AccessDenied",
            "message": "no permission for eventbridge:PutEvents",
            "requestId": "R-3",
        },
    )

    result = next(r for r in notifier.notify(REVERTED) if r.channel == "eventbridge")

    assert result.outcome == "failed"
    assert result.detail == (
        "PutEvents failed: HTTP 403 AccessDenied: no permission for eventbridge:PutEvents "
        "(request id R-3)"
    )


def test_eventbridge_bus_without_account_and_region_fails_without_a_call(
    clock: FakeClock, credentials: Credentials
) -> None:
    notifier = Notifier.from_settings(
        Settings(eventbridge_bus=BUS), credentials=credentials, clock=clock
    )
    with responses.RequestsMock() as http:
        (result,) = notifier.notify(REVERTED)
        assert not http.calls
    assert result.outcome == "failed"
    assert result.detail.startswith("GUARD_EVENTBRIDGE_BUS: the bus's account and region")


def test_eventbridge_bad_bus_name_and_missing_credentials_fail_cleanly(clock: FakeClock) -> None:
    bad = Notifier.from_settings(Settings(eventbridge_bus="no such/bus"), clock=clock)
    (result,) = bad.notify(REVERTED)
    assert result.outcome == "failed"
    assert "neither a bus name" in result.detail

    unsigned = Notifier.from_settings(
        Settings(eventbridge_bus=BUS), account_id=ACCOUNT, region="cn-hangzhou", clock=clock
    )
    (result,) = unsigned.notify(REVERTED)
    assert result.outcome == "failed"
    assert result.detail.startswith("no credentials")


# --- policy ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["compliant", "skipped"])
def test_nothing_is_sent_for_compliant_or_skipped(
    status: str, notifier: Notifier, http: responses.RequestsMock
) -> None:
    all_up(http)

    assert notifier.notify(report(status=status, drift=[], reason="nothing to do")) == []
    assert not http.calls


def test_every_notified_status_is_sent(notifier: Notifier, http: responses.RequestsMock) -> None:
    all_up(http)

    for status in ("reverted", "drift", "contested", "error"):
        results = notifier.notify(report(status=status))
        assert [r.outcome for r in results] == ["sent", "sent", "sent"], status


def test_a_burst_of_identical_reports_is_sent_once(
    notifier: Notifier, http: responses.RequestsMock, clock: FakeClock
) -> None:
    all_up(http)

    first = notifier.notify(REVERTED)
    burst = []
    for n in range(5):
        clock.advance(30)
        burst.append(notifier.notify(report(run_id=f"evt-run-{n + 2}")))  # a run per event

    assert [r.outcome for r in first] == ["sent", "sent", "sent"]
    assert all(r.outcome == "deduplicated" for results in burst for r in results)
    assert len(http.calls) == 3


def test_a_different_drift_is_sent_again(notifier: Notifier, http: responses.RequestsMock) -> None:
    all_up(http)
    notifier.notify(REVERTED)

    other = report(drift=[Drift("EnableSaveMFATicket", True, False, "revert")])
    new_value = report(drift=[replace(SESSION, actual=12), MASKS])  # the same field, changed

    assert [r.outcome for r in notifier.notify(other)] == ["sent", "sent", "sent"]
    assert [r.outcome for r in notifier.notify(new_value)] == ["sent", "sent", "sent"]
    assert [r.outcome for r in notifier.notify(report(status="contested"))] == ["sent"] * 3
    assert len(http.calls) == 12  # the first report and three different ones, 3 channels each


def test_the_same_report_is_sent_again_after_the_window(
    notifier: Notifier, http: responses.RequestsMock, clock: FakeClock
) -> None:
    all_up(http)
    notifier.notify(REVERTED)

    clock.advance(599)
    assert {r.outcome for r in notifier.notify(REVERTED)} == {"deduplicated"}
    clock.advance(1)
    assert {r.outcome for r in notifier.notify(REVERTED)} == {"sent"}
    assert len(http.calls) == 6


def test_the_window_is_configurable_and_can_outlive_the_notifier(
    clock: FakeClock, http: responses.RequestsMock
) -> None:
    all_up(http)
    window = DedupWindow(seconds=60)
    for _ in range(2):  # a new notifier per invocation, one window per instance
        Notifier.from_settings(
            Settings(webhook_url=WEBHOOK_URL), clock=clock, window=window
        ).notify(REVERTED)
    assert len(http.calls) == 1
    clock.advance(60)
    Notifier.from_settings(Settings(webhook_url=WEBHOOK_URL), clock=clock, window=window).notify(
        REVERTED
    )
    assert len(http.calls) == 2


def test_a_channel_that_is_down_fails_alone_and_nothing_raises(
    notifier: Notifier, http: responses.RequestsMock
) -> None:
    all_up(http)
    http.replace(responses.POST, DINGTALK_HOST_PATH, status=500, body="oops")
    http.replace(
        responses.POST,
        "https://hooks.example.com/secpref",
        body=requests.ConnectionError("Connection refused"),
    )

    results = notifier.notify(REVERTED)

    assert [(r.channel, r.outcome) for r in results] == [
        ("dingtalk", "failed"),
        ("webhook", "failed"),
        ("eventbridge", "sent"),
    ]
    assert results[0].detail == "HTTP 500 Internal Server Error"
    assert results[1].detail == "ConnectionError: Connection refused"


def test_a_timeout_is_a_failure(notifier: Notifier, http: responses.RequestsMock) -> None:
    all_up(http)
    http.replace(responses.POST, EVENTBRIDGE_URL, body=requests.ReadTimeout("read timed out"))

    results = notifier.notify(REVERTED)

    assert results[2] == ChannelResult("eventbridge", "failed", "timed out")


def test_a_failed_channel_is_tried_again_while_the_others_are_deduplicated(
    notifier: Notifier, http: responses.RequestsMock
) -> None:
    all_up(http)
    http.replace(responses.POST, "https://hooks.example.com/secpref", status=503)
    assert outcomes(notifier.notify(REVERTED))["webhook"] == "failed"

    http.replace(responses.POST, "https://hooks.example.com/secpref", status=200)
    assert outcomes(notifier.notify(REVERTED)) == {
        "dingtalk": "deduplicated",
        "webhook": "sent",
        "eventbridge": "deduplicated",
    }


def test_a_channel_that_raises_anything_is_reported_failed(
    notifier: Notifier, http: responses.RequestsMock
) -> None:
    all_up(http)
    http.replace(responses.POST, DINGTALK_HOST_PATH, body=RuntimeError("unexpected"))

    results = notifier.notify(REVERTED)

    assert results[0] == ChannelResult("dingtalk", "failed", "RuntimeError: unexpected")
    assert [r.outcome for r in results[1:]] == ["sent", "sent"]


def test_a_report_the_policy_cannot_read_fails_every_channel_and_never_raises(
    notifier: Notifier, http: responses.RequestsMock, captured: CapturedLogs
) -> None:
    all_up(http)
    unreadable = report("error", drift=[], error=ValueError("not a GuardError"))  # type: ignore[arg-type]

    results = notifier.notify(unreadable)

    assert [(r.channel, r.outcome) for r in results] == [
        ("dingtalk", "failed"),
        ("webhook", "failed"),
        ("eventbridge", "failed"),
    ]
    assert results[0].detail.startswith("the report could not be read: AttributeError: ")
    assert not http.calls
    assert [line["message"] for line in captured.lines] == ["notification failed"]


def test_no_channel_configured_sends_nothing(clock: FakeClock) -> None:
    notifier = Notifier.from_settings(Settings(), clock=clock)
    assert notifier.channels == []
    assert notifier.notify(REVERTED) == []


def test_anything_but_a_run_report_is_logged_and_not_sent(
    notifier: Notifier, http: responses.RequestsMock, captured: CapturedLogs
) -> None:
    all_up(http)

    assert notifier.notify(REVERTED.as_dict()) == []  # type: ignore[arg-type]
    assert notifier.notify(json.dumps(REVERTED.as_dict())) == []  # type: ignore[arg-type]

    assert not http.calls
    assert [(line["message"], line["report_type"]) for line in captured.lines] == [
        ("notification skipped: the report is not a RunReport", "dict"),
        ("notification skipped: the report is not a RunReport", "str"),
    ]


# --- secrets ----------------------------------------------------------------------------------


def test_secrets_never_reach_logs_or_results(
    notifier: Notifier, http: responses.RequestsMock, captured: CapturedLogs
) -> None:
    def refuse(request: requests.PreparedRequest) -> Any:
        # what urllib3 and requests put in a connection error: the full URL with its query
        raise requests.ConnectionError(
            f"HTTPSConnectionPool(host='{urlsplit(request.url).hostname}', port=443): Max "
            f"retries exceeded with url: {request.path_url} (Caused by NewConnectionError)"
        )

    http.add_callback(responses.POST, DINGTALK_HOST_PATH, callback=refuse)
    http.add_callback(responses.POST, "https://hooks.example.com/secpref", callback=refuse)
    http.post(
        EVENTBRIDGE_URL,
        status=400,
        json={
            "code": "InvalidSecurityToken",
            "message": f"token {STS_TOKEN} rejected for {WEBHOOK_URL} at {DINGTALK_URL}",
        },
    )

    results = notifier.notify(REVERTED)

    assert [r.outcome for r in results] == ["failed", "failed", "failed"]
    sent_url = http.calls[0].request.url
    sign = parse_qs(urlsplit(sent_url).query)["sign"][0]
    assert ACCESS_TOKEN in sent_url  # the request itself carries them, of course
    secrets = [
        ACCESS_TOKEN,
        DINGTALK_SECRET,
        sign,
        requests.utils.quote(sign, safe=""),
        WEBHOOK_TOKEN,
        STS_TOKEN,
        KEY_SECRET,
    ]
    text = captured.everything + json.dumps([r.as_dict() for r in results])
    assert "notification failed" in text
    for secret in secrets:
        assert secret not in text
    assert results[0].detail == (
        "ConnectionError: HTTPSConnectionPool(host='oapi.dingtalk.com', port=443): Max retries "
        "exceeded with url: <removed> (Caused by NewConnectionError)"
    )
    # registered, so any other log line that carries them is masked as well
    assert logs.redact(f"{ACCESS_TOKEN} {DINGTALK_SECRET} {sign}") == "*** *** ***"


# --- multi-account runs -------------------------------------------------------------------------

MEMBER_A = "1111111111111111"
MEMBER_B = "2222222222222222"
MEMBER_C = "3333333333333333"
MEMBER_D = "4444444444444444"
RUN_ID = "5f2c9a1e0b7d4c3a"
SCHEDULE = Trigger("schedule", name="guard-timer", time="2026-11-25T04:00:00Z")


def reverted(account: str, actual: int = 24) -> AccountReport:
    drift = [replace(SESSION, actual=actual)]
    return account_report(account, "reverted", drift, reason="reverted LoginSessionDuration")


def contested(account: str) -> AccountReport:
    return account_report(
        account,
        "contested",
        [replace(SESSION, actual=12)],
        reason="revert budget of 3 in 60 minutes is spent",
    )


def compliant(account: str) -> AccountReport:
    return account_report(account, "compliant", reason="matches the baseline")


def skipped(account: str) -> AccountReport:
    return AccountReport(
        account,
        "skipped",
        "enforce",
        reason="listed in GUARD_EXCLUDE_ACCOUNTS",
        rule="GUARD_EXCLUDE_ACCOUNTS",
    )


def failed(account: str, code: str = "NoPermission", request_id: str = "REQ-9") -> AccountReport:
    error = ApiError(
        "AssumeRole", code, "You are not authorized to do this action.", 403, request_id
    )
    return account_report(account, "error", reason=str(error), error=error)


def run(
    *accounts: AccountReport,
    run_id: str = RUN_ID,
    execution: str = "in-process",
    dispatches: tuple[Dispatch, ...] = (),
) -> RunReport:
    """A run over the directory's accounts, started by the timer."""
    return RunReport(
        run_id,
        "enforce",
        SCHEDULE,
        execution=execution,
        targets="resource-directory",
        accounts=list(accounts),
        dispatches=list(dispatches),
    )


def fanned_out(error: ApiError | None = None) -> RunReport:
    """A fan-out run: two batches handed to the worker, the second possibly not."""
    dispatches = (
        Dispatch(1, 2, (MEMBER_A, MEMBER_B), "fc-req-1"),
        Dispatch(2, 2, (MEMBER_C,), None, error)  # type: ignore[arg-type]
        if error
        else Dispatch(2, 2, (MEMBER_C,), "fc-req-2"),
    )
    return run(run_id="run-9", execution="fan-out", dispatches=dispatches)


ORG_RUN = run(compliant(ACCOUNT), reverted(MEMBER_A), reverted(MEMBER_B, 8), failed(MEMBER_C))

ORG_MARKDOWN = "\n".join(
    [
        "#### secpref-guard: 2 accounts reverted, 1 failed (run 5f2c9a1e0b7d4c3a)",
        "",
        # DingTalk's line break within a paragraph: two spaces before the newline
        "**Run**: 5f2c9a1e0b7d4c3a (in-process, mode enforce, targets resource-directory)  ",
        "**Accounts**: 4 (1 compliant, 2 reverted, 1 failed)  ",
        "**Trigger**: scheduled check at 2026-11-25T04:00:00Z  ",
        "**Changed by**: unknown (found by the scheduled check; see ActionTrail)",
        "",
        "**Fields** (before → baseline → after)",
        "",
        "- account 1111111111111111, security-preference **LoginSessionDuration**: 24 → 4 → 4 "
        "(reverted; baseline from BASELINE\\_LOGIN\\_SESSION\\_DURATION)",
        "- account 2222222222222222, security-preference **LoginSessionDuration**: 8 → 4 → 4 "
        "(reverted; baseline from BASELINE\\_LOGIN\\_SESSION\\_DURATION)",
        "",
        "**Failed accounts** (1)",
        "",
        "- account 3333333333333333: AssumeRole failed: NoPermission: You are not authorized to "
        "do this action. (HTTP 403, request id REQ-9) (NoPermission, stage enforce)",
        "",
        "**What the guard did**: Wrote the baseline back to 2 accounts with SetSecurityPreference "
        "and verified it with a fresh read; could not enforce 1 account (listed above).",
    ]
)


def test_the_cloudevent_subject_names_the_account_or_the_count_and_the_settings() -> None:
    length = Drift("MinimumPasswordLength", 8, 14, "revert", setting="password-policy")
    # a run of one: its account and the settings that drifted
    assert cloudevent_subject(REVERTED) == f"{ACCOUNT}/SecurityPreference"
    assert cloudevent_subject(report(drift=[length])) == f"{ACCOUNT}/PasswordPolicy"
    assert (
        cloudevent_subject(report(drift=[SESSION, length]))
        == f"{ACCOUNT}/SecurityPreference+PasswordPolicy"
    )
    # a run of many (it was "unknown/SecurityPreference"): the accounts that drifted or failed
    assert cloudevent_subject(ORG_RUN) == "3 accounts/SecurityPreference"
    both = run(
        account_report(MEMBER_A, "reverted", [SESSION]),
        account_report(MEMBER_B, "drift", [replace(length, action="report-only")]),
    )
    assert cloudevent_subject(both) == "2 accounts/SecurityPreference+PasswordPolicy"
    # one account of many drifted: that account
    assert cloudevent_subject(run(compliant(MEMBER_A), reverted(MEMBER_B))) == (
        f"{MEMBER_B}/SecurityPreference"
    )
    # an account that failed before any drift was found: the settings it read
    api = ApiError("GetSecurityPreference", "NoPermission", "denied", 403, "REQ-7")
    assert cloudevent_subject(report("error", drift=[], error=api)) == (
        f"{ACCOUNT}/SecurityPreference"
    )


def test_a_run_summary_title_counts_the_accounts_and_names_the_run() -> None:
    assert render_title(ORG_RUN) == (
        "secpref-guard: 2 accounts reverted, 1 failed (run 5f2c9a1e0b7d4c3a)"
    )
    mixed = run(reverted(MEMBER_A), contested(MEMBER_B), failed(MEMBER_C), failed(MEMBER_D))
    assert render_title(mixed) == (
        "secpref-guard: 1 account reverted, 1 contested, 2 failed (run 5f2c9a1e0b7d4c3a)"
    )


def test_a_run_summary_markdown_names_every_account_and_lists_the_failed_ones() -> None:
    text = render_markdown(ORG_RUN)

    assert text == ORG_MARKDOWN
    assert "account ?" not in text
    assert "**Account**" not in text
    assert "|" not in text


def test_each_field_line_of_a_run_follows_its_own_account_not_the_run() -> None:
    # the run is "contested" (its worst account); the reverted account was still reverted
    summary = run(reverted(MEMBER_A), contested(MEMBER_B))
    assert summary.status == "contested"

    text = render_markdown(summary)

    assert (
        f"- account {MEMBER_A}, security-preference **LoginSessionDuration**: 24 → 4 → 4 " in text
    )
    assert (
        f"- account {MEMBER_B}, security-preference **LoginSessionDuration**: 12 → 4 → 12 "
        "(not written: revert budget spent;" in text
    )
    assert "Wrote the baseline back to 1 account" in text
    assert "wrote nothing to 1 account whose revert budget" in text


def test_field_lines_are_grouped_by_account() -> None:
    mfa = Drift("EnableSaveMFATicket", True, False, "revert")
    summary = run(
        account_report(MEMBER_A, "reverted", [SESSION, mfa]),
        account_report(MEMBER_B, "reverted", [SESSION]),
    )

    lines = [line for line in render_markdown(summary).splitlines() if line.startswith("- ")]

    assert [line.split(",")[0] for line in lines] == [
        f"- account {MEMBER_A}",
        f"- account {MEMBER_A}",
        f"- account {MEMBER_B}",
    ]


def test_a_run_summary_line_names_the_accounts() -> None:
    assert summarize(ORG_RUN) == (
        "secpref-guard run 5f2c9a1e0b7d4c3a, 4 accounts: 2 accounts reverted, 1 failed; "
        "1111111111111111 reverted LoginSessionDuration; 2222222222222222 reverted "
        "LoginSessionDuration; failed: 3333333333333333 (NoPermission)"
    )
    assert summarize(run(reverted(MEMBER_A), contested(MEMBER_B))) == (
        "secpref-guard run 5f2c9a1e0b7d4c3a, 2 accounts: 1 account reverted, 1 contested; "
        "1111111111111111 reverted LoginSessionDuration; 2222222222222222 contested, still "
        "drifted: LoginSessionDuration"
    )


def test_a_long_run_caps_the_failed_accounts_and_the_field_lines() -> None:
    accounts = [reverted(f"{n:016d}") for n in range(1, 61)]
    accounts += [failed(f"{n:016d}") for n in range(101, 126)]
    summary = run(*accounts)

    text = render_markdown(summary)
    lines = text.splitlines()

    assert render_title(summary).startswith("secpref-guard: 60 accounts reverted, 25 failed")
    assert len([line for line in lines if "**LoginSessionDuration**" in line]) == 50
    assert "- and 10 more fields (the run's result and log list them all)" in lines
    assert "**Failed accounts** (25)" in lines
    listed = [line for line in lines if line.startswith("- account ") and "NoPermission" in line]
    assert [line[len("- account ") :][:16] for line in listed] == [
        f"{n:016d}" for n in range(101, 121)
    ]
    assert lines[lines.index(listed[-1]) + 1] == "- and 5 more"
    line = summarize(summary)
    assert "; and 50 more accounts with drift; failed: 0000000000000101 (NoPermission)" in line
    assert line.endswith("0000000000000110 (NoPermission) and 15 more")


def test_a_run_is_sent_to_every_channel_with_counts_in_the_title(
    notifier: Notifier, http: responses.RequestsMock
) -> None:
    all_up(http)

    assert [r.outcome for r in notifier.notify(ORG_RUN)] == ["sent"] * 3

    (dingtalk,) = calls_to(http, DINGTALK_HOST_PATH)
    assert json.loads(dingtalk.request.body)["markdown"] == {
        "title": "secpref-guard: 2 accounts reverted, 1 failed (run 5f2c9a1e0b7d4c3a)",
        "text": ORG_MARKDOWN,
    }
    (webhook,) = calls_to(http, "https://hooks.example.com/")
    body = json.loads(webhook.request.body)
    as_json = json.loads(json.dumps(ORG_RUN.as_dict()))
    assert {k: v for k, v in body.items() if k not in ("summary", "guard")} == as_json
    assert body["summary"] == summarize(ORG_RUN)
    assert body["guard"] == {"name": "secpref-guard", "version": __version__}
    (eventbridge,) = calls_to(http, EVENTBRIDGE_URL)
    (cloudevent,) = json.loads(eventbridge.request.body)
    assert cloudevent["data"] == body
    assert cloudevent["type"] == "secpref-guard:Report:error"  # a failed account is never ok
    assert cloudevent["subject"] == "3 accounts/SecurityPreference"


def test_a_revert_in_another_account_is_sent_not_deduplicated(
    notifier: Notifier, http: responses.RequestsMock
) -> None:
    all_up(http)

    first = notifier.notify(run(compliant(MEMBER_B), reverted(MEMBER_A), run_id="run-1"))
    second = notifier.notify(run(compliant(MEMBER_A), reverted(MEMBER_B), run_id="run-2"))
    again = notifier.notify(run(compliant(MEMBER_A), reverted(MEMBER_B), run_id="run-3"))

    assert [r.outcome for r in first] == ["sent"] * 3
    assert [r.outcome for r in second] == ["sent"] * 3
    assert [r.outcome for r in again] == ["deduplicated"] * 3  # the same revert, reported again
    texts = [json.loads(c.request.body)["markdown"]["text"] for c in calls_to(http, DINGTALK_URL)]
    a_line, b_line = (f"account {m}, security-preference **" for m in (MEMBER_A, MEMBER_B))
    assert [a_line in t for t in texts] == [True, False]
    assert [b_line in t for t in texts] == [False, True]


def test_failures_in_other_accounts_or_with_other_codes_are_sent(
    notifier: Notifier, http: responses.RequestsMock
) -> None:
    all_up(http)
    runs = [
        run(reverted(MEMBER_A), failed(MEMBER_C)),
        run(reverted(MEMBER_A), failed(MEMBER_D)),  # another account
        run(reverted(MEMBER_A), failed(MEMBER_D, "Throttling.User")),  # another code
        run(reverted(MEMBER_A), failed(MEMBER_D, "Throttling.User", request_id="REQ-10")),
    ]

    sent = [{r.outcome for r in notifier.notify(summary)} for summary in runs]

    assert sent == [{"sent"}, {"sent"}, {"sent"}, {"deduplicated"}]
    assert len({dedup_key(summary) for summary in runs}) == 3
    # a failure joining a run's reverts is news too
    assert dedup_key(run(reverted(MEMBER_A))) != dedup_key(runs[0])


@pytest.mark.parametrize("other", [reverted, skipped, compliant])
def test_a_run_with_a_failed_account_is_sent_whatever_the_others_did(
    other: Callable[[str], AccountReport], notifier: Notifier, http: responses.RequestsMock
) -> None:
    all_up(http)
    summary = run(other(MEMBER_A), failed(MEMBER_C))

    assert summary.status == "error"  # a failed account makes the run an error
    assert should_notify(summary)
    assert [r.outcome for r in notifier.notify(summary)] == ["sent"] * 3


def test_a_fan_out_that_only_dispatched_is_not_sent(
    notifier: Notifier, http: responses.RequestsMock
) -> None:
    all_up(http)
    summary = fanned_out()
    assert summary.status == "skipped"
    assert summary.counts["dispatched"] == 3

    assert not should_notify(summary)
    assert notifier.notify(summary) == []
    assert not http.calls


def test_a_fan_out_whose_batch_was_not_dispatched_lists_its_accounts(
    notifier: Notifier, http: responses.RequestsMock
) -> None:
    all_up(http)
    summary = fanned_out(ApiError("InvokeFunction", "FunctionNotFound", "no worker", 404))

    assert [r.outcome for r in notifier.notify(summary)] == ["sent"] * 3

    text = render_markdown(summary)
    assert text.startswith("#### secpref-guard: 1 account failed (run run-9)\n")
    assert "**Accounts**: 3 (1 failed, 2 dispatched)" in text
    assert (
        f"- account {MEMBER_C}: batch 2 not dispatched: InvokeFunction failed: FunctionNotFound: "
        "no worker (HTTP 404) (FunctionNotFound, stage dispatch)" in text
    )
    assert "Could not enforce 1 account (listed above); handed 2 accounts to the worker." in text
    assert "**Changed by**" not in text  # nothing drifted: no one to look for
    assert should_notify(summary)
    assert cloudevent_subject(summary) == MEMBER_C  # the account left out; no setting was read


# --- concurrency ----------------------------------------------------------------------------


class HeldWebhook:
    """A webhook whose first request is held until every other caller has returned; then the
    requests are answered with ``statuses`` in turn (the last one repeats)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.others_returned = threading.Event()
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        with self._lock:
            self.count += 1
            n = self.count
        if n == 1:
            self.others_returned.wait(timeout=5)
        return self.statuses[min(n, len(self.statuses)) - 1], {}, ""


def all_at_once(
    call: Callable[[], list[ChannelResult]], threads: int, hook: HeldWebhook
) -> list[ChannelResult]:
    """``call`` on ``threads`` threads released together; every result, in finishing order."""
    start = threading.Barrier(threads)
    results: list[ChannelResult] = []
    lock = threading.Lock()

    def one() -> None:
        start.wait(timeout=5)
        got = call()
        with lock:
            results.extend(got)
            if len(results) == threads - 1:
                hook.others_returned.set()

    pool = [threading.Thread(target=one) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in pool)
    return results


def webhook_notifier(clock: FakeClock, window: DedupWindow) -> Notifier:
    """As the handler builds it: a new notifier per invocation, one window per instance."""
    return Notifier.from_settings(Settings(webhook_url=WEBHOOK_URL), clock=clock, window=window)


def test_concurrent_identical_reports_are_sent_once(
    clock: FakeClock, http: responses.RequestsMock
) -> None:
    hook = HeldWebhook([200])
    http.add_callback(responses.POST, "https://hooks.example.com/secpref", callback=hook)
    window = DedupWindow()

    results = all_at_once(lambda: webhook_notifier(clock, window).notify(report()), 8, hook)

    assert len(http.calls) == 1
    assert sorted(r.outcome for r in results) == ["deduplicated"] * 7 + ["sent"]
    assert {r.detail for r in results if r.outcome == "deduplicated"} == {"being sent concurrently"}
    assert results[-1].outcome == "sent"  # the sender was held until the others returned
    assert webhook_notifier(clock, window).notify(REVERTED)[0].detail == "sent within the window"


def test_a_concurrent_send_that_fails_is_retried_by_the_next_report(
    clock: FakeClock, http: responses.RequestsMock
) -> None:
    hook = HeldWebhook([503, 200])
    http.add_callback(responses.POST, "https://hooks.example.com/secpref", callback=hook)
    window = DedupWindow()

    results = all_at_once(lambda: webhook_notifier(clock, window).notify(REVERTED), 8, hook)

    assert sorted(r.outcome for r in results) == ["deduplicated"] * 7 + ["failed"]
    assert len(http.calls) == 1
    clock.advance(5)
    assert outcomes(webhook_notifier(clock, window).notify(REVERTED)) == {"webhook": "sent"}
    assert outcomes(webhook_notifier(clock, window).notify(REVERTED)) == {"webhook": "deduplicated"}
    assert [call.response.status_code for call in http.calls] == [503, 200]  # delivered once


def test_a_reservation_never_released_lapses_with_the_window() -> None:
    window = DedupWindow(seconds=60)

    assert window.reserve("webhook", "k", NOW) is None
    assert window.reserve("webhook", "k", NOW + 59) == "sending"
    assert window.active("webhook", "k", NOW + 59)
    assert window.reserve("webhook", "k", NOW + 60) is None  # the holder never came back
    window.record("webhook", "k", NOW + 61)
    assert window.reserve("webhook", "k", NOW + 120) == "sent"
    assert window.reserve("webhook", "k", NOW + 121) is None
    window.release("webhook", "k")
    assert len(window) == 0  # the expired entry was forgotten


def test_no_delivered_report_is_forgotten_when_many_threads_record_at_once() -> None:
    window = DedupWindow(seconds=600)
    threads, per_thread = 8, 300
    start = threading.Barrier(threads)
    errors: list[str] = []

    def deliver(t: int) -> None:
        start.wait(timeout=5)
        for i in range(per_thread):
            key, now = f"report-{t}-{i}", NOW + i / 1000
            if window.reserve("webhook", key, now) is not None:
                errors.append(f"{key} was not free")
            if i % 3 == 0:  # a failed send, then its retry
                window.release("webhook", key)
                if window.reserve("webhook", key, now) is not None:
                    errors.append(f"{key} was not released")
            window.record("webhook", key, now)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        pool = [threading.Thread(target=deliver, args=(t,)) for t in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)

    assert errors == []
    assert len(window) == threads * per_thread
    later = NOW + 1
    assert all(
        window.reserve("webhook", f"report-{t}-{i}", later) == "sent"
        for t in range(threads)
        for i in range(per_thread)
    )


def test_an_interrupted_send_leaves_no_reservation_behind(clock: FakeClock) -> None:
    class Interrupted:
        name = "webhook"
        destination = "https://hooks.example.com/..."

        def send(self, report: Any) -> str:
            raise KeyboardInterrupt

    window = DedupWindow()
    with pytest.raises(KeyboardInterrupt):
        Notifier([Interrupted()], clock=clock, window=window).notify(REVERTED)

    assert not window.active("webhook", dedup_key(REVERTED), NOW)


# --- the package's shape ----------------------------------------------------------------------

NOTIFY_MODULES = sorted(Path(notify_package.__file__).parent.glob("*.py"))
SIGNER = "eventbridge_string_to_sign"  # kept byte for byte: it reads its headers with .get


@pytest.mark.parametrize("module", NOTIFY_MODULES, ids=lambda path: path.name)
def test_each_notify_module_says_its_job_and_never_probes_a_dictionary(module: Path) -> None:
    source = module.read_text(encoding="utf-8")
    tree = ast.parse(source)
    assert ast.get_docstring(tree), "a module says its one job"
    assert len(source.splitlines()) < 400
    signer = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == SIGNER]
    exempt = {id(n) for s in signer for n in ast.walk(s)}
    probes = [
        f"line {node.lineno}"
        for node in ast.walk(tree)
        if id(node) not in exempt
        and isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Attribute) and node.func.attr == "get")
            or (
                isinstance(node.func, ast.Name)
                and node.func.id == "isinstance"
                and "Mapping" in ast.unparse(node.args[1])
            )
        )
    ]
    assert probes == []
