"""Targets and access: which accounts the guard enforces, and the credentials it enforces them
with. Every call goes through aliyun-python-sdk-core to the multi-account emulator."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from conftest import ENDPOINT
from org_support import NO_SLEEP, Clock
from secpref_guard.accounts import (
    RESOURCEMANAGER_VERSION,
    USABLE_STATUSES,
    AccessError,
    MemberCredentials,
    ResourceManagerClient,
    account_in_scope,
    is_guard_session,
    resolve_targets,
    role_arn,
)
from secpref_guard.client import ApiError, ImsClient
from secpref_guard.config import Settings
from secpref_guard.credentials import Credentials
from secpref_guard.emulator import mock_endpoint
from secpref_guard.emulator.resourcemanager import MEMBER_STATUSES, Organisation, organisation


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def org(clock: Clock) -> Iterator[Organisation]:
    o = organisation(4, clock=clock.time)
    with mock_endpoint(o.emulator, ENDPOINT):
        yield o


def settings(**values: str) -> Settings:
    return Settings.model_validate(
        {"GUARD_STS_ENDPOINT": ENDPOINT, "GUARD_RESOURCEMANAGER_ENDPOINT": ENDPOINT, **values}
    )


def access(o: Organisation, clock: Clock, **kwargs: object) -> MemberCredentials:
    return MemberCredentials(
        ENDPOINT,
        Credentials(*o.guard_key),
        "ResourceDirectoryAccountAccessRole",
        own_account=o.management_account,
        clock=clock.now,
        retry=NO_SLEEP,
        **kwargs,
    )  # type: ignore[arg-type]


def assume_calls(o: Organisation) -> list[str]:
    return [c.params["RoleArn"] for c in o.emulator.ims.calls_of("AssumeRole")]


# --- targets --------------------------------------------------------------------------------


def test_self_is_the_account_the_guard_runs_in() -> None:
    targets = resolve_targets(settings(), own_account="1234567890123456")
    assert (targets.kind, targets.accounts, targets.skipped) == ("self", ("1234567890123456",), ())


def test_an_explicit_list_keeps_its_order_once_each_less_the_exclusions() -> None:
    targets = resolve_targets(
        settings(GUARD_TARGETS="300,100,300,200", GUARD_EXCLUDE_ACCOUNTS="100")
    )
    assert targets.kind == "list"
    assert targets.accounts == ("300", "200")
    assert [(s.account, s.reason) for s in targets.skipped] == [
        ("100", "listed in GUARD_EXCLUDE_ACCOUNTS")
    ]


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


def test_without_a_total_count_pages_are_read_until_one_comes_back_short(clock: Clock) -> None:
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
    assert pages == ["1", "2", "3"]  # in order; the third page (6 members) ends the listing


def test_members_not_in_a_usable_state_and_excluded_ones_are_skipped_with_the_reason(
    org: Organisation,
) -> None:
    first, second, third, fourth = org.members
    org.directory.set_status(first, "CreateFailed")
    org.directory.set_status(second, "Removed")
    org.directory.set_status(third, "InviteSuccess")
    client = ResourceManagerClient(ENDPOINT, Credentials(*org.guard_key), retry=NO_SLEEP)

    targets = resolve_targets(
        settings(GUARD_TARGETS="resource-directory", GUARD_EXCLUDE_ACCOUNTS=fourth),
        own_account=org.management_account,
        list_members=client.list_accounts,
    )

    assert targets.accounts == (org.management_account, third)
    assert [s.as_dict() for s in targets.skipped] == [
        {"account": first, "reason": "member status CreateFailed is not a usable state"},
        {"account": second, "reason": "member status Removed is not a usable state"},
        {"account": fourth, "reason": "listed in GUARD_EXCLUDE_ACCOUNTS"},
    ]
    assert USABLE_STATUSES < MEMBER_STATUSES


def test_a_throttled_listing_is_retried_and_a_refused_one_raises(org: Organisation) -> None:
    client = ResourceManagerClient(ENDPOINT, Credentials(*org.guard_key), retry=NO_SLEEP)
    org.emulator.ims.inject_fault("Throttling.User", 400, action="ListAccounts", times=2)
    assert len(client.list_accounts()) == 5

    org.emulator.ims.inject_fault("NoPermission", 403, action="ListAccounts", times=1)
    with pytest.raises(ApiError) as raised:
        resolve_targets(
            settings(GUARD_TARGETS="resource-directory"), list_members=client.list_accounts
        )
    assert raised.value.code == "NoPermission"


@pytest.mark.parametrize(
    ("values", "account", "in_scope"),
    [
        ({}, "1", True),
        ({}, "2", False),
        ({"GUARD_TARGETS": "resource-directory"}, "2", True),
        ({"GUARD_TARGETS": "resource-directory", "GUARD_EXCLUDE_ACCOUNTS": "2"}, "2", False),
        ({"GUARD_TARGETS": "2,3"}, "3", True),
        ({"GUARD_TARGETS": "2,3"}, "4", False),
    ],
)
def test_an_events_account_is_in_scope_only_when_the_targets_say_so(
    values: dict[str, str], account: str, in_scope: bool
) -> None:
    reason = account_in_scope(settings(**values), account, own_account="1")
    assert (reason is None) == in_scope


def test_the_guards_own_session_is_recognisable() -> None:
    role = "ResourceDirectoryAccountAccessRole"
    arn = "acs:ram::1000000000000001:assumed-role/resourcedirectoryaccountaccessrole/secpref-guard"
    assert is_guard_session(arn, role)
    assert not is_guard_session(arn.replace("/secpref-guard", "/alice"), role)
    assert not is_guard_session("acs:ram::1:user/secpref-guard", role)
    # the session name alone proves nothing: anyone can choose it, with any role
    assert not is_guard_session(
        "acs:ram::1000000000000001:assumed-role/any-admin-role/secpref-guard", role
    )
    assert not is_guard_session(None, role)
    assert role_arn("1", "ResourceDirectoryAccountAccessRole") == (
        "acs:ram::1:role/resourcedirectoryaccountaccessrole"
    )


# --- access ---------------------------------------------------------------------------------


def test_credentials_are_assumed_once_and_reused(org: Organisation, clock: Clock) -> None:
    cache = access(org, clock)
    member = org.members[0]

    first, assumed = cache.lookup(member)
    again, assumed_again = cache.lookup(member)

    assert (assumed, assumed_again) == (True, False)
    assert first is again
    assert assume_calls(org) == [role_arn(member, "ResourceDirectoryAccountAccessRole")]
    ImsClient(ENDPOINT, first, retry=NO_SLEEP).get_security_preference()
    assert org.emulator.ims.calls_of("GetSecurityPreference")[-1].account == member


def test_the_guards_own_account_needs_no_role(org: Organisation, clock: Clock) -> None:
    cache = access(org, clock)
    assert cache.for_account(org.management_account) is cache.base
    assert cache.for_account("self") is cache.base
    assert assume_calls(org) == []


def test_credentials_are_renewed_shortly_before_they_expire(
    org: Organisation, clock: Clock
) -> None:
    cache = access(org, clock, duration_seconds=900, refresh_margin=timedelta(minutes=5))
    member = org.members[0]
    first = cache.for_account(member)
    expiration = cache.cached(member).expiration  # type: ignore[union-attr]
    assert expiration == clock.now() + timedelta(seconds=900)

    clock.advance(minutes=9, seconds=59)  # 5 min 1 s left: still good
    assert cache.for_account(member) is first
    clock.advance(seconds=1)  # 5 min left: renewed
    second = cache.for_account(member)

    assert second.access_key_id != first.access_key_id
    assert len(assume_calls(org)) == 2
    clock.advance(minutes=6)  # the first key has expired; the second has not
    ImsClient(ENDPOINT, second, retry=NO_SLEEP).get_security_preference()
    with pytest.raises(ApiError, match=r"InvalidSecurityToken\.Expired"):
        ImsClient(ENDPOINT, first, retry=NO_SLEEP).get_security_preference()


def test_a_role_that_cannot_be_assumed_is_an_access_error_and_is_not_cached(
    org: Organisation, clock: Clock
) -> None:
    member = org.members[1]
    org.sts.remove_role(member, "ResourceDirectoryAccountAccessRole")
    cache = access(org, clock)

    with pytest.raises(AccessError) as raised:
        cache.for_account(member)

    error = raised.value
    assert error.account == member
    assert error.cause.code == "EntityNotExist.Role"
    assert error.as_dict()["stage"] == "assume-role"
    assert error.as_dict()["role_arn"] == role_arn(member, "ResourceDirectoryAccountAccessRole")
    org.sts.add_role(
        member, "ResourceDirectoryAccountAccessRole", trusted_accounts={org.management_account}
    )
    assert cache.for_account(member).access_key_id.startswith("STS.")


def test_threads_share_one_assume_role_per_account(org: Organisation, clock: Clock) -> None:
    cache = access(org, clock)
    results: list[str] = []
    barrier = threading.Barrier(8)

    def work(account: str) -> None:
        barrier.wait()
        results.append(cache.for_account(account).access_key_id)

    threads = [threading.Thread(target=work, args=(org.members[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 8
    assert len(set(results)) == 2
    assert len(assume_calls(org)) == 2
    assert cache.assume_calls == 2


def test_a_refresh_margin_as_long_as_the_session_is_refused(org: Organisation) -> None:
    with pytest.raises(ValueError, match="refresh_margin"):
        MemberCredentials(
            ENDPOINT,
            Credentials(*org.guard_key),
            "r",
            duration_seconds=900,
            refresh_margin=timedelta(minutes=15),
        )


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
