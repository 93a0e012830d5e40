"""Import IG-65M-style R(2+1)D checkpoints (ig65m-pytorch, torchvision VideoResNet) from disk.

Users bring the file (nothing is downloaded); it may be a bare state dict or wrap one under
"state_dict"/"model", possibly saved from DataParallel ("module." prefixes). The classifier (fc.*)
belongs to the pretraining classes (359/487/400) and is dropped; everything else must match the
backbone exactly, so a checkpoint of another layout fails loudly instead of half-loading.
"""

from collections.abc import Mapping
from pathlib import Path

import torch

from model.backbone import R2Plus1D
from model.state import load_strict

_WRAPPERS = ("state_dict", "model")
_PREFIX = "module."


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read as an R(2+1)D state dict."""


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The backbone tensors of a checkpoint: unwrapped, prefix-free, classifier dropped."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"no checkpoint at {path}") from e
    except Exception as e:  # torch raises pickle, zip and runtime errors for a bad file
        # The error's own text quotes bytes of the file; the path may be a job's (shown to
        # clients), so only the kind of failure is reported.
        kind = type(e).__name__
        raise CheckpointError(
            f"{path} is not a loadable weights-only checkpoint ({kind})"
        ) from None
    for key in _WRAPPERS:
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    state = {k.removeprefix(_PREFIX): v for k, v in data.items()}
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def import_backbone(backbone: R2Plus1D, path: str | Path) -> None:
    """Load the checkpoint at `path` into `backbone`, raising StateMismatchError on any misfit."""
    load_strict(backbone, read_state(path), f"checkpoint {path}")
