"""The README's `sh` blocks as a script: every command of every block, in order, with the exit
status (and, for a handler's result, the status) its comment promises.

A block is run unless its first line is one of these comments:

- ``# needs an Alibaba Cloud account``: the Deploy commands;
- ``# needs the aliyun CLI``: a tool no registry this project installs from carries;
- ``# the set-up commands``: `make demo` and `make test` (the suite runs `make demo` by itself,
  and `make test` is the suite);
- ``# the examples' emulator``: the emulator the other blocks run against, started by the test
  itself (on a free port).

A command's comment says what it does: ``exit N`` anywhere in it is the exit status expected
(0 otherwise), and a first word that is a result status (``reverted: ...``) is the status of the
JSON document the command prints.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
CLOUD = "# needs an Alibaba Cloud account"
ALIYUN_CLI = "# needs the aliyun CLI"
SETUP = "# the set-up commands"
EMULATOR = "# the examples' emulator"
README_PORT = 8765
STATUSES = ("compliant", "reverted", "drift", "skipped", "contested")

_BLOCK = re.compile(r"^(?P<indent>[ \t]*)```sh\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class Command:
    block: int  # 1-based, among the README's sh blocks
    text: str  # as written, continuation lines and comment included
    exit_status: int
    status: str | None  # the result document's status, when the comment names one

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0]


def sh_blocks(text: str) -> list[str]:
    return [m.group("body") for m in _BLOCK.finditer(text)]


def marker(block: str) -> str | None:
    first = block.lstrip().splitlines()[0] if block.strip() else ""
    for mark in (CLOUD, ALIYUN_CLI, SETUP, EMULATOR):
        if first.startswith(mark):
            return mark
    return None


def _complete(text: str) -> bool:
    if text.endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:  # an open quote: the command goes on on the next line
        return False
    return True


def commands(block: str) -> list[str]:
    """The block's commands, each with its continuation lines; comment-only lines dropped."""
    found, current = [], ""
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current = f"{current}\n{line}" if current else line
        if _complete(current.rstrip()):
            found.append(current)
            current = ""
    assert not current, f"an unfinished command in the README: {current!r}"
    return found


def comment(command: str) -> str:
    """The comment after the command on its last line."""
    last = command.splitlines()[-1]
    for match in re.finditer(r"\s#\s?", last):
        if _complete(last[: match.start()]):
            return last[match.end() :].strip()
    return ""


def expectation(block_number: int, command: str) -> Command:
    said = comment(command)
    exit_status = re.search(r"\bexit (\d)\b", said)
    first_word = re.match(r"[a-z-]+", said)
    status = first_word.group(0) if first_word and first_word.group(0) in STATUSES else None
    return Command(block_number, command, int(exit_status.group(1)) if exit_status else 0, status)


def runnable(text: str) -> tuple[str, list[Command]]:
    """The emulator's command line and every command to run against it, in order."""
    emulator: list[str] = []
    run: list[Command] = []
    for number, block in enumerate(sh_blocks(text), 1):
        mark = marker(block)
        if mark in (CLOUD, ALIYUN_CLI, SETUP):
            continue
        if mark == EMULATOR:
            assert not run, "the examples' emulator must come before the examples"
            emulator.extend(commands(block))
            continue
        run.extend(expectation(number, c) for c in commands(block))
    assert len(emulator) == 1, f"one examples' emulator block with one command: {emulator}"
    return emulator[0], run


def on_port(text: str, port: int) -> str:
    """The README's endpoints moved to another port (the only change the test makes)."""
    return text.replace(f"127.0.0.1:{README_PORT}", f"127.0.0.1:{port}")


def script(run: list[Command], port: int, results: str) -> str:
    """One bash script: each command in the same shell (exports carry on), its output and
    exit status kept as ``<results>/<n>.out``, ``.err``, ``.rc``."""
    lines = []
    for n, c in enumerate(run):
        lines.append(
            f"{{\n{on_port(c.text, port)}\n}} >{results}/{n}.out 2>{results}/{n}.err\n"
            f"echo $? >{results}/{n}.rc"
        )
    return "\n".join(lines) + "\n"
