"""Prevention: a Resource Directory control policy that keeps the guarded settings closed.

The guard detects and reverts drift; a control policy attached to a Resource Directory folder
or member prevents it. The policy here denies the Set action of every guarded setting
(``ram:SetSecurityPreference``, ``ram:SetPasswordPolicy``: derived from the field tables) to
every RAM user and RAM role of the member accounts except the roles that must keep writing it: the
member-access role (``GUARD_MEMBER_ROLE``, through which a guard in the management account
reaches every member) and, when given, the guard's own role (a guard deployed inside the
account itself). The principals are matched on ``acs:PrincipalARN`` with role names in lower
case, as the official examples write them: ``acs:ram:*:*:role/<lower-case name>``.

What it does not cover: a control policy binds RAM identities only (``EffectScope`` ``RAM``),
never the account's root identity, and does not apply to the management account at all; the
guard's revert path stays the second layer for both.

Without ``--guard-role`` only the member-access role is exempt: that is the role a guard with
``GUARD_TARGETS=resource-directory`` writes through, and exempting nothing else keeps the
policy as narrow as it can be. A guard running in a member account under its own role must be
named with ``--guard-role``, or the policy would block its reverts.

Size: CreateControlPolicy accepts a document of at most 4,096 characters; the ROS resource
``ALIYUN::ResourceManager::ControlPolicy`` documents 2,048. With two role names of at most
64 characters, an account id and both actions the document stays under 400 characters, far
below both; ``render`` checks the limit anyway so a future statement cannot silently outgrow it.
"""

from __future__ import annotations

import json
from typing import Any

from .config import ROLE_NAME
from .fields import SETTINGS

MAX_POLICY_CHARS = 4096  # CreateControlPolicy's PolicyDocument limit
ROS_MAX_POLICY_CHARS = 2048  # ALIYUN::ResourceManager::ControlPolicy's documented limit
# The RAM permission of each setting's Set action is the action's name under ram:.
DENIED_ACTIONS: tuple[str, ...] = tuple(f"ram:{s.set_action}" for s in SETTINGS)
DENIED_ACTION = DENIED_ACTIONS[0]  # the security preference's, as before


class PolicyError(ValueError):
    """A role name that RAM would not accept, or a document over the size limit."""


def role_principal(role: str, *, option: str = "role", account: str | None = None) -> str:
    """The ``acs:PrincipalARN`` pattern of a RAM role, name in lower case: in one account, or
    in any account when ``account`` is None."""
    name = role.strip()
    if not ROLE_NAME.match(name):
        raise PolicyError(
            f"{option}: {role!r} is not a RAM role name (1-64 letters, digits, '.', '-', '_')"
        )
    if account is not None and not (account.isascii() and account.isdigit()):
        raise PolicyError(f"--guard-account: {account!r} is not an account id (digits only)")
    return f"acs:ram:*:{account or '*'}:role/{name.lower()}"


def control_policy(
    guard_role: str | None, member_role: str, guard_account: str | None = None
) -> dict[str, Any]:
    """The control policy document: one Deny of every setting's Set with the exemptions.

    ``guard_role`` None (or blank) exempts only ``member_role``; a guard role equal to the
    member role (in any letter case, in any account) is listed once. ``guard_account`` limits
    the guard role's exemption to that account: without it, a member's administrator who can
    create roles could create one of the same name in their own account and be exempt too.
    """
    exempt = [role_principal(member_role, option="member role")]
    if guard_role is not None and guard_role.strip():
        guard = role_principal(guard_role, option="--guard-role", account=guard_account)
        if role_principal(guard_role) not in exempt:
            exempt.insert(0, guard)
    return {
        "Version": "1",
        "Statement": [
            {
                "Effect": "Deny",
                "Action": list(DENIED_ACTIONS),
                "Resource": "*",
                "Condition": {"StringNotLike": {"acs:PrincipalARN": exempt}},
            }
        ],
    }


def render(
    guard_role: str | None,
    member_role: str,
    *,
    guard_account: str | None = None,
    indent: int | None = None,
    limit: int = MAX_POLICY_CHARS,
) -> str:
    """The policy as JSON (compact unless ``indent``), checked against ``limit`` characters.

    Pass ``limit=ROS_MAX_POLICY_CHARS`` for a document that goes into a ROS template.
    """
    separators = (",", ":") if indent is None else (",", ": ")
    document = control_policy(guard_role, member_role, guard_account)
    text = json.dumps(document, indent=indent, separators=separators)
    if len(text) > limit:
        raise PolicyError(
            f"the control policy is {len(text)} characters, over the limit of {limit}"
        )
    return text
