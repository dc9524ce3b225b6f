"""The run report: one typed object per run, that every renderer reads and none re-derives.

run -> accounts -> drift entries. A run of one account is a run like any other: the handler
JSON, the CLI table, the audit report formats and every notification channel render the same
``RunReport``. ``as_dict`` is the interface's result document (../shared/interface.md): the
keys ``status``, ``drift`` (each entry with ``setting``, ``field``, ``actual``, ``expected``)
and ``reason`` for the run, one entry per account under ``accounts`` and the counts per status;
for a run of exactly one account its own keys (``account``, ``api_calls``, ``error``, ...) stand
at the top as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from . import fields as F
from .errors import GuardError

Status = Literal["compliant", "reverted", "drift", "skipped", "contested", "error"]
Action = Literal["revert", "report-only", "exempt", "dry-run"]
# A run's status is its worst account's, in this order.
STATUS_ORDER: tuple[Status, ...] = (
    "skipped",
    "compliant",
    "reverted",
    "drift",
    "contested",
    "error",
)
COUNTED: tuple[str, ...] = ("compliant", "reverted", "drift", "contested")


@dataclass(frozen=True)
class Drift:
    """One baseline field whose live value is not at least as strict as the baseline."""

    field: str
    actual: F.Value | None  # None: the account did not return the field
    expected: F.Value
    action: Action
    source: str = ""  # where the expected value came from (variable or preset)
    note: str = ""  # why it was not reverted (report-only, exemption reason and expiry)
    after: F.Value | None = None  # the value once the run ended (see after_known)
    after_known: bool = False  # verified by a fresh read, or unchanged because nothing was sent
    setting: str = "security-preference"
    rule: str = ""  # the comparison that applied, e.g. "at least 14", "exactly true"

    def with_after(self, value: F.Value | None) -> Drift:
        return replace(self, after=value, after_known=True)

    def with_action(self, action: Action) -> Drift:
        return replace(self, action=action)

    def display(self, value: F.Value | None) -> Any:
        return F.field(self.field).display(value)

    def as_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "setting": self.setting,
            "field": self.field,
            "actual": self.display(self.actual),
            "expected": self.display(self.expected),
            "action": self.action,
        }
        if self.rule:
            item["rule"] = self.rule
        if self.source:
            item["source"] = self.source
        if self.note:
            item["note"] = self.note
        if self.after_known:
            item["after"] = self.display(self.after)
        return item


@dataclass(frozen=True)
class Actor:
    """Who made the change an audit event reports."""

    type: str
    name: str
    account: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    time: str | None = None
    via: str = "api"  # console | api

    @property
    def label(self) -> str:
        return f"{self.type} {self.name}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "name": self.name,
            "account": self.account,
            "source_ip": self.source_ip,
            "user_agent": self.user_agent,
            "time": self.time,
            "via": self.via,
        }


@dataclass(frozen=True)
class Trigger:
    """What started the run: a timer, an audit event, a worker batch, or the command line."""

    type: Literal["schedule", "event", "worker", "cli"]
    name: str | None = None
    id: str | None = None
    time: str | None = None

    def as_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {"type": self.type}
        for key in ("id", "name", "time"):
            value = getattr(self, key)
            if value is not None or (key == "time" and self.type == "schedule"):
                item[key] = value
        return item


@dataclass
class AccountReport:
    """What the run did in one account: read, compared, wrote, verified; or why it did not."""

    account: str
    status: Status
    mode: str
    drift: list[Drift] = field(default_factory=list)
    reason: str = ""
    rule: str | None = None  # for a skipped account: the scope rule that excluded it
    request_ids: list[str] = field(default_factory=list)
    api_calls: int = 0
    duration_ms: float = 0.0
    error: GuardError | None = None
    budget: dict[str, Any] | None = None
    role_arn: str | None = None
    settings: tuple[str, ...] = ()  # the settings read in this account
    # the live value of every baseline field as the run read it (None: not returned), compliant
    # or not: what an audit report shows for each field
    observed: dict[str, F.Value | None] = field(default_factory=dict)
    # writable fields the read did not return: never sent, so a Set may reset them
    unread: tuple[str, ...] = ()
    # fields outside the baseline that changed between the read and the write: kept as changed
    changed_during_run: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status == "error"

    @property
    def left_drift(self) -> bool:
        """Drift the run left in place (check, dry-run, report-only, exempt, contested)."""
        return any(d.action != "revert" for d in self.drift) or self.status == "contested"

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "status": self.status,
            "account": self.account,
            "mode": self.mode,
            "drift": [d.as_dict() for d in self.drift],
            "reason": self.reason,
            "api_calls": self.api_calls,
            "request_ids": list(self.request_ids),
            "duration_ms": round(self.duration_ms, 1),
        }
        if self.settings:
            result["settings"] = list(self.settings)
        if self.rule:
            result["rule"] = self.rule
        if self.unread:
            result["unread_fields"] = list(self.unread)
        if self.changed_during_run:
            result["changed_during_run"] = list(self.changed_during_run)
        if self.error is not None:
            result["error"] = self.error.as_dict()
        if self.budget is not None:
            result["budget"] = self.budget
        if self.role_arn:
            result["role_arn"] = self.role_arn
        return result


@dataclass(frozen=True)
class Dispatch:
    """One batch of accounts handed to the worker function, or the reason it could not be."""

    batch: int
    batches: int
    accounts: tuple[str, ...]
    request_id: str | None = None
    error: GuardError | None = None

    def as_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "batch": self.batch,
            "accounts": len(self.accounts),
            "request_id": self.request_id,
        }
        if self.error is not None:
            item["error"] = self.error.as_dict()
        return item


@dataclass(frozen=True)
class Failure:
    """An account the run could not enforce: where it failed and why."""

    account: str
    reason: str
    code: str
    stage: str  # scope | assume-role | enforce | dispatch

    def as_dict(self) -> dict[str, str]:
        return {
            "account": self.account,
            "reason": self.reason,
            "code": self.code,
            "stage": self.stage,
        }


@dataclass
class RunReport:
    """One run: every candidate account's report, the batches handed on, and the totals."""

    run_id: str
    mode: str
    trigger: Trigger
    execution: str = "in-process"  # in-process | fan-out | worker
    targets: str = ""  # self | list | resource-directory | event | batch i/n
    accounts: list[AccountReport] = field(default_factory=list)
    dispatches: list[Dispatch] = field(default_factory=list)
    actor: Actor | None = None
    listing_api_calls: int = 0  # Resource Manager calls made to decide scope
    duration_ms: float = 0.0
    notifications: list[dict[str, Any]] | None = None

    # --- views ----------------------------------------------------------------------------

    @property
    def skipped(self) -> list[AccountReport]:
        return [a for a in self.accounts if a.status == "skipped"]

    @property
    def single(self) -> AccountReport | None:
        """The one account of a run of one (nothing handed to a worker)."""
        if len(self.accounts) == 1 and not self.dispatches:
            return self.accounts[0]
        return None

    @property
    def drift(self) -> list[tuple[AccountReport, Drift]]:
        return [(a, d) for a in self.accounts for d in a.drift]

    @property
    def failures(self) -> list[Failure]:
        failed = []
        for a in self.accounts:
            if a.failed:
                error = a.error.as_dict() if a.error is not None else {}
                failed.append(
                    Failure(
                        a.account,
                        a.reason,
                        str(error.get("code") or error.get("type") or "error"),
                        str(error.get("stage") or "enforce"),
                    )
                )
        for d in self.dispatches:
            if d.error is not None:
                failed += [
                    Failure(
                        a, f"batch {d.batch} not dispatched: {d.error}", d.error.code, "dispatch"
                    )
                    for a in d.accounts
                ]
        return failed

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(COUNTED, 0)
        for a in self.accounts:
            if a.status in counts:
                counts[a.status] += 1
        handed = sum(len(d.accounts) for d in self.dispatches)
        undelivered = sum(len(d.accounts) for d in self.dispatches if d.error is not None)
        return {
            "accounts": len(self.accounts) + handed,
            **counts,
            "failed": sum(1 for a in self.accounts if a.failed) + undelivered,
            "skipped": len(self.skipped),
            "dispatched": handed - undelivered,
        }

    @property
    def ok(self) -> bool:
        """Every account is on the baseline or handed to a worker; nothing failed."""
        c = self.counts
        return c["failed"] == 0 and c["drift"] == 0 and c["contested"] == 0

    @property
    def status(self) -> Status:
        """The worst account's status; an undelivered batch counts as failed accounts."""
        worst: Status = "skipped"
        for a in self.accounts:
            if STATUS_ORDER.index(a.status) > STATUS_ORDER.index(worst):
                worst = a.status
        if any(d.error is not None for d in self.dispatches):
            worst = "error"
        return worst

    @property
    def reason(self) -> str:
        one = self.single
        if one is not None:
            return one.reason
        c = self.counts
        parts = [
            f"{c[k]} {k}"
            for k in (
                "compliant",
                "reverted",
                "drift",
                "contested",
                "failed",
                "skipped",
                "dispatched",
            )
            if c[k]
        ]
        text = f"{c['accounts']} accounts: " + (", ".join(parts) or "none enforced")
        failures = self.failures
        if failures:
            first = failures[0]
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            text += f"; failed {first.account}: {first.reason}{more}"
        if c["dispatched"]:
            sent = sum(1 for d in self.dispatches if d.error is None)
            text += f"; {c['dispatched']} accounts handed to the worker in {sent} batches"
        return text

    @property
    def failure_text(self) -> str:
        """The run's failures in one line, as an invocation fails or the CLI errs with them:
        a run of one says its account's reason, a run of many counts and names them."""
        failures = self.failures
        one = self.single
        if one is not None and failures:
            return one.reason if one.role_arn is None else f"account {one.account}: {one.reason}"
        named = ", ".join(f"{f.account} ({f.code or f.reason})" for f in failures[:5])
        more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
        return f"{len(failures)} of {self.counts['accounts']} accounts failed: {named}{more}"

    @property
    def api_calls(self) -> int:
        return (
            sum(a.api_calls for a in self.accounts) + len(self.dispatches) + self.listing_api_calls
        )

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "status": self.status,
            "drift": [{"account": a.account, **d.as_dict()} for a, d in self.drift],
            "reason": self.reason,
        }
        one = self.single
        if one is not None:
            result.update({k: v for k, v in one.as_dict().items() if k not in result})
        result.update(
            {
                "run_id": self.run_id,
                "mode": self.mode,
                "execution": self.execution,
                "targets": self.targets,
                "trigger": self.trigger.as_dict(),
                "counts": self.counts,
                "failed": [f.as_dict() for f in self.failures],
                "skipped": [{"account": a.account, "reason": a.reason} for a in self.skipped],
                "accounts": [a.as_dict() for a in self.accounts],
                "dispatches": [d.as_dict() for d in self.dispatches],
                "api_calls": self.api_calls,
                "duration_ms": round(self.duration_ms, 1),
            }
        )
        if self.actor is not None:
            result["actor"] = self.actor.as_dict()
        if self.notifications is not None:
            result["notifications"] = self.notifications
        return result
