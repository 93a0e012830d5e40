"""The types of the settings kept as text in a small language (networks, HOST:PORT lists, the
reconnect schedule): each is checked at start by the parser its users read it with, so that a bad
value stops the process with its reason instead of failing where it is used."""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from service.backoff import parse_backoff
from service.paths import bundled_model
from service.urls import network_list, parse_endpoints


def _parsed_by(parse: Callable[[str], object]) -> AfterValidator:
    def check(value: str | None) -> str | None:
        if value is not None:
            parse(value)
        return value

    return AfterValidator(check)


def sentinel_list(addresses: str) -> list[tuple[str, int]]:
    """ "s1:26379, [::1]:26379" -> [("s1", 26379), ("::1", 26379)]: at least one."""
    if not (parsed := parse_endpoints(addresses)):
        raise ValueError("no Sentinel HOST:PORT given")
    return parsed


Networks = Annotated[str, _parsed_by(network_list)]
Endpoints = Annotated[str, _parsed_by(parse_endpoints)]
Sentinels = Annotated[str | None, _parsed_by(sentinel_list)]
Backoff = Annotated[str, _parsed_by(parse_backoff)]
ModelDir = Annotated[Path, AfterValidator(bundled_model)]
"""The default model directory stands for the bundled demo model wherever `lumos` runs."""
