"""Versioned model artifacts: `model.safetensors` plus `manifest.json` in one directory.

Weights are never pickled, so loading an artifact cannot run code; the manifest carries everything
needed to rebuild the network and feed it (architecture, labels, clip spec), plus where it came
from and how well it did.
"""

import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from model.manifest import FORMAT, MANIFEST, WEIGHTS, ArtifactError, Manifest, load_manifest
from model.networks import Student, Teacher, build_network
from model.state import StateMismatchError, check_state, load_strict


class Artifact(NamedTuple):
    network: Student | Teacher
    manifest: Manifest


def _write_atomic(path: Path, write: Any) -> None:
    """Write via a temporary sibling and rename, so a reader never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def save_artifact(directory: str | Path, network: Student | Teacher, manifest: Manifest) -> Path:
    """Write `network`'s weights and `manifest` to `directory` (created if needed)."""
    if not isinstance(network, Student | Teacher):
        raise ArtifactError(f"an artifact holds a Student or a Teacher, not {type(network)}")
    with torch.device("meta"):
        described = build_network(manifest.arch)
    try:
        check_state(described, network.state_dict(), f"{type(network).__name__} to save")
    except StateMismatchError as e:
        raise ArtifactError(f"the manifest's arch does not describe this network: {e}") from e
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    _write_atomic(directory / WEIGHTS, lambda p: save_file(state, p, metadata={"format": FORMAT}))
    _write_atomic(directory / MANIFEST, lambda p: p.write_text(manifest.model_dump_json(indent=2)))
    return directory


def load_artifact(directory: str | Path) -> Artifact:
    """Rebuild the network described by the manifest and load its weights (CPU, eval mode)."""
    manifest = load_manifest(directory)
    path = Path(directory) / WEIGHTS
    try:
        state = load_file(path, device="cpu")
    except (FileNotFoundError, SafetensorError) as e:
        raise ArtifactError(f"cannot read weights {path}: {e}") from e
    # Built on the meta device and filled by assignment: no time spent initialising weights
    # that are about to be replaced.
    with torch.device("meta"):
        network = build_network(manifest.arch)
    try:
        load_strict(network, state, str(path), assign=True)
    except StateMismatchError as e:
        raise ArtifactError(str(e)) from e
    return Artifact(network.eval(), manifest)
