"""Command line: argument parsing and exit codes only; the work lives in the other modules.

Imports are lazy on purpose: `status`, `version` and `--help` must start fast and small, so
they load neither pydantic nor pyroute2 nor pyudev.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cockpit_agent.paths import CONFIG_PATH, LOCK_PATH, STATE_PATH
from cockpit_agent.plugin import DEFAULT_TIMEOUT, UNKNOWN, status_text

if TYPE_CHECKING:
    from cockpit_agent.config import Config
    from cockpit_agent.facts.gather import Facts
    from cockpit_agent.state import RunRecord

EXIT_CODES = """\
exit codes:
  reconcile, plan   0 converged (or changed and verified), 1 a step failed or is blocked,
                    or the run failed before its steps, 2 usage or configuration error,
                    3 another run holds the lock
  check             monitoring-plugin convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
                    (a bad argument, a configuration error, a check that cannot run or
                    does not finish within --timeout is UNKNOWN, with a status line)
  status            0 shown and the last run succeeded, 1 the last run failed or a later
                    reconcile failed before its steps, 2 no state file yet or unreadable
  facts, version    0, or 2 on a configuration error
  config validate   0 valid, 2 invalid (the file, the key's dotted path and what was expected)
  any command       an unexpected error is one line, "cockpit-agent: internal error: ...",
                    and exit 1 (check: 3 UNKNOWN; status: 2); -v adds the traceback
"""

OK, FAILED, USAGE, LOCKED = 0, 1, 2, 3


class UsageError(SystemExit):
    """A bad command line, already reported on stderr as argparse does; exit 2, except for
    `check`, which answers it as a monitoring plugin (UNKNOWN, 3)."""

    def __init__(self, message: str, command: str) -> None:
        super().__init__(USAGE)
        self.message = message
        self.command = command


def _usage(parser: argparse.ArgumentParser, message: str, command: str | None = None) -> UsageError:
    """argparse's report of a bad command line; `command` defaults to the one whose parser
    complains ("cockpit-agent check" -> check)."""
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return UsageError(message, command or [*parser.prog.split(), ""][1])


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exits 2 here
        raise _usage(self, message)


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Global options, accepted before or after the subcommand."""
    default = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    parser.add_argument(
        "--config", type=Path, default=default(CONFIG_PATH), help=f"default {CONFIG_PATH}"
    )
    parser.add_argument(
        "--state", type=Path, default=default(STATE_PATH), help=f"default {STATE_PATH}"
    )
    parser.add_argument(
        "--lock", type=Path, default=default(LOCK_PATH), help=f"run lock, default {LOCK_PATH}"
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="print data as JSON"
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=default(0), help="more log detail"
    )
    parser.add_argument(
        "--log-format",
        choices=["auto", "text", "json"],
        default=default("auto"),
        help="logs on stderr: auto = JSON under systemd or when not a terminal",
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole argument parser."""
    parser = _Parser(
        prog="cockpit-agent",
        description="Turns this instance into a KVM host managed through Cockpit.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _Parser(add_help=False)
    _common(common, top=False)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=[common],
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    rec = add("reconcile", "converge the host: observe, plan, apply and verify every step")
    rec.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="STEP",
        help="run only STEP (repeatable): rootfs, storage, virt, lni (the bridge) or "
        "libvirt_network (the libvirt networks on it); the others are skipped, and a step "
        "whose dependency is skipped runs as usual",
    )
    rec.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    rec.add_argument(
        "--wait",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="wait this long for another run to finish (default 60)",
    )
    add("plan", "print the actions reconcile would apply")
    add("status", "print the state file: what the last runs found, did and why")
    chk = add("check", "observe the live host and report findings; changes nothing")
    chk.add_argument(
        "--prometheus", type=Path, metavar="PATH", help="also write a node_exporter textfile"
    )
    chk.add_argument(
        "--repair", action="store_true", help="reconcile the steps that drifted, then check again"
    )
    chk.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"UNKNOWN when the check has not finished by then (default {DEFAULT_TIMEOUT:g})",
    )
    add("facts", "print what the agent sees: platform, instance, disks, links")
    cfg = add("config", "configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    val = cfg_sub.add_parser(
        "validate", help="validate a configuration file and its drop-ins", parents=[common]
    )
    val.add_argument("path", nargs="?", type=Path, help="default: --config")
    cfg_sub.add_parser("schema", help="print the configuration's JSON Schema", parents=[common])
    add("version", "print the agent's version")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cockpit-agent` console script."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            raise _usage(parser, f"unrecognized arguments: {' '.join(extra)}", args.command)
    except UsageError as exc:
        if exc.command != "check":
            return USAGE
        print(status_text(UNKNOWN, f"usage: {exc.message}"))
        return UNKNOWN
    handler = {
        "reconcile": cmd_reconcile,
        "plan": cmd_plan,
        "status": cmd_status,
        "check": cmd_check,
        "facts": cmd_facts,
        "config": cmd_config,
        "version": cmd_version,
    }[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last resort: one line and the documented code
        return _last_resort(args, exc)


def _seconds(text: str) -> float:
    """--wait: a finite number of seconds (inf would wait for ever, nan never time out)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 86400")
    return value


def _last_resort(args: argparse.Namespace, exc: Exception) -> int:
    """An error no command handled: one line, and the command's documented code."""
    from cockpit_agent.errors import AgentError  # noqa: PLC0415

    if isinstance(exc, AgentError):
        what = str(exc)
    else:
        what = f"internal error: {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
    message = " ".join(what.split())[:500]
    if args.verbose:
        traceback.print_exception(exc)
    if args.command == "check":
        return _check_unknown(args, message)
    return _stopped(args, message, USAGE if args.command == "status" else FAILED)


def _stopped(args: argparse.Namespace, message: str, code: int) -> int:
    """A command that stops with an error: say why. A reconcile that writes also leaves the
    record that `status` and `check` report, since it could not record a run in the state
    file (which belongs to an instance id nobody could ask IMDS for)."""
    _err(message)
    if args.command == "reconcile" and not args.dry_run:
        from cockpit_agent.attempt import record_attempt  # noqa: PLC0415

        problem = record_attempt(args.state, command=args.command, error=message, exit_code=code)
        if problem:
            _err(f"cannot record the failed attempt: {problem}")
    return code


def _out(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str, sort_keys=False))


def _err(message: str) -> None:
    print(f"cockpit-agent: {message}", file=sys.stderr)


# -- light commands: no pydantic, no netlink, no udev ----------------------------------------


def cmd_version(args: argparse.Namespace) -> int:
    """Print the version."""
    from cockpit_agent import __version__  # noqa: PLC0415

    if args.json:
        _out({"version": __version__})
    else:
        print(f"cockpit-agent {__version__}")
    return OK


def cmd_status(args: argparse.Namespace) -> int:
    """Print the state file, and a reconcile that failed before its steps since its last run;
    reads JSON directly so it stays fast and small."""
    from cockpit_agent.attempt import read_attempt  # noqa: PLC0415

    attempt = read_attempt(args.state)
    state, problem = _read_state(args.state)
    runs = state.get("runs") or [] if state else []
    last = runs[-1] if runs else None
    if args.json:
        shown = state if state is not None else {"state_file": str(args.state), "error": problem}
        _out({**shown, "failed_attempt": attempt})
    else:
        if attempt is not None:
            print(
                f"last attempt {attempt['at'] or '(time unknown)'}  FAILED before its steps "
                f"(exit {attempt['exit_code']}): {attempt['error']}"
            )
        if state is None:
            _err(str(problem))
        else:
            print(f"instance {state.get('instance_id') or 'unknown'}  (state {args.state})")
            where = (last or {}).get("location") or {}
            if where.get("summary"):
                print(f"location {where['summary']}")
            if last is None:
                print("no run recorded")
            else:
                _print_run(last)
    if attempt is not None or (last is not None and last.get("result") == "failed"):
        return FAILED
    return USAGE if state is None else OK


def _read_state(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The state file as JSON, or why it cannot be shown; never through a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            state = json.loads(b"".join(iter(lambda: os.read(fd, 1 << 16), b"")))
        finally:
            os.close(fd)
    except FileNotFoundError:
        return None, f"no state file at {path}: the agent has not run on this host yet"
    except OSError as exc:
        why = "a symlink, not trusted" if exc.errno == errno.ELOOP else exc.strerror
        return None, f"cannot read {path}: {why}"
    except ValueError as exc:
        return None, f"cannot read {path}: {exc}"
    problem = _shape_problem(state)
    return (None, f"{path} is not a valid state file: {problem}") if problem else (state, None)


def _shape_problem(state: Any) -> str | None:
    """What keeps `status` from printing this JSON: the fields it shows, of the wrong type."""
    if not isinstance(state, dict):
        return "not a JSON object"
    runs = state.get("runs") or []
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        return "runs is not a list of objects"
    for i, run in enumerate(runs):
        steps = run.get("steps") or []
        if not isinstance(steps, list):
            return f"runs[{i}].steps is not a list"
        if not isinstance(run.get("location") or {}, dict):
            return f"runs[{i}].location is not an object"
        for j, step in enumerate(steps):
            ok = (
                isinstance(step, dict)
                and isinstance(step.get("name"), str)
                and isinstance(step.get("status"), str)
                and isinstance(step.get("duration_seconds", 0), int | float)
                and all(isinstance(step.get(k) or [], list) for k in ("actions", "planned"))
            )
            if not ok:
                return f"runs[{i}].steps[{j}] is not a step"
    return None


def _print_run(run: dict[str, Any]) -> None:
    print(
        f"last run {run.get('started_at')}  result {run.get('result')}  "
        f"agent {run.get('agent_version')}  run {run.get('run_id')}"
    )
    steps = run.get("steps") or []
    if not steps:
        print("no steps ran")
        return
    print(f"{'STEP':<15} {'STATUS':<10} {'ACTIONS':>7} {'SECONDS':>8}  SUMMARY")
    for step in steps:
        acts = step.get("actions") or step.get("planned") or []
        print(
            f"{step['name']:<15} {step['status']:<10} {len(acts):>7} "
            f"{step.get('duration_seconds', 0):>8.2f}  {step.get('summary', '')}"
        )
        for act in acts:
            print(f"{'':<15} - {act}")
        if step.get("error"):
            print(f"{'':<15} error: {step['error']}")


# -- commands that load the configuration ----------------------------------------------------


def _setup(args: argparse.Namespace) -> Config:
    from cockpit_agent.config import load_config  # noqa: PLC0415
    from cockpit_agent.log import configure  # noqa: PLC0415

    configure(args.log_format, args.verbose)
    return load_config(args.config)


def _facts(config: Config) -> Facts:
    from cockpit_agent.facts.gather import gather  # noqa: PLC0415
    from cockpit_agent.host.run import SubprocessRunner  # noqa: PLC0415

    return gather(config, SubprocessRunner())


def cmd_config(args: argparse.Namespace) -> int:
    """`config validate [PATH]` and `config schema`."""
    from cockpit_agent.config import config_files, config_schema, load_config  # noqa: PLC0415
    from cockpit_agent.errors import ConfigError  # noqa: PLC0415

    if args.config_command == "schema":
        _out(config_schema())
        return OK
    path = args.path or args.config
    try:
        config = load_config(path)
    except ConfigError as exc:
        _err(str(exc))
        return USAGE
    files = config_files(path)
    if args.json:
        _out({"valid": True, "files": [str(f) for f in files], "config": config.model_dump()})
    else:
        names = ", ".join(str(f) for f in files) or "no files (all defaults)"
        print(f"valid: {names}")
    return OK


def _run(args: argparse.Namespace, *, dry_run: bool) -> int:
    """reconcile and plan."""
    from cockpit_agent.engine import Engine  # noqa: PLC0415
    from cockpit_agent.errors import ConfigError, LockHeld, StateError  # noqa: PLC0415
    from cockpit_agent.reconcile import reconcile  # noqa: PLC0415
    from cockpit_agent.steps import all_steps  # noqa: PLC0415

    try:
        config = _setup(args)
    except ConfigError as exc:
        return _stopped(args, str(exc), USAGE)
    engine = Engine(all_steps())
    only = getattr(args, "only", [])
    unknown = [s for s in only if s not in engine.names()]
    if unknown:
        _err(f"unknown step {', '.join(unknown)}; steps are: {', '.join(engine.names()) or 'none'}")
        return USAGE
    try:
        run = reconcile(
            config,
            state_path=args.state,
            lock_path=args.lock,
            wait_seconds=getattr(args, "wait", 0.0),
            only=only,
            dry_run=dry_run,
            engine=engine,
        )
    except LockHeld as exc:
        _err(f"{exc}; try again when it finishes, or pass --wait SECONDS")
        return LOCKED
    except StateError as exc:
        return _stopped(args, str(exc), FAILED)
    _report(args, run, dry_run)
    return FAILED if run.result == "failed" else OK


def _report(args: argparse.Namespace, run: RunRecord, dry_run: bool) -> None:
    if args.json:
        _out(run.model_dump(mode="json"))
        return
    if dry_run:
        planned = [(s.name, a) for s in run.steps for a in s.planned]
        print(f"{len(planned)} action(s) planned" + (":" if planned else ""))
        for name, action in planned:
            print(f"  {name}: {action}")
        print("steps:")
        for step in run.steps:
            print(f"  {step.name}: {step.status}: {step.error or step.summary}")
        return
    _print_run(run.model_dump(mode="json"))


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Converge the host."""
    return _run(args, dry_run=args.dry_run)


def cmd_plan(args: argparse.Namespace) -> int:
    """Print what reconcile would do."""
    args.only = []
    return _run(args, dry_run=True)


def cmd_facts(args: argparse.Namespace) -> int:
    """Print the facts."""
    from cockpit_agent.errors import ConfigError  # noqa: PLC0415

    try:
        config = _setup(args)
    except ConfigError as exc:
        _err(str(exc))
        return USAGE
    facts = _facts(config)
    if args.json:
        _out(facts.model_dump(mode="json"))
    else:
        from cockpit_agent.facts.table import render_facts  # noqa: PLC0415

        print(render_facts(facts, config))
    return OK


def cmd_check(args: argparse.Namespace) -> int:
    """Observe and report; exit by the monitoring-plugin convention."""
    from cockpit_agent.errors import ConfigError  # noqa: PLC0415

    try:
        config = _setup(args)
    except ConfigError as exc:
        return _check_unknown(args, f"configuration: {exc}")
    from cockpit_agent.check import check, textfile_problem  # noqa: PLC0415

    problem = args.prometheus and textfile_problem(args.prometheus)
    if problem:
        return _check_unknown(args, problem)
    report = check(
        config,
        state_path=args.state,
        lock_path=args.lock,
        repair=args.repair,
        prometheus=args.prometheus,
        timeout=args.timeout,
    )
    for note in report.notes:
        _err(note)
    if args.json:
        _out(report.as_json())
    else:
        print("\n".join(report.lines()))
    return report.code


def _check_unknown(args: argparse.Namespace, message: str) -> int:
    """A check that cannot run: UNKNOWN, as a status line or as JSON."""
    line = status_text(UNKNOWN, message)
    if args.json:
        finding = {"severity": "unknown", "code": "check-failed", "message": message, "step": ""}
        summary = {"status": "UNKNOWN", "exit_code": UNKNOWN, "summary": line, "perfdata": ""}
        _out({**summary, "repaired_steps": [], "findings": [finding]})
    else:
        print(line)
    return UNKNOWN


if __name__ == "__main__":
    raise SystemExit(main())
