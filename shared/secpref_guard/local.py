"""Run a Function Compute handler locally, as the runtime would: the handler file from the
function's code directory, the event file's bytes, and a context like the python3.10 runtime's
(credentials from the ALIBABA_CLOUD_* variables)."""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LocalCredentials:
    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class LocalFunction:
    name: str
    handler: str
    memory: int = 128
    timeout: int = 60


@dataclass(frozen=True)
class LocalContext:
    request_id: str
    function: LocalFunction
    credentials: LocalCredentials | None
    region: str = "cn-hangzhou"
    account_id: str | None = None


def find_functions_dir(explicit: str | None = None) -> Path:
    candidates = (
        [Path(explicit)]
        if explicit
        else [
            Path.cwd() / "functions",
            Path(__file__).resolve().parents[2] / "functions",  # an editable install of the repo
        ]
    )
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "no functions directory: run from the repository or pass --functions-dir"
    )


def load_handler(handler: str, functions_dir: Path) -> Any:
    module_name, sep, function_name = handler.rpartition(".")
    if not sep or not module_name or "/" in module_name or "." in module_name:
        raise ValueError(f"handler {handler!r} is not <file>.<function>, e.g. scheduled.handler")
    path = functions_dir / f"{module_name}.py"
    if not path.is_file():
        known = sorted(p.stem for p in functions_dir.glob("*.py") if not p.stem.startswith("_"))
        raise FileNotFoundError(
            f"handler {handler!r}: no {path}; handler files there: {', '.join(known)}"
        )
    spec = importlib.util.spec_from_file_location(f"_fc_handler_{module_name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise AttributeError(f"handler {handler!r}: {path} has no function {function_name!r}")
    return function


def local_context(handler: str) -> LocalContext:
    key_id = os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID")
    secret = os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    credentials = (
        LocalCredentials(key_id, secret, os.environ.get("ALIBABA_CLOUD_SECURITY_TOKEN"))
        if key_id and secret
        else None
    )
    return LocalContext(
        request_id=str(uuid.uuid4()),
        function=LocalFunction(name=handler.split(".")[0], handler=handler),
        credentials=credentials,
        account_id=os.environ.get("GUARD_LOCAL_ACCOUNT_ID"),
    )


def invoke_handler(handler: str, event_file: str, functions_dir: str | None = None) -> Any:
    """Call the handler with the event file's bytes and a local context; return its result."""
    function = load_handler(handler, find_functions_dir(functions_dir))
    event = Path(event_file).read_bytes()
    from .handlers import reset_instance

    reset_instance()  # a fresh instance: configuration is read now
    return function(event, local_context(handler))
