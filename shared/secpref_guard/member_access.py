"""How the guard gets into a member account: STS AssumeRole of the member-access role.

In a member account the guard assumes a role (``GUARD_MEMBER_ROLE``, by default
ResourceDirectoryAccountAccessRole) with STS ``AssumeRole`` (2015-04-01) under the session name
``secpref-guard``, so ActionTrail records its writes as
``acs:ram::<member>:assumed-role/<role>/secpref-guard`` and the audit mode can recognise its
own events (``is_guard_session``). The temporary credentials are cached per account and renewed
a margin before they expire; the clock is injectable. The account the guard runs in is
enforced with the guard's own credentials (no role to assume there). Whether an account may be
entered at all is decided before, by scope.py: nothing here checks scope.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from .client import ApiError, RpcService
from .config import Settings
from .credentials import Credentials
from .errors import GuardError

STS_VERSION = "2015-04-01"
ROLE_SESSION_NAME = "secpref-guard"
DEFAULT_DURATION_SECONDS = 3600  # AssumeRole's default; the role's MaxSessionDuration caps it
DEFAULT_REFRESH_MARGIN = timedelta(minutes=5)


def role_arn(account: str, role_name: str) -> str:
    """``acs:ram::<account>:role/<role>``, the role name in lower case as RAM shows ARNs."""
    return f"acs:ram::{account}:role/{role_name.lower()}"


def is_guard_session(
    arn: str | None, member_role: str, session_name: str = ROLE_SESSION_NAME
) -> bool:
    """Whether an ActionTrail identity is the guard's own session in a member account:
    ``acs:ram::<id>:assumed-role/<member role>/secpref-guard``. Both parts must match: anyone
    may name a session ``secpref-guard``, and a member's admin may create a role of any name,
    but only the guard assumes the member-access role with that session name. (A principal
    id, ``<role id>:<session>``, does not name the role, so it proves nothing.)"""
    if not arn or ":assumed-role/" not in arn:
        return False
    role, _, session = arn.split(":assumed-role/", 1)[1].partition("/")
    return role.lower() == member_role.lower() and session == session_name


@dataclass(frozen=True)
class TemporaryCredentials:
    credentials: Credentials
    expiration: datetime  # UTC
    role_arn: str
    assumed_role_arn: str = ""


class AccessError(GuardError):
    """The guard could not get into a member account (the AssumeRole failed)."""

    def __init__(self, account: str, role_arn: str, cause: ApiError) -> None:
        self.account = account
        self.role_arn = role_arn
        self.cause = cause
        self.code = cause.code
        super().__init__(f"cannot assume {role_arn}: {cause}")

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.cause.as_dict(),
            "type": "AccessError",
            "stage": "assume-role",
            "role_arn": self.role_arn,
        }


class StsClient(RpcService):
    """STS AssumeRole with the guard's own credentials."""

    VERSION = STS_VERSION

    def get_caller_identity(self) -> str:
        """The account id of the credentials' owner (STS GetCallerIdentity)."""
        document = self.rpc.call("GetCallerIdentity")
        account = document.get("AccountId")
        if not isinstance(account, (str, int)) or not str(account).isdigit():
            raise ApiError(
                "GetCallerIdentity",
                "InvalidResponse",
                "the response has no AccountId",
                request_id=document.get("RequestId"),
            )
        return str(account)

    def assume_role(
        self,
        arn: str,
        *,
        session_name: str = ROLE_SESSION_NAME,
        duration_seconds: int = DEFAULT_DURATION_SECONDS,
    ) -> TemporaryCredentials:
        document = self.rpc.call(
            "AssumeRole",
            {
                "RoleArn": arn,
                "RoleSessionName": session_name,
                "DurationSeconds": str(duration_seconds),
            },
        )
        creds = document.get("Credentials")
        request_id = document.get("RequestId")
        if not isinstance(creds, Mapping):
            raise ApiError(
                "AssumeRole",
                "InvalidResponse",
                "the response has no Credentials",
                request_id=request_id,
            )
        try:
            key_id = str(creds["AccessKeyId"])
            secret = str(creds["AccessKeySecret"])
            token = str(creds["SecurityToken"])
            expiration = parse_expiration(str(creds["Expiration"]))
        except (KeyError, ValueError) as exc:
            raise ApiError(
                "AssumeRole",
                "InvalidResponse",
                f"the Credentials are incomplete or malformed ({exc})",
                request_id=request_id,
            ) from None
        user = document.get("AssumedRoleUser")
        assumed = str(user.get("Arn", "")) if isinstance(user, Mapping) else ""
        return TemporaryCredentials(
            Credentials(key_id, secret, token, source=f"assumed role {arn}"),
            expiration,
            arn,
            assumed,
        )


def parse_expiration(text: str) -> datetime:
    """STS's ``2015-04-09T11:52:19Z`` (UTC), with or without fractions of a second."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    current: TemporaryCredentials | None = None


class MemberCredentials:
    """Credentials for each target account, assumed on first use and cached until
    ``refresh_margin`` before they expire; safe to share between threads (one AssumeRole per
    account at a time, different accounts in parallel)."""

    def __init__(
        self,
        sts_endpoint: str,
        base: Credentials,
        role_name: str,
        *,
        own_account: str | None = None,
        session_name: str = ROLE_SESSION_NAME,
        duration_seconds: int = DEFAULT_DURATION_SECONDS,
        refresh_margin: timedelta = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], datetime] = utc_now,
        **client_kwargs: Any,
    ) -> None:
        if refresh_margin >= timedelta(seconds=duration_seconds):
            raise ValueError("refresh_margin must be shorter than the session duration")
        self.sts_endpoint = sts_endpoint
        self.base = base
        self.role_name = role_name
        self.own_account = own_account
        self.session_name = session_name
        self.duration_seconds = duration_seconds
        self.refresh_margin = refresh_margin
        self.clock = clock
        self.client_kwargs = client_kwargs
        self.assume_calls = 0  # AssumeRole calls made, successful or not
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # one STS client per thread: its CallLog is not shared

    @classmethod
    def from_settings(
        cls, settings: Settings, base: Credentials, **kwargs: Any
    ) -> MemberCredentials:
        return cls(settings.sts_endpoint, base, settings.member_role, **kwargs)

    def role_arn(self, account: str) -> str:
        return role_arn(account, self.role_name)

    def is_own(self, account: str) -> bool:
        return account == "self" or (self.own_account is not None and account == self.own_account)

    def for_account(self, account: str) -> Credentials:
        """The credentials to enforce ``account`` with: the guard's own in its own account,
        else the member role's, assumed now or taken from the cache. AccessError on failure."""
        return self.lookup(account)[0]

    def lookup(self, account: str) -> tuple[Credentials, bool]:
        """As ``for_account``, and whether an AssumeRole call was made for it just now."""
        if self.is_own(account):
            return self.base, False
        with self._lock:
            entry = self._entries.setdefault(account, _Entry())
        with entry.lock:
            current = entry.current
            if current is not None and self.clock() < current.expiration - self.refresh_margin:
                return current.credentials, False
            entry.current = None
            arn = self.role_arn(account)
            with self._lock:
                self.assume_calls += 1
            try:
                entry.current = self._sts().assume_role(
                    arn, session_name=self.session_name, duration_seconds=self.duration_seconds
                )
            except ApiError as exc:
                raise AccessError(account, arn, exc) from None
            return entry.current.credentials, True

    def key_ids(self) -> frozenset[str]:
        """The AccessKeyIds of the member sessions held now: how the guard knows its own
        writes in an audit trail."""
        with self._lock:
            entries = list(self._entries.values())
        return frozenset(
            e.current.credentials.access_key_id for e in entries if e.current is not None
        )

    def cached(self, account: str) -> TemporaryCredentials | None:
        entry = self._entries.get(account)
        return entry.current if entry else None

    def forget(self, account: str | None = None) -> None:
        """Drop the cached credentials of one account (all when None), e.g. after a call was
        refused for an expired or invalid token."""
        with self._lock:
            for key in [account] if account is not None else list(self._entries):
                entry = self._entries.get(key)
                if entry is not None:
                    entry.current = None

    def _sts(self) -> StsClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = StsClient(self.sts_endpoint, self.base, **self.client_kwargs)
            self._local.client = client
        return client
