"""`lumos` subcommands of the training package."""

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the root parser."""
