"""Notifications: what each channel receives, the policy around it, and secrets kept out of logs.

Every HTTP call goes through `responses`; the clock is fixed, so DingTalk's and EventBridge's
signatures are recomputed here, independently of the module, from what was actually sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from secpref_guard import __version__, logs
from secpref_guard.config import Settings
from secpref_guard.credentials import Credentials
from secpref_guard.notify import (
    ChannelResult,
    DedupWindow,
    EventBus,
    Notifier,
    eventbridge_signature,
    render_markdown,
    render_title,
    render_webhook_body,
    summarize,
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

REVERTED: dict[str, Any] = {
    "status": "reverted",
    "account": ACCOUNT,
    "mode": "enforce",
    "drift": [
        {
            "field": "LoginSessionDuration",
            "actual": 24,
            "expected": 4,
            "action": "revert",
            "source": "BASELINE_LOGIN_SESSION_DURATION",
        },
        {
            "field": "LoginNetworkMasks",
            "actual": ["192.168.0.0/16"],
            "expected": ["10.0.0.0/8", "192.168.0.0/16"],
            "action": "report-only",
            "source": "BASELINE_LOGIN_NETWORK_MASKS",
            "note": "listed in GUARD_REPORT_ONLY_FIELDS",
        },
    ],
    "reason": "reverted LoginSessionDuration; not written: LoginNetworkMasks (report-only fields)",
    "trigger": {"type": "event", "id": "evt-0f3c2a9e", "time": "2026-11-25T04:00:02Z"},
    "actor": {
        "type": "ram-user",
        "name": "alice",
        "account": ACCOUNT,
        "source_ip": "203.0.113.7",
        "time": "2026-11-25T03:59:58Z",
    },
}


def report(**changes: Any) -> dict[str, Any]:
    return {**json.loads(json.dumps(REVERTED)), **changes}


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
    # reverted: after is the baseline, verified by the engine's fresh read
    assert "- **LoginSessionDuration**: 24 → 4 → 4 (reverted; baseline from BASELINE" in text
    # report-only: after is what the account still has
    assert (
        "- **LoginNetworkMasks**: 192.168.0.0/16 → 10.0.0.0/8;192.168.0.0/16 → 192.168.0.0/16 "
        "(report-only: listed in GUARD\\_REPORT\\_ONLY\\_FIELDS" in text
    )
    assert "**What the guard did**: Wrote the baseline back with SetSecurityPreference" in text
    assert "Reverted LoginSessionDuration; not written: LoginNetworkMasks" in text
    assert "|" not in text  # DingTalk's markdown has no tables: one list item per field


def test_markdown_of_a_dry_run_keeps_the_live_value_after() -> None:
    dry = report(
        status="drift",
        mode="dry-run",
        reason="GUARD_MODE is dry-run",
        drift=[
            {
                "field": "EnableSaveMFATicket",
                "actual": True,
                "expected": False,
                "action": "dry-run",
                "source": "preset cis-2.0",
            }
        ],
        trigger={"type": "schedule", "id": "guard-timer", "time": "2026-11-25T04:00:00Z"},
        actor=None,
    )
    text = render_markdown(dry)

    assert "drift found, nothing written" in text
    assert "- **EnableSaveMFATicket**: true → false → true (not written: dry run;" in text
    assert "**Trigger**: scheduled check guard-timer at 2026-11-25T04:00:00Z" in text
    assert "**Changed by**: unknown (found by the scheduled check; see ActionTrail)" in text
    assert "Reported the drift and wrote nothing. GUARD\\_MODE is dry-run." in text


def test_markdown_of_a_contested_account_says_nothing_was_written() -> None:
    contested = report(status="contested", reason="revert budget of 3 in 60 minutes is spent")
    text = render_markdown(contested)

    assert "- **LoginSessionDuration**: 24 → 4 → 24 (not written: revert budget spent;" in text
    assert "revert budget (GUARD\\_MAX\\_REVERTS within GUARD\\_REVERT\\_WINDOW\\_MINUTES)" in text


def test_markdown_of_an_error_shows_the_code_and_what_a_fresh_read_showed() -> None:
    failed = report(
        status="error",
        reason="SetSecurityPreference was accepted but a fresh GetSecurityPreference still differs",
        error={
            "type": "VerificationError",
            "request_id": "REQ-1",
            "mismatches": [{"field": "LoginSessionDuration", "sent": 4, "read": 24}],
        },
    )
    text = render_markdown(failed)

    assert text.startswith("#### secpref-guard: guard error in account")
    assert "- **LoginSessionDuration**: 24 → 4 → 24 (not written;" in text
    assert "- **LoginNetworkMasks**: 192.168.0.0/16 → 10.0.0.0/8;192.168.0.0/16 → unknown" in text
    assert "Failed: VerificationError (request id REQ-1)" in text


def test_text_from_the_event_cannot_format_the_message_or_inject_a_link() -> None:
    hostile = report(
        actor={
            "type": "ram-user",
            "name": "[click](https://evil.example)\n# big",
            "source_ip": "203.0.113.7",
        }
    )
    text = render_markdown(hostile)

    assert "[click](" not in text
    assert "\\[click\\](https://evil.example) \\# big" in text
    assert "\n# big" not in text


def test_webhook_body_is_the_report_plus_a_summary_and_the_guard_version() -> None:
    body = render_webhook_body(REVERTED)

    assert {k: v for k, v in body.items() if k not in ("summary", "guard")} == REVERTED
    assert body["guard"] == {"name": "secpref-guard", "version": __version__}
    assert body["summary"] == (
        "secpref-guard reverted LoginSessionDuration in account 1234567890123456; not written: "
        "LoginNetworkMasks; changed by ram-user alice of account 1234567890123456 from "
        "203.0.113.7 at 2026-11-25T03:59:58Z"
    )


def test_summaries_of_every_notified_status() -> None:
    assert summarize(report(status="drift", actor=None)) == (
        "secpref-guard found drift in account 1234567890123456: LoginSessionDuration, "
        "LoginNetworkMasks; nothing written"
    )
    assert summarize(report(status="contested", actor=None)).startswith(
        "secpref-guard stopped reverting account 1234567890123456: the revert budget is spent"
    )
    error = report(
        status="error",
        drift=[],
        reason="GetSecurityPreference failed",
        error={"type": "ApiError", "code": "NoPermission", "message": "denied"},
    )
    assert (
        summarize(error) == "secpref-guard failed on account 1234567890123456: NoPermission: denied"
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
    for _ in range(5):
        clock.advance(30)
        burst.append(notifier.notify(json.dumps(REVERTED)))  # handlers return JSON text

    assert [r.outcome for r in first] == ["sent", "sent", "sent"]
    assert all(r.outcome == "deduplicated" for results in burst for r in results)
    assert len(http.calls) == 3


def test_a_different_drift_is_sent_again(notifier: Notifier, http: responses.RequestsMock) -> None:
    all_up(http)
    notifier.notify(REVERTED)

    other = report(
        drift=[
            {"field": "EnableSaveMFATicket", "actual": True, "expected": False, "action": "revert"}
        ]
    )
    new_value = report()
    new_value["drift"][0]["actual"] = 12  # the same field, changed to something else

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


def test_no_channel_configured_sends_nothing(clock: FakeClock) -> None:
    notifier = Notifier.from_settings(Settings(), clock=clock)
    assert notifier.channels == []
    assert notifier.notify(REVERTED) == []


def test_a_report_that_is_not_json_is_skipped(notifier: Notifier, captured: CapturedLogs) -> None:
    assert notifier.notify("not json") == []
    assert notifier.notify("[1, 2]") == []
    assert [line["message"] for line in captured.lines] == [
        "notification skipped: the report is not JSON",
        "notification skipped: the report is not a JSON object",
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
