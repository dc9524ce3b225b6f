"""Our PutEvents signer against the official EventBridge SDK's own signer, over many inputs.

notify.py signs PutEvents by hand (``eventbridge_string_to_sign``, ``eventbridge_signature``).
The official SDK (PyPI alibabacloud-eventbridge) builds its ``authorization`` header with
``alibabacloud_eventbridge_util.client.Client.get_string_to_sign`` over a Tea request and
``get_signature`` (HMAC-SHA1, base64). That util package is imported here as the oracle: the
SDK package itself cannot share the dev environment (it pins alibabacloud-credentials below 1.0,
the FC 3.0 SDK needs 1.x), and it adds nothing to the signature but these two calls.

The SDK sends lower-case header names (``x-acs-*``, ``content-type``, ``date``), which is what
the guard's channel sends too; header names are drawn lower-case for that reason.
"""

from __future__ import annotations

import base64
import hashlib
import sys

from alibabacloud_eventbridge_util.client import Client as Official
from hypothesis import given, settings
from hypothesis import strategies as st
from Tea.request import TeaRequest

from secpref_guard.credentials import Credentials
from secpref_guard.notify.eventbridge import (
    EVENTBRIDGE_PATH,
    EventBridgeChannel,
    EventBus,
    eventbridge_signature,
    eventbridge_string_to_sign,
)

# Header values as HTTP can carry them (no line breaks), but any other text: unicode included.
VALUES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    max_size=40,
)
NAME_TAIL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
NAMES = st.one_of(
    st.sampled_from(
        [
            "accept",
            "content-md5",
            "content-type",
            "date",
            "host",
            "user-agent",
            "x-acs-accesskey-id",
            "x-acs-security-token",
            "x-acs-signature-method",
            "x-acs-signature-nonce",
            "x-acs-signature-version",
            "x-eventbridge-version",
        ]
    ),
    NAME_TAIL.map(lambda tail: f"x-acs-{tail}"),
    NAME_TAIL.map(lambda tail: f"x-acs{tail}"),  # the official filter is a bare prefix
    NAME_TAIL.map(lambda tail: f"x-eventbridge-{tail}"),
    NAME_TAIL,
)
HEADERS = st.dictionaries(NAMES, VALUES, max_size=12)
PATHS = st.one_of(
    st.just(EVENTBRIDGE_PATH),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz/-_.~%", min_size=1, max_size=30).map(
        lambda p: "/" + p
    ),
)
SECRETS = st.text(min_size=1, max_size=40).filter(lambda s: "\udc80" not in s)
BODIES = st.one_of(st.just(b""), st.binary(max_size=200))


def official_string_to_sign(method: str, path: str, headers: dict[str, str]) -> str:
    request = TeaRequest()
    request.method = method
    request.pathname = path
    request.headers = dict(headers)
    request.query = {}  # PutEvents has no query
    return Official.get_string_to_sign(request)


@settings(max_examples=200, deadline=None)
@given(headers=HEADERS, path=PATHS)
def test_the_string_to_sign_is_the_official_one(headers: dict[str, str], path: str) -> None:
    assert eventbridge_string_to_sign("POST", path, headers) == official_string_to_sign(
        "POST", path, headers
    )


@settings(max_examples=150, deadline=None)
@given(headers=HEADERS, secret=SECRETS, body=BODIES)
def test_the_signature_is_the_official_one(
    headers: dict[str, str], secret: str, body: bytes
) -> None:
    """With the body's Content-MD5 (the one way the body enters the signature), empty or not."""
    headers = {
        **headers,
        "content-md5": base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode(),
    }
    ours = eventbridge_signature(
        eventbridge_string_to_sign("POST", EVENTBRIDGE_PATH, headers), secret
    )
    theirs = Official.get_signature(
        official_string_to_sign("POST", EVENTBRIDGE_PATH, headers), secret
    )
    assert ours == theirs


def test_the_known_vector_of_the_official_util() -> None:
    assert eventbridge_signature("GET\n\n\n\n", "secret") == Official.get_signature(
        "GET\n\n\n\n", "secret"
    )


@settings(max_examples=25, deadline=None)
@given(
    token=st.one_of(st.none(), st.text(min_size=6, max_size=30).filter(str.isprintable)),
    secret=SECRETS,
    drift_field=st.text(max_size=30),
    now=st.floats(min_value=1.6e9, max_value=2.2e9),
)
def test_the_channels_authorization_is_what_the_official_sdk_would_send(
    token: str | None, secret: str, drift_field: str, now: float
) -> None:
    """The whole request the channel builds: its headers signed by the official signer give
    exactly the authorization the channel put on them. (The CloudEvent's content is not signed;
    the report is rendered by a stand-in so that only the signing is under test.)"""
    channel = EventBridgeChannel(
        EventBus("guard-bus", "1234567890123456", "cn-hangzhou"),
        Credentials("STS.key-id-for-eventbridge", secret, token),
        clock=lambda: now,
    )
    module = sys.modules[EventBridgeChannel.__module__]
    original = module.render_cloudevent
    module.render_cloudevent = lambda report, bus, *, event_id, now: {
        "id": event_id,
        "source": "secpref-guard",
        "data": {"field": drift_field},
    }
    try:
        url, body, headers = channel.request(None)
    finally:
        module.render_cloudevent = original

    assert url.endswith(EVENTBRIDGE_PATH)
    assert body
    unsigned = {k: v for k, v in headers.items() if k != "authorization"}
    expected = Official.get_signature(
        official_string_to_sign("POST", EVENTBRIDGE_PATH, unsigned), secret
    )
    assert headers["authorization"] == f"acs:STS.key-id-for-eventbridge:{expected}"
    if token:
        assert headers["x-acs-security-token"] == token
        assert headers["x-acs-accesskey-id"] == "STS.key-id-for-eventbridge"
