"""The ``secpref-guard`` command line (see the README and the public interface)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from pydantic import ValidationError

from . import engine
from .client import ApiError, ImsClient
from .config import ConfigError, GuardConfig, load_config
from .control_policy import PolicyError
from .credentials import CredentialsError, resolve
from .handlers import LOG_LEVELS, HandlerError
from .logs import configure, redact

EXIT_OK, EXIT_ERROR, EXIT_DRIFT = 0, 1, 2
KNOWN_ERRORS = (
    ConfigError,
    CredentialsError,
    ApiError,
    engine.VerificationError,
    PolicyError,
    HandlerError,
    FileNotFoundError,
)


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1 (argparse's 2 would read as "drift found" to a pipeline)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def _common(default: Any) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=default, help="machine-readable output on stdout"
    )
    common.add_argument(
        "--debug", action="store_true", default=default, help="a traceback on errors"
    )
    return common


def _parser() -> argparse.ArgumentParser:
    # --json and --debug work before or after the command: the command's copies only set them
    common = _common(argparse.SUPPRESS)
    parser = _Parser(
        prog="secpref-guard",
        description="Keep the account's RAM security preferences on the baseline.",
        parents=[_common(False)],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "check",
        parents=[common],
        help="compare the live preference with the baseline (exit 2 on drift)",
    )
    sub.add_parser(
        "enforce", parents=[common], help="revert drift with SetSecurityPreference and verify it"
    )

    policy = sub.add_parser(
        "control-policy",
        parents=[common],
        help="print a Resource Directory control policy that prevents the drift",
    )
    policy.add_argument(
        "--guard-role",
        default=None,
        help="the guard's RAM role, exempted besides the member-access role (GUARD_MEMBER_ROLE)",
    )
    policy.add_argument(
        "--guard-account",
        default=None,
        help="the account the guard's role lives in: exempt that role there only (recommended)",
    )
    policy.add_argument("--indent", type=int, default=None, help="pretty-print with this indent")

    invoke = sub.add_parser(
        "invoke", parents=[common], help="run a Function Compute handler locally with an event file"
    )
    invoke.add_argument("handler", help="as written in template.yml, e.g. scheduled.handler")
    invoke.add_argument("event_file", help="the trigger's event, passed to the handler as bytes")
    invoke.add_argument(
        "--functions-dir", default=None, help="where the handler files are (default: ./functions)"
    )

    emulator = sub.add_parser(
        "emulator", parents=[common], help="serve the local IMS emulator over HTTP until stopped"
    )
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8765)
    emulator.add_argument("--access-key-id", default="test-key-id")
    emulator.add_argument("--access-key-secret", default="test-key-secret")
    emulator.add_argument("--account", default=None, help="the account the key pair belongs to")
    emulator.add_argument(
        "--omitted",
        choices=("reset", "keep"),
        default="reset",
        help="what SetSecurityPreference does to omitted fields",
    )
    emulator.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="start with this field changed (API field name), e.g. "
        "AllowUserToManageAccessKeys=true; repeatable",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The table (or JSON) on stdout is the CLI's output; JSON log lines on stderr only for errors
    # unless GUARD_LOG_LEVEL or --debug asks for more.
    level = os.environ.get("GUARD_LOG_LEVEL", "").strip().upper() or "ERROR"
    if level not in LOG_LEVELS:
        configure("ERROR")
        problem = f"expected one of {', '.join(LOG_LEVELS)}, got {os.environ['GUARD_LOG_LEVEL']!r}"
        return _fail(args, ConfigError("GUARD_LOG_LEVEL", problem))
    configure("DEBUG" if args.debug else level)
    try:
        if args.command in ("check", "enforce"):
            return _check_or_enforce(args)
        if args.command == "control-policy":
            return _control_policy(args)
        if args.command == "invoke":
            return _invoke(args)
        if args.command == "emulator":
            return _emulator(args)
    except KNOWN_ERRORS as exc:
        return _fail(args, exc)
    except Exception as exc:  # an unexpected failure still gets one clear line
        return _fail(args, exc)
    raise AssertionError(args.command)  # pragma: no cover


def _fail(args: argparse.Namespace, exc: BaseException) -> int:
    message = redact(str(exc)) or type(exc).__name__
    if not isinstance(exc, KNOWN_ERRORS):
        message = f"{type(exc).__name__}: {message}"
    if args.debug:
        traceback.print_exc()
    if args.json:
        error: dict[str, Any] = {"type": type(exc).__name__, "message": message}
        if isinstance(exc, ApiError):
            error.update(exc.as_dict())
        if isinstance(exc, ConfigError):
            error["variable"] = exc.variable
        print(json.dumps({"status": "error", "reason": message, "error": error}))
    print(f"secpref-guard: error: {message}", file=sys.stderr)
    return EXIT_ERROR


# --- check / enforce -----------------------------------------------------------------------


def _check_or_enforce(args: argparse.Namespace) -> int:
    config = load_config()
    settings = config.settings
    credentials = resolve(None)
    write = args.command == "enforce"
    budget = None
    if write and settings.budget_bucket:
        from .budget import from_settings

        region = os.environ.get("FC_REGION") or os.environ.get("ALIBABA_CLOUD_REGION_ID")
        budget = from_settings(settings, credentials, region)
    if settings.targets != "self":
        return _many_accounts(args, config, credentials, write, budget)
    account = "self"
    if settings.exemptions or settings.exclude_accounts:
        # both name accounts: learn which one these credentials belong to (one call)
        from .accounts import StsClient

        account = StsClient(settings.sts_endpoint, credentials).get_caller_identity()
        if account in settings.exclude_accounts:
            reason = (
                f"account {account} is listed in GUARD_EXCLUDE_ACCOUNTS: nothing read or written"
            )
            if args.json:
                print(
                    json.dumps(
                        {"status": "skipped", "account": account, "drift": [], "reason": reason}
                    )
                )
            else:
                print(f"account {account}: skipped ({reason})")
            return EXIT_OK
    client = ImsClient(settings.ims_endpoint, credentials)
    outcome = engine.run(
        client, config, account=account, write=write, budget=budget, actor="secpref-guard CLI"
    )
    if args.json:
        print(json.dumps(outcome.as_dict(), indent=2))
    else:
        print(render_outcome(outcome, config))
    return _exit_status([outcome])


def _exit_status(outcomes: list[engine.Outcome]) -> int:
    """1 when anything failed or is contested; 2 when drift is left (check, dry-run, or
    report-only/exempt fields next to reverted ones); 0 when compliant after the run."""
    if any(o.status not in ("compliant", "reverted", "drift", "skipped") for o in outcomes):
        return EXIT_ERROR
    if any(d.action != "revert" for o in outcomes for d in o.drift):
        return EXIT_DRIFT
    return EXIT_OK


def _many_accounts(
    args: argparse.Namespace, config: GuardConfig, credentials: Any, write: bool, budget: Any
) -> int:
    """GUARD_TARGETS other than self: every target in this process, with bounded concurrency."""
    from .accounts import StsClient
    from .fanout import FanoutOptions, run_scheduled

    settings = config.settings
    own = StsClient(settings.sts_endpoint, credentials).get_caller_identity()
    summary = run_scheduled(
        config,
        credentials,
        own_account=own,
        options=FanoutOptions(concurrency=settings.concurrency),
        budget=budget,
        write=write,
    )
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        for outcome in summary.outcomes:
            if outcome.status == "error":
                print(f"account {outcome.account}: FAILED: {outcome.reason}")
            else:
                print(render_outcome(outcome, config))
        for skipped in summary.skipped:
            print(f"account {skipped.account}: skipped ({skipped.reason})")
        print(summary.reason)
    if summary.counts["failed"]:
        return EXIT_ERROR
    return _exit_status(summary.outcomes)


def _text(value: Any) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(str(v) for v in value) if value else "(none)"
    return str(value)


def render_outcome(outcome: engine.Outcome, config: GuardConfig) -> str:
    """A readable before/after table of the drift."""
    pinned = len(config.baseline)
    head = {
        "compliant": f"compliant: all {pinned} baseline fields match",
        "reverted": f"reverted {sum(d.action == 'revert' for d in outcome.drift)} field(s); "
        "verified with a fresh read",
        "drift": f"drift in {len(outcome.drift)} of {pinned} baseline fields",
        "contested": "contested: nothing written",
    }.get(outcome.status, outcome.status)
    lines = [f"account {outcome.account} ({outcome.mode}): {head}"]
    if outcome.drift:
        show_after = outcome.mode != "check"
        head = ("field", "actual", "expected") + (("after",) if show_after else ())
        rows = [(*head, "action", "expected from")]
        for d in outcome.drift:
            item = d.as_dict()
            after = (_text(item["after"]) if "after" in item else "?",) if show_after else ()
            rows.append(
                (
                    d.field,
                    _text(item["actual"]),
                    _text(item["expected"]),
                    *after,
                    d.action,
                    d.source,
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for i, row in enumerate(rows):
            lines.append(
                "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            )
            if i == 0:
                lines.append("  " + "  ".join("-" * w for w in widths))
        notes = [f"  {d.field}: {d.note}" for d in outcome.drift if d.note]
        lines.extend(notes)
    if outcome.reason and outcome.status != "compliant":
        lines.append(f"reason: {outcome.reason}")
    lines.append(f"api calls: {outcome.api_calls}")
    return "\n".join(lines)


# --- control-policy --------------------------------------------------------------------------


def _control_policy(args: argparse.Namespace) -> int:
    """The policy document only: it needs no credentials and no baseline."""
    from .config import Settings
    from .control_policy import render

    try:
        settings = Settings.model_validate(
            {k: v for k, v in os.environ.items() if k == "GUARD_MEMBER_ROLE"}
        )
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ConfigError("GUARD_MEMBER_ROLE", problem) from None
    print(
        render(
            args.guard_role,
            settings.member_role,
            guard_account=args.guard_account,
            indent=args.indent,
        )
    )
    return EXIT_OK


# --- invoke --------------------------------------------------------------------------------


def _invoke(args: argparse.Namespace) -> int:
    from .local import invoke_handler

    result = invoke_handler(args.handler, args.event_file, functions_dir=args.functions_dir)
    print(result if isinstance(result, str) else json.dumps(result))
    return EXIT_OK


# --- emulator ------------------------------------------------------------------------------


def _emulator(args: argparse.Namespace) -> int:
    from .emulator import DEFAULT_ACCOUNT, Emulator, ImsBackend, make_server

    account = args.account or DEFAULT_ACCOUNT
    emulator = Emulator(ims=ImsBackend(omitted=args.omitted))
    emulator.add_key(args.access_key_id, args.access_key_secret, account)
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        try:
            emulator.ims.put(account, **{name.strip(): value})
        except (KeyError, ValueError) as exc:
            raise ValueError(f"--set {item!r}: {exc}") from None
    server = make_server(emulator, args.host, args.port)
    endpoint = f"http://{args.host}:{server.server_address[1]}"

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    if args.json:
        print(
            json.dumps(
                {
                    "status": "serving",
                    "endpoint": endpoint,
                    "account": account,
                    "omitted": args.omitted,
                }
            ),
            flush=True,
        )
    else:
        print(
            f"IMS emulator serving {endpoint} (account {account}, omitted fields "
            f"{args.omitted}); Ctrl-C stops it",
            flush=True,
        )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    logging.captureWarnings(True)
    sys.exit(main())
