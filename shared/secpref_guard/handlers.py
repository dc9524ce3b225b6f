"""Function Compute entry points, as library functions the files in functions/ re-export.

Two modes of one enforcement: the timer runs it on a schedule; an ActionTrail audit event is a
hint that something changed, so the guard reads the live state and enforces at once. The event
is never trusted: a forged or stale event can only cause a read.

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

from . import engine
from .client import ApiError, ImsClient
from .config import ConfigError, GuardConfig, load_config
from .credentials import CredentialsError, resolve
from .events import AuditEvent, EventError, parse_audit_event, parse_timer
from .logs import bind, configure, event, get_logger


class HandlerError(RuntimeError):
    """The invocation failed; the message names the cause. Function Compute records it as a
    failed invocation (and retries an asynchronous one)."""


class AccountsFailed(Exception):
    """Some accounts of a multi-account run failed; the others were enforced. The run's result
    is logged and notified, then the invocation fails naming the accounts."""

    def __init__(self, result: dict[str, Any], message: str) -> None:
        super().__init__(message)
        self.result = result


_config: GuardConfig | None = None
_config_error: ConfigError | None = None
_logging_ready = False
_logging_lock = threading.Lock()
_dedup_window: Any = None  # notify.DedupWindow, per instance, created on first use
_member_access: Any = None  # accounts.MemberCredentials, per instance: STS credentials cache


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# IMS calls of one invocation share this part of the function timeout (template.yml: 60 s);
# the rest is for the revert budget, notifications and the runtime.
API_TIME_SHARE = 0.5
DEFAULT_FUNCTION_TIMEOUT = 60


def _log_level() -> str:
    raw = os.environ.get("GUARD_LOG_LEVEL", "INFO")
    level = raw.strip().upper() or "INFO"
    if level not in LOG_LEVELS:
        expected = ", ".join(LOG_LEVELS)
        raise ConfigError("GUARD_LOG_LEVEL", f"expected one of {expected}, got {raw!r}")
    return level


def _setup_logging() -> None:
    global _logging_ready
    with _logging_lock:  # an instance may take concurrent requests: one log handler
        if not _logging_ready:
            try:
                level = _log_level()
            except ConfigError:
                level = "INFO"  # instance_config() fails the invocation, naming the variable
            configure(level)
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
    """Forget the cached configuration, as a new instance would (tests, local invoke)."""
    global _config, _config_error, _dedup_window, _member_access
    _config = _config_error = _dedup_window = _member_access = None


def _context_value(context: Any, *path: str) -> Any:
    value = context
    for name in path:
        value = getattr(value, name, None)
        if value is None:
            return None
    return value


def _run_handler(
    trigger: str,
    event_bytes: Any,
    context: Any,
    body: Callable[[GuardConfig, Any, Any], dict[str, Any]],
) -> str:
    _setup_logging()
    started = time.perf_counter()
    with bind(
        request_id=_context_value(context, "request_id"),
        function=_context_value(context, "function", "name"),
        trigger=trigger,
        account=_account(context),
    ):
        config: GuardConfig | None = None
        try:
            config = instance_config()
            result = body(config, event_bytes, context)
        except ConfigError as exc:
            raise _fail(f"configuration error: {exc}", exc, started) from None
        except CredentialsError as exc:
            raise _fail(str(exc), exc, started) from None
        except EventError as exc:
            raise _fail(f"malformed event: {exc}", exc, started) from None
        except AccountsFailed as exc:
            failure = _fail(str(exc), exc, started)
            if config is not None:
                notify(config, context, exc.result)
            raise failure from None
        except (ApiError, engine.VerificationError) as exc:
            failure = _fail(str(exc), exc, started)
            if config is not None:
                report = engine.failed(_account(context), config.settings.mode, exc).as_dict()
                report["trigger"] = {"type": trigger}
                notify(config, context, report)
            raise failure from None
        result["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
        notify(config, context, result)
        return json.dumps(result)


def notify(config: GuardConfig, context: Any, report: dict[str, Any]) -> None:
    """Tell people about a revert, drift left behind, a contested account or a failure.

    Channels are optional; a failed notification is logged by the notifier and never fails the
    enforcement. The notifier (and `requests`) is imported only when a channel is configured.
    """
    settings = config.settings
    if not (settings.dingtalk_webhook or settings.webhook_url or settings.eventbridge_bus):
        return
    from .notify import DedupWindow, Notifier, should_notify

    if not should_notify(report):
        return
    global _dedup_window
    with _logging_lock:  # one window per instance, even for concurrent first requests
        if _dedup_window is None:
            _dedup_window = DedupWindow()
    try:
        credentials = resolve(context)
    except CredentialsError:
        credentials = None
    notifier = Notifier.from_settings(
        settings,
        credentials=credentials,
        account_id=_context_value(context, "account_id"),
        region=_context_value(context, "region"),
        window=_dedup_window,
    )
    report["notifications"] = [r.as_dict() for r in notifier.notify(report)]


def _fail(message: str, exc: Exception, started: float | None = None) -> HandlerError:
    fields: dict[str, Any] = {"status": "error", "error_type": type(exc).__name__}
    if started is not None:
        fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    if isinstance(exc, ApiError):
        # the API's request id and message: `request_id` is the invocation's, on every line,
        # and `message` the line's own
        fields.update(exc.as_dict())
        fields["api_request_id"] = fields.pop("request_id")
        fields["api_message"] = fields.pop("message")
    if isinstance(exc, engine.VerificationError):
        fields["api_request_id"] = exc.request_id
    if isinstance(exc, ConfigError):
        fields["variable"] = exc.variable
    if isinstance(exc, engine.VerificationError):
        fields["mismatches"] = exc.mismatches
    event(logging.ERROR, message, **fields)
    return HandlerError(message)


def _api_seconds(context: Any) -> float:
    """The share of the function timeout that the invocation's API calls may take together."""
    timeout = _context_value(context, "function", "timeout")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        timeout = DEFAULT_FUNCTION_TIMEOUT
    return float(timeout) * API_TIME_SHARE


def _deadline(context: Any) -> float:
    """The same share as a point on the retry clock, shared by every account of a run."""
    return time.monotonic() + _api_seconds(context)


def _client(config: GuardConfig, context: Any) -> ImsClient:
    return ImsClient(
        config.settings.ims_endpoint, resolve(context), time_budget=_api_seconds(context)
    )


def _budget(config: GuardConfig, context: Any) -> engine.Budget | None:
    """The revert budget, when GUARD_BUDGET_BUCKET is set (oss2 is imported only then)."""
    if not config.settings.budget_bucket:
        return None
    from .budget import from_settings

    region = _context_value(context, "region") or os.environ.get("FC_REGION")
    return from_settings(config.settings, resolve(context), region)


def _account(context: Any) -> str:
    return str(_context_value(context, "account_id") or "self")


# --- the timer ----------------------------------------------------------------------------


def scheduled(event_bytes: Any, context: Any) -> str:
    """Timer trigger: enforce the baseline and return the result as JSON."""
    return _run_handler("schedule", event_bytes, context, _scheduled)


def _scheduled(config: GuardConfig, event_bytes: Any, context: Any) -> dict[str, Any]:
    timer = parse_timer(event_bytes)
    trigger = {"type": "schedule", "name": timer.trigger_name, "time": timer.trigger_time}
    if config.settings.targets != "self":
        from . import fanout

        summary = fanout.run_scheduled(
            config,
            resolve(context),
            own_account=_own_account(context),
            options=_fanout_options(config, context),
            **_organisation_run(config, context),
        )
        return _summary_result(summary, trigger)
    own = _own_account(context)
    if own and own in config.settings.exclude_accounts:
        reason = f"account {own} is listed in GUARD_EXCLUDE_ACCOUNTS"
        event(logging.INFO, "run skipped", status="skipped", reason=reason)
        return {
            "status": "skipped",
            "drift": [],
            "reason": reason,
            "account": own,
            "mode": config.settings.mode,
            "api_calls": 0,
            "trigger": trigger,
        }
    outcome = engine.run(
        _client(config, context),
        config,
        account=_account(context),
        budget=_budget(config, context),
    )
    result = outcome.as_dict()
    result["trigger"] = trigger
    return result


# --- many accounts --------------------------------------------------------------------------


def _own_account(context: Any) -> str | None:
    value = _context_value(context, "account_id")
    return str(value) if value else None


def _access(config: GuardConfig, context: Any) -> Any:
    """Member-account credentials (STS AssumeRole), cached per instance until near expiry."""
    from .accounts import MemberCredentials

    global _member_access
    base = resolve(context)
    if _member_access is None or _member_access.base != base:
        _member_access = MemberCredentials.from_settings(
            config.settings, base, own_account=_own_account(context)
        )
    return _member_access


def _organisation_run(config: GuardConfig, context: Any) -> dict[str, Any]:
    """What every many-account path takes from the instance and the invocation: member
    credentials, the revert budget, and the run's share of the function timeout."""
    return {
        "access": _access(config, context),
        "budget": _budget(config, context),
        "deadline": _deadline(context),
    }


def _fanout_options(config: GuardConfig, context: Any) -> Any:
    from .fanout import FanoutOptions, fc_endpoint

    settings = config.settings
    endpoint = settings.fc_endpoint
    own, region = _own_account(context), _context_value(context, "region")
    if endpoint is None and own and region:
        endpoint = fc_endpoint(own, str(region), internal=True)
    return FanoutOptions(
        worker_function=settings.worker_function,
        fc_endpoint=endpoint,
        in_process_threshold=settings.fanout_threshold,
        batch_size=settings.batch_size,
        concurrency=settings.concurrency,
    )


def _summary_result(summary: Any, trigger: dict[str, Any]) -> dict[str, Any]:
    """The run's result; if any account failed, the invocation fails after the others ran."""
    result = summary.as_dict()
    result["trigger"] = trigger
    failures = summary.failures
    if failures:
        named = ", ".join(f"{f['account']} ({f.get('code') or f['reason']})" for f in failures[:5])
        more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
        raise AccountsFailed(
            result,
            f"{len(failures)} of {summary.counts['accounts']} accounts failed: {named}{more}",
        )
    return result


def worker(event_bytes: Any, context: Any) -> str:
    """Fan-out worker: enforce the batch of member accounts the scheduled function sent."""
    return _run_handler("worker", event_bytes, context, _worker)


def _worker(config: GuardConfig, event_bytes: Any, context: Any) -> dict[str, Any]:
    from . import fanout

    try:
        summary = fanout.run_worker(
            event_bytes,
            config,
            resolve(context),
            own_account=_own_account(context),
            options=_fanout_options(config, context),
            **_organisation_run(config, context),
        )
    except fanout.BatchError as exc:
        raise EventError(f"worker batch: {exc}") from None
    return _summary_result(summary, {"type": "worker", "id": summary.run_id})


# --- the audit event ----------------------------------------------------------------------


def audit_event(event_bytes: Any, context: Any) -> str:
    """EventBridge (ActionTrail) trigger: on a SetSecurityPreference call, read and enforce."""
    return _run_handler("event", event_bytes, context, _audit_event)


def _actor(audit: AuditEvent) -> dict[str, Any]:
    record, identity = audit.record, audit.record.user_identity
    return {
        "type": identity.type,
        "name": identity.display_name,
        "account": identity.account_id,
        "source_ip": record.source_ip_address,
        "user_agent": record.user_agent,
        "time": record.event_time,
        "via": "console" if (record.event_type or "") == "ConsoleOperation" else "api",
    }


def skip_reason(audit: AuditEvent, config: GuardConfig, own_account: str | None) -> str | None:
    """Why this event needs no action, or None when the guard must read and enforce."""
    record = audit.record
    if record.event_name != "SetSecurityPreference":
        return f"event {record.event_name} is not SetSecurityPreference"
    if not record.is_security_preference_change:
        return f"SetSecurityPreference of service {record.service_name!r}, not Ims or Ram"
    if record.error_code:
        return f"the call failed ({record.error_code}): nothing changed"
    self_role = config.settings.self_role
    identity = record.user_identity
    role = identity.role_name
    same_account = not own_account or identity.account_id in (None, own_account)
    if self_role and role and role.lower() == self_role.lower() and same_account:
        return f"the change was made by the guard's own role {role}"
    event_account = audit.account
    if config.settings.targets != "self" or event_account in config.settings.exclude_accounts:
        from .accounts import account_in_scope, is_guard_session

        # in a member account the guard writes through the shared member role: its own
        # changes are recognised by the session name it assumes that role with
        if is_guard_session(identity.arn, config.settings.member_role):
            return "the change was made by the guard's own session in a member account"
        if event_account:
            return account_in_scope(config.settings, event_account, own_account)
        return None
    if own_account and event_account and event_account != own_account:
        return f"the event is for account {event_account}; this guard enforces {own_account}"
    return None


def _audit_event(config: GuardConfig, event_bytes: Any, context: Any) -> dict[str, Any]:
    audit = parse_audit_event(event_bytes)
    actor = _actor(audit)
    trigger = {
        "type": "event",
        "id": audit.event_id,
        "name": audit.record.event_name,
        "time": audit.record.event_time,
    }
    own_account = _context_value(context, "account_id")
    reason = skip_reason(audit, config, str(own_account) if own_account else None)
    if reason is not None:
        get_logger().info(
            "event skipped",
            extra={
                "fields": {
                    "status": "skipped",
                    "account": audit.account or _account(context),
                    "reason": reason,
                    "actor": actor,
                    "event_id": audit.event_id,
                }
            },
        )
        return {
            "status": "skipped",
            "drift": [],
            "reason": reason,
            "account": audit.account or _account(context),
            "mode": config.settings.mode,
            "api_calls": 0,
            "trigger": trigger,
            "actor": actor,
        }
    member = audit.account if audit.account and audit.account != own_account else None
    with bind(event_id=audit.event_id, actor=actor["name"]):
        if member is not None and config.settings.targets != "self":
            from .fanout import enforce_account

            outcome = enforce_account(
                member,
                config,
                actor=f"{actor['type']} {actor['name']}",
                **_organisation_run(config, context),
            )
        else:
            outcome = engine.run(
                _client(config, context),
                config,
                account=_account(context),
                budget=_budget(config, context),
                actor=f"{actor['type']} {actor['name']}",
            )
    result = outcome.as_dict()
    result["trigger"] = trigger
    result["actor"] = actor
    if outcome.status == "error":  # a member account the guard could not enforce
        raise AccountsFailed(result, f"account {outcome.account}: {outcome.reason}")
    if outcome.status == "compliant":
        result["reason"] = "the live state already matches the baseline (the event was a hint)"
    return result
