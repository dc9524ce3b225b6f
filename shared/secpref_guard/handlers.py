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


_config: GuardConfig | None = None
_config_error: ConfigError | None = None
_logging_ready = False
_dedup_window: Any = None  # notify.DedupWindow, per instance, created on first use


def _setup_logging() -> None:
    global _logging_ready
    if not _logging_ready:
        configure(os.environ.get("GUARD_LOG_LEVEL", "INFO"))
        _logging_ready = True


def instance_config() -> GuardConfig:
    """The configuration of this instance, validated once; the same error on every call."""
    global _config, _config_error
    if _config is None and _config_error is None:
        try:
            _config = load_config()
        except ConfigError as exc:
            _config_error = exc
    if _config_error is not None:
        raise _config_error
    assert _config is not None
    return _config


def reset_instance() -> None:
    """Forget the cached configuration, as a new instance would (tests, local invoke)."""
    global _config, _config_error, _dedup_window
    _config = _config_error = _dedup_window = None


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
    ):
        config: GuardConfig | None = None
        try:
            config = instance_config()
            result = body(config, event_bytes, context)
        except ConfigError as exc:
            raise _fail(f"configuration error: {exc}", exc) from None
        except CredentialsError as exc:
            raise _fail(str(exc), exc) from None
        except EventError as exc:
            raise _fail(f"malformed event: {exc}", exc) from None
        except (ApiError, engine.VerificationError) as exc:
            failure = _fail(str(exc), exc)
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


def _fail(message: str, exc: Exception) -> HandlerError:
    fields: dict[str, Any] = {"error_type": type(exc).__name__}
    if isinstance(exc, ApiError):
        fields.update(exc.as_dict())
    if isinstance(exc, ConfigError):
        fields["variable"] = exc.variable
    if isinstance(exc, engine.VerificationError):
        fields["mismatches"] = exc.mismatches
    event(logging.ERROR, message, **fields)
    return HandlerError(message)


def _client(config: GuardConfig, context: Any) -> ImsClient:
    return ImsClient(config.settings.ims_endpoint, resolve(context))


def _account(context: Any) -> str:
    return str(_context_value(context, "account_id") or "self")


# --- the timer ----------------------------------------------------------------------------


def scheduled(event_bytes: Any, context: Any) -> str:
    """Timer trigger: enforce the baseline and return the result as JSON."""
    return _run_handler("schedule", event_bytes, context, _scheduled)


def _scheduled(config: GuardConfig, event_bytes: Any, context: Any) -> dict[str, Any]:
    timer = parse_timer(event_bytes)
    outcome = engine.run(_client(config, context), config, account=_account(context))
    result = outcome.as_dict()
    result["trigger"] = {"type": "schedule", "name": timer.trigger_name, "time": timer.trigger_time}
    return result


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
    role = record.user_identity.role_name
    if self_role and role and role.lower() == self_role.lower():
        return f"the change was made by the guard's own role {role}"
    event_account = audit.account
    if (
        config.settings.targets == "self"
        and own_account
        and event_account
        and event_account != own_account
    ):
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
            extra={"fields": {"reason": reason, "actor": actor, "event_id": audit.event_id}},
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
    with bind(event_id=audit.event_id, actor=actor["name"]):
        outcome = engine.run(_client(config, context), config, account=_account(context))
    result = outcome.as_dict()
    result["trigger"] = trigger
    result["actor"] = actor
    if outcome.status == "compliant":
        result["reason"] = "the live state already matches the baseline (the event was a hint)"
    return result
