"""The timer trigger's payload as a typed model (the audit event's models are events.py's, and a
timer run never imports them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .payloads import EventError, explain, load_json


class TimerPayload(BaseModel):
    """What a Function Compute timer trigger sends (all optional for a manual invocation)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    trigger_time: str | None = Field(
        None,
        alias="triggerTime",
        description="UTC time the timer fired",
        examples=["2026-11-25T04:00:00Z"],
    )
    trigger_name: str | None = Field(
        None,
        alias="triggerName",
        description="the trigger's name in template.yml",
        examples=["every-5-minutes"],
    )
    payload: str | None = Field(None, description="the trigger's configured payload string")


def parse_timer(event: bytes | str | dict | None) -> TimerPayload:
    document = load_json(event, "timer payload")
    if document is None:
        return TimerPayload()
    if not isinstance(document, dict):
        raise EventError(f"timer payload: expected a JSON object, got {type(document).__name__}")
    try:
        return TimerPayload.model_validate(document)
    except ValidationError as exc:
        raise EventError(f"timer payload: {explain(exc, '')}") from None
