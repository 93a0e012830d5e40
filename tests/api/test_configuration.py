"""docs/configuration.md is the Settings class, rendered: it may not drift from the code."""

import os
import subprocess
import sys

from bench.servers import ROOT
from service.settings import Settings


def test_configuration_doc_is_generated_from_settings():
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMOS_")}
    rendered = subprocess.run(
        [sys.executable, "-m", "service.cli", "config", "--markdown"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert rendered == doc, "run: lumos config --markdown > docs/configuration.md"
    for name in Settings.model_fields:
        assert f"`LUMOS_{name.upper()}`" in doc


def test_effective_settings_hide_api_keys():
    env = {**os.environ, "LUMOS_API_KEYS": "very-secret-key", "LUMOS_PORT": "8123"}
    shown = subprocess.run(
        [sys.executable, "-m", "service.cli", "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"port": 8123' in shown
    assert "very-secret-key" not in shown and "**********" in shown
