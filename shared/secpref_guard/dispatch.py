"""Handing batches of accounts to the worker function: Function Compute 3.0 InvokeFunction.

The worker is deployed by the fc3 component: a Function Compute 3.0 function, which has no
service, so it is invoked with FC 3.0 ``InvokeFunction``, ``POST /2023-03-30/functions/
{functionName}/invocations`` with ``x-fc-invocation-type: Async``, on the account endpoint
``https://<account id>.<region>.fc.aliyuncs.com``, through the official FC 3.0 SDK
(worker_invoke.py, imported only when a run fans out). One invocation per batch; a batch that
cannot be dispatched is recorded and the others still go out. ``map_bounded`` is the one
bounded thread pool of the guard (accounts of a run, batches of a dispatch).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from .batch import Batch
from .client import ApiError
from .logs import event
from .report import Dispatch

FC_API_VERSION = "2023-03-30"


class Invoker(Protocol):
    """Queues one asynchronous invocation and returns its request id (worker_invoke.py's
    WorkerInvoker, on the official FC 3.0 SDK); ApiError when it fails."""

    def invoke_async(self, function_name: str, payload: bytes) -> str | None: ...


DEFAULT_CONCURRENCY = 10


def fc_endpoint(account_id: str, region: str, *, internal: bool = False) -> str:
    """The account endpoint of Function Compute in a region (``-internal`` inside the region)."""
    suffix = "-internal" if internal else ""
    return f"https://{account_id}.{region}{suffix}.fc.aliyuncs.com"


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
    invoker: Invoker,
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
