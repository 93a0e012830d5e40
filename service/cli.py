"""The single `lumos` console script.

Each package registers its own subcommands, so this file only assembles them. Heavy imports (torch,
av, fastapi) happen inside the command functions, which keeps `lumos --help` instant. Settings come
from `LUMOS_*` variables, so this is also where a person learns that one of them is wrong: a bad
value in one line that names the variable, a misspelt name as a warning with the likely intent.
"""

import argparse
import atexit
import difflib
import gc
import logging
import os
import sys
from importlib.metadata import PackageNotFoundError, version

from pydantic import ValidationError

from model import cli as model_cli
from service import commands as service_commands
from service.settings import Settings
from training import cli as training_cli

_CLIENT_VARIABLES = {"LUMOS_API_KEY"}
"""Read by the CLI's client commands, not by the service."""


def _version() -> str:
    try:
        return version("lumos")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lumos", description="Action recognition in dark video.")
    parser.add_argument("--version", action="version", version=f"lumos {_version()}")
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in (model_cli.register, training_cli.register, service_commands.register):
        register(commands)
    return parser


def unknown_variables(environ: dict[str, str]) -> list[str]:
    """A warning per `LUMOS_*` variable no setting reads, with the setting it probably means."""
    known = {f"LUMOS_{name.upper()}" for name in Settings.model_fields} | _CLIENT_VARIABLES
    warnings = []
    for name in sorted(n for n in environ if n.startswith("LUMOS_") and n not in known):
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(f"lumos: warning: {name} is not a Lumos setting and is ignored{hint}")
    return warnings


def settings_errors(exc: ValidationError) -> list[str]:
    """One line per bad setting: the variable, what it holds, and what is wrong with it."""
    lines = []
    for error in exc.errors():
        name = "LUMOS_" + "_".join(map(str, error["loc"])).upper()
        lines.append(f"lumos: {name}={error.get('input')!r}: {error['msg']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    # At exit the interpreter's garbage collections walk every object torch and its kin made,
    # only for the OS to free them all anyway: half a second of each command on 2 cores.
    # Frozen, they are skipped (what is freed by reference count still is, flushing files).
    atexit.register(gc.freeze)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for warning in unknown_variables(dict(os.environ)):
        print(warning, file=sys.stderr)
    try:
        return int(args.run(args) or 0)
    except ValidationError as exc:
        if exc.title != Settings.__name__:
            raise
        print("\n".join(settings_errors(exc)), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
