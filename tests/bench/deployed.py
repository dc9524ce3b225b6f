"""Issue 13's benchmark: the deployed path, whole process, beside a stdlib-only floor.

What is run, for every code directory given (``make bench`` builds one per runtime it finds:
build/code for python3.12 and build/code-python3.10):
- the handler that template.yml names for the timer function, from that directory, by a stand-in
  for the Function Compute runtime (``fc_runtime.py``: imports ``<file>`` and calls
  ``<file>.handler`` with the event bytes and a python3.12-style context), one compliant and
  one drifted invocation;
- ``secpref-guard check`` (``secpref_guard.cli.main``) from the same directory, one compliant
  (exit 0) and one drifted (exit 2) account;
- the floor: ``stdlib_guard.py`` making one signed GetSecurityPreference, and, for every guard
  figure, the same IMS requests that guard run made (recorded by the emulator in the warm-up
  round: action and parameters), signed with hmac, sent with urllib, parsed with json.

How: every child is the runtime's interpreter with ``-I -B`` (isolated: no PYTHON* variables,
no user site, no current directory; ``-B``: no byte-code written at run time, as on FC's
read-only code directory; ``-I`` ignores PYTHONDONTWRITEBYTECODE, which is set as well), in an
environment made of template.yml's ``vars.environment`` read from the file (the revert budget
included, the bucket's ``${config('AccountID')}`` filled in), with the IMS endpoint pointed at
the emulator and ``GUARD_BUDGET_ENDPOINT`` at the fake OSS, both served over loopback HTTP by
another process (``servers.py``), the role's key in ALIBABA_CLOUD_* and FC_REGION as the runtime
sets them. Each child is started by a launcher (``python -S``, imports nothing) that takes
``time.perf_counter`` just before ``posix_spawn`` and just after ``wait4`` returns, and the
child's own ``ru_maxrss``; so the figure is the whole process, start to exit, interpreter
shutdown included, and the memory is that child's alone. One round runs every figure once,
interleaved so that machine noise hits each alike; the first round is discarded (page cache);
medians over the rounds. The ratio is the median of the guard's figure over the median of its
stdlib equivalent in the same run (the judged figure, wall time); the same ratio of the
children's CPU time (user + system, from ``wait4``) is printed as a cross-check that a busy
machine moves less. The stdlib equivalent makes the IMS requests only: the drifted handler's
two revert-budget requests to the fake OSS (GetObject, AppendObject) are not in it.

The state: before every compliant figure the account is put on the baseline, before every
drifted one it is drifted (four fields) and the budget bucket emptied (every drifted run is the
window's first revert), through an unsigned control door of the servers process. The status of
every run and its IMS request count are checked against the warm-up round's; a difference is an
error, not a figure.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from results import Report, Row

from secpref_guard.emulator import DEFAULT_ACCOUNT

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TEMPLATE = ROOT / "template.yml"
TIMER_EVENT = (ROOT / "events" / "timer.json").read_text()
ACCOUNT = DEFAULT_ACCOUNT  # the emulated organisation's management account: the guard's own
TARGET_RATIO = 3.0
TARGET_PEAK_MB = 60.0
TARGET_CODE_MB = 20.0

LAUNCHER = """\
import os, sys, time
start = time.monotonic()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
elapsed = time.monotonic() - start
cpu = usage.ru_utime + usage.ru_stime
print("launcher", os.waitstatus_to_exitcode(status), usage.ru_maxrss, elapsed, cpu, start,
      flush=True)
"""

CLI = "import sys; sys.path.insert(0, sys.argv[1]); from secpref_guard.cli import main; " + (
    "sys.argv[1:2] = []; sys.exit(main())"
)


def template_environment(account: str) -> dict[str, str]:
    """``vars.environment`` of template.yml as Serverless Devs renders it for this account:
    ``${vars.NAME}`` from the template's vars, ``${config('AccountID')}`` the account."""
    document = yaml.safe_load(TEMPLATE.read_text())
    variables = document["vars"]

    def fill(match: re.Match[str]) -> str:
        expression = match.group(1)
        if expression == "config('AccountID')":
            return account
        name = expression.removeprefix("vars.")
        if expression.startswith("vars.") and isinstance(variables.get(name), (str, int)):
            return str(variables[name])
        raise RuntimeError(f"template.yml: the bench cannot fill ${{{expression}}}")

    return {
        name: re.sub(r"\$\{([^}]*)\}", fill, str(value))
        for name, value in variables["environment"].items()
    }


def timer_handler() -> str:
    """The handler of the function whose trigger is the timer, as template.yml names it."""
    document = yaml.safe_load(TEMPLATE.read_text())
    for resource in document["resources"].values():
        props = resource.get("props", {})
        if any(t.get("triggerType") == "timer" for t in props.get("triggers", [])):
            return props["handler"]
    raise RuntimeError("template.yml has no function with a timer trigger")


@dataclass
class Servers:
    """servers.py, running: the endpoints, the guard's key (id, secret, STS token)."""

    ims: str
    oss: str
    key: list[str]
    account: str
    members: list[str]
    process: subprocess.Popen[str]

    def control(self, what: str, account: str | None = None) -> Any:
        method = "GET" if what in ("calls", "sink") else "POST"
        query = f"?account={account}" if account else ""
        url = f"{self.ims}/_bench/{what}{query}"
        request = urllib.request.Request(url, method=method, data=None)  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - loopback
            return json.loads(reply.read())

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


def start_servers(env: Mapping[str, str], members: int = 3) -> Servers:
    """servers.py in its own process, with the guard's configuration in its environment."""
    bucket = env.get("GUARD_BUDGET_BUCKET") or "secpref-guard-budget"
    process = subprocess.Popen(
        [sys.executable, str(HERE / "servers.py"), bucket, str(members)],
        env={**os.environ, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    word, _, ready = process.stdout.readline().partition(" ")
    if word != "ready":
        process.kill()
        raise RuntimeError("the emulator and fake OSS (servers.py) did not start")
    info = json.loads(ready)
    return Servers(info["ims"], info["oss"], info["key"], info["account"], info["members"], process)


@dataclass
class Run:
    code: int
    maxrss_mb: float
    seconds: float
    cpu_seconds: float  # the child's user + system time: less moved by a busy machine
    returned_seconds: float | None  # spawn to the handler's return (fc_runtime.py), no exit
    stdout: str
    stderr: str


def launch(args: list[str], env: Mapping[str, str]) -> Run:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        subprocess.run(
            [sys.executable, "-S", "-c", LAUNCHER, *args],
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            check=False,
            timeout=120,
        )
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    head, _, last = stdout.rstrip("\n").rpartition("\n")
    word, *rest = last.split()
    if word != "launcher":
        raise RuntimeError(f"launcher failed: {stderr[-2000:]}")
    marks = re.findall(r"^fc-runtime returned (\S+)$", stderr, re.MULTILINE)
    returned = float(marks[-1]) - float(rest[4]) if marks else None
    return Run(
        int(rest[0]), int(rest[1]) / 1024, float(rest[2]), float(rest[3]), returned, head, stderr
    )


@dataclass
class Figure:
    key: str
    label: str
    args: list[str]
    state: str | None  # "compliant", "drifted" or None (no change)
    check: Any  # Run -> None; raises when the run did not do what it should
    samples: list[float]
    memory: list[float]
    cpu: list[float] = field(default_factory=list)
    returned: list[float] = field(default_factory=list)  # handler figures: until it returned
    requests: list[list[Any]] | None = None  # the IMS requests of a guard run (warm-up round)
    floor: Figure | None = None


def handler_status(expected: str) -> Any:
    def check(run: Run) -> None:
        if run.code != 0:
            raise RuntimeError(f"handler exited {run.code}: {run.stderr.strip()[-1500:]}")
        status = json.loads(run.stdout.strip().splitlines()[-1])["status"]
        if status != expected:
            raise RuntimeError(f"handler reported {status!r}, expected {expected!r}")

    return check


def exit_code(expected: int) -> Any:
    def check(run: Run) -> None:
        if run.code != expected:
            raise RuntimeError(f"exit {run.code}, expected {expected}: {run.stderr[-1500:]}")

    return check


def code_size_mb(code: Path) -> float:
    """The code directory unpacked: every file's size (what the instance extracts)."""
    return sum(p.stat().st_size for p in code.rglob("*") if p.is_file()) / 1e6


def bench_deployed(
    report: Report, codes: list[tuple[str, Path, str]], rounds: int
) -> dict[str, str]:
    """``codes``: (runtime, code directory, that runtime's interpreter) per build. Returns the
    ``-X importtime`` logs of one compliant and one drifted handler run of the first build."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(template_environment(ACCOUNT))
    servers = start_servers(env)
    env.update(
        GUARD_IMS_ENDPOINT=servers.ims,
        GUARD_BUDGET_ENDPOINT=servers.oss,
        ALIBABA_CLOUD_ACCESS_KEY_ID=servers.key[0],
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=servers.key[1],
        ALIBABA_CLOUD_SECURITY_TOKEN=servers.key[2],
        FC_REGION="cn-hangzhou",
    )
    handler = timer_handler()
    figures: list[Figure] = []
    try:
        for runtime, code, python in codes:
            py = [python, "-I", "-B"]
            stdlib = [*py, str(HERE / "stdlib_guard.py"), servers.ims, *servers.key]
            one_get = json.dumps([["GetSecurityPreference", {}]])
            floor = Figure(
                f"{runtime}.stdlib_one_request",
                f"{runtime}: stdlib-only signed request (1 Get; hmac, urllib, json)",
                [*stdlib, one_get],
                None,
                exit_code(0),
                [],
                [],
            )
            figures.append(floor)
            runner = [*py, str(HERE / "fc_runtime.py"), str(code), handler, TIMER_EVENT, ACCOUNT]
            cli = [*py, "-c", CLI, str(code), "check"]
            for key, label, args, state, check in (
                ("handler.compliant", f"{handler}, compliant", runner, "compliant", "compliant"),
                (
                    "handler.drifted",
                    f"{handler}, drifted (reverted)",
                    runner,
                    "drifted",
                    "reverted",
                ),
                ("check.compliant", "secpref-guard check, compliant", cli, "compliant", 0),
                ("check.drifted", "secpref-guard check, drifted", cli, "drifted", 2),
            ):
                checker = handler_status(check) if isinstance(check, str) else exit_code(check)
                guard = Figure(
                    f"{runtime}.{key}", f"{runtime}: {label}", args, state, checker, [], []
                )
                guard.floor = Figure(
                    f"{runtime}.{key}.stdlib",
                    "stdlib-only, the same IMS requests",
                    stdlib,
                    None,
                    exit_code(0),
                    [],
                    [],
                )
                figures += [guard, guard.floor]

        for round_number in range(rounds + 1):
            for figure in figures:
                if figure.state:
                    servers.control(figure.state)
                before = len(servers.control("calls"))
                args = figure.args
                if figure.requests is None and figure.key.endswith(".stdlib"):
                    raise RuntimeError(f"{figure.key}: no requests recorded")
                if figure.key.endswith(".stdlib"):
                    args = [*args, json.dumps(figure.requests)]
                run = launch(args, env)
                figure.check(run)
                made = [[c["action"], c["params"]] for c in servers.control("calls")[before:]]
                if figure.floor is not None:
                    if figure.floor.requests is None:
                        figure.floor.requests = made
                    elif [m[0] for m in made] != [r[0] for r in figure.floor.requests]:
                        raise RuntimeError(f"{figure.key}: requests changed: {made}")
                if round_number:  # the first round warms the page cache
                    figure.samples.append(run.seconds * 1000)
                    figure.memory.append(run.maxrss_mb)
                    figure.cpu.append(run.cpu_seconds * 1000)
                    if run.returned_seconds is not None:
                        figure.returned.append(run.returned_seconds * 1000)
        logs = {}
        runtime, code, python = codes[0]
        for state in ("compliant", "drifted"):
            servers.control(state)
            args = [python, "-I", "-B", "-X", "importtime", str(HERE / "fc_runtime.py")]
            traced = launch([*args, str(code), handler, TIMER_EVENT, ACCOUNT], env)
            logs[f"{handler} ({runtime}, {state})"] = traced.stderr
    finally:
        servers.stop()

    for runtime, code, _ in codes:
        size = code_size_mb(code)
        report.add(
            Row(
                f"deployed.{runtime}.code_mb",
                f"{runtime}: code directory unpacked ({code.name})",
                [size],
                "MB",
                f"< {TARGET_CODE_MB:g} MB",
                passed=size < TARGET_CODE_MB,
            )
        )
    floors: dict[str, float] = {}
    for figure in figures:
        if figure.key.endswith("stdlib_one_request"):
            floors[figure.key.split(".")[0]] = statistics.median(figure.samples)
            report.add(Row(f"deployed.{figure.key}_ms", figure.label, figure.samples, "ms"))
            continue
        if figure.floor is None:
            continue
        floor_median = statistics.median(figure.floor.samples)
        ratio = statistics.median(figure.samples) / floor_median
        actions = ", ".join(
            r[0].replace("SecurityPreference", "SP") for r in figure.floor.requests or []
        )
        report.add(
            Row(f"deployed.{figure.key}_ms", f"{figure.label} [{actions}]", figure.samples, "ms")
        )
        report.add(
            Row(
                f"deployed.{figure.key}.stdlib_ms",
                figure.floor.label,
                figure.floor.samples,
                "ms",
                indent=1,
            )
        )
        report.add(
            Row(
                f"deployed.{figure.key}.ratio",
                "ratio to that stdlib run (medians)",
                [ratio],
                "x",
                f"<= {TARGET_RATIO:g}x",
                passed=ratio <= TARGET_RATIO,
                indent=1,
            )
        )
        cpu_ratio = statistics.median(figure.cpu) / statistics.median(figure.floor.cpu)
        report.add(
            Row(
                f"deployed.{figure.key}.cpu_ratio",
                "cross-check: CPU time (user + sys) ratio, same runs",
                [cpu_ratio],
                "x",
                indent=1,
            )
        )
        if figure.returned:  # a handler: what an invocation sees (the instance lives on)
            returned_ratio = statistics.median(figure.returned) / floor_median
            report.add(
                Row(
                    f"deployed.{figure.key}.returned_ms",
                    "spawn to the handler's return (the interpreter's exit not counted)",
                    figure.returned,
                    "ms",
                    indent=1,
                )
            )
            report.add(
                Row(
                    f"deployed.{figure.key}.returned_ratio",
                    "  its ratio to the stdlib run (whole process)",
                    [returned_ratio],
                    "x",
                    indent=1,
                )
            )
        report.add(
            Row(
                f"deployed.{figure.key}.peak_mb",
                "peak memory of the process (ru_maxrss)",
                figure.memory,
                "MB",
                f"< {TARGET_PEAK_MB:g} MB",
                passed=max(figure.memory) < TARGET_PEAK_MB,
                indent=1,
            )
        )
    report.extra["deployed"] = {
        "rounds": rounds,
        "handler": handler,
        "codes": {runtime: {"dir": str(code), "python": python} for runtime, code, python in codes},
        "stdlib_one_request_ms": floors,
        "requests": {f.key: [r[0] for r in f.floor.requests or []] for f in figures if f.floor},
    }
    return logs
