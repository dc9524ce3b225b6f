"""Which runs are notified, and when two reports are the same news (the de-duplication key).

Only a run that needs a person's attention is sent: one whose status is ``reverted``,
``drift``, ``contested`` or ``error``, and any run in which an account failed, whatever its
status. A run that is only ``compliant`` or ``skipped``, or a fan-out run that only handed its
batches to the worker, is not sent.

Two reports are the same news when they share ``dedup_key``: the run's own account (for a run
of one), its status, every drifted field with its account, that account's status, its setting
and its values, every failed account with its code, and a single account's error code. A burst
of audit events about one change gives one key; the same field reverted in another account,
another account failing, or a failure with another code gives another. dedup.py keeps the keys
sent within the window.
"""

from __future__ import annotations

import json
from typing import Any

from ..report import RunReport
from .text import shown

NOTIFY_STATUSES = frozenset({"reverted", "drift", "contested", "error"})


def should_notify(report: RunReport) -> bool:
    """A run that needs a person's attention (see the module's docstring)."""
    return report.status in NOTIFY_STATUSES or report.counts["failed"] > 0


def dedup_key(report: RunReport) -> str:
    """The report's identity for de-duplication (see the module's docstring); the run id, the
    times, request ids and counts of untouched accounts are not part of it."""
    drift = [
        [
            account.account,
            account.status,
            d.setting,
            d.field,
            shown(d, d.actual),
            shown(d, d.expected),
        ]
        for account, d in report.drift
    ]
    failed = [[f.account, f.code] for f in report.failures]
    one = report.single
    error_code = one.error.code if one is not None and one.error is not None else ""
    parts: list[Any] = [
        one.account if one is not None else "",
        report.status,
        sorted(drift, key=lambda item: json.dumps(item, sort_keys=True, default=str)),
        sorted(failed),
        error_code,
    ]
    return json.dumps(parts, sort_keys=True, default=str)
