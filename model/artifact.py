"""Versioned model artifacts: `model.safetensors` plus `manifest.json` in one directory.

Weights are never pickled, so loading an artifact cannot run code; the manifest carries everything
needed to rebuild the network and feed it (architecture, labels, clip spec), plus where it came
from and how well it did. A clip spec that draws its focus square with a learned localiser
(`ClipSpec.locate`) has the localiser's weights in the same file, named `locator.*`.
"""

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from model.clip import ClipSpec
from model.locate import PREFIX, Locator
from model.manifest import FORMAT, MANIFEST, WEIGHTS, ArtifactError, Manifest, load_manifest
from model.networks import Student, Teacher, build_network
from model.state import StateMismatchError, check_state, load_strict


class Artifact(NamedTuple):
    network: Student | Teacher
    manifest: Manifest


def _write_atomic(path: Path, write: Any) -> None:
    """Write via a temporary sibling and rename, so a reader never sees a half-written file. The
    sibling is named by process: under torchrun every rank writes the same localiser."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
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
    state = dict(network.state_dict())
    if manifest.clip.locate:
        if manifest.clip.locator is None:
            raise ArtifactError("the clip spec draws its square with a localiser: attach it")
        state.update({PREFIX + k: v for k, v in manifest.clip.locator.state_dict().items()})
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    _write_atomic(directory / WEIGHTS, lambda p: save_file(state, p, metadata={"format": FORMAT}))
    _write_atomic(directory / MANIFEST, lambda p: p.write_text(manifest.model_dump_json(indent=2)))
    return directory


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path, device="cpu")
    except (FileNotFoundError, SafetensorError) as e:
        raise ArtifactError(f"cannot read weights {path}: {e}") from e


def _locator(state: dict[str, torch.Tensor], source: str) -> Locator:
    """The localiser of `state`, from an artifact or a `locate` stage's file alike, so that both
    refuse a wrong set of weights with the same ArtifactError naming `source`."""
    locator = Locator()
    try:
        load_strict(locator, state, source)
    except StateMismatchError as e:
        raise ArtifactError(str(e)) from e
    return locator.eval()


def _located(manifest: Manifest, state: dict[str, torch.Tensor], path: Path) -> Manifest:
    """`manifest` with its clip spec's localiser built from (and taken out of) `state`, where the
    spec names one; as it is where not."""
    if not manifest.clip.locate:
        return manifest
    ours = [k for k in state if k.startswith(PREFIX)]
    located = {k.removeprefix(PREFIX): state.pop(k) for k in ours}
    locator = _locator(located, f"{path} (the localiser)")
    return manifest.model_copy(update={"clip": manifest.clip.with_locator(locator)})


def load_artifact(directory: str | Path) -> Artifact:
    """Rebuild the network described by the manifest and load its weights (CPU, eval mode), and
    attach the localiser to the manifest's clip spec where it names one."""
    manifest = load_manifest(directory)
    path = Path(directory) / WEIGHTS
    state = _read_weights(path)
    manifest = _located(manifest, state, path)
    # Built on the meta device and filled by assignment: no time spent initialising weights
    # that are about to be replaced.
    with torch.device("meta"):
        network = build_network(manifest.arch)
    try:
        load_strict(network, state, str(path), assign=True)
    except StateMismatchError as e:
        raise ArtifactError(str(e)) from e
    return Artifact(network.eval(), manifest)


def load_clip_spec(directory: str | Path) -> ClipSpec:
    """The artifact's clip spec, with its localiser attached where it names one: how to cut and
    zoom clips for the model, without building the network (the service's key frames)."""
    manifest = load_manifest(directory)
    path = Path(directory) / WEIGHTS
    return _located(manifest, _read_weights(path), path).clip


CUT = "cut"
"""The metadata key of a localiser file that says how its clips were cut (`save_locator`)."""


def save_locator(locator: Locator, path: Path, cut: dict[str, Any]) -> Path:
    """Write a localiser's weights alone: a `locate` stage's output, which the stages after it
    attach to their clip spec (`load_locator`); artifacts hold them beside the network's. `cut`
    (how the clips it learnt from were cut) goes into the file, so that a stage cutting its clips
    otherwise can refuse it (`locator_cut`) instead of zooming with squares learnt on other
    frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in locator.state_dict().items()}
    metadata = {"format": FORMAT, CUT: json.dumps(cut, sort_keys=True)}
    _write_atomic(path, lambda p: save_file(state, p, metadata=metadata))
    return path


def load_locator(path: Path) -> Locator:
    """A localiser from `save_locator`'s file, in eval mode; an ArtifactError says what is wrong."""
    return _locator(_read_weights(path), str(path))


def locator_cut(path: Path) -> dict[str, Any] | None:
    """How the clips of `save_locator`'s file were cut; None where the file does not say."""
    try:
        with safe_open(path, "pt") as weights:
            cut = (weights.metadata() or {}).get(CUT)
    except (FileNotFoundError, SafetensorError) as e:
        raise ArtifactError(f"cannot read weights {path}: {e}") from e
    return None if cut is None else json.loads(cut)
