"""``breakglass-watcher`` subcommands. Parsing only: each command's work lives in its own module."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

from watcher.errors import WatcherError

DEFAULT_RULES = Path("rules")
#: The config file when a command's ``-c/--config`` is not given.
CONFIG_ENV = "BREAKGLASS_WATCHER_CONFIG"


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes, before or after its name. A subcommand's copy has no
    defaults, so it only overrides what was given after the name."""
    log_format: object = "json" if defaults else argparse.SUPPRESS
    log_level: object = None if defaults else argparse.SUPPRESS
    parser.add_argument("--log-format", choices=("json", "text"), default=log_format)
    parser.add_argument(
        "--log-level",
        default=log_level,
        help="default INFO (WARNING for demo, whose own output tells the story)",
    )


def _parser() -> argparse.ArgumentParser:
    from watcher import __version__

    env_config = os.environ.get(CONFIG_ENV) or None
    parser = argparse.ArgumentParser(
        prog="breakglass-watcher",
        description="Watch AWS break-glass principals: drills vs real use, detection gaps, "
        f"credential health. -c/--config defaults to ${CONFIG_ENV} when it is set.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _global_options(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, defaults=False)
    sub = parser.add_subparsers(dest="command", required=True)
    needs_config = env_config is None

    run = sub.add_parser("run", parents=[common], help="run the daemon")
    run.add_argument("-c", "--config", type=Path, required=needs_config)

    validate = sub.add_parser(
        "validate", parents=[common], help="check config and rules without touching AWS"
    )
    target = validate.add_mutually_exclusive_group(required=needs_config)
    target.add_argument("-c", "--config", type=Path)
    target.add_argument("--rules", type=Path)

    replay = sub.add_parser("replay", parents=[common], help="classify CloudTrail files offline")
    replay.add_argument(
        "--rules",
        type=Path,
        help=f"rule file or folder (default: ./{DEFAULT_RULES}, if it exists)",
    )
    replay.add_argument("--summary", action="store_true", help="a table per principal instead")
    replay.add_argument(
        "--strict",
        action="store_true",
        help="parse every record (no prefilter) and warn about every malformed one",
    )
    replay.add_argument(
        "--since", type=_bound(end=False), help="ISO date or time (UTC unless an offset is given)"
    )
    replay.add_argument(
        "--until", type=_bound(end=True), help="exclusive; a bare date means through that day"
    )
    replay.add_argument("--accounts", type=_names("account"), help="comma-separated account ids")
    replay.add_argument("--regions", type=_names("region"), help="comma-separated regions")
    replay.add_argument(
        "--jobs",
        type=_jobs,
        default=os.cpu_count() or 1,
        help="worker processes (default: the machine's cores; 1: no pool)",
    )
    replay.add_argument(
        "files",
        nargs="+",
        metavar="FILE_OR_FOLDER",
        help="log files (.json, .json.gz, JSON lines); folders are searched recursively for "
        ".json and .json.gz files; s3://BUCKET/PREFIX and AWSLogs folders are read in "
        "CloudTrail's layout, pruned to --since/--until/--accounts/--regions",
    )

    audit = sub.add_parser("audit", parents=[common], help="inventory and credential health, once")
    audit.add_argument("-c", "--config", type=Path, required=needs_config)
    audit.add_argument("--format", choices=("table", "json"), default="table")

    drill = sub.add_parser("drill", parents=[common], help="run a break-glass exercise end to end")
    drill.add_argument("--exercise", required=True)
    drill.add_argument("-c", "--config", type=Path, required=needs_config)
    drill.add_argument("--participant", action="append", default=[])
    drill.add_argument("--profile", help="AWS profile with the break-glass user's credentials")
    drill.add_argument("--watcher-url", help="base URL of the running watcher (default: listen)")
    drill.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait")
    drill.add_argument(
        "--records", type=Path, help="where to write the record (default: the config's records)"
    )
    drill.add_argument("--outside-window", action="store_true", help="run even with no window open")
    drill.add_argument(
        "--account", help="the account to drill in, for a principal declared with account: any"
    )

    demo = sub.add_parser(
        "demo", parents=[common], help="everything against an embedded AWS emulator"
    )
    demo.add_argument("--once", action="store_true", help="check the result and exit")
    demo.add_argument("--port", type=int, default=0, help="metrics port (default: a free one)")

    calendar = sub.add_parser(
        "calendar", parents=[common], help="the upcoming exercise windows as iCalendar"
    )
    calendar_src = calendar.add_mutually_exclusive_group(required=needs_config)
    calendar_src.add_argument("-c", "--config", type=Path)
    calendar_src.add_argument("--rules", type=Path)
    calendar.add_argument("--months", type=_months, default=12, help="how far ahead (default 12)")
    calendar.add_argument("-o", "--output", type=Path, help="write here instead of stdout")

    exercises = sub.add_parser(
        "exercises", parents=[common], help="decided exercise windows, people and records"
    )
    exercises.add_argument("-c", "--config", type=Path, required=needs_config)
    exercises.add_argument("--format", choices=("table", "json"), default="table")
    exercises.add_argument("--limit", type=_limit, default=100, help="windows (default 100)")

    render = sub.add_parser(
        "render", parents=[common], help="print deployment inputs derived from the rules"
    )
    render.add_argument(
        "what",
        choices=("eventbridge-pattern", "eventbridge-patterns"),
        help="eventbridge-pattern: the one pattern (an error when the principals need more); "
        "eventbridge-patterns: as many as needed, one compact JSON pattern per line",
    )
    render_src = render.add_mutually_exclusive_group(required=needs_config)
    render_src.add_argument("-c", "--config", type=Path)
    render_src.add_argument("--rules", type=Path)
    return parser


def _months(text: str) -> int:
    from watcher.calendar import MAX_MONTHS

    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_MONTHS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to {MAX_MONTHS}")
    return int(text)


def _limit(text: str) -> int:
    from watcher.http import parse_limit

    try:
        return parse_limit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bound(*, end: bool) -> Callable[[str], datetime]:
    def parse(text: str) -> datetime:
        from watcher.trail_layout import parse_bound

        try:
            return parse_bound(text, end=end)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _names(kind: Literal["account", "region"]) -> Callable[[str], frozenset[str]]:
    def parse(text: str) -> frozenset[str]:
        from watcher.trail_layout import is_account, is_region

        names = frozenset(n.strip() for n in text.split(",") if n.strip())
        if not names:
            raise argparse.ArgumentTypeError(f"{text!r} names no {kind} (expected a,b,c)")
        valid = is_account if kind == "account" else is_region
        wrong = sorted(n for n in names if not valid(n))
        if wrong:
            example = "123456789012" if kind == "account" else "eu-west-1"
            raise argparse.ArgumentTypeError(f"{', '.join(wrong)}: no {kind} (like {example})")
        return names

    return parse


def _jobs(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _config_from_env(args: argparse.Namespace) -> None:
    """A command that takes ``-c`` and got neither it nor ``--rules`` reads $CONFIG_ENV."""
    env_config = os.environ.get(CONFIG_ENV)
    if not env_config or not hasattr(args, "config") or args.config is not None:
        return
    if getattr(args, "rules", None) is None:
        args.config = Path(env_config)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _config_from_env(args)
    from watcher.logs import setup_logging
    from watcher.metrics import drop_created_series

    drop_created_series()
    level = args.log_level or ("WARNING" if args.command == "demo" else "INFO")
    setup_logging(args.log_format, level)
    try:
        return _dispatch(args)
    except WatcherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _rules_path(args: argparse.Namespace) -> Path:
    if getattr(args, "config", None) is not None:
        from watcher.config import load_config

        return load_config(args.config).rules_path
    path: Path = args.rules
    return path


def _dispatch(args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "validate":
        from watcher.config import load_config
        from watcher.org_principals import expansion_notes
        from watcher.rules import load_rules

        if args.config is not None:
            config = load_config(args.config)
            rules = load_rules(config.rules_path)
            listed = [a.id for a in config.accounts]
            notes = expansion_notes(rules, listed, config.organization is not None)
        else:
            rules = load_rules(args.rules)
            notes = expansion_notes(rules)
        print(f"ok: {len(rules.principals)} principals, {len(rules.exercises)} exercises")
        for note in notes:
            print(note)
        return 0
    if command == "replay":
        return _replay(args)
    if command == "render":
        from watcher.render import eventbridge_pattern_json, eventbridge_patterns_lines
        from watcher.rules import load_rules

        rules = load_rules(_rules_path(args))
        if args.config is not None:  # the canary roles travel the same path
            from watcher.canary import with_canaries
            from watcher.config import load_config

            config = load_config(args.config)
            rules = with_canaries(rules, config.canary, config.accounts)
        if args.what == "eventbridge-patterns":
            print(eventbridge_patterns_lines(rules))
        else:
            print(eventbridge_pattern_json(rules))
        return 0
    if command == "calendar":
        from datetime import UTC, datetime

        from watcher.calendar import calendar_span, render_calendar
        from watcher.rules import load_rules

        now = datetime.now(UTC)
        after, until = calendar_span(now, args.months)
        hint = str(args.config) if args.config is not None else "CONFIG"
        ics = render_calendar(
            load_rules(_rules_path(args)), after, until, stamp=now, config_hint=hint
        )
        if args.output is None:
            sys.stdout.buffer.write(ics)
        else:
            try:
                args.output.write_bytes(ics)
            except OSError as exc:
                raise WatcherError(f"{args.output}: cannot write: {exc.strerror or exc}") from exc
        return 0
    if command == "exercises":
        from watcher.config import load_config
        from watcher.exercises import run_exercises

        config = load_config(args.config)
        return run_exercises(
            config, fmt=args.format, limit=args.limit, out=sys.stdout, err=sys.stderr
        )
    if command == "run":
        from watcher.daemon import run_daemon

        return run_daemon(args.config)
    if command == "audit":
        from watcher.audit import run_audit
        from watcher.config import load_config

        return run_audit(load_config(args.config), fmt=args.format, out=sys.stdout)
    if command == "drill":
        from watcher.drill import DrillOptions, run_drill

        return run_drill(
            DrillOptions(
                config_path=args.config,
                exercise=args.exercise,
                participants=tuple(args.participant),
                profile=args.profile,
                watcher_url=args.watcher_url,
                timeout=args.timeout,
                records_dir=args.records,
                outside_window=args.outside_window,
                account=args.account,
            ),
            out=sys.stdout,
        )
    if command == "demo":
        try:
            from watcher.demo.story import run_demo
        except ImportError as exc:
            raise WatcherError(
                f"the demo needs its AWS emulator ({exc.name} is missing): "
                "pip install 'breakglass-watcher[demo]'"
            ) from exc

        return run_demo(once=args.once, port=args.port, out=sys.stdout)
    raise AssertionError(command)


def _replay(args: argparse.Namespace) -> int:
    from watcher.replay import run_replay
    from watcher.rules import load_rules
    from watcher.trail_layout import Selection

    rules_path: Path | None = args.rules
    if rules_path is None:
        if not DEFAULT_RULES.exists():
            raise WatcherError(
                f"no --rules given and ./{DEFAULT_RULES} does not exist: "
                "pass --rules PATH (a rule file or folder)"
            )
        rules_path = DEFAULT_RULES
    rules = load_rules(rules_path)
    if args.since is not None and args.until is not None and args.since >= args.until:
        raise WatcherError(f"--since {args.since} is not before --until {args.until}")
    selection = Selection(args.since, args.until, args.accounts, args.regions)
    try:
        code = run_replay(
            rules,
            args.files,
            summary=args.summary,
            out=sys.stdout,
            selection=selection,
            jobs=args.jobs,
            strict=args.strict,
        )
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`replay ... | head`): stop quietly, as `head`'s writers do.
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer cut off by its reader
    return code


if __name__ == "__main__":
    raise SystemExit(main())
