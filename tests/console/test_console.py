"""The web console in a real browser (Debian's Chromium, driven by Playwright) against a real
`lumos serve` with API keys on: classify an upload (and see where the bundled demo model, which
zooms, looked), follow a camera live and a dead one, read the bundled demo model's and a finished
pipeline job's metrics, activate a model, run a training job, at desktop and phone widths. Each
page is screenshot; `make screenshots` (LUMOS_SCREENSHOTS=docs/images) keeps them for the README,
the Classify, phone and Cameras pictures from the bundled demo model, and no other run rewrites
tracked files."""

import json
import os
import re
import shutil
from collections.abc import Iterator

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bench.servers import ROOT, free_port, wait_for
from tests.api.conftest import API_KEY, Service, job_state, service_env, start_service, upload
from tests.api.test_jobs import TINY, make_dataset
from tests.conftest import ARID_LABELS, figure_frames, make_artifact
from training.video import write_video

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDE = {"width": 1200, "height": 900}
VIEWS = ("dark", "enhanced")
PHONE = {"width": 390, "height": 844}
TINY_2_METRICS = {"top1": 0.4242, "sit_stand_confusion": 0.03}
A_LABEL = re.compile(f"^({'|'.join(ARID_LABELS)})$")
DEMO = ROOT / "artifacts" / "demo"
PERCENT = re.compile(r"^\d{1,3}\.\d%$")
SCREENSHOTS = os.environ.get("LUMOS_SCREENSHOTS")


@pytest.fixture(scope="module")
def service(tiny_artifact, tmp_path_factory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("console")
    env = service_env(root, tiny_artifact, api_keys=API_KEY, lease_ms="1000")
    manifest = make_artifact(root / "models" / "tiny-2", "tiny-2", seed=1) / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "metrics": TINY_2_METRICS}))
    demo = json.loads((DEMO / "manifest.json").read_text())
    shutil.copytree(DEMO, root / "models" / demo["version"])  # its real, nested metrics
    make_dataset(root / "data" / "synth")
    service = start_service("serve", env, root / "serve.log")
    yield service
    service.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser: Browser, service: Service) -> Iterator[Page]:
    """One tab for the whole module, as a person would keep it: the key is asked for once."""
    page = browser.new_page(viewport=WIDE)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{service.url}/")
    yield page
    page.close()
    assert not errors, errors


def open_page(page: Page, name: str) -> None:
    page.click(f"nav a[href='#{name}']")
    expect(page.locator(f"#{name}")).to_be_visible()


def shoot(page: Page, name: str) -> None:
    image = page.screenshot(full_page=True)
    if SCREENSHOTS:
        (ROOT / SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        (ROOT / SCREENSHOTS / f"console-{name}.png").write_bytes(image)


def no_sideways_scroll(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


MEAN_LUMA = """img => {
  const canvas = document.createElement("canvas");
  [canvas.width, canvas.height] = [img.naturalWidth, img.naturalHeight];
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0;
  for (let i = 0; i < data.length; i += 4) {
    sum += 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
  }
  return sum / (data.length / 4);
}"""


def test_classify_shows_labels_scores_and_both_views(page: Page, service, make_video, tmp_path):
    video = make_video(tmp_path / "dark.mp4", frames=36, fps=12.0, size=(160, 120))
    open_page(page, "classify")
    status = page.locator("#status")
    expect(status).to_contain_text("ready")
    expect(status).to_contain_text("fp32")
    expect(status).to_contain_text("tiny-1")
    expect(status).to_contain_text("0 files, 0 live")

    page.set_input_files("#classify-file", video)
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()  # the upload met a 401: the key is asked for
    expect(dialog).to_contain_text("needs an API key")
    dialog.locator("input[name=key]").fill(API_KEY)
    dialog.locator("button[value=ok]").click()

    clips = page.locator(".timeline .clip")
    expect(page.locator(".clip .frame.enhanced img")).to_have_count(4, timeout=60_000)
    assert clips.count() == 4  # 36 frames in clips of 8
    assert page.evaluate("sessionStorage.getItem('lumos.apiKey')") == API_KEY
    assert page.locator(".verdict .headline strong").inner_text() in ARID_LABELS
    for index in range(4):
        clip = clips.nth(index)
        expect(clip.locator(".span")).to_contain_text(f"Clip {index + 1} · ")
        labels = clip.locator(".scores .label").all_inner_texts()
        assert len(labels) == 3 and set(labels) <= set(ARID_LABELS)
        scores = [float(s.rstrip("%")) for s in clip.locator(".scores .score").all_inner_texts()]
        assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 100
        expect(clip.locator(".meta")).to_contain_text("luma")
        dark, enhanced = clip.locator(".frame.dark img"), clip.locator(".frame.enhanced img")
        assert dark.evaluate("img => img.naturalWidth") == 160
        # The captured frame is dark; the Retinex view makes what is in it visible.
        assert dark.evaluate(MEAN_LUMA) < 40 < enhanced.evaluate(MEAN_LUMA)
    expect(clips.locator(".frame .focus")).to_have_count(0)  # tiny-1 does not zoom
    page.set_viewport_size(PHONE)
    assert no_sideways_scroll(page)
    page.set_viewport_size(WIDE)


def test_key_frames_mark_where_a_zooming_model_looked(page: Page, service: Service, tmp_path):
    """The bundled demo model zooms (`clip.focus` 2.5): over both key frames of each clip an
    outline sits where /v1/frames says the model looked, and the images say so in words."""
    demo = json.loads((DEMO / "manifest.json").read_text())["version"]
    video = tmp_path / "waving.mp4"
    write_video(video, figure_frames(36, waving=True), 12.0)  # 18 frames at 6 fps: 2 clips
    with service.client() as client:
        assert client.post(f"/v1/models/{demo}/activate").status_code == 200
        try:
            expect(page.locator("[data-status=model]")).to_have_text(demo, timeout=10_000)
            squares = [c["focus"] for c in upload(client, video, "/v1/frames").json()["clips"]]
            assert len(squares) == 2 and None not in squares
            open_page(page, "classify")
            page.set_input_files("#classify-file", video)
            expect(page.locator(".clip .frame .focus")).to_have_count(4, timeout=60_000)
            for seq, square in enumerate(squares):
                for view in VIEWS:
                    frame = page.locator(f".clip[data-seq='{seq}'] .frame.{view}")
                    shown, box = frame.bounding_box(), frame.locator(".focus").bounding_box()
                    assert shown and box
                    placed = [
                        (box["x"] - shown["x"]) / shown["width"],
                        (box["y"] - shown["y"]) / shown["height"],
                        box["width"] / shown["width"],
                        box["height"] / shown["height"],
                    ]
                    wanted = [square["x"], square["y"], square["side"], square["side"]]
                    assert placed == pytest.approx(wanted, abs=0.01), (seq, view)
                    zoom = f"{1 / square['side']:.1f}x"
                    expect(frame.locator("img")).to_have_attribute(
                        "alt", re.compile(f"the model looked at the marked square, {zoom}$")
                    )
        finally:
            assert client.post("/v1/models/tiny-1/activate").status_code == 200
    expect(page.locator("[data-status=model]")).to_have_text("tiny-1", timeout=10_000)


def test_key_frames_match_the_clips_and_refuse_bad_uploads(service: Service, make_video, tmp_path):
    video = make_video(tmp_path / "dark.mp4", frames=24)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    with service.client() as client:
        clips = upload(client, video).json()["clips"]
        frames = upload(client, video, "/v1/frames").json()["clips"]
        refused = upload(client, broken, "/v1/frames")
    with service.client(key=None) as client:
        anonymous = upload(client, video, "/v1/frames")
    assert [f["seq"] for f in frames] == [c["seq"] for c in clips] == [0, 1, 2]
    spans = [t for f in frames for t in (f["start"], f["end"])]  # media seconds, 8 frames each
    assert spans == pytest.approx([0, 7 / 12, 8 / 12, 15 / 12, 16 / 12, 23 / 12], abs=0.01)
    assert all(f[view].startswith("data:image/jpeg;base64,") for f in frames for view in VIEWS)
    assert [f["focus"] for f in frames] == [None, None, None]  # tiny-1 does not zoom
    assert (refused.status_code, refused.json()["reason"]) == (415, "invalid_container")
    assert (anonymous.status_code, anonymous.json()["reason"]) == (401, "missing_api_key")


def test_camera_prediction_arrives_live(page: Page, rtsp_camera):
    camera = rtsp_camera(fps=12)
    open_page(page, "cameras")
    page.evaluate("window.notReloaded = true")
    url = camera.url().replace("rtsp://", "rtsp://viewer:s3cret@")
    page.fill("#camera-form input[name=url]", url)
    page.fill("#camera-form input[name=name]", "Loading dock")
    page.click("#camera-form button[type=submit]")

    card = page.locator(".camera", has_text="Loading dock")
    expect(card.locator(".latest strong")).to_have_text(A_LABEL, timeout=60_000)
    expect(card.locator(".badge").first).to_have_text("live", timeout=20_000)
    expect(card.locator(".sparkline polyline")).to_have_count(1, timeout=20_000)
    # A few more clips, pushed over SSE, past the burst a camera sends when it connects.
    many = re.compile(r"of the last ([6-9]|\d\d+) clips")
    expect(card.locator(".sparkline")).to_have_attribute("aria-label", many, timeout=30_000)
    assert page.evaluate("window.notReloaded") is True
    assert not page.locator("#key-dialog").is_visible()  # the key was asked for once
    expect(card.locator(".url")).to_have_text(camera.url().replace("rtsp://", "rtsp://***@"))
    assert "s3cret" not in page.content()
    expect(card.locator(".meta")).to_contain_text("fps")
    # Its latest key frame, both ways, replaced as new clips come.
    enhanced = card.locator(".frame.enhanced img")
    expect(enhanced).to_have_attribute("src", re.compile("^data:image/jpeg;base64,"))
    expect(card.locator(".frame.dark img")).to_have_attribute("src", re.compile("^data:image/"))
    first = enhanced.get_attribute("src")
    expect(enhanced).not_to_have_attribute("src", first, timeout=20_000)

    card.locator("button", has_text="Remove").click()
    expect(page.locator(".camera")).to_have_count(0)
    expect(page.locator("#cameras .empty")).to_be_visible()


def test_a_refusing_camera_shows_failing_with_its_reason(page: Page):
    open_page(page, "cameras")
    page.fill("#camera-form input[name=url]", f"rtsp://127.0.0.1:{free_port()}/gone")
    page.fill("#camera-form input[name=name]", "Dead camera")
    page.click("#camera-form button[type=submit]")
    card = page.locator(".camera", has_text="Dead camera")
    expect(card.locator(".badge")).to_have_text("failing", timeout=30_000)
    expect(card.locator(".problem")).to_contain_text("Connection refused")
    expect(card.locator(".problem")).to_contain_text("next retry at")
    reconnects = re.compile(r"([2-9]|\d\d+) reconnects")  # it keeps trying, and counts
    expect(card.locator(".meta")).to_contain_text(reconnects, timeout=30_000)
    card.locator("button", has_text="Remove").click()
    expect(card).to_have_count(0)


def shown_top1(page: Page, selector: str) -> str:
    text = page.locator(selector).first.inner_text()
    assert "[object Object]" not in page.content() and "NaN" not in page.inner_text("main")
    return text


def test_models_and_jobs_show_top1_as_a_percentage_at_every_width(page: Page, service: Service):
    with service.client(timeout=120) as client:
        posted = client.post(
            "/v1/jobs", json={"stage": "pipeline", "dataset": "synth", "overrides": TINY}
        )
        assert posted.status_code == 201, posted.text
        job_id = posted.json()["id"]
        job = wait_for(lambda: job_state(client, job_id, "succeeded", "failed"), 300, "the job")
    assert job["state"] == "succeeded", job["log_tail"]
    demo = json.loads((DEMO / "manifest.json").read_text())
    for viewport in (WIDE, PHONE):
        page.set_viewport_size(viewport)
        open_page(page, "models")
        row = f"tr[data-version='{demo['version']}']"
        expect(page.locator(f"{row} .headline-metric")).to_contain_text("test top-1")
        shown = shown_top1(page, f"{row} .headline-metric strong")
        assert shown == f"{100 * demo['metrics']['test']['top1']:.1f}%"  # 70.3%
        expect(page.locator(f"{row} .metrics").first).to_contain_text("total time")
        job_row = f"tr[data-version='job-{job_id}'] .headline-metric strong"
        assert PERCENT.match(shown_top1(page, job_row))
        assert no_sideways_scroll(page)
        activate = page.locator(f"{row} button", has_text="Activate")
        assert activate.evaluate("b => b.getBoundingClientRect().right <= window.innerWidth")
        open_page(page, "jobs")
        card = page.locator(".job", has_text="pipeline on synth").first
        expect(card.locator(".badge")).to_have_text("succeeded")
        expect(card.locator(".headline-metric")).to_contain_text("test top-1")
        assert PERCENT.match(shown_top1(page, ".job .headline-metric").split(" ")[0])
        assert no_sideways_scroll(page)
    page.set_viewport_size(WIDE)


def test_models_list_and_activate(page: Page):
    open_page(page, "models")
    expect(page.locator("tr[data-version='tiny-1'] .badge")).to_have_text("active")
    metrics = page.locator("tr[data-version='tiny-2'] .metrics")
    expect(metrics).to_contain_text("top-1")
    expect(metrics).to_contain_text("42.4%")
    page.locator("tr[data-version='tiny-2'] button", has_text="Activate").click()
    expect(page.locator("tr[data-version='tiny-2'] .badge")).to_have_text("active")
    expect(page.locator("tr[data-version='tiny-1'] button")).to_have_text("Activate")
    expect(page.locator("[data-status=model]")).to_have_text("tiny-2", timeout=10_000)
    shoot(page, "models")


def test_training_job_progress_moves(page: Page):
    open_page(page, "jobs")
    page.select_option("#job-form select[name=stage]", "ssl")
    page.fill("#job-form input[name=dataset]", "synth")
    # Refused by the server before it is queued: the reason is shown.
    page.fill("#job-form textarea[name=overrides]", "optim.epochs = -1")
    page.click("#job-form button[type=submit]")
    # Within 30 s, not the default 5: on a loaded 2-core machine the refusal once came later.
    expect(page.locator("#jobs > .error")).to_contain_text("epochs", timeout=30_000)
    page.fill(
        "#job-form textarea[name=overrides]",
        "\n".join(
            [
                "init = null",  # from scratch: no teacher checkpoint exists here
                "optim.epochs = 500",  # long enough to watch and cancel, even in bf16
                "data.batch_size = 8",
                "arch.width = 4",
                "arch.frames = 8",
                'data.clip = {"frames": 8, "crop": 32, "resize": [44, 32], "fps": 12.0, '
                '"normalize": "per_clip"}',
            ]
        ),
    )
    page.click("#job-form button[type=submit]")
    job = page.locator(".job").first
    expect(job.locator(".badge")).to_have_text("running", timeout=30_000)
    cancel = job.locator("button", has_text="Cancel")
    cancel.focus()
    expect(job.locator(".step")).to_contain_text("ssl epoch", timeout=60_000)
    expect(job.locator(".fraction")).not_to_have_text("0.0%", timeout=90_000)
    assert 0 < float(job.locator("progress").evaluate("bar => bar.value")) < 1
    expect(job.locator(".log")).not_to_be_empty()
    shoot(page, "jobs")
    # The card was updated in place while the job ran, so the keyboard focus is still on Cancel.
    expect(cancel).to_be_focused()
    page.keyboard.press("Enter")
    expect(job.locator(".badge")).to_have_text("cancelled", timeout=30_000)
    expect(cancel).to_be_hidden()


def test_keyboard_reaches_every_page(browser: Browser, service: Service):
    page = browser.new_page(viewport=PHONE)
    page.goto(f"{service.url}/#models")
    for name, first_field in [("cameras", "url"), ("jobs", "stage"), ("classify", "classify-file")]:
        page.focus(f"nav a[href='#{name}']")
        page.keyboard.press("Enter")
        expect(page.locator(f"#{name}")).to_be_visible()
        expect(page.locator("#models")).to_be_hidden()
        page.keyboard.press("Tab")  # focus moved into the page: its first field is next
        assert first_field in page.evaluate(
            "[document.activeElement.name, document.activeElement.id]"
        )
    page.close()


@pytest.mark.skipif(not SCREENSHOTS, reason="README screenshots only when asked (make screenshots)")
def test_screenshots_of_the_demo_model(page: Page, service: Service, rtsp_camera, tmp_path):
    """The README's Classify, phone and Cameras pictures, from the bundled demo model: a dark
    clip of the generated benchmark, and a real RTSP camera."""
    from training.synth.clip import render_clip

    demo = json.loads((DEMO / "manifest.json").read_text())["version"]
    with service.client() as client:
        assert client.post(f"/v1/models/{demo}/activate").status_code == 200
    expect(page.locator("[data-status=model]")).to_have_text(demo, timeout=10_000)
    video = tmp_path / "walk.mp4"
    write_video(video, render_clip("Walk", np.random.default_rng(7), 72, (160, 120)), 12.0)
    open_page(page, "classify")
    page.set_input_files("#classify-file", video)
    expect(page.locator(".clip .frame.enhanced img")).to_have_count(4, timeout=60_000)
    shoot(page, "classify")
    page.set_viewport_size(PHONE)
    shoot(page, "phone")
    page.set_viewport_size(WIDE)

    camera = rtsp_camera(fps=12)
    open_page(page, "cameras")
    page.fill("#camera-form input[name=url]", camera.url())
    page.fill("#camera-form input[name=name]", "Loading dock")
    page.click("#camera-form button[type=submit]")
    card = page.locator(".camera", has_text="Loading dock")
    expect(card.locator(".latest strong")).to_have_text(A_LABEL, timeout=60_000)
    expect(card.locator(".frame.enhanced img")).to_have_attribute("src", re.compile("^data:"))
    many = re.compile(r"of the last ([6-9]|\d\d+) clips")
    expect(card.locator(".sparkline")).to_have_attribute("aria-label", many, timeout=30_000)
    shoot(page, "cameras")
    card.locator("button", has_text="Remove").click()
