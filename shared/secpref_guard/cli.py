"""The ``secpref-guard`` command line (see the README and the public interface)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from pydantic import ValidationError

from . import instance, report_command
from .client import ApiError
from .config import ConfigError, GuardConfig, load_config
from .control_policy import PolicyError
from .credentials import CredentialsError, resolve
from .errors import GuardError
from .handlers import LOG_LEVELS, HandlerError
from .logs import configure, redact
from .report import AccountReport, RunReport
from .table import render_report

EXIT_OK, EXIT_ERROR, EXIT_DRIFT = 0, 1, 2
KNOWN_ERRORS = (ConfigError, CredentialsError, GuardError, PolicyError, HandlerError)


class UsageError(GuardError):
    """A command's input that cannot be used; the message names the option and what to do."""

    code = "UsageError"


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


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    # --json and --debug work before or after the command: the command's copies only set them
    common = _common(argparse.SUPPRESS)
    parser = _Parser(
        prog="secpref-guard",
        description="Keep the accounts' RAM security preference and password policy on the "
        "baseline.",
        parents=[_common(False)],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "check",
        parents=[common],
        help="compare the live preference with the baseline (exit 2 on drift)",
    )
    sub.add_parser(
        "enforce",
        parents=[common],
        help="revert drift (SetSecurityPreference, SetPasswordPolicy) and verify it",
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

    report_command.add_parser(sub, common)

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
    emulator.add_argument("--port", type=_port, default=8765, help="0 picks a free port")
    emulator.add_argument("--access-key-id", default="test-key-id")
    emulator.add_argument("--access-key-secret", default="test-key-secret")
    emulator.add_argument("--account", default=None, help="the account the key pair belongs to")
    emulator.add_argument(
        "--omitted",
        choices=("reset", "keep"),
        default="reset",
        help="what a Set (SetSecurityPreference, SetPasswordPolicy) does to omitted fields",
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
    instance.freeze_imports()  # as the handlers do: the run's imports need not collect ours
    # The table (or JSON) on stdout is the CLI's output and an error is one line on stderr; JSON
    # log lines only when GUARD_LOG_LEVEL or --debug asks for them.
    level = os.environ.get("GUARD_LOG_LEVEL", "").strip().upper() or "CRITICAL"
    if level not in (*LOG_LEVELS, "CRITICAL"):
        configure("CRITICAL")
        problem = f"expected one of {', '.join(LOG_LEVELS)}, got {os.environ['GUARD_LOG_LEVEL']!r}"
        return _fail(args, ConfigError("GUARD_LOG_LEVEL", problem))
    configure("DEBUG" if args.debug else level)
    try:
        if args.command in ("check", "enforce"):
            return _check_or_enforce(args)
        if args.command == "control-policy":
            return _control_policy(args)
        if args.command == "report":
            return report_command.main(args)
        if args.command == "invoke":
            return _invoke(args)
        if args.command == "emulator":
            return _emulator(args)
    except BrokenPipeError:
        # the reader went away (`| head`): what it read is the output; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KNOWN_ERRORS as exc:
        return _fail(args, exc)
    except OSError as exc:  # a file or a port: named, with the system's reason
        where = exc.filename if exc.filename is not None else "the system"
        return _fail(args, UsageError(f"{where}: {exc.strerror or exc}"), exc)
    except Exception as exc:  # a bug: still one line, the traceback with --debug
        message = f"internal error: {exc} (run again with --debug for the details)"
        return _fail(args, UsageError(message), exc)
    finally:
        # the process exits next: its exit need not collect what the command imported
        instance.freeze_imports()
    raise AssertionError(args.command)  # pragma: no cover


def _fail(args: argparse.Namespace, exc: BaseException, cause: BaseException | None = None) -> int:
    message = redact(str(exc)) or type(exc).__name__
    if args.debug:
        traceback.print_exception(cause or exc)
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


def run_targets(
    command: str,
    *,
    write: bool,
    on_account: Callable[[AccountReport, int, int], None] | None = None,
) -> tuple[RunReport, GuardConfig]:
    """Every target of GUARD_TARGETS, checked (``write=False``) or enforced in this process:
    the one run that ``check``, ``enforce`` and ``report`` make (never fanned out)."""
    from .modes import every_target
    from .report import Trigger
    from .run import Services, run

    config = load_config()
    settings = config.settings
    credentials = resolve(None)
    own: str | None = None
    if settings.targets != "self" or settings.exemptions or settings.exclude_accounts:
        # targets, exclusions and exemptions name accounts: learn which one these credentials
        # belong to (one call)
        from .member_access import StsClient

        own = StsClient(settings.sts_endpoint, credentials).get_caller_identity()
    directory = None
    if settings.targets == "resource-directory":
        from .directory import Directory, ResourceManagerClient

        endpoint = settings.resourcemanager_endpoint
        directory = Directory(lambda: ResourceManagerClient(endpoint, credentials))
    budget = None
    if write and settings.budget_bucket:
        from .budget import from_settings

        region = os.environ.get("FC_REGION") or os.environ.get("ALIBABA_CLOUD_REGION_ID")
        budget = from_settings(settings, credentials, region)
    services = Services(
        config=config,
        base=credentials,
        own_account=own,
        directory=directory,
        budget=budget,
        concurrency=settings.concurrency,
        on_account=on_account,
    )
    targets, candidates = every_target(settings, directory)
    report = run(
        candidates,
        services,
        trigger=Trigger("cli", name=command),
        targets=targets,
        write=write,
    )
    return report, config


def _check_or_enforce(args: argparse.Namespace) -> int:
    """The CLI's mode: every target, checked or enforced in this process (never fanned out)."""
    report, config = run_targets(args.command, write=args.command == "enforce")
    failed_all = bool(report.failures) and len(report.failures) == report.counts["accounts"]
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    elif not failed_all:  # when nothing but failures, the error line below says it all
        print(render_report(report, config))
    if report.failures:  # the failure, in one line
        if args.debug:
            for account in report.accounts:
                if account.error is not None:
                    traceback.print_exception(account.error)
        print(f"secpref-guard: error: {redact(report.failure_text)}", file=sys.stderr)
    return exit_status(report)


def exit_status(report: RunReport) -> int:
    """1 when anything failed; 2 when drift is left (check, dry-run, report-only or exempt
    fields, a contested account); 0 when every account is compliant after the run."""
    if report.failures:
        return EXIT_ERROR
    if any(a.left_drift for a in report.accounts):
        return EXIT_DRIFT
    return EXIT_OK


# --- control-policy --------------------------------------------------------------------------


def _control_policy(args: argparse.Namespace) -> int:
    """The policy document only: it needs no credentials and no baseline."""
    if args.guard_account and not args.guard_role:
        raise UsageError(
            "--guard-account names the account of the guard's role: give --guard-role too"
        )
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
    from .handlers import keep_logging
    from .local import invoke_handler

    keep_logging()  # the handler logs as the CLI was told to: quiet unless asked

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
            raise UsageError(f"--set expects FIELD=VALUE (an API field name), got {item!r}")
        try:
            emulator.ims.put(account, **{name.strip(): value})
        except (KeyError, ValueError) as exc:
            problem = exc.args[0] if exc.args else exc
            raise UsageError(f"--set {item!r}: {problem}") from None
    try:
        server = make_server(emulator, args.host, args.port)
    except OSError as exc:
        raise UsageError(
            f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc} (is another "
            "emulator running there? stop it, or pass another --port)"
        ) from None
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
