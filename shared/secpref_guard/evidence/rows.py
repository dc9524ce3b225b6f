"""RunReport -> rows: the one place that derives the audit evidence from a run.

One ``Row`` per account of the run and field of the baseline, in the run's account order and
the field table's order: the field's live value as the run read it, the baseline value, the
rule it is held to, the status and why, and the CIS recommendation a preset (presets.py) cites
for the field when the baseline meets it. An account the run skipped or could not read gets a row
per baseline field too (``skipped`` / ``error`` with the reason), so every account of scope is
visible. The formats (CSV, OCSF, HTML) render these rows and never look at the run again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Literal

from .. import __version__
from .. import fields as F
from ..config import GuardConfig
from ..presets import PRESETS
from ..report import AccountReport, Drift, RunReport
from ..table import cell_text

RowStatus = Literal["compliant", "drift", "exempt", "report-only", "skipped", "error"]
# An account's status is its worst row's, in this order (and the page lists them so).
ROW_STATUSES: tuple[RowStatus, ...] = (
    "compliant",
    "skipped",
    "exempt",
    "report-only",
    "drift",
    "error",
)


@dataclass(frozen=True)
class Row:
    """One account and one baseline field: what was read, what is required, the verdict."""

    account: str
    setting: str
    field: str
    live: Any  # the display value read (None: not returned); meaningless unless ``read``
    read: bool  # False: the account was skipped or failed before the field was read
    baseline: Any  # the display value of the baseline
    rule: str  # "exactly false", "at least 14", ...
    status: RowStatus
    detail: str = ""  # why: the skip or error reason, the exemption, a note on the drift
    cis: str = ""  # the CIS recommendation the preset in use cites for the field
    source: str = ""  # where the baseline value came from (variable or preset)
    until: date | None = None  # the last day of an active exemption

    @property
    def live_text(self) -> str:
        return cell_text(self.live) if self.read else ""

    @property
    def baseline_text(self) -> str:
        return cell_text(self.baseline)

    @property
    def status_text(self) -> str:
        """The status in words: ``exempt until 2027-03-31`` for an exemption."""
        if self.status == "exempt" and self.until is not None:
            return f"exempt until {self.until.isoformat()}"
        return self.status


@dataclass(frozen=True)
class Evidence:
    """The rows of one run, with what an auditor needs to place them: when, what, by whom."""

    rows: tuple[Row, ...]
    checked_at: datetime  # when the run started (UTC)
    run_id: str
    targets: str
    preset: str | None
    fields: tuple[str, ...]  # the baseline's fields, in row order
    version: str = __version__

    def accounts(self) -> dict[str, list[Row]]:
        """The rows of each account, in the run's account order."""
        grouped: dict[str, list[Row]] = {}
        for row in self.rows:
            grouped.setdefault(row.account, []).append(row)
        return grouped

    def account_counts(self) -> Counter[str]:
        """Accounts per (worst) status."""
        return Counter(worst(r.status for r in rows) for rows in self.accounts().values())


def worst(statuses: Iterable[RowStatus]) -> RowStatus:
    found = list(statuses)
    return max(found, key=ROW_STATUSES.index) if found else "compliant"


def evidence(
    report: RunReport, config: GuardConfig, checked_at: datetime | None = None
) -> Evidence:
    """The evidence of a run (``check``-like: nothing was written) against ``config``."""
    names = _baseline_order(config)
    rows = [row for account in report.accounts for row in account_rows(account, config, names)]
    return Evidence(
        rows=tuple(rows),
        checked_at=checked_at or datetime.now(timezone.utc),
        run_id=report.run_id,
        targets=report.targets,
        preset=config.settings.preset,
        fields=tuple(names),
    )


def account_rows(
    account: AccountReport, config: GuardConfig, names: Iterable[str] | None = None
) -> list[Row]:
    """One row per baseline field of one account's report."""
    drift = {d.field: d for d in account.drift}
    rows = []
    for name in names if names is not None else _baseline_order(config):
        expected = config.baseline[name]
        f = F.field(name)
        status, detail, until = _verdict(account, name, drift.get(name), config)
        read = name in account.observed
        live = account.observed.get(name)
        d = drift.get(name)
        rows.append(
            Row(
                account=account.account,
                setting=_setting(name),
                field=name,
                live=f.display(live) if read else None,
                read=read,
                baseline=f.display(expected),
                rule=d.rule if d is not None and d.rule else rule(config, name),
                status=status,
                detail=detail,
                cis=citation(config, name),
                source=config.source_of(name),
                until=until,
            )
        )
    return rows


def _verdict(
    account: AccountReport, name: str, drift: Drift | None, config: GuardConfig
) -> tuple[RowStatus, str, date | None]:
    if account.status == "skipped":
        return "skipped", account.reason, None
    if account.status == "error":
        return "error", account.reason, None
    if drift is None:
        if name not in account.observed:  # never read (a run cut short): no verdict to give
            return "error", account.reason or "the field was not read", None
        return "compliant", "", None
    if drift.action == "exempt":
        return "exempt", drift.note, _exempt_until(config, account.account, name)
    if drift.action == "report-only":
        return "report-only", drift.note, None
    note = drift.note
    if drift.actual is None:
        note = "; ".join(filter(None, ["the account did not return the field", note]))
    return "drift", note, None


def _exempt_until(config: GuardConfig, account: str, name: str) -> date | None:
    """The last day of the latest exemption of this account and field (the engine applied an
    active one)."""
    exemptions = config.settings.exemptions
    days = [e.until for e in exemptions if e.account == account and name in e.fields]
    return max(days) if days else None


def citation(config: GuardConfig, name: str) -> str:
    """The recommendations a preset cites for a field whose baseline meets them (is at least as
    strict as the preset's value), so that a row compliant with the baseline is compliant with
    the recommendation; empty when no preset names the field or the baseline is weaker."""
    f, expected = F.field(name), config.baseline[name]
    cited = [
        preset[name].citation
        for preset in PRESETS.values()
        if name in preset and f.satisfies(expected, preset[name].value)
    ]
    return "; ".join(dict.fromkeys(cited))


def rule(config: GuardConfig, name: str) -> str:
    """The rule a live value of the field is held to, in words ("at least 14", "exactly
    false")."""
    return F.field(name).rule(config.baseline[name], config.is_exact(name))


def _setting(name: str) -> str:
    return F.setting_of(name).name


def _baseline_order(config: GuardConfig) -> list[str]:
    """The baseline's fields in the field table's order."""
    position = {f.api_name: i for i, f in enumerate(F.FIELDS)}
    return sorted(config.baseline, key=lambda name: position.get(name, len(position)))
