"""ACS3-HMAC-SHA256 (signature v3), verified as the server sees a request: one verifier for
every door that accepts it (the RPC door in responses.py, Function Compute 3.0 in fc.py).

What the official generated SDKs (the Tea/Darabonba core, alibabacloud-tea-openapi) send and
Alibaba Cloud's "V3 request body and signature mechanism" specifies:

- ``Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<a;b;...>,
  Signature=<hex>``; the signed header names lower case, sorted, ``;``-separated;
- the signature is the hex HMAC-SHA256, keyed with the AccessKey secret, of the string to sign
  ``ACS3-HMAC-SHA256\\n<hex SHA-256 of the canonical request>``;
- the canonical request is, one per line: the method; the path as sent (``/`` for RPC); the
  query, its names and values percent-encoded (RFC 3986, space as ``%20``) and sorted by name;
  the signed headers as ``name:value`` lines (names lower case, values trimmed) followed by an
  empty line; the signed header names again; the hex SHA-256 of the body (``x-acs-content-sha256``,
  the hash of the empty string for no body);
- every common header that is present must be signed: ``host`` and every ``x-acs-*`` header
  (``x-acs-action``, ``x-acs-version``, ``x-acs-date``, ``x-acs-signature-nonce``,
  ``x-acs-content-sha256``, and for a temporary key ``x-acs-security-token`` with
  ``x-acs-accesskey-id``);
- ``x-acs-date`` is ISO 8601 UTC (``2026-12-01T12:00:00Z``) within 15 minutes of the server's
  clock; ``x-acs-signature-nonce`` is used once.

An RPC-style call (IMS, STS, Resource Manager) carries ``x-acs-action`` and ``x-acs-version``
and its parameters in the query; an SDK may also send some as a form-encoded POST body
(``application/x-www-form-urlencoded``), which the body hash then covers.

``verify`` raises ``Rejected`` with a ``kind`` that each door turns into its own service's error
code and shape; it never echoes a secret or a security token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qsl, quote

from .models import KeyPair

ALGORITHM = "ACS3-HMAC-SHA256"
MAX_SKEW_SECONDS = 15 * 60  # "no more than 15 minutes from the server's time"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
AUTHORIZATION = re.compile(
    r"^ACS3-HMAC-SHA256 Credential=(?P<key>[^,\s]+),SignedHeaders=(?P<signed>[a-z0-9;._-]+),"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
# present in every signed request whatever the API style
REQUIRED_HEADERS = ("host", "x-acs-content-sha256", "x-acs-date", "x-acs-signature-nonce")
# an RPC-style call names its action and version in headers
RPC_HEADERS = ("x-acs-action", "x-acs-version")

# The kinds of rejection, in the order the checks run.
UNSUPPORTED_ALGORITHM = "unsupported-algorithm"  # ACS3-HMAC-SM3, ACS3-RSA-SHA256: not verified
MALFORMED = "malformed"  # the Authorization header is not ACS3-HMAC-SHA256's
MISSING_HEADER = "missing-header"  # a required header is absent
UNSORTED = "unsorted"  # SignedHeaders is not sorted and unique
UNSIGNED = "unsigned"  # a header that must be signed is not, or a signed one is absent
DATE_FORMAT_INVALID = "date-format"  # x-acs-date is not ISO 8601 UTC
PAYLOAD_HASH = "payload-hash"  # x-acs-content-sha256 is not the SHA-256 of the body
UNKNOWN_KEY = "unknown-key"  # no such AccessKeyId
SIGNATURE = "signature"  # the signature does not match
EXPIRED = "expired"  # x-acs-date more than 15 minutes from the clock
NONCE_USED = "nonce-used"  # x-acs-signature-nonce seen before
# the security token does not belong to the key (or is missing, or sent with a permanent key)
SECURITY_TOKEN_MISMATCH = "security-token-mismatch"  # noqa: S105 - a kind, not a secret
KEY_ID = "key-id"  # x-acs-accesskey-id is not the Credential's key


class Rejected(Exception):
    """A request ACS3 verification refuses: ``kind`` (one of the constants above), a message
    fit to show the caller, and for a signature mismatch the server's string to sign."""

    def __init__(self, kind: str, message: str, string_to_sign: str = "") -> None:
        super().__init__(message)
        self.kind, self.message, self.string_to_sign = kind, message, string_to_sign


def claims(headers: Mapping[str, str]) -> bool:
    """Whether a request is ACS3-signed (its Authorization names an ACS3 algorithm); ``headers``
    with lower-case names."""
    return headers.get("authorization", "").startswith("ACS3-")


def credential(headers: Mapping[str, str]) -> str | None:
    """The AccessKeyId an ACS3 request names (unverified), or None."""
    match = AUTHORIZATION.match(headers.get("authorization", ""))
    return match["key"] if match else None


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def canonical_query(query: str) -> str:
    """The sorted, percent-encoded query of a raw query string as the server received it."""
    pairs = sorted((_encode(k), _encode(v)) for k, v in parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_request(
    method: str,
    raw_path: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: Iterable[str],
    payload_sha256: str,
) -> str:
    """The canonical request: ``raw_path`` as sent (percent-encoded), ``query`` the raw query
    string, ``headers`` with lower-case names."""
    signed = list(signed_headers)
    lines = "".join(f"{name}:{headers[name].strip()}\n" for name in signed)
    return "\n".join(
        [
            method.upper(),
            raw_path or "/",
            canonical_query(query),
            lines,
            ";".join(signed),
            payload_sha256,
        ]
    )


def string_to_sign(canonical: str) -> str:
    return f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def signature(secret: str, canonical: str) -> str:
    return hmac.new(secret.encode(), string_to_sign(canonical).encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Verified:
    access_key_id: str
    key: KeyPair
    date: datetime


def verify(
    method: str,
    raw_path: str,
    query: str,
    headers: Mapping[str, str],
    payload: bytes,
    *,
    keys: Mapping[str, KeyPair],
    now: float,
    use_nonce: Callable[[str], bool],
    required: Iterable[str] = REQUIRED_HEADERS,
    max_skew_seconds: float = MAX_SKEW_SECONDS,
) -> Verified:
    """Verify an ACS3-signed request; ``headers`` with lower-case names, ``payload`` the body as
    received. ``use_nonce`` records a nonce and says whether it was fresh; it is called only for
    a request whose signature and date hold. Raises ``Rejected``."""
    authorization = headers.get("authorization", "")
    algorithm = authorization.split(" ", 1)[0]
    if algorithm != ALGORITHM:
        raise Rejected(
            UNSUPPORTED_ALGORITHM,
            f"the signature algorithm {algorithm!r} is not supported here: sign with {ALGORITHM}",
        )
    match = AUTHORIZATION.match(authorization)
    if match is None:
        raise Rejected(
            MALFORMED,
            f"the Authorization header is not '{ALGORITHM} Credential=<AccessKeyId>,"
            "SignedHeaders=<names>,Signature=<hex>'",
        )
    required = tuple(required)
    for name in required:
        if not headers.get(name):
            raise Rejected(MISSING_HEADER, f"required HTTP header {name} was not specified")
    signed = match["signed"].split(";")
    if signed != sorted(set(signed)):
        raise Rejected(UNSORTED, "SignedHeaders must be sorted and unique")
    unsigned = [
        name
        for name in headers
        if (name in required or name == "host" or name.startswith("x-acs-")) and name not in signed
    ]
    absent = [name for name in signed if name not in headers]
    if unsigned or absent:
        raise Rejected(
            UNSIGNED,
            f"headers that must be signed are not: {unsigned}; signed but absent: {absent}",
        )
    try:
        date = datetime.strptime(headers["x-acs-date"], DATE_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        raise Rejected(
            DATE_FORMAT_INVALID, "x-acs-date is not an ISO 8601 UTC time (2006-01-02T15:04:05Z)"
        ) from None
    # the server's canonical request hashes the body it received, not the hash it was told
    content_sha256 = hashlib.sha256(payload).hexdigest()
    canonical = canonical_request(method, raw_path, query, headers, signed, content_sha256)
    if not hmac.compare_digest(headers["x-acs-content-sha256"], content_sha256):
        raise Rejected(
            PAYLOAD_HASH,
            "x-acs-content-sha256 is not the SHA-256 of the body",
            string_to_sign(canonical),
        )
    key_id = match["key"]
    key = keys.get(key_id)
    if key is None:
        raise Rejected(UNKNOWN_KEY, f"the access key {key_id!r} is not found")
    if not hmac.compare_digest(signature(key.secret, canonical), match["signature"]):
        raise Rejected(
            SIGNATURE,
            "the request signature does not match the server's calculation",
            string_to_sign(canonical),
        )
    skew = abs(now - date.timestamp())
    if skew > max_skew_seconds:
        raise Rejected(
            EXPIRED,
            f"the x-acs-date header is {int(skew)} seconds from the server's time; at most "
            f"{int(max_skew_seconds)} are allowed",
        )
    nonce = headers["x-acs-signature-nonce"]
    if not use_nonce(nonce):
        raise Rejected(NONCE_USED, f"the signature nonce {nonce!r} was used already")
    token = headers.get("x-acs-security-token")
    if (key.security_token or None) != (token or None):
        raise Rejected(
            SECURITY_TOKEN_MISMATCH,
            "the security token does not match the access key"
            if token
            else "the access key is temporary: its security token is missing",
        )
    if token and headers.get("x-acs-accesskey-id") != key_id:
        raise Rejected(KEY_ID, "x-acs-accesskey-id does not match the credential")
    return Verified(key_id, key, date)


__all__ = [
    "ALGORITHM",
    "AUTHORIZATION",
    "EMPTY_SHA256",
    "MAX_SKEW_SECONDS",
    "REQUIRED_HEADERS",
    "RPC_HEADERS",
    "Rejected",
    "Verified",
    "canonical_query",
    "canonical_request",
    "claims",
    "credential",
    "lower_headers",
    "signature",
    "string_to_sign",
    "verify",
]
