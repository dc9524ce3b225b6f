"""What one Function Compute instance keeps between invocations, and the services it hands
each run: the member sessions (STS), the directory's membership, the revert budget, the run's
share of the function timeout, and the fan-out's options.

An instance takes concurrent requests: its caches are made once, under one lock, and survive
until the runtime recycles the instance (``reset`` forgets them, as a new instance would).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .config import GuardConfig
from .credentials import Credentials, CredentialsError, resolve

_lock = threading.Lock()
_member_access: Any = None  # member_access.MemberCredentials: the STS sessions held
_directory: Any = None  # directory.Directory: the membership cache
_directory_base: list[Credentials | None] = [None]  # the credentials its client signs with

# The API calls of one invocation share this part of the function timeout (template.yml: 60 s);
# the rest is for the revert budget, notifications and the runtime.
API_TIME_SHARE = 0.5
DEFAULT_FUNCTION_TIMEOUT = 60


_frozen_modules = 0  # len(sys.modules) when freeze_imports last froze
_freezes = 0
MAX_FREEZES = 8  # a process that keeps importing freezes no more than this


def freeze_imports() -> None:
    """Take what the process has imported out of the cyclic garbage collector's sight.

    Modules, classes, pydantic's schemas and the SDK's endpoint data live as long as the
    process. Left in the collector's generations, every full collection walks them again:
    during the run's own imports, during later runs, and at the interpreter's exit, where a
    cold command-line run spent 75-130 ms collecting them (``make bench``). ``gc.freeze``
    moves every object tracked now to the permanent generation, which collections skip;
    reference counting still frees them, but a reference cycle among them is never freed.

    So it runs only when the process imported something since it last ran, at most
    ``MAX_FREEZES`` times: the handlers call it before a run and after it, and a warm
    instance's later invocations import nothing. What it keeps for good is the cyclic garbage
    alive at those few moments: of the first invocations, and of whatever another thread of
    the instance (a concurrent request, the budget's background append) holds then.
    """
    global _frozen_modules, _freezes
    with _lock:
        modules = len(sys.modules)
        if modules != _frozen_modules and _freezes < MAX_FREEZES:
            gc.freeze()
            _frozen_modules = modules
            _freezes += 1


def reset() -> None:
    global _member_access, _directory
    with _lock:
        _member_access = _directory = None
        _directory_base[0] = None


def context_value(context: Any, *path: str) -> Any:
    value = context
    for name in path:
        value = getattr(value, name, None)
        if value is None:
            return None
    return value


def own_account(context: Any) -> str | None:
    value = context_value(context, "account_id")
    return str(value) if value else None


def api_seconds(context: Any) -> float:
    """The share of the function timeout that the invocation's API calls may take together."""
    timeout = context_value(context, "function", "timeout")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        timeout = DEFAULT_FUNCTION_TIMEOUT
    return float(timeout) * API_TIME_SHARE


def services(config: GuardConfig, context: Any) -> Any:
    from .run import Services

    base = resolve(context)
    own = own_account(context)
    settings = config.settings
    deadline = time.monotonic() + api_seconds(context)
    directory = (
        _instance_directory(config, base) if settings.targets == "resource-directory" else None
    )
    return Services(
        config=config,
        base=base,
        own_account=own,
        member_access=lambda: _instance_access(config, base, own),
        directory=directory,
        budget=_budget(config, context, base, deadline),
        deadline=deadline,
        concurrency=settings.concurrency,
    )


def guard_keys(context: Any) -> frozenset[str]:
    """The AccessKeyIds this instance writes with: its own credentials', and the member
    sessions' it holds (an audit event made with one of them is the guard's own change)."""
    try:
        keys = {resolve(context).access_key_id}
    except CredentialsError:
        keys = set()
    with _lock:
        access = _member_access
    if access is not None:
        keys |= access.key_ids()
    return frozenset(keys)


def _instance_access(config: GuardConfig, base: Credentials, own: str | None) -> Any:
    """Member-account credentials (STS AssumeRole), cached per instance until near expiry."""
    from .member_access import MemberCredentials

    global _member_access
    with _lock:
        if _member_access is None or _member_access.base != base:
            _member_access = MemberCredentials.from_settings(config.settings, base, own_account=own)
        return _member_access


def _instance_directory(config: GuardConfig, base: Credentials) -> Any:
    """The directory's membership, cached per instance for a short time (directory.py)."""
    from .directory import Directory, ResourceManagerClient

    global _directory
    endpoint = config.settings.resourcemanager_endpoint
    with _lock:
        _directory_base[0] = base
        if _directory is None:

            def client() -> ResourceManagerClient:
                current = _directory_base[0]
                assert current is not None
                return ResourceManagerClient(endpoint, current)

            _directory = Directory(client)
        return _directory


class LazyBudget:
    """The revert budget, made on its first use: the engine consults it only before a write,
    so a compliant run never imports oss2 (and the SDK it brings) at all."""

    def __init__(self, make: Callable[[], Any], max_reverts: int) -> None:
        self._make = make
        self._budget: Any = None
        self._lock = threading.Lock()
        self.max_reverts = max_reverts

    def _get(self) -> Any:
        with self._lock:
            if self._budget is None:
                self._budget = self._make()
            return self._budget

    def check(self, account: str, now: Any = None) -> Any:
        return self._get().check(account, now)

    def record_in_background(self, account: str, now: Any = None, actor: str | None = None) -> Any:
        return self._get().record_in_background(account, now, actor)


def _budget(config: GuardConfig, context: Any, base: Credentials, deadline: float) -> Any:
    """The revert budget, when GUARD_BUDGET_BUCKET is set; oss2 is imported only when a write
    is due (``LazyBudget``)."""
    settings = config.settings
    if not settings.budget_bucket:
        return None
    region = context_value(context, "region") or os.environ.get("FC_REGION")

    def make() -> Any:
        from .budget import from_settings

        return from_settings(settings, base, region, deadline=deadline)

    return LazyBudget(make, settings.max_reverts)


def fanout_options(config: GuardConfig, context: Any) -> Any:
    from .dispatch import fc_endpoint
    from .run import FanoutOptions

    settings = config.settings
    endpoint = settings.fc_endpoint
    own, region = own_account(context), context_value(context, "region")
    if endpoint is None and own and region:
        endpoint = fc_endpoint(own, str(region), internal=True)
    return FanoutOptions(
        worker_function=settings.worker_function,
        fc_endpoint=endpoint,
        in_process_threshold=settings.fanout_threshold,
        batch_size=settings.batch_size,
    )


# --- notifications -----------------------------------------------------------------------------
