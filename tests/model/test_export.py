"""ONNX export of a student, run in onnxruntime."""

import onnx
import onnxruntime
import pytest
import torch

from model.clip import ClipSpec
from model.export import INPUT, OUTPUT, check_onnx, export_onnx
from model.networks import build_network


def test_exported_student_matches_pytorch_for_any_batch(tiny, tmp_path):
    student = build_network(tiny(frames=8)).eval()
    clip = ClipSpec(frames=8, crop=64)
    path = export_onnx(student, clip, tmp_path / "student.onnx")

    model = onnx.load(path)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert check_onnx(path, student, clip) < 1e-3
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 4):
        x = torch.rand(batch, 3, 8, 64, 64)
        (logits,) = session.run([OUTPUT], {INPUT: x.numpy()})
        with torch.no_grad():
            expected = student(x).logits
        assert logits.shape == (batch, 5)
        assert torch.from_numpy(logits).sub(expected).abs().max() < 1e-3


def test_only_a_student_is_exported(tiny, tmp_path):
    teacher = build_network(tiny(kind="teacher", fusion="dff"))
    with pytest.raises(TypeError, match="only a Student"):
        export_onnx(teacher, ClipSpec(frames=8, crop=64), tmp_path / "teacher.onnx")
