"""Secrets: the access key secret and the security token of the guard's STS credentials never
reach what the guard writes, returns or raises, nor the emulator's error replies.

Every run is made as verbose as it gets (GUARD_LOG_LEVEL=DEBUG, the SDK's DEBUG=sdk, the SDK's
loggers switched back on as a user's logging setup might leave them), and everything written
is captured: stdout and stderr at the file-descriptor level, every log record any logger emits,
the handler's result, the exception's message and its formatted traceback, and each reply
body the emulator sends. Then each secret is searched for, as it is and percent-encoded once
and twice, in runs that succeed and runs that fail in every way that would carry it.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from aliyunsdkcore.http import http_response

from secpref_guard import handlers
from secpref_guard import run as run_module
from secpref_guard.client import RetryPolicy
from secpref_guard.emulator import DEFAULT_ACCOUNT, Emulator
from secpref_guard.ims import ImsClient
from secpref_guard.local import LocalContext, LocalCredentials, LocalFunction, load_handler

ROOT = Path(__file__).resolve().parents[1]
KEY_ID = "STS.NUgYrLnoC37mZZCNnAbez2Gjq"
SECRET = "Gu4rd/sts+Secret=9xQv2~Lr7Wd"
TOKEN = "CAIS+9gJ1q6Ft5B2yfSjIr5b/kKOr3rZk0qW9cnP3kmIyZetHuZ+Dghjz2IH=hMf3RuA&0dsvk mGpW7==" * 2
EMULATOR_SECRET = "the-emulators-own-secret"
SECRETS = {"access key secret": SECRET, "security token": TOKEN}
Handler = Callable[[bytes, Any], str]


def spellings(secret: str) -> set[str]:
    """As it is, percent-encoded once (a URL, form body) and twice (a string to sign)."""
    forms = {secret, quote_plus(secret)}
    for safe in ("", "~", "/~"):
        once = quote(secret, safe=safe)
        forms |= {once, quote(once, safe=safe), quote(once, safe="")}
    return forms


@dataclass
class Capture:
    records: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    results: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def everything(self, out: str, err: str) -> str:
        return "\n".join([out, err, *self.records, *self.replies, *self.results, *self.errors])


@pytest.fixture
def capture(
    emulator: Emulator, guard_env: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> Iterator[Capture]:
    """Everything the runs write, with every log switched to its most verbose."""
    seen = Capture()
    monkeypatch = guard_env
    # the SDK's own handler holds the stderr of import time: point it at the captured one
    monkeypatch.setattr(http_response.ch, "stream", sys.stderr)
    monkeypatch.setenv("DEBUG", "sdk")  # the SDK prints signed URLs to stderr with this
    monkeypatch.setenv("GUARD_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS", "false")
    monkeypatch.setenv("BASELINE_MFA_OPERATION_FOR_LOGIN", "mandatory")
    monkeypatch.setattr(handlers, "_logging_ready", False)  # reconfigure at DEBUG

    # every record any logger hands to its handlers, whatever they do with it
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    call_handlers = logging.Logger.callHandlers

    def recording(self: logging.Logger, record: logging.LogRecord) -> None:
        seen.records.append(formatter.format(record))
        call_handlers(self, record)

    monkeypatch.setattr(logging.Logger, "callHandlers", recording)
    # the SDK's loggers as its import leaves them: DEBUG, with its own stderr handler
    sdk_logger = logging.getLogger(http_response.__name__)
    saved = (sdk_logger.level, sdk_logger.propagate, list(sdk_logger.handlers))
    root_level = logging.root.level
    logging.root.setLevel(logging.DEBUG)

    handle = emulator.handle

    def recording_handle(*args: Any) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = handle(*args)
        seen.replies.append(body.decode(errors="replace"))
        return status, headers, body

    monkeypatch.setattr(emulator, "handle", recording_handle)
    emulator.add_key(KEY_ID, SECRET, DEFAULT_ACCOUNT, TOKEN, principal="assumed-role/guard/fc")
    handlers.reset_instance()
    yield seen
    handlers.reset_instance()
    handlers._logging_ready = False  # the next invocation configures logging afresh
    logging.root.setLevel(root_level)
    sdk_logger.setLevel(saved[0])
    sdk_logger.propagate = saved[1]
    sdk_logger.handlers[:] = saved[2]


def enable_sdk_loggers() -> None:
    """Undo any silencing, as a user's logging.config or an older import might."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("aliyunsdkcore"):
            logger = logging.getLogger(name)
            logger.setLevel(logging.DEBUG)
            logger.propagate = True
    sdk_logger = logging.getLogger(http_response.__name__)
    if http_response.ch not in sdk_logger.handlers:
        sdk_logger.addHandler(http_response.ch)


def context(via_context: bool) -> LocalContext:
    return LocalContext(
        request_id="req-secrets",
        function=LocalFunction("secpref-guard", "x.handler"),
        credentials=LocalCredentials(KEY_ID, SECRET, TOKEN) if via_context else None,
        account_id=DEFAULT_ACCOUNT,
    )


def run(seen: Capture, handler_name: str, event_file: str, via_context: bool) -> None:
    handler: Handler = load_handler(handler_name, ROOT / "functions")
    enable_sdk_loggers()
    payload = (ROOT / "events" / event_file).read_bytes()
    try:
        seen.results.append(handler(payload, context(via_context)))
    except handlers.HandlerError as exc:
        seen.errors.append("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        # and every exception chained to it, even those a traceback would not show
        chained: BaseException | None = exc
        while chained is not None:
            seen.errors += [str(chained), repr(chained)]
            chained = chained.__cause__ or chained.__context__


# --- what goes wrong, in ways that would carry the secrets -----------------------------------


def succeeds(emulator: Emulator) -> None:
    emulator.ims.put(DEFAULT_ACCOUNT, AllowUserToManageAccessKeys=True)


def wrong_signature(emulator: Emulator) -> None:
    """The service knows another secret for this key id: SignatureDoesNotMatch, whose
    message echoes the string to sign (with the token in it, were it not masked)."""
    emulator.add_key(KEY_ID, EMULATOR_SECRET, DEFAULT_ACCOUNT, TOKEN)


def wrong_token(emulator: Emulator) -> None:
    emulator.add_key(KEY_ID, SECRET, DEFAULT_ACCOUNT, "some-other-token-value")


def connection_refused(emulator: Emulator) -> None:
    """urllib3's message names the URL, signed query (token, signature) included."""
    emulator.ims.inject_transport_fault("connection-error", times=100)


def read_timeout(emulator: Emulator) -> None:
    emulator.ims.sleep = lambda seconds: None
    emulator.ims.inject_transport_fault("read-timeout", times=100)


def throttled_then_failing(emulator: Emulator) -> None:
    """Retries (logged), then a write that is refused."""
    succeeds(emulator)
    emulator.ims.inject_fault("Throttling.User", 400, action="GetSecurityPreference", times=2)
    emulator.ims.inject_fault("NoPermission", 403, action="SetSecurityPreference", times=100)


def not_verified(emulator: Emulator) -> None:
    succeeds(emulator)
    emulator.ims.ignored_sets = 1


def proxy_echoes_the_url(emulator: Emulator) -> None:
    """A proxy in the way answers with an HTML page that quotes the request it refused."""
    handle = emulator.handle

    def proxy(method: str, url: str, headers: Any, body: Any) -> tuple[int, dict[str, str], bytes]:
        page = f"<html><body>502 Bad Gateway: {method} {url} {body!r}</body></html>"
        handle(method, url, headers, body)  # recorded as a reply the emulator produced
        return 502, {"Content-Type": "text/html"}, page.encode()

    emulator.handle = proxy  # type: ignore[method-assign]


SCENARIOS: dict[str, Callable[[Emulator], None]] = {
    "succeeds": succeeds,
    "wrong-signature": wrong_signature,
    "wrong-token": wrong_token,
    "connection-refused": connection_refused,
    "read-timeout": read_timeout,
    "throttled-then-refused": throttled_then_failing,
    "not-verified": not_verified,
    "proxy-echoes-the-url": proxy_echoes_the_url,
}
PATHS = {
    "timer": ("scheduled.handler", "timer.json"),
    "event": ("audit_event.handler", "set-by-ram-user.json"),
}


@pytest.mark.parametrize("via_context", [True, False], ids=["context-py310", "environ-py312"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_secrets_never_reach_output_results_errors_or_replies(
    emulator: Emulator,
    capture: Capture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    scenario: str,
    path: str,
    via_context: bool,
) -> None:
    if not via_context:  # python3.12: the runtime's variables are the only source
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
        monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", TOKEN)
    no_wait = replace(RetryPolicy(), sleep=lambda seconds: None)
    monkeypatch.setattr(
        run_module, "ImsClient", lambda *args, **kwargs: ImsClient(*args, **kwargs, retry=no_wait)
    )
    SCENARIOS[scenario](emulator)

    run(capture, *PATHS[path], via_context)

    out, err = capfd.readouterr()
    written = capture.everything(out, err)
    assert capture.results or capture.errors, "the run left nothing to inspect"
    assert err.strip(), "the guard's JSON log lines are part of what is searched"
    for what, secret in SECRETS.items():
        for spelling in spellings(secret):
            assert spelling not in written, f"the {what} leaked as {spelling!r}"
    assert EMULATOR_SECRET not in written
    assert "Signature=" not in written
    if scenario == "succeeds":
        assert json.loads(capture.results[0])["status"] == "reverted"
    else:
        assert capture.errors, scenario


def test_the_capture_would_see_a_leak(
    emulator: Emulator, capture: Capture, capfd: pytest.CaptureFixture[str]
) -> None:
    """The net has no hole: a secret the SDK logs (to its own stderr handler, or to any
    logger), one printed, and one in an emulator reply are each found by the same search."""
    enable_sdk_loggers()
    logging.getLogger(http_response.__name__).debug("url ?SecurityToken=%s", quote(TOKEN, safe=""))
    print(SECRET)
    capture.replies.append(quote(quote(TOKEN, safe=""), safe=""))

    out, err = capfd.readouterr()
    assert any(quote(TOKEN, safe="") in record for record in capture.records)
    assert quote(TOKEN, safe="") in err  # the SDK's handler writes to the process's stderr
    assert SECRET in out
    written = capture.everything(out, err)
    for secret in SECRETS.values():
        assert any(spelling in written for spelling in spellings(secret))
