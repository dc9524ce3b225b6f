"""Function Compute entry point of the fan-out worker (handler: worker.handler): enforces the
batch of member accounts the scheduled function dispatched to it."""

from typing import Any

from secpref_guard.handlers import worker


def handler(event: bytes, context: Any) -> str:
    return worker(event, context)
