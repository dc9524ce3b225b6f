"""Issue 8's benchmark: what the revert budget costs a run.

The IMS emulator in-process (``mock_endpoint``, the SDK's real HTTP path) and a ``RevertBudget``
over the local OSS fake (tests/fake_oss.py, ``mock_oss``: oss2's real HTTP path, V4 signing
included), the fake accepting the emulator's key pair, which the guard uses for both. Both
services answer after the same emulated latency: the emulator's ``latency_seconds`` and, since
the fake has no delay of its own, a sleep wrapped around ``FakeOss.handle`` here.

Each iteration runs, interleaved: a compliant ``engine.run`` without and with the budget, then
(the account re-drifted before each, untimed) a drifted run without and with the budget, and one
bare oss2 GetObject of the budget's object. The first iterations are discarded.

Gating: store requests per run, from the fake's own record of what reached it (the budget's
``requests`` counter cross-checks it): a compliant run sends none; a drifted run sends exactly
one GetObject, which ends before the SetSecurityPreference starts, then one AppendObject (two
within the window of the next period's start: the revert goes into both period objects).
Informational: whether the AppendObject was in flight while the verifying GetSecurityPreference
was (its interval at the fake overlaps that Get's interval at the emulator). Timing (PASS/FAIL,
not gating): the added wall time of a drifted run, the median of the per-iteration differences
(with budget - without), in round trips = added / latency; target at most one. The same
figure divided by a measured bare GetObject round trip (latency + oss2's own cost) is printed
as a cross-check.
"""

from __future__ import annotations

import importlib
import os
import statistics
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from results import Report, Row

from secpref_guard import engine
from secpref_guard.budget import RevertBudget, open_bucket
from secpref_guard.config import load_config
from secpref_guard.credentials import Credentials
from secpref_guard.emulator import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    DEFAULT_ACCOUNT,
    Emulator,
    mock_endpoint,
)
from secpref_guard.ims import ImsClient
from secpref_guard.logs import configure

TESTS = Path(__file__).resolve().parent.parent
ENDPOINT = "http://127.0.0.1:8765"
TARGET_ROUND_TRIPS = 1.0


def fake_oss() -> ModuleType:
    """tests/fake_oss.py (tests/ is not a package: put it on the path)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    return importlib.import_module("fake_oss")


class Timeline:
    """When each request was inside the emulator or the fake (latency sleep included)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()

    def wrap(self, inner: Any, name_of: Any, delay: float = 0.0) -> Any:
        def handle(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                if delay:
                    time.sleep(delay)
                return inner(*args, **kwargs)
            finally:
                with self._lock:
                    self.spans.append((name_of(*args), start, time.perf_counter()))

        return handle

    def mark(self) -> int:
        with self._lock:
            return len(self.spans)

    def since(self, mark: int) -> list[tuple[str, float, float]]:
        with self._lock:
            return list(self.spans[mark:])


def _ims_action(method: str, url: str, headers: Any, body: Any) -> str:
    params = Emulator._params(url, dict(headers), body)
    return params.get("Action", "?")


def _oss_operation(method: str, url: str, headers: Any, body: Any) -> str:
    if "append" in url:
        return "AppendObject"
    return "GetObject" if method == "GET" else f"OSS {method}"


@dataclass
class Samples:
    wall_ms: list[float] = field(default_factory=list)
    ims_calls: list[int] = field(default_factory=list)
    oss_ops: list[list[str]] = field(default_factory=list)
    budget_requests: list[int] = field(default_factory=list)
    overlapped: list[bool] = field(default_factory=list)
    read_before_write: list[bool] = field(default_factory=list)  # GetObject ends before the Set
    # the period objects a revert at that moment is appended to: 1, or 2 within the window of
    # the next period's start (a window that crosses it must see the revert from either side)
    objects: list[int] = field(default_factory=list)
    append_tail_ms: list[float] = field(default_factory=list)  # append end - verifying Get end


def bench_budget(
    report: Report,
    *,
    runs: int,
    warmup: int,
    latency: float,
    baseline_env: Mapping[str, str],
    drift: Mapping[str, str],
) -> None:
    fo = fake_oss()
    emulator = Emulator.with_default_key(latency_seconds=latency)
    config = load_config({**baseline_env, "GUARD_IMS_ENDPOINT": ENDPOINT})
    key = Credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET)
    fake = fo.FakeOss(keys={DEFAULT_ACCESS_KEY_ID: (DEFAULT_ACCESS_KEY_SECRET, None)})
    timeline = Timeline()
    emulator.handle = timeline.wrap(emulator.handle, _ims_action)  # type: ignore[method-assign]
    fake.handle = timeline.wrap(fake.handle, _oss_operation, delay=latency)
    client = ImsClient(ENDPOINT, key)
    bucket = open_bucket(key, fo.DEFAULT_BUCKET, fo.DEFAULT_ENDPOINT)
    budget = RevertBudget(bucket, max_reverts=1_000_000, window_minutes=60)
    samples = {k: Samples() for k in ("compliant", "compliant+budget", "drifted", "drifted+budget")}
    bare_ms: list[float] = []

    def measure(kind: str, drifted: bool, with_budget: bool) -> None:
        emulator.ims.put(DEFAULT_ACCOUNT, **config.baseline)
        if drifted:
            emulator.ims.put(DEFAULT_ACCOUNT, **drift)
        ims_mark, oss_mark = len(emulator.ims.calls), len(fake.calls)
        span_mark, requests_before = timeline.mark(), budget.requests
        start = time.perf_counter()
        outcome = engine.run(
            client, config, account=DEFAULT_ACCOUNT, budget=budget if with_budget else None
        )
        wall = time.perf_counter() - start
        expected = "reverted" if drifted else "compliant"
        if outcome.status != expected:
            raise RuntimeError(f"{kind}: {outcome.status!r} ({outcome.reason}), not {expected!r}")
        s = samples[kind]
        s.wall_ms.append(wall * 1000)
        s.ims_calls.append(len(emulator.ims.calls) - ims_mark)
        s.oss_ops.append([c.operation for c in fake.calls[oss_mark:]])
        s.budget_requests.append(budget.requests - requests_before)
        now = budget.clock()
        periods = {
            budget.key_for(DEFAULT_ACCOUNT, now),
            budget.key_for(DEFAULT_ACCOUNT, now + budget.window),
        }
        s.objects.append(len(periods))
        spans = timeline.since(span_mark)
        gets = [sp for sp in spans if sp[0] == "GetSecurityPreference"]
        appends = [sp for sp in spans if sp[0] == "AppendObject"]
        s.overlapped.append(
            bool(gets and appends) and appends[0][1] < gets[-1][2] and gets[-1][1] < appends[0][2]
        )
        if gets and appends:
            s.append_tail_ms.append((appends[-1][2] - gets[-1][2]) * 1000)
        reads = [sp for sp in spans if sp[0] == "GetObject"]
        sets = [sp for sp in spans if sp[0] == "SetSecurityPreference"]
        s.read_before_write.append(bool(reads and sets) and reads[0][2] <= sets[0][1])

    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed below
    configure("INFO", stream=devnull)
    try:
        with mock_endpoint(emulator, ENDPOINT), fo.mock_oss(fake):
            for i in range(warmup + runs):
                if i == warmup:
                    for kind in samples:
                        samples[kind] = Samples()
                    bare_ms.clear()
                measure("compliant", drifted=False, with_budget=False)
                measure("compliant+budget", drifted=False, with_budget=True)
                measure("drifted", drifted=True, with_budget=False)
                measure("drifted+budget", drifted=True, with_budget=True)
                stored = budget.key_for(DEFAULT_ACCOUNT, budget.clock())
                start = time.perf_counter()
                result = bucket.get_object(stored)
                result.read()
                bare_ms.append((time.perf_counter() - start) * 1000)
    finally:
        configure("CRITICAL")
        devnull.close()

    lat_ms = latency * 1000
    compliant, compliant_b = samples["compliant"], samples["compliant+budget"]
    drifted, drifted_b = samples["drifted"], samples["drifted+budget"]
    ok_compliant = all(not ops for ops in compliant_b.oss_ops) and all(
        n == 0 for n in compliant_b.budget_requests
    )
    ok_drifted = (
        all(
            ops == ["GetObject"] + ["AppendObject"] * n
            for ops, n in zip(drifted_b.oss_ops, drifted_b.objects, strict=True)
        )
        and all(
            r == 1 + n for r, n in zip(drifted_b.budget_requests, drifted_b.objects, strict=True)
        )
        and all(drifted_b.read_before_write)
    )
    for kind, want in (
        ("compliant", 1),
        ("compliant+budget", 1),
        ("drifted", 3),
        ("drifted+budget", 3),
    ):
        if any(n != want for n in samples[kind].ims_calls):
            report.errors.append(f"revert budget: {kind} runs made IMS calls other than {want}")
    report.add(
        Row(
            "budget.compliant.store_requests",
            f"revert budget: store requests per compliant run ({lat_ms:g} ms store and IMS)",
            [float(len(ops)) for ops in compliant_b.oss_ops],
            "calls",
            "= 0 every run",
            passed=ok_compliant,
            gating=True,
        )
    )
    report.add(
        Row(
            "budget.drifted.store_requests",
            "revert budget: store requests per drifted run",
            [float(len(ops)) for ops in drifted_b.oss_ops],
            "calls",
            "= Get + Append(s)",
            passed=ok_drifted,
            gating=True,
        )
    )
    report.add(
        Row(
            "budget.drifted.append_overlaps_verify",
            "AppendObject in flight during the verifying Get",
            [float(sum(drifted_b.overlapped))],
            "runs",
            f"= {len(drifted_b.overlapped)} runs",
            passed=all(drifted_b.overlapped),
            indent=1,
        )
    )
    report.add(
        Row(
            "budget.drifted.append_tail_ms",
            "AppendObject ends after the verifying Get by",
            drifted_b.append_tail_ms,
            "ms",
            indent=1,
        )
    )
    report.add(Row("budget.drifted.without_ms", "drifted run, no budget", drifted.wall_ms, "ms"))
    report.add(Row("budget.drifted.with_ms", "drifted run, with budget", drifted_b.wall_ms, "ms"))
    added = [b - a for a, b in zip(drifted.wall_ms, drifted_b.wall_ms, strict=True)]
    report.add(
        Row("budget.drifted.added_ms", "added (paired: with - without)", added, "ms", indent=1)
    )
    round_trips = [a / lat_ms for a in added]
    rt = report.add(
        Row(
            "budget.drifted.added_round_trips",
            f"added / latency ({lat_ms:g} ms), in round trips",
            round_trips,
            "RT",
            f"<= {TARGET_ROUND_TRIPS:g} round trip",
            indent=1,
        )
    )
    rt.passed = rt.median <= TARGET_ROUND_TRIPS
    bare = statistics.median(bare_ms)
    report.add(
        Row(
            "budget.bare_get_ms",
            "bare oss2 GetObject round trip (latency + oss2)",
            bare_ms,
            "ms",
            indent=1,
        )
    )
    report.add(
        Row(
            "budget.drifted.added_bare_round_trips",
            "added / bare GetObject round trip (cross-check)",
            [a / bare for a in added],
            "RT",
            indent=1,
        )
    )
    report.add(
        Row("budget.compliant.without_ms", "compliant run, no budget", compliant.wall_ms, "ms")
    )
    report.add(
        Row("budget.compliant.with_ms", "compliant run, with budget", compliant_b.wall_ms, "ms")
    )
    report.add(
        Row(
            "budget.compliant.added_ms",
            "added (paired: with - without)",
            [b - a for a, b in zip(compliant.wall_ms, compliant_b.wall_ms, strict=True)],
            "ms",
            indent=1,
        )
    )
    report.notes.append(
        f"revert budget (issue 8): engine.run against the in-process IMS emulator with a "
        f"RevertBudget over the OSS fake (mock_oss, oss2's HTTP path, V4-signed with the "
        f"emulator's key); both answer after {lat_ms:g} ms (a sleep wrapped around "
        f"FakeOss.handle). Interleaved per iteration: compliant without/with budget, drifted "
        f"without/with budget (re-drifted before, untimed), one bare oss2 GetObject; "
        f"{warmup} warm-up iterations discarded. Store requests (gating) are what reached the "
        f"fake; added time = median of the paired differences, / latency = round trips "
        f"(PASS/FAIL only)."
    )
