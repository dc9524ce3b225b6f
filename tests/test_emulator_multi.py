"""The multi-account emulator: STS AssumeRole, Resource Manager ListAccounts and the Function
Compute invoke API, each reached through the real SDK's HTTP path (aliyun-python-sdk-core's
vendored requests for the RPC APIs; the fc2 SDK and the fan-out's invoker through ordinary
requests), and over loopback HTTP through the emulator's server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from email.utils import formatdate

import fc2
import pytest
import requests
from fc2.auth import Auth

from conftest import ENDPOINT
from fc2_client import FunctionInvoker, fc_authorization
from org_support import NO_SLEEP, ONE_TRY, REQUESTS_SEND, WORKER
from secpref_guard.client import ApiError, RpcClient
from secpref_guard.credentials import Credentials
from secpref_guard.emulator import BackgroundServer, mock_endpoint
from secpref_guard.emulator.fc import ASYNC_PAYLOAD_LIMIT
from secpref_guard.emulator.resourcemanager import (
    MEMBER_ROLE,
    RESOURCEMANAGER_VERSION,
    Organisation,
    organisation,
)
from secpref_guard.ims import ImsClient
from secpref_guard.member_access import STS_VERSION, StsClient


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def org(clock: FakeClock) -> Iterator[Organisation]:
    """Three members; every request of both SDKs is answered by the one emulator."""
    o = organisation(3, clock=clock.time)
    with mock_endpoint(o.emulator, ENDPOINT), mock_endpoint(o.emulator, ENDPOINT, REQUESTS_SEND):
        yield o
    o.fc.close()


def guard(o: Organisation) -> Credentials:
    return Credentials(*o.guard_key)


def member_arn(account: str, role: str = MEMBER_ROLE) -> str:
    return f"acs:ram::{account}:role/{role.lower()}"


# --- STS AssumeRole -------------------------------------------------------------------------


def test_assume_role_issues_a_temporary_key_of_the_member_account(org: Organisation) -> None:
    member = org.members[0]
    sts = StsClient(ENDPOINT, guard(org), retry=NO_SLEEP)

    temporary = sts.assume_role(member_arn(member), duration_seconds=900)

    assert temporary.credentials.access_key_id.startswith("STS.")
    assert temporary.credentials.security_token
    assert temporary.expiration == datetime.fromtimestamp(org.sts.clock() + 900, timezone.utc)
    assert temporary.assumed_role_arn.endswith(f"{member}:role/{MEMBER_ROLE.lower()}/secpref-guard")
    # The key works in the member account, and the emulator records who used it.
    ImsClient(ENDPOINT, temporary.credentials, retry=NO_SLEEP).get_security_preference()
    call = org.emulator.ims.calls_of("GetSecurityPreference")[-1]
    assert call.account == member
    assert call.principal == f"assumed-role/{MEMBER_ROLE}/secpref-guard"
    assume = org.emulator.ims.calls_of("AssumeRole")[-1]
    assert assume.params["RoleSessionName"] == "secpref-guard"
    assert assume.params["DurationSeconds"] == "900"


@pytest.mark.parametrize(
    ("arrange", "code", "status"),
    [
        (lambda o: o.sts.remove_role(o.members[0], MEMBER_ROLE), "EntityNotExist.Role", 404),
        (
            lambda o: o.sts.add_role(o.members[0], MEMBER_ROLE, trusted_accounts={"99"}),
            "NoPermission",
            403,
        ),
    ],
    ids=["role-missing", "role-does-not-trust-the-guard"],
)
def test_assume_role_refuses_roles_that_cannot_be_assumed(
    org: Organisation, arrange: object, code: str, status: int
) -> None:
    arrange(org)  # type: ignore[operator]
    with pytest.raises(ApiError) as raised:
        StsClient(ENDPOINT, guard(org), retry=NO_SLEEP).assume_role(member_arn(org.members[0]))
    assert (raised.value.code, raised.value.http_status) == (code, status)
    assert raised.value.attempts == 1  # not retryable


def test_assume_role_refuses_root_and_bad_parameters(org: Organisation) -> None:
    org.emulator.add_key("root-key", "root-secret-123", org.management_account)
    arn = member_arn(org.members[0])
    with pytest.raises(ApiError, match="Roles may not be assumed by root accounts"):
        StsClient(ENDPOINT, Credentials("root-key", "root-secret-123")).assume_role(arn)
    rpc = RpcClient(ENDPOINT, STS_VERSION, guard(org), retry=NO_SLEEP)
    for params, code in [
        (
            {"RoleArn": arn, "RoleSessionName": "secpref-guard", "DurationSeconds": "899"},
            "InvalidParameter.DurationSeconds",
        ),
        ({"RoleArn": arn, "RoleSessionName": "x"}, "InvalidParameter.RoleSessionName"),
        ({"RoleArn": "acs:ram::1:user/alice", "RoleSessionName": "ab"}, "InvalidParameter.RoleArn"),
    ]:
        with pytest.raises(ApiError) as raised:
            rpc.call("AssumeRole", params)
        assert raised.value.code == code


def test_an_expired_temporary_key_is_refused(org: Organisation, clock: FakeClock) -> None:
    temporary = StsClient(ENDPOINT, guard(org), retry=NO_SLEEP).assume_role(
        member_arn(org.members[0]), duration_seconds=900
    )
    ims = ImsClient(ENDPOINT, temporary.credentials, retry=ONE_TRY)
    clock.advance(899)
    ims.get_security_preference()
    clock.advance(1)
    with pytest.raises(ApiError) as raised:
        ims.get_security_preference()
    assert raised.value.code == "InvalidSecurityToken.Expired"


# --- Resource Manager ListAccounts ----------------------------------------------------------


def test_list_accounts_pages_in_the_real_shape(org: Organisation) -> None:
    rpc = RpcClient(ENDPOINT, RESOURCEMANAGER_VERSION, guard(org), retry=NO_SLEEP)
    org.directory.set_status(org.members[2], "CreateFailed")

    first = rpc.call("ListAccounts", {"PageNumber": "1", "PageSize": "3"})
    second = rpc.call("ListAccounts", {"PageNumber": "2", "PageSize": "3"})
    past = rpc.call("ListAccounts", {"PageNumber": "3", "PageSize": "3"})
    default = rpc.call("ListAccounts")

    assert (first["TotalCount"], first["PageNumber"], first["PageSize"]) == (4, 1, 3)
    ids = [a["AccountId"] for a in first["Accounts"]["Account"] + second["Accounts"]["Account"]]
    assert ids == [org.management_account, *org.members]
    assert second["Accounts"]["Account"][0]["Status"] == "CreateFailed"
    assert set(second["Accounts"]["Account"][0]) >= {
        "AccountId",
        "DisplayName",
        "Type",
        "Status",
        "JoinMethod",
        "JoinTime",
        "FolderId",
        "ResourceDirectoryId",
        "ResourceDirectoryPath",
    }
    assert past["Accounts"]["Account"] == []
    assert default["PageSize"] == 10


def test_list_accounts_validates_and_is_for_the_management_account_only(
    org: Organisation,
) -> None:
    rpc = RpcClient(ENDPOINT, RESOURCEMANAGER_VERSION, guard(org), retry=NO_SLEEP)
    for params, code in [
        ({"PageSize": "101"}, "InvalidParameter.PageSize"),
        ({"PageNumber": "0"}, "InvalidParameter.PageNumber"),
    ]:
        with pytest.raises(ApiError) as raised:
            rpc.call("ListAccounts", params)
        assert raised.value.code == code
    org.emulator.add_key("member-key", "member-secret-1", org.members[0], principal="admin")
    member = RpcClient(
        ENDPOINT,
        RESOURCEMANAGER_VERSION,
        Credentials("member-key", "member-secret-1"),
        retry=NO_SLEEP,
    )
    with pytest.raises(ApiError) as raised:
        member.call("ListAccounts")
    assert (raised.value.code, raised.value.http_status) == ("NoPermission", 403)


# --- Function Compute invoke: fc2's scheme, verified ----------------------------------------


def test_the_real_fc2_sdk_invokes_through_the_emulator(org: Organisation) -> None:
    """fc2 2.5.2 signs its own request (FC 2.0 path, a service); the emulator checks it."""
    org.fc.add_function(
        org.management_account, "legacy", lambda e, c: b"ok:" + e, service="guard-service"
    )
    key_id, secret, token = org.guard_key
    client = fc2.Client(
        endpoint=ENDPOINT, accessKeyID=key_id, accessKeySecret=secret, securityToken=token
    )

    sync = client.invoke_function("guard-service", "legacy", payload=b"ping")
    queued = client.invoke_function(
        "guard-service", "legacy", payload=b"{}", headers={"x-fc-invocation-type": "Async"}
    )

    assert sync.data == b"ok:ping"
    assert queued.headers["x-fc-request-id"]
    assert [i.invocation_type for i in org.fc.drain()] == ["Sync", "Async"]
    assert {i.api for i in org.fc.invocations} == {"2016-08-15"}


def test_fc2_with_a_wrong_secret_is_refused(org: Organisation) -> None:
    org.fc.add_function(org.management_account, "legacy", service="guard-service")
    key_id, _, token = org.guard_key
    client = fc2.Client(
        endpoint=ENDPOINT, accessKeyID=key_id, accessKeySecret="wrong-secret", securityToken=token
    )
    with pytest.raises(fc2.FcError) as raised:
        client.invoke_function("guard-service", "legacy", payload=b"{}")
    assert (raised.value.status_code, raised.value.err_code) == (403, "SignatureNotMatch")
    assert org.fc.invocations == []


def test_the_dispatchers_signature_is_fc2s(org: Organisation) -> None:
    key_id, secret, token = org.guard_key
    path = "/2023-03-30/functions/secpref-guard-worker/invocations"
    headers = {
        "date": formatdate(usegmt=True),
        "content-type": "application/json",
        "x-fc-invocation-type": "Async",
        "x-fc-security-token": token,
        "X-Fc-Trace-Id": "trace-1",
        "host": "example",
    }
    ours = fc_authorization(Credentials(key_id, secret, token), "POST", path, headers)
    theirs = Auth(key_id, secret, token).sign_request(
        "POST", path, {k.lower(): v for k, v in headers.items()}
    )
    assert ours == theirs


def test_fc3_async_invoke_is_accepted_then_run_with_the_functions_context(
    org: Organisation,
) -> None:
    seen: list[tuple[bytes, object]] = []
    org.fc.add_function(
        org.management_account, WORKER, lambda e, c: seen.append((e, c)), credentials=guard(org)
    )
    invoker = FunctionInvoker(ENDPOINT, guard(org), retry=NO_SLEEP)

    request_id = invoker.invoke_async(WORKER, b'{"hello": 1}')

    (invocation,) = org.fc.drain()
    assert request_id == invocation.request_id
    assert (invocation.api, invocation.invocation_type, invocation.status) == (
        "2023-03-30",
        "Async",
        "succeeded",
    )
    payload, context = seen[0]
    assert payload == b'{"hello": 1}'
    assert context.account_id == org.management_account  # type: ignore[attr-defined]
    assert context.function.name == WORKER  # type: ignore[attr-defined]
    assert context.credentials.access_key_id == org.guard_key[0]  # type: ignore[attr-defined]
    assert org.emulator.ims.calls_of("InvokeFunction")[-1].params == {
        "FunctionName": WORKER,
        "InvocationType": "Async",
    }


def test_fc3_invoke_errors_have_the_real_codes(org: Organisation) -> None:
    org.fc.add_function(org.management_account, WORKER)
    invoker = FunctionInvoker(ENDPOINT, guard(org), retry=ONE_TRY)

    with pytest.raises(ApiError) as too_large:
        invoker.invoke_async(WORKER, b"x" * (ASYNC_PAYLOAD_LIMIT + 1))
    invoker.invoke_async(WORKER, b"x" * ASYNC_PAYLOAD_LIMIT)  # exactly the limit is fine
    with pytest.raises(ApiError) as missing:
        invoker.invoke_async("no-such-function", b"{}")
    bad_token = FunctionInvoker(
        ENDPOINT, Credentials(org.guard_key[0], org.guard_key[1], "x"), retry=ONE_TRY
    )
    with pytest.raises(ApiError) as token:
        bad_token.invoke_async(WORKER, b"{}")

    assert (too_large.value.code, too_large.value.http_status) == ("EntityTooLarge", 400)
    assert (missing.value.code, missing.value.http_status) == ("FunctionNotFound", 404)
    assert missing.value.request_id
    assert token.value.code == "InvalidSecurityToken"


def test_fc_requests_without_date_or_signature_are_refused(org: Organisation) -> None:
    url = f"{ENDPOINT}/2023-03-30/functions/{WORKER}/invocations"
    unsigned = requests.post(url, data=b"{}", timeout=5)
    key_id = org.guard_key[0]
    undated = requests.post(
        url, data=b"{}", timeout=5, headers={"authorization": f"FC {key_id}:abc"}
    )
    assert (unsigned.status_code, unsigned.json()["Code"]) == (403, "AccessDenied")
    assert (undated.status_code, undated.json()["Code"]) == (400, "MissingRequiredHeader")
    assert undated.headers["x-fc-request-id"] == undated.json()["RequestId"]


def test_a_throttled_invoke_is_retried(org: Organisation) -> None:
    org.fc.add_function(org.management_account, WORKER)
    org.emulator.ims.inject_fault("ResourceThrottled", 503, action="InvokeFunction", times=2)
    assert FunctionInvoker(ENDPOINT, guard(org), retry=NO_SLEEP).invoke_async(WORKER, b"{}")
    assert len(org.emulator.ims.calls_of("InvokeFunction")) == 3


# --- both front doors and the latency -------------------------------------------------------


def test_every_new_api_is_served_over_loopback_http_with_its_latency() -> None:
    o = organisation(2, latency_seconds=0.05)
    o.fc.add_function(o.management_account, WORKER)
    with BackgroundServer(o.emulator) as server:
        base = Credentials(*o.guard_key)
        started = time.perf_counter()
        temporary = StsClient(server.endpoint, base, retry=ONE_TRY).assume_role(
            member_arn(o.members[0])
        )
        pages = RpcClient(server.endpoint, RESOURCEMANAGER_VERSION, base, retry=ONE_TRY).call(
            "ListAccounts"
        )
        FunctionInvoker(server.endpoint, base, retry=ONE_TRY).invoke_async(WORKER, b"{}")
        ImsClient(server.endpoint, temporary.credentials, retry=ONE_TRY).get_security_preference()
        elapsed = time.perf_counter() - started
    o.fc.drain()
    o.fc.close()
    assert pages["TotalCount"] == 3
    assert elapsed >= 4 * 0.05
    assert [c.action for c in o.emulator.ims.calls] == [
        "AssumeRole",
        "ListAccounts",
        "InvokeFunction",
        "GetSecurityPreference",
    ]


def test_the_sync_invoke_returns_the_functions_result(org: Organisation) -> None:
    org.fc.add_function(org.management_account, WORKER, lambda e, c: json.loads(e)["n"] + 1)
    key_id, secret, token = org.guard_key
    path = f"/2023-03-30/functions/{WORKER}/invocations"
    headers = {
        "date": formatdate(usegmt=True),
        "content-type": "application/json",
        "x-fc-security-token": token,
    }
    headers["authorization"] = fc_authorization(
        Credentials(key_id, secret, token), "POST", path, headers
    )
    reply = requests.post(ENDPOINT + path, data=b'{"n": 41}', headers=headers, timeout=5)
    assert (reply.status_code, reply.json()) == (200, 42)
