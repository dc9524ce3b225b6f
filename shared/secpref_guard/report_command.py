"""``secpref-guard report``: the evidence of one read-only run, as CSV, OCSF JSON or HTML.

The run is the one ``check`` makes (``cli.run_targets`` with ``write=False``, any
GUARD_TARGETS); evidence/ turns its report into rows and renders them. The report goes to
stdout or, with ``--output``, to a file that is written whole or not at all. A run over many
accounts prints a progress line on stderr now and then. Exit status as ``check``: 0 every
account compliant, 2 drift found (exempt and report-only fields included), 1 an account
failed or the run could not start.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from .errors import GuardError
from .evidence import FORMATS

PROGRESS_SECONDS = 1.0  # at most one progress line per second ...
PROGRESS_STEP = 0.10  # ... and per tenth of the accounts


class OutputError(GuardError):
    """The report cannot be written where --output says."""

    code = "OutputNotWritable"


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    report = sub.add_parser(
        "report",
        parents=[common],
        help="read-only evidence for auditors: every account and baseline field, as CSV, "
        "OCSF JSON or HTML",
    )
    report.add_argument(
        "--format", choices=FORMATS, default="csv", help="csv (default), ocsf or html"
    )
    report.add_argument(
        "--output", default=None, metavar="FILE", help="write to FILE instead of stdout"
    )


class Progress:
    """``report: 120/1000 accounts`` on stderr, at most once per second and per tenth of the
    accounts, and the last one when the run ends; nothing for a run of one account."""

    def __init__(
        self, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stream = stream
        self.clock = clock
        self.last_time: float | None = None
        self.last_done = 0
        self.lines = 0

    def __call__(self, outcome: object, done: int, total: int) -> None:
        if total <= 1:
            return
        now = self.clock()
        if self.last_time is None:
            self.last_time = now  # the run's start: the first second counts from here
        due = now - self.last_time >= PROGRESS_SECONDS
        stepped = done - self.last_done >= max(1, round(total * PROGRESS_STEP))
        if done == total or (due and stepped):
            self.last_time, self.last_done = now, done
            self.lines += 1
            print(f"report: {done}/{total} accounts", file=self.stream or sys.stderr, flush=True)


def _check_output(path: str | None) -> Path | None:
    """Fail before the run, not after it, when the file cannot be written."""
    if path is None:
        return None
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"--output {path}: is a directory; name a file")
    folder = target.parent
    if not folder.is_dir():
        raise OutputError(f"--output {path}: the directory {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"--output {path}: the directory {folder} is not writable")
    return target


def _write(target: Path, content: str) -> None:
    """The whole file or none of it: a temporary file next to it, renamed over it."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(content)
        os.replace(temporary, target)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise OutputError(f"--output {target}: {exc.strerror or exc}") from None


def main(args: argparse.Namespace) -> int:
    from . import cli
    from .evidence import evidence, render
    from .logs import redact

    target = _check_output(args.output)
    started = datetime.now(timezone.utc)
    report, config = cli.run_targets("report", write=False, on_account=Progress())
    content = render(evidence(report, config, checked_at=started), args.format)
    if target is None:
        sys.stdout.write(content)
        sys.stdout.flush()
    else:
        _write(target, content)
    failures = report.failures
    if failures:
        first = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        print(
            f"secpref-guard: error: account {first.account}: {redact(first.reason)}{more}",
            file=sys.stderr,
        )
    return cli.exit_status(report)
