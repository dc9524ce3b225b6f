"""Notifications: one report, rendered for people and for machines, sent to every channel.

A report is the handler's result (``Outcome.as_dict()`` plus the optional ``trigger``, ``actor``
and ``error``). Three channels, each optional, any number at once:

- DingTalk custom robot (GUARD_DINGTALK_WEBHOOK, signed when GUARD_DINGTALK_SECRET is set): a
  markdown message with the fields before / baseline / after, who changed them and from where,
  and what the guard did;
- a generic HTTPS webhook (GUARD_WEBHOOK_URL): the report as JSON plus ``summary`` and ``guard``;
- an EventBridge custom bus (GUARD_EVENTBRIDGE_BUS): the same JSON as the ``data`` of one
  CloudEvent, published with the bus's PutEvents HTTP API.

A report is also the run summary of a multi-account run (``fanout.RunSummary.as_dict()``): no
top-level ``account``, but ``run_id``, ``counts``, drift items that each carry their ``account``,
``accounts`` (every account's own result) and ``failed`` (every account that could not be
enforced, with its reason and code). Its messages count the accounts, name the account on every
field line and list the failed accounts.

The policy: only ``reverted``, ``drift``, ``contested`` and ``error`` reports, and any report with
a failed account, are sent (never ``compliant`` or ``skipped`` alone, nor a fan-out run that only
dispatched batches); a report already sent to a channel within the de-duplication window (account
+ status + every drifted field of every account with its values + every failed account with its
code) is not sent again, so an event burst does not flood a channel, and concurrent identical
reports are sent once; every channel has a short timeout, and a channel that fails is logged and
reported as failed but never raises to the caller, and never stops the other channels.

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
import threading
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
FAILED_LIST_LIMIT = 20  # failed accounts named in a message; the rest are counted
FIELD_LIST_LIMIT = 50  # drifted fields listed in a multi-account message; the rest are counted
SUMMARY_ACCOUNT_LIMIT = 10  # accounts named in the one-line summary; the rest are counted
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
    """Only reports that need a person's attention: reverted, drift, contested, error, and any
    run in which an account failed, whatever the run's status (a fan-out run that only handed
    its batches to the worker is ``skipped`` and is not sent unless a dispatch failed)."""
    return report.get("status") in NOTIFY_STATUSES or _failed_count(report) > 0


def dedup_key(report: Mapping[str, Any]) -> str:
    """Identical reports share a key: account, status, every drifted field with its account,
    that account's status and the values, every failed account with its code, and for an error
    its code. A burst of audit events about one change gives one key; the same field reverted in
    another account, or another account failing, gives another."""
    results = _account_results(report)
    drift = [
        [
            _plain(item.get("account", "")),
            str(_item_report(report, results, item).get("status", "")),
            str(item.get("field")),
            item.get("actual"),
            item.get("expected"),
        ]
        for item in _drift(report)
    ]
    failed = [
        [_plain(failure.get("account", "?")), str(failure.get("code") or "")]
        for failure in _failures(report)
    ]
    error = report.get("error")
    error_code = ""
    if isinstance(error, Mapping):
        error_code = str(error.get("code") or error.get("type") or "")
    parts = [
        str(report.get("account", "")),
        str(report.get("status", "")),
        sorted(drift, key=lambda d: json.dumps(d, sort_keys=True, default=str)),
        sorted(failed),
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
    robot secured with the custom keyword ``secpref-guard`` accepts every message. A run
    summary's title counts the accounts: ``secpref-guard: 2 accounts reverted, 1 failed (run
    <id>)``."""
    if _is_run(report):
        run_id = report.get("run_id")
        suffix = f" (run {_plain(run_id)})" if run_id else ""
        return f"{GUARD_NAME}: {_run_counts_text(report)}{suffix}"
    status = str(report.get("status", ""))
    headline = _HEADLINES.get(status, status)
    return f"{GUARD_NAME}: {headline} in {_where(report)}"


def summarize(report: Mapping[str, Any]) -> str:
    """One line that says what happened, for the webhook's ``summary`` and for logs."""
    if _is_run(report):
        return _summarize_run(report)
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
    """The DingTalk message text (DingTalk's markdown subset: no tables, so one item per field).
    When the drift items carry their accounts (a multi-account run), every field line names its
    account and the lines are grouped by account; failed accounts are listed after them."""
    status = str(report.get("status", ""))
    run = _is_run(report)
    lines = [f"#### {_md(render_title(report))}", ""]
    if run:
        facts = [_run_fact(report), f"**Accounts**: {_md(_counts_fact(report))}"]
    else:
        facts = [
            f"**Account**: {_md(report.get('account', '?'))} (mode {_md(report.get('mode', '?'))})"
        ]
    trigger = _trigger_text(report.get("trigger"))
    if trigger:
        facts.append(f"**Trigger**: {_md(trigger)}")
    drift = _drift(report)
    actor = _actor_text(report.get("actor"))
    if actor:
        facts.append(f"**Changed by**: {_md(actor)}")
    elif _trigger_type(report) == "schedule" and status != "error" and drift:
        facts.append("**Changed by**: unknown (found by the scheduled check; see ActionTrail)")
    lines.append("  \n".join(facts))
    if drift:
        results = _account_results(report)
        grouped = _grouped_by_account(drift)
        limit = FIELD_LIST_LIMIT if any("account" in item for item in drift) else len(drift)
        lines += ["", "**Fields** (before → baseline → after)", ""]
        for item in grouped[:limit]:
            lines.append(_md_drift_item(_item_report(report, results, item), item))
        if len(grouped) > limit:
            lines.append(
                f"- and {len(grouped) - limit} more fields (the run's result and log list them all)"
            )
    failures = _failures(report)
    if failures:
        lines += ["", f"**Failed accounts** ({_failed_count(report)})", ""]
        for failure in failures[:FAILED_LIST_LIMIT]:
            lines.append(_md_failure(failure))
        hidden = _failed_count(report) - min(len(failures), FAILED_LIST_LIMIT)
        if hidden > 0:
            lines.append(f"- and {hidden} more")
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


def _is_run(report: Mapping[str, Any]) -> bool:
    """A multi-account run summary (``fanout.RunSummary.as_dict()``): it counts its accounts."""
    return isinstance(report.get("counts"), Mapping)


def _counts(report: Mapping[str, Any]) -> dict[str, int]:
    counts = report.get("counts")
    if not isinstance(counts, Mapping):
        return {}
    return {str(k): v for k, v in counts.items() if isinstance(v, int) and not isinstance(v, bool)}


def _failures(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The run's failed accounts, each with its account, reason, code and stage."""
    failed = report.get("failed")
    if not isinstance(failed, list):
        return []
    return [item for item in failed if isinstance(item, Mapping)]


def _failed_count(report: Mapping[str, Any]) -> int:
    return max(_counts(report).get("failed", 0), len(_failures(report)))


def _account_results(report: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """A run summary's per-account results (``accounts``), by account id."""
    accounts = report.get("accounts")
    if not isinstance(accounts, list):
        return {}
    return {
        str(result["account"]): result
        for result in accounts
        if isinstance(result, Mapping) and result.get("account") is not None
    }


def _item_report(
    report: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]], item: Mapping[str, Any]
) -> Mapping[str, Any]:
    """The report a drift item belongs to: its account's own result in a run summary (whose
    status is the worst account's), otherwise the report itself."""
    account = item.get("account")
    if account is not None:
        own = results.get(str(account))
        if own is not None:
            return own
    return report


def _grouped_by_account(drift: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The items with each account's together, accounts in order of first appearance."""
    order: dict[str, int] = {}
    for item in drift:
        order.setdefault(str(item.get("account", "")), len(order))
    return sorted(drift, key=lambda item: order[str(item.get("account", ""))])


def _where(report: Mapping[str, Any]) -> str:
    """``account <id>``, or for a report without one the accounts its items name."""
    if "account" in report:
        return f"account {_plain(report.get('account'))}"
    accounts = list(
        dict.fromkeys(
            _plain(item["account"])
            for item in [*_drift(report), *_failures(report)]
            if item.get("account") is not None
        )
    )
    if len(accounts) == 1:
        return f"account {accounts[0]}"
    if accounts:
        return f"{len(accounts)} accounts"
    return "account ?"


_RUN_COUNTS = (
    ("reverted", "reverted"),
    ("drift", "with drift"),
    ("contested", "contested"),
    ("failed", "failed"),
)


def _run_counts_text(report: Mapping[str, Any]) -> str:
    """``2 accounts reverted, 1 with drift, 1 failed``: the counts that need attention."""
    counts = _counts(report)
    counts["failed"] = _failed_count(report)
    parts = [(counts.get(key, 0), label) for key, label in _RUN_COUNTS if counts.get(key, 0)]
    if not parts:
        status = str(report.get("status", ""))
        return _HEADLINES.get(status, status) or "run"
    (first, label), rest = parts[0], parts[1:]
    words = [f"{first} account{'' if first == 1 else 's'} {label}"]
    words += [f"{n} {label}" for n, label in rest]
    return ", ".join(words)


def _counts_fact(report: Mapping[str, Any]) -> str:
    counts = _counts(report)
    counts["failed"] = _failed_count(report)
    keys = ("compliant", "reverted", "drift", "contested", "failed", "skipped", "dispatched")
    parts = [f"{counts[k]} {k}" for k in keys if counts.get(k)]
    total = counts.get("accounts")
    text = ", ".join(parts) or "none enforced"
    return f"{total} ({text})" if total is not None else text


def _run_fact(report: Mapping[str, Any]) -> str:
    details = [str(report["execution"])] if report.get("execution") else []  # in-process, ...
    details.append(f"mode {report.get('mode', '?')}")
    if report.get("targets"):
        details.append(f"targets {report['targets']}")
    return f"**Run**: {_md(report.get('run_id') or '?')} ({_md(', '.join(details))})"


def _summarize_run(report: Mapping[str, Any]) -> str:
    """``secpref-guard run <id>, 4 accounts: 2 accounts reverted, 1 failed; 111 reverted
    LoginSessionDuration; ...; failed: 333 (NoPermission)``."""
    total = _counts(report).get("accounts")
    head = f"{GUARD_NAME} run {_plain(report.get('run_id') or '?')}"
    if total is not None:
        head += f", {total} accounts"
    parts = [f"{head}: {_run_counts_text(report)}"]
    results = _account_results(report)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for item in _drift(report):
        groups.setdefault(_plain(item.get("account", "?")), []).append(item)
    for account, items in list(groups.items())[:SUMMARY_ACCOUNT_LIMIT]:
        status = str(_item_report(report, results, items[0]).get("status", ""))
        names = ", ".join(_plain(item.get("field", "?")) for item in items)
        if status == "reverted":
            reverted = [_plain(i.get("field", "?")) for i in items if i.get("action") == "revert"]
            kept = [_plain(i.get("field", "?")) for i in items if i.get("action") != "revert"]
            text = f"{account} reverted {', '.join(reverted) or 'nothing'}"
            if kept:
                text += f" (not written: {', '.join(kept)})"
        elif status == "drift":
            text = f"{account} drift in {names}, nothing written"
        elif status == "contested":
            text = f"{account} contested, still drifted: {names}"
        else:
            text = f"{account} {status or '?'}: {names}"
        parts.append(text)
    if len(groups) > SUMMARY_ACCOUNT_LIMIT:
        parts.append(f"and {len(groups) - SUMMARY_ACCOUNT_LIMIT} more accounts with drift")
    failures = _failures(report)
    if failures:
        named = ", ".join(
            f"{_plain(f.get('account', '?'))} ({_plain(f.get('code') or f.get('stage') or '?')})"
            for f in failures[:SUMMARY_ACCOUNT_LIMIT]
        )
        hidden = _failed_count(report) - min(len(failures), SUMMARY_ACCOUNT_LIMIT)
        parts.append(f"failed: {named}" + (f" and {hidden} more" if hidden > 0 else ""))
    elif _failed_count(report):
        parts.append(f"failed: {_failed_count(report)} accounts")
    return "; ".join(parts)


def _md_failure(failure: Mapping[str, Any]) -> str:
    """``- account <id>: <reason> (<code>, stage <stage>)``."""
    detail = [str(failure["code"])] if failure.get("code") else []
    if failure.get("stage"):
        detail.append(f"stage {failure['stage']}")
    text = f"- account {_md(failure.get('account', '?'))}: {_md(failure.get('reason') or '?')}"
    if detail:
        text += f" ({_md(', '.join(detail))})"
    return text


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
    """The value after the run: what the engine reports (``after``: a fresh read after a write,
    else the unchanged live value); failing that, the baseline when this run reverted it, the
    live value when nothing was written, the value a fresh read showed when verification
    failed. ``report`` is the result of the item's own account."""
    if "after" in item:
        return _value(item.get("after"))
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
    """One field line; ``report`` is the result of the item's own account. An item that carries
    its account (a multi-account run) names it."""
    before = _value(item.get("actual"))
    baseline = _value(item.get("expected"))
    after = _after(report, item)
    account = f"account {_md(item['account'])}, " if item.get("account") is not None else ""
    return (
        f"- {account}**{_md(item.get('field', '?'))}**: {_md(before)} → {_md(baseline)} → "
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
    if _is_run(report):
        return _what_the_run_did(report)
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


def _accounts(n: int) -> str:
    return f"{n} account{'' if n == 1 else 's'}"


def _what_the_run_did(report: Mapping[str, Any]) -> str:
    counts = _counts(report)
    failed = _failed_count(report)
    done = []
    if counts.get("reverted"):
        done.append(
            f"wrote the baseline back to {_accounts(counts['reverted'])} with "
            "SetSecurityPreference and verified it with a fresh read"
        )
    if counts.get("drift"):
        done.append(f"reported drift in {_accounts(counts['drift'])} and wrote nothing there")
    if counts.get("contested"):
        done.append(
            f"wrote nothing to {_accounts(counts['contested'])} whose revert budget "
            "(GUARD_MAX_REVERTS within GUARD_REVERT_WINDOW_MINUTES) is spent"
        )
    if failed:
        done.append(f"could not enforce {_accounts(failed)} (listed above)")
    if counts.get("dispatched"):
        done.append(f"handed {_accounts(counts['dispatched'])} to the worker")
    text = "; ".join(done) or _plain(report.get("reason") or report.get("status") or "nothing")
    return text[:1].upper() + text[1:] + "."


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
    per Function Compute instance to cover event bursts that reach the same instance.

    Safe across threads (an instance may serve concurrent invocations): ``reserve`` atomically
    claims a (channel, key) that was not delivered within the window and is not being delivered,
    so of concurrent identical reports exactly one is sent; the holder then calls ``record``
    when the channel accepted it, or ``release`` when it failed, so the next report retries. A
    reservation never released (a send that never returned) lapses after ``seconds`` too.
    Times are the caller's clock (``now``), so the window follows an injected clock."""

    def __init__(self, seconds: float = DEFAULT_WINDOW_SECONDS) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._sent: dict[tuple[str, str], float] = {}
        self._reserved: dict[tuple[str, str], float] = {}

    def active(self, channel: str, key: str, now: float) -> bool:
        """Delivered within the window, or being delivered right now."""
        with self._lock:
            return self._busy((channel, key), now) is not None

    def reserve(self, channel: str, key: str, now: float) -> str | None:
        """Claim the key for one delivery: None when the caller now holds it and must send,
        else why not (``"sent"`` within the window, or ``"sending"`` by another caller)."""
        with self._lock:
            self._expire(now)
            busy = self._busy((channel, key), now)
            if busy is None:
                self._reserved[(channel, key)] = now
            return busy

    def record(self, channel: str, key: str, now: float) -> None:
        """The report was delivered at ``now``: its reservation becomes a sent entry."""
        with self._lock:
            self._reserved.pop((channel, key), None)
            self._sent[(channel, key)] = now
            self._expire(now)

    def release(self, channel: str, key: str) -> None:
        """The delivery failed: drop the reservation so the next identical report is sent."""
        with self._lock:
            self._reserved.pop((channel, key), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sent)

    def _busy(self, entry: tuple[str, str], now: float) -> str | None:
        sent_at = self._sent.get(entry)
        if sent_at is not None and now - sent_at < self.seconds:
            return "sent"
        reserved_at = self._reserved.get(entry)
        if reserved_at is not None and now - reserved_at < self.seconds:
            return "sending"
        return None

    def _expire(self, now: float) -> None:
        """Forget what is out of the window, in place (the caller holds the lock)."""
        for entries in (self._sent, self._reserved):
            for entry in [e for e, at in entries.items() if now - at >= self.seconds]:
                del entries[entry]


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
        context: dict[str, Any] = {
            "channel": channel.name,
            "destination": channel.destination,
            "account": _plain(report.get("account", "")),
            "status": report.get("status"),
        }
        if report.get("run_id"):
            context["run_id"] = _plain(report["run_id"])
        now = self.clock()
        busy = self.window.reserve(channel.name, key, now)
        if busy is not None:
            event(
                logging.INFO,
                "notification deduplicated",
                **context,
                window_seconds=self.window.seconds,
                because=busy,
            )
            detail = "sent within the window" if busy == "sent" else "being sent concurrently"
            return ChannelResult(channel.name, "deduplicated", detail)
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
        except BaseException:  # interrupted: never leave the reservation behind
            self.window.release(channel.name, key)
            raise
        else:
            self.window.record(channel.name, key, now)
            detail = _scrub(detail)
            event(logging.INFO, "notification sent", **context, detail=detail)
            return ChannelResult(channel.name, "sent", detail)
        self.window.release(channel.name, key)  # not delivered: the next identical report retries
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
