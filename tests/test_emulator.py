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
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest

from secpref_guard import fields as F
from secpref_guard.client import ApiError, RetryPolicy
from secpref_guard.credentials import Credentials
from secpref_guard.emulator import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    DEFAULT_ACCOUNT,
    BackgroundServer,
    Emulator,
    ImsBackend,
)
from secpref_guard.emulator.mock import DEFAULT_ENDPOINT, mock_endpoint
from secpref_guard.emulator.models import documented_defaults
from secpref_guard.ims import ImsClient

SP = F.SECURITY_PREFERENCE  # the grouped setting these tests read and render

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
        "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
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
    setting = F.setting_of(f.api_name)
    before = dict(emu.ims.state(ACCOUNT, setting.name))

    status, body = call(emu, {"Action": setting.set_action, f.api_name: "None"})

    assert status == 400
    # the password policy's codes say how the value is wrong, as the RAM API documents them
    suffix = ".Format" if setting.detailed_error_codes else ""
    assert body["Code"] == f"InvalidParameter.{f.api_name}{suffix}"
    assert set(body) == ERROR_KEYS
    assert emu.ims.state(ACCOUNT, setting.name) == before


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
    assert SP.parse_response(body["SecurityPreference"]) == documented_defaults()
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
    assert SP.parse_response(body["SecurityPreference"])["MFAOperationForLogin"] == "mandatory"


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


# --- the password policy ---------------------------------------------------------------------

GET_PP, SET_PP = "GetPasswordPolicy", "SetPasswordPolicy"
PP = F.PASSWORD_POLICY
PP_INTEGERS = [f for f in PP.fields if f.kind == "int"]
PP_BOOLEANS = [f for f in PP.fields if f.kind == "bool"]


def test_a_new_accounts_password_policy_is_flat_and_at_the_documented_defaults(client, emulator):
    policy = client.get_password_policy()

    assert policy.setting == "password-policy"
    assert policy.values == documented_defaults("password-policy")
    assert policy.values["MinimumPasswordLength"] == 8
    assert policy.values["InitialPasswordAge"] == 14
    assert policy.values["MaxLoginAttemps"] == 0
    assert policy.request_id


def test_the_get_password_policy_response_has_the_real_shape(emu):
    status, body = call(emu, {"Action": GET_PP})

    assert status == 200
    assert set(body) == {"PasswordPolicy", "RequestId"}
    assert set(body["PasswordPolicy"]) == {f.api_name for f in PP.fields}
    assert body["PasswordPolicy"]["RequireSymbols"] is False  # JSON booleans, not text
    assert body["PasswordPolicy"]["MaxPasswordAge"] == 0


@pytest.mark.parametrize("f", PP_INTEGERS, ids=lambda f: f.api_name)
def test_each_password_integer_is_accepted_at_both_ends_of_its_range(client, emulator, f):
    low, high = f.bounds
    for value in (low, high):
        client.set_setting(PP, {f.api_name: value})
        assert emulator.ims.state(ACCOUNT, "password-policy")[f.api_name] == value
        assert client.get_setting(PP).values[f.api_name] == value


@pytest.mark.parametrize("f", PP_INTEGERS, ids=lambda f: f.api_name)
def test_a_password_integer_outside_its_range_is_the_documented_range_error(reset_emulator, f):
    low, high = f.bounds
    before = dict(reset_emulator.ims.state(ACCOUNT, "password-policy"))
    for outside in (low - 1, high + 1):
        request = sdk_request(SET_PP, "POST")
        request.add_query_param("RequireSymbols", "true")  # valid: must not be applied either
        request.add_query_param(f.api_name, str(outside))

        with pytest.raises(ServerException) as err:
            sdk().do_action_with_exception(request)

        assert err.value.get_http_status() == 400
        assert err.value.get_error_code() == f"InvalidParameter.{f.api_name}.Range"
        assert err.value.get_error_msg() == (
            f'The parameter - "{f.api_name}" MUST be in the range of {low} and {high}.'
        )
    assert reset_emulator.ims.state(ACCOUNT, "password-policy") == before


@pytest.mark.parametrize("f", PP.fields, ids=lambda f: f.api_name)
@pytest.mark.parametrize("text", ["True", "", "1.5", "ten", "None"])
def test_a_malformed_password_value_is_a_format_error_and_changes_nothing(emu, f, text):
    before = dict(emu.ims.state(ACCOUNT, "password-policy"))

    status, body = call(emu, {"Action": SET_PP, "HardExpire": "true", f.api_name: text})

    assert (status, body["Code"]) == (400, f"InvalidParameter.{f.api_name}.Format")
    assert body["Message"] == f'The format of the parameter - "{f.api_name}" is incorrect.'
    assert set(body) == ERROR_KEYS
    assert emu.ims.state(ACCOUNT, "password-policy") == before


@pytest.mark.parametrize(
    ("omitted", "after"),
    [
        ("reset", {"MinimumPasswordLength": 8, "MaxLoginAttemps": 0, "InitialPasswordAge": 14}),
        ("keep", {"MinimumPasswordLength": 20, "MaxLoginAttemps": 5, "InitialPasswordAge": 7}),
    ],
)
def test_what_a_set_password_policy_does_to_omitted_fields(omitted, after):
    ims = ImsBackend(omitted=omitted)  # type: ignore[arg-type]
    ims.put(ACCOUNT, MinimumPasswordLength="20", MaxLoginAttemps="5", InitialPasswordAge="7")

    ims.set_password_policy(ACCOUNT, {"RequireSymbols": "true"})

    state = ims.state(ACCOUNT, "password-policy")
    assert state["RequireSymbols"] is True
    assert {name: state[name] for name in after} == after


def test_both_set_semantics_through_the_sdk_for_the_password_policy(client, emulator, omitted):
    emulator.ims.put(ACCOUNT, PasswordReusePrevention="5", HardExpire="true")

    client.set_password_policy({"MinimumPasswordLength": 14})

    values = client.get_password_policy().values
    assert values["MinimumPasswordLength"] == 14
    expected = (0, False) if omitted == "reset" else (5, True)
    assert (values["PasswordReusePrevention"], values["HardExpire"]) == expected


def test_the_omitted_behaviour_can_differ_per_setting():
    ims = ImsBackend(omitted="reset", omitted_by_setting={"password-policy": "keep"})
    ims.put(ACCOUNT, MaxLoginAttemps="5", LoginSessionDuration="2")

    ims.set_password_policy(ACCOUNT, {"RequireNumbers": "true"})
    ims.set_security_preference(ACCOUNT, {"EnableSaveMFATicket": "true"})

    assert ims.state(ACCOUNT, "password-policy")["MaxLoginAttemps"] == 5  # kept
    assert ims.state(ACCOUNT)["LoginSessionDuration"] == 6  # reset


def test_one_settings_set_never_touches_the_other_setting(emu):
    emu.ims.put(ACCOUNT, LoginSessionDuration="2", MinimumPasswordLength="20")
    preference = dict(emu.ims.state(ACCOUNT))
    policy = dict(emu.ims.state(ACCOUNT, "password-policy"))

    assert call(emu, {"Action": SET_PP, "RequireSymbols": "true"})[0] == 200
    assert emu.ims.state(ACCOUNT) == preference
    assert call(emu, {"Action": SET, "EnableSaveMFATicket": "true"})[0] == 200
    assert emu.ims.state(ACCOUNT, "password-policy") == {**policy, **_reset_pp(RequireSymbols=True)}


def _reset_pp(**values: F.Value) -> dict[str, F.Value]:
    return {**documented_defaults("password-policy"), **values}


def test_a_security_preference_parameter_is_not_a_password_policy_parameter(emu):
    before = dict(emu.ims.state(ACCOUNT))

    status, _ = call(emu, {"Action": SET_PP, "LoginSessionDuration": "1"})

    assert status == 200  # an unknown parameter is ignored, as the service ignores it
    assert emu.ims.state(ACCOUNT) == before


def test_the_set_password_policy_response_echoes_the_new_state(emu):
    status, body = call(emu, {"Action": SET_PP, "MinimumPasswordLength": "16"})
    assert status == 200
    assert PP.parse_response(body["PasswordPolicy"])["MinimumPasswordLength"] == 16


def test_faults_and_ignored_sets_apply_to_the_password_policy(client, emulator):
    emulator.ims.inject_fault("NoPermission", 403, action=GET_PP, message="not allowed")
    with pytest.raises(ApiError, match="NoPermission") as err:
        client.get_password_policy()
    assert err.value.http_status == 403
    assert client.get_security_preference().values  # the other setting's Get is not hit
    assert client.get_password_policy().values

    emulator.ims.ignored_sets = 1
    client.set_password_policy({"MinimumPasswordLength": 30})
    assert emulator.ims.state(ACCOUNT, "password-policy")["MinimumPasswordLength"] == 8


def test_a_hidden_password_field_is_unknown_to_the_client(client, emulator):
    emulator.ims.hide_field(ACCOUNT, "InterceptRiskPasswordOnApi")
    values = client.get_password_policy().values
    assert "InterceptRiskPasswordOnApi" not in values
    assert "MinimumPasswordLength" in values


def test_put_sends_each_field_to_its_setting_and_checks_everything_first(emu):
    emu.ims.put(ACCOUNT, MinimumPasswordLength="14", LoginSessionDuration="4", HardExpire=True)

    assert emu.ims.state(ACCOUNT)["LoginSessionDuration"] == 4
    assert emu.ims.state(ACCOUNT, "password-policy")["MinimumPasswordLength"] == 14
    assert emu.ims.state(ACCOUNT, "password-policy")["HardExpire"] is True
    assert "MinimumPasswordLength" not in emu.ims.state(ACCOUNT)
    with pytest.raises(F.FieldValueError, match="from 8 to 32"):
        emu.ims.put(ACCOUNT, LoginSessionDuration="5", MinimumPasswordLength="7")
    assert emu.ims.state(ACCOUNT)["LoginSessionDuration"] == 4  # nothing applied


def test_the_emulator_command_takes_password_policy_fields_for_set(capsys):
    from secpref_guard import cli

    assert cli.main(["emulator", "--port", "0", "--set", "MinimumPasswordLength=7"]) == 1
    err = capsys.readouterr().err
    assert "MinimumPasswordLength=7" in err
    assert "from 8 to 32" in err
    assert err.count("\n") == 1


@pytest.mark.slow
def test_the_emulator_command_serves_a_password_policy_set_on_its_command_line():
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    executable = Path(sys.executable).with_name("secpref-guard")
    server = subprocess.Popen(
        [
            str(executable),
            *("emulator", "--port", str(port), "--json"),
            *("--set", "MinimumPasswordLength=14", "--set", "RequireSymbols=true"),
            *("--set", "LoginSessionDuration=3"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("BASELINE_", "GUARD_"))},
    )
    try:
        endpoint = json.loads(server.stdout.readline())["endpoint"]
        client = ImsClient(
            endpoint, Credentials(KEY, SECRET), retry=RetryPolicy(sleep=lambda s: None)
        )
        policy = client.get_password_policy().values
        preference = client.get_security_preference().values
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()
        server.stderr.close()
    assert (policy["MinimumPasswordLength"], policy["RequireSymbols"]) == (14, True)
    assert policy["MaxLoginAttemps"] == 0
    assert preference["LoginSessionDuration"] == 3


def test_the_http_server_serves_the_password_policy_to_the_sdk():
    emulator = Emulator.with_default_key()
    with BackgroundServer(emulator) as server:
        client = ImsClient(
            server.endpoint, Credentials(KEY, SECRET), retry=RetryPolicy(sleep=lambda s: None)
        )
        client.set_password_policy({"MaxLoginAttemps": 5, "RequireNumbers": True})
        policy = client.get_password_policy()
    assert policy.values["MaxLoginAttemps"] == 5
    assert policy.values["RequireNumbers"] is True
    assert [c.action for c in emulator.ims.calls] == [SET_PP, GET_PP]


# --- the client's generic settings calls -----------------------------------------------------


def test_set_setting_refuses_a_field_of_another_setting(client, emulator):
    with pytest.raises(ValueError, match="SetPasswordPolicy does not take LoginSessionDuration"):
        client.set_setting(PP, {"MinimumPasswordLength": 14, "LoginSessionDuration": 4})
    assert emulator.ims.calls == []


def test_set_setting_refuses_live_values_of_another_setting(client, emulator):
    live = client.get_security_preference()
    with pytest.raises(ValueError, match="security-preference"):
        client.set_setting(PP, {"MinimumPasswordLength": 14}, live=live)


def test_set_security_preference_never_sends_a_password_field(client, emulator):
    client.set_security_preference({"LoginSessionDuration": 4, "MinimumPasswordLength": 14})
    (sent,) = emulator.ims.calls_of(SET)
    assert sent.params == {"LoginSessionDuration": "4"}
    assert emulator.ims.state(ACCOUNT, "password-policy")["MinimumPasswordLength"] == 8


def test_get_setting_reads_every_setting_through_the_sdk(client, emulator):
    emulator.ims.put(ACCOUNT, MinimumPasswordLength="14", MFAOperationForLogin="mandatory")
    read = {s.name: client.get_setting(s) for s in F.SETTINGS}

    assert read["password-policy"].values["MinimumPasswordLength"] == 14
    assert read["security-preference"].values["MFAOperationForLogin"] == "mandatory"
    assert read["security-preference"].extra == {"OperationForRiskLogin": "autonomous"}
    assert read["password-policy"].extra == {}
    assert [c.action for c in emulator.ims.calls] == [GET, GET_PP]


# --- RPC strictness: what the services reject ------------------------------------------------

NOW = 1_795_000_000.0  # 2026-11-18T08:26:40Z: the emulator's clock in these tests


def rpc_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@pytest.fixture
def clocked() -> Emulator:
    return Emulator.with_default_key(clock=lambda: NOW)


@pytest.mark.parametrize("offset", [-15 * 60, -60, 0, 60, 15 * 60])
def test_a_timestamp_within_fifteen_minutes_is_accepted(clocked, offset):
    status, _ = call(clocked, {"Action": GET}, Timestamp=rpc_time(NOW + offset))
    assert status == 200


@pytest.mark.parametrize(
    "timestamp",
    [rpc_time(NOW - 15 * 60 - 1), rpc_time(NOW + 15 * 60 + 1), "2000-01-01T00:00:00Z"],
    ids=["16-minutes-old", "16-minutes-ahead", "year-2000"],
)
def test_a_timestamp_off_by_more_than_fifteen_minutes_is_expired(clocked, timestamp):
    status, body = call(clocked, {"Action": SET, "LoginSessionDuration": "1"}, Timestamp=timestamp)

    assert (status, body["Code"]) == (400, "InvalidTimeStamp.Expired")
    assert body["Message"] == "Specified time stamp or date value is expired."
    assert set(body) == ERROR_KEYS
    assert clocked.ims.state(ACCOUNT)["LoginSessionDuration"] == 6  # nothing written
    assert clocked.ims.calls == []


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-11-18 08:26:40",
        "2026-11-18T08:26:40",
        "2026-11-18T08:26:40.123Z",
        "2026-11-18T08:26:40+00:00",
        "2026-02-30T08:26:40Z",
        "2026-11-18T24:00:00Z",
        "1795000000",
        "yesterday",
    ],
)
def test_a_malformed_timestamp_is_a_format_error(clocked, timestamp):
    status, body = call(clocked, {"Action": GET}, Timestamp=timestamp)

    assert (status, body["Code"]) == (400, "InvalidTimeStamp.Format")
    assert body["Message"] == "Specified time stamp or date value is not well formatted."


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("SignatureMethod", "HMAC-SHA256"),
        ("SignatureMethod", "hmac-sha1"),
        ("SignatureMethod", ""),
        ("SignatureVersion", "2.0"),
        ("SignatureVersion", "1"),
    ],
)
def test_a_signature_method_or_version_other_than_the_sdks_is_rejected(emu, parameter, value):
    # correctly signed with v1 over these parameters: only the declared method is wrong
    status, body = call(emu, {"Action": GET}, **{parameter: value})

    assert (status, body["Code"]) == (400, "InvalidSignatureMethod")
    assert parameter in body["Message"]
    assert set(body) == ERROR_KEYS


def test_the_sdks_own_signature_method_version_and_timestamp_are_accepted(recorded):
    sdk().do_action_with_exception(sdk_request(GET))

    (sent,) = recorded
    assert sent["status"] == 200
    assert (sent["params"]["SignatureMethod"], sent["params"]["SignatureVersion"]) == (
        "HMAC-SHA1",
        "1.0",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", sent["params"]["Timestamp"])


def test_a_nonce_is_single_use_across_actions_and_settings(emu):
    nonce = uuid.uuid4().hex
    first, _ = call(emu, {"Action": GET}, SignatureNonce=nonce)
    status, body = call(emu, {"Action": SET_PP, "HardExpire": "true"}, SignatureNonce=nonce)

    assert first == 200
    assert (status, body["Code"]) == (400, "SignatureNonceUsed")
    assert emu.ims.state(ACCOUNT, "password-policy")["HardExpire"] is False


def test_the_emulator_keeps_room_for_a_second_signature_scheme(emu):
    # A header-signed scheme (ACS3) is one more entry that claims its own requests.
    claimed: list[str] = []

    def header_scheme(method, headers, params):
        if "authorization" not in {k.lower() for k in headers}:
            return None
        claimed.append(method)
        return emu.keys[KEY]

    emu.schemes.insert(0, header_scheme)
    status, _, _ = emu.handle(
        "GET",
        f"{ENDPOINT}/?Action={GET}&Version=2019-08-15",
        {"Authorization": "ACS3-HMAC-SHA256 Credential=test-key-id"},
        None,
    )
    assert (status, claimed) == (200, ["GET"])
    assert call(emu, {"Action": GET})[0] == 200  # v1 requests still go to v1


def test_a_nonce_is_remembered_while_its_timestamp_could_still_be_valid():
    now = [NOW]
    emu = Emulator.with_default_key(clock=lambda: now[0])
    nonce = uuid.uuid4().hex
    assert call(emu, {"Action": GET}, SignatureNonce=nonce, Timestamp=rpc_time(now[0]))[0] == 200

    now[0] += 29 * 60  # within twice the skew: a replay is still refused
    status, body = call(emu, {"Action": GET}, SignatureNonce=nonce, Timestamp=rpc_time(now[0]))
    assert (status, body["Code"]) == (400, "SignatureNonceUsed")

    now[0] += 2 * 60 * 60  # long after: the old nonce is forgotten as new ones come in
    assert call(emu, {"Action": GET}, Timestamp=rpc_time(now[0]))[0] == 200
    assert nonce not in emu._nonces


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MinimumPasswordLength", 7),
        ("MaxLoginAttemps", 33),
        ("MaxLoginAttemps", True),
        ("RequireSymbols", 1),
        ("LoginSessionDuration", 0),
        ("MFAOperationForLogin", "sometimes"),
    ],
)
def test_put_holds_python_values_to_what_the_set_accepts(emu, name, value):
    setting = F.setting_of(name).name
    before = dict(emu.ims.state(ACCOUNT, setting))
    with pytest.raises(F.FieldValueError):
        emu.ims.put(ACCOUNT, **{name: value})
    assert emu.ims.state(ACCOUNT, setting) == before


def test_a_client_whose_clock_is_an_hour_off_gets_one_clear_error(credentials, no_sleep):
    # the service's clock an hour ahead of this machine's: the SDK's Timestamp is stale
    emu = Emulator.with_default_key(clock=lambda: time.time() + 3600)
    with mock_endpoint(emu, ENDPOINT):
        client = ImsClient(ENDPOINT, credentials, retry=no_sleep)
        with pytest.raises(ApiError) as err:
            client.get_password_policy()

    assert err.value.code == "InvalidTimeStamp.Expired"
    assert err.value.http_status == 400
    assert err.value.attempts == 1  # not retried: the next try would be as stale
    assert emu.ims.calls == []
