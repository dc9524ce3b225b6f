"""Who is a member of the resource directory: ListAccounts paged until TotalCount (a listing
that ends short is an error, never a silent success), GetAccount for one account, and the
per-instance Directory whose cost is bounded by the directory's size, whatever ids it is asked
about."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conftest import ENDPOINT
from org_support import NO_SLEEP, Clock
from secpref_guard.client import ApiError
from secpref_guard.credentials import Credentials
from secpref_guard.directory import (
    RESOURCEMANAGER_VERSION,
    Directory,
    ResourceManagerClient,
)
from secpref_guard.emulator import mock_endpoint
from secpref_guard.emulator.resourcemanager import Organisation, organisation


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def org(clock: Clock) -> Iterator[Organisation]:
    o = organisation(4, clock=clock.time)
    with mock_endpoint(o.emulator, ENDPOINT):
        yield o


# --- the listing --------------------------------------------------------------------------------


def test_the_resource_directory_is_listed_page_by_page(clock: Clock) -> None:
    o = organisation(250, clock=clock.time)
    with mock_endpoint(o.emulator, ENDPOINT):
        client = ResourceManagerClient(ENDPOINT, Credentials(*o.guard_key), retry=NO_SLEEP)
        members = client.list_accounts()
        small_pages = client.list_accounts(page_size=7)

    assert [m.account_id for m in members] == [o.management_account, *o.members]
    assert [m.account_id for m in small_pages] == [m.account_id for m in members]
    pages = [c.params for c in o.emulator.ims.calls_of("ListAccounts")]
    # the first page tells TotalCount; the others are then read at once, in any order
    assert pages[0] == {"PageNumber": "1", "PageSize": "100"}
    assert sorted(int(p["PageNumber"]) for p in pages[:3]) == [1, 2, 3]
    assert len(pages) == 3 + 36  # 251 members: 3 pages of 100, then 36 pages of 7
    assert sorted(int(p["PageNumber"]) for p in pages[3:]) == list(range(1, 37))


def test_without_a_total_count_pages_are_read_until_one_comes_back_empty(clock: Clock) -> None:
    o = organisation(205, clock=clock.time)
    actions = o.emulator.services[RESOURCEMANAGER_VERSION]
    list_accounts = actions["ListAccounts"]

    def without_total(account: str, params: Any) -> dict[str, Any]:
        document = list_accounts(account, params)
        document.pop("TotalCount", None)
        return document

    actions["ListAccounts"] = without_total
    with mock_endpoint(o.emulator, ENDPOINT):
        client = ResourceManagerClient(ENDPOINT, Credentials(*o.guard_key), retry=NO_SLEEP)
        members = client.list_accounts()

    assert len(members) == 206
    pages = [c.params["PageNumber"] for c in o.emulator.ims.calls_of("ListAccounts")]
    # in order, until an empty page: a short page is no proof of the end
    assert pages == ["1", "2", "3", "4"]


def test_a_throttled_listing_is_retried_and_a_refused_one_raises(org: Organisation) -> None:
    client = ResourceManagerClient(ENDPOINT, Credentials(*org.guard_key), retry=NO_SLEEP)
    org.emulator.ims.inject_fault("Throttling.User", 400, action="ListAccounts", times=2)
    assert len(client.list_accounts()) == 5

    org.emulator.ims.inject_fault("NoPermission", 403, action="ListAccounts", times=1)
    with pytest.raises(ApiError) as raised:
        client.list_accounts()
    assert raised.value.code == "NoPermission"


def test_a_member_removed_during_the_listing_does_not_hide_another(clock: Clock) -> None:
    """Pages are read by offset: a removal after page 1 shifts page 2 by one member."""
    o = organisation(205, clock=clock.time)
    actions = o.emulator.services[RESOURCEMANAGER_VERSION]
    list_accounts = actions["ListAccounts"]
    removed = o.members[10]
    calls = 0

    def removing_after_page_one(account: str, params: Any) -> dict[str, Any]:
        nonlocal calls
        document = list_accounts(account, params)
        calls += 1
        if calls == 1:
            o.directory.remove_member(removed)
        return document

    actions["ListAccounts"] = removing_after_page_one
    with mock_endpoint(o.emulator, ENDPOINT):
        client = ResourceManagerClient(ENDPOINT, Credentials(*o.guard_key), retry=NO_SLEEP)
        listed = {m.account_id for m in client.list_accounts()}

    assert listed >= {o.management_account, *o.members} - {removed}


def test_a_short_page_before_the_total_is_not_the_end(clock: Clock) -> None:
    """The service may return fewer members than asked for: paging goes on by TotalCount."""
    o = organisation(250, clock=clock.time)
    o.directory.page_cap = 30
    with mock_endpoint(o.emulator, ENDPOINT):
        client = ResourceManagerClient(ENDPOINT, Credentials(*o.guard_key), retry=NO_SLEEP)
        members = client.list_accounts()

    assert [m.account_id for m in members] == [o.management_account, *o.members]
    assert o.directory.calls["ListAccounts"] == 9  # 251 members in pages of 30


def test_a_listing_that_ends_short_of_its_total_count_is_an_error(clock: Clock) -> None:
    o = organisation(120, clock=clock.time)
    actions = o.emulator.services[RESOURCEMANAGER_VERSION]
    list_accounts = actions["ListAccounts"]

    def overstated(account: str, params: Any) -> dict[str, Any]:
        document = list_accounts(account, params)
        document["TotalCount"] += 5  # members the pages never show
        return document

    actions["ListAccounts"] = overstated
    with mock_endpoint(o.emulator, ENDPOINT):
        client = ResourceManagerClient(ENDPOINT, Credentials(*o.guard_key), retry=NO_SLEEP)
        with pytest.raises(ApiError) as raised:
            client.list_accounts()

    assert raised.value.code == "IncompleteListing"
    assert "listed 121 of the 126 members" in str(raised.value)


def test_get_account_answers_for_a_member_and_none_for_anyone_else(org: Organisation) -> None:
    client = ResourceManagerClient(ENDPOINT, Credentials(*org.guard_key), retry=NO_SLEEP)
    org.directory.set_status(org.members[1], "CreateFailed")

    member = client.get_account(org.members[0])
    unusable = client.get_account(org.members[1])

    assert member is not None
    assert (member.account_id, member.usable) == (org.members[0], True)
    assert unusable is not None
    assert not unusable.usable
    assert client.get_account("1999999999999999") is None
    org.directory.remove_member(org.members[2])
    assert client.get_account(org.members[2]) is None
    assert [c.params["AccountId"] for c in org.emulator.ims.calls_of("GetAccount")] == [
        org.members[0],
        org.members[1],
        "1999999999999999",
        org.members[2],
    ]


def directory(o: Organisation, clock: Clock) -> Directory:
    base = Credentials(*o.guard_key)
    return Directory(
        lambda: ResourceManagerClient(ENDPOINT, base, retry=NO_SLEEP), clock=clock.time
    )


def test_a_lookup_costs_at_most_one_listing_whatever_it_is_asked(
    org: Organisation, clock: Clock
) -> None:
    view = directory(org, clock)
    unknown = [str(2_000_000_000_000_000 + i) for i in range(5000)]

    answers = view.lookup([*unknown, org.members[0]])

    assert answers[org.members[0]] is not None
    assert all(answers[a] is None for a in unknown)
    assert org.directory.calls == {"ListAccounts": 1}
    assert view.calls == 1
    # within the time to live the listing answers again, for nothing
    assert view.lookup(unknown[:3])[unknown[0]] is None
    assert view.members()[org.members[1]].usable
    assert org.directory.calls == {"ListAccounts": 1}
    clock.advance(seconds=61)  # stale: the directory is read afresh
    view.lookup(unknown)
    assert org.directory.calls == {"ListAccounts": 2}


def test_one_or_two_accounts_are_asked_with_get_account_and_remembered(
    org: Organisation, clock: Clock
) -> None:
    view = directory(org, clock)

    assert view.lookup([org.members[0]])[org.members[0]] is not None
    assert view.lookup(["1999999999999999", org.members[0]])["1999999999999999"] is None
    assert view.lookup([org.members[0], "1999999999999999"])[org.members[0]] is not None

    assert org.directory.calls == {"GetAccount": 2}
    assert view.calls == 2
    org.directory.remove_member(org.members[0])
    clock.advance(seconds=61)
    assert view.lookup([org.members[0]])[org.members[0]] is None  # it left: asked again
