"""The command line. ``swiftrun p4.swift`` is ``swiftrun run p4.swift``.

Errors a user can fix are one line on stderr and exit 2 (usage, config) or 1; a bug prints one
line too and asks for ``--debug`` (or SWIFTRUN_DEBUG=1) to see the traceback.
"""

from __future__ import annotations

import os
import re
import signal
import sys

import click

from swiftrun import __version__

SWIFT_ARG = re.compile(r"^-[A-Za-z_][\w.]*=")
BARE_ARG = re.compile(r"^[A-Za-z_][\w.]*=")


def _is_swift_arg(arg: str) -> bool:
    return bool(SWIFT_ARG.match(arg) or BARE_ARG.match(arg))

# verb -> (module, attribute); aliases are the tutorial's names.
COMMANDS = {
    "run": ("run", "run"), "plan": ("run", "plan"), "conf": ("conf", "conf"),
    "up": ("up", "up"), "down": ("down", "down"), "list": ("listing", "list_cmd"),
    "connect": ("connect", "connect"), "add": ("scale", "add"), "remove": ("scale", "remove"),
    "stop-headnode": ("scale", "stop_headnode"), "logs": ("logs", "logs"),
    "cancel": ("logs", "cancel"), "fetch": ("logs", "fetch"), "init": ("init", "init"),
    "image": ("image", "image"),
    "doctor": ("doctor", "doctor"),
    "report": ("report", "report"),
}
ALIASES = {"dissolve": "down", "list_resources": "list", "start_n_more": "add",
           "stop_n_workers": "remove", "stop_headnode": "stop-headnode"}


class SwiftrunGroup(click.Group):
    """Lazy commands (fast --help) + aliases + a first argument ending in .swift means `run`."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        name = ALIASES.get(name, name)
        if name not in COMMANDS:
            return None
        import importlib

        module, attr = COMMANDS[name]
        return getattr(importlib.import_module(f"swiftrun.commands.{module}"), attr)

    @staticmethod
    def _run_options_first(args) -> bool:
        """`swiftrun --dry-run p4.swift`: run's options may come before the script."""
        return (args[0].startswith("-") and args[0] not in ("-h", "--help", "--version", "--debug")
                and any(a.endswith(".swift") for a in args))

    def resolve_command(self, ctx, args):
        if args and args[0].endswith(".swift"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)

    def parse_args(self, ctx, args):
        if args and (args[0].endswith(".swift") or self._run_options_first(args)):
            args = ["run", *args]
        if args and args[0] in ("run", "plan", "conf"):
            # swift's own -name=value arguments would collide with short options (-p, -q):
            # take them out before click parses, anywhere after the verb.
            # A bare name=value is a forgotten dash: hand it on so the run explains the form.
            ctx.meta["swift_args"] = tuple(a for a in args[1:] if _is_swift_arg(a))
            args = [args[0]] + [a for a in args[1:] if not _is_swift_arg(a)]
        if args and args[0] == "connect" and "--" in args:
            cut = args.index("--")
            ctx.meta["remote_command"] = tuple(args[cut + 1:])
            args = args[:cut]
        return super().parse_args(ctx, args)

    def format_commands(self, ctx, formatter):
        rows = [(n, _HELP.get(n, "")) for n in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)
        with formatter.section("Aliases (the tutorial's names)"):
            formatter.write_dl([(a, t) for a, t in ALIASES.items()])


_HELP = {
    "run": "Run a SwiftScript on the cluster (swiftrun p4.swift is the same).",
    "plan": "Show what a run would launch and the swift.conf it would use (offline).",
    "conf": "Print the swift.conf a run of SCRIPT would use.",
    "up": "Bring the cluster up, or check the running one.",
    "down": "Terminate the cluster and delete its security group.",
    "list": "List the cluster's nodes.",
    "connect": "SSH to the headnode (or a worker) with the pinned host key.",
    "add": "Add N workers.",
    "remove": "Remove N workers (all of them if there are fewer).",
    "stop-headnode": "Stop (not terminate) the headnode to save money.",
    "logs": "Show (or --follow) the console of the latest run, or a node's boot log.",
    "cancel": "Stop the swift run that is going on the headnode.",
    "fetch": "Bring a run's outputs back from the headnode.",
    "image": "image build: bake an AMI with Java, Perl and Swift installed.",
    "init": "Write a commented swiftrun.toml (or convert a legacy configs file).",
    "doctor": "Check the project, credentials, cloud and cluster; say what to fix.",
    "report": "Report on a fetched run: tasks, workers, failures, cost, and the tutorial's plots.",
}


@click.group(cls=SwiftrunGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="swiftrun")
@click.option("--debug", is_flag=True, envvar="SWIFTRUN_DEBUG", help="Show tracebacks.")
@click.pass_context
def main_group(ctx, debug):
    """Run Swift workflows on Amazon EC2 with one command: swiftrun p4.swift"""
    ctx.ensure_object(dict)["debug"] = debug


def _sigterm(signum, frame):  # CI runners send SIGTERM: unwind like Ctrl-C so cleanup runs
    raise KeyboardInterrupt


def _wants_json(args) -> bool:
    """`--json` among the options (not in `connect ... -- COMMAND`)."""
    args = list(args)
    return "--json" in (args[:args.index("--")] if "--" in args else args)


def _json_error(args, message: str, code: int) -> None:
    """Under --json, a failure is one JSON document on stdout too (docs/schemas/), unless the
    command printed its own document already; the one line on stderr stays."""
    if not _wants_json(args):
        return
    from swiftrun.commands._common import emit, emitted, error_doc

    if not emitted():
        emit(error_doc(message, code))


def entry() -> None:
    """The ``swiftrun`` program (console script and ``python -m swiftrun``): ``main``, then out
    without the interpreter's teardown. Freeing a warm run's tables (a 20 000-file project's
    manifest, scan and listing, some 100 000 objects) took 25-45 ms after the last line was
    printed, against ~5 ms for this. Nothing is lost by it: every thread swiftrun starts is a
    daemon, every file it writes is closed when written, no atexit work is registered, and the
    output is flushed here. ``main`` itself still ends in SystemExit (tests call it)."""
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, OSError):
        code = code or 120      # what Python exits with when its output cannot be flushed
    os._exit(code)


def main(argv=None) -> None:
    from swiftrun.errors import SwiftrunError

    signal.signal(signal.SIGTERM, _sigterm)
    args = sys.argv[1:] if argv is None else list(argv)
    debug = (os.environ.get("SWIFTRUN_DEBUG", "").strip().lower() in ("1", "true", "t", "yes", "y", "on")
             or "--debug" in args)
    try:
        # The environment first: a bad SWIFTRUN_* value or an unusable home is one line naming
        # the variable, before any project file, cloud or SSH call (environ.py).
        from swiftrun import environ

        asks_help = not args or any(a in ("-h", "--help", "--version") for a in args)
        environ.check(need_home=not asks_help)
        rv = main_group.main(args=argv, prog_name="swiftrun", standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:
        print(exc.ctx.get_help())
        sys.exit(0)
    except click.UsageError as exc:
        # One line, like every other error: what was wrong and where to look.
        where = exc.ctx.command_path if exc.ctx else "swiftrun"
        _json_error(args, f"{exc.format_message()} (see `{where} --help`)", 2)
        print(f"swiftrun: error: {exc.format_message()} (see `{where} --help`)", file=sys.stderr)
        sys.exit(2)
    except click.ClickException as exc:
        _json_error(args, exc.format_message(), exc.exit_code)
        print(f"swiftrun: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except click.Abort:
        _json_error(args, "aborted", 130)
        print("swiftrun: aborted", file=sys.stderr)
        sys.exit(130)
    except SwiftrunError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        _json_error(args, str(exc), exc.exit_code)
        print(f"swiftrun: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _json_error(args, "interrupted", 130)
        print("swiftrun: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        _json_error(args, f"internal error: {type(exc).__name__}: {exc}", 1)
        if debug:
            raise
        print(f"swiftrun: internal error: {type(exc).__name__}: {exc} "
              "(run again with --debug for the traceback)", file=sys.stderr)
        sys.exit(1)
