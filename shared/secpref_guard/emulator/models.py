"""The emulator's backend: plain state per account, methods named after the API actions.

It knows the security-preference rules (from the field table) and nothing about HTTP. The two
front doors (``mock.py`` for in-process tests through ``responses``, ``server.py`` for the
``emulator`` command) parse requests in ``responses.py`` and call it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
DEFAULT_ACCOUNT = "1234567890123456"


def documented_defaults() -> dict[str, F.Value]:
    """A new account's preference: every field at its documented (or emulator) default."""
    return {
        f.api_name: f.default if f.default is not None else UNDOCUMENTED_DEFAULTS[f.api_name]
        for f in F.FIELDS
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
    """Security preferences of many accounts, with the switches tests need."""

    omitted: Omitted = "reset"
    accounts: dict[str, dict[str, F.Value]] = field(default_factory=dict)
    # fields an account's site does not return (absent means unknown)
    hidden_fields: dict[str, set[str]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    ignored_sets: int = 0  # the next N Sets answer success and change nothing
    after_set: list[Callable[[str, dict[str, F.Value]], None]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    # how slow and timing-out transport faults wait: tests may pass a fake clock's advance
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    # --- state ------------------------------------------------------------------------------

    def state(self, account: str) -> dict[str, F.Value]:
        with self.lock:
            if account not in self.accounts:
                self.accounts[account] = documented_defaults()
            return self.accounts[account]

    def put(self, account: str, **values: Any) -> None:
        """Change an account's preference directly (a person in the console, in a test)."""
        with self.lock:
            state = self.state(account)
            for name, value in values.items():
                f = F.field(name)
                state[name] = f.parse_text(value) if isinstance(value, str) else _canon(f, value)

    def hide_field(self, account: str, name: str) -> None:
        F.field(name)
        self.hidden_fields.setdefault(account, set()).add(name)

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

    def get_security_preference(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        self._raise_fault("GetSecurityPreference", account)
        with self.lock:
            values = dict(self.state(account))
            for name in self.hidden_fields.get(account, ()):
                values.pop(name, None)
        body = F.render_response(values)
        body["LoginProfilePreference"]["OperationForRiskLogin"] = "autonomous"
        return {"SecurityPreference": body}

    def set_security_preference(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        self._raise_fault("SetSecurityPreference", account)
        sent: dict[str, F.Value] = {}
        for f in F.FIELDS:
            if f.api_name not in params:
                continue
            try:
                sent[f.api_name] = f.parse_param(params[f.api_name])
            except F.FieldValueError as exc:
                raise InvalidParameter(f.api_name, str(exc)) from None
        with self.lock:
            if self.ignored_sets > 0:
                self.ignored_sets -= 1
                new = dict(self.state(account))
            else:
                current = self.state(account)
                base = current if self.omitted == "keep" else documented_defaults()
                new = {**base, **sent}
                self.accounts[account] = new
            hooks = list(self.after_set)
        for hook in hooks:
            hook(account, dict(sent))
        return {"SecurityPreference": F.render_response(new)}


def _canon(f: F.Field, value: Any) -> F.Value:
    if f.kind == "masks":
        return F.normalise_masks(value)
    if f.kind == "types":
        return F.normalise_verification_types(value)
    return value
