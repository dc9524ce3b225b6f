"""The audit event as typed models: the EventBridge CloudEvents envelope and the ActionTrail
record inside it (the timer's payload is timer.py's: a timer run never builds these models).

Handlers ask for "the ActionTrail record of this event" (``parse_audit_event``) and never dig
through dictionaries. Every malformed payload raises ``EventError`` naming the offending field.
Quirks of real events are handled here, next to the field they concern.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .fields import SETTINGS
from .payloads import MAX_DEPTH, MAX_EVENT_BYTES, EventError, explain, load_json

__all__ = ["MAX_DEPTH", "MAX_EVENT_BYTES", "EventError", "load_json"]


# The audit event of each setting's write, and the setting it changes: from the field tables
# (each setting's events).
SETTING_EVENTS: dict[str, str] = {name: s.name for s in SETTINGS for name in s.events}
# A console change is recorded by the IMS service; an API call may carry Ims or Ram.
RELEVANT_SERVICES = frozenset({"ims", "ram"})


class UserIdentity(BaseModel):
    """Who made the call, as ActionTrail records it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type: str = Field(
        "unknown",
        description="root-account, ram-user, assumed-role, system, ...",
        examples=["ram-user"],
    )
    principal_id: str | None = Field(None, alias="principalId")
    account_id: str | None = Field(None, alias="accountId", examples=["1234567890123456"])
    user_name: str | None = Field(
        None,
        alias="userName",
        description="the RAM user, or for an assumed role the role session's name",
    )
    access_key_id: str | None = Field(None, alias="accessKeyId")
    arn: str | None = Field(
        None, examples=["acs:ram::1234567890123456:assumed-role/secpref-guard-role/fc-session"]
    )
    session_context: dict[str, Any] | None = Field(None, alias="sessionContext")

    @field_validator("account_id", "principal_id", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        # Account ids are digits; some producers send them as JSON numbers.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @property
    def role_name(self) -> str | None:
        """The RAM role of an assumed-role identity, from its ARN (role names ignore case)."""
        if not self.arn or ":assumed-role/" not in self.arn:
            return None
        return self.arn.split(":assumed-role/", 1)[1].split("/", 1)[0] or None

    @property
    def display_name(self) -> str:
        if self.role_name:
            session = self.arn.rsplit("/", 1)[-1] if self.arn else ""
            return f"{self.role_name}/{session}" if session else self.role_name
        return self.user_name or self.principal_id or self.type


class ActionTrailRecord(BaseModel):
    """One ActionTrail record: an API call or console operation."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    event_id: str | None = Field(None, alias="eventId")
    event_name: str = Field(
        alias="eventName", examples=["SetSecurityPreference", "SetPasswordPolicy"]
    )
    event_type: str | None = Field(
        None, alias="eventType", examples=["ApiCall", "ConsoleOperation"]
    )
    event_time: str | None = Field(None, alias="eventTime", examples=["2026-11-25T03:58:12Z"])
    event_version: str | None = Field(None, alias="eventVersion")
    event_rw: str | None = Field(None, alias="eventRW", examples=["Write"])
    service_name: str | None = Field(None, alias="serviceName", examples=["Ims", "Ram"])
    event_source: str | None = Field(None, alias="eventSource", examples=["ims-share.aliyuncs.com"])
    acs_region: str | None = Field(None, alias="acsRegion")
    request_id: str | None = Field(None, alias="requestId")
    source_ip_address: str | None = Field(None, alias="sourceIpAddress")
    user_agent: str | None = Field(None, alias="userAgent")
    request_parameters: dict[str, Any] | None = Field(None, alias="requestParameters")
    error_code: str | None = Field(None, alias="errorCode")
    error_message: str | None = Field(None, alias="errorMessage")
    user_identity: UserIdentity = Field(default_factory=UserIdentity, alias="userIdentity")
    recipient_account_id: str | None = Field(None, alias="recipientAccountId")

    @field_validator("event_version", "recipient_account_id", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        return (
            str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
        )

    @field_validator("error_code", mode="before")
    @classmethod
    def _blank_error_is_none(cls, value: Any) -> Any:
        # Successful calls carry no errorCode, or an empty one in some deliveries.
        return None if value in ("", None) else value

    @property
    def is_relevant_service(self) -> bool:
        # A record without serviceName is still read: the live state decides, a read is cheap,
        # and skipping would leave a real change to the next timer run.
        return self.service_name is None or self.service_name.lower() in RELEVANT_SERVICES

    @property
    def changed_setting(self) -> str | None:
        """The setting this record changes (``security-preference``, ``password-policy``), or
        None for an event of no guarded setting or of another service."""
        if not self.is_relevant_service:
            return None
        return SETTING_EVENTS.get(self.event_name)


class CloudEvent(BaseModel):
    """The EventBridge envelope (CloudEvents 1.0 with Alibaba Cloud extensions)."""

    model_config = ConfigDict(extra="allow")

    id: str
    source: str | None = None
    type: str = Field(examples=["ims:ActionTrail:ApiCall", "actiontrail:ActionTrail:ApiCall"])
    subject: str | None = None
    time: str | None = None
    specversion: str | None = None
    datacontenttype: str | None = None
    aliyunaccountid: str | None = None
    aliyunregionid: str | None = None
    aliyuneventbusname: str | None = None
    aliyunpublishtime: str | None = None
    data: Any

    @field_validator("aliyunaccountid", mode="before")
    @classmethod
    def _account_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class AuditEvent(BaseModel):
    """What the audit handler needs: the record, and the envelope when there was one."""

    model_config = ConfigDict(frozen=True)

    record: ActionTrailRecord
    envelope: CloudEvent | None = None

    @property
    def event_id(self) -> str | None:
        return self.envelope.id if self.envelope else self.record.event_id

    @property
    def account(self) -> str | None:
        """The account whose preference changed, as the trail records it (recipientAccountId,
        or the account the event bus received it in). Not the caller's account: a role session
        from another account changes the account it calls, not its own. None: unknown, which
        the handler takes as its own account."""
        return self.record.recipient_account_id or (
            self.envelope.aliyunaccountid if self.envelope else None
        )


def parse_audit_event(event: bytes | str | dict | None) -> AuditEvent:
    """The ActionTrail record of an EventBridge envelope, or of a bare record."""
    document = load_json(event, "audit event")
    if not isinstance(document, dict):
        kind = "nothing" if document is None else type(document).__name__
        raise EventError(f"audit event: expected a JSON object, got {kind}")
    envelope: CloudEvent | None = None
    if "data" in document or "specversion" in document:
        try:
            envelope = CloudEvent.model_validate(document)
        except ValidationError as exc:
            raise EventError(f"audit event envelope: {explain(exc, '')}") from None
        data = envelope.data
        if isinstance(data, str):
            # Some targets deliver data as a JSON string rather than an object.
            data = load_json(data, "audit event data")
        if not isinstance(data, dict):
            raise EventError(
                f"audit event: data is {type(data).__name__}, expected an ActionTrail record"
            )
        prefix = "data"
    elif "eventName" in document:
        data, prefix = document, ""
    else:
        raise EventError(
            "audit event: neither an EventBridge envelope (data) nor an ActionTrail record "
            "(eventName)"
        )
    try:
        record = ActionTrailRecord.model_validate(data)
    except ValidationError as exc:
        raise EventError(f"audit event: {explain(exc, prefix)}") from None
    return AuditEvent(record=record, envelope=envelope)
