"""Who is a member of the resource directory, and in which state (Resource Manager 2020-03-31).

``ListAccounts`` is read page by page until ``TotalCount`` members are seen (or a page comes
back empty); a listing that ends short of ``TotalCount`` is an error naming the shortfall,
never a silent success. ``GetAccount`` answers for one account. ``Directory`` is the per
instance view the scope decision asks: it lists the whole directory at most once per ``ttl``
and answers a question about one or two accounts with ``GetAccount``, so the cost of a lookup
is bounded by the size of the directory, never by the number of ids a caller sends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .client import ApiError, RpcService

RESOURCEMANAGER_VERSION = "2020-03-31"
LIST_PAGE_SIZE = 100  # ListAccounts' maximum
MAX_PAGES = 1000  # a directory of 100,000 members; past that the listing is not trusted
PAGE_CONCURRENCY = 8  # pages read at once once the first page told the total
LISTING_ATTEMPTS = 2  # a listing that comes up short is read once more before it is an error
DEFAULT_TTL_SECONDS = 60.0  # how long a listing or a GetAccount answer stands for an instance
SINGLE_LOOKUPS = 2  # up to this many unknown accounts are asked with GetAccount, not a listing
NOT_A_MEMBER_CODES = ("EntityNotExists.Account", "EntityNotExist.Account")

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


@dataclass(frozen=True)
class MemberAccount:
    """One member of the resource directory, as ListAccounts or GetAccount return it."""

    account_id: str
    display_name: str = ""
    status: str = ""
    type: str = ""

    @property
    def usable(self) -> bool:
        return self.status in USABLE_STATUSES


class ResourceManagerClient(RpcService):
    """ListAccounts and GetAccount of the directory the guard's account manages."""

    VERSION = RESOURCEMANAGER_VERSION

    def get_account(self, account_id: str) -> MemberAccount | None:
        """The member, or None when the account is not a member of the directory."""
        try:
            document = self.rpc.call("GetAccount", {"AccountId": account_id})
        except ApiError as exc:
            if exc.code in NOT_A_MEMBER_CODES:
                return None
            raise
        item = document.get("Account")
        if not isinstance(item, Mapping):
            raise ApiError(
                "GetAccount",
                "InvalidResponse",
                "the response has no Account",
                request_id=document.get("RequestId"),
            )
        member = _member(item, "GetAccount", document.get("RequestId"))
        return member if member.account_id == account_id else None

    def list_accounts(
        self, page_size: int = LIST_PAGE_SIZE, concurrency: int = PAGE_CONCURRENCY
    ) -> list[MemberAccount]:
        """Every member: pages until TotalCount members are seen; ApiError when they are not."""
        shortfall = ""
        for _ in range(LISTING_ATTEMPTS):
            members, total = self._listing(page_size, concurrency)
            if total is None or len(members) >= total:
                return list(members.values())
            # The directory changed while the pages were read (a member removed shifts the later
            # pages, so one can fall between two), or a page came back short: read it afresh.
            shortfall = f"listed {len(members)} of the {total} members its TotalCount reports"
        raise ApiError("ListAccounts", "IncompleteListing", f"the directory listing {shortfall}")

    def _listing(self, page_size: int, concurrency: int) -> tuple[dict[str, MemberAccount], Any]:
        members: dict[str, MemberAccount] = {}

        def page(number: int) -> tuple[list[MemberAccount], Any]:
            document = self.rpc.call(
                "ListAccounts", {"PageNumber": str(number), "PageSize": str(page_size)}
            )
            return _parse_accounts(document), document.get("TotalCount")

        def keep(items: Iterable[MemberAccount]) -> None:
            for member in items:  # a member that joins mid-listing shifts pages: keep the first
                members.setdefault(member.account_id, member)

        first, total = page(1)
        keep(first)
        if not isinstance(total, int) or isinstance(total, bool):
            total = None  # no TotalCount: read on until a page comes back empty
        number = 2
        last: list[MemberAccount]
        if total is not None and first and len(members) < total:
            # the pages the total needs at the size the service actually returned
            pages = -(-total // len(first))
            if pages > MAX_PAGES:
                raise ApiError(
                    "ListAccounts",
                    "InvalidResponse",
                    f"{total} members need more than {MAX_PAGES} pages of {len(first)}",
                )
            numbers = range(2, pages + 1)
            last = first
            if numbers:
                workers = max(1, min(concurrency, len(numbers)))
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    for last, _ in pool.map(page, numbers):  # in page order
                        keep(last)
            number = pages + 1
        else:
            last = first
        items = last
        # read on while the total is not reached, or while the last page read was as full as
        # asked: a TotalCount lower than the directory must not end the listing early
        while items and (total is None or len(members) < total or len(items) == page_size):
            if number > MAX_PAGES:
                raise ApiError(
                    "ListAccounts",
                    "InvalidResponse",
                    f"the listing did not end after {MAX_PAGES} pages",
                )
            items, _ = page(number)
            keep(items)
            number += 1
        return members, total


def _member(item: Mapping[str, Any], action: str, request_id: Any) -> MemberAccount:
    account_id = str(item.get("AccountId", ""))
    if not account_id.isdigit():
        raise ApiError(
            action,
            "InvalidResponse",
            f"a member has no valid AccountId: {account_id!r}",
            request_id=request_id,
        )
    return MemberAccount(
        account_id,
        str(item.get("DisplayName") or ""),
        str(item.get("Status") or ""),
        str(item.get("Type") or ""),
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
    request_id = document.get("RequestId")
    return [
        _member(item if isinstance(item, Mapping) else {}, "ListAccounts", request_id)
        for item in items
    ]


class Directory:
    """The directory's members as one instance sees them, at bounded cost.

    ``members()`` lists the whole directory, at most once per ``ttl``; ``lookup(ids)`` answers
    from a fresh listing, asks GetAccount for up to ``SINGLE_LOOKUPS`` ids, and lists the whole
    directory for more. Either way its cost is at most one listing (the directory's size over
    the page size) or two GetAccount calls, whatever ids a caller sends. Thread-safe.
    """

    def __init__(
        self,
        client: Callable[[], ResourceManagerClient],
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.ttl = ttl
        self.clock = clock
        self._listing: tuple[float, dict[str, MemberAccount]] | None = None
        self._single: dict[str, tuple[float, MemberAccount | None]] = {}
        self._lock = threading.Lock()
        self.calls = 0  # Resource Manager calls made, for the run report

    def members(self) -> dict[str, MemberAccount]:
        with self._lock:
            if self._listing is not None and self.clock() - self._listing[0] < self.ttl:
                return self._listing[1]
            client = self._client()
            before = client.log.calls
            try:
                listed = {m.account_id: m for m in client.list_accounts()}
            finally:
                self.calls += client.log.calls - before
            self._listing = (self.clock(), listed)
            return listed

    def lookup(self, accounts: Iterable[str]) -> dict[str, MemberAccount | None]:
        wanted = list(dict.fromkeys(accounts))
        now = self.clock()
        with self._lock:
            if self._listing is not None and now - self._listing[0] < self.ttl:
                listed = self._listing[1]
                return {a: listed.get(a) for a in wanted}
            known = {
                a: self._single[a][1]
                for a in wanted
                if a in self._single and now - self._single[a][0] < self.ttl
            }
        unknown = [a for a in wanted if a not in known]
        if len(unknown) > SINGLE_LOOKUPS:
            listed = self.members()
            return {a: listed.get(a) for a in wanted}
        if unknown:
            client = self._client()
            for account in unknown:
                before = client.log.calls
                try:
                    member = client.get_account(account)
                finally:
                    with self._lock:
                        self.calls += client.log.calls - before
                with self._lock:
                    self._single[account] = (self.clock(), member)
                known[account] = member
        return {a: known[a] for a in wanted}

    def forget(self) -> None:
        with self._lock:
            self._listing = None
            self._single.clear()
