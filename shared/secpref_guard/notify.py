"""Notifications: one report, rendered for people and for machines, sent to every channel.

A report is the handler's result (``Outcome.as_dict()`` plus the optional ``trigger``, ``actor``
and ``error``). Three channels, each optional, any number at once:

- DingTalk custom robot (GUARD_DINGTALK_WEBHOOK, signed when GUARD_DINGTALK_SECRET is set): a
  markdown message with the fields before / baseline / after, who changed them and from where,
  and what the guard did;
- a generic HTTPS webhook (GUARD_WEBHOOK_URL): the report as JSON plus ``summary`` and ``guard``;
- an EventBridge custom bus (GUARD_EVENTBRIDGE_BUS): the same JSON as the ``data`` of one
  CloudEvent, published with the bus's PutEvents HTTP API.

The policy: only ``reverted``, ``drift``, ``contested`` and ``error`` reports are sent (never
``compliant`` or ``skipped``); a report already sent to a channel within the de-duplication
window (account + status + drifted fields and their values) is not sent again, so an event burst
does not flood a channel; every channel has a short timeout, and a channel that fails is logged
and reported as failed but never raises to the caller, and never stops the other channels.

Facts this module relies on (sources: DingTalk's custom-robot documentation, "custom robot
access" / 加签; EventBridge's PutEvents, "Make API requests" and common-parameters pages; the
official EventBridge SDK, github.com/aliyun/alibabacloud-eventbridge-sdk, and its util's tests):
- DingTalk signing: ``sign = urlencode(base64(HMAC-SHA256(key=secret, msg=timestamp_ms + "\\n" +
  secret)))`` appended to the robot URL as ``&timestamp=...&sign=...``; the timestamp must be
  within an hour of DingTalk's clock. The robot answers HTTP 200 with ``{"errcode": 0}`` on
  success and a non-zero ``errcode`` (e.g. 310000 "sign not match") on failure.
- DingTalk markdown is a subset (headings, bold, italic, quotes, links, images, lists): it has no
  tables, so the before / baseline / after table is rendered as one list item per field.
- EventBridge PutEvents: ``POST https://{account}.eventbridge.{region}.aliyuncs.com/openapi/putEvents``,
  body a JSON array of CloudEvents (``application/cloudevents-batch+json``), each carrying the bus
  name in the ``aliyuneventbusname`` attribute; signed as the official EventBridge SDKs sign it
  (HMAC-SHA1 over method, Content-MD5 (not sent: empty), Content-Type, Date, the ``x-acs-*``
  headers and the path; header ``Authorization: acs:<AccessKeyId>:<signature>``). The generic
  "request signatures" page differs (it adds Accept, writes ``acs <id>:<sig>``, names version
  2020-04-01); the SDKs are followed because they are what runs against the service.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import formatdate
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, quote_plus, urlsplit

import requests

from . import __version__
from .config import Settings
from .credentials import Credentials
from .logs import event, redact, register_secret

GUARD_NAME = "secpref-guard"
NOTIFY_STATUSES = frozenset({"reverted", "drift", "contested", "error"})
DEFAULT_WINDOW_SECONDS = 600.0
DEFAULT_TIMEOUT_SECONDS = 3.0
USER_AGENT = f"{GUARD_NAME}/{__version__}"

EVENTBRIDGE_PATH = "/openapi/putEvents"
EVENTBRIDGE_API_VERSION = "2015-06-06"  # what the official SDKs send (the docs say 2020-04-01)
EVENTBRIDGE_CONTENT_TYPE = "application/cloudevents-batch+json; charset=utf-8"
EVENT_SOURCE = GUARD_NAME
_BUS_ARN = re.compile(
    r"^acs:eventbridge:(?P<region>[a-z0-9-]+):(?P<account>\d{1,20}):eventbus/(?P<name>[^/:\s]+)$"
)
_BUS_NAME = re.compile(r"^[A-Za-z0-9._-]{1,127}$")
_REGION = re.compile(r"^[a-z0-9-]{2,32}$")
_ACCOUNT = re.compile(r"^\d{1,20}$")

Clock = Callable[[], float]  # seconds since the epoch, like time.time
ChannelOutcome = Literal["sent", "failed", "deduplicated"]


# --- results and errors ---------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelResult:
    """What happened to one report on one channel."""

    channel: str  # "dingtalk" | "webhook" | "eventbridge"
    outcome: ChannelOutcome
    detail: str = ""  # the service's answer or why it failed; never carries a secret

    def as_dict(self) -> dict[str, str]:
        return {"channel": self.channel, "outcome": self.outcome, "detail": self.detail}


class DeliveryError(Exception):
    """A channel could not deliver; the message names the cause and is safe to log."""


class Channel(Protocol):
    name: str
    destination: str  # where it sends, with every token removed: for logs

    def send(self, report: Mapping[str, Any]) -> str:
        """Deliver the report; return a short detail (e.g. a request id) or raise."""
        ...


# --- what is sent ---------------------------------------------------------------------------


def should_notify(report: Mapping[str, Any]) -> bool:
    """Only reports that need a person's attention: reverted, drift, contested, error."""
    return report.get("status") in NOTIFY_STATUSES


def dedup_key(report: Mapping[str, Any]) -> str:
    """Identical reports share a key: account, status, every drifted field with its values,
    and for an error its code. A burst of audit events about one change gives one key."""
    drift = [
        [str(item.get("field")), item.get("actual"), item.get("expected")]
        for item in _drift(report)
    ]
    error = report.get("error")
    error_code = ""
    if isinstance(error, Mapping):
        error_code = str(error.get("code") or error.get("type") or "")
    parts = [
        str(report.get("account", "")),
        str(report.get("status", "")),
        sorted(drift, key=str),
        error_code,
    ]
    return json.dumps(parts, sort_keys=True, default=str)


_HEADLINES = {
    "reverted": "drift reverted",
    "drift": "drift found, nothing written",
    "contested": "contested, nothing written",
    "error": "guard error",
}


def render_title(report: Mapping[str, Any]) -> str:
    """A short title (DingTalk shows it in the conversation list). It names the guard, so a
    robot secured with the custom keyword ``secpref-guard`` accepts every message."""
    status = str(report.get("status", ""))
    headline = _HEADLINES.get(status, status)
    return f"{GUARD_NAME}: {headline} in account {_plain(report.get('account', '?'))}"


def summarize(report: Mapping[str, Any]) -> str:
    """One line that says what happened, for the webhook's ``summary`` and for logs."""
    status = str(report.get("status", ""))
    account = _plain(report.get("account", "?"))
    drift = _drift(report)
    names = ", ".join(_plain(item.get("field", "?")) for item in drift) or "no field"
    if status == "reverted":
        reverted = [_plain(d.get("field", "?")) for d in drift if d.get("action") == "revert"]
        kept = [_plain(d.get("field", "?")) for d in drift if d.get("action") != "revert"]
        line = f"{GUARD_NAME} reverted {', '.join(reverted) or 'nothing'} in account {account}"
        if kept:
            line += f"; not written: {', '.join(kept)}"
    elif status == "drift":
        line = f"{GUARD_NAME} found drift in account {account}: {names}; nothing written"
    elif status == "contested":
        line = (
            f"{GUARD_NAME} stopped reverting account {account}: the revert budget is spent; "
            f"still drifted: {names}"
        )
    elif status == "error":
        line = f"{GUARD_NAME} failed on account {account}: {_error_text(report)}"
    else:
        line = f"{GUARD_NAME}: account {account} is {status}"
    actor = _actor_text(report.get("actor"))
    if actor and status != "error":
        line += f"; changed by {actor}"
    return line


def render_markdown(report: Mapping[str, Any]) -> str:
    """The DingTalk message text (DingTalk's markdown subset: no tables, so one item per field)."""
    status = str(report.get("status", ""))
    lines = [f"#### {_md(render_title(report))}", ""]
    facts = [
        f"**Account**: {_md(report.get('account', '?'))} (mode {_md(report.get('mode', '?'))})"
    ]
    trigger = _trigger_text(report.get("trigger"))
    if trigger:
        facts.append(f"**Trigger**: {_md(trigger)}")
    actor = _actor_text(report.get("actor"))
    if actor:
        facts.append(f"**Changed by**: {_md(actor)}")
    elif _trigger_type(report) == "schedule" and status != "error":
        facts.append("**Changed by**: unknown (found by the scheduled check; see ActionTrail)")
    lines.append("  \n".join(facts))
    drift = _drift(report)
    if drift:
        lines += ["", "**Fields** (before → baseline → after)", ""]
        for item in drift:
            lines.append(_md_drift_item(report, item))
    lines += ["", f"**What the guard did**: {_md(_what_the_guard_did(report))}"]
    return "\n".join(lines)


def render_webhook_body(report: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document for the webhook and the CloudEvent's data: the report, a one-line
    ``summary`` and ``guard`` (the guard's name and version)."""
    body: dict[str, Any] = json.loads(json.dumps(dict(report), default=str))
    body["summary"] = summarize(report)
    body["guard"] = {"name": GUARD_NAME, "version": __version__}
    return body


def render_cloudevent(
    report: Mapping[str, Any], bus: str, *, event_id: str, now: float
) -> dict[str, Any]:
    """One CloudEvent (specversion 1.0) for PutEvents; the bus name rides in the
    ``aliyuneventbusname`` extension attribute."""
    status = str(report.get("status", "unknown"))
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": EVENT_SOURCE,
        "type": f"{GUARD_NAME}:Report:{status}"[:64],
        "subject": f"{_plain(report.get('account', 'unknown'))}/SecurityPreference",
        "time": _iso_millis(now),
        "datacontenttype": "application/json",
        "data": render_webhook_body(report),
        "aliyuneventbusname": bus,
    }


# --- rendering helpers ----------------------------------------------------------------------


def _drift(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    drift = report.get("drift")
    if not isinstance(drift, list):
        return []
    return [item for item in drift if isinstance(item, Mapping)]


def _plain(value: Any) -> str:
    """One line of text: no newlines, bounded length."""
    text = " ".join(str(value).split())
    return text if len(text) <= 300 else text[:297] + "..."


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|])")


def _md(value: Any) -> str:
    """Text from the report inside markdown: one line, markdown syntax characters escaped, so a
    user name or an API message can neither format the message nor inject a link."""
    return _MD_SPECIAL.sub(r"\\\1", _plain(value))


def _value(value: Any) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [str(v) for v in value]
        return ";".join(items) if items else "(none)"
    if value == "":
        return "(empty)"
    return str(value)


def _after(report: Mapping[str, Any], item: Mapping[str, Any]) -> str:
    """The value after the run: the baseline when this run reverted it, the live value when
    nothing was written, the value a fresh read showed when verification failed."""
    status = report.get("status")
    if status == "reverted" and item.get("action") == "revert":
        return _value(item.get("expected"))
    if status == "error":
        error = report.get("error")
        mismatches = error.get("mismatches") if isinstance(error, Mapping) else None
        for mismatch in mismatches if isinstance(mismatches, list) else []:
            if isinstance(mismatch, Mapping) and mismatch.get("field") == item.get("field"):
                return _value(mismatch.get("read"))
        return "unknown"
    return _value(item.get("actual"))


def _action_text(report: Mapping[str, Any], item: Mapping[str, Any]) -> str:
    action = str(item.get("action", ""))
    status = report.get("status")
    if action == "revert":
        text = "reverted" if status == "reverted" else "not written"
        if status == "contested":
            text = "not written: revert budget spent"
    elif action == "dry-run":
        text = "not written: dry run"
    else:
        text = action or "?"
    note = item.get("note")
    if note:
        text += f": {note}"
    source = item.get("source")
    if source:
        text += f"; baseline from {source}"
    return text


def _md_drift_item(report: Mapping[str, Any], item: Mapping[str, Any]) -> str:
    before = _value(item.get("actual"))
    baseline = _value(item.get("expected"))
    after = _after(report, item)
    return (
        f"- **{_md(item.get('field', '?'))}**: {_md(before)} → {_md(baseline)} → "
        f"{_md(after)} ({_md(_action_text(report, item))})"
    )


def _trigger_type(report: Mapping[str, Any]) -> str:
    trigger = report.get("trigger")
    return str(trigger.get("type", "")) if isinstance(trigger, Mapping) else ""


def _trigger_text(trigger: Any) -> str:
    if not isinstance(trigger, Mapping):
        return ""
    kind = trigger.get("type")
    what = {"schedule": "scheduled check", "event": "audit event"}.get(str(kind), str(kind or "?"))
    text = what
    if trigger.get("id"):
        text += f" {trigger['id']}"
    if trigger.get("time"):
        text += f" at {trigger['time']}"
    return _plain(text)


_ACTOR_KEYS = ("type", "name", "account", "source_ip")


def _actor_text(actor: Any) -> str:
    if not isinstance(actor, Mapping) or not any(actor.get(k) for k in _ACTOR_KEYS):
        return ""
    text = " ".join(str(actor[k]) for k in ("type", "name") if actor.get(k)) or "someone"
    if actor.get("account"):
        text += f" of account {actor['account']}"
    if actor.get("source_ip"):
        text += f" from {actor['source_ip']}"
    if actor.get("time"):
        text += f" at {actor['time']}"
    return _plain(text)


def _error_text(report: Mapping[str, Any]) -> str:
    error = report.get("error")
    if isinstance(error, Mapping):
        code = error.get("code") or error.get("type")
        message = error.get("message")
        parts = [str(p) for p in (code, message) if p]
        text = ": ".join(parts)
        if error.get("request_id"):
            text += f" (request id {error['request_id']})"
        if text:
            return _plain(text)
    return _plain(report.get("reason") or "unknown error")


def _what_the_guard_did(report: Mapping[str, Any]) -> str:
    status = report.get("status")
    reason = _plain(report.get("reason", ""))
    if status == "reverted":
        lead = (
            "wrote the baseline back with SetSecurityPreference and verified it with a fresh read"
        )
    elif status == "drift":
        lead = "reported the drift and wrote nothing"
    elif status == "contested":
        lead = (
            "wrote nothing: the revert budget (GUARD_MAX_REVERTS within "
            "GUARD_REVERT_WINDOW_MINUTES) is spent and someone keeps changing the setting; "
            "find out who, and consider the control policy that prevents the change"
        )
    elif status == "error":
        lead = f"failed: {_error_text(report)}"
        if reason in lead:  # the error's message is usually the reason too
            reason = ""
    else:
        lead = str(status)
    lead = lead[:1].upper() + lead[1:]
    return f"{lead}. {reason[:1].upper() + reason[1:]}." if reason else f"{lead}."


def _iso_millis(now: float) -> str:
    moment = datetime.fromtimestamp(now, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"


# --- secrets out of logs and errors -----------------------------------------------------------

_URL_TEXT = re.compile(r"(https?://[^/\s'\"?#]+)[^\s'\")]*")
_URL_FIELD = re.compile(r"(url: )\S+")
_QUERY_TEXT = re.compile(r"\?[^\s'\")]*")


def _scrub(text: str) -> str:
    """An error text safe to log: URLs cut to their host, query strings removed, every
    registered secret masked, bounded length."""
    text = _URL_TEXT.sub(r"\1/...", str(text))
    text = _URL_FIELD.sub(r"\1<removed>", text)
    text = _QUERY_TEXT.sub("?<removed>", text)
    text = redact(text)
    return text if len(text) <= 500 else text[:497] + "..."


def safe_destination(url: str) -> str:
    """scheme://host[:port], and "/..." when there is a path: a webhook's path and query often
    are its credential."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    rest = "/..." if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def _register_url_secrets(url: str) -> None:
    """Every query value of a webhook URL (DingTalk's access_token), masked in every log line."""
    parts = urlsplit(url)
    for _, value in parse_qsl(parts.query, keep_blank_values=False):
        register_secret(value)
    if parts.query:
        register_secret(parts.query)


def _http_failure(response: requests.Response) -> DeliveryError:
    return DeliveryError(f"HTTP {response.status_code} {_scrub(response.reason or '')}".strip())


# --- DingTalk -------------------------------------------------------------------------------


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """base64(HMAC-SHA256(key=secret, msg=timestamp + "\\n" + secret)), not yet URL-encoded."""
    digest = hmac.new(
        secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode("ascii")


class DingTalkChannel:
    """A DingTalk custom robot: markdown messages, signed when the robot has a secret."""

    name = "dingtalk"

    def __init__(
        self,
        webhook: str,
        secret: str | None = None,
        *,
        clock: Clock = time.time,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        session: requests.Session | None = None,
    ) -> None:
        self.webhook = webhook
        self.secret = secret or None
        self.clock = clock
        self.timeout = timeout
        self.session = session if session is not None else requests.Session()
        self.destination = safe_destination(webhook)
        _register_url_secrets(webhook)
        register_secret(self.secret)

    def signed_url(self) -> str:
        if not self.secret:
            return self.webhook
        timestamp = str(int(self.clock() * 1000))
        sign = dingtalk_sign(self.secret, timestamp)
        register_secret(sign)
        separator = "&" if urlsplit(self.webhook).query else "?"
        return f"{self.webhook}{separator}timestamp={timestamp}&sign={quote_plus(sign)}"

    def message(self, report: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "msgtype": "markdown",
            "markdown": {"title": render_title(report), "text": render_markdown(report)},
        }

    def send(self, report: Mapping[str, Any]) -> str:
        response = self.session.post(
            self.signed_url(),
            data=json.dumps(self.message(report), ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT},
            timeout=self.timeout,
        )
        if response.status_code != 200:
            raise _http_failure(response)
        try:
            answer = response.json()
        except ValueError:
            raise DeliveryError("DingTalk answered HTTP 200 with a body that is not JSON") from None
        if not isinstance(answer, dict) or "errcode" not in answer:
            raise DeliveryError("DingTalk answered without an errcode")
        if answer.get("errcode") != 0:
            raise DeliveryError(
                f"DingTalk errcode {answer.get('errcode')}: {_scrub(str(answer.get('errmsg', '')))}"
            )
        return "errcode 0"


# --- generic webhook --------------------------------------------------------------------------


class WebhookChannel:
    """An HTTPS endpoint that receives the report as JSON."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.session = session if session is not None else requests.Session()
        self.destination = safe_destination(url)
        _register_url_secrets(url)

    def send(self, report: Mapping[str, Any]) -> str:
        response = self.session.post(
            self.url,
            data=json.dumps(render_webhook_body(report), ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT},
            timeout=self.timeout,
        )
        if not 200 <= response.status_code < 300:
            raise _http_failure(response)
        return f"HTTP {response.status_code}"


# --- EventBridge ------------------------------------------------------------------------------


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

    def request(self, report: Mapping[str, Any]) -> tuple[str, bytes, dict[str, str]]:
        """The URL, body and signed headers of one PutEvents call."""
        if self.problem:
            raise DeliveryError(self.problem)
        if self.credentials is None:
            raise DeliveryError("no credentials to sign PutEvents (the function's role gives them)")
        now = self.clock()
        event_ = render_cloudevent(report, self.bus.name, event_id=self.new_id(), now=now)
        body = json.dumps([event_], ensure_ascii=False).encode("utf-8")
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

    def send(self, report: Mapping[str, Any]) -> str:
        url, body, headers = self.request(report)
        response = self.session.post(url, data=body, headers=headers, timeout=self.timeout)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        request_id = answer.get("RequestId") or answer.get("requestId")
        if not 200 <= response.status_code < 300:
            code = answer.get("code") or answer.get("Code") or ""
            message = answer.get("message") or answer.get("Message") or response.reason or ""
            text = f"PutEvents failed: HTTP {response.status_code} {code}: {message}"
            if request_id:
                text += f" (request id {request_id})"
            raise DeliveryError(_scrub(text))
        failed = answer.get("FailedEntryCount") or 0
        entries = answer.get("EntryList") if isinstance(answer.get("EntryList"), list) else []
        if failed:
            first = entries[0] if entries and isinstance(entries[0], dict) else {}
            raise DeliveryError(
                _scrub(
                    f"PutEvents rejected the event: {first.get('ErrorCode', '?')}: "
                    f"{first.get('ErrorMessage', '')} (request id {request_id})"
                )
            )
        event_id = entries[0].get("EventId") if entries and isinstance(entries[0], dict) else None
        return f"request id {request_id}, event id {event_id}"


# --- de-duplication and the notifier ----------------------------------------------------------


class DedupWindow:
    """Reports already delivered, per channel, remembered in memory for ``seconds``. Keep one
    per Function Compute instance to cover event bursts that reach the same instance."""

    def __init__(self, seconds: float = DEFAULT_WINDOW_SECONDS) -> None:
        self.seconds = seconds
        self._sent: dict[tuple[str, str], float] = {}

    def active(self, channel: str, key: str, now: float) -> bool:
        sent_at = self._sent.get((channel, key))
        return sent_at is not None and now - sent_at < self.seconds

    def record(self, channel: str, key: str, now: float) -> None:
        self._sent = {k: t for k, t in self._sent.items() if now - t < self.seconds}
        self._sent[(channel, key)] = now


class Notifier:
    """Sends each report to every channel, under the notification policy. Never raises."""

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        clock: Clock = time.time,
        window: DedupWindow | None = None,
    ) -> None:
        self.channels = list(channels)
        self.clock = clock
        self.window = window if window is not None else DedupWindow()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        credentials: Credentials | None = None,
        account_id: str | None = None,
        region: str | None = None,
        eventbridge_endpoint: str | None = None,
        clock: Clock = time.time,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        window: DedupWindow | None = None,
        session: requests.Session | None = None,
    ) -> Notifier:
        """The channels the settings configure. ``credentials`` sign PutEvents; ``account_id``
        and ``region`` (the function's, from its context) locate a bus given by name only."""
        channels: list[Channel] = []
        if settings.dingtalk_webhook:
            channels.append(
                DingTalkChannel(
                    settings.dingtalk_webhook,
                    settings.dingtalk_secret,
                    clock=clock,
                    timeout=timeout,
                    session=session,
                )
            )
        if settings.webhook_url:
            channels.append(WebhookChannel(settings.webhook_url, timeout=timeout, session=session))
        if settings.eventbridge_bus:
            try:
                bus = EventBus.parse(settings.eventbridge_bus, account_id=account_id, region=region)
            except ValueError as exc:
                channels.append(_Misconfigured("eventbridge", str(exc)))
            else:
                channels.append(
                    EventBridgeChannel(
                        bus,
                        credentials,
                        endpoint=eventbridge_endpoint,
                        clock=clock,
                        timeout=timeout,
                        session=session,
                    )
                )
        return cls(channels, clock=clock, window=window)

    def notify(self, report: Mapping[str, Any] | str | bytes) -> list[ChannelResult]:
        """Send the report to every channel; one result per channel, none when the report's
        status is not one to notify about. Failures are logged and returned, never raised."""
        parsed = _as_report(report)
        if parsed is None or not self.channels or not should_notify(parsed):
            return []
        key = dedup_key(parsed)
        results = []
        for channel in self.channels:
            results.append(self._deliver(channel, parsed, key))
        return results

    def _deliver(self, channel: Channel, report: Mapping[str, Any], key: str) -> ChannelResult:
        context = {
            "channel": channel.name,
            "destination": channel.destination,
            "account": _plain(report.get("account", "")),
            "status": report.get("status"),
        }
        now = self.clock()
        if self.window.active(channel.name, key, now):
            event(
                logging.INFO,
                "notification deduplicated",
                **context,
                window_seconds=self.window.seconds,
            )
            return ChannelResult(channel.name, "deduplicated", "sent within the window")
        try:
            detail = channel.send(report)
        except DeliveryError as exc:
            reason = _scrub(str(exc))
        except requests.Timeout:
            reason = "timed out"
        except requests.RequestException as exc:
            reason = _scrub(f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a channel must never break enforcement
            reason = _scrub(f"{type(exc).__name__}: {exc}")
        else:
            self.window.record(channel.name, key, now)
            detail = _scrub(detail)
            event(logging.INFO, "notification sent", **context, detail=detail)
            return ChannelResult(channel.name, "sent", detail)
        event(logging.WARNING, "notification failed", **context, error=reason)
        return ChannelResult(channel.name, "failed", reason)


class _Misconfigured:
    """A configured channel that cannot work: every report fails with the reason."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.destination = "(misconfigured)"
        self.problem = problem

    def send(self, report: Mapping[str, Any]) -> str:
        raise DeliveryError(self.problem)


def _as_report(report: Mapping[str, Any] | str | bytes) -> Mapping[str, Any] | None:
    """The handler result as a mapping (handlers return it as a JSON string)."""
    if isinstance(report, (str, bytes)):
        try:
            report = json.loads(report)
        except ValueError:
            event(logging.WARNING, "notification skipped: the report is not JSON")
            return None
    if not isinstance(report, Mapping):
        event(logging.WARNING, "notification skipped: the report is not a JSON object")
        return None
    return report
