"""The account-level settings of one account through IMS (2019-08-15): a Get and a Set for
each setting of the field tables (``fields.SETTINGS``), with the values as read."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import fields as F
from .client import ApiError, RpcService

IMS_VERSION = "2019-08-15"


@dataclass(frozen=True)
class Preference:
    """One live setting of an account (the security preference, the password policy):
    canonical values of the fields the account returned."""

    values: dict[str, F.Value]
    request_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # read-only fields, e.g. deprecated ones
    # The Set parameter of each field as it was read, where its canonical rendering could
    # differ (masks, verification types): what goes back when the field is not changed.
    live_params: dict[str, str] = field(default_factory=dict)
    setting: str = F.SECURITY_PREFERENCE.name  # which setting was read


class ImsClient(RpcService):
    """The account-level settings of one account (IMS 2019-08-15): a Get and a Set for each
    setting of the field tables (``fields.SETTINGS``)."""

    VERSION = IMS_VERSION

    def get_setting(self, setting: F.Setting) -> Preference:
        """Read one setting: its values, read-only fields and live parameters."""
        document = self.rpc.call(setting.get_action)
        body = document.get(setting.response_key)
        if not isinstance(body, dict):
            raise ApiError(
                setting.get_action,
                "InvalidResponse",
                f"the response has no {setting.response_key} object",
                request_id=document.get("RequestId"),
            )
        try:
            values, live_params = setting.read_response(body)
        except F.FieldValueError as exc:
            raise ApiError(
                setting.get_action,
                "InvalidResponse",
                str(exc),
                request_id=document.get("RequestId"),
            ) from None
        extra = setting.read_only_values(body)
        return Preference(values, document.get("RequestId"), extra, live_params, setting.name)

    def set_setting(
        self,
        setting: F.Setting,
        desired: Mapping[str, F.Value],
        live: Preference | None = None,
        replan: Callable[[], tuple[Mapping[str, F.Value], Preference]] | None = None,
    ) -> str | None:
        """Send these values of one setting (a complete desired state: the API may reset what
        is omitted). A field of another setting in ``desired`` is refused, never dropped.

        With ``live`` (the Get the values were derived from), a field whose value equals its
        live value goes out exactly as it was read, not in its canonical rendering: the
        masks ``10.1.2.3/24`` are sent back as ``10.1.2.3/24``, not ``10.1.2.0/24``. With
        ``replan``, a try after a failed one (a throttled Set waits before it tries again) sends
        what ``replan()`` returns instead, planned on a fresh read."""

        def params(attempt: int) -> dict[str, str]:
            values, read = (desired, live) if attempt == 1 or replan is None else replan()
            return _params(setting, values, read)

        document = self.rpc.call(setting.set_action, params)
        request_id = document.get("RequestId")
        return request_id if isinstance(request_id, str) else None

    # --- each setting by the API's own names (for scripts and tests; the engine uses the
    # generic pair above)

    def get_security_preference(self) -> Preference:
        return self.get_setting(F.SECURITY_PREFERENCE)

    def set_security_preference(
        self, values: Mapping[str, F.Value], live: Preference | None = None
    ) -> str | None:
        """``set_setting`` of the security preference; a field of another setting in
        ``values`` is left out of SetSecurityPreference, never sent."""
        own = {k: v for k, v in values.items() if k in F.SECURITY_PREFERENCE.by_api_name}
        return self.set_setting(F.SECURITY_PREFERENCE, own, live)

    def get_password_policy(self) -> Preference:
        return self.get_setting(F.PASSWORD_POLICY)

    def set_password_policy(
        self, values: Mapping[str, F.Value], live: Preference | None = None
    ) -> str | None:
        return self.set_setting(F.PASSWORD_POLICY, values, live)


def _params(
    setting: F.Setting, desired: Mapping[str, F.Value], live: Preference | None
) -> dict[str, str]:
    foreign = sorted(set(desired) - set(setting.by_api_name))
    if foreign:
        raise ValueError(f"{setting.set_action} does not take {', '.join(foreign)}")
    if live is not None and live.setting != setting.name:
        raise ValueError(f"the live values are of {live.setting}, not of {setting.name}")
    params = setting.render_params(desired)
    if live is not None:
        for name, text in live.live_params.items():
            if name in params and name in live.values and desired[name] == live.values[name]:
                params[name] = text
    return params
