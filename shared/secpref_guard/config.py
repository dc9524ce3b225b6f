"""Configuration from the environment: the baseline (BASELINE_*) and the guard's settings (GUARD_*).

Parsing is strict and every error names the variable that caused it, with the values it
accepts. Nothing is read from the environment anywhere else.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic import Field as PydanticField

from .fields import BY_API_NAME, FIELDS, SETTINGS, FieldValueError, Setting, Value
from .presets import PRESETS
from .urls import endpoint, url

ROLE_NAME = re.compile(r"^[A-Za-z0-9.\-_]{1,64}$")
DEFAULT_IMS_ENDPOINT = "https://ims.aliyuncs.com"
DEFAULT_STS_ENDPOINT = "https://sts.aliyuncs.com"
DEFAULT_RESOURCEMANAGER_ENDPOINT = "https://resourcemanager.aliyuncs.com"
DEFAULT_BUDGET_PREFIX = "secpref-guard/revert-budget/"
FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


class ConfigError(ValueError):
    """Invalid configuration. The message names the variable and the accepted values."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


def _split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _account_id(value: str) -> str:
    if not (value.isascii() and value.isdigit()) or not 1 <= len(value) <= 20:
        raise ValueError(f"{value!r} is not an Alibaba Cloud account id (digits only)")
    return value


class Exemption(BaseModel):
    """Fields of one account that are reported, not written, until a date (UTC, inclusive)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account: str
    fields: tuple[str, ...] = PydanticField(min_length=1)
    until: date
    reason: str = PydanticField(min_length=1)

    @field_validator("account", mode="before")
    @classmethod
    def _account(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("account must be a string of digits")
        return _account_id(value)

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in BY_API_NAME]
        if unknown:
            raise ValueError(f"unknown API field names {unknown}; known: {', '.join(BY_API_NAME)}")
        return value

    def active_on(self, day: date) -> bool:
        return day <= self.until


class Settings(BaseModel):
    """The GUARD_* variables. Aliases are the variable names, so errors name the variable."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    mode: Literal["enforce", "dry-run"] = PydanticField("enforce", alias="GUARD_MODE")
    ims_endpoint: str = PydanticField(DEFAULT_IMS_ENDPOINT, alias="GUARD_IMS_ENDPOINT")
    targets: str = PydanticField("self", alias="GUARD_TARGETS")
    exclude_accounts: frozenset[str] = PydanticField(frozenset(), alias="GUARD_EXCLUDE_ACCOUNTS")
    member_role: str = PydanticField(
        "ResourceDirectoryAccountAccessRole", alias="GUARD_MEMBER_ROLE"
    )
    self_role: str | None = PydanticField(None, alias="GUARD_SELF_ROLE")
    sts_endpoint: str = PydanticField(DEFAULT_STS_ENDPOINT, alias="GUARD_STS_ENDPOINT")
    resourcemanager_endpoint: str = PydanticField(
        DEFAULT_RESOURCEMANAGER_ENDPOINT, alias="GUARD_RESOURCEMANAGER_ENDPOINT"
    )
    dingtalk_webhook: str | None = PydanticField(None, alias="GUARD_DINGTALK_WEBHOOK")
    dingtalk_secret: str | None = PydanticField(None, alias="GUARD_DINGTALK_SECRET", repr=False)
    webhook_url: str | None = PydanticField(None, alias="GUARD_WEBHOOK_URL")
    eventbridge_bus: str | None = PydanticField(None, alias="GUARD_EVENTBRIDGE_BUS")
    preset: Literal[tuple(PRESETS)] | None = PydanticField(  # type: ignore[valid-type]
        None, alias="GUARD_PRESET"
    )
    report_only_fields: frozenset[str] = PydanticField(
        frozenset(), alias="GUARD_REPORT_ONLY_FIELDS"
    )
    # API fields compared for equality although they have a safer direction
    exact_fields: frozenset[str] = PydanticField(frozenset(), alias="GUARD_EXACT_FIELDS")
    exemptions: tuple[Exemption, ...] = PydanticField((), alias="GUARD_EXEMPTIONS")
    max_reverts: int = PydanticField(3, alias="GUARD_MAX_REVERTS", ge=1, le=1000)
    revert_window_minutes: int = PydanticField(
        60, alias="GUARD_REVERT_WINDOW_MINUTES", ge=1, le=7 * 24 * 60
    )
    # Where the revert budget is counted (an OSS bucket the template creates); unset: no budget.
    budget_bucket: str | None = PydanticField(None, alias="GUARD_BUDGET_BUCKET")
    budget_endpoint: str | None = PydanticField(None, alias="GUARD_BUDGET_ENDPOINT")
    budget_prefix: str = PydanticField(DEFAULT_BUDGET_PREFIX, alias="GUARD_BUDGET_PREFIX")
    # Many accounts (GUARD_TARGETS other than self): in-process up to the threshold, beyond it
    # batches dispatched asynchronously to the worker function, when one is configured.
    worker_function: str | None = PydanticField(None, alias="GUARD_WORKER_FUNCTION")
    fanout_threshold: int = PydanticField(50, alias="GUARD_FANOUT_THRESHOLD", ge=1, le=100_000)
    batch_size: int = PydanticField(50, alias="GUARD_BATCH_SIZE", ge=1, le=1000)
    concurrency: int = PydanticField(10, alias="GUARD_CONCURRENCY", ge=1, le=64)
    fc_endpoint: str | None = PydanticField(None, alias="GUARD_FC_ENDPOINT")

    @field_validator("worker_function", "fc_endpoint", mode="before")
    @classmethod
    def _fanout_empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("worker_function")
    @classmethod
    def _function_name(cls, value: str | None) -> str | None:
        if value is not None and not FUNCTION_NAME.match(value.strip()):
            raise ValueError(
                f"{value!r} is not a function name (letters, digits, '_', '-'; 1-64, "
                "starting with a letter or '_')"
            )
        return value.strip() if value else None

    @field_validator("fc_endpoint")
    @classmethod
    def _fc_endpoint(cls, value: str | None) -> str | None:
        return None if value is None else endpoint(value)

    @field_validator("budget_bucket", "budget_endpoint", mode="before")
    @classmethod
    def _budget_empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("budget_bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip()
        # Serverless Devs substitutes ${config('AccountID')} at deploy time
        if "${" not in text and not BUCKET_NAME.match(text):
            raise ValueError(
                f"{value!r} is not an OSS bucket name (3-63 lower-case letters, digits, '-')"
            )
        return text

    @field_validator("budget_endpoint")
    @classmethod
    def _budget_endpoint(cls, value: str | None) -> str | None:
        return None if value is None else endpoint(value)

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("ims_endpoint", "sts_endpoint", "resourcemanager_endpoint")
    @classmethod
    def _endpoints(cls, value: str) -> str:
        return endpoint(value)

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: str) -> str:
        text = value.strip()
        if text in ("self", "resource-directory"):
            return text
        accounts = _split_list(text)
        if not accounts:
            raise ValueError("expected self, resource-directory or a comma-separated account list")
        for account in accounts:
            _account_id(account)
        return ",".join(accounts)

    @field_validator("exclude_accounts", mode="before")
    @classmethod
    def _exclude(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(_account_id(a) for a in _split_list(value))
        return value

    @field_validator("member_role", "self_role")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip()
        if not ROLE_NAME.match(text):
            raise ValueError(
                f"{value!r} is not a RAM role name (1-64 letters, digits, '.', '-', '_')"
            )
        return text

    @field_validator(
        "self_role",
        "dingtalk_webhook",
        "dingtalk_secret",
        "webhook_url",
        "eventbridge_bus",
        "preset",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("dingtalk_webhook", "webhook_url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        return None if value is None else url(value)

    @field_validator("report_only_fields", "exact_fields", mode="before")
    @classmethod
    def _field_names(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        names = _split_list(value)
        unknown = [name for name in names if name not in BY_API_NAME]
        if unknown:
            raise ValueError(
                f"unknown API field name(s) {', '.join(unknown)}; known: {', '.join(BY_API_NAME)}"
            )
        return frozenset(names)

    @field_validator("exemptions", mode="before")
    @classmethod
    def _exemptions(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return ()
        try:
            entries = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg} at position {exc.pos})") from None
        if not isinstance(entries, list):
            raise ValueError("expected a JSON array of exemption objects")
        parsed = []
        for index, entry in enumerate(entries):
            try:
                parsed.append(Exemption.model_validate(entry))
            except ValidationError as exc:
                raise ValueError(f"entry {index}: {_describe(exc)}") from None
        return tuple(parsed)

    @field_validator(
        "max_reverts",
        "revert_window_minutes",
        "fanout_threshold",
        "batch_size",
        "concurrency",
        mode="before",
    )
    @classmethod
    def _strict_int(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if not (text.isascii() and text.isdigit()):
                raise ValueError(f"expected a positive whole number, got {value!r}")
            return int(text)
        return value


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


class GuardConfig(BaseModel):
    """Everything the guard needs to decide: the baseline, where each value came from, settings."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    baseline: dict[str, Value]  # API field name -> canonical value
    sources: dict[str, str]  # API field name -> "BASELINE_X" or "preset cis-2.0"
    settings: Settings

    @property
    def dry_run(self) -> bool:
        return self.settings.mode == "dry-run"

    def source_of(self, api_name: str) -> str:
        return self.sources.get(api_name, "")

    def is_exact(self, api_name: str) -> bool:
        """Whether this field is compared for equality (GUARD_EXACT_FIELDS, or a field with
        no safer direction) rather than "at least as strict"."""
        return api_name in self.settings.exact_fields or BY_API_NAME[api_name].direction is None

    @property
    def enforced_settings(self) -> tuple[Setting, ...]:
        """The settings with at least one baseline field, in table order: the only ones a run
        reads (a setting the baseline does not pin is never read)."""
        return tuple(s for s in SETTINGS if self.baseline_of(s))

    def baseline_of(self, setting: Setting) -> dict[str, Value]:
        """The baseline fields of one setting (empty: the setting is not enforced, not read)."""
        names = {f.api_name for f in setting.fields}
        return {name: value for name, value in self.baseline.items() if name in names}


# Read elsewhere: by the handlers (log level) and by `invoke` (its local context).
OTHER_GUARD_VARIABLES = frozenset({"GUARD_LOG_LEVEL", "GUARD_LOCAL_ACCOUNT_ID"})


def known_variables() -> frozenset[str]:
    aliases = {f.alias for f in Settings.model_fields.values() if f.alias}
    return frozenset(aliases) | OTHER_GUARD_VARIABLES | {f.env_var for f in FIELDS}


def _check_names(env: Mapping[str, str]) -> None:
    """A misspelt variable would silently drop a field from the baseline: refuse it. Names are
    case-sensitive, so ``Baseline_Allow_User_To_Manage_Access_Keys`` is refused too, with the
    right spelling."""
    known = known_variables()
    by_upper = {name.upper(): name for name in known}
    for name in sorted(env):
        upper = name.upper()
        if name in known or not upper.startswith(("BASELINE_", "GUARD_")):
            continue
        if upper in by_upper:
            raise ConfigError(
                name,
                f"is not a variable secpref-guard knows: names are case-sensitive; "
                f"did you mean {by_upper[upper]}?",
            )
        import difflib  # only for this error: a cold start does not pay for it

        close = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(name, f"is not a variable secpref-guard knows{hint}")


def load_config(environ: Mapping[str, str] | None = None) -> GuardConfig:
    """Read and validate the whole configuration; raise ConfigError naming the bad variable."""
    env = os.environ if environ is None else environ
    _check_names(env)

    try:
        settings = Settings.model_validate({k: v for k, v in env.items() if k.startswith("GUARD_")})
    except ValidationError as exc:
        error = exc.errors()[0]
        variable = str(error["loc"][0])  # the alias: the variable's name
        if error["type"] == "literal_error":
            problem = f"expected {error['ctx']['expected']}, got {error['input']!r}"
        else:
            problem = error["msg"].removeprefix("Value error, ")
        raise ConfigError(variable, problem) from None
    if settings.dingtalk_secret and not settings.dingtalk_webhook:
        raise ConfigError("GUARD_DINGTALK_SECRET", "is set but GUARD_DINGTALK_WEBHOOK is not")
    budget_asked = [n for n in ("GUARD_MAX_REVERTS", "GUARD_REVERT_WINDOW_MINUTES") if n in env]
    if budget_asked and not settings.budget_bucket:
        raise ConfigError(
            "GUARD_BUDGET_BUCKET",
            f"is not set, but {' and '.join(budget_asked)} asks for a revert budget, which is "
            "counted across instances in an OSS bucket (template.yml creates one): set "
            "GUARD_BUDGET_BUCKET, or unset the budget variables to run without a budget",
        )

    baseline: dict[str, Value] = {}
    sources: dict[str, str] = {}
    if settings.preset:
        for api_name, entry in PRESETS[settings.preset].items():
            baseline[api_name] = entry.value
            sources[api_name] = f"preset {settings.preset}"

    for f in FIELDS:
        raw = env.get(f.env_var)
        if raw is None:
            continue
        if f.kind not in ("masks", "types") and not raw.strip():
            raise ConfigError(
                f.env_var, f"is empty; expected {f.allowed} (unset it to not enforce)"
            )
        try:
            baseline[f.api_name] = f.parse_text(raw)
        except FieldValueError as exc:
            problem = str(exc)
            if not problem.startswith("expected"):
                problem += f"; expected {f.allowed}"
            raise ConfigError(f.env_var, problem) from None
        sources[f.api_name] = f.env_var

    if not baseline:
        raise ConfigError(
            "BASELINE_*",
            "no baseline field is set: set at least one BASELINE_* variable or GUARD_PRESET",
        )
    return GuardConfig(baseline=baseline, sources=sources, settings=settings)
