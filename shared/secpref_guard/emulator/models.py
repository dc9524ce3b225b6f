"""The emulator's backend: plain state per account, methods named after the API actions.

It knows the settings' rules from the field tables (``fields.SETTINGS``: the security
preference and the password policy, each its Get and Set action, validation ranges, defaults
and error codes) and nothing about HTTP. The two front doors (``mock.py`` for in-process tests
through ``responses``, ``server.py`` for the ``emulator`` command) parse requests in
``responses.py`` and call it. A new setting in the tables is served without a change here.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from .. import fields as F
from .exceptions import EmulatedError, InvalidParameter

Omitted = Literal["reset", "keep"]
# How an injected fault fails: "error" answers with the API's error shape (inject_fault); the
# others happen on the wire and are raised by the front door (mock.py) as the HTTP library's
# own exceptions: refused connection, connect timeout, read timeout (the service may already
# have acted: only the reply is lost), and a slow reply (a read timeout when slower than the
# client waits).
FaultKind = Literal["error", "connection-error", "connect-timeout", "read-timeout", "slow"]
TRANSPORT_FAULTS: tuple[FaultKind, ...] = (
    "connection-error",
    "connect-timeout",
    "read-timeout",
    "slow",
)

# Fields whose API default is undocumented: what the emulator resets them to when omitted.
UNDOCUMENTED_DEFAULTS: Mapping[str, F.Value] = {
    "AllowUserToManageServiceCredentials": False,
    "VerificationTypes": frozenset(),
}
# What the emulator answers for read-only fields (deprecated by the API, never sent).
READ_ONLY_VALUES: Mapping[str, Any] = {"OperationForRiskLogin": "autonomous"}
DEFAULT_ACCOUNT = "1234567890123456"
DEFAULT_SETTING = F.SECURITY_PREFERENCE.name


def documented_defaults(setting: str = DEFAULT_SETTING) -> dict[str, F.Value]:
    """A new account's setting: every field at its documented (or emulator) default."""
    return {
        f.api_name: f.default if f.default is not None else UNDOCUMENTED_DEFAULTS[f.api_name]
        for f in F.setting(setting).fields
    }


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()


@dataclass
class KeyPair:
    secret: str
    account: str
    security_token: str | None = None
    principal: str = "root"


@dataclass
class Fault:
    """An injected failure: the next ``times`` matching calls fail with this error."""

    action: str | None  # None: any action
    code: str
    status: int
    message: str
    times: int
    account: str | None = None
    kind: FaultKind = "error"
    # seconds a transport fault takes; None: the client's own timeout (timeouts)
    delay: float | None = None
    reached_server: bool = True  # a read timeout: the service acted before the reply was lost
    fired: int = 0  # how many calls this fault has failed (or slowed) so far

    def matches(self, action: str | None, account: str | None) -> bool:
        return self.times > 0 and self.action in (None, action) and self.account in (None, account)


@dataclass
class Call:
    action: str
    account: str
    params: dict[str, str]
    principal: str = "root"


@dataclass
class ImsBackend:
    """Every setting of many accounts (security preference, password policy), with the
    switches tests need. ``omitted`` is what a Set does to an omitted parameter, for every
    setting unless ``omitted_by_setting`` names another behaviour for one."""

    omitted: Omitted = "reset"
    omitted_by_setting: dict[str, Omitted] = field(default_factory=dict)
    # account -> setting name -> field -> value
    accounts: dict[str, dict[str, dict[str, F.Value]]] = field(default_factory=dict)
    # fields an account's site does not return (absent means unknown)
    hidden_fields: dict[str, set[str]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    ignored_sets: int = 0  # the next N Sets (of any setting) answer success, change nothing
    # called after every Set of any setting with (account, the values sent); the names sent
    # say which setting it was (fields.setting_of)
    after_set: list[Callable[[str, dict[str, F.Value]], None]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    # how slow and timing-out transport faults wait: tests may pass a fake clock's advance
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    # --- state ------------------------------------------------------------------------------

    def state(self, account: str, setting: str = DEFAULT_SETTING) -> dict[str, F.Value]:
        """The live values of one setting of an account (created at its defaults)."""
        F.setting(setting)
        with self.lock:
            settings = self.accounts.setdefault(account, {})
            if setting not in settings:
                settings[setting] = documented_defaults(setting)
            return settings[setting]

    def put(self, account: str, **values: Any) -> None:
        """Change fields of any setting of an account directly (a person in the console, in a
        test, ``emulator --set``): each field goes to its own setting. Text is parsed as the
        configuration parses it; everything is checked before anything changes."""
        parsed: list[tuple[str, str, F.Value]] = []
        for name, value in values.items():
            f = F.field(name)
            canonical = f.parse_text(value) if isinstance(value, str) else _canon(f, value)
            parsed.append((f.setting, name, canonical))
        with self.lock:
            for setting, name, value in parsed:
                self.state(account, setting)[name] = value

    def hide_field(self, account: str, name: str) -> None:
        F.field(name)
        self.hidden_fields.setdefault(account, set()).add(name)

    def omitted_for(self, setting: str) -> Omitted:
        return self.omitted_by_setting.get(setting, self.omitted)

    def actions(self) -> dict[str, Callable[[str, Mapping[str, str]], dict[str, Any]]]:
        """The IMS actions this backend answers: a Get and a Set for every setting."""
        table: dict[str, Callable[[str, Mapping[str, str]], dict[str, Any]]] = {}
        for s in F.SETTINGS:
            table[s.get_action] = partial(self.get_setting, s)
            table[s.set_action] = partial(self.set_setting, s)
        return table

    # --- faults -----------------------------------------------------------------------------

    def inject_fault(
        self,
        code: str,
        status: int,
        *,
        action: str | None = None,
        message: str = "",
        times: int = 1,
        account: str | None = None,
    ) -> None:
        with self.lock:
            self.faults.append(
                Fault(action, code, status, message or f"emulated {code}", times, account)
            )

    def inject_transport_fault(
        self,
        kind: FaultKind,
        *,
        action: str | None = None,
        times: int = 1,
        account: str | None = None,
        delay: float | None = None,
        reached_server: bool = True,
    ) -> Fault:
        """Fail the next ``times`` matching calls on the wire (see ``FaultKind``).

        ``delay`` is how long a slow reply takes, or how long a timeout takes to happen
        (default: the timeout the client asked for). Returns the fault: ``fired`` counts the
        calls it hit, including those that never reached the service.
        """
        if kind not in TRANSPORT_FAULTS:
            raise ValueError(f"unknown transport fault {kind!r}; known: {TRANSPORT_FAULTS}")
        if kind == "slow" and not delay:
            raise ValueError("a slow fault needs a delay in seconds")
        fault = Fault(
            action,
            kind,
            0,
            f"emulated {kind}",
            times,
            account,
            kind=kind,
            delay=delay,
            reached_server=reached_server,
        )
        with self.lock:
            self.faults.append(fault)
        return fault

    def take_transport_fault(self, action: str | None, account: str | None) -> Fault | None:
        """The transport fault this call meets, if any (for the front doors)."""
        with self.lock:
            for fault in self.faults:
                if fault.kind != "error" and fault.matches(action, account):
                    fault.times -= 1
                    fault.fired += 1
                    return fault
        return None

    def _raise_fault(self, action: str, account: str) -> None:
        with self.lock:
            for fault in self.faults:
                if fault.kind != "error" or not fault.matches(action, account):
                    continue
                fault.times -= 1
                fault.fired += 1
                raise EmulatedError(fault.message, code=fault.code, status=fault.status)

    def calls_of(self, action: str) -> list[Call]:
        return [c for c in self.calls if c.action == action]

    # --- actions ----------------------------------------------------------------------------

    def get_setting(
        self, setting: F.Setting, account: str, params: Mapping[str, str]
    ) -> dict[str, Any]:
        """Get<Setting>: the account's values under the setting's response key."""
        self._raise_fault(setting.get_action, account)
        with self.lock:
            values = dict(self.state(account, setting.name))
            for name in self.hidden_fields.get(account, ()):
                values.pop(name, None)
        body = setting.render_response(values)
        for name, group in setting.read_only.items():
            holder = body if group is None else body.setdefault(group, {})
            holder[name] = READ_ONLY_VALUES.get(name)
        return {setting.response_key: body}

    def set_setting(
        self, setting: F.Setting, account: str, params: Mapping[str, str]
    ) -> dict[str, Any]:
        """Set<Setting>: every parameter is checked before anything changes; an omitted one
        is reset to its default or kept (``omitted_for``); the reply echoes the new state."""
        self._raise_fault(setting.set_action, account)
        sent: dict[str, F.Value] = {}
        for f in setting.fields:
            if f.api_name not in params:
                continue
            try:
                sent[f.api_name] = f.parse_param(params[f.api_name])
            except F.FieldValueError as exc:
                raise invalid_parameter(setting, f, exc) from None
        with self.lock:
            if self.ignored_sets > 0:
                self.ignored_sets -= 1
                new = dict(self.state(account, setting.name))
            else:
                current = self.state(account, setting.name)
                keep = self.omitted_for(setting.name) == "keep"
                base = current if keep else documented_defaults(setting.name)
                new = {**base, **sent}
                self.accounts[account][setting.name] = new
            hooks = list(self.after_set)
        for hook in hooks:
            hook(account, dict(sent))
        return {setting.response_key: setting.render_response(new)}

    # the security preference's actions by their old names (tests and callers use them)
    def get_security_preference(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        return self.get_setting(F.SECURITY_PREFERENCE, account, params)

    def set_security_preference(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        return self.set_setting(F.SECURITY_PREFERENCE, account, params)

    def get_password_policy(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        return self.get_setting(F.PASSWORD_POLICY, account, params)

    def set_password_policy(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        return self.set_setting(F.PASSWORD_POLICY, account, params)


def invalid_parameter(setting: F.Setting, f: F.Field, exc: F.FieldValueError) -> InvalidParameter:
    """The service's error for a bad Set parameter. The RAM API documents
    ``InvalidParameter.MinimumPasswordLength.Range`` with the message ``The parameter -
    "MinimumPasswordLength" MUST be in the range of 8 and 32.`` (and ``.Format`` codes for
    malformed values); the security preference's codes are ``InvalidParameter.<Name>``."""
    if not setting.detailed_error_codes:
        return InvalidParameter(f.api_name, str(exc))
    if exc.reason == "range" and f.kind == "int":
        low, high = f.bounds or (0, 0)
        return InvalidParameter(
            f.api_name,
            f'The parameter - "{f.api_name}" MUST be in the range of {low} and {high}.',
            suffix="Range",
        )
    return InvalidParameter(
        f.api_name, f'The format of the parameter - "{f.api_name}" is incorrect.', suffix="Format"
    )


def _canon(f: F.Field, value: Any) -> F.Value:
    """A Python value for ``put``, held to what the Set would accept (a range, a choice)."""
    if f.kind == "masks":
        return F.normalise_masks(value)
    if f.kind == "types":
        return F.normalise_verification_types(value)
    expected = {"bool": bool, "int": int, "enum": str}[f.kind]
    if not isinstance(value, expected) or (f.kind == "int" and isinstance(value, bool)):
        raise F.FieldValueError(f"{f.api_name}: expected {f.allowed}, got {value!r}")
    return f.parse_param(f.render_param(value))
