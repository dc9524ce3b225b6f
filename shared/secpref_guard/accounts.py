"""Which accounts the guard enforces, and how it gets into each of them.

Targets (``GUARD_TARGETS``): ``self`` (the account the guard runs in), an explicit list of
account ids, or ``resource-directory``: every member of the resource directory, listed with
Resource Manager ``ListAccounts`` (2020-03-31) page by page, keeping only members in a usable
state. ``GUARD_EXCLUDE_ACCOUNTS`` are never touched. Every account left out is reported with the
reason, never dropped silently.

Access: in a member account the guard assumes a role (``GUARD_MEMBER_ROLE``, by default
ResourceDirectoryAccountAccessRole) with STS ``AssumeRole`` (2015-04-01) under the session name
``secpref-guard``, so ActionTrail records its writes as
``acs:ram::<member>:assumed-role/<role>/secpref-guard`` and the audit handler can recognise its
own events (``is_guard_session``). The temporary credentials are cached per account and renewed
a margin before they expire; the clock is injectable. The account the guard runs in is
enforced with the guard's own credentials (no role to assume there).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from .client import ApiError, CallLog, RpcClient
from .config import Settings
from .credentials import Credentials
from .logs import event

STS_VERSION = "2015-04-01"
RESOURCEMANAGER_VERSION = "2020-03-31"
ROLE_SESSION_NAME = "secpref-guard"
DEFAULT_DURATION_SECONDS = 3600  # AssumeRole's default; the role's MaxSessionDuration caps it
DEFAULT_REFRESH_MARGIN = timedelta(minutes=5)
LIST_PAGE_SIZE = 100  # ListAccounts' maximum
MAX_PAGES = 1000  # a directory of 100,000 members; past that the listing is not trusted
PAGE_CONCURRENCY = 8  # pages read at once once the first page told the total

# Member states in which the account exists in the directory and its access role can be
# assumed: created, invited (joined), and promoted or mid-promotion (a resource account being
# upgraded to a cloud account stays a member whatever the upgrade's outcome). Not usable:
# CreateVerifying / CreateFailed / CreateExpired / CreateCancelled (the account does not exist
# yet or never will) and Removed. An unknown state is not usable either (reported, not guessed).
USABLE_STATUSES = frozenset(
    {
        "CreateSuccess",
        "InviteSuccess",
        "PromoteSuccess",
        "PromoteVerifying",
        "PromoteFailed",
        "PromoteExpired",
        "PromoteCancelled",
    }
)

TargetKind = Literal["self", "list", "resource-directory"]


# --- targets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberAccount:
    """One member of the resource directory, as ListAccounts returns it."""

    account_id: str
    display_name: str = ""
    status: str = ""
    type: str = ""

    @property
    def usable(self) -> bool:
        return self.status in USABLE_STATUSES


@dataclass(frozen=True)
class Skipped:
    account: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"account": self.account, "reason": self.reason}


@dataclass(frozen=True)
class Targets:
    """The accounts to enforce, in order, and those left out with the reason."""

    kind: TargetKind
    accounts: tuple[str, ...]
    skipped: tuple[Skipped, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "accounts": len(self.accounts),
            "skipped": [s.as_dict() for s in self.skipped],
        }


class ResourceManagerClient:
    """Resource Manager ListAccounts of the directory the guard's account manages."""

    def __init__(self, endpoint: str, credentials: Credentials, **kwargs: Any) -> None:
        self.rpc = RpcClient(endpoint, RESOURCEMANAGER_VERSION, credentials, **kwargs)

    @property
    def log(self) -> CallLog:
        return self.rpc.log

    def list_accounts(
        self, page_size: int = LIST_PAGE_SIZE, concurrency: int = PAGE_CONCURRENCY
    ) -> list[MemberAccount]:
        """Every member. The first page tells TotalCount: the other pages are then read at
        once (``concurrency`` at a time); without a TotalCount, one after another until a page
        comes back short."""
        members: dict[str, MemberAccount] = {}

        def page(number: int) -> tuple[list[MemberAccount], Any]:
            document = self.rpc.call(
                "ListAccounts", {"PageNumber": str(number), "PageSize": str(page_size)}
            )
            return _parse_accounts(document), document.get("TotalCount")

        def keep(items: list[MemberAccount]) -> None:
            for member in items:
                # A member that joins during the listing shifts later pages: keep the first.
                members.setdefault(member.account_id, member)

        first, total = page(1)
        keep(first)
        if len(first) < page_size:
            return list(members.values())
        if isinstance(total, int) and not isinstance(total, bool):
            pages = -(-total // page_size)
            if pages > MAX_PAGES:
                raise ApiError(
                    "ListAccounts",
                    "InvalidResponse",
                    f"{total} members need more than {MAX_PAGES} pages of {page_size}",
                )
            numbers = range(2, pages + 1)
            with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(numbers)))) as pool:
                for items, _ in pool.map(page, numbers):  # in page order
                    keep(items)
            if len(members) < total:
                # The directory changed while the pages were read (a member removed shifts
                # the later pages, so one can fall between two): read it once more, one page
                # after another, and keep every member either listing saw.
                for number in range(1, pages + 2):
                    items, _ = page(number)
                    keep(items)
                    if len(items) < page_size:
                        break
                if len(members) < total:
                    event(
                        logging.WARNING,
                        "resource directory listing incomplete",
                        listed=len(members),
                        total_count=total,
                    )
            return list(members.values())
        for number in range(2, MAX_PAGES + 1):
            items, _ = page(number)
            keep(items)
            if len(items) < page_size:
                return list(members.values())
        raise ApiError(
            "ListAccounts",
            "InvalidResponse",
            f"the listing did not end after {MAX_PAGES} pages of {page_size}",
        )


def _parse_accounts(document: Mapping[str, Any]) -> list[MemberAccount]:
    container = document.get("Accounts")
    items = container.get("Account") if isinstance(container, Mapping) else None
    if isinstance(items, Mapping):  # one member rendered as an object, not a list
        items = [items]
    if not isinstance(items, list):
        raise ApiError(
            "ListAccounts",
            "InvalidResponse",
            "the response has no Accounts.Account",
            request_id=document.get("RequestId"),
        )
    members = []
    for item in items:
        account_id = str(item.get("AccountId", "")) if isinstance(item, Mapping) else ""
        if not account_id.isdigit():
            raise ApiError(
                "ListAccounts",
                "InvalidResponse",
                f"a member has no valid AccountId: {account_id!r}",
                request_id=document.get("RequestId"),
            )
        members.append(
            MemberAccount(
                account_id,
                str(item.get("DisplayName") or ""),
                str(item.get("Status") or ""),
                str(item.get("Type") or ""),
            )
        )
    return members


def resolve_targets(
    settings: Settings,
    *,
    own_account: str | None = None,
    list_members: Callable[[], list[MemberAccount]] | None = None,
) -> Targets:
    """The accounts GUARD_TARGETS names, less GUARD_EXCLUDE_ACCOUNTS and unusable members.

    ``list_members`` lists the directory (``ResourceManagerClient.list_accounts``); it is
    called only for ``resource-directory`` and its ApiError propagates: without the listing
    there is no run to speak of.
    """
    skipped: list[Skipped] = []
    candidates: list[str]
    kind: TargetKind
    if settings.targets == "self":
        kind, candidates = "self", [own_account or "self"]
    elif settings.targets == "resource-directory":
        if list_members is None:
            raise ValueError("GUARD_TARGETS is resource-directory but no member listing is given")
        kind, candidates = "resource-directory", []
        for member in list_members():
            if member.usable:
                candidates.append(member.account_id)
            else:
                skipped.append(
                    Skipped(
                        member.account_id,
                        f"member status {member.status or 'unknown'} is not a usable state",
                    )
                )
    else:
        kind, candidates = "list", settings.targets.split(",")
    accounts: list[str] = []
    for account in candidates:
        if account in accounts:
            continue
        if account in settings.exclude_accounts:
            skipped.append(Skipped(account, "listed in GUARD_EXCLUDE_ACCOUNTS"))
        else:
            accounts.append(account)
    return Targets(kind, tuple(accounts), tuple(skipped))


def account_in_scope(
    settings: Settings, account: str, own_account: str | None = None
) -> str | None:
    """Why an audit event's account is not the guard's to enforce, or None when it is.

    For ``resource-directory`` every account not excluded is in scope: membership is proved by
    assuming the member role, which fails for an account outside the directory.
    """
    if account in settings.exclude_accounts:
        return f"account {account} is listed in GUARD_EXCLUDE_ACCOUNTS"
    if settings.targets == "self":
        if own_account and account != own_account:
            return f"the event is for account {account}; this guard enforces {own_account}"
        return None
    if settings.targets == "resource-directory":
        return None
    if account not in settings.targets.split(","):
        return f"account {account} is not in GUARD_TARGETS"
    return None


# --- access ---------------------------------------------------------------------------------


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


class AccessError(Exception):
    """The guard could not get into a member account (the AssumeRole failed)."""

    def __init__(self, account: str, role_arn: str, cause: ApiError) -> None:
        self.account = account
        self.role_arn = role_arn
        self.cause = cause
        super().__init__(f"cannot assume {role_arn}: {cause}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": "AccessError",
            "stage": "assume-role",
            "role_arn": self.role_arn,
            **self.cause.as_dict(),
        }


class StsClient:
    """STS AssumeRole with the guard's own credentials."""

    def __init__(self, endpoint: str, credentials: Credentials, **kwargs: Any) -> None:
        self.rpc = RpcClient(endpoint, STS_VERSION, credentials, **kwargs)

    @property
    def log(self) -> CallLog:
        return self.rpc.log

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
