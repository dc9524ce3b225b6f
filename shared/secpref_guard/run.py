"""One run for every trigger: candidates in, one typed RunReport out.

The timer, an audit event, a worker batch and the command line only propose candidate
accounts (modes.py). ``run`` hands them to the one scope decision (scope.py), then for each
account in scope gets in (its own credentials, or the member role through STS) and lets the
engine read, compare, write and verify; or, when a timer run has more accounts than one
invocation should enforce, cuts them into batches for the worker function (dispatch.py). A
single account is a run of one: there is no other path. Every account ends as one
``AccountReport``; a failure in one account (its role cannot be assumed, an API error, a write
that did not stick, a bug) is that account's report and never stops the others.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import engine
from .batch import DEFAULT_BATCH_SIZE, DEFAULT_MAX_PAYLOAD, make_batches
from .client import ApiError, RetryPolicy
from .config import GuardConfig
from .credentials import Credentials
from .directory import Directory
from .dispatch import DEFAULT_CONCURRENCY, dispatch, map_bounded
from .errors import GuardError, describe, log_fields
from .ims import ImsClient
from .logs import bind, event
from .member_access import AccessError, MemberCredentials
from .report import AccountReport, Actor, RunReport, Trigger
from .scope import Candidate, Decision, decide

DEFAULT_IN_PROCESS_THRESHOLD = 50  # one batch or fewer: not worth an invocation
# Skipped accounts logged one line each, per run; the rest are counted in the run summary (a
# forged batch of unknown ids must not turn into a flood of log lines).
SKIPPED_LOG_LIMIT = 20


@dataclass(frozen=True)
class FanoutOptions:
    """When and how a timer run hands accounts to the worker function."""

    worker_function: str | None = None  # the worker's function name; None: never fan out
    fc_endpoint: str | None = None  # dispatch.fc_endpoint(account, region) in Function Compute
    in_process_threshold: int = DEFAULT_IN_PROCESS_THRESHOLD
    batch_size: int = DEFAULT_BATCH_SIZE
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD


@dataclass
class Services:
    """What a run is handed by its caller. Each part is built only when the run needs it: the
    member role's credentials for a member account in scope, the directory for
    ``resource-directory`` targets, the revert budget for a write."""

    config: GuardConfig
    base: Credentials
    own_account: str | None = None
    member_access: Callable[[], MemberCredentials] | None = None
    directory: Directory | None = None
    budget: engine.Budget | None = None
    deadline: float | None = None  # the run's API time, on the retry clock
    retry: RetryPolicy | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    invoker: Callable[[str, Credentials], Any] | None = None  # (endpoint, base) -> invoker
    # told of each account in scope as it ends: (its report, accounts done, accounts in scope)
    on_account: Callable[[AccountReport, int, int], None] | None = None
    _access: MemberCredentials | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _directory_calls: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        # the directory is per instance: what this run costs is counted from here on
        self._directory_calls = self.directory.calls if self.directory is not None else 0

    def directory_calls(self) -> int:
        """Resource Manager calls made since these services were handed over."""
        return self.directory.calls - self._directory_calls if self.directory is not None else 0

    def seconds_left(self) -> float | None:
        """What is left of the run's API time (``deadline`` is on the retry policy's clock)."""
        if self.deadline is None:
            return None
        clock = self.retry.clock if self.retry is not None else time.monotonic
        return max(self.deadline - clock(), 0.0)

    def access(self) -> MemberCredentials:
        with self._lock:
            if self._access is None:
                if self.member_access is not None:
                    self._access = self.member_access()
                else:
                    kwargs = {"retry": self.retry} if self.retry else {}
                    self._access = MemberCredentials.from_settings(
                        self.config.settings, self.base, own_account=self.own_account, **kwargs
                    )
            return self._access


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def run(
    candidates: Sequence[Candidate],
    services: Services,
    *,
    trigger: Trigger,
    targets: str,
    write: bool = True,
    actor: Actor | None = None,
    fanout: FanoutOptions | None = None,
    execution: str = "in-process",
    run_id: str | None = None,
) -> RunReport:
    """Decide scope for ``candidates`` and enforce (``write``) or check every account in it.

    ``fanout``: a timer run with more accounts in scope than its threshold dispatches batches
    to the worker instead. Raises only when scope cannot be decided (the directory cannot be
    read): then there is no run to report.
    """
    started = time.perf_counter()
    config = services.config
    mode = config.settings.mode if write else "check"
    report = RunReport(
        run_id=run_id or new_run_id(),
        mode=mode,
        trigger=trigger,
        execution=execution,
        targets=targets,
        actor=actor,
    )
    with bind(run_id=report.run_id):
        try:
            decisions = decide(
                candidates,
                config.settings,
                own_account=services.own_account,
                directory=services.directory,
            )
        finally:
            report.listing_api_calls = services.directory_calls()
        in_scope = [d for d in decisions if d.in_scope]
        results: dict[str, AccountReport] = {}
        if (
            write
            and fanout is not None
            and fanout.worker_function
            and len(in_scope) > fanout.in_process_threshold
        ):
            report.execution = "fan-out"
            report.dispatches = _fan_out(in_scope, services, fanout, report.run_id)
        else:
            label = actor.label if actor is not None else None
            done = _Tally(services.on_account, len(in_scope))
            outcomes = map_bounded(
                lambda d: done(enforce_account(d, services, write=write, actor=label)),
                in_scope,
                services.concurrency,
            )
            results = {o.account: o for o in outcomes}
        skipped = 0
        for decision in decisions:
            if decision.in_scope:
                if decision.account in results:
                    report.accounts.append(results[decision.account])
            else:
                skipped += 1
                logged = skipped <= SKIPPED_LOG_LIMIT
                report.accounts.append(_skipped(decision, mode, report, log=logged))
        report.duration_ms = (time.perf_counter() - started) * 1000
        _log_run(report)
    return report


class _Tally:
    """Counts the accounts that ended and tells ``Services.on_account`` of each (any thread)."""

    def __init__(self, listener: Callable[[AccountReport, int, int], None] | None, total: int):
        self.listener, self.total, self.done = listener, total, 0
        self.lock = threading.Lock()

    def __call__(self, outcome: AccountReport) -> AccountReport:
        if self.listener is not None:
            with self.lock:
                self.done += 1
                self.listener(outcome, self.done, self.total)
        return outcome


def skipped_run(
    account: str,
    rule: str,
    reason: str,
    *,
    trigger: Trigger,
    mode: str,
    actor: Actor | None = None,
) -> RunReport:
    """A run that touched nothing: the trigger itself needs no action (an event of another
    kind, a failed call, the guard's own change). No API call was made."""
    decision = Decision(account, False, rule=rule, reason=reason)
    report = RunReport(new_run_id(), mode, trigger, targets=trigger.type, actor=actor)
    report.accounts.append(_skipped(decision, mode, report))
    return report


def failed_run(account: str, error: GuardError, trigger: Trigger, config: GuardConfig) -> RunReport:
    """A run that could not start: scope could not be decided (the directory was unreadable)."""
    report = RunReport(new_run_id(), config.settings.mode, trigger, targets=config.settings.targets)
    report.accounts.append(
        AccountReport(
            account=account,
            status="error",
            mode=config.settings.mode,
            reason=f"scope could not be decided: {error}",
            error=error,
        )
    )
    return report


def _skipped(
    decision: Decision, mode: str, report: RunReport, *, log: bool = True
) -> AccountReport:
    skipped = AccountReport(
        account=decision.account,
        status="skipped",
        mode=mode,
        reason=decision.reason,
        rule=decision.rule,
    )
    if not log:
        return skipped
    extra: dict[str, Any] = {}
    if report.actor is not None:
        extra["actor"] = report.actor.as_dict()
    if report.trigger.type == "event":
        extra["event_id"] = report.trigger.id
    event(
        logging.INFO,
        "account skipped",
        account=decision.account,
        status="skipped",
        rule=decision.rule,
        reason=decision.reason,
        **extra,
    )
    return skipped


def _fan_out(
    in_scope: Sequence[Decision], services: Services, options: FanoutOptions, run_id: str
) -> list[Any]:
    if not options.fc_endpoint:
        raise ValueError("fan-out needs the Function Compute endpoint (fc_endpoint)")
    assert options.worker_function is not None
    batches = make_batches(
        [d.account for d in in_scope],
        run_id=run_id,
        max_accounts=options.batch_size,
        max_bytes=options.max_payload_bytes,
    )
    if services.invoker is not None:
        invoker = services.invoker(options.fc_endpoint, services.base)
    else:
        from .worker_invoke import WorkerInvoker  # the FC 3.0 SDK: only when a run fans out

        invoker = WorkerInvoker(
            options.fc_endpoint, services.base, retry=services.retry, deadline=services.deadline
        )
    return dispatch(batches, invoker, options.worker_function, concurrency=services.concurrency)


def enforce_account(
    decision: Decision,
    services: Services,
    *,
    write: bool = True,
    actor: str | None = None,
) -> AccountReport:
    """One account in scope, start to end: credentials, then the engine. Never raises: a
    failure is the account's report with status ``error``, logged at ERROR."""
    config = services.config
    account = decision.account
    mode = config.settings.mode if write else "check"
    started = time.perf_counter()
    with bind(account=account):
        access: MemberCredentials | None = None
        assumed = False
        if decision.own:
            credentials = services.base
        else:
            access = services.access()
            try:
                credentials, assumed = access.lookup(account)
            except AccessError as exc:
                failed = AccountReport(
                    account=account,
                    status="error",
                    mode=mode,
                    reason=str(exc),
                    error=exc,
                    api_calls=1,
                    role_arn=exc.role_arn,
                )
                return _failed(failed, started)
        kwargs: dict[str, Any] = {"time_budget": services.seconds_left()}
        if services.retry is not None:
            kwargs["retry"] = services.retry
        client = ImsClient(config.settings.ims_endpoint, credentials, **kwargs)
        try:
            outcome = engine.run(
                client,
                config,
                account=account,
                write=write,
                budget=services.budget,
                actor=actor,
                settings=decision.settings,
                raise_errors=False,
            )
        except Exception as exc:  # a bug in one account stays that account's failure
            error = describe(exc)
            outcome = AccountReport(
                account=account,
                status="error",
                mode=mode,
                reason=str(error),
                error=error,
                api_calls=client.log.calls,
                request_ids=list(client.log.request_ids),
            )
        if outcome.error is not None:
            cause = outcome.error
            expired = isinstance(cause, ApiError) and cause.code.startswith("InvalidSecurityToken")
            if access is not None and expired:
                access.forget(account)  # the next run assumes the role afresh
            outcome = _failed(outcome, started)
        if assumed:
            outcome.api_calls += 1
        if access is not None:
            outcome.role_arn = access.role_arn(account)
        return outcome


def _failed(outcome: AccountReport, started: float) -> AccountReport:
    outcome.duration_ms = (time.perf_counter() - started) * 1000
    event(
        logging.ERROR,
        outcome.reason,
        account=outcome.account,
        status="error",
        api_calls=outcome.api_calls,
        duration_ms=round(outcome.duration_ms, 1),
        **(log_fields(outcome.error) if outcome.error is not None else {}),
    )
    return outcome


def _log_run(report: RunReport) -> None:
    """The run's one summary line; a run of one account has said everything in its own."""
    if report.single is not None:
        return
    event(
        logging.INFO if report.ok else logging.WARNING,
        "run summary",
        run_id=report.run_id,
        execution=report.execution,
        status=report.status,
        counts=report.counts,
        failed=[f.as_dict() for f in report.failures],
        skipped=[
            {"account": a.account, "rule": a.rule, "reason": a.reason} for a in report.skipped
        ],
    )
