"""The one scope decision: which candidate accounts this instance may read or write.

Every trigger (timer, audit event, worker batch, command line) only proposes candidates; this
module alone decides, from the configuration, the guard's own account and the directory's
current membership, and nothing below it decides again. The rules, in order:

1. A candidate that names no account means the guard's own account (the function's
   ``context.account_id``, or the CLI's caller identity). If the own account is unknown, only a
   ``self`` deployment without exclusions can use it, as ``self``.
2. ``GUARD_EXCLUDE_ACCOUNTS``: an excluded account is never touched.
3. ``GUARD_TARGETS``: ``self`` admits the own account only; a list admits the accounts listed;
   ``resource-directory`` admits current members of the directory in a usable state (a role
   that trusts the management account proves nothing: only Resource Manager says who is a
   member), looked up once for all candidates at bounded cost (directory.Directory).

An account out of scope is never read or written: it gets no API call at all, not even an
AssumeRole, and is reported ``skipped`` with the rule that excluded it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .config import Settings
from .directory import Directory

SELF = "self"  # the own account when its id is unknown (a CLI run without STS)


@dataclass(frozen=True)
class Candidate:
    """An account a trigger proposes; ``account`` None: the guard's own account."""

    account: str | None
    settings: tuple[str, ...] | None = None  # the settings the trigger names; None: all


@dataclass(frozen=True)
class Decision:
    """Whether one candidate may be touched, and if not, which rule says so."""

    account: str
    in_scope: bool
    own: bool = False  # the guard's own account: its own credentials, no role to assume
    rule: str | None = None  # the rule that excluded it
    reason: str = ""
    settings: tuple[str, ...] | None = None


def _skip(account: str, rule: str, reason: str, own: bool = False) -> Decision:
    return Decision(account, False, own, rule, reason)


def decide(
    candidates: Sequence[Candidate],
    settings: Settings,
    *,
    own_account: str | None,
    directory: Directory | None = None,
) -> list[Decision]:
    """One decision per distinct candidate account, in the candidates' order."""
    decisions: dict[str, Decision] = {}
    pending: list[str] = []  # accounts whose membership decides
    for candidate in candidates:
        decision = _decide_one(candidate, settings, own_account)
        previous = decisions.get(decision.account)
        if previous is not None:
            decisions[decision.account] = _merge(previous, decision)
            continue
        decisions[decision.account] = decision
        if decision.in_scope and settings.targets == "resource-directory":
            pending.append(decision.account)
    if pending:
        if directory is None:
            raise ValueError("GUARD_TARGETS is resource-directory but no directory is given")
        members = directory.lookup(pending)
        for account in pending:
            member = members.get(account)
            current = decisions[account]
            if member is None:
                decisions[account] = _skip(
                    account,
                    "resource-directory",
                    f"account {account} is not a member of the resource directory",
                    current.own,
                )
            elif not member.usable:
                decisions[account] = _skip(
                    account,
                    "resource-directory",
                    f"member status {member.status or 'unknown'} is not a usable state",
                    current.own,
                )
    return list(decisions.values())


def _merge(first: Decision, second: Decision) -> Decision:
    """The same account proposed twice: once with every setting wins over a narrower ask."""
    if not first.in_scope or first.settings is None:
        return first
    if second.settings is None:
        return Decision(first.account, True, first.own, settings=None)
    merged = tuple(dict.fromkeys(first.settings + second.settings))
    return Decision(first.account, True, first.own, settings=merged)


def _decide_one(candidate: Candidate, settings: Settings, own_account: str | None) -> Decision:
    named = candidate.account
    if named is None or named == SELF:
        account, own = own_account or SELF, True
    else:
        account, own = named, own_account is not None and named == own_account
    if account == SELF:
        if settings.targets != "self" or settings.exclude_accounts:
            return _skip(
                SELF,
                "own-account-unknown",
                "this instance does not know its own account id, which GUARD_TARGETS="
                f"{settings.targets}"
                + (" and GUARD_EXCLUDE_ACCOUNTS need" if settings.exclude_accounts else " needs"),
                own=True,
            )
        return Decision(SELF, True, True, settings=candidate.settings)
    if not (account.isascii() and account.isdigit()):
        return _skip(account, "invalid-account", f"{account!r} is not an account id")
    if account in settings.exclude_accounts:
        return _skip(
            account,
            "GUARD_EXCLUDE_ACCOUNTS",
            f"account {account} is listed in GUARD_EXCLUDE_ACCOUNTS",
            own,
        )
    if settings.targets == "self":
        if own_account is None:
            return _skip(
                account,
                "own-account-unknown",
                f"account {account} is named, but this instance does not know its own account "
                "id (GUARD_TARGETS=self enforces only the account the guard runs in)",
            )
        if not own:
            return _skip(
                account,
                "GUARD_TARGETS",
                f"account {account} is not this guard's account {own_account} (GUARD_TARGETS=self)",
            )
    elif settings.targets != "resource-directory" and account not in settings.targets.split(","):
        return _skip(account, "GUARD_TARGETS", f"account {account} is not in GUARD_TARGETS", own)
    return Decision(account, True, own, settings=candidate.settings)
