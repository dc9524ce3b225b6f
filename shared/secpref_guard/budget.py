"""The revert budget: at most GUARD_MAX_REVERTS reverts of one account per
GUARD_REVERT_WINDOW_MINUTES, counted across every instance and invocation (timer and audit
event together), in an OSS bucket.

Where the count lives
    One OSS *appendable* object per account and period, one JSON line per revert:
    ``<prefix><account>/<YYYY-MM-DD>.P<n>D.jsonl`` (``{"at": ..., "actor": ..., "id": ...}``).
    A period is ``ceil(2 * window / 1 day)`` UTC days, so one day for windows up to 12 hours.
    A revert in the last window-length of a period is written to the next period's object as
    well, so the current period's object alone holds every revert still inside the window and
    ``check`` reads exactly one object. Old objects are removed by a lifecycle rule on the
    prefix (30 days after the last write is always enough); the guard needs no delete right.

Why append, and what OSS guarantees
    - PutObject has no compare-and-swap. Its documented request headers include
      ``x-oss-forbid-overwrite`` (create only) but no If-Match, and no SDK models one (the V2
      SDK's PutObjectRequest has ``forbid_overwrite`` and no ``if_match``); OSS documents
      If-Match / If-None-Match for reads (GetObject, HeadObject) and for the copy source only.
      A header OSS does not document gives no guarantee, so a read-modify-write of one JSON
      document could silently drop another instance's revert. ``x-oss-forbid-overwrite``
      guards only the first write of a name, so it cannot serialise updates either.
    - AppendObject succeeds only when ``position`` equals the object's current length (0
      creates the object) and otherwise answers 409 PositionNotEqualToLength with the length
      in ``x-oss-next-append-position``; the OSS error reference says concurrent appenders get
      exactly this error. That is a compare-and-swap on the length: two writers can never
      overwrite each other, the loser learns the new position from the error and appends
      again without a read. Appending a line does not depend on what is already there, so the
      retry needs nothing else. Each line carries a random id, so a line written twice (a
      retry after a lost response) is counted once.

Requests per path (``requests`` counts them for the bench)
    - compliant run: 0, the engine consults the budget only before a write;
    - drift, budget spent (``contested``): 1 GetObject, nothing written;
    - drift, allowed: 1 GetObject before the write, then 1 AppendObject at the position that
      GetObject returned (no second read). ``record_in_background`` sends the append while
      the engine re-reads the security preference, so it adds no round trip to the run's
      latency. Each other instance that appended in between costs one more AppendObject (the
      409 names the new position); a revert in the last window-length of a period costs one
      or two more (the copy into the next period's object, whose length is not known yet);
    - store unreadable: 1 GetObject (failed); the write goes ahead and the record is tried;
    - an append that fails on the network or with a 5xx is retried by client.with_retries
      (DEFAULT_RETRY, or the ``retry`` given), never past the ``deadline`` given: one more
      AppendObject per retry.

The baseline wins: a ``check`` that cannot read the store (network, 403, 5xx, content that
is not ours) returns ``allowed=True`` with ``error`` set, and ``record`` logs its failures and
never raises. Known limit: instances that check at the same moment may all write, so a fight
can pass the budget by the number of instances racing; a revert is never lost from the count.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Protocol
from urllib.parse import urlsplit

import oss2
from oss2.exceptions import NoSuchKey, OssError, PositionNotEqualToLength, RequestError

from .client import ApiError, RetryPolicy, with_retries
from .credentials import Credentials
from .logs import event, redact

DEFAULT_PREFIX = "secpref-guard/revert-budget/"
DEFAULT_TIMEOUT = 5.0  # seconds, connect and read: an outage must not stall the revert
MAX_OBJECT_BYTES = 1024 * 1024  # far above any budget; past it the object is not read
CONTENT_TYPE = "application/x-ndjson"
_ACCOUNT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ENDPOINT_REGION = re.compile(r"^oss-([a-z0-9-]+?)(?:-internal)?\.aliyuncs\.com$")
_EPOCH = date(1970, 1, 1)
_DAY_MINUTES = 24 * 60
# An append that fails on the network or with a 5xx is retried by the project's one mechanism
# (client.with_retries: exponential backoff with jitter, bounded in tries and in time, and by the
# invocation's deadline when one is given). A 409 PositionNotEqualToLength is not a failure (the
# loser learns the new length and appends again at once) and is bounded by ``conflicts``.
DEFAULT_RETRY = RetryPolicy(attempts=3, total_seconds=10.0, initial_wait=0.2, max_wait=2.0)


class ObjectStore(Protocol):
    """What the budget uses of ``oss2.Bucket``."""

    bucket_name: str

    def get_object(self, key: str) -> Any: ...

    def append_object(
        self, key: str, position: int, data: bytes, headers: dict[str, str] | None = None
    ) -> Any: ...


class BudgetStoreError(Exception):
    """The budget's object could not be read or written; the message names the cause."""


@dataclass(frozen=True)
class BudgetCheck:
    """The answer before a write: may the guard revert this account now?"""

    allowed: bool
    recent: list[datetime]  # reverts inside the window, oldest first (UTC)
    last_actor: str | None  # who changed the setting before the latest revert, if known
    error: str | None = None  # set when the store could not be read: allowed, but unchecked
    store: str = ""  # oss://bucket/key of the object consulted

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "allowed": self.allowed,
            "recent": [_iso(t) for t in self.recent],
            "last_actor": self.last_actor,
            "store": self.store,
        }
        if self.error:
            result["error"] = self.error
        return result


@dataclass(frozen=True)
class _Revert:
    at: datetime
    actor: str | None
    id: str

    def line(self) -> bytes:
        text = json.dumps(
            {"at": _iso(self.at), "actor": self.actor, "id": self.id},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return (text + "\n").encode("utf-8")


@dataclass
class PendingRecord:
    """A ``record`` running in the background; ``wait`` before the invocation returns."""

    _thread: threading.Thread = field(repr=False)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the record is written or has failed (and been logged); True if done."""
        self._thread.join(timeout)
        return not self._thread.is_alive()


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: datetime) -> datetime:
    """Aware datetimes are converted to UTC; naive ones are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _iso(value: datetime) -> str:
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime:
    if not text.endswith("Z"):
        raise ValueError(f"not a UTC time: {text!r}")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def period_days(window_minutes: int) -> int:
    """Length in whole UTC days of one budget object's period (at least twice the window)."""
    return max(1, math.ceil(2 * window_minutes / _DAY_MINUTES))


class RevertBudget:
    """The budget of every account, kept in ``bucket`` under ``prefix``.

    ``check`` before a write, ``record`` (or ``record_in_background``) after a successful one.
    One instance may serve many accounts and threads.
    """

    def __init__(
        self,
        bucket: ObjectStore,
        max_reverts: int,
        window_minutes: int,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], datetime] = _utc_now,
        retry: RetryPolicy | None = None,
        deadline: float | None = None,
        conflicts: int = 8,
    ) -> None:
        """``retry``: how a failed append is retried (its ``clock`` and ``sleep`` included);
        ``deadline``: a point on ``retry.clock`` (the invocation's deadline, shared with the
        run's API calls) after which no append is tried or retried."""
        if max_reverts < 1:
            raise ValueError("max_reverts must be at least 1")
        if not 1 <= window_minutes <= 7 * _DAY_MINUTES:
            raise ValueError("window_minutes must be between 1 and 10080 (7 days)")
        self.bucket = bucket
        self.max_reverts = max_reverts
        self.window = timedelta(minutes=window_minutes)
        self.period = timedelta(days=period_days(window_minutes))
        self.prefix = prefix.lstrip("/")
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        self.clock = clock
        self.retry = retry or DEFAULT_RETRY
        self.deadline = deadline
        self.conflicts = conflicts  # 409s tolerated for one append (each is progress elsewhere)
        self._lock = threading.Lock()
        self._positions: dict[str, int] = {}  # object key -> length last seen
        self._requests = 0

    # -- the public API -----------------------------------------------------------------------

    @property
    def requests(self) -> int:
        """OSS requests this budget has sent (GetObject and AppendObject, failures included)."""
        with self._lock:
            return self._requests

    def key_for(self, account: str, when: datetime) -> str:
        """The object that holds the reverts counted at ``when``."""
        if not _ACCOUNT.match(account):
            raise ValueError(f"{account!r} is not an account id")
        start = self._period_start(_utc(when))
        return f"{self.prefix}{account}/{start:%Y-%m-%d}.P{self.period.days}D.jsonl"

    def check(self, account: str, now: datetime | None = None) -> BudgetCheck:
        """May the guard write to ``account`` now? Exactly one GetObject; never raises."""
        now = _utc(now or self.clock())
        try:
            key = self.key_for(account, now)
        except ValueError as exc:
            return BudgetCheck(True, [], None, error=f"the revert budget was not checked: {exc}")
        store = self._location(key)
        try:
            reverts = _parse(self._read(key), store)
        except BudgetStoreError as exc:
            message = f"the revert budget could not be checked: {exc}"
            event(
                logging.WARNING,
                "revert budget not checked",
                account=account,
                store=store,
                error=message,
            )
            return BudgetCheck(True, [], None, error=message, store=store)
        recent = sorted((r for r in reverts if r.at > now - self.window), key=lambda r: r.at)
        actors = [r.actor for r in recent if r.actor]
        return BudgetCheck(
            allowed=len(recent) < self.max_reverts,
            recent=[r.at for r in recent],
            last_actor=actors[-1] if actors else None,
            store=store,
        )

    def record(self, account: str, now: datetime | None = None, actor: str | None = None) -> None:
        """Count one revert of ``account`` made at ``now``. Failures are logged, never raised."""
        try:
            revert = _Revert(_utc(now or self.clock()), _clean_actor(actor), uuid.uuid4().hex)
            keys = [self.key_for(account, revert.at)]
            next_start = self._period_start(revert.at) + self.period
            if revert.at + self.window > next_start:
                keys.append(self.key_for(account, next_start))
        except ValueError as exc:
            event(
                logging.ERROR,
                "revert not counted in the revert budget",
                account=account,
                error=str(exc),
            )
            return
        for key in keys:
            try:
                self._append(key, revert.line())
            except BudgetStoreError as exc:
                event(
                    logging.ERROR,
                    "revert not counted in the revert budget",
                    account=account,
                    store=self._location(key),
                    error=str(exc),
                )

    def record_in_background(
        self, account: str, now: datetime | None = None, actor: str | None = None
    ) -> PendingRecord:
        """``record`` in a thread, so the append overlaps the engine's verification read."""
        at = _utc(now or self.clock())
        thread = threading.Thread(
            target=self.record,
            args=(account, at, actor),
            name=f"revert-budget-{account}",
            daemon=True,
        )
        thread.start()
        return PendingRecord(thread)

    # -- OSS ----------------------------------------------------------------------------------

    def _period_start(self, when: datetime) -> datetime:
        days = (when.date() - _EPOCH).days
        start = _EPOCH + timedelta(days=days - days % self.period.days)
        return datetime(start.year, start.month, start.day, tzinfo=timezone.utc)

    def _location(self, key: str) -> str:
        return f"oss://{getattr(self.bucket, 'bucket_name', '?')}/{key}"

    def _count_request(self) -> None:
        with self._lock:
            self._requests += 1

    def _read(self, key: str) -> bytes:
        """The object's content (empty when it does not exist yet); remembers its length."""
        self._count_request()
        try:
            result = self.bucket.get_object(key)
        except NoSuchKey:
            self._remember(key, 0)
            return b""
        except OssError as exc:
            raise BudgetStoreError(f"GetObject {self._location(key)}: {_describe(exc)}") from None
        too_large = BudgetStoreError(
            f"{self._location(key)} is more than {MAX_OBJECT_BYTES} bytes "
            f"({result.content_length or 'unknown length'}): not a budget object"
        )
        try:
            if (result.content_length or 0) > MAX_OBJECT_BYTES:
                raise too_large
            data = _read_at_most(result, MAX_OBJECT_BYTES + 1)
            if len(data) > MAX_OBJECT_BYTES:
                raise too_large
        except OssError as exc:
            raise BudgetStoreError(f"GetObject {self._location(key)}: {_describe(exc)}") from None
        finally:
            result.close()
        if result.object_type == "Appendable":
            next_position = result.headers.get("x-oss-next-append-position")
            self._remember(key, int(next_position) if next_position else len(data))
        return data

    def _remember(self, key: str, position: int) -> None:
        with self._lock:
            self._positions[key] = position

    def _append(self, key: str, line: bytes) -> None:
        """Append ``line`` at the end of ``key``, however many writers got there first."""
        with self._lock:
            position = self._positions.get(key, 0)
        conflicts = 0

        def attempt(seconds_left: float) -> None:
            nonlocal position, conflicts
            while True:
                self._count_request()
                try:
                    result = self.bucket.append_object(
                        key, position, line, headers={"Content-Type": CONTENT_TYPE}
                    )
                except PositionNotEqualToLength as exc:
                    conflicts += 1
                    if conflicts > self.conflicts:
                        raise BudgetStoreError(
                            f"AppendObject {self._location(key)}: still conflicting after "
                            f"{conflicts} attempts"
                        ) from None
                    position = exc.next_position
                    continue
                except OssError as exc:
                    # A lost response may hide an append that landed: the retry then meets a
                    # 409, appends the same line again, and the reader counts its id once.
                    raise _api_error(exc) from None
                self._remember(key, result.next_position or position + len(line))
                return

        try:
            with_retries(self.retry, "AppendObject", attempt, deadline=self.deadline)
        except ApiError as exc:
            tries = f" (after {exc.attempts} attempts)" if exc.attempts > 1 else ""
            raise BudgetStoreError(
                f"AppendObject {self._location(key)}: {exc.message}{tries}"
            ) from None


def _api_error(exc: OssError) -> ApiError:
    """An OSS failure in the terms of client.with_retries, which decides what is transient as
    for every API call: a network failure, throttling, 500/502/503/504; not a 403, a 404 or an
    oss2 client-side error."""
    if isinstance(exc, RequestError):
        return ApiError("AppendObject", "SDK.HttpError", _describe(exc))
    status = exc.status if exc.status > 0 else None
    code = exc.code or (f"HTTP {status}" if status else type(exc).__name__)
    return ApiError("AppendObject", code, _describe(exc), status, exc.request_id or None)


def _read_at_most(result: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = result.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _parse(data: bytes, store: str) -> list[_Revert]:
    """Every revert in the object, each id once; content that is not ours is an error."""
    reverts: dict[str, _Revert] = {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BudgetStoreError(f"{store} is not UTF-8 text: not a budget object") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            revert = _Revert(
                _parse_time(item["at"]), _clean_actor(item.get("actor")), str(item["id"])
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BudgetStoreError(f"{store} line {number} is not a budget entry") from None
        reverts.setdefault(revert.id, revert)
    return list(reverts.values())


def _clean_actor(actor: Any) -> str | None:
    if actor is None:
        return None
    if not isinstance(actor, str):
        raise ValueError("actor must be a string")
    return actor.strip()[:256] or None


def _describe(exc: OssError) -> str:
    """The OSS error code, message, HTTP status and request id; no headers, no URL query."""
    if isinstance(exc, RequestError):
        cause = getattr(exc, "exception", None)
        return redact(f"could not reach OSS ({type(cause).__name__ if cause else 'network'})")
    if exc.status < 0:  # oss2's client-side errors (ClientError, InconsistentError)
        return redact(f"{type(exc).__name__}: {exc.body}")
    code = exc.code or f"HTTP {exc.status}"
    text = f"{code}: {exc.message}" if exc.message else code
    details = [f"HTTP {exc.status}"]
    if exc.request_id:
        details.append(f"request id {exc.request_id}")
    return redact(f"{text} ({', '.join(details)})")


# -- building the bucket ------------------------------------------------------------------------


def region_from_endpoint(endpoint: str) -> str:
    """``https://oss-cn-hangzhou[-internal].aliyuncs.com`` -> ``cn-hangzhou``."""
    host = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}").hostname or ""
    match = _ENDPOINT_REGION.match(host)
    if not match:
        raise ValueError(f"cannot tell the OSS region from the endpoint {endpoint!r}; give it")
    return match.group(1)


def open_bucket(
    credentials: Credentials,
    bucket_name: str,
    endpoint: str,
    *,
    region: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> oss2.Bucket:
    """An ``oss2.Bucket`` that signs with OSS signature V4 (STS token included when present).

    V4, not oss2's default V1: OSS no longer accepts V1 from new accounts (since 2025-03-01)
    nor on new buckets (since 2025-09-01), and the template creates a new bucket.
    """
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the OSS endpoint must be https://, got {endpoint!r}")
    silence_oss2_logger()
    provider = oss2.credentials.StaticCredentialsProvider(
        credentials.access_key_id,
        credentials.access_key_secret,
        credentials.security_token or "",
    )
    return oss2.Bucket(
        oss2.ProviderAuthV4(provider),
        f"{parts.scheme}://{parts.netloc}",
        bucket_name,
        connect_timeout=timeout,
        region=region or region_from_endpoint(endpoint),
        app_name="secpref-guard",
    )


def silence_oss2_logger() -> None:
    """oss2 logs request headers (the STS token, the signature) at DEBUG: none of it may reach
    the guard's output. Failures are reported by this module, redacted."""
    oss2_logger = logging.getLogger("oss2")
    oss2_logger.setLevel(logging.CRITICAL + 1)
    oss2_logger.propagate = False


def from_settings(
    settings: Any,
    credentials: Credentials,
    region: str | None = None,
    *,
    retry: RetryPolicy | None = None,
    deadline: float | None = None,
) -> RevertBudget | None:
    """The budget the configuration asks for (GUARD_BUDGET_*), or None when no bucket is set.

    The endpoint defaults to the region's internal OSS endpoint (the function's region, from
    its context or FC_REGION); outside Function Compute GUARD_BUDGET_ENDPOINT must be given.
    ``retry`` and ``deadline`` bound the appends as the run's API calls are bounded (pass the
    invocation's deadline: a slow store then cannot hold the invocation past it).
    """
    from .config import ConfigError

    if not settings.budget_bucket:
        return None
    endpoint = settings.budget_endpoint
    if endpoint is None:
        if not region:
            raise ConfigError(
                "GUARD_BUDGET_ENDPOINT",
                "is needed where the function's region is unknown (outside Function Compute)",
            )
        endpoint = f"https://oss-{region}-internal.aliyuncs.com"
    host = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}").hostname or ""
    bucket_region = None if _ENDPOINT_REGION.match(host) else region
    try:
        bucket = open_bucket(credentials, settings.budget_bucket, endpoint, region=bucket_region)
    except ValueError as exc:
        raise ConfigError("GUARD_BUDGET_ENDPOINT", str(exc)) from None
    return RevertBudget(
        bucket,
        settings.max_reverts,
        settings.revert_window_minutes,
        prefix=settings.budget_prefix,
        retry=retry,
        deadline=deadline,
    )
