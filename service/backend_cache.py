"""The backend choice remembered on disk, so that a restart serves at once.

Timing every candidate takes tens of seconds for the demo model on 2 cores and minutes at the
paper size, and its answer only changes when something it depends on changes: the weights, the
clip shape, the CPU (its instruction sets, and any cap put on them through the environment), the
thread count, the libraries that run the candidates, and the bounds a candidate is judged by. The
choice is stored under a digest of exactly those, so any change makes a new entry and a stale one
is never read.
"""

import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import torch

from service.backends import Trial

log = logging.getLogger(__name__)

_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
)
"""The instruction sets that decide which kernels the candidates run."""
_LIBRARIES = ("torch", "onnxruntime", "openvino", "nncf", "onnx", "onnxscript")
_ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
"""Environment variables that make oneDNN or PyTorch use fewer instruction sets than the CPU has."""


def _cpuinfo() -> tuple[str, set[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor(), set()
    fields: dict[str, str] = {}
    for line in text.splitlines():  # the first processor's fields are every core's here
        key, colon, value = line.partition(":")
        if colon:
            fields.setdefault(key.strip(), value.strip())
    return fields.get("model name") or platform.processor(), set(fields.get("flags", "").split())


def cpu_features() -> dict[str, object]:
    """What about this CPU (as the process may use it) decides which backend is fastest."""
    model, flags = _cpuinfo()
    return {
        "machine": platform.machine(),
        "model": model,
        "flags": sorted(flag for flag in _FLAGS if flag in flags),
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "caps": {name: os.environ[name] for name in _ISA_CAPS if name in os.environ},
        "threads": torch.get_num_threads(),
    }


def cpu_key() -> str:
    """A short digest of `cpu_features`, for naming files derived for this kind of CPU."""
    return digest(cpu_features())[:12]


def library_versions() -> dict[str, str]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


class ChoiceCache:
    """Choices as small JSON files in `directory`, one per key; unreadable ones count as absent."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @staticmethod
    def key(weights_digest: str, shape: tuple[int, int], **judged_by: object) -> str:
        return digest(
            {
                "weights": weights_digest,
                "shape": shape,
                "cpu": cpu_features(),
                "libraries": library_versions(),
                **judged_by,
            }
        )[:32]

    def _path(self, key: str) -> Path:
        return self.directory / f"choice-{key}.json"

    def get(self, key: str) -> tuple[str, list[Trial]] | None:
        """(the chosen backend's name, the trials it was chosen from), or None."""
        path = self._path(key)
        try:
            entry = json.loads(path.read_text())
            return entry["chosen"], [Trial(**trial) for trial in entry["trials"]]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable backend choice %s: %s", path, exc)
            return None

    def put(self, key: str, chosen: str, trials: list[Trial], about: dict[str, object]) -> Path:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "chosen": chosen,
            "trials": [asdict(trial) for trial in trials],
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cpu": cpu_features(),
            "libraries": library_versions(),
            **about,
        }
        tmp = path.with_name(f".{path.name}.{time.time_ns()}.tmp")
        tmp.write_text(json.dumps(entry, indent=2))
        tmp.replace(path)
        return path
