"""ONNX export of a student (what production runs) with a dynamic batch, and its check.

Uses the torch.export-based exporter: the legacy TorchScript tracer mis-traces the transformer's
inference fast path. The head's token masking is training-only, so the exported eval graph is
static apart from the batch size.
"""

from pathlib import Path

import numpy as np
import torch
from torch import nn

from model.clip import ClipSpec
from model.networks import Student

OPSET = 18
INPUT, OUTPUT = "clip", "logits"


class _Logits(nn.Module):
    """The student with only its logits as output: the one thing a deployment reads."""

    def __init__(self, student: Student) -> None:
        super().__init__()
        self.student = student

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.student(clip).logits


def sample_input(clip: ClipSpec, batch: int = 2) -> torch.Tensor:
    """A random network input shaped like `clip.to_input` output."""
    return torch.randn(batch, 3, clip.frames, clip.crop, clip.crop)


def export_onnx(student: Student, clip: ClipSpec, path: str | Path) -> Path:
    """Write `student` as a self-contained ONNX file taking `B x 3 x T x crop x crop` input."""
    if not isinstance(student, Student):
        raise TypeError(f"only a Student is exported, not {type(student).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = _Logits(student).eval()
    torch.onnx.export(
        model,
        (sample_input(clip),),
        path,
        dynamo=True,
        opset_version=OPSET,
        input_names=[INPUT],
        output_names=[OUTPUT],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        external_data=False,
        verbose=False,
    )
    return path


def check_onnx(path: str | Path, student: Student, clip: ClipSpec, batch: int = 3) -> float:
    """Max absolute logit difference between onnxruntime (CPU) and PyTorch on a random batch."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = sample_input(clip, batch)
    (onnx_logits,) = session.run([OUTPUT], {INPUT: x.numpy()})
    with torch.no_grad():
        torch_logits = student.eval()(x).logits.numpy()
    return float(np.abs(onnx_logits - torch_logits).max())
