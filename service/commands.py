"""`lumos` subcommands of the service package: serve, api, ingest, infer, trainer, classify, watch."""

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the root parser."""
