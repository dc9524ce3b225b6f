"""The RAM password policy (IMS 2019-08-15 GetPasswordPolicy / SetPasswordPolicy).

The Get response is flat: ``{"PasswordPolicy": {...13 fields}, "RequestId"}``. Ranges and
defaults from the official generated SDK (alibabacloud-ims20190815) as the reference records
them; the API spells ``MaxLoginAttemps`` so (sic). Safer directions from the reference
("Thresholds, not only equality"): longer minimum lengths, more reuse prevention and more
distinct characters are stricter; fewer failed attempts before a lock-out and a shorter life
of an initial password are stricter, but 0 switches either limit off and is the weakest; true
is stricter for every boolean. MaxPasswordAge has no safe direction (CIS 2.0 and 1.0 disagree).
"""

from __future__ import annotations

from .field import bool_field, int_field
from .setting import Setting

PASSWORD_POLICY = Setting(
    name="password-policy",
    get_action="GetPasswordPolicy",
    set_action="SetPasswordPolicy",
    response_key="PasswordPolicy",
    events=("SetPasswordPolicy",),
    detailed_error_codes=True,
    fields=(
        int_field(
            "MinimumPasswordLength",
            "BASELINE_PASSWORD_MINIMUM_LENGTH",
            None,
            8,
            32,
            8,
            "the fewest characters a password may have",
            "characters",
            direction="higher",
        ),
        bool_field(
            "RequireLowercaseCharacters",
            "BASELINE_PASSWORD_REQUIRE_LOWERCASE",
            None,
            False,
            "a password must contain a lower-case letter",
            direction="true",
        ),
        bool_field(
            "RequireUppercaseCharacters",
            "BASELINE_PASSWORD_REQUIRE_UPPERCASE",
            None,
            False,
            "a password must contain an upper-case letter",
            direction="true",
        ),
        bool_field(
            "RequireNumbers",
            "BASELINE_PASSWORD_REQUIRE_NUMBERS",
            None,
            False,
            "a password must contain a digit",
            direction="true",
        ),
        bool_field(
            "RequireSymbols",
            "BASELINE_PASSWORD_REQUIRE_SYMBOLS",
            None,
            False,
            "a password must contain a symbol",
            direction="true",
        ),
        int_field(
            "PasswordReusePrevention",
            "BASELINE_PASSWORD_REUSE_PREVENTION",
            None,
            0,
            24,
            0,
            "how many previous passwords may not be used again",
            "previous passwords",
            direction="higher",
        ),
        int_field(
            "MaxPasswordAge",
            "BASELINE_PASSWORD_MAX_AGE",
            None,
            0,
            1095,
            0,
            "days a password is valid (0: it never expires)",
            "days, 0 = never expire",
        ),
        bool_field(
            "HardExpire",
            "BASELINE_PASSWORD_HARD_EXPIRE",
            None,
            False,
            "an expired password blocks console logon until an administrator resets it",
            direction="true",
        ),
        int_field(
            "MaxLoginAttemps",
            "BASELINE_PASSWORD_MAX_LOGIN_ATTEMPTS",
            None,
            0,
            32,
            0,
            "failed logons in an hour before the user is locked for an hour (0: no lock-out)",
            "attempts",
            direction="lower",
            off=0,
            off_means="no lock-out",
        ),
        int_field(
            "MinimumPasswordDifferentCharacter",
            "BASELINE_PASSWORD_MINIMUM_DIFFERENT_CHARACTERS",
            None,
            0,
            8,
            0,
            "the fewest distinct characters a password may have",
            "characters",
            direction="higher",
        ),
        bool_field(
            "PasswordNotContainUserName",
            "BASELINE_PASSWORD_NOT_CONTAIN_USER_NAME",
            None,
            False,
            "a password may not contain the user name",
            direction="true",
        ),
        int_field(
            "InitialPasswordAge",
            "BASELINE_PASSWORD_INITIAL_AGE",
            None,
            0,
            90,
            14,
            "days an initial password stays valid (0: no limit)",
            "days",
            direction="lower",
            off=0,
            off_means="no limit",
        ),
        bool_field(
            "InterceptRiskPasswordOnApi",
            "BASELINE_PASSWORD_INTERCEPT_RISK_PASSWORD_ON_API",
            None,
            False,
            "weak (risk) passwords set through the API are blocked",
            direction="true",
        ),
    ),
)
