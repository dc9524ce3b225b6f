"""Handing batches of accounts to the worker function: Function Compute 3.0 InvokeFunction.

The worker is deployed by the fc3 component: a Function Compute 3.0 function, which has no
service, so it is invoked with FC 3.0 ``InvokeFunction``, ``POST /2023-03-30/functions/
{functionName}/invocations`` with ``x-fc-invocation-type: Async``, on the account endpoint
``https://<account id>.<region>.fc.aliyuncs.com``. One invocation per batch; a batch that cannot
be dispatched is recorded and the others still go out. ``map_bounded`` is the one bounded thread
pool of the guard (accounts of a run, batches of a dispatch).
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from .batch import Batch
from .client import ApiError, CallLog, RetryPolicy, with_retries
from .credentials import Credentials
from .logs import event
from .report import Dispatch

FC_API_VERSION = "2023-03-30"
DEFAULT_CONCURRENCY = 10


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


def map_bounded(fn: Callable[[Any], Any], items: Sequence[Any], concurrency: int) -> list[Any]:
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
            return Dispatch(batch.index, batch.total, batch.accounts, error=exc)
        event(
            logging.INFO,
            "batch dispatched",
            batch=batch.index,
            batches=batch.total,
            accounts=len(batch.accounts),
            invocation_request_id=request_id,
        )
        return Dispatch(batch.index, batch.total, batch.accounts, request_id)

    return map_bounded(send, batches, concurrency)
