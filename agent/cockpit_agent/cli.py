"""Command line: argument parsing and exit codes only; the work lives in the other modules.

Imports are lazy on purpose: `status`, `version` and `--help` must start fast and small, so
they load neither pydantic nor pyroute2 nor pyudev.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cockpit_agent.paths import CONFIG_PATH, LOCK_PATH, STATE_PATH

if TYPE_CHECKING:
    from cockpit_agent.config import Config
    from cockpit_agent.engine import Finding
    from cockpit_agent.facts.gather import Facts
    from cockpit_agent.state import RunRecord

EXIT_CODES = """\
exit codes:
  reconcile, plan   0 converged (or changed and verified), 1 a step failed or is blocked,
                    2 usage or configuration error, 3 another run holds the lock
  check             monitoring-plugin convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
  status            0 shown and the last run succeeded, 1 the last run failed,
                    2 no state file yet or unreadable
  facts, version    0, or 2 on a configuration error
  config validate   0 valid, 2 invalid (the file, the key's dotted path and what was expected)
"""

OK, FAILED, USAGE, LOCKED = 0, 1, 2, 3


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
    parser = argparse.ArgumentParser(
        prog="cockpit-agent",
        description="Turns this instance into a KVM host managed through Cockpit.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
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
    rec.add_argument("--only", action="append", default=[], metavar="STEP", help="run only STEP")
    rec.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    rec.add_argument(
        "--wait",
        type=float,
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
    add("facts", "print what the agent sees: platform, instance, disks, links")
    cfg = add("config", "configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    val = cfg_sub.add_parser("validate", help="validate a configuration file and its drop-ins")
    val.add_argument("path", nargs="?", type=Path, help="default: --config")
    cfg_sub.add_parser("schema", help="print the configuration's JSON Schema")
    add("version", "print the agent's version")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cockpit-agent` console script."""
    args = build_parser().parse_args(argv)
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
    """Print the state file; reads JSON directly so it stays fast and small."""
    try:
        state = json.loads(Path(args.state).read_text())
    except FileNotFoundError:
        _err(f"no state file at {args.state}: the agent has not run on this host yet")
        return USAGE
    except (OSError, ValueError) as exc:
        _err(f"cannot read {args.state}: {exc}")
        return USAGE
    runs = state.get("runs") or []
    last = runs[-1] if runs else None
    if args.json:
        _out(state)
    else:
        print(f"instance {state.get('instance_id') or 'unknown'}  (state {args.state})")
        where = (last or {}).get("location") or {}
        if where.get("summary"):
            print(f"location {where['summary']}")
        if last is None:
            print("no run recorded")
        else:
            _print_run(last)
    return FAILED if last is not None and last.get("result") == "failed" else OK


def _print_run(run: dict[str, Any]) -> None:
    print(
        f"last run {run.get('started_at')}  result {run.get('result')}  "
        f"agent {run.get('agent_version')}  run {run.get('run_id')}"
    )
    steps = run.get("steps") or []
    if not steps:
        print("no steps ran")
        return
    print(f"{'STEP':<10} {'STATUS':<10} {'ACTIONS':>7} {'SECONDS':>8}  SUMMARY")
    for step in steps:
        acts = step.get("actions") or step.get("planned") or []
        print(
            f"{step['name']:<10} {step['status']:<10} {len(acts):>7} "
            f"{step.get('duration_seconds', 0):>8.2f}  {step.get('summary', '')}"
        )
        for act in acts:
            print(f"{'':<10} - {act}")
        if step.get("error"):
            print(f"{'':<10} error: {step['error']}")


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
        _err(str(exc))
        return USAGE
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
        _err(str(exc))
        return FAILED
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
    from cockpit_agent.errors import ConfigError, LockHeld  # noqa: PLC0415

    try:
        config = _setup(args)
    except ConfigError as exc:
        print(f"UNKNOWN - configuration: {exc}")
        return 3
    from cockpit_agent import check  # noqa: PLC0415
    from cockpit_agent.reconcile import reconcile  # noqa: PLC0415

    facts = _facts(config)
    findings = check.run_check(config, facts, args.state)
    repaired: list[str] = []
    if (args.repair or config.health.auto_repair) and check.drifted_steps(findings):
        repaired = check.drifted_steps(findings)
        try:
            reconcile(
                config, state_path=args.state, lock_path=args.lock, wait_seconds=60.0, only=repaired
            )
        except LockHeld as exc:
            _err(f"repair skipped: {exc}")
            repaired = []
        else:
            facts = _facts(config)
            findings = check.run_check(config, facts, args.state)
    code = check.exit_code(findings)
    line = check.summary_line(findings)
    if args.prometheus:
        state, _ = check.load_state(args.state)
        check.write_prometheus(
            args.prometheus, check.prometheus_text(findings, state, facts, check.now())
        )
    _log_check(args, line, code, findings)
    if args.json:
        _out(
            {
                "status": check.LABEL[code],
                "exit_code": code,
                "summary": line,
                "repaired_steps": repaired,
                "findings": [f.__dict__ for f in findings],
            }
        )
        return code
    print(line)
    if repaired:
        print(f"repaired: reconciled {', '.join(repaired)}")
    for f in findings:
        where = f"{f.step}: " if f.step else ""
        print(f"[{f.severity.upper()}] {where}{f.code}: {f.message}")
    return code


def _log_check(args: argparse.Namespace, line: str, code: int, findings: list[Finding]) -> None:
    """One journal line per check; the same findings at most once an hour."""
    import structlog  # noqa: PLC0415

    from cockpit_agent import check  # noqa: PLC0415

    if check.should_log(findings, args.state.parent / "check-log.json", check.now()):
        level = {0: "info", 1: "warning"}.get(code, "error")
        getattr(structlog.get_logger("cockpit_agent"), level)("check", summary=line)


if __name__ == "__main__":
    raise SystemExit(main())
