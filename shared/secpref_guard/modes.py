"""Execution modes: what each trigger proposes to the run, and nothing about scope.

As Cloud Custodian separates execution modes from the policy, each trigger here only turns its
input into candidate accounts (and, for an audit event, the actor and the settings it names):
the timer and the command line propose every target, an audit event the account it reports (or
the own one), a worker batch the ids it carries. Which of them may be touched is decided once,
by scope.py, for all of them alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import Settings
from .directory import Directory
from .member_access import is_guard_session
from .report import Actor, Trigger
from .scope import Candidate

if TYPE_CHECKING:  # the audit-event models are built only on the audit path
    from .batch import Batch
    from .events import AuditEvent
    from .timer import TimerPayload


def every_target(settings: Settings, directory: Directory | None) -> tuple[str, list[Candidate]]:
    """The timer's and the CLI's candidates: what GUARD_TARGETS names (for
    ``resource-directory``, every member the directory lists, in whatever state: scope says
    which are usable)."""
    if settings.targets == "self":
        return "self", [Candidate(None)]
    if settings.targets == "resource-directory":
        if directory is None:
            raise ValueError("GUARD_TARGETS is resource-directory but no directory is given")
        return "resource-directory", [Candidate(a) for a in directory.members()]
    return "list", [Candidate(a) for a in settings.targets.split(",")]


def timer_trigger(timer: TimerPayload) -> Trigger:
    return Trigger("schedule", name=timer.trigger_name, time=timer.trigger_time)


def batch_candidates(batch: Batch) -> tuple[Trigger, list[Candidate]]:
    """A worker batch's ids: candidates like any other, whatever the batch claims."""
    trigger = Trigger("worker", id=batch.run_id or None)
    return trigger, [Candidate(a) for a in batch.accounts]


@dataclass(frozen=True)
class AuditProposal:
    """What an audit event proposes: one candidate (or why none), who acted, which trigger."""

    trigger: Trigger
    actor: Actor
    candidate: Candidate | None
    skip_reason: str | None = None
    account: str | None = None  # the account the event reports, for a skipped event


def actor_of(audit: AuditEvent) -> Actor:
    record, identity = audit.record, audit.record.user_identity
    return Actor(
        type=identity.type,
        name=identity.display_name,
        account=identity.account_id or _arn_account(identity.arn),
        source_ip=record.source_ip_address,
        user_agent=record.user_agent,
        time=record.event_time,
        via="console" if (record.event_type or "") == "ConsoleOperation" else "api",
    )


def _arn_account(arn: str | None) -> str | None:
    """The account of ``acs:ram::<account>:...``; None when the ARN names none."""
    if not arn or not arn.startswith("acs:"):
        return None
    parts = arn.split(":")
    account = parts[3] if len(parts) > 4 else ""
    return account if account.isascii() and account.isdigit() else None


def audit_proposal(
    audit: AuditEvent,
    settings: Settings,
    own_account: str | None,
    guard_keys: frozenset[str] = frozenset(),
) -> AuditProposal:
    """The event's candidate, or the reason it needs no action (decided on the record, with no
    API call). A change is the guard's own only when it was made with an AccessKey the guard
    holds (``guard_keys``: its own credentials' and the member sessions' it assumed), under its
    role (``GUARD_SELF_ROLE`` in its own account, or the member-access role with its session
    name): a role or session name alone proves nothing, since whoever may assume a role picks
    the session name. An own change that is not recognised costs one read and no write."""
    record = audit.record
    actor = actor_of(audit)
    trigger = Trigger("event", id=audit.event_id, name=record.event_name, time=record.event_time)
    setting = record.changed_setting

    def skip(reason: str) -> AuditProposal:
        return AuditProposal(trigger, actor, None, reason, audit.account)

    if not record.is_relevant_service:
        return skip(f"{record.event_name} of service {record.service_name!r}, not Ims or Ram")
    if setting is None:
        return skip(f"event {record.event_name} is not {' or '.join(_setting_events())}")
    if record.error_code:
        return skip(f"the call failed ({record.error_code}): nothing changed")
    identity = record.user_identity
    role = identity.role_name
    identity_account = identity.account_id or _arn_account(identity.arn)
    own_identity = own_account is not None and identity_account == own_account
    own_key = identity.access_key_id is not None and identity.access_key_id in guard_keys
    if (
        own_key
        and settings.self_role
        and role
        and role.lower() == settings.self_role.lower()
        and own_identity
    ):
        return skip(f"the change was made by the guard's own role {role}")
    if (
        own_key
        and settings.targets != "self"
        and is_guard_session(identity.arn, settings.member_role)
        and identity_account is not None
        and identity_account != own_account
    ):
        # in a member account the guard writes through the member-access role under its own
        # session name; the ARN's account is the member the write went to
        return skip("the change was made by the guard's own session in a member account")
    return AuditProposal(trigger, actor, Candidate(audit.account, (setting,)))


def _setting_events() -> dict[str, str]:
    from .events import SETTING_EVENTS

    return SETTING_EVENTS
