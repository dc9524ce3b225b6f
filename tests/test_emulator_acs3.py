"""The emulator's RPC door answers the official generated SDKs, which sign with ACS3-HMAC-SHA256.

The official clients (alibabacloud_ims20190815, alibabacloud_sts20150401,
alibabacloud_resourcemanager20200331, on alibabacloud-tea-openapi) are independent parties:
they build, sign and parse every request themselves. Each is driven through both doors, the
``responses`` door on requests' HTTPAdapter (which the Tea core sends through) and the HTTP
server on a loopback port. What they read must be what the guard's own client (signature v1)
reads. Requests they signed are then tampered with on the way, and the emulator refuses each
with the code the RPC services answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest
import requests
import responses
from alibabacloud_ims20190815 import models as ims_models
from alibabacloud_ims20190815.client import Client as ImsSdk
from alibabacloud_resourcemanager20200331 import models as rm_models
from alibabacloud_resourcemanager20200331.client import Client as ResourceManagerSdk
from alibabacloud_sts20150401 import models as sts_models
from alibabacloud_sts20150401.client import Client as StsSdk
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.models import Config
from alibabacloud_tea_openapi.utils_models import OpenApiRequest, Params
from darabonba.runtime import RuntimeOptions

from secpref_guard import fields as F
from secpref_guard.client import RetryPolicy
from secpref_guard.credentials import Credentials
from secpref_guard.emulator import mock_endpoint
from secpref_guard.emulator.acs3 import canonical_request, signature
from secpref_guard.emulator.mock import REQUESTS_SEND
from secpref_guard.emulator.resourcemanager import Organisation, organisation
from secpref_guard.emulator.server import BackgroundServer
from secpref_guard.emulator.sts import role_arn
from secpref_guard.ims import ImsClient

HOST = "127.0.0.1:8765"
ENDPOINT = f"http://{HOST}"
KEY_ID, KEY_SECRET = "test-key-id", "test-key-secret"
MEMBER_ROLE = "ResourceDirectoryAccountAccessRole"
NO_SLEEP = RetryPolicy(attempts=1, sleep=lambda seconds: None)
ERROR_KEYS = {"RequestId", "HostId", "Code", "Message", "Recommend"}


class WallClock:
    """The real time plus an offset a test moves (the emulator's and STS's clock)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Door:
    """One front door: the endpoint the official SDK is configured with (host:port, HTTP) and
    the URL the guard's own client is given."""

    name: str
    org: Organisation
    host: str
    clock: WallClock

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def config(self, key_id: str = KEY_ID, secret: str = KEY_SECRET, token: str | None = None):
        return Config(
            access_key_id=key_id,
            access_key_secret=secret,
            security_token=token,
            endpoint=self.host,
            protocol="http",
            read_timeout=10_000,
            connect_timeout=5_000,
        )

    def ims(self, *key: str | None) -> ImsSdk:
        return ImsSdk(self.config(*key))  # type: ignore[arg-type]

    def sts(self, *key: str | None) -> StsSdk:
        return StsSdk(self.config(*key))  # type: ignore[arg-type]

    def resourcemanager(self, *key: str | None) -> ResourceManagerSdk:
        return ResourceManagerSdk(self.config(*key))  # type: ignore[arg-type]

    def guard_client(self, key_id: str = KEY_ID, secret: str = KEY_SECRET) -> ImsClient:
        return ImsClient(self.url, Credentials(key_id, secret), retry=NO_SLEEP)


@pytest.fixture(params=["responses", "server"])
def door(request: pytest.FixtureRequest) -> Iterator[Door]:
    clock = WallClock()
    org = organisation(2, clock=clock)
    org.emulator.clock = clock
    org.emulator.add_key(KEY_ID, KEY_SECRET, org.management_account)
    if request.param == "responses":
        # both SDKs' HTTP paths: the Tea core's requests, and aliyun-python-sdk-core's vendored
        # copy that the guard's own client sends through
        with (
            mock_endpoint(org.emulator, ENDPOINT, REQUESTS_SEND),
            mock_endpoint(org.emulator, ENDPOINT),
        ):
            yield Door("responses", org, HOST, clock)
    else:
        with BackgroundServer(org.emulator) as server:
            yield Door("server", org, f"{server.host}:{server.port}", clock)
    org.fc.close()


def error_of(raised: pytest.ExceptionInfo[ClientException]) -> tuple[str, int]:
    return raised.value.code, raised.value.status_code


# --- IMS: both settings, with a permanent key and with an STS token --------------------------


def test_get_security_preference_reads_what_the_guard_reads(door: Door) -> None:
    door.org.emulator.ims.put(
        door.org.management_account,
        LoginSessionDuration="6",
        LoginNetworkMasks="10.0.0.0/8;192.168.0.0/16",
        MFAOperationForLogin="adaptive",
    )

    body = door.ims().get_security_preference().body.to_map()

    official, _ = F.SECURITY_PREFERENCE.read_response(body["SecurityPreference"])
    assert official == door.guard_client().get_security_preference().values
    login = body["SecurityPreference"]["LoginProfilePreference"]
    assert (login["LoginSessionDuration"], login["MFAOperationForLogin"]) == (6, "adaptive")
    assert body["RequestId"]


def test_set_security_preference_is_what_the_guard_then_reads(door: Door) -> None:
    request = ims_models.SetSecurityPreferenceRequest(
        login_session_duration=3,
        login_network_masks="10.0.0.0/8",
        mfaoperation_for_login="mandatory",
        verification_types=["sms", "email"],
        max_idle_days_for_users=90,
        # the emulator takes booleans as the API documents them: the lower-case literals
        enable_save_mfaticket="false",  # type: ignore[arg-type]
        allow_user_to_manage_access_keys="false",  # type: ignore[arg-type]
    )

    reply = door.ims().set_security_preference(request).body.to_map()

    read = door.guard_client().get_security_preference().values
    assert read["LoginSessionDuration"] == 3
    assert read["LoginNetworkMasks"] == frozenset({"10.0.0.0/8"})
    assert read["MFAOperationForLogin"] == "mandatory"
    assert read["VerificationTypes"] == frozenset({"sms", "email"})
    assert read["MaxIdleDaysForUsers"] == 90
    assert read["EnableSaveMFATicket"] is False
    assert read["AllowUserToManageAccessKeys"] is False
    echoed, _ = F.SECURITY_PREFERENCE.read_response(reply["SecurityPreference"])
    assert echoed == read
    (call,) = [c for c in door.org.emulator.ims.calls if c.action == "SetSecurityPreference"]
    assert call.params["VerificationTypes"] == '["sms","email"]'  # the SDK's JSON array
    assert "AccessKeyId" not in call.params  # protocol parameters are not the action's


def test_password_policy_get_and_set_match_the_guard_client(door: Door) -> None:
    door.ims().set_password_policy(
        ims_models.SetPasswordPolicyRequest(
            minimum_password_length=14,
            require_symbols="true",  # type: ignore[arg-type]
            password_reuse_prevention=5,
            max_login_attemps=5,
        )
    )

    official = door.ims().get_password_policy().body.to_map()["PasswordPolicy"]
    ours = door.guard_client().get_password_policy().values
    assert F.PASSWORD_POLICY.read_response(official)[0] == ours
    assert (ours["MinimumPasswordLength"], ours["RequireSymbols"]) == (14, True)
    assert (ours["PasswordReusePrevention"], ours["MaxLoginAttemps"]) == (5, 5)

    # and the other way round: what the guard writes, the official SDK reads
    guard = door.guard_client()
    live = guard.get_password_policy()
    guard.set_password_policy({**live.values, "MinimumPasswordLength": 20}, live)
    again = door.ims().get_password_policy().body.password_policy
    assert again.minimum_password_length == 20


def test_an_sts_token_signs_for_the_function_role(door: Door) -> None:
    key_id, secret, token = door.org.guard_key

    body = door.ims(key_id, secret, token).get_security_preference().body.to_map()

    assert "SecurityPreference" in body
    call = door.org.emulator.ims.calls[-1]
    assert (call.action, call.account) == ("GetSecurityPreference", door.org.management_account)
    assert call.principal == "assumed-role/secpref-guard-role/fc"
    assert "SecurityToken" not in call.params


# --- STS and Resource Manager ----------------------------------------------------------------


def test_assume_role_into_a_member_then_manage_its_settings(door: Door) -> None:
    member = door.org.members[0]
    sts = door.sts(*door.org.guard_key)

    assumed = sts.assume_role(
        sts_models.AssumeRoleRequest(
            role_arn=role_arn(member, MEMBER_ROLE),
            role_session_name="official-sdk",
            duration_seconds=900,
        )
    ).body
    creds = assumed.credentials
    assert creds.access_key_id.startswith("STS.")
    assert assumed.assumed_role_user.arn.endswith(f":role/{MEMBER_ROLE.lower()}/official-sdk")

    member_ims = door.ims(creds.access_key_id, creds.access_key_secret, creds.security_token)
    member_ims.set_password_policy(ims_models.SetPasswordPolicyRequest(minimum_password_length=16))
    assert door.org.emulator.ims.state(member, "password-policy")["MinimumPasswordLength"] == 16
    assert (
        door.org.emulator.ims.state(door.org.management_account, "password-policy")[
            "MinimumPasswordLength"
        ]
        != 16
    )

    who = door.sts(
        creds.access_key_id, creds.access_key_secret, creds.security_token
    ).get_caller_identity()
    assert (who.body.account_id, who.body.identity_type) == (member, "AssumedRoleUser")


def test_get_caller_identity_of_a_permanent_key(door: Door) -> None:
    who = door.sts().get_caller_identity().body
    assert (who.account_id, who.identity_type) == (door.org.management_account, "Account")
    assert who.arn == f"acs:ram::{door.org.management_account}:root"


def test_assume_role_refusals_keep_their_codes(door: Door) -> None:
    with pytest.raises(ClientException) as raised:
        door.sts(*door.org.guard_key).assume_role(
            sts_models.AssumeRoleRequest(
                role_arn=role_arn("1999999999999999", MEMBER_ROLE), role_session_name="x-y"
            )
        )
    assert error_of(raised) == ("EntityNotExist.Role", 404)


def test_an_expired_sts_key_is_refused(door: Door) -> None:
    member = door.org.members[1]
    creds = (
        door.sts(*door.org.guard_key)
        .assume_role(
            sts_models.AssumeRoleRequest(
                role_arn=role_arn(member, MEMBER_ROLE), role_session_name="short-lived"
            )
        )
        .body.credentials
    )
    door.clock.offset += 3600 + 1  # past its hour; the date the SDK signs is still "now"
    door.org.emulator.clock = time.time  # the RPC door's own clock is not what expired it

    with pytest.raises(ClientException) as raised:
        door.ims(
            creds.access_key_id, creds.access_key_secret, creds.security_token
        ).get_password_policy()
    assert error_of(raised) == ("InvalidSecurityToken.Expired", 400)


def test_list_accounts_and_get_account_match_the_directory(door: Door) -> None:
    rm = door.resourcemanager(*door.org.guard_key)

    listed = rm.list_accounts(rm_models.ListAccountsRequest(page_size=100)).body
    ids = [a.account_id for a in listed.accounts.account]
    assert ids == list(door.org.directory.members)
    assert listed.total_count == len(ids) == 3

    member = door.org.members[0]
    account = rm.get_account(rm_models.GetAccountRequest(account_id=member)).body.account
    assert (account.account_id, account.status) == (member, "CreateSuccess")
    assert account.resource_directory_id == door.org.directory.directory_id

    with pytest.raises(ClientException) as raised:
        rm.get_account(rm_models.GetAccountRequest(account_id="1888888888888888"))
    assert error_of(raised) == ("EntityNotExists.Account", 404)


# --- a form-encoded POST body, as the Tea core sends for formData parameters -----------------


def form_call(door: Door, body: dict[str, str]) -> dict[str, Any]:
    """SetPasswordPolicy through the Tea core's generic call, its parameters in the body."""
    params = Params(
        action="SetPasswordPolicy",
        version="2019-08-15",
        protocol="HTTP",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    return door.ims().call_api(params, OpenApiRequest(body=body), RuntimeOptions())


def test_parameters_in_a_form_body_are_read_and_signed(door: Door) -> None:
    form_call(door, {"MinimumPasswordLength": "18", "RequireNumbers": "true"})

    state = door.org.emulator.ims.state(door.org.management_account, "password-policy")
    assert (state["MinimumPasswordLength"], state["RequireNumbers"]) == (18, True)


# --- requests the official SDK signed, tampered with on the way ------------------------------


@dataclass
class Wire:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


def capture(door: Door, send: Any) -> Wire:
    """The request the official SDK sends for ``send(door)``, captured before the emulator
    sees it (the call itself gets a placeholder answer)."""
    sent: list[Any] = []

    def keep(request: Any) -> tuple[int, dict[str, str], bytes]:
        sent.append(request)
        return 200, {"Content-Type": "application/json"}, b'{"RequestId": "captured"}'

    with responses.RequestsMock(target=REQUESTS_SEND, assert_all_requests_are_fired=False) as r:
        for method in ("GET", "POST"):
            r.add_callback(method, re.compile(re.escape(f"http://{door.host}/")), callback=keep)
        # the placeholder answer may not parse as the action's reply: the request is what counts
        with contextlib.suppress(Exception):
            send(door)
    (request,) = sent
    body = request.body or b""
    return Wire(
        request.method,
        request.url,
        dict(request.headers),
        body.encode() if isinstance(body, str) else body,
    )


def deliver(door: Door, wire: Wire) -> tuple[int, dict[str, Any]]:
    """Send a captured request through the door under test, byte for byte."""
    if door.name == "responses":
        status, _, payload = door.org.emulator.handle(
            wire.method, wire.url, wire.headers, wire.body
        )
        return status, json.loads(payload)
    parts = urlsplit(wire.url)
    url = urlunsplit(("http", door.host, parts.path, parts.query, ""))
    headers = {k: v for k, v in wire.headers.items() if k.lower() != "content-length"}
    reply = requests.request(wire.method, url, headers=headers, data=wire.body, timeout=10)
    return reply.status_code, reply.json()


def get_policy(door: Door) -> None:
    door.ims().get_password_policy()


def set_policy_in_body(door: Door) -> None:
    form_call(door, {"MinimumPasswordLength": "12"})


def resign(
    wire: Wire, secret: str = KEY_SECRET, key_id: str = KEY_ID, signed: list[str] | None = None
) -> None:
    """Sign ``wire`` again after a change, as the SDK would have (the verifier's own helpers):
    the same signed headers, or ``signed``."""
    lower = {k.lower(): v for k, v in wire.headers.items()}
    names = signed or signed_headers(wire)
    parts = urlsplit(wire.url)
    canonical = canonical_request(
        wire.method, parts.path, parts.query, lower, names, lower["x-acs-content-sha256"]
    )
    set_header(wire, "Authorization", authorization(key_id, names, signature(secret, canonical)))


def authorization(key_id: str, signed: list[str], hex_signature: str) -> str:
    return (
        f"ACS3-HMAC-SHA256 Credential={key_id},SignedHeaders={';'.join(signed)},"
        f"Signature={hex_signature}"
    )


def signed_headers(wire: Wire) -> list[str]:
    return header(wire, "Authorization").split("SignedHeaders=")[1].split(",")[0].split(";")


def set_header(wire: Wire, name: str, value: str | None) -> None:
    for existing in [k for k in wire.headers if k.lower() == name.lower()]:
        del wire.headers[existing]
    if value is not None:
        wire.headers[name] = value


def header(wire: Wire, name: str) -> str:
    return next(v for k, v in wire.headers.items() if k.lower() == name.lower())


def test_an_untouched_captured_request_is_accepted_once(door: Door) -> None:
    wire = capture(door, get_policy)

    assert deliver(door, wire)[0] == 200
    status, body = deliver(door, wire)  # the same nonce again: a replay
    assert (status, body["Code"]) == (400, "SignatureNonceUsed")
    assert set(body) == ERROR_KEYS


def test_a_tampered_body_does_not_match_its_signature(door: Door) -> None:
    wire = capture(door, set_policy_in_body)
    wire.body = wire.body.replace(b"MinimumPasswordLength=12", b"MinimumPasswordLength=8")

    status, body = deliver(door, wire)

    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")
    assert "server string to sign is:" in body["Message"]
    state = door.org.emulator.ims.state(door.org.management_account, "password-policy")
    assert state["MinimumPasswordLength"] == 8  # the documented default: nothing was written
    assert not [c for c in door.org.emulator.ims.calls if c.action == "SetPasswordPolicy"]


def test_a_tampered_body_with_its_hash_updated_still_fails(door: Door) -> None:
    wire = capture(door, set_policy_in_body)
    wire.body = b"MinimumPasswordLength=8"
    set_header(wire, "x-acs-content-sha256", hashlib.sha256(wire.body).hexdigest())

    status, body = deliver(door, wire)

    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("action", "SignatureDoesNotMatch"),  # a signed header changed: Get became Set
        ("query", "SignatureDoesNotMatch"),  # a parameter added to the query
        ("signature", "SignatureDoesNotMatch"),
        ("other-secret", "SignatureDoesNotMatch"),
        ("unknown-key", "InvalidAccessKeyId.NotFound"),
        ("stale-date", "InvalidTimeStamp.Expired"),
        ("future-date", "InvalidTimeStamp.Expired"),
        ("bad-date", "InvalidTimeStamp.Format"),
        ("unsigned-acs-header", "IncompleteSignature"),  # every x-acs-* header must be signed
        ("signed-but-absent", "IncompleteSignature"),
        ("malformed-authorization", "IncompleteSignature"),
        ("other-algorithm", "InvalidSignatureMethod"),
        ("no-nonce", "MissingParameter"),
        ("no-action", "MissingParameter"),
        ("token-with-permanent-key", "InvalidSecurityToken.MismatchWithAccessKey"),
    ],
)
def test_a_tampered_request_is_refused_with_the_services_code(
    door: Door, change: str, code: str
) -> None:
    wire = capture(door, get_policy)
    if change == "action":
        set_header(wire, "x-acs-action", "SetPasswordPolicy")
    elif change == "query":
        parts = urlsplit(wire.url)
        query = urlencode({"MinimumPasswordLength": "8"})
        wire.url = urlunsplit((*parts[:3], f"{parts.query}&{query}".lstrip("&"), ""))
    elif change == "signature":
        auth = header(wire, "Authorization")
        flipped = "0" if auth[-1] != "0" else "1"
        set_header(wire, "Authorization", auth[:-1] + flipped)
    elif change == "other-secret":
        resign(wire, secret="not-the-secret")
    elif change == "unknown-key":
        resign(wire, key_id="no-such-key")
    elif change in ("stale-date", "future-date", "bad-date"):
        moved = {"stale-date": -16 * 60, "future-date": 16 * 60}.get(change, 0)
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + moved))
        set_header(wire, "x-acs-date", when if change != "bad-date" else "2026-12-01 12:00:00")
        resign(wire)  # correctly signed: only the date is wrong
    elif change == "unsigned-acs-header":
        set_header(wire, "x-acs-extra", "smuggled")
    elif change == "signed-but-absent":
        auth = header(wire, "Authorization")
        names = sorted([*signed_headers(wire), "x-acs-absent"])
        set_header(wire, "Authorization", authorization(KEY_ID, names, auth[-64:]))
    elif change == "malformed-authorization":
        set_header(wire, "Authorization", "ACS3-HMAC-SHA256 Credential=test-key-id")
    elif change == "other-algorithm":
        auth = header(wire, "Authorization")
        set_header(wire, "Authorization", auth.replace("ACS3-HMAC-SHA256", "ACS3-HMAC-SM3"))
    elif change == "no-nonce":
        set_header(wire, "x-acs-signature-nonce", None)
    elif change == "no-action":
        set_header(wire, "x-acs-action", None)
    elif change == "token-with-permanent-key":
        set_header(wire, "x-acs-security-token", "CAIS-made-up")
        set_header(wire, "x-acs-accesskey-id", KEY_ID)
        names = sorted({*signed_headers(wire), "x-acs-accesskey-id", "x-acs-security-token"})
        resign(wire, signed=names)

    status, body = deliver(door, wire)

    assert body["Code"] == code, body
    assert status == (404 if code == "InvalidAccessKeyId.NotFound" else 400)
    assert set(body) == ERROR_KEYS
    assert not [c for c in door.org.emulator.ims.calls if c.action == "SetPasswordPolicy"]


def test_a_wrong_or_missing_security_token_is_refused(door: Door) -> None:
    key_id, secret, token = door.org.guard_key

    with pytest.raises(ClientException) as raised:
        door.ims(key_id, secret, token + "x").get_security_preference()
    assert error_of(raised) == ("InvalidSecurityToken.MismatchWithAccessKey", 400)

    with pytest.raises(ClientException) as raised:
        door.ims(key_id, secret).get_security_preference()  # a temporary key without its token
    assert error_of(raised) == ("InvalidSecurityToken.MismatchWithAccessKey", 400)


def test_the_security_token_is_never_echoed(door: Door) -> None:
    key_id, secret, token = door.org.guard_key
    wire = capture(door, lambda d: d.ims(key_id, secret, token).get_password_policy())
    set_header(wire, "x-acs-action", "SetPasswordPolicy")  # breaks the signature

    status, body = deliver(door, wire)

    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")
    assert token not in json.dumps(body)
    assert secret not in json.dumps(body)


def test_a_nonce_is_shared_with_signature_v1(door: Door) -> None:
    """One nonce space: an ACS3 nonce cannot be replayed as a v1 SignatureNonce."""
    wire = capture(door, get_policy)
    nonce = header(wire, "x-acs-signature-nonce")
    assert deliver(door, wire)[0] == 200

    assert not door.org.emulator._spend_nonce(nonce)
    assert door.org.emulator._spend_nonce(uuid.uuid4().hex)


@pytest.mark.parametrize("odd", ["a b", "a+b", "a*b~c", "ü/%;=&?", ""])
def test_query_values_that_need_encoding_verify(door: Door, odd: str) -> None:
    """The official signer and the emulator agree on the canonical query of awkward values:
    the signature holds, so the service's own answer comes back."""
    rm = door.resourcemanager(*door.org.guard_key)

    with pytest.raises(ClientException) as raised:
        rm.get_account(rm_models.GetAccountRequest(account_id=odd))

    assert raised.value.code == ("EntityNotExists.Account" if odd else "MissingParameter")
