"""A stand-in for Function Compute's Python runtime, for the benchmark (not a test).

Does for one invocation what the runtime does on a cold instance: put the code directory first
on the path, import the handler's file by the name template.yml gives (``scheduled.handler``:
function ``handler`` of ``scheduled.py``), and call it with the event as bytes and a context of
the python3.12 runtime: request id, function, region and account id, and no ``credentials``
attribute (that runtime gives the role's credentials only as ALIBABA_CLOUD_* variables). Only
the standard library is imported here. The handler's result is the last stdout line; the moment
it returned (``time.monotonic``, the system's monotonic clock) is the last stderr line, for the
bench's figure without the interpreter's exit (Function Compute does not end an instance after
an invocation).

    python -I fc_runtime.py CODE_DIR HANDLER EVENT_JSON
"""

import importlib
import sys
import time


class Function:
    def __init__(self, name: str) -> None:
        self.name = name
        self.handler = sys.argv[2]
        self.memory = 128
        self.timeout = 60


class Context:
    def __init__(self, function: str) -> None:
        self.request_id = "bench-cold-invocation"
        self.region = "cn-hangzhou"
        self.account_id = sys.argv[4] if len(sys.argv) > 4 else None
        self.function = Function(function)


def main() -> None:
    code, handler, event = sys.argv[1], sys.argv[2], sys.argv[3]
    sys.path.insert(0, code)
    module_name, _, function_name = handler.rpartition(".")
    function = getattr(importlib.import_module(module_name), function_name)
    result = function(event.encode(), Context(f"secpref-guard-{module_name}"))
    returned = time.monotonic()
    sys.stdout.write(result + "\n")
    sys.stderr.write(f"\nfc-runtime returned {returned!r}\n")


if __name__ == "__main__":
    main()
