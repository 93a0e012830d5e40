"""`lumos classify FILE --save OUT.mp4`: the annotated video has every input frame, at its size,
with each clip's labels drawn on it."""

import subprocess
import sys

import av
import numpy as np

from bench.servers import ROOT
from service.annotate import annotate
from tests.service.test_queue import result


def frames_of(path) -> tuple[int, tuple[int, int], np.ndarray]:
    with av.open(str(path)) as container:
        images = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return len(images), (images[0].shape[1], images[0].shape[0]), images[0]


def test_classify_saves_the_annotated_video_with_the_inputs_frames_and_size(
    make_video, tiny_artifact, tmp_path
):
    video = make_video(tmp_path / "clip.mp4", frames=30, size=(96, 72))
    out = tmp_path / "out.mp4"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "LUMOS_MODEL_DIR": str(tiny_artifact)}
    env |= {"LUMOS_MODEL_ROOT": str(tmp_path / "models"), "LUMOS_BACKEND": "fp32"}
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "classify", str(video), "--save", str(out)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    count, size, first = frames_of(out)
    assert (count, size) == frames_of(video)[:2] == (30, (96, 72))
    assert np.abs(first.astype(int) - frames_of(video)[2]).mean() > 2  # the panel is drawn
    refused = subprocess.run(
        [sys.executable, "-m", "service.cli", "classify", str(video), str(video), "--save", "x"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "one FILE" in refused.stderr


def test_the_enhanced_view_goes_beside_each_frame(make_video, tmp_path):
    video = make_video(tmp_path / "clip.mp4", frames=12, size=(64, 48))
    out = tmp_path / "side.mp4"
    clips = [(0.0, result("a", Run=0.8, Walk=0.2)), (0.5, result("b", Walk=0.9, Run=0.1))]
    assert annotate(video, out, clips, top=2, enhanced=True) == 12
    count, size, _ = frames_of(out)
    assert (count, size) == (12, (128, 48))
