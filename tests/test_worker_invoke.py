"""The worker's FC 3.0 invocation through the official SDK, and what the emulator verifies of it.

``WorkerInvoker`` calls alibabacloud-fc20230330 (ACS3-HMAC-SHA256 signatures, Tea/Darabonba
core over the ordinary ``requests``). The emulator checks every part of the ACS3 signature
independently of the SDK, and refuses what Function Compute refuses: a wrong signature, a date
more than 15 minutes off, a reused nonce, a token that does not belong to the key. Both doors
are driven: ``responses`` on requests' HTTPAdapter (which the SDK's own adapter inherits its
``send`` from) and the HTTP server on a loopback port.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import pytest
import requests
import responses

from fc2_client import fc_authorization
from org_support import REQUESTS_SEND, WORKER
from secpref_guard.client import ApiError, RetryPolicy
from secpref_guard.credentials import Credentials
from secpref_guard.emulator import mock_endpoint
from secpref_guard.emulator.fc import MAX_SKEW_SECONDS
from secpref_guard.emulator.resourcemanager import Organisation, organisation
from secpref_guard.emulator.server import BackgroundServer
from secpref_guard.logs import configure
from secpref_guard.worker_invoke import WorkerInvoker

ENDPOINT = "http://127.0.0.1:8765"
NO_SLEEP = RetryPolicy(sleep=lambda seconds: None)
ONE_TRY = RetryPolicy(attempts=1, sleep=lambda seconds: None)
PAYLOAD = b'{"type": "secpref-guard.batch", "accounts": ["1"]}'


class WallClock:
    """The emulator's clock, at the real time plus an offset the test moves."""

    def __init__(self) -> None:
        import time

        self._time = time.time
        self.offset = 0.0

    def __call__(self) -> float:
        return self._time() + self.offset


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


@pytest.fixture
def org(wall: WallClock) -> Iterator[Organisation]:
    o = organisation(1)
    o.fc.clock = wall
    o.fc.add_function(o.management_account, WORKER, lambda event, context: "ok")
    with mock_endpoint(o.emulator, ENDPOINT, REQUESTS_SEND):
        yield o
    o.fc.close()


def guard(o: Organisation) -> Credentials:
    return Credentials(*o.guard_key)


def invoker(
    o: Organisation, credentials: Credentials | None = None, **kwargs: Any
) -> WorkerInvoker:
    kwargs.setdefault("retry", ONE_TRY)
    return WorkerInvoker(ENDPOINT, credentials or guard(o), **kwargs)


def signed_request(o: Organisation, *, qualifier: str | None = None, forward: bool = False) -> Any:
    """The request the SDK sends for one invocation of PAYLOAD, captured on the wire; with
    ``forward`` the emulator also receives it, otherwise a 202 is answered without it."""
    sent: list[Any] = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:

        def capture(request: Any) -> tuple[int, dict[str, str], bytes]:
            sent.append(request)
            if forward:
                return o.emulator.handle(
                    request.method, request.url, dict(request.headers), request.body
                )
            return 202, {"x-fc-request-id": "captured"}, b""

        rsps.add_callback("POST", f"{ENDPOINT}/2023-03-30/functions/{WORKER}/invocations", capture)
        invoker(o).invoke_async(WORKER, PAYLOAD, qualifier=qualifier)
    (request,) = sent
    return request


# --- the call --------------------------------------------------------------------------------


def test_an_async_invocation_is_accepted_and_runs_the_worker_with_the_payload(
    org: Organisation,
) -> None:
    seen: list[bytes] = []
    org.fc.add_function(org.management_account, WORKER, lambda event, context: seen.append(event))

    request_id = invoker(org).invoke_async(WORKER, PAYLOAD)

    (invocation,) = org.fc.drain()
    assert request_id == invocation.request_id
    assert (invocation.api, invocation.invocation_type, invocation.status) == (
        "2023-03-30",
        "Async",
        "succeeded",
    )
    assert seen == [PAYLOAD]
    assert invocation.principal == "assumed-role/secpref-guard-role/fc"


def test_the_sdk_signs_with_acs3_and_sends_the_sts_token(org: Organisation) -> None:
    request = signed_request(org, qualifier="LATEST", forward=True)

    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["authorization"].startswith(
        f"ACS3-HMAC-SHA256 Credential={org.guard_key[0]},SignedHeaders="
    )
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    for name in (
        "host",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-security-token",
        "x-acs-content-sha256",
        "x-fc-invocation-type",
    ):
        assert name in signed
    assert headers["x-acs-security-token"] == org.guard_key[2]
    assert headers["x-fc-invocation-type"] == "Async"
    assert headers["x-acs-content-sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert request.url.endswith("/invocations?qualifier=LATEST")
    assert request.body == PAYLOAD


def test_a_wrong_secret_is_refused_with_fcs_error_shape(org: Organisation) -> None:
    key_id, _, token = org.guard_key

    with pytest.raises(ApiError) as raised:
        invoker(org, Credentials(key_id, "not-the-secret-at-all", token)).invoke_async(
            WORKER, b"{}"
        )

    error = raised.value
    assert (error.code, error.http_status) == ("SignatureNotMatch", 403)
    assert error.request_id
    assert "not-the-secret" not in str(error)
    assert org.fc.invocations == []


def test_a_token_that_is_not_the_keys_is_refused(org: Organisation) -> None:
    key_id, secret, _ = org.guard_key

    with pytest.raises(ApiError) as raised:
        invoker(org, Credentials(key_id, secret, "someone-elses-token")).invoke_async(WORKER, b"{}")

    assert raised.value.code == "InvalidSecurityToken"
    assert "someone-elses-token" not in str(raised.value)


@pytest.mark.parametrize("minutes", [16, -16])
def test_a_date_more_than_15_minutes_off_is_refused(
    org: Organisation, wall: WallClock, minutes: int
) -> None:
    wall.offset = minutes * 60

    with pytest.raises(ApiError) as raised:
        invoker(org).invoke_async(WORKER, b"{}")

    assert (raised.value.code, raised.value.http_status) == ("RequestTimeTooSkewed", 403)
    assert org.fc.invocations == []


def test_a_date_within_15_minutes_is_accepted(org: Organisation, wall: WallClock) -> None:
    wall.offset = MAX_SKEW_SECONDS - 60
    assert invoker(org).invoke_async(WORKER, b"{}")


def test_a_reused_nonce_is_refused(org: Organisation, monkeypatch: pytest.MonkeyPatch) -> None:
    from alibabacloud_tea_openapi.utils import Utils

    monkeypatch.setattr(Utils, "get_nonce", staticmethod(lambda: "the-same-nonce-every-time"))
    first = invoker(org)
    first.invoke_async(WORKER, b"{}")

    with pytest.raises(ApiError) as raised:
        first.invoke_async(WORKER, b"{}")

    assert (raised.value.code, raised.value.http_status) == ("SignatureNonceUsed", 403)
    assert len(org.fc.invocations) == 1


def test_an_exact_replay_of_a_signed_request_is_refused(org: Organisation) -> None:
    request = signed_request(org, forward=True)

    status, _, body = org.emulator.handle(
        request.method, request.url, dict(request.headers), request.body
    )

    assert (status, json.loads(body)["Code"]) == (403, "SignatureNonceUsed")
    assert len(org.fc.invocations) == 1


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ("body", "InvalidArgument"),  # x-acs-content-sha256 no longer matches
        ("function", "SignatureNotMatch"),
        ("invocation-type", "SignatureNotMatch"),
        ("unsigned-acs-header", "InvalidArgument"),  # every x-acs-* header must be signed
        ("qualifier", "SignatureNotMatch"),
    ],
)
def test_a_request_changed_after_signing_is_refused(
    org: Organisation, tamper: str, code: str
) -> None:
    request = signed_request(org, qualifier="LATEST")
    url, headers, body = request.url, dict(request.headers), request.body
    if tamper == "body":
        body = b'{"accounts": ["someone else"]}'
    elif tamper == "function":
        org.fc.add_function(org.management_account, "other")
        url = url.replace(f"/functions/{WORKER}/", "/functions/other/")
    elif tamper == "invocation-type":
        headers["x-fc-invocation-type"] = "Sync"
    elif tamper == "unsigned-acs-header":
        headers["x-acs-extra"] = "added later"
    else:
        url = url.replace("qualifier=LATEST", "qualifier=1")

    status, _, reply = org.emulator.handle("POST", url, headers, body)

    assert (status, json.loads(reply)["Code"]) == (
        400 if code == "InvalidArgument" else 403,
        code,
    )
    assert org.fc.invocations == []


def test_a_missing_function_is_the_services_error(org: Organisation) -> None:
    with pytest.raises(ApiError) as raised:
        invoker(org).invoke_async("no-such-function", b"{}")

    assert (raised.value.code, raised.value.http_status) == ("FunctionNotFound", 404)
    assert raised.value.request_id
    assert "no-such-function" in raised.value.message


def test_a_too_large_payload_is_refused(org: Organisation) -> None:
    with pytest.raises(ApiError) as raised:
        invoker(org).invoke_async(WORKER, b"x" * (128 * 1024 + 1))
    assert raised.value.code == "EntityTooLarge"


# --- retries: ours, not the SDK's --------------------------------------------------------------


def test_throttling_is_retried_by_the_projects_retry_and_the_sdk_sends_once_per_try(
    org: Organisation,
) -> None:
    org.emulator.ims.inject_fault("ResourceThrottled", 503, action="InvokeFunction", times=2)
    waits: list[float] = []
    policy = RetryPolicy(sleep=waits.append)

    assert invoker(org, retry=policy).invoke_async(WORKER, b"{}")

    assert len(org.emulator.ims.calls_of("InvokeFunction")) == 3
    assert len(waits) == 2


def test_a_permanent_error_is_not_retried(org: Organisation) -> None:
    with pytest.raises(ApiError) as raised:
        invoker(org, retry=NO_SLEEP).invoke_async("no-such-function", b"{}")
    assert raised.value.attempts == 1
    assert len(org.emulator.ims.calls_of("InvokeFunction")) == 1


def test_no_try_starts_past_the_invocations_deadline(org: Organisation) -> None:
    now = [100.0]
    policy = RetryPolicy(clock=lambda: now[0], sleep=lambda seconds: None)

    with pytest.raises(ApiError) as raised:
        invoker(org, retry=policy, deadline=now[0] + 0.5).invoke_async(WORKER, b"{}")

    assert raised.value.code == "Guard.TimeBudgetSpent"
    assert org.emulator.ims.calls_of("InvokeFunction") == []


def test_an_unreachable_endpoint_is_a_clean_error_without_secrets() -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    credentials = Credentials("STS.unreachable-id", "unreachable-secret", "unreachable-token")
    unreachable = WorkerInvoker(
        f"http://127.0.0.1:{port}", credentials, retry=ONE_TRY, connect_timeout=1
    )

    with pytest.raises(ApiError) as raised:
        unreachable.invoke_async(WORKER, b"{}")

    assert raised.value.code in ("SDK.HttpError", "SDK.TimeoutError")
    text = f"{raised.value} {raised.value.__context__} {raised.value.__cause__}"
    assert "unreachable-secret" not in text
    assert "unreachable-token" not in text


def test_the_sdks_debug_output_never_reaches_the_logs(
    org: Organisation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under DEBUG=sdk the Tea core logs every signed header, STS token included; with a root
    handler at DEBUG (as a runtime or a developer may have) none of it may be printed."""
    monkeypatch.setenv("DEBUG", "sdk")
    configure("DEBUG")
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        invoker(org).invoke_async(WORKER, b"{}")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    out = capsys.readouterr()
    assert org.guard_key[2] not in out.out + out.err
    assert "ACS3-HMAC-SHA256" not in out.out + out.err


# --- the other door: loopback HTTP -------------------------------------------------------------


def test_the_sdk_drives_the_emulator_over_loopback_http() -> None:
    o = organisation(1)
    seen: list[bytes] = []
    o.fc.add_function(o.management_account, WORKER, lambda event, context: seen.append(event))
    try:
        with BackgroundServer(o.emulator) as server:
            live = WorkerInvoker(server.endpoint, guard(o), retry=ONE_TRY)
            request_id = live.invoke_async(WORKER, PAYLOAD, qualifier="LATEST")
            key_id, _, token = o.guard_key
            wrong = WorkerInvoker(server.endpoint, Credentials(key_id, "wrong-secret", token))
            with pytest.raises(ApiError) as raised:
                wrong.invoke_async(WORKER, b"{}")
        o.fc.drain()
    finally:
        o.fc.close()
    assert request_id
    assert seen == [PAYLOAD]
    assert raised.value.code == "SignatureNotMatch"


# --- the FC 2.0 scheme keeps working, now with the same date and replay rules ------------------


def fc2_request(o: Organisation, date: str) -> tuple[str, dict[str, str]]:
    path = f"/2023-03-30/functions/{WORKER}/invocations"
    headers = {
        "date": date,
        "content-type": "application/json",
        "x-fc-invocation-type": "Async",
        "x-fc-security-token": o.guard_key[2],
    }
    headers["authorization"] = fc_authorization(guard(o), "POST", path, headers)
    return ENDPOINT + path, headers


def test_an_fc2_signed_request_with_a_stale_date_is_refused(org: Organisation) -> None:
    url, headers = fc2_request(org, formatdate(usegmt=True))
    org.fc.clock.offset = 16 * 60  # type: ignore[attr-defined]

    reply = requests.post(url, data=b"{}", headers=headers, timeout=5)

    assert (reply.status_code, reply.json()["Code"]) == (403, "RequestTimeTooSkewed")


def test_an_exact_replay_of_an_fc2_signed_request_is_refused(org: Organisation) -> None:
    url, headers = fc2_request(org, formatdate(usegmt=True))

    first = requests.post(url, data=b"{}", headers=headers, timeout=5)
    again = requests.post(url, data=b"{}", headers=headers, timeout=5)
    other_body = requests.post(url, data=b'{"batch": 2}', headers=headers, timeout=5)

    assert first.status_code == 202
    assert (again.status_code, again.json()["Code"]) == (403, "AccessDenied")
    assert "replay" in again.json()["Message"]
    assert other_body.status_code == 202  # another batch in the same second is no replay
    assert len(org.fc.invocations) == 2


# --- imported only when a run fans out ---------------------------------------------------------


def test_the_handlers_do_not_import_the_fc_sdk() -> None:
    code = (
        "import sys, secpref_guard.handlers, secpref_guard.run, secpref_guard.dispatch\n"
        "import secpref_guard.worker_invoke\n"
        "loaded = [m for m in ('alibabacloud_fc20230330', 'aiohttp', 'darabonba') "
        "if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


# --- as the fan-out will use it ----------------------------------------------------------------


def test_dispatch_sends_every_batch_through_the_worker_invoker(
    org: Organisation,
) -> None:
    """dispatch.dispatch takes any object with ``invoke_async``: concurrent dispatches of
    distinct batches each get their own nonce and arrive intact."""
    from secpref_guard.batch import make_batches, parse_batch
    from secpref_guard.dispatch import dispatch

    received: list[bytes] = []
    org.fc.add_function(org.management_account, WORKER, lambda event, c: received.append(event))
    accounts = [str(1_000_000_000_000_000 + i) for i in range(1, 121)]
    batches = make_batches(accounts, run_id="a1", max_accounts=25)

    sent = dispatch(batches, invoker(org, retry=NO_SLEEP), WORKER, concurrency=4)

    org.fc.drain()
    assert [d.error for d in sent] == [None] * len(batches)
    assert all(d.request_id for d in sent)
    assert sorted(received) == sorted(b.payload() for b in batches)
    got = [a for payload in received for a in parse_batch(payload).accounts]
    assert sorted(got) == accounts


@pytest.mark.parametrize(
    "header", ["x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256", "host"]
)
def test_a_signed_request_without_a_required_header_is_refused(
    org: Organisation, header: str
) -> None:
    request = signed_request(org)
    headers = {k: v for k, v in request.headers.items() if k.lower() != header}

    status, _, reply = org.emulator.handle("POST", request.url, headers, request.body)

    assert (status, json.loads(reply)["Code"]) == (400, "MissingRequiredHeader")
    assert header in json.loads(reply)["Message"]


def test_a_malformed_acs3_date_is_refused(org: Organisation) -> None:
    request = signed_request(org)
    headers = {
        k: ("Tue, 01 Dec 2026 10:00:00 GMT" if k.lower() == "x-acs-date" else v)
        for k, v in request.headers.items()
    }

    status, _, reply = org.emulator.handle("POST", request.url, headers, request.body)

    assert (status, json.loads(reply)["Code"]) == (400, "InvalidArgument")


def test_an_error_reply_that_is_not_json_is_transient_and_retried() -> None:
    """A proxy's HTML 502 in front of Function Compute: retried, and its body never quoted."""
    waits: list[float] = []
    with responses.RequestsMock() as rsps:
        url = re.compile(r"https://1\.cn-hangzhou\.fc\.aliyuncs\.com/.*")
        rsps.add(responses.POST, url, status=502, body="<html>secret-ish page</html>")
        rsps.add(responses.POST, url, status=202, headers={"x-fc-request-id": "after-502"})
        live = WorkerInvoker(
            "https://1.cn-hangzhou.fc.aliyuncs.com",
            Credentials("key-id", "key-secret"),
            retry=RetryPolicy(sleep=waits.append),
        )
        assert live.invoke_async(WORKER, b"{}") == "after-502"
    assert len(waits) == 1

    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, url, status=502, body="<html>secret-ish page</html>")
        with pytest.raises(ApiError) as raised:
            WorkerInvoker(
                "https://1.cn-hangzhou.fc.aliyuncs.com",
                Credentials("key-id", "key-secret"),
                retry=ONE_TRY,
            ).invoke_async(WORKER, b"{}")
    assert raised.value.code == "SDK.UnknownServerError"
    assert "secret-ish" not in str(raised.value)
