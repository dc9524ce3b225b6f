"""Where the guard's credentials come from.

Inside Function Compute the function's role gives temporary STS credentials: the python3.10
runtime puts them on ``context.credentials``; the python3.12 runtime has no such attribute
and only sets the ALIBABA_CLOUD_* variables. Outside Function Compute the ALIBABA_CLOUD_*
variables are read. The SDK's own ALIYUN_* variables are never consulted (see client.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .logs import register_secrets

ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"  # noqa: S105 - a variable name
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"  # noqa: S105 - a variable name


class CredentialsError(ValueError):
    """No usable credentials; the message names where they were looked for."""


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
    source: str = "environment"

    def __post_init__(self) -> None:
        # Whatever is logged from here on has these values masked. The source is the scope:
        # an account's refreshed STS credentials replace its old ones in the registry instead
        # of piling up (hourly, for every member account of a warm instance).
        register_secrets((self.access_key_secret, self.security_token), scope=self.source)


def _read(obj: Any, *names: str) -> str | None:
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if isinstance(value, str) and value:
            return value
    return None


def from_context(context: Any) -> Credentials | None:
    """The function role's credentials from a python3.10 FC context, if it carries them."""
    creds = getattr(context, "credentials", None) if context is not None else None
    if creds is None:
        return None
    key_id = _read(creds, "access_key_id", "accessKeyId")
    secret = _read(creds, "access_key_secret", "accessKeySecret")
    token = _read(creds, "security_token", "securityToken")
    if not key_id or not secret:
        return None
    return Credentials(key_id, secret, token, source="function context")


def from_environ(environ: Mapping[str, str] | None = None) -> Credentials:
    env = os.environ if environ is None else environ
    key_id = env.get(ENV_ACCESS_KEY_ID, "").strip()
    secret = env.get(ENV_ACCESS_KEY_SECRET, "").strip()
    token = env.get(ENV_SECURITY_TOKEN, "").strip() or None
    if not key_id or not secret:
        missing = [
            n for n, v in ((ENV_ACCESS_KEY_ID, key_id), (ENV_ACCESS_KEY_SECRET, secret)) if not v
        ]
        raise CredentialsError(
            f"no credentials: {' and '.join(missing)} not set (inside Function Compute the "
            "function's role provides them)"
        )
    return Credentials(key_id, secret, token, source="environment")


def resolve(context: Any = None, environ: Mapping[str, str] | None = None) -> Credentials:
    """The context's credentials win (python3.10); otherwise the ALIBABA_CLOUD_* variables."""
    return from_context(context) or from_environ(environ)
