"""The Resource Directory control policy that prevents drift."""

from __future__ import annotations

import json

import pytest

from secpref_guard.control_policy import (
    MAX_POLICY_CHARS,
    ROS_MAX_POLICY_CHARS,
    PolicyError,
    control_policy,
    render,
)

MEMBER_ROLE = "ResourceDirectoryAccountAccessRole"


def exempted(guard_role: str | None, member_role: str = MEMBER_ROLE) -> list[str]:
    [statement] = control_policy(guard_role, member_role)["Statement"]
    return statement["Condition"]["StringNotLike"]["acs:PrincipalARN"]


def test_the_policy_denies_both_settings_sets_to_all_but_the_two_roles() -> None:
    policy = json.loads(render("SecprefGuardRole", MEMBER_ROLE))

    assert policy == {
        "Version": "1",
        "Statement": [
            {
                "Effect": "Deny",
                "Action": ["ram:SetSecurityPreference", "ram:SetPasswordPolicy"],
                "Resource": "*",
                "Condition": {
                    "StringNotLike": {
                        "acs:PrincipalARN": [
                            "acs:ram:*:*:role/secprefguardrole",
                            "acs:ram:*:*:role/resourcedirectoryaccountaccessrole",
                        ]
                    }
                },
            }
        ],
    }


def test_without_a_guard_role_only_the_member_access_role_is_exempt() -> None:
    assert exempted(None) == ["acs:ram:*:*:role/resourcedirectoryaccountaccessrole"]
    assert control_policy("  ", MEMBER_ROLE) == control_policy(None, MEMBER_ROLE)


def test_a_guard_role_that_is_the_member_role_is_listed_once() -> None:
    assert exempted("resourcedirectoryACCOUNTaccessrole") == [
        "acs:ram:*:*:role/resourcedirectoryaccountaccessrole"
    ]


def test_a_custom_member_role_is_exempt_in_lower_case() -> None:
    assert exempted("guard.role_1", "Org-Admin") == [
        "acs:ram:*:*:role/guard.role_1",
        "acs:ram:*:*:role/org-admin",
    ]


def test_render_is_compact_json_and_indent_is_the_same_document() -> None:
    compact = render("SecprefGuardRole", MEMBER_ROLE)

    assert " " not in compact
    assert "\n" not in compact
    assert json.loads(render("SecprefGuardRole", MEMBER_ROLE, indent=2)) == json.loads(compact)


def test_the_largest_policy_fits_the_api_and_ros_limits() -> None:
    # both denied actions, two role names of the most characters RAM allows, the guard role
    # limited to an account id of the most digits
    longest = render("g" * 64, "m" * 64, guard_account="9" * 20, indent=4)

    assert "ram:SetPasswordPolicy" in longest
    assert len(longest) < ROS_MAX_POLICY_CHARS < MAX_POLICY_CHARS
    assert render("g" * 64, "m" * 64, guard_account="9" * 20, limit=ROS_MAX_POLICY_CHARS)
    assert len(render("g" * 64, "m" * 64, guard_account="9" * 20)) < 400


def test_every_guarded_settings_set_is_denied() -> None:
    from secpref_guard import fields as F

    [statement] = control_policy(None, MEMBER_ROLE)["Statement"]
    assert statement["Action"] == [f"ram:{s.set_action}" for s in F.SETTINGS]


def test_a_policy_over_the_limit_is_refused() -> None:
    with pytest.raises(PolicyError, match=r"over the limit of 100"):
        render("SecprefGuardRole", MEMBER_ROLE, limit=100)


@pytest.mark.parametrize(
    "role",
    ["g" * 65, "guard role", "guard*", "role/other", "gúard", 'a"b'],
)
def test_a_guard_role_that_is_not_a_ram_role_name_is_refused(role: str) -> None:
    with pytest.raises(PolicyError, match="--guard-role"):
        control_policy(role, MEMBER_ROLE)


@pytest.mark.parametrize("role", ["", "member role", "x" * 65])
def test_a_member_role_that_is_not_a_ram_role_name_is_refused(role: str) -> None:
    with pytest.raises(PolicyError, match="member role"):
        control_policy(None, role)


def test_the_guard_role_can_be_exempted_in_its_own_account_only() -> None:
    document = control_policy("secpref-guard-role", MEMBER_ROLE, guard_account="1234567890123456")
    principals = document["Statement"][0]["Condition"]["StringNotLike"]["acs:PrincipalARN"]
    assert principals[0] == "acs:ram:*:1234567890123456:role/secpref-guard-role"
    with pytest.raises(PolicyError, match="--guard-account"):
        control_policy("secpref-guard-role", MEMBER_ROLE, guard_account="12ab")
