"""One run report rendered for people and for machines: the title, the one-line summary, the
DingTalk markdown, the webhook's JSON body and the EventBridge CloudEvent.

Every renderer takes a ``RunReport`` (report.py) and reads its typed fields. A run of one
account and a run of many go through the same functions: a run of one (``report.single``)
names its account in the title and its facts; a run of many counts its accounts, names the
account on every field line, and lists the failed accounts (``report.failures``). Every field
line shows its setting (``security-preference`` / ``password-policy``) and the values before,
in the baseline, and after the run.

DingTalk's markdown is a subset (headings, bold, italic, quotes, links, images, lists): it has
no tables, so the before / baseline / after table is one list item per field, and a line break
within a paragraph is two spaces before the newline.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from .. import __version__
from ..report import AccountReport, Drift, RunReport, Status
from .channel import GUARD_NAME
from .text import (
    accounts,
    action_text,
    actor_text,
    after_text,
    error_text,
    md,
    plain,
    set_actions,
    setting_api,
    shown,
    trigger_text,
    value_text,
)

EVENT_SOURCE = GUARD_NAME
FAILED_LIST_LIMIT = 20  # failed accounts named in a message; the rest are counted
FIELD_LIST_LIMIT = 50  # drifted fields listed in a many-account message; the rest are counted
SUMMARY_ACCOUNT_LIMIT = 10  # accounts named in the one-line summary; the rest are counted

HEADLINES: dict[Status, str] = {
    "reverted": "drift reverted",
    "drift": "drift found, nothing written",
    "contested": "contested, nothing written",
    "error": "guard error",
    "compliant": "compliant",
    "skipped": "skipped",
}
# The counts a run's title names, in this order: those that need a person's attention.
_RUN_COUNTS = (
    ("reverted", "reverted"),
    ("drift", "with drift"),
    ("contested", "contested"),
    ("failed", "failed"),
)
_COUNT_KEYS = ("compliant", "reverted", "drift", "contested", "failed", "skipped", "dispatched")


# --- title and one-line summary ---------------------------------------------------------------


def render_title(report: RunReport) -> str:
    """A short title (DingTalk shows it in the conversation list). It names the guard, so a
    robot secured with the custom keyword ``secpref-guard`` accepts every message. A run of
    one names its account; a run of many counts its accounts: ``secpref-guard: 2 accounts
    reverted, 1 failed (run <id>)``."""
    one = report.single
    if one is not None:
        return f"{GUARD_NAME}: {HEADLINES[one.status]} in account {plain(one.account)}"
    suffix = f" (run {plain(report.run_id)})" if report.run_id else ""
    return f"{GUARD_NAME}: {_run_counts_text(report)}{suffix}"


def summarize(report: RunReport) -> str:
    """One line that says what happened, for the webhook's ``summary`` and for logs."""
    one = report.single
    if one is None:
        return _summarize_run(report)
    account = plain(one.account)
    names = _names(one.drift)
    if one.status == "error":
        return f"{GUARD_NAME} failed on account {account}: {error_text(one)}"
    if one.status == "reverted":
        reverted, kept = _reverted_and_kept(one)
        line = f"{GUARD_NAME} reverted {reverted} in account {account}"
        line += f"; not written: {kept}" if kept else ""
    elif one.status == "drift":
        line = f"{GUARD_NAME} found drift in account {account}: {names}; nothing written"
    elif one.status == "contested":
        line = (
            f"{GUARD_NAME} stopped reverting account {account}: the revert budget is spent; "
            f"still drifted: {names}"
        )
    else:
        line = f"{GUARD_NAME}: account {account} is {one.status}"
    actor = actor_text(report.actor)
    return f"{line}; changed by {actor}" if actor else line


def _names(drift: list[Drift]) -> str:
    return ", ".join(plain(d.field) for d in drift) or "no field"


def _reverted_and_kept(account: AccountReport) -> tuple[str, str]:
    """The fields a reverted account had written back, and those it kept (``""``: none)."""
    reverted = [plain(d.field) for d in account.drift if d.action == "revert"]
    kept = [plain(d.field) for d in account.drift if d.action != "revert"]
    return ", ".join(reverted) or "nothing", ", ".join(kept)


def _summarize_run(report: RunReport) -> str:
    """``secpref-guard run <id>, 4 accounts: 2 accounts reverted, 1 failed; 111 reverted
    LoginSessionDuration; ...; failed: 333 (NoPermission)``."""
    counts = report.counts
    head = f"{GUARD_NAME} run {plain(report.run_id or '?')}, {counts['accounts']} accounts"
    parts = [f"{head}: {_run_counts_text(report)}"]
    drifted = [a for a in report.accounts if a.drift]
    for account in drifted[:SUMMARY_ACCOUNT_LIMIT]:
        parts.append(f"{plain(account.account)} {_account_phrase(account)}")
    if len(drifted) > SUMMARY_ACCOUNT_LIMIT:
        parts.append(f"and {len(drifted) - SUMMARY_ACCOUNT_LIMIT} more accounts with drift")
    failures = report.failures
    if failures:
        named = ", ".join(
            f"{plain(f.account)} ({plain(f.code or f.stage)})"
            for f in failures[:SUMMARY_ACCOUNT_LIMIT]
        )
        hidden = len(failures) - SUMMARY_ACCOUNT_LIMIT
        parts.append(f"failed: {named}" + (f" and {hidden} more" if hidden > 0 else ""))
    return "; ".join(parts)


def _account_phrase(account: AccountReport) -> str:
    """What a run did in one drifted account, for the run's summary line."""
    names = _names(account.drift)
    if account.status == "reverted":
        reverted, kept = _reverted_and_kept(account)
        return f"reverted {reverted}" + (f" (not written: {kept})" if kept else "")
    if account.status == "drift":
        return f"drift in {names}, nothing written"
    if account.status == "contested":
        return f"contested, still drifted: {names}"
    return f"{account.status}: {names}"


def _run_counts_text(report: RunReport) -> str:
    """``2 accounts reverted, 1 with drift, 1 failed``: the counts that need attention."""
    counts = report.counts
    parts = [(counts[key], label) for key, label in _RUN_COUNTS if counts[key]]
    if not parts:
        return HEADLINES[report.status]
    (first, label), rest = parts[0], parts[1:]
    return ", ".join([f"{accounts(first)} {label}", *(f"{n} {label}" for n, label in rest)])


# --- DingTalk markdown ------------------------------------------------------------------------


def render_markdown(report: RunReport) -> str:
    """The DingTalk message text: title, facts (account or run, trigger, who changed it), one
    line per drifted field, the failed accounts of a run of many, and what the guard did."""
    one = report.single
    lines = [f"#### {md(render_title(report))}", ""]
    if one is not None:
        facts = [f"**Account**: {md(one.account)} (mode {md(one.mode)})"]
    else:
        facts = [_run_fact(report), f"**Accounts**: {md(_counts_fact(report))}"]
    trigger = trigger_text(report.trigger)
    if trigger:
        facts.append(f"**Trigger**: {md(trigger)}")
    drift = report.drift
    actor = actor_text(report.actor)
    if actor:
        facts.append(f"**Changed by**: {md(actor)}")
    elif report.trigger.type == "schedule" and any(a.status != "error" for a, _ in drift):
        facts.append("**Changed by**: unknown (found by the scheduled check; see ActionTrail)")
    lines.append("  \n".join(facts))
    if drift:
        limit = len(drift) if one is not None else FIELD_LIST_LIMIT
        lines += ["", "**Fields** (before → baseline → after)", ""]
        lines += [_field_line(account, d, named=one is None) for account, d in drift[:limit]]
        if len(drift) > limit:
            lines.append(
                f"- and {len(drift) - limit} more fields (the run's result and log list them all)"
            )
    failures = report.failures if one is None else []
    if failures:
        lines += ["", f"**Failed accounts** ({len(failures)})", ""]
        for f in failures[:FAILED_LIST_LIMIT]:
            detail = ", ".join([*([f.code] if f.code else []), f"stage {f.stage}"])
            lines.append(f"- account {md(f.account)}: {md(f.reason or '?')} ({md(detail)})")
        if len(failures) > FAILED_LIST_LIMIT:
            lines.append(f"- and {len(failures) - FAILED_LIST_LIMIT} more")
    lines += ["", f"**What the guard did**: {md(_what_the_guard_did(report))}"]
    return "\n".join(lines)


def _field_line(account: AccountReport, d: Drift, *, named: bool) -> str:
    """``- [account <id>, ]<setting> **<field>**: before → baseline → after (what was done)``."""
    who = f"account {md(account.account)}, " if named else ""
    before = value_text(shown(d, d.actual))
    baseline = value_text(shown(d, d.expected))
    return (
        f"- {who}{md(d.setting)} **{md(d.field)}**: {md(before)} → {md(baseline)} → "
        f"{md(after_text(account, d))} ({md(action_text(account, d))})"
    )


def _run_fact(report: RunReport) -> str:
    details = [report.execution, f"mode {report.mode}"]
    if report.targets:
        details.append(f"targets {report.targets}")
    return f"**Run**: {md(report.run_id or '?')} ({md(', '.join(details))})"


def _counts_fact(report: RunReport) -> str:
    counts = report.counts
    text = ", ".join(f"{counts[k]} {k}" for k in _COUNT_KEYS if counts[k]) or "none enforced"
    return f"{counts['accounts']} ({text})"


def _reverted_settings(report: RunReport) -> list[str]:
    return [d.setting for a, d in report.drift if a.status == "reverted" and d.action == "revert"]


def _what_the_guard_did(report: RunReport) -> str:
    one = report.single
    if one is None:
        return _what_the_run_did(report)
    reason = plain(one.reason)
    if one.status == "reverted":
        lead = (
            f"wrote the baseline back with {set_actions(_reverted_settings(report))} and "
            "verified it with a fresh read"
        )
    elif one.status == "drift":
        lead = "reported the drift and wrote nothing"
    elif one.status == "contested":
        lead = (
            "wrote nothing: the revert budget (GUARD_MAX_REVERTS within "
            "GUARD_REVERT_WINDOW_MINUTES) is spent and someone keeps changing the setting; "
            "find out who, and consider the control policy that prevents the change"
        )
    elif one.status == "error":
        lead = f"failed: {error_text(one)}"
        if reason in lead:  # the error's message is usually the reason too
            reason = ""
    else:
        lead = one.status
    lead = lead[:1].upper() + lead[1:]
    return f"{lead}. {reason[:1].upper() + reason[1:]}." if reason else f"{lead}."


def _what_the_run_did(report: RunReport) -> str:
    counts = report.counts
    done = []
    if counts["reverted"]:
        done.append(
            f"wrote the baseline back to {accounts(counts['reverted'])} with "
            f"{set_actions(_reverted_settings(report))} and verified it with a fresh read"
        )
    if counts["drift"]:
        done.append(f"reported drift in {accounts(counts['drift'])} and wrote nothing there")
    if counts["contested"]:
        done.append(
            f"wrote nothing to {accounts(counts['contested'])} whose revert budget "
            "(GUARD_MAX_REVERTS within GUARD_REVERT_WINDOW_MINUTES) is spent"
        )
    if counts["failed"]:
        done.append(f"could not enforce {accounts(counts['failed'])} (listed above)")
    if counts["dispatched"]:
        done.append(f"handed {accounts(counts['dispatched'])} to the worker")
    text = "; ".join(done) or plain(report.reason or report.status)
    return text[:1].upper() + text[1:] + "."


# --- machine-readable: webhook body and CloudEvent -------------------------------------------


def render_webhook_body(report: RunReport) -> dict[str, Any]:
    """The JSON document for the webhook and the CloudEvent's data: the run's result document
    (``RunReport.as_dict``), a one-line ``summary`` and ``guard`` (the guard's name and
    version)."""
    body: dict[str, Any] = json.loads(json.dumps(report.as_dict(), default=str))
    body["summary"] = summarize(report)
    body["guard"] = {"name": GUARD_NAME, "version": __version__}
    return body


def cloudevent_subject(report: RunReport) -> str:
    """What the event is about: ``<account>/<Setting>[+<Setting>]``, the account being the run's
    one account, or the one account that drifted or failed, or ``<n> accounts``; the settings
    those accounts drifted in (else the settings they read). ``1234/SecurityPreference``,
    ``3 accounts/SecurityPreference+PasswordPolicy``."""
    one = report.single
    concerned = [one] if one is not None else [a for a in report.accounts if a.drift or a.failed]
    ids = list(dict.fromkeys([a.account for a in concerned] + [f.account for f in report.failures]))
    who = plain(ids[0]) if len(ids) == 1 else accounts(len(ids) or report.counts["accounts"])
    settings = [d.setting for a in concerned for d in a.drift] or [
        s for a in concerned for s in a.settings
    ]
    what = "+".join(setting_api(s) for s in dict.fromkeys(settings))
    return f"{who}/{what}" if what else who


def render_cloudevent(report: RunReport, bus: str, *, event_id: str, now: float) -> dict[str, Any]:
    """One CloudEvent (specversion 1.0) for PutEvents; the bus name rides in the
    ``aliyuneventbusname`` extension attribute."""
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": EVENT_SOURCE,
        "type": f"{GUARD_NAME}:Report:{report.status}"[:64],
        "subject": cloudevent_subject(report),
        "time": _iso_millis(now),
        "datacontenttype": "application/json",
        "data": render_webhook_body(report),
        "aliyuneventbusname": bus,
    }


def _iso_millis(now: float) -> str:
    moment = datetime.fromtimestamp(now, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"
