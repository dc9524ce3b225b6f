"""The security preference (IMS 2019-08-15 GetSecurityPreference / SetSecurityPreference).

The Get response groups the fields in objects under ``SecurityPreference``; the Set takes them
as flat query parameters. Safer directions from the reference ("Thresholds, not only
equality"): shorter sessions and idle limits are stricter, MFA at logon is ordered
independent < adaptive < mandatory; the masks, the verification types and the booleans
(whether users may manage their own password, keys, MFA devices, and save an MFA ticket) are a
policy choice, compared for equality.
"""

from __future__ import annotations

from .field import (
    bool_field,
    enum_field,
    int_choice_field,
    int_field,
    masks_field,
    verification_types_field,
)
from .setting import Setting

IDLE_DAYS = (90, 180, 365, 730)
MFA_OPERATIONS = ("mandatory", "independent", "adaptive")

SECURITY_PREFERENCE = Setting(
    name="security-preference",
    get_action="GetSecurityPreference",
    set_action="SetSecurityPreference",
    response_key="SecurityPreference",
    events=("SetSecurityPreference",),
    # deprecated by the API: read from the response, never enforced or sent
    read_only={"OperationForRiskLogin": "LoginProfilePreference"},
    fields=(
        bool_field(
            "EnableSaveMFATicket",
            "BASELINE_ENABLE_SAVE_MFA_TICKET",
            "LoginProfilePreference",
            False,
            "RAM users may skip MFA for 7 days after passing it",
        ),
        bool_field(
            "AllowUserToChangePassword",
            "BASELINE_ALLOW_USER_TO_CHANGE_PASSWORD",
            "LoginProfilePreference",
            True,
            "RAM users may change their own password",
        ),
        bool_field(
            "AllowUserToLoginWithPasskey",
            "BASELINE_ALLOW_USER_TO_LOGIN_WITH_PASSKEY",
            "LoginProfilePreference",
            True,
            "RAM users may log on with a passkey",
        ),
        int_field(
            "LoginSessionDuration",
            "BASELINE_LOGIN_SESSION_DURATION",
            "LoginProfilePreference",
            1,
            24,
            6,
            "hours a console session lasts",
            "hours",
            direction="lower",
        ),
        masks_field(
            "LoginNetworkMasks",
            "BASELINE_LOGIN_NETWORK_MASKS",
            "LoginProfilePreference",
            "networks RAM users may log on from (empty: no restriction)",
        ),
        enum_field(
            "MFAOperationForLogin",
            "BASELINE_MFA_OPERATION_FOR_LOGIN",
            "LoginProfilePreference",
            MFA_OPERATIONS,
            "independent",
            "when RAM users must pass MFA at logon",
            order=("independent", "adaptive", "mandatory"),
        ),
        bool_field(
            "AllowUserToManageAccessKeys",
            "BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS",
            "AccessKeyPreference",
            False,
            "RAM users may manage their own AccessKeys",
        ),
        bool_field(
            "AllowUserToManageServiceCredentials",
            "BASELINE_ALLOW_USER_TO_MANAGE_SERVICE_CREDENTIALS",
            "AccessKeyPreference",
            None,
            "RAM users may manage their own service credentials (API keys)",
        ),
        bool_field(
            "AllowUserToManageMFADevices",
            "BASELINE_ALLOW_USER_TO_MANAGE_MFA_DEVICES",
            "MFAPreference",
            True,
            "RAM users may bind and unbind their own MFA devices",
        ),
        bool_field(
            "AllowUserToManagePersonalDingTalk",
            "BASELINE_ALLOW_USER_TO_MANAGE_PERSONAL_DING_TALK",
            "PersonalInfoPreference",
            True,
            "RAM users may bind and unbind their personal DingTalk",
        ),
        int_choice_field(
            "MaxIdleDaysForAccessKeys",
            "BASELINE_MAX_IDLE_DAYS_FOR_ACCESS_KEYS",
            "MaxIdleDays",
            IDLE_DAYS,
            730,
            "days after which an unused AccessKey is disabled",
            "days",
            direction="lower",
        ),
        int_choice_field(
            "MaxIdleDaysForUsers",
            "BASELINE_MAX_IDLE_DAYS_FOR_USERS",
            "MaxIdleDays",
            IDLE_DAYS,
            730,
            "days after which an idle user's console logon is disabled",
            "days",
            direction="lower",
        ),
        verification_types_field(
            "VerificationTypes",
            "BASELINE_VERIFICATION_TYPES",
            "VerificationPreference",
            "second factors RAM users may verify with",
        ),
    ),
)
