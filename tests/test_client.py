"""The IMS client against the emulator, through the real SDK: each of the SDK's surprises from
the API reference gets a scenario that shows the guard is not caught by it.

Requests go through aliyun-python-sdk-core for real (signing, URL building, error parsing);
only its vendored HTTP adapter is answered by the emulator.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from aliyunsdkcore.auth.credentials import StsTokenCredential
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest

from secpref_guard import engine, logs
from secpref_guard.client import ApiError, RetryPolicy
from secpref_guard.config import load_config
from secpref_guard.credentials import Credentials, CredentialsError, resolve
from secpref_guard.emulator import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    DEFAULT_ACCOUNT,
    Emulator,
    mock_endpoint,
)
from secpref_guard.emulator.mock import DEFAULT_ENDPOINT
from secpref_guard.ims import ImsClient

# An STS key of the guard's role: the token has the characters real tokens carry (/ + =).
STS_KEY_ID = "STS.NUgYrLnoC37mZZCNnAbez2GjQ"
STS_SECRET = "sts-secret-9xQv2Lr7Wd"
STS_TOKEN = "CAIS+token/of=the.guard~role"

ACCOUNT = DEFAULT_ACCOUNT  # the emulator's default key belongs to it (see conftest)
ENDPOINT = DEFAULT_ENDPOINT  # where the conftest fixtures serve the emulator


@pytest.fixture
def sts_key(emulator: Emulator) -> Credentials:
    """The function role's temporary credentials, known to the emulator."""
    emulator.add_key(
        STS_KEY_ID, STS_SECRET, ACCOUNT, security_token=STS_TOKEN, principal="guard-role"
    )
    return Credentials(STS_KEY_ID, STS_SECRET, STS_TOKEN)


@pytest.fixture
def exchanges(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every request the SDK made and the emulator's raw answer to it."""
    seen: list[dict[str, Any]] = []
    handle = emulator.handle

    def recording(method: str, url: str, headers: Any, body: Any) -> Any:
        status, reply_headers, payload = handle(method, url, headers, body)
        seen.append(
            {
                "method": method,
                "url": url,
                "query": dict(parse_qsl(urlsplit(url).query, keep_blank_values=True)),
                "status": status,
                "reply": json.loads(payload),
            }
        )
        return status, reply_headers, payload

    monkeypatch.setattr(emulator, "handle", recording)
    return seen


def spellings(secret: str) -> list[str]:
    """A secret as it is, and percent-encoded once and twice (URL, string to sign)."""
    once = quote(secret, safe="~")
    return [secret, once, quote(once, safe="~"), quote(secret, safe="")]


def raw_sdk_request(action: str, params: dict[str, str] | None = None) -> CommonRequest:
    request = CommonRequest(domain=ENDPOINT, version="2019-08-15", action_name=action)
    for key, value in (params or {}).items():
        request.add_query_param(key, value)
    return request


# --- reading and writing ---------------------------------------------------------------------


def test_the_client_reads_every_field_the_account_returns(emulator, client):
    emulator.ims.put(ACCOUNT, LoginSessionDuration="3", LoginNetworkMasks="10.0.0.0/8")

    preference = client.get_security_preference()

    assert preference.values == emulator.ims.state(ACCOUNT)
    assert preference.values["LoginNetworkMasks"] == frozenset({"10.0.0.0/8"})
    assert preference.extra == {"OperationForRiskLogin": "autonomous"}
    assert preference.request_id in client.log.request_ids
    assert client.log.calls == 1


def test_the_client_writes_values_as_the_api_documents_them(emulator, client):
    client.set_security_preference(
        {"EnableSaveMFATicket": True, "LoginNetworkMasks": frozenset(), "LoginSessionDuration": 8}
    )

    (call,) = emulator.ims.calls_of("SetSecurityPreference")
    assert call.params == {
        "EnableSaveMFATicket": "true",
        "LoginNetworkMasks": "",
        "LoginSessionDuration": "8",
    }
    assert emulator.ims.state(ACCOUNT)["EnableSaveMFATicket"] is True


def test_an_endpoint_without_a_scheme_is_refused(credentials):
    with pytest.raises(ValueError, match="scheme"):
        ImsClient("ims.aliyuncs.com", credentials)


# --- surprise: CommonRequest speaks plain http ----------------------------------------------


def test_the_client_speaks_https_to_an_https_endpoint(credentials, no_sleep):
    seen: list[str] = []
    emulator = Emulator.with_default_key()
    handle = emulator.handle

    def recording(method: str, url: str, headers: Any, body: Any) -> Any:
        seen.append(url)
        return handle(method, url, headers, body)

    emulator.handle = recording  # type: ignore[method-assign]
    with mock_endpoint(emulator, "https://ims.aliyuncs.com"):
        client = ImsClient("https://ims.aliyuncs.com", credentials, retry=no_sleep)
        client.get_security_preference()

    assert [urlsplit(url).scheme for url in seen] == ["https"]
    assert urlsplit(seen[0]).netloc == "ims.aliyuncs.com"


def test_the_client_keeps_the_port_of_a_loopback_endpoint(emulator, exchanges, client):
    client.get_security_preference()

    (exchange,) = exchanges
    assert urlsplit(exchange["url"])[:2] == ("http", "127.0.0.1:8765")


# --- surprise: ALIYUN_* variables override the SDK's credential object --------------------


def test_aliyun_variables_do_not_override_the_guards_credentials(
    emulator, exchanges, sts_key, no_sleep, monkeypatch
):
    # Another key pair in the SDK's own variables, valid for the emulator under another name.
    emulator.add_key("LTAI-someone-else", "someone-elses-secret", ACCOUNT, principal="intruder")
    monkeypatch.setenv("ALIYUN_ACCESS_KEY_ID", "LTAI-someone-else")
    monkeypatch.setenv("ALIYUN_ACCESS_KEY_SECRET", "someone-elses-secret")

    ImsClient(ENDPOINT, sts_key, retry=no_sleep).get_security_preference()

    (exchange,) = exchanges
    assert exchange["status"] == 200
    assert exchange["query"]["AccessKeyId"] == STS_KEY_ID
    assert exchange["query"]["SecurityToken"] == STS_TOKEN
    assert [call.principal for call in emulator.ims.calls] == ["guard-role"]


def test_the_raw_sdk_would_sign_with_the_aliyun_variables_and_drop_the_token(
    emulator, exchanges, sts_key, monkeypatch
):
    """The surprise itself, so the test above is known to guard against something real."""
    emulator.add_key("LTAI-someone-else", "someone-elses-secret", ACCOUNT, principal="intruder")
    monkeypatch.setenv("ALIYUN_ACCESS_KEY_ID", "LTAI-someone-else")
    monkeypatch.setenv("ALIYUN_ACCESS_KEY_SECRET", "someone-elses-secret")
    sdk = AcsClient(
        credential=StsTokenCredential(STS_KEY_ID, STS_SECRET, STS_TOKEN), region_id="cn-hangzhou"
    )

    sdk.do_action_with_exception(raw_sdk_request("GetSecurityPreference"))

    (exchange,) = exchanges
    assert exchange["query"]["AccessKeyId"] == "LTAI-someone-else"
    assert "SecurityToken" not in exchange["query"]
    assert [call.principal for call in emulator.ims.calls] == ["intruder"]


def test_an_sts_key_sends_its_token_and_is_accepted(emulator, exchanges, sts_key, no_sleep):
    client = ImsClient(ENDPOINT, sts_key, retry=no_sleep)

    client.get_security_preference()
    client.set_security_preference({"MaxIdleDaysForUsers": 90})

    assert [e["query"]["SecurityToken"] for e in exchanges] == [STS_TOKEN, STS_TOKEN]
    assert [e["status"] for e in exchanges] == [200, 200]
    assert emulator.ims.state(ACCOUNT)["MaxIdleDaysForUsers"] == 90


# --- credentials inside and outside Function Compute -----------------------------------------


def _set_env_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", STS_KEY_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", STS_SECRET)
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", STS_TOKEN)


def test_a_python312_context_without_credentials_falls_back_to_the_environment(
    emulator, exchanges, sts_key, no_sleep, monkeypatch
):
    _set_env_credentials(monkeypatch)
    context = SimpleNamespace(
        request_id="req-1",
        region="cn-hangzhou",
        account_id=ACCOUNT,
        function=SimpleNamespace(name="scheduled"),
    )

    credentials = resolve(context)
    ImsClient(ENDPOINT, credentials, retry=no_sleep).get_security_preference()

    assert credentials.source == "environment"
    assert exchanges[0]["query"]["SecurityToken"] == STS_TOKEN
    assert [call.principal for call in emulator.ims.calls] == ["guard-role"]


def test_a_python310_contexts_credentials_win_over_the_environment(
    emulator, exchanges, sts_key, no_sleep, monkeypatch
):
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", DEFAULT_ACCESS_KEY_SECRET)
    context = SimpleNamespace(
        request_id="req-1",
        credentials=SimpleNamespace(
            access_key_id=STS_KEY_ID, access_key_secret=STS_SECRET, security_token=STS_TOKEN
        ),
    )

    credentials = resolve(context)
    ImsClient(ENDPOINT, credentials, retry=no_sleep).get_security_preference()

    assert credentials.source == "function context"
    assert exchanges[0]["query"]["AccessKeyId"] == STS_KEY_ID
    assert [call.principal for call in emulator.ims.calls] == ["guard-role"]


def test_a_context_with_empty_credentials_falls_back_to_the_environment(monkeypatch):
    _set_env_credentials(monkeypatch)
    context = SimpleNamespace(credentials=SimpleNamespace(access_key_id="", access_key_secret=""))
    assert resolve(context).access_key_id == STS_KEY_ID


def test_no_credentials_anywhere_names_the_variables():
    with pytest.raises(CredentialsError) as err:
        resolve(SimpleNamespace(request_id="req-1"))
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in str(err.value)
    assert "ALIBABA_CLOUD_ACCESS_KEY_SECRET" in str(err.value)


def test_credentials_do_not_show_their_secrets_in_repr():
    text = repr(Credentials(STS_KEY_ID, STS_SECRET, STS_TOKEN))
    assert STS_KEY_ID in text
    assert STS_SECRET not in text
    assert STS_TOKEN not in text


# --- surprise: no retries for IMS in the SDK; ours ----------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("Throttling", 400),
        ("Throttling.User", 400),
        ("ServiceUnavailable", 503),
        ("InternalError", 500),
    ],
)
def test_transient_errors_are_retried_until_the_call_succeeds(emulator, client, code, status):
    emulator.ims.inject_fault(code, status, action="GetSecurityPreference", times=2)

    preference = client.get_security_preference()

    assert preference.values == emulator.ims.state(ACCOUNT)
    assert len(emulator.ims.calls_of("GetSecurityPreference")) == 3


def test_the_sdk_itself_does_not_retry(emulator, credentials):
    emulator.ims.inject_fault("ServiceUnavailable", 503, times=1)
    client = ImsClient(ENDPOINT, credentials, retry=RetryPolicy(attempts=1, sleep=lambda s: None))

    with pytest.raises(ApiError) as err:
        client.get_security_preference()

    assert err.value.code == "ServiceUnavailable"
    assert len(emulator.ims.calls) == 1


@pytest.mark.parametrize(
    ("code", "status", "action"),
    [
        ("NoPermission", 403, "SetSecurityPreference"),
        ("InvalidParameter.LoginSessionDuration", 400, "SetSecurityPreference"),
        ("Forbidden.RAM", 403, "GetSecurityPreference"),
    ],
)
def test_permanent_errors_are_not_retried(emulator, client, code, status, action):
    emulator.ims.inject_fault(code, status, action=action, times=5)

    calls = {
        "GetSecurityPreference": client.get_security_preference,
        "SetSecurityPreference": lambda: client.set_security_preference(
            {"LoginSessionDuration": 8}
        ),
    }

    with pytest.raises(ApiError) as err:
        calls[action]()

    assert (err.value.code, err.value.http_status, err.value.attempts) == (code, status, 1)
    assert len(emulator.ims.calls_of(action)) == 1


def test_retries_give_up_after_the_limit_with_the_code_and_the_attempts(emulator, credentials):
    waits: list[float] = []
    policy = RetryPolicy(attempts=4, max_wait=2.0, sleep=waits.append)
    emulator.ims.inject_fault(
        "Throttling.User", 400, times=100, message="Request was denied due to user flow control."
    )
    client = ImsClient(ENDPOINT, credentials, retry=policy)

    with pytest.raises(ApiError) as err:
        client.get_security_preference()

    assert err.value.code == "Throttling.User"
    assert err.value.attempts == 4
    assert "after 4 attempts" in str(err.value)
    assert len(emulator.ims.calls) == 4
    assert len(waits) == 3
    assert all(0 < wait <= 2.0 for wait in waits)


def test_an_unreachable_endpoint_is_retried_and_reported_without_the_signed_url(
    reset_emulator, no_sleep
):
    client = ImsClient(
        "http://127.0.0.1:9", Credentials(STS_KEY_ID, STS_SECRET, STS_TOKEN), retry=no_sleep
    )

    with pytest.raises(ApiError) as err:
        client.get_security_preference()

    assert err.value.code == "SDK.HttpError"
    assert err.value.attempts == 5
    assert reset_emulator.ims.calls == []
    for text in [*spellings(STS_TOKEN), "Signature=", "AccessKeyId="]:
        assert text not in str(err.value)


# --- surprise: SetSecurityPreference resets what it is not sent -----------------------------


def test_a_set_of_one_field_resets_the_others_and_the_guards_write_does_not(
    reset_emulator, client, monkeypatch
):
    ims = reset_emulator.ims
    ims.put(
        ACCOUNT,
        LoginNetworkMasks="10.0.0.0/8",
        LoginSessionDuration="2",
        AllowUserToManageAccessKeys="true",
    )
    sdk = AcsClient(
        ak=DEFAULT_ACCESS_KEY_ID, secret=DEFAULT_ACCESS_KEY_SECRET, region_id="cn-hangzhou"
    )

    # Someone fixes one field with the raw SDK: the network restriction silently goes.
    sdk.do_action_with_exception(
        raw_sdk_request("SetSecurityPreference", {"AllowUserToManageAccessKeys": "false"})
    )
    assert ims.state(ACCOUNT)["LoginNetworkMasks"] == frozenset()
    assert ims.state(ACCOUNT)["LoginSessionDuration"] == 6

    # The guard fixes the same field: everything it does not own stays as it was.
    ims.put(
        ACCOUNT,
        LoginNetworkMasks="10.0.0.0/8",
        LoginSessionDuration="2",
        AllowUserToManageAccessKeys="true",
    )
    config = load_config({"BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS": "false"})
    outcome = engine.run(client, config, account=ACCOUNT)

    assert outcome.status == "reverted"
    assert ims.state(ACCOUNT)["AllowUserToManageAccessKeys"] is False
    assert ims.state(ACCOUNT)["LoginNetworkMasks"] == frozenset({"10.0.0.0/8"})
    assert ims.state(ACCOUNT)["LoginSessionDuration"] == 2


# --- surprise: a SignatureDoesNotMatch without ':' makes the SDK raise IndexError ---------

UNSPLITTABLE = "Specified signature is not matched with our calculation."


def test_the_raw_sdk_raises_index_error_on_a_signature_message_without_a_colon(reset_emulator):
    reset_emulator.ims.inject_fault("SignatureDoesNotMatch", 400, message=UNSPLITTABLE)
    sdk = AcsClient(
        ak=DEFAULT_ACCESS_KEY_ID, secret=DEFAULT_ACCESS_KEY_SECRET, region_id="cn-hangzhou"
    )
    with pytest.raises(IndexError):
        sdk.do_action_with_exception(raw_sdk_request("GetSecurityPreference"))


def test_a_signature_message_without_a_colon_becomes_an_api_error(emulator, client):
    emulator.ims.inject_fault("SignatureDoesNotMatch", 400, message=UNSPLITTABLE)

    with pytest.raises(ApiError) as err:
        client.get_security_preference()

    assert err.value.code == "SignatureDoesNotMatch"
    assert err.value.http_status == 400
    assert err.value.attempts == 1


# --- authentication: the emulator rejects bad keys with the real codes ---------------------


@pytest.mark.parametrize(
    ("credentials_sent", "code", "status"),
    [
        (Credentials(STS_KEY_ID, "not-the-sts-secret", STS_TOKEN), "SignatureDoesNotMatch", 400),
        (
            Credentials("STS.unknown-key-id", STS_SECRET, STS_TOKEN),
            "InvalidAccessKeyId.NotFound",
            404,
        ),
        (
            Credentials(STS_KEY_ID, STS_SECRET, "CAIS+another/token=="),
            "InvalidSecurityToken.MismatchWithAccessKey",
            400,
        ),
        (
            Credentials(STS_KEY_ID, STS_SECRET, None),
            "InvalidSecurityToken.MismatchWithAccessKey",
            400,
        ),
    ],
    ids=["wrong-secret", "unknown-key-id", "wrong-token", "missing-token"],
)
def test_bad_credentials_are_rejected_with_the_real_codes_and_leak_nothing(
    emulator, exchanges, sts_key, no_sleep, credentials_sent, code, status
):
    before = dict(emulator.ims.state(ACCOUNT))
    client = ImsClient(ENDPOINT, credentials_sent, retry=no_sleep)

    with pytest.raises(ApiError) as err:
        client.set_security_preference({"EnableSaveMFATicket": True})

    assert (err.value.code, err.value.http_status, err.value.attempts) == (code, status, 1)
    assert err.value.request_id == exchanges[0]["reply"]["RequestId"]
    assert [e["reply"]["Code"] for e in exchanges] == [code]
    assert emulator.ims.state(ACCOUNT) == before
    assert emulator.ims.calls == []
    messages = [str(err.value), err.value.message, exchanges[0]["reply"]["Message"]]
    for secret in (
        spellings(STS_TOKEN) + spellings(STS_SECRET) + spellings(credentials_sent.access_key_secret)
    ):
        for message in messages:
            assert secret not in message


def test_a_permanent_key_that_sends_a_token_is_rejected(emulator, no_sleep):
    client = ImsClient(
        ENDPOINT,
        Credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, STS_TOKEN),
        retry=no_sleep,
    )
    with pytest.raises(ApiError) as err:
        client.get_security_preference()
    assert err.value.code.startswith("InvalidSecurityToken")


# --- surprise: the SDK logs tokens and signed URLs ----------------------------------------


@pytest.fixture
def sdk_loggers_as_imported(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The SDK's loggers as a fresh import leaves them (its stream handler on DEBUG, aimed at
    this test's stderr), and the guard's logger restored afterwards."""
    from aliyunsdkcore.http import http_response

    names = [
        n
        for n in logging.root.manager.loggerDict
        if n == "aliyunsdkcore" or n.startswith("aliyunsdkcore.")
    ] + [logs.LOGGER_NAME]
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (logger.level, logger.propagate, list(logger.handlers))
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
    monkeypatch.setattr(http_response.ch, "stream", sys.stderr)
    sdk_logger = logging.getLogger(http_response.__name__)
    sdk_logger.addHandler(http_response.ch)
    sdk_logger.setLevel(logging.DEBUG)
    yield
    for name, (level, propagate, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = propagate
        logger.handlers[:] = handlers


@pytest.mark.usefixtures("sdk_loggers_as_imported")
def test_tokens_and_secrets_never_reach_debug_logs_or_stderr(
    emulator, sts_key, no_sleep, monkeypatch, capsys, caplog
):
    monkeypatch.setenv("DEBUG", "sdk")
    caplog.set_level(logging.DEBUG)
    logs.configure("DEBUG")  # the guard's own JSON lines, on this test's stderr

    client = ImsClient(ENDPOINT, sts_key, retry=no_sleep)
    client.get_security_preference()
    emulator.ims.inject_fault("InternalError", 500, action="GetSecurityPreference")
    client.get_security_preference()  # retried: the guard logs the retry
    emulator.ims.inject_fault("NoPermission", 403, action="SetSecurityPreference")
    with pytest.raises(ApiError) as err:
        client.set_security_preference({"EnableSaveMFATicket": False})
    logs.event(logging.ERROR, "set failed", error=str(err.value))

    captured = capsys.readouterr()
    output = "\n".join(
        [
            captured.out,
            captured.err,
            caplog.text,
            *(record.getMessage() for record in caplog.records),
        ]
    )
    assert "retrying API call" in captured.err  # the capture sees the guard's log lines
    assert "NoPermission" in captured.err
    for secret in spellings(STS_TOKEN) + spellings(STS_SECRET):
        assert secret not in output
    assert "Signature=" not in output


# --- ApiError -------------------------------------------------------------------------------


def test_an_api_error_carries_code_message_status_and_request_id(emulator, exchanges, client):
    emulator.ims.inject_fault(
        "NoPermission",
        403,
        action="SetSecurityPreference",
        message="You are not authorized to do this action.",
    )

    with pytest.raises(ApiError) as err:
        client.set_security_preference({"EnableSaveMFATicket": False})

    reply = exchanges[-1]["reply"]
    assert err.value.as_dict() == {
        "type": "ApiError",
        "action": "SetSecurityPreference",
        "code": "NoPermission",
        "message": "You are not authorized to do this action.",
        "http_status": 403,
        "request_id": reply["RequestId"],
        "attempts": 1,
    }
    assert str(err.value).startswith("SetSecurityPreference failed: NoPermission: ")
    assert f"request id {reply['RequestId']}" in str(err.value)
    assert not err.value.retryable
