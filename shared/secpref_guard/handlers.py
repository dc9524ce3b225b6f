"""Function Compute entry points, as library functions the files in functions/ re-export.

Thin adapters: each parses its trigger (modes.py turns it into candidate accounts), hands them
to the one run (run.py) with the services of this instance, and returns the run's report as
JSON. The timer, the audit event and the worker batch are three modes of one enforcement. An
audit event is never trusted: a forged or stale event can only cause a read of an account in
scope.

Configuration is read and validated once per instance (the first invocation after a cold
start); a configuration error then fails every invocation with the same message.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from . import instance
from .client import ApiError
from .config import ConfigError, GuardConfig, load_config
from .credentials import CredentialsError, resolve
from .errors import GuardError, log_fields
from .logs import bind, configure, event
from .payloads import EventError
from .report import RunReport, Trigger

# an instance takes concurrent requests: its caches are created once, under this lock
_instance_lock = threading.Lock()
_config: GuardConfig | None = None
_config_error: ConfigError | None = None
_logging_ready = False
_dedup_window: Any = None  # notify.DedupWindow, per instance, created on first use

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class HandlerError(RuntimeError):
    """The invocation failed; the message names the cause. Function Compute records it as a
    failed invocation (and retries an asynchronous one)."""


def _log_level() -> str:
    raw = os.environ.get("GUARD_LOG_LEVEL", "INFO")
    level = raw.strip().upper() or "INFO"
    if level not in LOG_LEVELS:
        expected = ", ".join(LOG_LEVELS)
        raise ConfigError("GUARD_LOG_LEVEL", f"expected one of {expected}, got {raw!r}")
    return level


def _setup_logging() -> None:
    global _logging_ready
    with _instance_lock:  # one log handler, even for concurrent first requests
        if not _logging_ready:
            try:
                level = _log_level()
            except ConfigError:
                level = "INFO"  # instance_config() fails the invocation, naming the variable
            configure(level)
            _logging_ready = True


def keep_logging() -> None:
    """Leave logging as it is configured (the CLI's `invoke`: quiet unless asked for)."""
    global _logging_ready
    with _instance_lock:
        _logging_ready = True


def instance_config() -> GuardConfig:
    """The configuration of this instance, validated once; the same error on every call."""
    global _config, _config_error
    if _config is None and _config_error is None:
        try:
            _config = load_config()
            _log_level()
        except ConfigError as exc:
            _config = None
            _config_error = exc
    if _config_error is not None:
        raise _config_error
    assert _config is not None
    return _config


def reset_instance() -> None:
    """Forget the instance's configuration and caches, as a new instance would."""
    global _config, _config_error, _dedup_window
    _config = _config_error = _dedup_window = None
    instance.reset()


# --- the three handlers --------------------------------------------------------------------


def scheduled(event_bytes: Any, context: Any) -> str:
    """Timer trigger: enforce every target and return the run's report as JSON."""
    return _invoke("schedule", event_bytes, context, _timer_run)


def audit_event(event_bytes: Any, context: Any) -> str:
    """EventBridge (ActionTrail) trigger: on a change of a setting, read and enforce it."""
    return _invoke("event", event_bytes, context, _audit_run)


def worker(event_bytes: Any, context: Any) -> str:
    """Fan-out worker: enforce the batch of accounts the scheduled function sent."""
    return _invoke("worker", event_bytes, context, _worker_run)


def _timer_run(config: GuardConfig, event_bytes: Any, context: Any) -> RunReport:
    from .modes import every_target, timer_trigger
    from .run import run
    from .timer import parse_timer

    trigger = timer_trigger(parse_timer(event_bytes))
    services = instance.services(config, context)
    targets, candidates = every_target(config.settings, services.directory)
    return run(
        candidates,
        services,
        trigger=trigger,
        targets=targets,
        fanout=instance.fanout_options(config, context),
    )


def _audit_run(config: GuardConfig, event_bytes: Any, context: Any) -> RunReport:
    from .events import parse_audit_event
    from .modes import audit_proposal
    from .run import run, skipped_run

    audit = parse_audit_event(event_bytes)
    own = instance.own_account(context)
    proposal = audit_proposal(audit, config.settings, own, instance.guard_keys(context))
    if proposal.candidate is None:
        assert proposal.skip_reason is not None
        return skipped_run(
            proposal.account or own or "self",
            "event",
            proposal.skip_reason,
            trigger=proposal.trigger,
            mode=config.settings.mode,
            actor=proposal.actor,
        )
    named = proposal.candidate.settings or ()
    enforced = {s.name for s in config.enforced_settings}
    if named and not enforced.intersection(named):
        return skipped_run(
            proposal.account or own or "self",
            "event",
            f"{proposal.trigger.name} changes the {' and '.join(named)}, which the baseline "
            "pins no field of: nothing to read",
            trigger=proposal.trigger,
            mode=config.settings.mode,
            actor=proposal.actor,
        )
    with bind(event_id=proposal.trigger.id, actor=proposal.actor.name):
        report = run(
            [proposal.candidate],
            instance.services(config, context),
            trigger=proposal.trigger,
            targets="event",
            actor=proposal.actor,
        )
    for account in report.accounts:
        if account.status == "compliant":
            account.reason = "the live state already matches the baseline (the event was a hint)"
    return report


def _worker_run(config: GuardConfig, event_bytes: Any, context: Any) -> RunReport:
    from .batch import parse_batch
    from .modes import batch_candidates
    from .run import run

    batch = parse_batch(event_bytes)
    trigger, candidates = batch_candidates(batch)
    with bind(batch=batch.index):
        return run(
            candidates,
            instance.services(config, context),
            trigger=trigger,
            targets=f"batch {batch.index}/{batch.total}",
            execution="worker",
            run_id=batch.run_id or None,
        )


# --- what every invocation shares ------------------------------------------------------------


def _invoke(
    trigger: str,
    event_bytes: Any,
    context: Any,
    mode: Callable[[GuardConfig, Any, Any], RunReport],
) -> str:
    # What the instance imported before (the handler's modules) and during this invocation
    # stays for its life: out of the collector's sight, before the run imports more, and after.
    instance.freeze_imports()
    try:
        return _invoke_mode(trigger, event_bytes, context, mode)
    finally:
        instance.freeze_imports()


def _invoke_mode(
    trigger: str,
    event_bytes: Any,
    context: Any,
    mode: Callable[[GuardConfig, Any, Any], RunReport],
) -> str:
    _setup_logging()
    started = time.perf_counter()
    own = instance.own_account(context)
    with bind(
        request_id=instance.context_value(context, "request_id"),
        function=instance.context_value(context, "function", "name"),
        trigger=trigger,
        account=own or "self",
    ):
        config: GuardConfig | None = None
        try:
            config = instance_config()
            report = mode(config, event_bytes, context)
        except ConfigError as exc:
            raise _fail(f"configuration error: {exc}", exc, started) from None
        except CredentialsError as exc:
            raise _fail(str(exc), exc, started) from None
        except EventError as exc:
            raise _fail(f"malformed event: {exc}", exc, started) from None
        except ApiError as exc:  # scope could not be decided: the directory could not be read
            assert config is not None
            failure = _fail(f"scope could not be decided: {exc}", exc, started)
            from .run import failed_run

            scope_trigger = Trigger(trigger)  # type: ignore[arg-type]
            notify(config, context, failed_run(own or "self", exc, scope_trigger, config))
            raise failure from None
        report.duration_ms = (time.perf_counter() - started) * 1000
        notify(config, context, report)
        if report.failures:
            # each failed account has its own ERROR line already (run.py): the invocation fails
            # with the same words, and no line repeats them
            raise HandlerError(report.failure_text)
        return json.dumps(report.as_dict())


def _fail(message: str, exc: BaseException | None, started: float | None = None) -> HandlerError:
    fields: dict[str, Any] = {"status": "error"}
    if exc is not None:
        fields["error_type"] = type(exc).__name__
    if started is not None:
        fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    if isinstance(exc, GuardError):
        fields.update(log_fields(exc))
    if isinstance(exc, ConfigError):
        fields["variable"] = exc.variable
    event(logging.ERROR, message, **fields)
    return HandlerError(message)


# --- the services a run is handed --------------------------------------------------------------


def notify(config: GuardConfig, context: Any, report: RunReport) -> None:
    """Tell people about a revert, drift left behind, a contested account or a failure.

    Channels are optional; a failed notification is logged by the notifier and never fails the
    enforcement. The notifier (and `requests`) is imported only when a channel is configured
    and the report is news.
    """
    settings = config.settings
    if not (settings.dingtalk_webhook or settings.webhook_url or settings.eventbridge_bus):
        return
    from .notify.policy import should_notify

    if not should_notify(report):
        return  # the channels and `requests` stay unimported
    from .notify import DedupWindow, Notifier

    global _dedup_window
    with _instance_lock:  # one window per instance, even for concurrent first requests
        if _dedup_window is None:
            _dedup_window = DedupWindow()
    try:
        credentials = resolve(context)
    except CredentialsError:
        credentials = None
    notifier = Notifier.from_settings(
        settings,
        credentials=credentials,
        account_id=instance.context_value(context, "account_id"),
        region=instance.context_value(context, "region"),
        window=_dedup_window,
    )
    report.notifications = [r.as_dict() for r in notifier.notify(report)]
