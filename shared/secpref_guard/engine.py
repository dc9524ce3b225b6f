"""The drift engine of one account: for each setting, read, compare, write the complete desired
state, verify.

One enforcement for every trigger; a setting is data (fields.Setting) and the engine never
names one. The rules:
- only settings with a baseline field are read (``GuardConfig.enforced_settings``), and of
  those only the ones the trigger names (an audit event names the setting it changed);
- a live value at least as strict as the baseline is compliant and stays
  (``Field.satisfies``); only a weaker or missing one is drift, reverted to the baseline value;
- a compliant setting costs exactly one read; a drifted one a read, a write and a verification;
- a Set always carries the complete desired state of its setting: the baseline value of every
  field it reverts and the live value of every other field the account returned, so no field
  the baseline does not own changes whether the API keeps or resets omitted fields;
- every value sent is either the live value or the baseline value, nothing else;
- report-only and exempt fields are reported and sent with their live value;
- a write planned on a read older than ``STALE_READ_SECONDS`` reads again first;
- after a write, a fresh read must show every sent value, or the run is an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Protocol

from . import fields as F
from .compare import compare, desired_state
from .config import GuardConfig
from .errors import GuardError
from .ims import ImsClient, Preference
from .logs import event
from .report import AccountReport, Drift


class VerificationError(GuardError):
    """The write was accepted but a fresh read does not show it."""

    code = "VerificationFailed"

    def __init__(
        self,
        mismatches: list[dict[str, Any]],
        request_id: str | None,
        setting: F.Setting = F.SECURITY_PREFERENCE,
        after: dict[str, F.Value | None] | None = None,
    ) -> None:
        self.mismatches = mismatches
        self.after = after or {}  # each drifted field's value as the fresh read showed it
        self.request_id = request_id
        self.setting = setting.name
        names = ", ".join(m["field"] for m in mismatches)
        super().__init__(
            f"{setting.set_action} was accepted but a fresh {setting.get_action} still "
            f"differs in {names}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            **super().as_dict(),
            "setting": self.setting,
            "mismatches": self.mismatches,
            "request_id": self.request_id,
        }


def _today() -> date:
    return datetime.now(timezone.utc).date()


class Budget(Protocol):
    """The revert budget (budget.RevertBudget): consulted only before a write."""

    max_reverts: int

    def check(self, account: str, now: datetime | None = None) -> Any: ...

    def record_in_background(
        self, account: str, now: datetime | None = None, actor: str | None = None
    ) -> Any: ...


BUDGET_RECORD_WAIT_SECONDS = 15.0
# A write planned on a read older than this reads again first (the revert budget's store, or a
# slow network, can stand between the two), so that a change made meanwhile to a field outside
# the baseline is kept, not rolled back. A compliant run never pays for it.
STALE_READ_SECONDS = 0.5


@dataclass
class _Read:
    """One setting as read: its live values, when, and the drift they show."""

    setting: F.Setting
    live: Preference
    at: float
    drifts: list[Drift]

    @property
    def to_revert(self) -> list[Drift]:
        return [d for d in self.drifts if d.action == "revert"]


def settings_to_read(config: GuardConfig, names: tuple[str, ...] | None) -> list[F.Setting]:
    """The settings a run reads: those the baseline pins, narrowed to ``names`` when given."""
    return [s for s in config.enforced_settings if names is None or s.name in names]


def run(
    client: ImsClient,
    config: GuardConfig,
    *,
    account: str = "self",
    write: bool = True,
    today: date | None = None,
    budget: Budget | None = None,
    actor: str | None = None,
    settings: tuple[str, ...] | None = None,
    raise_errors: bool = True,
) -> AccountReport:
    """Check one account and, when ``write`` and the policy allow, revert its drift.

    ``settings``: the names of the settings to read (None: every one the baseline pins).
    ``write=False`` is the CLI's ``check``: it reports the drift and never writes. With a
    ``budget``, a write happens only while the account's revert budget is not spent (the store
    is read only when there is something to write); ``actor`` is who made the change, if known.
    A GuardError (an API error, a write that did not stick) is raised, or with
    ``raise_errors=False`` returned as the report's ``error`` with the drift seen so far.
    """
    started = time.perf_counter()
    calls_before = client.log.calls
    ids_before = len(client.log.request_ids)
    mode = "check" if not write else config.settings.mode
    outcome = AccountReport(account=account, status="compliant", mode=mode)
    wanted = settings_to_read(config, settings)
    outcome.settings = tuple(s.name for s in wanted)
    try:
        _run(client, config, outcome, wanted, write, today or _today(), budget, actor)
    except GuardError as exc:
        if raise_errors:
            raise
        outcome.status, outcome.error, outcome.reason = "error", exc, str(exc)
    finally:
        outcome.api_calls = client.log.calls - calls_before
        outcome.request_ids = client.log.request_ids[ids_before:]
        outcome.duration_ms = (time.perf_counter() - started) * 1000
    if outcome.error is None:
        _log_outcome(outcome)
    return outcome


def _read(
    client: ImsClient, config: GuardConfig, setting: F.Setting, account: str, today: date
) -> _Read:
    live = client.get_setting(setting)
    return _Read(setting, live, time.monotonic(), compare(config, live, account, today))


def _run(
    client: ImsClient,
    config: GuardConfig,
    outcome: AccountReport,
    wanted: list[F.Setting],
    write: bool,
    today: date,
    budget: Budget | None = None,
    actor: str | None = None,
) -> None:
    reads = [_read(client, config, s, outcome.account, today) for s in wanted]
    _note_reads(outcome, config, reads)
    if not write:
        for r in reads:
            r.drifts = [d.with_action("dry-run") if d.action == "revert" else d for d in r.drifts]
        _note_reads(outcome, config, reads)
    if not outcome.drift:
        outcome.status = "compliant"
        outcome.reason = "every baseline field is at least as strict as the baseline"
        return
    if not any(r.to_revert for r in reads):
        outcome.drift = [d.with_after(d.actual) for d in outcome.drift]  # nothing sent
        outcome.status = "drift"
        outcome.reason = _why_not_written(outcome.drift, write, config)
        return

    budget_note = ""
    if budget is not None:
        check = budget.check(outcome.account)
        outcome.budget = check.as_dict()
        if not check.allowed:
            outcome.drift = [d.with_after(d.actual) for d in outcome.drift]
            _contest(outcome, config, [d for r in reads for d in r.to_revert], check)
            return
        if check.error:
            budget_note = f"; {check.error}"

    changed: list[str] = []
    for i, r in enumerate(reads):
        if r.to_revert and time.monotonic() - r.at > STALE_READ_SECONDS:
            again = _read(client, config, r.setting, outcome.account, today)
            changed += _changed_outside(config, r, again)
            reads[i] = again
    _note_changes(outcome, changed)
    _note_reads(outcome, config, reads)
    written = [r for r in reads if r.to_revert]
    if not written:  # someone else put the account right meanwhile
        outcome.drift = [d.with_after(d.actual) for d in outcome.drift]
        outcome.status = "drift" if outcome.drift else "compliant"
        outcome.reason = (
            _why_not_written(outcome.drift, write, config)
            if outcome.drift
            else "the account was put back on the baseline before the guard wrote"
        )
        return

    pending = (
        budget.record_in_background(outcome.account, actor=actor) if budget is not None else None
    )
    after: dict[str, F.Value | None] = {}  # what the verification reads showed
    unknown: set[str] = set()  # settings whose write failed: their state is not known
    try:
        for r in written:

            def replan(r: _Read = r) -> _Read:
                """A Set tried again after a wait: planned on a fresh read."""
                again = _read(client, config, r.setting, outcome.account, today)
                _note_changes(outcome, [*changed, *_changed_outside(config, r, again)])
                return again

            try:
                after.update(_write_and_verify(client, r, replan))
            except VerificationError as exc:
                after.update(exc.after)
                raise
            except GuardError:
                unknown.add(r.setting.name)
                raise
    finally:
        if pending is not None:
            pending.wait(BUDGET_RECORD_WAIT_SECONDS)
        # the value after the run: verified for a written setting, unchanged for the others
        outcome.drift = [
            d if d.setting in unknown else d.with_after(after.get(d.field, d.actual))
            for d in outcome.drift
        ]
    outcome.status = "reverted"
    reverted = [d.field for r in written for d in r.to_revert]
    kept = [d.field for d in outcome.drift if d.action != "revert"]
    outcome.reason = f"reverted {', '.join(reverted)}"
    if kept:
        why = _why_not_written(outcome.drift, True, config)
        outcome.reason += f"; not written: {', '.join(kept)} ({why})"
    unread = [name for r in written for name in _unread(r)]
    if unread:
        outcome.reason += (
            f"; not returned by the read, so not sent: {', '.join(unread)} (the API may "
            "reset an omitted field to its default)"
        )
    if outcome.changed_during_run:
        outcome.reason += (
            f"; changed by someone else meanwhile and kept: {', '.join(outcome.changed_during_run)}"
        )
    outcome.reason += budget_note


def _note_reads(outcome: AccountReport, config: GuardConfig, reads: list[_Read]) -> None:
    """What the reads showed, on the report: drift, every baseline value, unread fields."""
    outcome.drift = [d for r in reads for d in r.drifts]
    outcome.observed = {
        name: r.live.values.get(name) for r in reads for name in config.baseline_of(r.setting)
    }
    outcome.unread = tuple(name for r in reads for name in _unread(r))


def _unread(r: _Read) -> list[str]:
    return [f.api_name for f in r.setting.fields if f.api_name not in r.live.values]


def _changed_outside(config: GuardConfig, before: _Read, after: _Read) -> list[str]:
    """Fields outside the baseline whose value differs between two reads of a setting."""
    return [
        name
        for name in dict.fromkeys([*before.live.values, *after.live.values])
        if name not in config.baseline
        and before.live.values.get(name) != after.live.values.get(name)
    ]


def _note_changes(outcome: AccountReport, changed: list[str]) -> None:
    new = [name for name in dict.fromkeys(changed) if name not in outcome.changed_during_run]
    outcome.changed_during_run = tuple(dict.fromkeys([*outcome.changed_during_run, *changed]))
    if new:
        event(
            logging.WARNING,
            "a field outside the baseline changed while the guard was about to write: "
            "the new value is kept",
            account=outcome.account,
            fields=new,
        )


def _write_and_verify(
    client: ImsClient, r: _Read, replan: Callable[[], _Read] | None = None
) -> dict[str, F.Value | None]:
    """Send the setting's complete desired state, read it back; the values after the write.
    Unchanged fields go back exactly as read (masks not normalised), changed ones as rendered.
    A Set tried again after a failed try (throttling waits first) is planned anew on a fresh
    read (``replan``), so a change made meanwhile to a field outside the baseline is kept."""
    plan = {"read": r}

    def fresh_plan() -> tuple[dict[str, F.Value], Preference]:
        plan["read"] = replan() if replan is not None else plan["read"]
        return desired_state(plan["read"].live, plan["read"].drifts), plan["read"].live

    request_id = client.set_setting(
        r.setting, desired_state(r.live, r.drifts), live=r.live, replan=fresh_plan
    )
    r = plan["read"]
    desired = desired_state(r.live, r.drifts)
    fresh = client.get_setting(r.setting)
    after = {d.field: fresh.values.get(d.field) for d in r.drifts}
    mismatches = [
        {
            "field": name,
            "sent": F.field(name).display(value),
            "read": F.field(name).display(fresh.values.get(name)),
        }
        for name, value in desired.items()
        if fresh.values.get(name) != value
    ]
    if mismatches:
        raise VerificationError(mismatches, request_id, r.setting, after)
    return after


def _contest(
    outcome: AccountReport, config: GuardConfig, to_revert: list[Drift], check: Any
) -> None:
    """The budget is spent: write nothing, and say loudly that two automations are fighting."""
    settings = config.settings
    fields = ", ".join(d.field for d in to_revert)
    outcome.status = "contested"
    outcome.reason = (
        f"revert budget spent: {len(check.recent)} reverts within "
        f"{settings.revert_window_minutes} minutes (GUARD_MAX_REVERTS={settings.max_reverts}); "
        f"nothing written. Something keeps changing {fields} back"
        + (f" (last seen: {check.last_actor})" if check.last_actor else "")
        + ": a person must decide which value is right (set the baseline to it, or mark the "
        "field report-only)"
    )
    event(
        logging.ERROR,
        "account contested: automations are fighting over its settings",
        account=outcome.account,
        fields=[d.field for d in to_revert],
        settings=sorted({d.setting for d in to_revert}),
        recent_reverts=check.as_dict()["recent"],
        last_actor=check.last_actor,
        max_reverts=settings.max_reverts,
        window_minutes=settings.revert_window_minutes,
    )


def _why_not_written(drifts: list[Drift], write: bool, config: GuardConfig) -> str:
    if not write:
        return "check only: nothing is written"
    actions = {d.action for d in drifts if d.action != "revert"}
    reasons = []
    if "dry-run" in actions:
        reasons.append("GUARD_MODE is dry-run")
    if "report-only" in actions:
        reasons.append("report-only fields")
    if "exempt" in actions:
        reasons.append("exempt fields")
    return ", ".join(reasons)


def _log_outcome(outcome: AccountReport) -> None:
    level = logging.INFO
    if outcome.status in ("reverted", "drift", "contested"):
        level = logging.WARNING
    event(
        level,
        f"account {outcome.status}",
        account=outcome.account,
        status=outcome.status,
        mode=outcome.mode,
        settings=list(outcome.settings),
        drift=[d.as_dict() for d in outcome.drift],
        reason=outcome.reason,
        api_calls=outcome.api_calls,
        request_ids=outcome.request_ids,
        duration_ms=round(outcome.duration_ms, 1),
    )
