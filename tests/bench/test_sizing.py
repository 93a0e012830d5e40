"""The sizing model (bench/sizing.py): docs/scaling.md's table is what it prints."""

import pytest

from bench import sizing
from bench.report import ROOT


def test_the_docs_sizing_table_is_the_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert sizing.main([]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("| cameras |") and printed.count("\n") == 4
    assert printed in (ROOT / "docs" / "scaling.md").read_text()
