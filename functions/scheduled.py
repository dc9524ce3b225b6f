"""Function Compute entry point of the timer trigger (handler: scheduled.handler)."""

from typing import Any

from secpref_guard.handlers import scheduled


def handler(event: bytes, context: Any) -> str:
    return scheduled(event, context)
