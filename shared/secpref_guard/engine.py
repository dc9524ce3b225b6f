"""The drift engine: read, compare with the baseline, write the complete desired state, verify.

One enforcement for every trigger (the timer and the audit event are two ways in). The rules:
- a compliant account costs exactly one read;
- a Set always carries the complete desired state: the baseline value of every field the
  baseline pins and reverts, and the live value of every other field the account returned, so
  no field the baseline does not own changes whether the API keeps or resets omitted fields;
- every value sent is either the live value or the baseline value, nothing else;
- report-only and exempt fields are reported and sent with their live value;
- after a write, a fresh read must show every sent value, or the run is an error.
"""

from __future__ import annotations

import logging
import time
from datetime import date, datetime, timezone
from typing import Any, Protocol

from . import fields as F
from .client import ImsClient, Preference
from .config import GuardConfig
from .errors import GuardError
from .logs import event
from .report import AccountReport, Action, Drift


class VerificationError(GuardError):
    """The write was accepted but a fresh read does not show it."""

    code = "VerificationFailed"

    def __init__(self, mismatches: list[dict[str, Any]], request_id: str | None) -> None:
        self.mismatches = mismatches
        self.request_id = request_id
        names = ", ".join(m["field"] for m in mismatches)
        super().__init__(
            f"SetSecurityPreference was accepted but a fresh GetSecurityPreference still "
            f"differs in {names}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "mismatches": self.mismatches, "request_id": self.request_id}


def compare(config: GuardConfig, live: Preference, account: str, today: date) -> list[Drift]:
    """Every baseline field whose live value differs, with the action the policy allows."""
    settings = config.settings
    drifts: list[Drift] = []
    for api_name, expected in config.baseline.items():
        actual = live.values.get(api_name)
        if actual == expected:
            continue
        action: Action = "revert"
        note = ""
        if api_name in settings.report_only_fields:
            action, note = "report-only", "listed in GUARD_REPORT_ONLY_FIELDS"
        else:
            for exemption in settings.exemptions:
                if exemption.account == account and api_name in exemption.fields:
                    if exemption.active_on(today):
                        action = "exempt"
                        note = f"exempt until {exemption.until.isoformat()}: {exemption.reason}"
                        break  # an active exemption wins over any expired one
                    else:
                        note = (
                            f"exemption expired on {exemption.until.isoformat()} "
                            f"({exemption.reason})"
                        )
        if action == "revert" and config.dry_run:
            action = "dry-run"
        drifts.append(Drift(api_name, actual, expected, action, config.source_of(api_name), note))
    return drifts


def desired_state(live: Preference, drifts: list[Drift]) -> dict[str, F.Value]:
    """Live values of every field the account returned, baseline values of the reverted ones."""
    desired: dict[str, F.Value] = dict(live.values)
    for d in drifts:
        if d.action == "revert":
            desired[d.field] = d.expected
    return desired


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
STALE_READ_SECONDS = 0.25


def run(
    client: ImsClient,
    config: GuardConfig,
    *,
    account: str = "self",
    write: bool = True,
    today: date | None = None,
    live: Preference | None = None,
    budget: Budget | None = None,
    actor: str | None = None,
    raise_errors: bool = True,
) -> AccountReport:
    """Check one account and, when ``write`` and the policy allow, revert its drift.

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
    try:
        _run(client, config, outcome, write, today or _today(), live, budget, actor)
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


def _run(
    client: ImsClient,
    config: GuardConfig,
    outcome: AccountReport,
    write: bool,
    today: date,
    live: Preference | None,
    budget: Budget | None = None,
    actor: str | None = None,
) -> None:
    if live is None:
        live = client.get_security_preference()
    read_at = time.monotonic()
    outcome.unread = tuple(f.api_name for f in F.FIELDS if f.api_name not in live.values)
    outcome.observed = {name: live.values.get(name) for name in config.baseline}
    drifts = compare(config, live, outcome.account, today)
    if not write:
        drifts = [d if d.action != "revert" else _as_check(d) for d in drifts]
    outcome.drift = drifts
    if not drifts:
        outcome.status = "compliant"
        outcome.reason = "every baseline field matches"
        return
    to_revert = [d for d in drifts if d.action == "revert"]
    if not to_revert:
        outcome.drift = [d.with_after(d.actual) for d in drifts]  # nothing sent: unchanged
        outcome.status = "drift"
        outcome.reason = _why_not_written(drifts, write, config)
        return

    budget_note = ""
    if budget is not None:
        check = budget.check(outcome.account)
        outcome.budget = check.as_dict()
        if not check.allowed:
            outcome.drift = [d.with_after(d.actual) for d in drifts]
            _contest(outcome, config, to_revert, check)
            return
        if check.error:
            budget_note = f"; {check.error}"

    if time.monotonic() - read_at > STALE_READ_SECONDS:
        again = client.get_security_preference()
        outcome.changed_during_run = tuple(
            name
            for name in dict.fromkeys([*live.values, *again.values])
            if name not in config.baseline and live.values.get(name) != again.values.get(name)
        )
        if outcome.changed_during_run:
            event(
                logging.WARNING,
                "a field outside the baseline changed while the guard was about to write: "
                "the new value is kept",
                account=outcome.account,
                fields=list(outcome.changed_during_run),
            )
        live = again
        outcome.unread = tuple(f.api_name for f in F.FIELDS if f.api_name not in live.values)
        drifts = compare(config, live, outcome.account, today)
        outcome.drift = drifts
        to_revert = [d for d in drifts if d.action == "revert"]
        if not to_revert:  # someone else put the account right meanwhile
            outcome.drift = [d.with_after(d.actual) for d in drifts]
            outcome.status = "drift" if drifts else "compliant"
            outcome.reason = (
                _why_not_written(drifts, write, config)
                if drifts
                else "the account was put back on the baseline before the guard wrote"
            )
            return

    desired = desired_state(live, drifts)
    # unchanged fields go back exactly as read (masks not normalised), changed ones as rendered
    request_id = client.set_security_preference(desired, live=live)
    pending = (
        budget.record_in_background(outcome.account, actor=actor) if budget is not None else None
    )
    fresh = client.get_security_preference()
    if pending is not None:
        pending.wait(BUDGET_RECORD_WAIT_SECONDS)
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
        outcome.drift = [d.with_after(fresh.values.get(d.field)) for d in drifts]
        raise VerificationError(mismatches, request_id)
    outcome.drift = [d.with_after(fresh.values.get(d.field)) for d in drifts]
    outcome.status = "reverted"
    kept = [d.field for d in drifts if d.action != "revert"]
    outcome.reason = f"reverted {', '.join(d.field for d in to_revert)}"
    if kept:
        why = _why_not_written(drifts, True, config)
        outcome.reason += f"; not written: {', '.join(kept)} ({why})"
    if outcome.unread:
        outcome.reason += (
            f"; not returned by the read, so not sent: {', '.join(outcome.unread)} (the API may "
            "reset an omitted field to its default)"
        )
    if outcome.changed_during_run:
        outcome.reason += (
            f"; changed by someone else meanwhile and kept: {', '.join(outcome.changed_during_run)}"
        )
    outcome.reason += budget_note


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
        "account contested: automations are fighting over the security preference",
        account=outcome.account,
        fields=[d.field for d in to_revert],
        recent_reverts=check.as_dict()["recent"],
        last_actor=check.last_actor,
        max_reverts=settings.max_reverts,
        window_minutes=settings.revert_window_minutes,
    )


def _as_check(d: Drift) -> Drift:
    return d.with_action("dry-run")


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
        drift=[d.as_dict() for d in outcome.drift],
        reason=outcome.reason,
        api_calls=outcome.api_calls,
        request_ids=outcome.request_ids,
        duration_ms=round(outcome.duration_ms, 1),
    )
