"""The command line's table: a run report as a person reads it in a terminal."""

from __future__ import annotations

from typing import Any

from .config import GuardConfig
from .report import AccountReport, RunReport


def render_report(report: RunReport, config: GuardConfig) -> str:
    """Every account of the run, then the run's totals when there was more than one."""
    blocks = []
    for account in report.accounts:
        if account.status == "error":
            blocks.append(f"account {account.account}: FAILED: {account.reason}")
        elif account.status == "skipped":
            blocks.append(f"account {account.account}: skipped ({account.reason})")
        else:
            blocks.append(render_outcome(account, config))
    if report.single is None:
        blocks.append(report.reason)
    return "\n".join(blocks)


def cell_text(value: Any) -> str:
    """A field value as the tables render it: booleans in lower case, lists ``;``-joined
    (``(none)`` when empty), ``(absent)`` for a field the account did not return."""
    if value is None:
        return "(absent)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(str(v) for v in value) if value else "(none)"
    return str(value)


def _action(outcome: AccountReport, config: GuardConfig, action: str) -> str:
    """What happened to a field, or in ``check``, what ``enforce`` would do."""
    if outcome.mode == "check" and action == "dry-run" and not config.dry_run:
        return "would revert"
    return action


def render_outcome(outcome: AccountReport, config: GuardConfig) -> str:
    """A readable before/after table of the drift, with the rule each field is held to."""
    pinned = len(outcome.observed) or len(config.baseline)
    head = {
        "compliant": f"compliant: all {pinned} baseline fields are at least as strict",
        "reverted": f"reverted {sum(d.action == 'revert' for d in outcome.drift)} field(s); "
        "verified with a fresh read",
        "drift": f"drift in {len(outcome.drift)} of {pinned} baseline fields",
        "contested": "contested: nothing written",
    }.get(outcome.status, outcome.status)
    lines = [f"account {outcome.account} ({outcome.mode}): {head}"]
    if outcome.drift:
        show_after = outcome.mode != "check"
        head = ("setting", "field", "actual", "rule") + (("after",) if show_after else ())
        rows = [(*head, "action", "expected from")]
        for d in outcome.drift:
            after = (cell_text(d.display(d.after)) if d.after_known else "?",) if show_after else ()
            rows.append(
                (
                    d.setting,
                    d.field,
                    cell_text(d.display(d.actual)),
                    d.rule or cell_text(d.display(d.expected)),
                    *after,
                    _action(outcome, config, d.action),
                    d.source,
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for i, row in enumerate(rows):
            lines.append(
                "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            )
            if i == 0:
                lines.append("  " + "  ".join("-" * w for w in widths))
        notes = [f"  {d.field}: {d.note}" for d in outcome.drift if d.note]
        lines.extend(notes)
    if outcome.reason and outcome.status != "compliant":
        lines.append(f"reason: {outcome.reason}")
    lines.append(f"api calls: {outcome.api_calls}")
    return "\n".join(lines)
