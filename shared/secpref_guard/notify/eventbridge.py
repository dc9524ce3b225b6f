"""The EventBridge channel: each report as one CloudEvent on a custom bus, by PutEvents, signed
as the official EventBridge SDKs sign it.

Facts (EventBridge's PutEvents, "Make API requests" and common-parameters pages; the official
EventBridge SDK, github.com/aliyun/alibabacloud-eventbridge-sdk, and its util's tests):
- ``POST https://{account}.eventbridge.{region}.aliyuncs.com/openapi/putEvents``, the body a
  JSON array of CloudEvents (``application/cloudevents-batch+json``), each carrying the bus
  name in the ``aliyuneventbusname`` attribute;
- the signature: HMAC-SHA1 over method, Content-MD5 (not sent: empty), Content-Type, Date, the
  ``x-acs-*`` headers (lower case, sorted) and the path; header ``Authorization:
  acs:<AccessKeyId>:<signature>``. The generic "request signatures" page differs (it adds
  Accept, writes ``acs <id>:<sig>``, names version 2020-04-01); the SDKs are followed because
  they are what runs against the service;
- the answer carries ``RequestId``, ``FailedEntryCount`` and ``EntryList`` (``EventId``, or
  ``ErrorCode`` / ``ErrorMessage``); an error answer carries ``code``, ``message``,
  ``requestId``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate

import requests
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from ..credentials import Credentials
from ..report import RunReport
from ..scrub import error_text, safe_destination
from .channel import DEFAULT_TIMEOUT_SECONDS, USER_AGENT, Clock, DeliveryError
from .render import render_cloudevent

EVENTBRIDGE_PATH = "/openapi/putEvents"
EVENTBRIDGE_API_VERSION = "2015-06-06"  # what the official SDKs send (the docs say 2020-04-01)
EVENTBRIDGE_CONTENT_TYPE = "application/cloudevents-batch+json; charset=utf-8"
_BUS_ARN = re.compile(
    r"^acs:eventbridge:(?P<region>[a-z0-9-]+):(?P<account>\d{1,20}):eventbus/(?P<name>[^/:\s]+)$"
)
_BUS_NAME = re.compile(r"^[A-Za-z0-9._-]{1,127}$")
_REGION = re.compile(r"^[a-z0-9-]{2,32}$")
_ACCOUNT = re.compile(r"^\d{1,20}$")


@dataclass(frozen=True)
class EventBus:
    """Where PutEvents goes: the bus name, and the owner account and region of the endpoint."""

    name: str
    account_id: str | None = None
    region: str | None = None

    @classmethod
    def parse(
        cls, value: str, *, account_id: str | None = None, region: str | None = None
    ) -> EventBus:
        """A bus name (the account and region come from the function's context) or the bus's
        ARN, ``acs:eventbridge:<region>:<account>:eventbus/<name>``, which names all three."""
        text = value.strip()
        match = _BUS_ARN.match(text)
        if match:
            return cls(match["name"], match["account"], match["region"])
        if not _BUS_NAME.match(text):
            raise ValueError(
                f"GUARD_EVENTBRIDGE_BUS: {text!r} is neither a bus name (letters, digits, '.', "
                "'_', '-') nor an ARN acs:eventbridge:<region>:<account>:eventbus/<name>"
            )
        return cls(text, account_id, region)

    def endpoint(self) -> str:
        if not self.account_id or not self.region:
            raise ValueError(
                "GUARD_EVENTBRIDGE_BUS: the bus's account and region are not known; give the bus "
                "as its ARN (acs:eventbridge:<region>:<account>:eventbus/<name>)"
            )
        if not _ACCOUNT.match(self.account_id) or not _REGION.match(self.region):
            raise ValueError(
                f"GUARD_EVENTBRIDGE_BUS: account {self.account_id!r} or region {self.region!r} "
                "is not valid"
            )
        return f"https://{self.account_id}.eventbridge.{self.region}.aliyuncs.com"


def eventbridge_string_to_sign(method: str, path: str, headers: Mapping[str, str]) -> str:
    """What the official EventBridge SDKs sign: method, Content-MD5, Content-Type, Date, then
    every ``x-acs-*`` header (lower case, sorted, ``name:value\\n``), then the path."""
    lowered = {k.lower(): v for k, v in headers.items()}
    canonical = "".join(
        f"{name}:{lowered[name]}\n" for name in sorted(lowered) if name.startswith("x-acs")
    )
    return (
        f"{method.upper()}\n{lowered.get('content-md5', '')}\n{lowered.get('content-type', '')}\n"
        f"{lowered.get('date', '')}\n{canonical}{path}"
    )


def eventbridge_signature(string_to_sign: str, access_key_secret: str) -> str:
    digest = hmac.new(
        access_key_secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode("ascii")


class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore")

    EventId: str | None = None
    ErrorCode: str | None = None
    ErrorMessage: str | None = None


class _Answer(BaseModel):
    """PutEvents' answer, success or error (whose keys are lower camel case)."""

    model_config = ConfigDict(extra="ignore")

    request_id: str | None = Field(
        default=None, validation_alias=AliasChoices("RequestId", "requestId")
    )
    code: str | None = Field(default=None, validation_alias=AliasChoices("code", "Code"))
    message: str | None = Field(default=None, validation_alias=AliasChoices("message", "Message"))
    failed: int | None = Field(default=None, validation_alias="FailedEntryCount")
    entries: list[_Entry] = Field(default_factory=list, validation_alias="EntryList")

    @classmethod
    def of(cls, response: requests.Response) -> _Answer:
        """The answer, or an empty one when the body is not the JSON object it should be."""
        try:
            return cls.model_validate(response.json())
        except (ValueError, ValidationError):
            return cls()


class EventBridgeChannel:
    """PutEvents to a custom bus: one CloudEvent per report, signed with the function's role."""

    name = "eventbridge"

    def __init__(
        self,
        bus: EventBus,
        credentials: Credentials | None,
        *,
        endpoint: str | None = None,
        clock: Clock = time.time,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        session: requests.Session | None = None,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.bus = bus
        self.credentials = credentials
        self.clock = clock
        self.timeout = timeout
        self.session = session if session is not None else requests.Session()
        self.new_id = new_id
        self.problem = ""
        try:
            self.endpoint = (endpoint or bus.endpoint()).rstrip("/")
        except ValueError as exc:
            self.endpoint = ""
            self.problem = str(exc)
        self.destination = (
            f"{safe_destination(self.endpoint)} bus {bus.name}" if self.endpoint else bus.name
        )

    def request(self, report: RunReport) -> tuple[str, bytes, dict[str, str]]:
        """The URL, body and signed headers of one PutEvents call."""
        if self.problem:
            raise DeliveryError(self.problem)
        if self.credentials is None:
            raise DeliveryError("no credentials to sign PutEvents (the function's role gives them)")
        now = self.clock()
        event = render_cloudevent(report, self.bus.name, event_id=self.new_id(), now=now)
        body = json.dumps([event], ensure_ascii=False).encode("utf-8")
        # Exactly the headers the official SDKs send and sign (they send no Content-MD5, so its
        # line in the string to sign is empty), as they run against the service.
        headers = {
            "accept": "application/json",
            "content-type": EVENTBRIDGE_CONTENT_TYPE,
            "date": formatdate(now, usegmt=True),
            "user-agent": USER_AGENT,
            "x-acs-signature-method": "HMAC-SHA1",
            "x-acs-signature-nonce": self.new_id(),
            "x-acs-signature-version": "1.0",
            "x-eventbridge-version": EVENTBRIDGE_API_VERSION,
        }
        if self.credentials.security_token:
            headers["x-acs-accesskey-id"] = self.credentials.access_key_id
            headers["x-acs-security-token"] = self.credentials.security_token
        signature = eventbridge_signature(
            eventbridge_string_to_sign("POST", EVENTBRIDGE_PATH, headers),
            self.credentials.access_key_secret,
        )
        headers["authorization"] = f"acs:{self.credentials.access_key_id}:{signature}"
        return self.endpoint + EVENTBRIDGE_PATH, body, headers

    def send(self, report: RunReport) -> str:
        url, body, headers = self.request(report)
        response = self.session.post(url, data=body, headers=headers, timeout=self.timeout)
        answer = _Answer.of(response)
        if not 200 <= response.status_code < 300:
            message = answer.message or response.reason or ""
            text = f"PutEvents failed: HTTP {response.status_code} {answer.code or ''}: {message}"
            if answer.request_id:
                text += f" (request id {answer.request_id})"
            raise DeliveryError(error_text(text))
        first = answer.entries[0] if answer.entries else _Entry()
        if answer.failed:
            raise DeliveryError(
                error_text(
                    f"PutEvents rejected the event: {first.ErrorCode or '?'}: "
                    f"{first.ErrorMessage or ''} (request id {answer.request_id})"
                )
            )
        return f"request id {answer.request_id}, event id {first.EventId}"
