"""The worker batch: the payload the scheduled function sends the worker, and its codec.

A batch is ``{"type": "secpref-guard.batch", "version": 1, "run_id", "batch", "batches",
"accounts": [ids]}``, each within Function Compute's limit for an asynchronous invocation's
payload (128 KB). Anyone allowed to invoke the worker can send one, so ``parse_batch`` reads it
as untrusted input (size, depth, types, at most ``MAX_BATCH_ACCOUNTS`` ids) and the run decides
scope for its accounts again, as for every trigger.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .payloads import EventError, load_json

ASYNC_PAYLOAD_LIMIT = 128 * 1024  # FC: "the maximum payload for an asynchronous invocation"
# What a batch may weigh: under the limit whether "128 KB" means 131,072 or 128,000 bytes.
DEFAULT_MAX_PAYLOAD = 120_000
DEFAULT_BATCH_SIZE = 50
MAX_BATCH_ACCOUNTS = 1000  # GUARD_BATCH_SIZE's maximum
BATCH_TYPE = "secpref-guard.batch"
BATCH_VERSION = 1
RUN_ID = re.compile(r"[0-9a-f]{1,32}")  # run.new_run_id's form: it is bound to every log line


class BatchError(EventError):
    """A worker payload that is not a batch of this guard; the message names the field."""

    code = "MalformedBatch"

    def __init__(self, problem: str) -> None:
        super().__init__(f"worker batch: {problem}")


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
    if isinstance(event_bytes, (bytes, bytearray)) and len(event_bytes) > ASYNC_PAYLOAD_LIMIT:
        raise BatchError(
            f"the payload has {len(event_bytes)} bytes, more than an asynchronous invocation "
            f"carries ({ASYNC_PAYLOAD_LIMIT})"
        )
    try:
        document = load_json(event_bytes, "worker batch")
    except EventError as exc:
        raise BatchError(str(exc).removeprefix("worker batch: ")) from None
    if not isinstance(document, dict) or document.get("type") != BATCH_TYPE:
        raise BatchError(f"the payload is not a {BATCH_TYPE} (field type)")
    if document.get("version") != BATCH_VERSION:
        raise BatchError(f"unsupported batch version {document.get('version')!r} (field version)")
    accounts = document.get("accounts")
    if not isinstance(accounts, list) or not all(
        isinstance(a, str) and a.isdigit() and len(a) <= 20 for a in accounts
    ):
        raise BatchError("accounts must be a list of account ids (field accounts)")
    if len(accounts) > MAX_BATCH_ACCOUNTS:
        raise BatchError(
            f"{len(accounts)} accounts, more than a batch may carry ({MAX_BATCH_ACCOUNTS}; "
            "field accounts)"
        )
    run_id = document.get("run_id", "")
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id or "0"):
        raise BatchError("run_id must be up to 32 hexadecimal digits (field run_id)")
    index, total = document.get("batch"), document.get("batches")
    if not isinstance(index, int) or not isinstance(total, int) or not 1 <= index <= total:
        raise BatchError("batch and batches must be whole numbers, 1 <= batch <= batches")
    return Batch(run_id, index, total, tuple(accounts))
