"""Enforcement across many accounts: in-process with bounded concurrency, or fanned out.

The scheduled function lists its targets (accounts.py). Up to ``in_process_threshold`` targets
it enforces them itself; past it, it cuts them into batches and dispatches one asynchronous
invocation of the worker function per batch, each payload within Function Compute's limit for
asynchronous invocations (128 KB). The worker enforces its batch on a bounded thread pool.
Either way every account ends as one ``engine.Outcome``: an account that fails (its role cannot
be assumed, an API error, a failed verification, a bug) is reported with the reason and never
stops the others. ``RunSummary`` counts them and is what the handlers return and log.

The invoke API. The worker is deployed by the fc3 component: a Function Compute 3.0 function,
which has no service, so fc2's ``invoke_function`` (FC 2.0 API, ``/2016-08-15/services/{s}/
functions/{f}/invocations``) cannot address it. The dispatcher calls FC 3.0 ``InvokeFunction``,
``POST /2023-03-30/functions/{functionName}/invocations`` with ``x-fc-invocation-type: Async``,
on the account endpoint ``https://<account id>.<region>.fc.aliyuncs.com``, signed with Function
Compute's own scheme (``Authorization: FC <AccessKeyId>:<base64 HMAC-SHA256>``, the scheme fc2
implements and that the fc3 component itself uses, through fc2, on 2023-03-30 paths). The
signature is computed here (tests prove it byte-identical to fc2's): fc2 cannot build the 3.0
path, and its error path logs the request headers, token and signature included, through the
root logger.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from . import engine
from .accounts import (
    AccessError,
    MemberCredentials,
    ResourceManagerClient,
    Skipped,
    Targets,
    account_in_scope,
    resolve_targets,
)
from .client import ApiError, CallLog, ImsClient, RetryPolicy, with_retries
from .config import GuardConfig
from .credentials import Credentials
from .logs import bind, event

FC_API_VERSION = "2023-03-30"
ASYNC_PAYLOAD_LIMIT = 128 * 1024  # FC: "the maximum payload for an asynchronous invocation"
# What a batch may weigh: under the limit whether "128 KB" means 131,072 or 128,000 bytes.
DEFAULT_MAX_PAYLOAD = 120_000
DEFAULT_BATCH_SIZE = 50
DEFAULT_CONCURRENCY = 10
DEFAULT_IN_PROCESS_THRESHOLD = 50  # one batch or fewer: not worth an invocation
BATCH_TYPE = "secpref-guard.batch"
BATCH_VERSION = 1


# --- Function Compute InvokeFunction (3.0), FC-signed --------------------------------------


def fc_endpoint(account_id: str, region: str, *, internal: bool = False) -> str:
    """The account endpoint of Function Compute in a region (``-internal`` inside the region)."""
    suffix = "-internal" if internal else ""
    return f"https://{account_id}.{region}{suffix}.fc.aliyuncs.com"


def fc_authorization(
    credentials: Credentials, method: str, path: str, headers: Mapping[str, str]
) -> str:
    """``FC <AccessKeyId>:<signature>``: HMAC-SHA256 with the secret over ``METHOD``,
    ``Content-MD5``, ``Content-Type``, ``Date`` (one per line), then every ``x-fc-`` header as
    ``name:value`` lines sorted by lower-case name, then the unescaped path."""
    lower = {name.lower(): value for name, value in headers.items()}
    fc_lines = "".join(
        f"{name}:{lower[name]}\n" for name in sorted(n for n in lower if n.startswith("x-fc-"))
    )
    text = "\n".join(
        [
            method.upper(),
            lower.get("content-md5", ""),
            lower.get("content-type", ""),
            lower.get("date", ""),
        ]
    )
    text += "\n" + fc_lines + path
    digest = hmac.new(credentials.access_key_secret.encode(), text.encode(), hashlib.sha256)
    return f"FC {credentials.access_key_id}:{base64.b64encode(digest.digest()).decode()}"


class FunctionInvoker:
    """Asynchronous invocations of a Function Compute 3.0 function, retried like RpcClient's
    calls (throttling, 5xx, connection errors) and failing with ApiError."""

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 5,
        read_timeout: float = 10,
        session: requests.Session | None = None,
    ) -> None:
        if "://" not in endpoint:
            raise ValueError(f"endpoint needs a scheme (https://...), got {endpoint!r}")
        self.endpoint = endpoint.rstrip("/")
        self.host = urlsplit(self.endpoint).netloc
        self.credentials = credentials
        self.retry = retry or RetryPolicy()
        self.timeout = (connect_timeout, read_timeout)
        self.session = session or requests.Session()
        self.log = CallLog()

    def invoke_async(
        self, function_name: str, payload: bytes, *, qualifier: str | None = None
    ) -> str | None:
        """Queue one invocation; the request id Function Compute gave it."""
        return with_retries(
            self.retry,
            "InvokeFunction",
            lambda left: self._invoke_once(function_name, payload, qualifier),
        )

    def _invoke_once(self, function_name: str, payload: bytes, qualifier: str | None) -> str | None:
        path = f"/{FC_API_VERSION}/functions/{function_name}/invocations"
        headers = {
            "host": self.host,
            "date": formatdate(usegmt=True),
            "content-type": "application/json",
            "x-fc-invocation-type": "Async",
            "user-agent": "secpref-guard",
        }
        if self.credentials.security_token:
            headers["x-fc-security-token"] = self.credentials.security_token
        headers["authorization"] = fc_authorization(self.credentials, "POST", path, headers)
        url = self.endpoint + quote(path, safe="/")
        params = {"qualifier": qualifier} if qualifier else None
        self.log.count_call()
        try:
            response = self.session.post(
                url, data=payload, headers=headers, params=params, timeout=self.timeout
            )
        except requests.Timeout as exc:
            raise ApiError("InvokeFunction", "SDK.TimeoutError", type(exc).__name__) from None
        except requests.RequestException as exc:
            raise ApiError("InvokeFunction", "SDK.HttpError", str(exc)) from None
        request_id = response.headers.get("x-fc-request-id")
        if request_id:
            self.log.request_ids.append(request_id)  # list.append is atomic
        if response.status_code < 400:
            return request_id
        code, message = "UnknownError", response.text[:300]
        try:
            document = response.json()
        except ValueError:
            document = None
        if isinstance(document, dict):
            code = str(
                document.get("ErrorCode")
                or document.get("errorCode")
                or document.get("Code")
                or code
            )
            message = str(
                document.get("ErrorMessage")
                or document.get("errorMessage")
                or document.get("Message")
                or message
            )
            request_id = request_id or document.get("RequestId")
        raise ApiError("InvokeFunction", code, message, response.status_code, request_id)


# --- batches --------------------------------------------------------------------------------


class BatchError(ValueError):
    """A worker payload that is not a batch of this guard; the message names the field."""


@dataclass(frozen=True)
class Batch:
    run_id: str
    index: int  # 1-based
    total: int
    accounts: tuple[str, ...]

    def payload(self) -> bytes:
        return _batch_payload(self.run_id, self.index, self.total, self.accounts)


def _batch_payload(run_id: str, index: int, total: int, accounts: Sequence[str]) -> bytes:
    document = {
        "type": BATCH_TYPE,
        "version": BATCH_VERSION,
        "run_id": run_id,
        "batch": index,
        "batches": total,
        "accounts": list(accounts),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def make_batches(
    accounts: Sequence[str],
    *,
    run_id: str,
    max_accounts: int = DEFAULT_BATCH_SIZE,
    max_bytes: int = DEFAULT_MAX_PAYLOAD,
) -> list[Batch]:
    """Consecutive batches of at most ``max_accounts`` accounts whose payload is at most
    ``max_bytes`` bytes."""
    if max_accounts < 1:
        raise ValueError("max_accounts must be at least 1")
    # The envelope with the widest numbers it can have: a batch count never exceeds the
    # number of accounts, so every real payload weighs at most what is measured here.
    widest = max(len(accounts), 1)
    envelope = len(_batch_payload(run_id, widest, widest, []))
    groups: list[list[str]] = []
    current: list[str] = []
    size = envelope
    for account in accounts:
        weight = len(json.dumps(account)) + (1 if current else 0)
        if current and (len(current) >= max_accounts or size + weight > max_bytes):
            groups.append(current)
            current, size, weight = [], envelope, weight - 1
        if envelope + weight > max_bytes:
            raise ValueError(f"account {account!r} alone exceeds {max_bytes} bytes of payload")
        current.append(account)
        size += weight
    if current:
        groups.append(current)
    batches = [Batch(run_id, i, len(groups), tuple(g)) for i, g in enumerate(groups, 1)]
    assert all(len(b.payload()) <= max_bytes for b in batches)
    return batches


def parse_batch(event_bytes: bytes | str) -> Batch:
    """The batch a worker invocation carries; BatchError names what is wrong."""
    try:
        document = json.loads(event_bytes)
    except (ValueError, TypeError) as exc:
        raise BatchError(f"the payload is not JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("type") != BATCH_TYPE:
        raise BatchError(f"the payload is not a {BATCH_TYPE} (field type)")
    if document.get("version") != BATCH_VERSION:
        raise BatchError(f"unsupported batch version {document.get('version')!r} (field version)")
    accounts = document.get("accounts")
    if not isinstance(accounts, list) or not all(
        isinstance(a, str) and a.isdigit() and len(a) <= 20 for a in accounts
    ):
        raise BatchError("accounts must be a list of account ids (field accounts)")
    index, total = document.get("batch"), document.get("batches")
    if not isinstance(index, int) or not isinstance(total, int) or not 1 <= index <= total:
        raise BatchError("batch and batches must be whole numbers, 1 <= batch <= batches")
    return Batch(str(document.get("run_id") or ""), index, total, tuple(accounts))


@dataclass
class Dispatch:
    """One batch handed to the worker, or the reason it could not be."""

    batch: Batch
    request_id: str | None = None
    error: ApiError | None = None

    def as_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "batch": self.batch.index,
            "accounts": len(self.batch.accounts),
            "request_id": self.request_id,
        }
        if self.error is not None:
            item["error"] = self.error.as_dict()
        return item


def dispatch(
    batches: Sequence[Batch],
    invoker: FunctionInvoker,
    function_name: str,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[Dispatch]:
    """Invoke the worker once per batch, asynchronously; a failed dispatch is recorded and the
    other batches still go out."""

    def send(batch: Batch) -> Dispatch:
        try:
            request_id = invoker.invoke_async(function_name, batch.payload())
        except ApiError as exc:
            event(
                logging.ERROR,
                "batch not dispatched",
                batch=batch.index,
                accounts=list(batch.accounts),
                **exc.as_dict(),
            )
            return Dispatch(batch, error=exc)
        event(
            logging.INFO,
            "batch dispatched",
            batch=batch.index,
            batches=batch.total,
            accounts=len(batch.accounts),
            invocation_request_id=request_id,
        )
        return Dispatch(batch, request_id)

    return _map_bounded(send, batches, concurrency)


# --- enforcement of many accounts -----------------------------------------------------------


def _map_bounded(fn: Callable[[Any], Any], items: Sequence[Any], concurrency: int) -> list[Any]:
    """``fn`` over ``items`` on at most ``concurrency`` threads, results in the items' order;
    each task runs in a copy of the caller's context, so log lines keep the invocation's
    fields."""
    if not items:
        return []
    workers = max(1, min(concurrency, len(items)))
    if workers == 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(workers, thread_name_prefix="secpref-guard") as pool:
        futures = [pool.submit(contextvars.copy_context().run, fn, item) for item in items]
        return [f.result() for f in futures]


def enforce_account(
    account: str,
    config: GuardConfig,
    access: MemberCredentials,
    *,
    ims_endpoint: str | None = None,
    write: bool = True,
    retry: RetryPolicy | None = None,
    budget: engine.Budget | None = None,
    actor: str | None = None,
    deadline: float | None = None,
) -> engine.Outcome:
    """One account, start to end: credentials, then the engine. Never raises: a failure is an
    Outcome with status ``error``, the reason and the error's code, logged at ERROR."""
    mode = config.settings.mode if write else "check"
    endpoint = ims_endpoint or config.settings.ims_endpoint
    started = time.perf_counter()
    with bind(account=account):
        try:
            credentials, assumed = access.lookup(account)
        except AccessError as exc:
            outcome = engine.Outcome(
                status="error",
                account=account,
                mode=mode,
                reason=str(exc),
                error=exc.as_dict(),
                api_calls=1,
            )
            return _failed(outcome, started)
        client = ImsClient(
            endpoint, credentials, deadline=deadline, **({"retry": retry} if retry else {})
        )
        try:
            outcome = engine.run(
                client, config, account=account, write=write, budget=budget, actor=actor
            )
        except Exception as exc:  # one account's failure, whatever it is, stays its own
            outcome = engine.failed(account, mode, exc)
            outcome.api_calls = client.log.calls
            outcome.request_ids = list(client.log.request_ids)
            if isinstance(exc, ApiError) and exc.code.startswith("InvalidSecurityToken"):
                access.forget(account)  # the next run assumes the role afresh
            outcome = _failed(outcome, started)
        if assumed:
            outcome.api_calls += 1
        if not access.is_own(account):
            outcome.extra["role_arn"] = access.role_arn(account)
        return outcome


def _failed(outcome: engine.Outcome, started: float) -> engine.Outcome:
    outcome.duration_ms = (time.perf_counter() - started) * 1000
    event(
        logging.ERROR,
        "account failed",
        account=outcome.account,
        status="error",
        reason=outcome.reason,
        error=outcome.error,
        api_calls=outcome.api_calls,
    )
    return outcome


def enforce_accounts(
    accounts: Sequence[str],
    config: GuardConfig,
    access: MemberCredentials,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    ims_endpoint: str | None = None,
    write: bool = True,
    retry: RetryPolicy | None = None,
    budget: engine.Budget | None = None,
    deadline: float | None = None,
) -> list[engine.Outcome]:
    """Every account, at most ``concurrency`` at a time; one Outcome per account, in order."""
    return _map_bounded(
        lambda account: enforce_account(
            account,
            config,
            access,
            ims_endpoint=ims_endpoint,
            write=write,
            retry=retry,
            budget=budget,
            deadline=deadline,
        ),
        accounts,
        concurrency,
    )


# --- the run summary ------------------------------------------------------------------------

_STATUS_ORDER = ("skipped", "compliant", "reverted", "drift", "contested")


@dataclass
class RunSummary:
    """What one run did to every target: the handlers' result and the run's log line."""

    run_id: str
    mode: str
    execution: str  # in-process | fan-out | worker
    outcomes: list[engine.Outcome] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    dispatches: list[Dispatch] = field(default_factory=list)
    targets: str = ""  # self | list | resource-directory | batch i/n
    duration_ms: float = 0.0
    listing_api_calls: int = 0  # ListAccounts pages read to find the targets

    @property
    def failures(self) -> list[dict[str, Any]]:
        failed = [
            {
                "account": o.account,
                "reason": o.reason,
                "code": (o.error or {}).get("code") or (o.error or {}).get("type"),
                "stage": (o.error or {}).get("stage", "enforce"),
            }
            for o in self.outcomes
            if o.status == "error"
        ]
        for d in self.dispatches:
            if d.error is not None:
                failed += [
                    {
                        "account": a,
                        "reason": f"batch {d.batch.index} not dispatched: {d.error}",
                        "code": d.error.code,
                        "stage": "dispatch",
                    }
                    for a in d.batch.accounts
                ]
        return failed

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("compliant", "reverted", "drift", "contested"), 0)
        for o in self.outcomes:
            if o.status in counts:
                counts[o.status] += 1
        handed = sum(len(d.batch.accounts) for d in self.dispatches)
        undelivered = sum(len(d.batch.accounts) for d in self.dispatches if d.error is not None)
        failed = sum(1 for o in self.outcomes if o.status == "error") + undelivered
        skipped = len(self.skipped) + sum(1 for o in self.outcomes if o.status == "skipped")
        return {
            "accounts": len(self.outcomes) + handed + len(self.skipped),
            **counts,
            "failed": failed,
            "skipped": skipped,
            "dispatched": handed - undelivered,
        }

    @property
    def ok(self) -> bool:
        """Every target is on the baseline or handed to a worker; nothing failed."""
        c = self.counts
        return c["failed"] == 0 and c["drift"] == 0 and c["contested"] == 0

    @property
    def status(self) -> str:
        """The interface's status for the whole run: the worst account's, where a failed
        account counts as drift (its state is unknown, so never compliant)."""
        c = self.counts
        worst = "skipped"
        for status in _STATUS_ORDER:
            if c.get(status):
                worst = status
        if c["failed"] and _STATUS_ORDER.index(worst) < _STATUS_ORDER.index("drift"):
            worst = "drift"
        return worst

    @property
    def reason(self) -> str:
        c = self.counts
        parts = [
            f"{c[k]} {k}"
            for k in (
                "compliant",
                "reverted",
                "drift",
                "contested",
                "failed",
                "skipped",
                "dispatched",
            )
            if c[k]
        ]
        text = f"{c['accounts']} accounts: " + (", ".join(parts) or "none enforced")
        failures = self.failures
        if failures:
            first = failures[0]
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            text += f"; failed {first['account']}: {first['reason']}{more}"
        if c["dispatched"]:
            text += (
                f"; {c['dispatched']} accounts handed to the worker in "
                f"{sum(1 for d in self.dispatches if d.error is None)} batches"
            )
        return text

    def as_dict(self) -> dict[str, Any]:
        drift = [{"account": o.account, **d.as_dict()} for o in self.outcomes for d in o.drift]
        return {
            "status": self.status,
            "drift": drift,
            "reason": self.reason,
            "run_id": self.run_id,
            "mode": self.mode,
            "execution": self.execution,
            "targets": self.targets,
            "counts": self.counts,
            "failed": self.failures,
            "skipped": [s.as_dict() for s in self.skipped],
            "accounts": [o.as_dict() for o in self.outcomes],
            "dispatches": [d.as_dict() for d in self.dispatches],
            "api_calls": sum(o.api_calls for o in self.outcomes)
            + len(self.dispatches)
            + self.listing_api_calls,
            "duration_ms": round(self.duration_ms, 1),
        }

    def log(self) -> None:
        level = logging.INFO if self.ok else logging.WARNING
        event(
            level,
            "run summary",
            run_id=self.run_id,
            execution=self.execution,
            status=self.status,
            counts=self.counts,
            failed=self.failures,
            skipped=[s.as_dict() for s in self.skipped],
        )


# --- the two entry points the handlers call -------------------------------------------------


@dataclass(frozen=True)
class FanoutOptions:
    worker_function: str | None = None  # the worker's function name; None: never fan out
    fc_endpoint: str | None = None  # fc_endpoint(account, region) in Function Compute
    in_process_threshold: int = DEFAULT_IN_PROCESS_THRESHOLD
    batch_size: int = DEFAULT_BATCH_SIZE
    concurrency: int = DEFAULT_CONCURRENCY
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def run_scheduled(
    config: GuardConfig,
    base: Credentials,
    *,
    own_account: str | None = None,
    options: FanoutOptions | None = None,
    access: MemberCredentials | None = None,
    run_id: str | None = None,
    retry: RetryPolicy | None = None,
    budget: engine.Budget | None = None,
    write: bool = True,
    deadline: float | None = None,
) -> RunSummary:
    """The timer's run: list the targets, then enforce them in-process or dispatch batches.
    ``write=False`` checks every target and writes nothing (the CLI's ``check``).

    Raises ApiError only when the targets cannot be listed (ListAccounts failed): then there
    is no run, and Function Compute records the failed invocation.
    """
    options = options or FanoutOptions()
    settings = config.settings
    started = time.perf_counter()
    run_id = run_id or new_run_id()
    kwargs: dict[str, Any] = {"retry": retry} if retry else {}
    directory: ResourceManagerClient | None = None
    if settings.targets == "resource-directory":
        directory = ResourceManagerClient(settings.resourcemanager_endpoint, base, **kwargs)
    targets: Targets = resolve_targets(
        settings,
        own_account=own_account,
        list_members=directory.list_accounts if directory else None,
    )
    summary = RunSummary(
        run_id, settings.mode, "in-process", skipped=list(targets.skipped), targets=targets.kind
    )
    summary.listing_api_calls = directory.log.calls if directory else 0
    with bind(run_id=run_id):
        if (
            write
            and options.worker_function
            and len(targets.accounts) > options.in_process_threshold
        ):
            if not options.fc_endpoint:
                raise ValueError("fan-out needs the Function Compute endpoint (fc_endpoint)")
            summary.execution = "fan-out"
            batches = make_batches(
                targets.accounts,
                run_id=run_id,
                max_accounts=options.batch_size,
                max_bytes=options.max_payload_bytes,
            )
            invoker = FunctionInvoker(options.fc_endpoint, base, **kwargs)
            summary.dispatches = dispatch(
                batches, invoker, options.worker_function, concurrency=options.concurrency
            )
        else:
            access = access or MemberCredentials.from_settings(
                settings, base, own_account=own_account, **kwargs
            )
            summary.outcomes = enforce_accounts(
                targets.accounts,
                config,
                access,
                concurrency=options.concurrency,
                retry=retry,
                budget=budget,
                write=write,
                deadline=deadline,
            )
        summary.duration_ms = (time.perf_counter() - started) * 1000
        summary.log()
    return summary


def run_worker(
    event_bytes: bytes | str,
    config: GuardConfig,
    base: Credentials,
    *,
    own_account: str | None = None,
    options: FanoutOptions | None = None,
    access: MemberCredentials | None = None,
    retry: RetryPolicy | None = None,
    budget: engine.Budget | None = None,
    deadline: float | None = None,
) -> RunSummary:
    """The worker's run: enforce the batch it was given (BatchError for a bad payload).

    The payload is checked, not trusted: an account the configuration puts out of scope
    (excluded, or not among explicit targets) is skipped with the reason.
    """
    options = options or FanoutOptions()
    batch = parse_batch(event_bytes)
    started = time.perf_counter()
    settings = config.settings
    accounts: list[str] = []
    skipped: list[Skipped] = []
    for account in dict.fromkeys(batch.accounts):
        reason = account_in_scope(settings, account, own_account)
        if reason is None:
            accounts.append(account)
        else:
            skipped.append(Skipped(account, reason))
    summary = RunSummary(
        batch.run_id,
        settings.mode,
        "worker",
        skipped=skipped,
        targets=f"batch {batch.index}/{batch.total}",
    )
    kwargs: dict[str, Any] = {"retry": retry} if retry else {}
    with bind(run_id=batch.run_id, batch=batch.index):
        access = access or MemberCredentials.from_settings(
            settings, base, own_account=own_account, **kwargs
        )
        summary.outcomes = enforce_accounts(
            accounts,
            config,
            access,
            concurrency=options.concurrency,
            retry=retry,
            budget=budget,
            deadline=deadline,
        )
        summary.duration_ms = (time.perf_counter() - started) * 1000
        summary.log()
    return summary
