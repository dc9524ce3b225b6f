"""Every URL in the configuration is parsed, not prefix-matched (issue 14, findings 1, 2 and 4).

A scheme in capitals once passed validation and made the SDK build ``http://https//host``: the
STS token went out over plain HTTP. An invalid port once passed and failed after the revert with
a bare ValueError. Each case here is a configuration error naming the variable, or a value
normalised into the one form every client reads the same way.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import requests
import responses
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st
from urllib3.util import parse_url

from secpref_guard.client import ApiError, RetryPolicy
from secpref_guard.config import ConfigError, load_config
from secpref_guard.credentials import Credentials
from secpref_guard.emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, Emulator
from secpref_guard.emulator.mock import SDK_SEND, mock_endpoint
from secpref_guard.ims import ImsClient
from secpref_guard.urls import endpoint as _endpoint
from secpref_guard.urls import url as _url

SOME_BASELINE = {"BASELINE_ENABLE_SAVE_MFA_TICKET": "false"}
ENDPOINTS = {
    "GUARD_IMS_ENDPOINT": "ims_endpoint",
    "GUARD_STS_ENDPOINT": "sts_endpoint",
    "GUARD_RESOURCEMANAGER_ENDPOINT": "resourcemanager_endpoint",
    "GUARD_FC_ENDPOINT": "fc_endpoint",
    "GUARD_BUDGET_ENDPOINT": "budget_endpoint",
}
URLS = {"GUARD_DINGTALK_WEBHOOK": "dingtalk_webhook", "GUARD_WEBHOOK_URL": "webhook_url"}


def settings_with(variable: str, value: str):
    extra = {"GUARD_BUDGET_BUCKET": "my-budget"} if "BUDGET" in variable else {}
    return load_config({**SOME_BASELINE, **extra, variable: value}).settings


def error_of(variable: str, value: str) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        settings_with(variable, value)
    assert raised.value.variable == variable
    assert str(raised.value).startswith(f"{variable}: ")
    return raised.value


# --- endpoints: scheme://host[:port] ----------------------------------------------------------


@pytest.mark.parametrize("variable", ENDPOINTS)
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("HTTPS://api.example.aliyuncs.com", "https://api.example.aliyuncs.com"),
        ("Https://API.Example.Aliyuncs.com:443/", "https://api.example.aliyuncs.com:443"),
        ("api.example.aliyuncs.com", "https://api.example.aliyuncs.com"),
        ("HTTP://127.0.0.1:8765", "http://127.0.0.1:8765"),
        ("http://LOCALHOST:8765", "http://localhost:8765"),
        ("http://[::1]:8765", "http://[::1]:8765"),
        ("https://10.0.0.5:08443", "https://10.0.0.5:8443"),
    ],
)
def test_an_endpoint_in_any_letter_case_is_normalised(variable, value, expected):
    assert getattr(settings_with(variable, value), ENDPOINTS[variable]) == expected


@pytest.mark.parametrize("variable", ENDPOINTS)
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("HTTP://api.example.aliyuncs.com", "plain http"),
        ("hTtP://10.0.0.5:8765", "plain http"),
        ("https://api.example.aliyuncs.com:99999", "port '99999'"),
        ("https://api.example.aliyuncs.com:0x50", "port '0x50'"),
        ("https://api.example.aliyuncs.com:0", "port '0'"),
        ("https://api.example.aliyuncs.com:", "port ''"),
        ("https://api.example.aliyuncs.com:-1", "port '-1'"),
        ("https://api.example.aliyuncs.com:٨٠", "port"),
        ("https://", "no host"),
        ("https://:443", "no host"),
        ("https://user@api.example.aliyuncs.com", "user information"),
        ("https://user:pw@api.example.aliyuncs.com", "user information"),
        ("https://api.example.aliyuncs.com/path", "host and optional port only"),
        ("https://api.example.aliyuncs.com?x=1", "host and optional port only"),
        ("https://api.example.aliyuncs.com#top", "fragment"),
        ("https://api example.com", "whitespace"),
        ("https://api.\u2028example.com", "whitespace"),
        ("https://-api.example.com", "not a host name"),
        ("https://api..example.com", "not a host name"),
        ("https://api_example.com", "not a host name"),
        ("https://ïms.aliyuncs.com", "not a host name"),
        ("https://256.1.1.1", "not an IPv4 address"),
        ("https://[::1", "not closed"),
        ("https://[nope]:443", "not an IPv6 address"),
        ("https://https://api.example.aliyuncs.com", "port ''"),
        ("ftp://api.example.aliyuncs.com", "https://"),
        ("://api.example.aliyuncs.com", "https://"),
    ],
)
def test_an_endpoint_that_is_not_scheme_host_port_names_its_variable(variable, value, problem):
    assert problem in error_of(variable, value).problem


def test_the_capital_scheme_reaches_the_sdk_as_https():
    """The finding itself: the configured endpoint is what RpcClient sends to, over https."""
    endpoint = settings_with("GUARD_IMS_ENDPOINT", "HTTPS://IMS.aliyuncs.com").ims_endpoint
    emulator = Emulator.with_default_key()
    with mock_endpoint(emulator, "https://ims.aliyuncs.com"):
        client = ImsClient(
            endpoint,
            Credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET),
            retry=RetryPolicy(attempts=1),
        )
        client.get_security_preference()
    assert emulator.ims.calls[-1].action == "GetSecurityPreference"


@pytest.mark.parametrize(
    ("variable", "default_host", "call"),
    [
        ("GUARD_IMS_ENDPOINT", "ims.aliyuncs.com", "ims"),
        ("GUARD_STS_ENDPOINT", "sts.aliyuncs.com", "sts"),
        ("GUARD_RESOURCEMANAGER_ENDPOINT", "resourcemanager.aliyuncs.com", "resourcemanager"),
    ],
)
def test_each_rpc_endpoint_in_capitals_is_called_over_https_at_its_host(
    variable, default_host, call
):
    """IMS, STS and Resource Manager: the configured value, in capitals, reaches the wire as
    ``https://<host>/`` with the token in the query, never ``http://https//...``."""
    from secpref_guard.directory import ResourceManagerClient
    from secpref_guard.member_access import StsClient

    settings = settings_with(variable, f"HTTPS://{default_host.upper()}")
    endpoint = getattr(settings, ENDPOINTS[variable])
    seen: list[str] = []
    with responses.RequestsMock(target=SDK_SEND, assert_all_requests_are_fired=False) as rsps:

        def reply(request):
            seen.append(request.url)
            return 400, {}, '{"Code": "InvalidParameter", "Message": "stop", "RequestId": "r"}'

        rsps.add_callback("POST", re.compile(r".*"), callback=reply)
        credentials = Credentials("STS.key-id", "key-secret", "the-security-token")
        client = {
            "ims": lambda: ImsClient(endpoint, credentials, retry=RetryPolicy(attempts=1)),
            "sts": lambda: StsClient(endpoint, credentials, retry=RetryPolicy(attempts=1)),
            "resourcemanager": lambda: ResourceManagerClient(
                endpoint, credentials, retry=RetryPolicy(attempts=1)
            ),
        }[call]()
        with pytest.raises(ApiError):  # the reply is an error on purpose: one request
            {
                "ims": lambda: client.get_security_preference(),
                "sts": lambda: client.get_caller_identity(),
                "resourcemanager": lambda: client.list_accounts(),
            }[call]()
    assert seen
    assert all(url.startswith(f"https://{default_host}/?") for url in seen), seen
    assert all("SecurityToken=the-security-token" in url for url in seen)


def test_the_budget_endpoint_in_capitals_reaches_oss_over_https():
    from fake_oss import (
        ACCESS_KEY_ID,
        ACCESS_KEY_SECRET,
        DEFAULT_BUCKET,
        appends_per_revert,
        mock_oss,
    )
    from secpref_guard.budget import from_settings

    settings = load_config(
        {
            **SOME_BASELINE,
            "GUARD_BUDGET_BUCKET": DEFAULT_BUCKET,
            "GUARD_BUDGET_ENDPOINT": "HTTPS://OSS-CN-HANGZHOU.aliyuncs.com",
        }
    ).settings
    with mock_oss() as fake:
        budget = from_settings(settings, Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET))
        assert budget is not None
        budget.record("1234567890123456")
        check = budget.check("1234567890123456")
    assert check.error is None
    assert len(check.recent) == 1
    assert fake.count("AppendObject") == appends_per_revert()


def test_the_fc_endpoint_in_capitals_is_invoked_over_https():
    from secpref_guard.worker_invoke import WorkerInvoker

    endpoint = settings_with(
        "GUARD_FC_ENDPOINT", "HTTPS://1234567890123456.CN-HANGZHOU-internal.fc.aliyuncs.com"
    ).fc_endpoint
    seen: list[str] = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:

        def reply(request):
            seen.append(request.url)
            return 202, {"x-fc-request-id": "req-1"}, b""

        rsps.add_callback("POST", re.compile(r".*"), callback=reply)
        invoker = WorkerInvoker(endpoint, Credentials("key-id", "key-secret"))
        assert invoker.invoke_async("secpref-guard-worker", b"{}") == "req-1"
    assert seen == [
        "https://1234567890123456.cn-hangzhou-internal.fc.aliyuncs.com"
        "/2023-03-30/functions/secpref-guard-worker/invocations"
    ]


def test_a_client_given_a_capital_scheme_still_speaks_https():
    """RpcClient decides http or https from the parsed scheme, not a case-sensitive prefix."""
    seen: list[str] = []
    with responses.RequestsMock(target=SDK_SEND, assert_all_requests_are_fired=False) as rsps:

        def reply(request):
            seen.append(request.url)
            return 200, {}, '{"RequestId": "r-1", "SecurityPreference": {}}'

        rsps.add_callback("POST", re.compile(r".*"), callback=reply)
        client = ImsClient(
            "HTTPS://ims.aliyuncs.com/",
            Credentials("key-id", "key-secret"),
            retry=RetryPolicy(attempts=1),
        )
        client.get_security_preference()
    assert seen
    assert seen[0].startswith("https://ims.aliyuncs.com/?")


# --- URLs with a path: the DingTalk robot and the webhook --------------------------------------


@pytest.mark.parametrize("variable", URLS)
def test_a_webhook_url_keeps_its_path_and_query_and_normalises_scheme_and_host(variable):
    value = "HTTPS://OAPI.DingTalk.com/robot/send?access_token=AbC123"
    expected = "https://oapi.dingtalk.com/robot/send?access_token=AbC123"
    assert getattr(settings_with(variable, value), URLS[variable]) == expected


@pytest.mark.parametrize("variable", URLS)
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("https://hooks.example.com:99999/x", "port '99999'"),
        ("https://hooks.example.com:0x50/x", "port '0x50'"),
        ("https://hooks.example.com:0/x", "port '0'"),
        ("https://hooks.example.com:/x", "port ''"),
        ("https:///robot/send?access_token=x", "no host"),
        ("https://?access_token=x", "no host"),
        ("https://user:pw@hooks.example.com/x", "user information"),
        ("https://hooks.example.com@evil.example.com/x", "user information"),
        ("https://hooks.example.com/x#part", "fragment"),
        ("https://hooks.example.com/a b", "whitespace"),
        ("https://hooks.example.com/x\r\nHost: evil", "whitespace"),
        ("http://hooks.example.com/x", "https://"),
        ("HTTP://hooks.example.com/x", "plain http"),
        ("hooks.example.com/x", "https://"),
        ("https://hooks.example.com:80:80/x", "port '80:80'"),
        ("https://hooks_example.com/x", "not a host name"),
    ],
)
def test_a_bad_webhook_url_names_its_variable(variable, value, problem):
    assert problem in error_of(variable, value).problem


@pytest.mark.parametrize("variable", URLS)
def test_a_webhook_to_this_machine_may_be_plain_http(variable):
    value = "http://127.0.0.1:9000/hook?x=1"
    assert getattr(settings_with(variable, value), URLS[variable]) == value


# --- names in the wrong letter case (finding 4) ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "right"),
    [
        ("Baseline_Allow_User_To_Manage_Access_Keys", "BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS"),
        ("baseline_login_session_duration", "BASELINE_LOGIN_SESSION_DURATION"),
        ("Guard_Mode", "GUARD_MODE"),
        ("guard_ims_endpoint", "GUARD_IMS_ENDPOINT"),
        ("GUARD_LOG_level", "GUARD_LOG_LEVEL"),
    ],
)
def test_a_known_name_in_the_wrong_letter_case_is_an_error_with_the_right_spelling(name, right):
    with pytest.raises(ConfigError) as raised:
        load_config({**SOME_BASELINE, name: "false"})
    assert raised.value.variable == name
    assert f"did you mean {right}?" in str(raised.value)
    assert "case-sensitive" in str(raised.value)


def test_a_misspelt_name_in_the_wrong_letter_case_gets_the_closest_name():
    with pytest.raises(ConfigError) as raised:
        load_config({**SOME_BASELINE, "Baseline_Allow_User_To_Manage_Access_Key": "false"})
    assert "did you mean BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS?" in str(raised.value)


def test_every_field_of_the_table_is_known_in_its_exact_spelling_only():
    """known_variables derives from the field table: each field's variable works as spelt and
    fails in lower case, whatever fields the table gains."""
    from secpref_guard import fields as F

    for f in F.FIELDS:
        with pytest.raises(ConfigError) as raised:
            load_config({**SOME_BASELINE, f.env_var.lower(): "x"})
        assert f"did you mean {f.env_var}?" in str(raised.value)


def test_unrelated_variables_are_left_alone():
    config = load_config({**SOME_BASELINE, "PATH": "/bin", "guardian": "x", "BASELINEX": "1"})
    assert config.baseline == {"EnableSaveMFATicket": False}


# --- what is accepted is read the same way by the HTTP clients ---------------------------------

URLISH = st.text(alphabet="hHtTpPsS:/.[]@?#%-_~0123456789abcdefxAZ \u0131\u212a", max_size=40)


@examples(max_examples=400, deadline=None)
@given(tail=URLISH, scheme=st.sampled_from(["https://", "HTTPS://", "http://", "Http://", ""]))
def test_an_accepted_endpoint_means_the_same_to_urllib3_and_requests(scheme, tail):
    """Whatever the endpoint parser accepts, urllib3 (which requests and both SDKs use) reads as
    the same scheme, host and port, with no user information and no path; and it is stable."""
    value = scheme + tail
    try:
        endpoint = _endpoint(value)
    except ValueError:
        return
    parsed = parse_url(endpoint)
    ours = urlsplit(endpoint)
    assert parsed.scheme in ("https", "http")
    assert parsed.auth is None
    assert parsed.path in (None, "")
    assert parsed.query is None
    assert parsed.fragment is None
    assert (parsed.host or "").strip("[]") == ours.hostname
    assert parsed.port == ours.port
    assert _endpoint(endpoint) == endpoint
    requests.Request("POST", endpoint + "/").prepare()  # no late ValueError


@examples(max_examples=400, deadline=None)
@given(tail=URLISH)
def test_an_accepted_webhook_can_be_sent_to(tail):
    """The finding: a webhook URL that passed the configuration failed at send time with a bare
    ValueError. Whatever is accepted now prepares as a request, to the host it names."""
    value = "https://" + tail
    try:
        url = _url(value)
    except ValueError:
        return
    prepared = requests.Request("POST", url).prepare()
    assert parse_url(prepared.url).host == parse_url(url).host
    assert parse_url(url).auth is None
    assert parse_url(url).fragment is None
