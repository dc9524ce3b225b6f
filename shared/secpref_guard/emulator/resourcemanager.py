"""Emulated Resource Manager (2020-03-31): ListAccounts and GetAccount of a resource directory.

The answer has the real shape: ``Accounts.Account[]`` (AccountId, DisplayName, Type, Status,
JoinMethod, JoinTime, ModifyTime, FolderId, ResourceDirectoryId, ResourceDirectoryPath),
``TotalCount``, ``PageNumber``, ``PageSize``. ``PageNumber`` starts at 1 (default 1),
``PageSize`` is 1..100 (default 10); a page past the end is empty. Only the directory's
management account may list its members. ``GetAccount`` answers ``{"Account": {...}}`` for a
member and 404 ``EntityNotExists.Account`` for any other account. ``page_cap`` makes the service
return shorter pages than asked for (as list APIs may), to prove the guard pages by TotalCount.

Member ``Status`` values (the official SDK's documentation of the member object):
CreateSuccess, CreateVerifying, CreateFailed, CreateExpired, CreateCancelled, PromoteVerifying,
PromoteFailed, PromoteExpired, PromoteCancelled, PromoteSuccess, InviteSuccess, Removed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from .exceptions import EmulatedError, InvalidParameter, MissingParameter, NoPermission
from .models import DEFAULT_ACCOUNT
from .responses import Emulator

RESOURCEMANAGER_VERSION = "2020-03-31"
MEMBER_STATUSES = frozenset(
    {
        "CreateSuccess",
        "CreateVerifying",
        "CreateFailed",
        "CreateExpired",
        "CreateCancelled",
        "PromoteVerifying",
        "PromoteFailed",
        "PromoteExpired",
        "PromoteCancelled",
        "PromoteSuccess",
        "InviteSuccess",
        "Removed",
    }
)
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)


@dataclass
class Member:
    account_id: str
    display_name: str
    status: str = "CreateSuccess"
    type: str = "ResourceAccount"  # or CloudAccount
    join_method: str = "created"  # or invited
    folder_id: str = "fd-root"
    join_time: datetime = _EPOCH

    def render(self, directory_id: str) -> dict[str, Any]:
        stamp = self.join_time.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return {
            "AccountId": self.account_id,
            "DisplayName": self.display_name,
            "Type": self.type,
            "Status": self.status,
            "JoinMethod": self.join_method,
            "JoinTime": stamp,
            "ModifyTime": stamp,
            "FolderId": self.folder_id,
            "ResourceDirectoryId": directory_id,
            "ResourceDirectoryPath": f"{directory_id}/r-root/{self.account_id}",
        }


@dataclass
class ResourceDirectoryBackend:
    """One resource directory: its management account and its members, in joining order."""

    emulator: Emulator
    management_account: str
    directory_id: str = "rd-emulated"
    members: dict[str, Member] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    page_cap: int | None = None  # the service's own page size when smaller than asked
    calls: dict[str, int] = field(default_factory=dict)  # action -> calls served

    def add_member(
        self,
        account_id: str,
        *,
        display_name: str | None = None,
        status: str = "CreateSuccess",
        type: str = "ResourceAccount",
        join_method: str = "created",
    ) -> Member:
        if status not in MEMBER_STATUSES:
            raise ValueError(f"unknown member status {status!r}; known: {sorted(MEMBER_STATUSES)}")
        with self.lock:
            member = Member(
                account_id,
                display_name or f"member-{account_id[-4:]}",
                status,
                type,
                join_method,
                join_time=_EPOCH + timedelta(minutes=len(self.members)),
            )
            self.members[account_id] = member
        return member

    def remove_member(self, account_id: str) -> None:
        """The account leaves the directory (later members move up one place in the list)."""
        with self.lock:
            del self.members[account_id]

    def set_status(self, account_id: str, status: str) -> None:
        if status not in MEMBER_STATUSES:
            raise ValueError(f"unknown member status {status!r}")
        with self.lock:
            self.members[account_id].status = status

    def list_accounts(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        """ListAccounts, called by a RAM identity of ``account``."""
        self._served("ListAccounts", account)
        page_number = _integer(params, "PageNumber", 1, 1, 10**9)
        page_size = _integer(params, "PageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        page_size = min(page_size, self.page_cap or page_size)  # the size the service uses
        with self.lock:
            members = list(self.members.values())
        start = (page_number - 1) * page_size
        page = members[start : start + page_size]
        return {
            "Accounts": {"Account": [m.render(self.directory_id) for m in page]},
            "TotalCount": len(members),
            "PageNumber": page_number,
            "PageSize": page_size,
        }

    def get_account(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        """GetAccount, called by a RAM identity of ``account``: one member, or 404."""
        self._served("GetAccount", account)
        wanted = params.get("AccountId")
        if not wanted:
            raise MissingParameter("AccountId is mandatory for this action.")
        with self.lock:
            member = self.members.get(wanted)
        if member is None:
            raise EmulatedError(
                "This resource directory account does not exist.",
                code="EntityNotExists.Account",
                status=404,
            )
        return {"Account": member.render(self.directory_id)}

    def _served(self, action: str, account: str) -> None:
        self.emulator.ims._raise_fault(action, account)  # faults are injected there
        if account != self.management_account:
            raise NoPermission(
                "Only the management account of the resource directory can read its members."
            )
        with self.lock:
            self.calls[action] = self.calls.get(action, 0) + 1


def _integer(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise InvalidParameter(name, f"expected an integer from {low} to {high}, got {text!r}")
    return int(text)


def install(emulator: Emulator, management_account: str) -> ResourceDirectoryBackend:
    """Serve Resource Manager ListAccounts and GetAccount from ``emulator`` for the directory
    of this management account."""
    backend = ResourceDirectoryBackend(emulator, management_account)
    emulator.services[RESOURCEMANAGER_VERSION] = {
        "ListAccounts": backend.list_accounts,
        "GetAccount": backend.get_account,
    }
    return backend


# --- a whole organisation, for tests, the benchmark and demos -------------------------------

MEMBER_ROLE = "ResourceDirectoryAccountAccessRole"
GUARD_KEY_ID = "STS.guard-function-role"
GUARD_KEY_SECRET = "guard-function-role-secret"  # noqa: S105 - the emulator's test key
GUARD_TOKEN = "CAIS-guard-function-role/token+="  # noqa: S105 - the emulator's test token


@dataclass
class Organisation:
    """An emulator holding a resource directory: the management account, where the guard runs
    with its function role's temporary key, and members that each have the access role."""

    emulator: Emulator
    directory: ResourceDirectoryBackend
    sts: Any  # sts.StsBackend
    fc: Any  # fc.FcBackend
    management_account: str
    members: list[str]
    guard_key: tuple[str, str, str]  # access key id, secret, security token


def organisation(
    members: int | Sequence[str] = 3,
    *,
    management_account: str = DEFAULT_ACCOUNT,
    member_role: str = MEMBER_ROLE,
    clock: Callable[[], float] = time.time,
    include_management: bool = True,
    fc_workers: int = 8,
    **emulator_kwargs: Any,
) -> Organisation:
    """A management account and ``members`` member accounts (16-digit ids, or the ids given),
    each member with ``member_role`` trusted by the management account. STS, Resource Manager
    and the Function Compute invoke API are installed on the emulator."""
    from . import fc, sts  # late: they import this package's responses module too

    emulator = Emulator(**emulator_kwargs)
    emulator.add_key(
        GUARD_KEY_ID,
        GUARD_KEY_SECRET,
        management_account,
        security_token=GUARD_TOKEN,
        principal="assumed-role/secpref-guard-role/fc",
    )
    sts_backend = sts.install(emulator, clock=clock)
    fc_backend = fc.install(emulator, max_workers=fc_workers)
    directory = install(emulator, management_account)
    ids = (
        [str(1_000_000_000_000_000 + i) for i in range(1, members + 1)]
        if isinstance(members, int)
        else list(members)
    )
    if include_management:
        directory.add_member(
            management_account,
            display_name="management",
            type="CloudAccount",
            join_method="created",
        )
    for account in ids:
        directory.add_member(account)
        sts_backend.add_role(account, member_role, trusted_accounts={management_account})
    return Organisation(
        emulator,
        directory,
        sts_backend,
        fc_backend,
        management_account,
        ids,
        (GUARD_KEY_ID, GUARD_KEY_SECRET, GUARD_TOKEN),
    )
