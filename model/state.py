"""Strict state-dict loading with an error that names every offending key.

PyTorch's own strict loading stops at the first shape mismatch with a terse message; weights come
from users' files here (checkpoints, artifacts), so the error must say exactly what differs.
"""

from collections.abc import Mapping

import torch
from torch import nn


class StateMismatchError(ValueError):
    """Weights that do not fit the network; lists missing, unexpected and mis-shaped keys."""

    def __init__(
        self,
        source: str,
        missing: list[str],
        unexpected: list[str],
        mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]],
    ) -> None:
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected)}")
        if mismatched:
            shapes = (
                f"{k} (file {list(f)}, network {list(n)})" for k, (f, n) in mismatched.items()
            )
            parts.append(f"shape mismatches: {', '.join(shapes)}")
        super().__init__(f"{source}: weights do not fit the network; " + "; ".join(parts))


def check_state(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise StateMismatchError unless `state` has exactly `module`'s keys and shapes."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = {
        k: (tuple(v.shape), tuple(expected[k].shape))
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    }
    if missing or unexpected or mismatched:
        raise StateMismatchError(source, missing, unexpected, mismatched)


def load_strict(
    module: nn.Module, state: Mapping[str, torch.Tensor], source: str, assign: bool = False
) -> None:
    """Load `state` into `module` after `check_state`.

    `assign=True` adopts the given tensors instead of copying: for modules built on the meta device.
    """
    check_state(module, state, source)
    module.load_state_dict(state, strict=True, assign=assign)
