"""`make build` produces the code Function Compute runs, for template.yml's runtime (python3.12
unless ``vars.runtime`` says python3.10): the handler files at its root, the library, and the
pinned dependencies for manylinux x86_64 and that CPython, byte-code compiled for it, without
what the runtime does not need.

The proof that nothing needed was left out: a clean interpreter of that runtime (a venv without
pip: only the standard library, so nothing the runtime preinstalls is relied on), isolated and
writing no byte-code, runs every handler and every feature path from the built directory
against the emulator and the fake OSS served by another process over loopback
(tests/bench/servers.py): the timer with a drifted and a compliant account, the revert budget in
OSS, DingTalk and webhook notifications, an audit event, an organisation-wide run (Resource
Manager, STS), the fan-out dispatch to the worker function, a worker batch, and the CLI.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import requires
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
CODE = ROOT / "build" / "code"
PINS = ROOT / "functions" / "requirements.txt"
TEMPLATE = ROOT / "template.yml"
TIMER = (ROOT / "events" / "timer.json").read_text()
CONSOLE_EVENT = (ROOT / "events" / "set-in-console.json").read_text()

sys.path.insert(0, str(ROOT / "tests" / "bench"))
from deployed import Servers, start_servers  # noqa: E402

# What each pinned distribution is imported as: the build keeps no dist-info to tell.
IMPORT_NAMES = {
    "aliyun-python-sdk-core": "aliyunsdkcore",
    "aliyun-python-sdk-kms": "aliyunsdkkms",
    "annotated-types": "annotated_types",
    "certifi": "certifi",
    "charset-normalizer": "charset_normalizer",
    "crcmod": "crcmod",
    "idna": "idna",
    "jmespath": "jmespath",
    "oss2": "oss2",
    "pycryptodome": "Crypto",
    "pydantic": "pydantic",
    "pydantic-core": "pydantic_core",
    "requests": "requests",
    "six": "six",
    "tenacity": "tenacity",
    "typing-extensions": "typing_extensions",
    "typing-inspection": "typing_inspection",
    "urllib3": "urllib3",
    "cryptography": "cryptography",
    # the FC 3.0 SDK of the fan-out's dispatch (worker_invoke.py) and what it brings
    "alibabacloud-fc20230330": "alibabacloud_fc20230330",
    "alibabacloud-tea-openapi": "alibabacloud_tea_openapi",
    "alibabacloud-credentials": "alibabacloud_credentials",
    "alibabacloud-credentials-api": "alibabacloud_credentials_api",
    "alibabacloud-gateway-spi": "alibabacloud_gateway_spi",
    "alibabacloud-tea-util": "alibabacloud_tea_util",
    "alibabacloud-tea": "Tea",
    "darabonba-core": "darabonba",
    "aiohttp": "aiohttp",
    "aiohappyeyeballs": "aiohappyeyeballs",
    "aiosignal": "aiosignal",
    "frozenlist": "frozenlist",
    "multidict": "multidict",
    "propcache": "propcache",
    "yarl": "yarl",
    "async-timeout": "async_timeout",
    "attrs": "attrs",
    "aiofiles": "aiofiles",
    "apscheduler": "apscheduler",
    "tzlocal": "tzlocal",
    "websocket-client": "websocket",
}
# Pinned but not deployed, by import name: cffi's Python half and pycparser (cryptography needs
# only the compiled _cffi_backend; pycryptodome then uses ctypes instead of parsing C at import).
LEFT_OUT = {"cffi": "cffi", "pycparser": "pycparser"}


def pins() -> dict[str, str]:
    result = {}
    for line in PINS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{line!r} in {PINS.name} is not pinned with =="
            result[canonicalize_name(name)] = version
    return result


def test_pins_satisfy_the_package_dependencies() -> None:
    pinned = pins()
    runtime = [Requirement(r) for r in requires("secpref-guard") or [] if "extra ==" not in r]
    assert runtime
    for requirement in runtime:
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is a dependency but not pinned in {PINS.name}"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{requirement.name}=={pinned[name]} does not satisfy {requirement.specifier}"
        )


def template_runtime() -> str:
    return str(yaml.safe_load(TEMPLATE.read_text())["vars"]["runtime"])


@dataclass(frozen=True)
class Build:
    code: Path
    runtime: str  # python3.12
    python: str  # the interpreter of that runtime on this machine

    @property
    def version(self) -> tuple[int, int]:
        major, minor = self.runtime.removeprefix("python").split(".")
        return int(major), int(minor)


@pytest.fixture(scope="module")
def built() -> Build:
    completed = subprocess.run(
        ["make", "build"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    runtime, python = (ROOT / "build" / "code.runtime").read_text().split()
    return Build(CODE, runtime, python)


def test_the_build_is_for_the_runtime_of_every_function_in_the_template(built: Build) -> None:
    assert template_runtime() == "python3.12"
    assert built.runtime == template_runtime()
    functions = [r["props"] for r in yaml.safe_load(TEMPLATE.read_text())["resources"].values()]
    runtimes = [p["runtime"] for p in functions if "handler" in p]
    assert runtimes == ["${vars.runtime}"] * 3  # one entry decides for all three


def test_an_interpreter_the_machine_lacks_fails_the_build_naming_it() -> None:
    completed = subprocess.run(
        ["make", "build", "FC_RUNTIME=python3.99", "CODE=build/code-none"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode != 0
    assert "no python3.99 interpreter on this machine" in completed.stderr
    assert not (ROOT / "build" / "code-none").exists()


def test_a_machine_without_gnu_strip_fails_the_build_before_writing_anything() -> None:
    completed = subprocess.run(
        ["make", "build", "STRIP=/bin/false", "CODE=build/code-none"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode != 0
    assert "make build: no GNU strip on this machine" in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 2  # the message and make's own line
    assert not (ROOT / "build" / "code-none").exists()


def test_build_has_handlers_at_its_root_and_nothing_the_runtime_does_not_need(
    built: Build,
) -> None:
    code = built.code
    for handler in ("scheduled.py", "audit_event.py", "worker.py"):
        assert (code / handler).is_file()
    assert (code / "secpref_guard" / "engine.py").is_file()
    assert not (code / "secpref_guard" / "emulator").exists()
    assert not (code / "bin").exists()  # console scripts with this machine's shebang
    assert list(code.glob("*.dist-info")) == []
    assert [p for p in code.rglob("*") if p.is_dir() and p.name in ("tests", "SelfTest")] == []
    for name in LEFT_OUT.values():
        assert not (code / name).exists(), name
    binaries = [p.name for p in code.rglob("*.so")]
    assert binaries
    tag = "cpython-{}{}-x86_64-linux-gnu".format(*built.version)
    assert all(tag in b or "abi3" in b for b in binaries), binaries
    sources = {".pyi", ".pyx", ".pxd", ".pxi", ".c", ".h"}
    assert [p for p in code.rglob("*") if p.suffix in sources] == []


def elf_sections(path: Path) -> set[str]:
    """The section names of a 64-bit little-endian ELF file (a compiled extension)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF", path
    assert (data[4], data[5]) == (2, 1), path  # 64-bit, little-endian
    offset = int.from_bytes(data[0x28:0x30], "little")
    size, count, names = (int.from_bytes(data[i : i + 2], "little") for i in (0x3A, 0x3C, 0x3E))
    headers = [data[offset + i * size : offset + (i + 1) * size] for i in range(count)]
    table = int.from_bytes(headers[names][0x18:0x20], "little")
    found = set()
    for header in headers:
        start = table + int.from_bytes(header[:4], "little")
        found.add(data[start : data.index(b"\0", start)].decode())
    return found


def test_compiled_extensions_ship_without_symbol_tables_or_debug_sections(built: Build) -> None:
    binaries = [p for p in built.code.rglob("*.so*") if p.is_file()]
    assert binaries
    for binary in binaries:
        sections = elf_sections(binary)
        assert ".dynsym" in sections, binary  # what the dynamic loader needs
        unneeded = {s for s in sections if s == ".symtab" or s.startswith(".debug")}
        assert unneeded == set(), (binary, unneeded)


def test_every_pinned_distribution_is_deployed_or_left_out_on_purpose(built: Build) -> None:
    for name in pins():
        assert name in IMPORT_NAMES or name in LEFT_OUT, f"{name}: say how it is imported"
        if name in IMPORT_NAMES:
            module = IMPORT_NAMES[name]
            assert (built.code / module).is_dir() or (built.code / f"{module}.py").is_file(), name


def test_every_module_has_unchecked_byte_code_for_the_runtime(built: Build) -> None:
    """FC's code directory is read-only: without byte-code shipped, every cold start compiles
    every module it imports. Unchecked hash-based .pyc (PEP 552) are used whatever the files'
    timestamps after unpacking."""
    cache_tag = "cpython-{}{}".format(*built.version)
    sources = [p for p in built.code.rglob("*.py")]
    assert len(sources) > 200
    for source in sources:
        compiled = source.parent / "__pycache__" / f"{source.stem}.{cache_tag}.pyc"
        assert compiled.is_file(), source
        flags = int.from_bytes(compiled.read_bytes()[4:8], "little")
        assert flags == 0b01, f"{compiled}: not unchecked-hash (flags {flags:#b})"


# --- the clean runtime ---------------------------------------------------------------------

CONTEXT = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, sys.argv[1])

    class Function:
        name = os.environ["TEST_FUNCTION"]
        handler = "x.handler"

    class Context:  # the python3.12 runtime's: no credentials, no service
        request_id = "clean-runtime"
        region = "cn-hangzhou"
        account_id = os.environ["TEST_ACCOUNT"]
        function = Function()

    """
)
HANDLER_SCRIPT = CONTEXT + textwrap.dedent(
    """
    module, _, name = sys.argv[2].partition(".")
    handler = getattr(__import__(module), name)
    result = json.loads(handler(sys.argv[3].encode(), Context()))
    deployed = [m for m in ("responses", "pytest", "yaml") if m in sys.modules]
    loaded = sorted({n.split(".")[0] for n in sys.modules})
    guard = sorted(n for n in sys.modules if n.startswith("secpref_guard."))
    print(json.dumps({"result": result, "unexpected": deployed, "loaded": loaded,
                      "guard": guard, "frozen": __import__("gc").get_freeze_count()}))
    """
)
CLI_SCRIPT = (
    "import sys; sys.path.insert(0, sys.argv[1]); from secpref_guard.cli import main; "
    "sys.argv[1:2] = []; sys.exit(main())"
)


@pytest.fixture(scope="module")
def runtime(built: Build, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv of the runtime's interpreter without pip: the standard library and nothing else."""
    clean = tmp_path_factory.mktemp("runtime") / "venv"
    subprocess.run(
        [built.python, "-m", "venv", "--without-pip", str(clean)], check=True, timeout=120
    )
    return clean / "bin" / "python"


GUARD_ENV = {
    "GUARD_MODE": "enforce",
    "GUARD_SELF_ROLE": "secpref-guard-role",
    "BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS": "false",
    "BASELINE_ENABLE_SAVE_MFA_TICKET": "false",
    "BASELINE_LOGIN_SESSION_DURATION": "6",
    "BASELINE_MFA_OPERATION_FOR_LOGIN": "mandatory",
    "BASELINE_MAX_IDLE_DAYS_FOR_USERS": "90",
    "GUARD_MAX_REVERTS": "3",
    "GUARD_REVERT_WINDOW_MINUTES": "60",
    "GUARD_BUDGET_BUCKET": "secpref-guard-budget-test",
}


@pytest.fixture(scope="module")
def servers(built: Build) -> Iterator[Servers]:
    started = start_servers(GUARD_ENV)
    yield started
    started.stop()


def guard_env(servers: Servers, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONDONTWRITEBYTECODE": "1",
        **GUARD_ENV,
        "GUARD_IMS_ENDPOINT": servers.ims,
        "GUARD_STS_ENDPOINT": servers.ims,
        "GUARD_RESOURCEMANAGER_ENDPOINT": servers.ims,
        "GUARD_FC_ENDPOINT": servers.ims,
        "GUARD_BUDGET_ENDPOINT": servers.oss,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": servers.key[0],
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": servers.key[1],
        "ALIBABA_CLOUD_SECURITY_TOKEN": servers.key[2],
        "FC_REGION": "cn-hangzhou",
        "TEST_ACCOUNT": servers.account,
        "TEST_FUNCTION": "secpref-guard-scheduled",
    }
    env.update(extra)
    return env


def run_clean(
    python: Path, args: list[str], env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-I", "-B", *args],
        cwd="/",
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def invoke(
    built: Build, python: Path, handler: str, event: str, env: Mapping[str, str]
) -> dict[str, Any]:
    completed = run_clean(python, ["-c", HANDLER_SCRIPT, str(built.code), handler, event], env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    assert outcome["unexpected"] == [], outcome["unexpected"]
    return outcome


def test_a_run_that_does_not_fan_out_never_loads_cryptography(
    built: Build, runtime: Path, servers: Servers
) -> None:
    """Only the fan-out's FC 3.0 SDK needs it; the IMS SDK's RSA signer stays unloaded."""
    servers.control("drifted")
    outcome = invoke(built, runtime, "scheduled.handler", TIMER, guard_env(servers))
    assert outcome["result"]["status"] == "reverted"
    assert "oss2" in outcome["loaded"]  # the budget, which imports the IMS SDK too
    assert "cryptography" not in outcome["loaded"]


def test_a_compliant_timer_run_imports_only_what_it_needs(
    built: Build, runtime: Path, servers: Servers
) -> None:
    """Issue 13: no audit-event models, revert budget store, notifier, retry machinery or FC
    3.0 SDK on a compliant timer run; what it imported is frozen out of the collector's sight."""
    servers.control("compliant")
    env = guard_env(servers, GUARD_DINGTALK_WEBHOOK=f"{servers.ims}/_bench/sink")
    outcome = invoke(built, runtime, "scheduled.handler", TIMER, env)
    assert outcome["result"]["status"] == "compliant"
    unneeded = {"oss2", "tenacity", "cryptography", "alibabacloud_fc20230330", "requests"}
    assert unneeded.isdisjoint(outcome["loaded"]), unneeded & set(outcome["loaded"])
    assert "aliyunsdkcore" in outcome["loaded"]
    for module in (
        "events",
        "budget",
        "notify.notifier",
        "notify.dingtalk",
        "worker_invoke",
        "timer",
    ):
        assert (f"secpref_guard.{module}" in outcome["guard"]) == (module == "timer"), module
    assert outcome["frozen"] > 10_000  # the modules, classes and schemas of the cold start


def calls_since(servers: Servers, mark: int) -> list[str]:
    return [f"{c['action']}@{c['account']}" for c in servers.control("calls")[mark:]]


needs_x86_64 = pytest.mark.skipif(
    platform.machine() != "x86_64", reason="the build targets manylinux x86_64"
)


@needs_x86_64
def test_the_timer_reverts_counts_the_budget_and_notifies_then_finds_it_compliant(
    built: Build, runtime: Path, servers: Servers
) -> None:
    servers.control("drifted")
    mark = len(servers.control("calls"))
    env = guard_env(
        servers,
        GUARD_WEBHOOK_URL=f"{servers.ims}/_bench/sink/webhook",
        GUARD_DINGTALK_WEBHOOK=f"{servers.ims}/_bench/sink/dingtalk?access_token=t0ken",
        GUARD_DINGTALK_SECRET="SECtest-signing-secret",
    )
    outcome = invoke(built, runtime, "scheduled.handler", TIMER, env)
    result = outcome["result"]
    assert result["status"] == "reverted", result
    own = servers.account
    assert calls_since(servers, mark) == [
        f"GetSecurityPreference@{own}",
        f"SetSecurityPreference@{own}",
        f"GetSecurityPreference@{own}",
    ]
    assert {"oss2", "Crypto", "requests"} <= set(outcome["loaded"])  # budget and channels ran
    received = {item["name"].split("?")[0] for item in servers.control("sink")}
    assert received == {"webhook", "dingtalk"}

    again = invoke(built, runtime, "scheduled.handler", TIMER, guard_env(servers))["result"]
    assert again["status"] == "compliant"
    assert again["api_calls"] == 1


@needs_x86_64
def test_an_audit_event_is_read_and_enforced(built: Build, runtime: Path, servers: Servers) -> None:
    servers.control("drifted")
    event = CONSOLE_EVENT.replace("1234567890123456", servers.account)
    env = guard_env(servers, TEST_FUNCTION="secpref-guard-audit-event")
    result = invoke(built, runtime, "audit_event.handler", event, env)["result"]
    assert result["status"] == "reverted", result
    assert result["actor"]


@needs_x86_64
def test_an_organisation_wide_run_and_its_fan_out_and_a_worker_batch(
    built: Build, runtime: Path, servers: Servers
) -> None:
    for account in servers.members:
        servers.control("drifted", account)
    servers.control("compliant")
    org = {"GUARD_TARGETS": "resource-directory", "GUARD_BUDGET_BUCKET": ""}
    org.update(GUARD_MAX_REVERTS="", GUARD_REVERT_WINDOW_MINUTES="")
    env = {k: v for k, v in guard_env(servers, **org).items() if v}

    in_process = invoke(built, runtime, "scheduled.handler", TIMER, env)["result"]
    assert in_process["status"] == "reverted", in_process
    assert in_process["counts"]["reverted"] == len(servers.members)

    for account in servers.members:
        servers.control("drifted", account)
    mark = len(servers.control("calls"))
    fan_out = {
        **env,
        "GUARD_WORKER_FUNCTION": "secpref-guard-worker",
        "GUARD_FANOUT_THRESHOLD": "1",
        "GUARD_BATCH_SIZE": "1",
    }
    dispatched = invoke(built, runtime, "scheduled.handler", TIMER, fan_out)["result"]
    assert dispatched["status"] == "skipped", dispatched
    invoked = [c for c in calls_since(servers, mark) if c.startswith("InvokeFunction")]
    assert len(invoked) == len(servers.members) + 1  # one batch per account, the own included

    from secpref_guard.batch import Batch

    batch = Batch("c1ea4e0000000001", 1, 1, tuple(servers.members)).payload().decode()
    worker_env = {**env, "TEST_FUNCTION": "secpref-guard-worker"}
    worked = invoke(built, runtime, "worker.handler", batch, worker_env)["result"]
    assert worked["status"] == "reverted", worked
    assert worked["counts"]["reverted"] == len(servers.members)


@needs_x86_64
def test_the_command_line_runs_from_the_build(
    built: Build, runtime: Path, servers: Servers
) -> None:
    servers.control("drifted")
    env = guard_env(servers)
    check = run_clean(runtime, ["-c", CLI_SCRIPT, str(built.code), "check", "--json"], env)
    assert check.returncode == 2, check.stderr
    enforce = run_clean(runtime, ["-c", CLI_SCRIPT, str(built.code), "enforce"], env)
    assert enforce.returncode == 0, enforce.stderr
    policy = run_clean(runtime, ["-c", CLI_SCRIPT, str(built.code), "control-policy"], env)
    assert policy.returncode == 0, policy.stderr
    assert json.loads(policy.stdout)["Statement"]
