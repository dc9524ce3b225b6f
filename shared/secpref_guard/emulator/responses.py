"""The emulator's protocol layer: parse an RPC request, check its signature, call the backend,
render the reply in the real JSON shape. Knows nothing about security preferences.

What an RPC request must carry, as the services check it (and aliyun-python-sdk-core sends it):
every protocol parameter; ``SignatureMethod=HMAC-SHA1`` and ``SignatureVersion=1.0``
(signature v1: anything else is ``InvalidSignatureMethod``); a ``Timestamp`` in ISO 8601 UTC,
``2026-11-25T04:00:00Z`` (anything else is ``InvalidTimeStamp.Format``) within 15 minutes of
the service's clock either way (``InvalidTimeStamp.Expired``); a valid signature; a
``SignatureNonce`` never used before (``SignatureNonceUsed``).

Signature schemes are tried in ``Emulator.schemes``. ACS3-HMAC-SHA256 (signature v3, what the
official generated SDKs on alibabacloud-tea-openapi send; emulator/acs3.py verifies it) comes
first and claims every request whose ``Authorization`` names an ACS3 algorithm: the action and
version are then the signed ``x-acs-action`` and ``x-acs-version`` headers, the parameters the
query and the form body, the key the ``Credential``, the STS token ``x-acs-security-token``.
Signature v1 claims every other request. Both are as strict as each other and answer in the
same error shape: a wrong signature or a body that is not the one signed
(``SignatureDoesNotMatch``), a malformed ``Authorization`` or a common header left unsigned
(``IncompleteSignature``), a missing header (``MissingParameter``), a stale ``x-acs-date``
(``InvalidTimeStamp.Expired``), a reused ``x-acs-signature-nonce`` (``SignatureNonceUsed``, one
nonce space for both schemes), an unknown key (``InvalidAccessKeyId.NotFound``), a token that is
not the key's (``InvalidSecurityToken.MismatchWithAccessKey``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from . import acs3
from .exceptions import (
    EmulatedError,
    IncompleteSignature,
    InvalidAccessKeyIdNotFound,
    InvalidActionNotFound,
    InvalidSecurityToken,
    InvalidSignatureMethod,
    InvalidTimeStampExpired,
    InvalidTimeStampFormat,
    InvalidVersion,
    MissingParameter,
    SignatureDoesNotMatch,
    SignatureNonceUsed,
)
from .models import DEFAULT_ACCOUNT, Call, ImsBackend, KeyPair, new_request_id

DEFAULT_ACCESS_KEY_ID = "test-key-id"
DEFAULT_ACCESS_KEY_SECRET = "test-key-secret"  # noqa: S105 - the emulator's documented test key
IMS_VERSION = "2019-08-15"
STS_VERSION = "2015-04-01"
HOST_ID = "ims.aliyuncs.com"
# Signature v1 as the SDK sends it; the only method and version the services accept for it.
SIGNATURE_METHOD = "HMAC-SHA1"
SIGNATURE_VERSION = "1.0"
MAX_CLOCK_SKEW_SECONDS = 15 * 60
TIMESTAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z$")

Reply = tuple[int, dict[str, str], bytes]


class RequestParams(dict[str, str]):
    """An RPC request's parameters (query, then form body), with the raw request they were read
    from, which a header-signed scheme verifies: ``url`` as received and ``body`` as bytes."""

    url: str = ""
    body: bytes = b""


ActionHandler = Callable[[str, Mapping[str, str]], dict[str, Any]]
# A signature scheme: given (method, headers, params), the key pair of a request it verified,
# None for a request that is not signed its way, or an EmulatedError for one it rejects.
Scheme = Callable[[str, Mapping[str, str], Mapping[str, str]], "KeyPair | None"]


def parse_timestamp(text: str) -> float:
    """Seconds since the epoch of an RPC ``Timestamp`` (``YYYY-MM-DDThh:mm:ssZ``, UTC)."""
    match = TIMESTAMP.match(text)
    if match is None:
        raise InvalidTimeStampFormat()
    try:
        moment = datetime(*(int(g) for g in match.groups()), tzinfo=timezone.utc)
    except ValueError:  # 2026-02-30, 25:00
        raise InvalidTimeStampFormat() from None
    return moment.timestamp()


def percent_encode(text: str) -> str:
    """RFC 3986 encoding as the RPC signature uses it (space as %20, '~' left alone)."""
    return quote(text, safe="~")


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    canonical = "&".join(
        f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items())
    )
    return f"{method.upper()}&%2F&{percent_encode(canonical)}"


def sign(method: str, params: Mapping[str, str], secret: str) -> str:
    digest = hmac.new(
        (secret + "&").encode(), string_to_sign(method, params).encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


@dataclass
class Emulator:
    """Accounts, keys and services behind one endpoint: the thing both front doors serve."""

    ims: ImsBackend = field(default_factory=ImsBackend)
    keys: dict[str, KeyPair] = field(default_factory=dict)
    latency_seconds: float = 0.0
    check_nonces: bool = True
    # the service's clock, against which a request's Timestamp must be within the skew
    clock: Callable[[], float] = field(default=time.time, repr=False)
    max_clock_skew_seconds: float = MAX_CLOCK_SKEW_SECONDS
    # nonce -> when it was accepted; one older than the clock skew can no longer come with a
    # valid Timestamp, so it is forgotten (a long-running emulator stays small)
    _nonces: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # tried in order; the first that claims a request authenticates it (see Scheme)
        self.schemes: list[Scheme] = [self._authenticate_acs3, self._authenticate_v1]
        self.services: dict[str, dict[str, ActionHandler]] = {
            # every setting of the field tables: its Get and Set action
            IMS_VERSION: self.ims.actions(),
            # who am I: the account of the signing key (emulator/sts.py adds AssumeRole)
            STS_VERSION: {"GetCallerIdentity": self.get_caller_identity},
        }

    def get_caller_identity(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        key = self.keys[params["AccessKeyId"]]
        arn = f"acs:ram::{account}:{key.principal}"
        identity = "AssumedRoleUser" if key.principal.startswith("assumed-role") else "Account"
        return {
            "AccountId": account,
            "Arn": arn,
            "IdentityType": identity,
            "PrincipalId": account if identity == "Account" else key.principal,
        }

    @classmethod
    def with_default_key(
        cls,
        access_key_id: str = DEFAULT_ACCESS_KEY_ID,
        access_key_secret: str = DEFAULT_ACCESS_KEY_SECRET,
        account: str = DEFAULT_ACCOUNT,
        **kwargs: Any,
    ) -> Emulator:
        emulator = cls(**kwargs)
        emulator.add_key(access_key_id, access_key_secret, account)
        return emulator

    def add_key(
        self,
        access_key_id: str,
        secret: str,
        account: str = DEFAULT_ACCOUNT,
        security_token: str | None = None,
        principal: str = "root",
    ) -> None:
        self.keys[access_key_id] = KeyPair(secret, account, security_token, principal)

    # --- the one entry point of both front doors --------------------------------------------

    # Tried in order before the RPC door: a route answers the requests it owns (Function
    # Compute's REST invoke, fc.py), or raises an EmulatedError (an expired STS key, sts.py),
    # and returns None for every other request. RPC services register in ``services``.
    routes: list[Callable[[str, str, Mapping[str, str], bytes | str | None], Reply | None]] = field(
        default_factory=list
    )

    def handle(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | str | None
    ) -> Reply:
        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        request_id = new_request_id()
        try:
            for route in self.routes:
                reply = route(method, url, headers, body)
                if reply is not None:
                    return reply
            params = self._params(url, headers, body)
            key = self._authenticate(method, headers, params)
            handler = self._route(params)
            action = params["Action"]
            self.ims.calls.append(Call(action, key.account, _api_params(params), key.principal))
            document = handler(key.account, params)
            document["RequestId"] = request_id
            return 200, {"Content-Type": "application/json"}, json.dumps(document).encode()
        except EmulatedError as exc:
            return (
                exc.status,
                {"Content-Type": "application/json"},
                json.dumps(
                    {
                        "RequestId": request_id,
                        "HostId": HOST_ID,
                        "Code": exc.code,
                        "Message": exc.message,
                        "Recommend": f"https://api.aliyun.com/troubleshoot?q={exc.code}",
                    }
                ).encode(),
            )

    @staticmethod
    def _params(url: str, headers: Mapping[str, str], body: bytes | str | None) -> RequestParams:
        """The request's parameters; for an ACS3 request its protocol parameters are read from
        the headers (unverified here: the scheme verifies them) under the v1 names."""
        params = RequestParams(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        params.url = url
        params.body = body.encode() if isinstance(body, str) else (body or b"")
        lower = acs3.lower_headers(headers)
        if params.body and "application/x-www-form-urlencoded" in lower.get("content-type", ""):
            params.update(parse_qsl(params.body.decode(), keep_blank_values=True))
        if acs3.claims(lower):
            for header, name in (
                ("x-acs-action", "Action"),
                ("x-acs-version", "Version"),
                ("x-acs-security-token", "SecurityToken"),
            ):
                if header in lower:
                    params[name] = lower[header]
            params["AccessKeyId"] = acs3.credential(lower) or ""
        return params

    def _authenticate(
        self, method: str, headers: Mapping[str, str], params: Mapping[str, str]
    ) -> KeyPair:
        for scheme in self.schemes:
            key = scheme(method, headers, params)
            if key is not None:
                return key
        raise MissingParameter(  # pragma: no cover - signature v1 claims every request
            "The input parameter AccessKeyId that is mandatory for processing this request is "
            "not supplied."
        )

    def _authenticate_acs3(
        self, method: str, headers: Mapping[str, str], params: Mapping[str, str]
    ) -> KeyPair | None:
        """ACS3-HMAC-SHA256: claims the requests whose Authorization names an ACS3 algorithm."""
        lower = acs3.lower_headers(headers)
        if not acs3.claims(lower):
            return None
        url = params.url if isinstance(params, RequestParams) else ""
        payload = params.body if isinstance(params, RequestParams) else b""
        parts = urlsplit(url)
        try:
            verified = acs3.verify(
                method,
                parts.path,
                parts.query,
                lower,
                payload,
                keys=self.keys,
                now=self.clock(),
                use_nonce=self._spend_nonce,
                required=(*acs3.REQUIRED_HEADERS, *acs3.RPC_HEADERS),
                max_skew_seconds=self.max_clock_skew_seconds,
            )
        except acs3.Rejected as exc:
            raise _rpc_error(exc) from None
        return verified.key

    def _spend_nonce(self, nonce: str) -> bool:
        """Record a nonce as used now; False if it was used already (either scheme)."""
        if not self.check_nonces:
            return True
        with self._lock:
            if nonce in self._nonces:
                return False
            now = self.clock()
            self._forget_nonces_before(now - 2 * self.max_clock_skew_seconds)
            self._nonces[nonce] = now
            return True

    def _authenticate_v1(
        self, method: str, headers: Mapping[str, str], params: Mapping[str, str]
    ) -> KeyPair:
        """Signature v1 (query parameters, HMAC-SHA1): claims every other request."""
        for required in (
            "AccessKeyId",
            "Signature",
            "SignatureNonce",
            "Timestamp",
            "Version",
            "Action",
        ):
            if not params.get(required):
                raise MissingParameter(
                    f"The input parameter {required} that is mandatory "
                    "for processing this request is not supplied."
                )
        key = self.keys.get(params["AccessKeyId"])
        if key is None:
            raise InvalidAccessKeyIdNotFound("Specified access key is not found.")
        method_used = params.get("SignatureMethod", "")
        version_used = params.get("SignatureVersion", "")
        if method_used != SIGNATURE_METHOD:
            raise InvalidSignatureMethod(f"SignatureMethod {method_used!r}")
        if version_used != SIGNATURE_VERSION:
            raise InvalidSignatureMethod(f"SignatureVersion {version_used!r}")
        sent_at = parse_timestamp(params["Timestamp"])
        if abs(self.clock() - sent_at) > self.max_clock_skew_seconds:
            raise InvalidTimeStampExpired()
        unsigned = {k: v for k, v in params.items() if k != "Signature"}
        expected = sign(method, unsigned, key.secret)
        if not hmac.compare_digest(expected, params["Signature"]):
            # The echoed string to sign would carry the security token: it is shown masked.
            shown = dict(unsigned)
            if "SecurityToken" in shown:
                shown["SecurityToken"] = "***"
            raise SignatureDoesNotMatch(string_to_sign(method, shown))
        if key.security_token is not None and params.get("SecurityToken") != key.security_token:
            raise InvalidSecurityToken(
                "The security token you provided does not match the access key."
            )
        if key.security_token is None and params.get("SecurityToken"):
            raise InvalidSecurityToken("A security token was sent with a permanent access key.")
        if not self._spend_nonce(params["SignatureNonce"]):
            raise SignatureNonceUsed("Specified signature nonce was used already.")
        return key

    def _forget_nonces_before(self, cutoff: float) -> None:
        # insertion order is acceptance order (the clock does not run backwards in practice)
        while self._nonces:
            oldest, accepted = next(iter(self._nonces.items()))
            if accepted >= cutoff:
                return
            del self._nonces[oldest]

    def _route(self, params: Mapping[str, str]) -> ActionHandler:
        actions = self.services.get(params["Version"])
        if actions is None:
            raise InvalidVersion(f"Specified parameter Version is not valid: {params['Version']}")
        handler = actions.get(params["Action"])
        if handler is None:
            raise InvalidActionNotFound(
                "Specified api is not found, please check your url and method."
            )
        return handler


_PROTOCOL_PARAMS = frozenset(
    {
        "AccessKeyId",
        "Signature",
        "SignatureNonce",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureType",
        "Timestamp",
        "Format",
        "Version",
        "Action",
        "RegionId",
        "SecurityToken",
    }
)


def _api_params(params: Mapping[str, str]) -> dict[str, str]:
    """The action's own parameters, without the signature protocol's."""
    return {k: v for k, v in params.items() if k not in _PROTOCOL_PARAMS}


def _rpc_error(exc: acs3.Rejected) -> EmulatedError:
    """The RPC services' error for an ACS3 refusal."""
    kind = exc.kind
    if kind in (acs3.SIGNATURE, acs3.PAYLOAD_HASH):
        # the server hashes the body it received: a body that is not the one signed is a
        # signature that does not match
        return SignatureDoesNotMatch(exc.string_to_sign or exc.message)
    if kind in (acs3.MALFORMED, acs3.UNSORTED, acs3.UNSIGNED):
        return IncompleteSignature(exc.message)
    if kind == acs3.UNSUPPORTED_ALGORITHM:
        return InvalidSignatureMethod(exc.message)
    if kind == acs3.MISSING_HEADER:
        return MissingParameter(exc.message)
    if kind == acs3.DATE_FORMAT_INVALID:
        return InvalidTimeStampFormat()
    if kind == acs3.EXPIRED:
        return InvalidTimeStampExpired()
    if kind == acs3.NONCE_USED:
        return SignatureNonceUsed("Specified signature nonce was used already.")
    if kind == acs3.UNKNOWN_KEY:
        return InvalidAccessKeyIdNotFound("Specified access key is not found.")
    # SECURITY_TOKEN_MISMATCH, KEY_ID
    return InvalidSecurityToken(exc.message)
