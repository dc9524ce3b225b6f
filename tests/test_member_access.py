"""Getting into member accounts: STS AssumeRole of the member-access role, cached per account
until shortly before expiry, shared safely between threads; and recognising the guard's own
session in an audit trail."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from conftest import ENDPOINT
from org_support import NO_SLEEP, Clock
from secpref_guard.client import ApiError
from secpref_guard.credentials import Credentials
from secpref_guard.emulator import mock_endpoint
from secpref_guard.emulator.resourcemanager import Organisation, organisation
from secpref_guard.ims import ImsClient
from secpref_guard.member_access import AccessError, MemberCredentials, is_guard_session, role_arn


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def org(clock: Clock) -> Iterator[Organisation]:
    o = organisation(4, clock=clock.time)
    with mock_endpoint(o.emulator, ENDPOINT):
        yield o


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
