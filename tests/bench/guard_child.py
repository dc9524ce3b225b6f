"""One guard run in a fresh interpreter: the child process of the benchmark (not a test).

It does what a cold Function Compute invocation or ``secpref-guard enforce`` does, in order:
import the library, configure logging and load the configuration from the environment, build the
IMS client, call ``engine.run``. It stamps each step with the system-wide monotonic clock
(CLOCK_MONOTONIC, the same clock in every process of the machine) so the parent can put them on
one time line with the moment it spawned this process and the moment its emulator saw the first
request. The last line on stdout is a JSON object with the stamps and the outcome.

Nothing else is imported before the library so that the import step costs what it costs in
production (the library decides what it pulls in).
"""

import time

T_MAIN = time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def _now() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def main() -> None:
    stamps = {"main": T_MAIN}

    from secpref_guard import engine
    from secpref_guard.client import ImsClient
    from secpref_guard.config import load_config
    from secpref_guard.credentials import resolve
    from secpref_guard.logs import configure

    stamps["imported"] = _now()
    configure("INFO")  # as a handler does: JSON log lines on stderr (the parent discards them)
    config = load_config()
    stamps["configured"] = _now()
    client = ImsClient(config.settings.ims_endpoint, resolve(None))
    stamps["client"] = _now()
    outcome = engine.run(client, config)
    stamps["done"] = _now()

    import json  # after the measured part; already loaded by the library anyway

    print(
        json.dumps(
            {
                "stamps": stamps,
                "status": outcome.status,
                "api_calls": outcome.api_calls,
                "vmhwm_kb": _vmhwm_kb(),
            }
        )
    )


def _vmhwm_kb() -> int | None:
    """Peak resident set of this process's own address space (Linux), for cross-checking."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


if __name__ == "__main__":
    main()
