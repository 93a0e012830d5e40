"""Key frames through a real `lumos serve` whose model zooms (`clip.focus`): each clip's answer
marks the square the model zoomed onto, over where the clip changes, and none over a still clip;
a model whose localiser finds the person (`clip.locate`) marks where its localiser says."""

from pathlib import Path

import pytest

from model.clip import ClipSpec
from tests.api.conftest import Service, service_env, upload
from tests.conftest import FIGURE, bright_locator, figure_frames, make_artifact
from training.clips import centre_crop_box
from training.video import write_video

ZOOMING = ClipSpec(frames=8, crop=56, resize=(75, 56), fps=12.0, normalize="per_clip", focus=2.5)
"""The demo model's field of view and zoom limit, at the tiny test model's rate."""


@pytest.fixture(scope="module", params=[1, 2], ids=["detail-1", "detail-2"])
def service(service_factory, tmp_path_factory, request) -> Service:
    """The zooming model, and the same taking its frames at twice the crop (`clip.detail`):
    ingest cuts them at its size and the square is marked where it is found."""
    root = tmp_path_factory.mktemp("key-frames")
    clip = ZOOMING.model_copy(update={"detail": request.param})
    artifact = make_artifact(root / "artifact", f"zooming-{request.param}", clip=clip)
    return service_factory("serve", service_env(root, artifact))


def key_frames(service: Service, path: Path) -> list[dict]:
    with service.client() as client:
        answer = upload(client, path, "/v1/frames")
    assert answer.status_code == 200, answer.text
    return answer.json()["clips"]


def test_the_square_the_model_zoomed_onto_is_over_the_waving_person(service, tmp_path):
    video = tmp_path / "waving.mp4"
    write_video(video, figure_frames(24, waving=True), 12.0)
    clips = key_frames(service, video)
    assert [c["seq"] for c in clips] == [0, 1, 2]
    # The person in fractions of the key frame, the model's field of view: the centre crop
    # across, the whole height down.
    width, height = ZOOMING.resize
    crop = centre_crop_box(height, width, ZOOMING.crop)
    left, top, right, bottom = FIGURE
    left, right = ((edge * width - crop.left) / crop.width for edge in (left, right))
    for clip in clips:
        square = clip["focus"]
        assert square is not None, clip["seq"]
        x, y, side = square["x"], square["y"], square["side"]
        assert side == pytest.approx(1 / ZOOMING.focus, abs=0.02)  # the limit: the person is small
        assert 0 <= x and x + side <= 0.5 and 0.5 <= y and y + side <= 1  # the lower left corner
        assert x <= left and right <= x + side and y <= top and bottom <= y + side  # all of them


def test_the_model_answers_every_clip_it_zooms(service, tmp_path):
    """Classified through the queue and the inference worker, whose clips come at `side`."""
    video = tmp_path / "waving.mp4"
    write_video(video, figure_frames(24, waving=True), 12.0)
    with service.client() as client:
        answer = upload(client, video)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "done" and body["clip_count"] == len(body["clips"]) == 3


def test_a_still_clip_is_not_zoomed_so_no_square_is_marked(service, tmp_path):
    video = tmp_path / "still.mp4"
    # Lossless: at x264's default quality the frames of a still noisy room flicker a little
    # (more on the first frames after a key frame), and the model may zoom onto that.
    write_video(video, figure_frames(24, waving=False), 12.0, quality=0)
    clips = key_frames(service, video)
    assert len(clips) == 3 and [c["focus"] for c in clips] == [None, None, None]


def test_a_model_that_locates_marks_where_its_localiser_finds_the_person(service_factory, tmp_path):
    """Its localiser (set by hand to find what stands out from the room) is read from the
    artifact: it finds the still person that the change square leaves unmarked."""
    located = ZOOMING.model_copy(update={"locate": True}).with_locator(bright_locator())
    artifact = make_artifact(tmp_path / "artifact", "locating-1", clip=located)
    service = service_factory("serve", service_env(tmp_path, artifact))
    video = tmp_path / "still.mp4"
    write_video(video, figure_frames(24, waving=False), 12.0, quality=0)
    clips = key_frames(service, video)
    assert len(clips) == 3
    for clip in clips:
        square = clip["focus"]
        assert square is not None, clip["seq"]
        x, y, side = square["x"], square["y"], square["side"]
        assert side <= 0.6 and 0 <= x and x + side <= 0.5 and 0.5 <= y  # the lower left corner
