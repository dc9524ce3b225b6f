"""Function Compute entry point of the ActionTrail/EventBridge trigger (audit_event.handler)."""

from typing import Any

from secpref_guard.handlers import audit_event


def handler(event: bytes, context: Any) -> str:
    return audit_event(event, context)
