"""Scraping the metrics of several processes (prometheus_client's multi-process mode)."""

from pathlib import Path

import pytest

from service import metrics


def test_a_scrape_racing_a_starting_process_still_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "counter_4242.db").write_bytes(b"")  # created, not yet sized by its process
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain") and isinstance(body, bytes)
