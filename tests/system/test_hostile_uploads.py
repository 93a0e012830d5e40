"""Hostile uploads against the running deployment: a generated corpus of bad inputs, then a
fuzzing pass with hypothesis. Every bad input is answered 4xx with a reason, never 5xx; the
service stays whole (every process alive, ready, classifying) and no temporary file is left.

tests/api/test_uploads.py checks each reason once on `lumos serve`; here the inputs are many and
hostile, and the API runs beside separate workers as in production.
"""

from collections import Counter

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.servers import wait_for
from tests.api.conftest import upload
from tests.system.corpus import Case, cases, good_video, multipart, part
from tests.system.deployment import SETTINGS, System, proc_stats

PROBLEM = "application/problem+json"
UPLOAD_REASONS = frozenset(
    {
        "not_multipart",
        "malformed_multipart",
        "missing_file",
        "empty_file",
        "field_too_large",
        "too_large",
        "invalid_container",
        "no_video_stream",
        "bad_dimensions",
        "bad_frame_rate",
        "too_long",
        "undecodable",
        "too_few_frames",
    }
)


def send(system: System, file: bytes | None = None, body: bytes = b"", **headers) -> httpx.Response:
    """POST one upload on a connection of its own (a refused body may close the connection)."""
    headers = {k.replace("_", "-"): v for k, v in headers.items() if v is not None}
    with system.client() as client:
        if file is not None:
            return client.post("/v1/classify", files={"file": ("video.mp4", file, "video/mp4")})
        return client.post("/v1/classify", content=body, headers=headers)


def send_case(system: System, case: Case) -> httpx.Response:
    if case.file is not None:
        return send(system, case.file)
    return send(system, body=case.body or b"", content_type=case.content_type, **case.headers)


def clear_answer(answer: httpx.Response, reasons: frozenset[str], tmpdir: str) -> bool:
    """A 4xx problem with one of `reasons`, that does not show the server's temporary path."""
    return (
        400 <= answer.status_code < 500
        and answer.headers.get("content-type") == PROBLEM
        and answer.json().get("reason") in reasons
        and tmpdir not in answer.text
    )


def assert_whole(system: System, clip_video) -> None:
    """Every process alive, the API ready, a good upload classified, no temporary file left."""
    assert all(system.alive().values()), system.alive()
    with system.client() as client:
        assert client.get("/readyz").status_code == 200
        assert upload(client, clip_video).status_code == 200
    wait_for(lambda: not system.uploads_left(), 10, "temporary upload files to be deleted")


def test_every_hostile_upload_is_refused_with_its_reason(system, record, clip_video):
    corpus = cases(int(SETTINGS["upload_max_bytes"]), float(SETTINGS["upload_max_s"]))
    api = system.pids()["api"]
    before = proc_stats(api)
    answers = {case.name: send_case(system, case) for case in corpus}
    after = proc_stats(api)
    tmpdir = system.env["TMPDIR"]
    unclear = {
        case.name: (answers[case.name].status_code, answers[case.name].text[:300])
        for case in corpus
        if not clear_answer(answers[case.name], case.reasons, tmpdir)
    }
    statuses = Counter(a.status_code for a in answers.values())
    record(
        "Hostile uploads: generated corpus",
        f"{len(corpus)} bad inputs in {len({c.kind for c in corpus})} classes: "
        + ", ".join(sorted({c.kind for c in corpus})),
        "each a 4xx problem with its reason; processes alive, ready and classifying after; "
        "no temporary file left",
        inputs=len(corpus),
        clear_4xx=len(corpus) - len(unclear),
        status_5xx=sum(n for s, n in statuses.items() if s >= 500),
        statuses=dict(sorted(statuses.items())),
        reasons=dict(Counter(a.json().get("reason") for a in answers.values()).most_common()),
        api_rss_mb_before=round(before.rss_kb / 1024),
        api_rss_mb_after=round(after.rss_kb / 1024),
        api_peak_rss_mb=round(after.peak_rss_kb / 1024),
    )
    assert len(corpus) >= 40
    assert not unclear, unclear
    assert_whole(system, clip_video)


def _flipped(video: bytes) -> st.SearchStrategy[bytes]:
    def flip(changes: list[tuple[int, int]]) -> bytes:
        out = bytearray(video)
        for at, value in changes:
            out[at] = value
        return bytes(out)

    return st.lists(st.tuples(st.integers(0, len(video) - 1), st.integers(0, 255)), min_size=1).map(
        flip
    )


def _spliced(video: bytes) -> st.SearchStrategy[bytes]:
    return st.tuples(st.integers(0, len(video)), st.binary(min_size=1, max_size=512)).map(
        lambda cut: video[: cut[0]] + cut[1] + video[cut[0] :]
    )


def test_fuzzed_uploads_never_break_the_service(system, record, clip_video):
    """Mutated videos may still be videos (200); everything else is a 4xx with a reason."""
    video = good_video()
    files = st.one_of(
        _flipped(video),
        _spliced(video),
        st.integers(0, len(video)).map(lambda n: video[:n]),
        st.binary(max_size=4096),
    )
    printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
    envelopes = st.tuples(printable, st.binary(max_size=300), st.booleans()).map(
        lambda e: (
            f"multipart/form-data; boundary={e[0]}" if e[2] else e[0],
            multipart(part(video, headers=e[1].decode("latin-1"))),
        )
    )
    seen: Counter[str] = Counter()
    tmpdir = system.env["TMPDIR"]

    @settings(
        max_examples=80,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.one_of(files.map(lambda f: ("file", f)), envelopes.map(lambda e: ("body", e))))
    def fuzz(example: tuple[str, object]) -> None:
        kind, value = example
        if kind == "file":
            answer = send(system, value)
        else:
            content_type, body = value
            answer = send(system, body=body, content_type=content_type)
        seen[f"{kind} {answer.status_code}"] += 1
        if answer.status_code == 200:
            assert kind == "file" and answer.json()["clip_count"] >= 1
        else:
            assert clear_answer(answer, UPLOAD_REASONS, tmpdir), (answer.status_code, answer.text)

    try:
        fuzz()
    finally:
        record(
            "Hostile uploads: fuzzing (hypothesis)",
            "bytes flipped, spliced and cut in a valid MP4; random bytes; random multipart "
            "boundaries and part headers",
            "never a 5xx; a 4xx always a problem with an upload reason; a 200 only for a "
            "mutated video that still decodes",
            examples=sum(seen.values()),
            answers=dict(sorted(seen.items())),
        )
    assert_whole(system, clip_video)
