"""The control plane (API, job planner and runner, model registry, CLI) starts without torch.

Importing torch costs seconds and most of a gigabyte of RSS; an API replica, the job planner and the
CLI's light commands must not pay that for code they never run (inference is the workers' job).
"""

import subprocess
import sys

import pytest

HEAVY = ("torch", "torchvision", "training.engine")


@pytest.mark.parametrize(
    "module",
    [
        "service.api.app",
        "service.jobs.planner",
        "service.jobs.runner",
        "service.registry",
        "service.cli",
    ],
)
def test_control_plane_imports_no_torch(module: str) -> None:
    probe = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "", f"{module} imported {result.stdout.strip()}"
