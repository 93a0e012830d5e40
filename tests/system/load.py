"""Traffic and bookkeeping shared by the fault scenarios: uploads running in the background while
a part is killed, and the count of clips cut, classified, lost and duplicated.
"""

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from tests.api.conftest import upload
from tests.system.deployment import CAMERAS, System, metric


@dataclass(frozen=True)
class Answer:
    sent: float
    """time.monotonic() when the request was sent."""
    seconds: float
    status: int
    reason: str | None
    retry_after: str | None
    poll: str | None = None
    """Where an asynchronous upload's answer will be (202)."""


def timed_upload(client: httpx.Client, video: Path, **params: str) -> Answer:
    """Upload `video` and time the answer; a transport error is an answer too (status 0)."""
    sent = time.monotonic()
    try:
        answer = upload(client, video, **params)
    except httpx.TransportError as exc:
        return Answer(sent, time.monotonic() - sent, 0, repr(exc), None)
    seconds = time.monotonic() - sent
    body = answer.json()
    reason = None if answer.is_success else body.get("reason")
    poll = body.get("poll") if answer.status_code == 202 else None
    return Answer(
        sent, seconds, answer.status_code, reason, answer.headers.get("retry-after"), poll
    )


@dataclass
class Uploads:
    """`threads` clients uploading `video` back to back (each waits for its answer) until
    stopped; every answer is kept. `params`: the upload's query, e.g. {"async": "true"}."""

    system: System
    video: Path
    threads: int = 2
    pause_s: float = 0.0
    params: dict[str, str] = field(default_factory=dict)
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> "Uploads":
        for _ in range(self.threads):
            self._workers.append(threading.Thread(target=self._run, daemon=True))
            self._workers[-1].start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(180)

    def _run(self) -> None:
        with self.system.client(timeout=120) as client:
            while not self._stop.is_set():
                self.answers.append(timed_upload(client, self.video, **self.params))
                self._stop.wait(self.pause_s)

    def statuses(self) -> dict[str, int]:
        return dict(Counter(f"{a.status} {a.reason or ''}".strip() for a in self.answers))

    def ok_after(self, moment: float) -> bool:
        return any(a.status == 200 and a.sent > moment for a in self.answers)


def upload_streams(store: redis.Redis) -> list[str]:
    """Every upload that has results (cameras excluded)."""
    streams = (
        key.decode().removeprefix("lumos:results:") for key in store.scan_iter("lumos:results:*")
    )
    return [stream for stream in streams if stream not in CAMERAS]


def seqs(store: redis.Redis, stream: str, since: float = 0.0) -> list[int]:
    """The clip position of every result stored for `stream` (clips started after `since`)."""
    ids = store.zrangebyscore(f"lumos:results:{stream}", since, "+inf")
    values = store.mget([b"lumos:result:" + i for i in ids]) if ids else []
    return [json.loads(v)["seq"] for v in values if v is not None]


def doubled(seqs: list[int]) -> int:
    """Results beyond the first for a clip position: a video classified twice over."""
    return len(seqs) - len(set(seqs))


@dataclass(frozen=True)
class Ledger:
    """Upload clips over a scenario: cut by the API, classified, and what is missing or doubled."""

    cut: int
    classified: int
    duplicated: int

    @property
    def lost(self) -> int:
        return self.cut - self.classified + self.duplicated


def upload_ledger(system: System, cut_before: float, since: float) -> Ledger:
    """The clips the API cut since it had cut `cut_before`, against the results stored for
    upload clips started after `since` (Unix time)."""
    store = system.store()
    with system.client() as client:
        cut = metric(client, "lumos_stream_clips_total", stream="upload") - cut_before
    stored = [seqs(store, stream, since) for stream in upload_streams(store)]
    return Ledger(int(cut), sum(map(len, stored)), sum(map(doubled, stored)))
