"""The single `lumos` console script.

Each package registers its own subcommands, so this file only assembles them. Heavy imports (torch,
av, fastapi) happen inside the command functions, which keeps `lumos --help` instant.
"""

import argparse
import logging
import sys

from model import cli as model_cli
from service import commands as service_commands
from training import cli as training_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lumos", description="Action recognition in dark video.")
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in (model_cli.register, training_cli.register, service_commands.register):
        register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
