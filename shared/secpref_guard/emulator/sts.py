"""Emulated STS (2015-04-01): AssumeRole into a RAM role of another account.

What the real service does and this backend models:
- ``RoleArn`` is ``acs:ram::<account id>:role/<role name>``, the role name compared without
  regard to case (RAM shows role ARNs in lower case);
- a role that does not exist in that account: ``EntityNotExist.Role`` (404);
- a role whose trust policy does not name the caller's account, or a caller that is an
  account's root identity: ``NoPermission`` (403);
- ``RoleSessionName`` 2-64 characters of letters, digits and ``. @ - _``; ``DurationSeconds``
  900 up to the role's maximum session duration (default 3600);
- the answer carries ``Credentials`` {AccessKeyId, AccessKeySecret, SecurityToken, Expiration
  (UTC, ``2015-04-09T11:52:19Z``)} and ``AssumedRoleUser`` {Arn, AssumedRoleId};
- the temporary key belongs to the role's account; once expired, any call signed with it
  fails with ``InvalidSecurityToken.Expired``.

The clock is injectable so tests move time instead of waiting for it.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .exceptions import EmulatedError, InvalidParameter, MissingParameter, NoPermission
from .responses import Emulator, Reply

STS_VERSION = "2015-04-01"
ROLE_ARN = re.compile(r"^acs:ram::(?P<account>\d{1,20}):role/(?P<role>[A-Za-z0-9.\-_]{1,64})$")
SESSION_NAME = re.compile(r"^[A-Za-z0-9.@\-_]{2,64}$")
MIN_DURATION_SECONDS = 900
DEFAULT_DURATION_SECONDS = 3600


class EntityNotExistRole(EmulatedError):
    code, status = "EntityNotExist.Role", 404


class SecurityTokenExpired(EmulatedError):
    code, status = "InvalidSecurityToken.Expired", 400


def role_arn(account: str, role_name: str) -> str:
    """The ARN of a role as RAM shows it: the role name in lower case."""
    return f"acs:ram::{account}:role/{role_name.lower()}"


def expiration_text(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Role:
    account: str
    name: str
    trusted_accounts: frozenset[str]
    max_session_duration: int = DEFAULT_DURATION_SECONDS
    role_id: str = field(default_factory=lambda: str(secrets.randbelow(10**19)).zfill(19))


@dataclass(frozen=True)
class IssuedKey:
    """A temporary key handed out by AssumeRole: whose it is and until when."""

    access_key_id: str
    account: str
    role: str
    session_name: str
    expires_at: float  # epoch seconds, on the backend's clock
    caller_account: str


@dataclass
class StsBackend:
    """Roles per account and the temporary keys issued for them, registered on an Emulator."""

    emulator: Emulator
    clock: Callable[[], float] = time.time
    refuse_root: bool = True  # the real service: "Roles may not be assumed by root accounts."
    roles: dict[tuple[str, str], Role] = field(default_factory=dict)
    issued: dict[str, IssuedKey] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- state ------------------------------------------------------------------------------

    def add_role(
        self,
        account: str,
        name: str,
        *,
        trusted_accounts: frozenset[str] | set[str] | tuple[str, ...] = (),
        max_session_duration: int = DEFAULT_DURATION_SECONDS,
    ) -> Role:
        """A role in ``account`` that RAM identities of ``trusted_accounts`` may assume."""
        role = Role(account, name, frozenset(trusted_accounts), max_session_duration)
        with self.lock:
            self.roles[(account, name.lower())] = role
        return role

    def remove_role(self, account: str, name: str) -> None:
        with self.lock:
            self.roles.pop((account, name.lower()), None)

    def keys_of(self, account: str) -> list[IssuedKey]:
        with self.lock:
            return [k for k in self.issued.values() if k.account == account]

    def expired(self, access_key_id: str) -> bool:
        issued = self.issued.get(access_key_id)
        return issued is not None and self.clock() >= issued.expires_at

    # --- actions ----------------------------------------------------------------------------

    def assume_role(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        """AssumeRole, called by a RAM identity of ``account``."""
        self.emulator.ims._raise_fault("AssumeRole", account)  # faults are injected there
        caller = self.emulator.keys[params["AccessKeyId"]]
        arn = params.get("RoleArn", "")
        if not arn:
            raise MissingParameter("RoleArn is mandatory for this action.", code="MissingRoleArn")
        match = ROLE_ARN.match(arn)
        if match is None:
            raise InvalidParameter("RoleArn", "expected acs:ram::<account id>:role/<role name>")
        session_name = params.get("RoleSessionName", "")
        if not session_name:
            raise MissingParameter(
                "RoleSessionName is mandatory for this action.", code="MissingRoleSessionName"
            )
        if not SESSION_NAME.match(session_name):
            raise InvalidParameter("RoleSessionName", "2-64 letters, digits, '.', '@', '-', '_'")
        if self.refuse_root and caller.principal == "root":
            raise NoPermission("Roles may not be assumed by root accounts.")
        target_account, role_name = match.group("account"), match.group("role")
        with self.lock:
            role = self.roles.get((target_account, role_name.lower()))
        if role is None:
            raise EntityNotExistRole("The specified Role not exists: " + arn)
        if account not in role.trusted_accounts:
            raise NoPermission(
                "No permission perform sts:AssumeRole on this Role. Maybe the "
                "role has not been authorized to you."
            )
        duration = _duration(params.get("DurationSeconds"), role.max_session_duration)

        key_id = "STS." + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")
        secret = secrets.token_urlsafe(30)
        token = "CAIS" + secrets.token_urlsafe(96) + "/+="  # real tokens carry / + =
        expires_at = self.clock() + duration
        with self.lock:
            self.issued[key_id] = IssuedKey(
                key_id, target_account, role.name, session_name, expires_at, account
            )
        self.emulator.add_key(
            key_id,
            secret,
            target_account,
            security_token=token,
            principal=f"assumed-role/{role.name}/{session_name}",
        )
        return {
            "Credentials": {
                "AccessKeyId": key_id,
                "AccessKeySecret": secret,
                "SecurityToken": token,
                "Expiration": expiration_text(expires_at),
            },
            "AssumedRoleUser": {
                "Arn": f"acs:ram::{target_account}:role/{role.name.lower()}/{session_name}",
                "AssumedRoleId": f"{role.role_id}:{session_name}",
            },
        }

    # --- the route that rejects expired keys before the RPC door ----------------------------

    def reject_expired(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | str | None
    ) -> Reply | None:
        if not self.issued:
            return None
        params = Emulator._params(url, headers, body)
        key_id = params.get("AccessKeyId")
        if key_id and self.expired(key_id):
            raise SecurityTokenExpired("Specified SecurityToken is expired.")
        return None


def _duration(text: str | None, maximum: int) -> int:
    if text is None or text == "":
        return min(DEFAULT_DURATION_SECONDS, maximum)
    if not text.isdigit() or not MIN_DURATION_SECONDS <= int(text) <= maximum:
        raise InvalidParameter(
            "DurationSeconds",
            f"The Min/Max value of DurationSeconds is {MIN_DURATION_SECONDS}/{maximum} seconds.",
        )
    return int(text)


def install(emulator: Emulator, *, clock: Callable[[], float] = time.time) -> StsBackend:
    """Serve STS AssumeRole from ``emulator`` and reject its expired keys."""
    backend = StsBackend(emulator, clock=clock)
    emulator.services.setdefault(STS_VERSION, {})["AssumeRole"] = backend.assume_role
    emulator.routes.append(backend.reject_expired)
    return backend


__all__ = [
    "STS_VERSION",
    "EntityNotExistRole",
    "IssuedKey",
    "Role",
    "SecurityTokenExpired",
    "StsBackend",
    "install",
    "role_arn",
]
