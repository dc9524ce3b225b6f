"""The small texts every rendering is made of: one-line and markdown-safe text, values, the
API names of a setting, who changed it, what triggered the run, what went wrong.

Everything here reads the typed report (report.py); text that came from outside (a user name
in an audit event, an API's error message) is made one line and, for markdown, escaped, so it
can neither format a message nor inject a link.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .. import fields as F
from ..report import AccountReport, Actor, Drift, Trigger

MAX_TEXT_CHARS = 300
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|])")
_TRIGGERS: dict[str, str] = {  # every Trigger.type
    "schedule": "scheduled check",
    "event": "audit event",
    "worker": "worker batch",
    "cli": "command line",
}


def plain(value: Any) -> str:
    """One line of text: no newlines, bounded length."""
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 3] + "..."


def md(value: Any) -> str:
    """Text inside markdown: one line, markdown syntax characters escaped."""
    return _MD_SPECIAL.sub(r"\\\1", plain(value))


def shown(d: Drift, value: F.Value | None) -> Any:
    """A drift entry's value as reports show it (sets as sorted lists); a field the table does
    not know is shown as it is, so a notification never fails on a setting added later."""
    if d.field in F.BY_API_NAME:
        return d.display(value)
    return sorted(value) if isinstance(value, frozenset) else value


def value_text(value: Any) -> str:
    """A shown value for people: ``true``, ``10.0.0.0/8;192.168.0.0/16``, ``(absent)``."""
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


def setting_api(setting: str) -> str:
    """The API's name of a setting: ``security-preference`` -> ``SecurityPreference`` (as in
    GetSecurityPreference), ``password-policy`` -> ``PasswordPolicy``."""
    return "".join(part.capitalize() for part in setting.split("-"))


def set_actions(settings: Iterable[str]) -> str:
    """``SetSecurityPreference and SetPasswordPolicy``: the write of each setting, in order."""
    names = [f"Set{setting_api(s)}" for s in dict.fromkeys(settings)]
    return " and ".join(names) if names else "nothing"


def accounts(n: int) -> str:
    return f"{n} account{'' if n == 1 else 's'}"


def trigger_text(trigger: Trigger) -> str:
    """``audit event evt-1 at 2026-11-25T04:00:02Z``, ``scheduled check at ...``."""
    text = _TRIGGERS[trigger.type]
    if trigger.id:
        text += f" {trigger.id}"
    if trigger.time:
        text += f" at {trigger.time}"
    return plain(text)


def actor_text(actor: Actor | None) -> str:
    """``ram-user alice of account 123 from 203.0.113.7 at <time>``; empty when unknown."""
    if actor is None or not (actor.type or actor.name or actor.account or actor.source_ip):
        return ""
    text = " ".join(part for part in (actor.type, actor.name) if part) or "someone"
    if actor.account:
        text += f" of account {actor.account}"
    if actor.source_ip:
        text += f" from {actor.source_ip}"
    if actor.time:
        text += f" at {actor.time}"
    return plain(text)


def error_text(account: AccountReport) -> str:
    """What went wrong in an account: its error's code and message (the message of the
    guard's errors names the action and the request id), else the account's reason."""
    if account.error is None:
        return plain(account.reason or "unknown error")
    error = account.error
    message = str(error)
    if not message:
        return plain(error.code)
    return plain(message if error.code in message else f"{error.code}: {message}")


def after_text(account: AccountReport, d: Drift) -> str:
    """The value once the run ended: what the engine reports (a fresh read after a write, the
    unchanged live value when nothing was sent); failing that, the baseline when this run
    reverted it, ``unknown`` when the account failed, else the live value."""
    if d.after_known:
        return value_text(shown(d, d.after))
    if account.status == "reverted" and d.action == "revert":
        return value_text(shown(d, d.expected))
    if account.status == "error":
        return "unknown"
    return value_text(shown(d, d.actual))


def action_text(account: AccountReport, d: Drift) -> str:
    """What the run did with the field: ``reverted``, ``not written: dry run``, ``report-only:
    <note>``; and where its baseline came from."""
    if d.action == "revert":
        text = "reverted" if account.status == "reverted" else "not written"
        if account.status == "contested":
            text = "not written: revert budget spent"
    elif d.action == "dry-run":
        text = "not written: dry run"
    else:
        text = d.action
    if d.note:
        text += f": {d.note}"
    if d.source:
        text += f"; baseline from {d.source}"
    return text
