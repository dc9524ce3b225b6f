"""The IMS emulator: it must check what the real service checks, the way the SDK sends it, and
answer in the real service's shape. Requests are built and signed here independently of the
emulator's own code (signature v1 as the API reference describes it), and also sent through
the real SDK, so the emulator is checked against both.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest

from secpref_guard import fields as F
from secpref_guard.client import ImsClient, RetryPolicy
from secpref_guard.credentials import Credentials
from secpref_guard.emulator import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    DEFAULT_ACCOUNT,
    BackgroundServer,
    Emulator,
    ImsBackend,
)
from secpref_guard.emulator.mock import DEFAULT_ENDPOINT
from secpref_guard.emulator.models import documented_defaults

KEY, SECRET = DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
GET, SET = "GetSecurityPreference", "SetSecurityPreference"
ERROR_KEYS = {"Code", "Message", "RequestId", "HostId", "Recommend"}
ACCOUNT = DEFAULT_ACCOUNT  # the emulator's default key belongs to it (see conftest)
ENDPOINT = DEFAULT_ENDPOINT  # where the conftest fixtures serve the emulator


# --- signature v1, written from the reference (not from the emulator) -------------------------


def rfc3986(text: str) -> str:
    return quote(text, safe="-_.~")


def signature_v1(method: str, params: dict[str, str], secret: str) -> str:
    canonical = "&".join(f"{rfc3986(k)}={rfc3986(v)}" for k, v in sorted(params.items()))
    string_to_sign = f"{method}&{rfc3986('/')}&{rfc3986(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signed_url(
    params: dict[str, str],
    *,
    method: str = "GET",
    secret: str = SECRET,
    key: str = KEY,
    **protocol: str,
) -> str:
    full = {
        "Format": "JSON",
        "Version": "2019-08-15",
        "AccessKeyId": key,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": uuid.uuid4().hex,
        "Timestamp": "2026-11-25T04:00:00Z",
        "RegionId": "cn-hangzhou",
        **protocol,
        **params,
    }
    full["Signature"] = signature_v1(method, full, secret)
    return f"{ENDPOINT}/?{urlencode(full, quote_via=quote)}"


def call(
    emulator: Emulator, params: dict[str, str], *, method: str = "GET", **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    status, headers, body = emulator.handle(
        method, signed_url(params, method=method, **kwargs), {}, None
    )
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(body)


@pytest.fixture
def emu() -> Emulator:
    return Emulator.with_default_key()


@pytest.fixture
def recorded(reset_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the SDK sent the in-process emulator: method, parameters, status."""
    seen: list[dict[str, Any]] = []
    handle = reset_emulator.handle

    def recording(method: str, url: str, headers: Any, body: Any) -> Any:
        params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        if body:
            text = body.decode() if isinstance(body, bytes) else body
            params.update(parse_qsl(text, keep_blank_values=True))
        status, reply_headers, payload = handle(method, url, headers, body)
        seen.append(
            {"method": method, "params": params, "status": status, "reply": json.loads(payload)}
        )
        return status, reply_headers, payload

    monkeypatch.setattr(reset_emulator, "handle", recording)
    return seen


def sdk() -> AcsClient:
    return AcsClient(ak=KEY, secret=SECRET, region_id="cn-hangzhou")


def sdk_request(action: str, method: str = "GET") -> CommonRequest:
    request = CommonRequest(domain=ENDPOINT, version="2019-08-15", action_name=action)
    request.set_method(method)
    return request


# --- the signature matches what the SDK sends ------------------------------------------------


def test_a_get_signed_by_the_sdk_matches_the_reference_signature(recorded):
    request = sdk_request(GET, "GET")
    request.add_query_param("ClientNote", "a b*c~d/e+f=g&h:é")

    sdk().do_action_with_exception(request)

    (sent,) = recorded
    assert sent["method"] == "GET"
    unsigned = {k: v for k, v in sent["params"].items() if k != "Signature"}
    assert sent["params"]["Signature"] == signature_v1("GET", unsigned, SECRET)
    assert sent["status"] == 200


def test_a_post_with_body_parameters_signed_by_the_sdk_is_accepted(recorded, reset_emulator):
    request = sdk_request(SET, "POST")
    request.add_body_params("LoginSessionDuration", "8")
    request.add_body_params("LoginNetworkMasks", "10.0.0.0/8;192.168.0.0/16")

    sdk().do_action_with_exception(request)

    (sent,) = recorded
    unsigned = {k: v for k, v in sent["params"].items() if k != "Signature"}
    assert sent["method"] == "POST"
    assert sent["params"]["Signature"] == signature_v1("POST", unsigned, SECRET)
    assert sent["status"] == 200
    state = reset_emulator.ims.state(ACCOUNT)
    assert state["LoginSessionDuration"] == 8
    assert state["LoginNetworkMasks"] == frozenset({"10.0.0.0/8", "192.168.0.0/16"})


def test_the_guards_own_requests_carry_the_reference_signature(recorded, credentials, no_sleep):
    ImsClient(ENDPOINT, credentials, retry=no_sleep).set_security_preference(
        {"LoginNetworkMasks": frozenset({"10.0.0.0/8"}), "VerificationTypes": frozenset({"sms"})}
    )

    (sent,) = recorded
    unsigned = {k: v for k, v in sent["params"].items() if k != "Signature"}
    assert sent["params"]["Signature"] == signature_v1(sent["method"], unsigned, SECRET)
    assert sent["params"]["VerificationTypes"] == '["sms"]'
    assert sent["status"] == 200


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_request_signed_from_the_reference_is_accepted(emu, method):
    status, body = call(emu, {"Action": GET, "Note": "spaces and ~*'()!"}, method=method)
    assert status == 200
    assert set(body) == {"SecurityPreference", "RequestId"}


def test_a_request_signed_with_another_secret_is_rejected(emu):
    status, body = call(emu, {"Action": GET}, secret="not-the-secret")

    assert status == 400
    assert body["Code"] == "SignatureDoesNotMatch"
    # The real service appends its string to sign after a colon, and the SDK splits on it.
    assert body["Message"].split(":", 1)[1].startswith("GET&%2F&")
    assert "not-the-secret" not in body["Message"]
    assert SECRET not in body["Message"]


def test_a_rejected_signature_does_not_echo_the_security_token(emu):
    token = "CAIS+secret/token=value"
    emu.add_key("STS.key", "sts-secret", ACCOUNT, security_token=token)

    status, body = call(
        emu, {"Action": GET, "SecurityToken": token}, key="STS.key", secret="wrong-secret"
    )

    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")
    once = quote(token, safe="~")
    for spelling in (token, once, quote(once, safe="~")):
        assert spelling not in body["Message"]


def test_a_tampered_parameter_breaks_the_signature(emu):
    url = signed_url({"Action": SET, "EnableSaveMFATicket": "false"})
    status, _, body = emu.handle("GET", url.replace("=false", "=true"), {}, None)
    assert status == 400
    assert json.loads(body)["Code"] == "SignatureDoesNotMatch"
    assert emu.ims.calls == []


def test_a_signature_over_get_is_not_valid_for_post(emu):
    url = signed_url({"Action": GET}, method="GET")
    status, _, body = emu.handle("POST", url, {}, None)
    assert (status, json.loads(body)["Code"]) == (400, "SignatureDoesNotMatch")


def test_a_reused_nonce_is_rejected(emu):
    url = signed_url({"Action": GET})

    first, _, _ = emu.handle("GET", url, {}, None)
    second, _, body = emu.handle("GET", url, {}, None)

    assert first == 200
    assert second == 400
    assert json.loads(body)["Code"] == "SignatureNonceUsed"
    assert len(emu.ims.calls) == 1


# --- protocol errors -------------------------------------------------------------------------


def test_an_unknown_access_key_is_rejected(emu):
    status, body = call(emu, {"Action": GET}, key="LTAI-unknown")
    assert (status, body["Code"]) == (404, "InvalidAccessKeyId.NotFound")


def test_an_unknown_action_is_not_found(emu):
    status, body = call(emu, {"Action": "DeleteSecurityPreference"})
    assert (status, body["Code"]) == (404, "InvalidAction.NotFound")


def test_an_unknown_version_is_rejected(emu):
    status, body = call(emu, {"Action": GET}, Version="2015-05-01")
    assert (status, body["Code"]) == (400, "InvalidVersion")
    assert "2015-05-01" in body["Message"]


@pytest.mark.parametrize("missing", ["AccessKeyId", "Signature", "SignatureNonce", "Timestamp"])
def test_a_missing_protocol_parameter_is_named(emu, missing):
    params = dict(parse_qsl(urlsplit(signed_url({"Action": GET})).query))
    del params[missing]
    status, _, body = emu.handle("GET", f"{ENDPOINT}/?{urlencode(params)}", {}, None)
    reply = json.loads(body)
    assert (status, reply["Code"]) == (400, "MissingParameter")
    assert missing in reply["Message"]


def test_an_error_has_the_real_json_shape(emu):
    status, body = call(emu, {"Action": "Nope"})

    assert status == 404
    assert set(body) == ERROR_KEYS
    assert uuid.UUID(body["RequestId"])
    assert body["HostId"] == "ims.aliyuncs.com"
    assert body["Recommend"].endswith(body["Code"])
    assert body["Message"]


# --- parameter validation --------------------------------------------------------------------


@pytest.mark.parametrize("f", F.FIELDS, ids=[f.api_name for f in F.FIELDS])
def test_the_sdks_none_is_an_invalid_parameter_of_every_field(emu, f):
    before = dict(emu.ims.state(ACCOUNT))

    status, body = call(emu, {"Action": SET, f.api_name: "None"})

    assert status == 400
    assert body["Code"] == f"InvalidParameter.{f.api_name}"
    assert set(body) == ERROR_KEYS
    assert emu.ims.state(ACCOUNT) == before


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EnableSaveMFATicket", "True"),
        ("AllowUserToManageAccessKeys", "1"),
        ("LoginSessionDuration", "25"),
        ("LoginSessionDuration", "0"),
        ("MaxIdleDaysForUsers", "100"),
        ("MFAOperationForLogin", "always"),
        ("LoginNetworkMasks", "10.0.0.0/33"),
        ("VerificationTypes", "sms"),
        ("VerificationTypes", '["voice"]'),
    ],
)
def test_a_bad_value_is_an_invalid_parameter_and_changes_nothing(emu, name, value):
    before = dict(emu.ims.state(ACCOUNT))

    status, body = call(emu, {"Action": SET, "AllowUserToChangePassword": "false", name: value})

    assert (status, body["Code"]) == (400, f"InvalidParameter.{name}")
    assert emu.ims.state(ACCOUNT) == before


def test_python_true_sent_through_the_sdk_is_rejected(recorded, reset_emulator):
    request = sdk_request(SET)
    request.add_query_param("EnableSaveMFATicket", True)  # the SDK sends str(True)

    with pytest.raises(ServerException) as err:
        sdk().do_action_with_exception(request)

    assert err.value.get_error_code() == "InvalidParameter.EnableSaveMFATicket"
    assert err.value.get_http_status() == 400
    assert recorded[0]["params"]["EnableSaveMFATicket"] == "True"


# --- the backend: state, Set semantics, switches ---------------------------------------------


def test_a_new_account_starts_at_the_documented_defaults(emu):
    status, body = call(emu, {"Action": GET})

    assert status == 200
    assert F.parse_response(body["SecurityPreference"]) == documented_defaults()
    login = body["SecurityPreference"]["LoginProfilePreference"]
    assert login["LoginNetworkMasks"] == ""
    assert login["OperationForRiskLogin"] == "autonomous"
    assert body["SecurityPreference"]["VerificationPreference"] == {
        "VerificationTypes": {"VerificationType": []}
    }


@pytest.mark.parametrize(
    ("omitted", "masks_after"),
    [("reset", frozenset()), ("keep", frozenset({"10.0.0.0/8"}))],
)
def test_what_a_set_does_to_omitted_fields(omitted, masks_after):
    ims = ImsBackend(omitted=omitted)  # type: ignore[arg-type]
    ims.put(ACCOUNT, LoginNetworkMasks="10.0.0.0/8", LoginSessionDuration="2")

    ims.set_security_preference(ACCOUNT, {"EnableSaveMFATicket": "true"})

    state = ims.state(ACCOUNT)
    assert state["EnableSaveMFATicket"] is True
    assert state["LoginNetworkMasks"] == masks_after
    assert state["LoginSessionDuration"] == (6 if omitted == "reset" else 2)


def test_accounts_have_separate_preferences(emu):
    emu.add_key("member-key", "member-secret", "2234567890123456")

    call(
        emu, {"Action": SET, "MaxIdleDaysForUsers": "90"}, key="member-key", secret="member-secret"
    )

    assert emu.ims.state("2234567890123456")["MaxIdleDaysForUsers"] == 90
    assert emu.ims.state(ACCOUNT)["MaxIdleDaysForUsers"] == 730
    assert [(c.action, c.account) for c in emu.ims.calls] == [(SET, "2234567890123456")]


def test_put_takes_text_or_values(emu):
    emu.ims.put(
        ACCOUNT,
        LoginNetworkMasks=["10.1.2.3/8"],
        VerificationTypes="SMS,email",
        AllowUserToManageAccessKeys=True,
        LoginSessionDuration="12",
    )
    state = emu.ims.state(ACCOUNT)
    assert state["LoginNetworkMasks"] == frozenset({"10.0.0.0/8"})
    assert state["VerificationTypes"] == frozenset({"sms", "email"})
    assert state["AllowUserToManageAccessKeys"] is True
    assert state["LoginSessionDuration"] == 12


def test_put_and_hide_refuse_unknown_fields(emu):
    with pytest.raises(KeyError):
        emu.ims.put(ACCOUNT, EnforceMFAForLogin="true")
    with pytest.raises(KeyError):
        emu.ims.hide_field(ACCOUNT, "EnforceMFAForLogin")


def test_a_hidden_field_is_left_out_of_the_response(emu):
    emu.ims.hide_field(ACCOUNT, "AllowUserToLoginWithPasskey")
    _, body = call(emu, {"Action": GET})
    assert "AllowUserToLoginWithPasskey" not in body["SecurityPreference"]["LoginProfilePreference"]
    assert "AllowUserToChangePassword" in body["SecurityPreference"]["LoginProfilePreference"]


def test_an_injected_fault_fails_the_matching_calls_then_stops(emu):
    emu.ims.inject_fault("Throttling.User", 400, action=SET, times=2, message="flow control")

    results = [
        call(emu, {"Action": action, "LoginSessionDuration": "8"})
        for action in (GET, SET, SET, SET)
    ]

    assert [status for status, _ in results] == [200, 400, 400, 200]
    assert results[1][1]["Code"] == "Throttling.User"
    assert results[1][1]["Message"] == "flow control"
    assert emu.ims.state(ACCOUNT)["LoginSessionDuration"] == 8


def test_a_fault_for_another_account_does_not_fire(emu):
    emu.ims.inject_fault("NoPermission", 403, account="2234567890123456")
    status, _ = call(emu, {"Action": GET})
    assert status == 200


def test_an_ignored_set_answers_success_and_changes_nothing(emu):
    emu.ims.ignored_sets = 1

    first, _ = call(emu, {"Action": SET, "LoginSessionDuration": "8"})
    assert emu.ims.state(ACCOUNT)["LoginSessionDuration"] == 6
    second, _ = call(emu, {"Action": SET, "LoginSessionDuration": "8"})

    assert (first, second) == (200, 200)
    assert emu.ims.state(ACCOUNT)["LoginSessionDuration"] == 8


def test_the_set_response_echoes_the_new_state(emu):
    status, body = call(emu, {"Action": SET, "MFAOperationForLogin": "mandatory"})
    assert status == 200
    assert F.parse_response(body["SecurityPreference"])["MFAOperationForLogin"] == "mandatory"


def test_calls_record_only_the_actions_own_parameters(emu):
    call(emu, {"Action": SET, "LoginSessionDuration": "8"})
    (recorded_call,) = emu.ims.calls
    assert recorded_call.params == {"LoginSessionDuration": "8"}
    assert recorded_call.principal == "root"


# --- the HTTP front door -------------------------------------------------------------------


def test_the_http_server_serves_the_same_emulator_to_the_sdk(capsys):
    emulator = Emulator.with_default_key()
    token = "CAIS+http/front=door"
    emulator.add_key("STS.http", "http-secret", ACCOUNT, security_token=token)

    with BackgroundServer(emulator) as server:
        client = ImsClient(
            server.endpoint,
            Credentials("STS.http", "http-secret", token),
            retry=RetryPolicy(sleep=lambda s: None),
        )
        client.set_security_preference({"LoginSessionDuration": 3})
        preference = client.get_security_preference()

    assert server.endpoint.startswith("http://127.0.0.1:")
    assert preference.values["LoginSessionDuration"] == 3
    assert [c.action for c in emulator.ims.calls] == [SET, GET]
    captured = capsys.readouterr()
    assert token not in captured.err + captured.out  # request lines are never logged
    assert quote(token, safe="") not in captured.err + captured.out
