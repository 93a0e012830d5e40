"""What `lumos classify` and `lumos watch` do at the terminal: expand the inputs (directories,
URLs), run them through a client (`service.cli_client`), print tables, lines or JSON, and exit with
a status a script can test."""

import asyncio
import contextlib
import json
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from service.cli_client import (
    Classified,
    ClientError,
    LocalClient,
    RemoteClient,
    StatusChange,
    Update,
)
from service.settings import Settings


def _client(server: str | None, api_key: str | None, roles: set[str]) -> RemoteClient | LocalClient:
    return RemoteClient(server, api_key) if server else LocalClient(Settings(), roles)


def _top(scores: dict[str, float], k: int) -> list[tuple[str, float]]:
    return sorted(scores.items(), key=lambda item: item[1], reverse=True)[:k]


def as_json(name: str, result: Classified, top: int) -> dict[str, Any]:
    """A file's answer for scripts: the same shape whichever way it was classified."""

    def labels(scores: dict[str, float]) -> list[dict[str, Any]]:
        return [{"label": label, "score": score} for label, score in _top(scores, top)]

    return {
        "file": name,
        "model_version": result.model_version,
        "video": {"top": labels(result.video.scores)},
        "clips": [
            {
                "seq": clip.seq,
                "start": round(result.span(clip)[0], 3),
                "end": round(result.span(clip)[1], 3),
                "top": labels(clip.scores),
                "luma": clip.illumination.luma_mean,
                "error": clip.error,
            }
            for clip in result.clips
        ],
    }


def as_table(name: str, result: Classified, top: int) -> str:
    """One row per clip (start-end, top labels and scores, mean luma), then the whole video."""
    width = max((len(label) for label in result.video.scores), default=5)
    column = (width + 8) * top - 2

    def labels(scores: dict[str, float]) -> str:
        return "  ".join(f"{label:<{width}} {score:.3f}" for label, score in _top(scores, top))

    def row(when: str, text: str, luma: str) -> str:
        return f"  {when:<13} {text:<{column}}  {luma:>5}"

    lines = [f"{name}: model {result.model_version}, {len(result.clips)} clips"]
    lines.append(row("time (s)", "label and score", "luma"))
    for clip in result.clips:
        start, end = result.span(clip)
        text = f"error: {clip.error}" if clip.error else labels(clip.scores)
        lines.append(row(f"{start:.1f}-{end:.1f}", text, f"{clip.illumination.luma_mean:.1f}"))
    lumas = [clip.illumination.luma_mean for clip in result.clips]
    mean = f"{sum(lumas) / len(lumas):.1f}" if lumas else "-"
    lines.append(row("whole video", labels(result.video.scores), mean))
    return "\n".join(lines)


VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".flv", ".wmv"}
)


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files and URLs as given; a directory becomes its video files, by name."""
    expanded: list[str] = []
    for item in inputs:
        path = Path(item)
        if not _is_url(item) and path.is_dir():
            videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            expanded += [str(p) for p in videos if p.is_file()] or [item]
        else:
            expanded.append(item)
    return expanded


def _is_url(item: str) -> bool:
    return item.partition("://")[0].lower() in ("http", "https")


@contextlib.asynccontextmanager
async def _local_copy(item: str, limit: int) -> AsyncIterator[Path]:
    """The video `item` names, as a local file: itself, or a URL downloaded (at most `limit`
    bytes) to a temporary file that is gone afterwards."""
    if not _is_url(item):
        path = Path(item)
        if path.is_dir():
            raise ClientError("no video files in this directory")
        if not path.is_file():
            raise ClientError("no such file")
        yield path
        return
    suffix = Path(httpx.URL(item).path).suffix.lower()
    with tempfile.NamedTemporaryFile(suffix=suffix if suffix in VIDEO_SUFFIXES else "") as copy:
        try:
            async with httpx.AsyncClient(follow_redirects=True, timeout=30.0) as http:
                async with http.stream("GET", item) as response:
                    if response.is_error:
                        raise ClientError(f"downloading it failed: HTTP {response.status_code}")
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > limit:
                            raise ClientError(f"it is larger than {limit} bytes")
                        copy.write(chunk)
        except httpx.HTTPError as exc:
            raise ClientError(f"downloading it failed: {exc}") from exc
        copy.flush()
        yield Path(copy.name)


async def classify_files(
    inputs: list[str],
    server: str | None,
    api_key: str | None,
    top: int,
    json_out: bool,
    save: Path | None = None,
    enhanced: bool = False,
) -> int:
    """`lumos classify`: a table (or JSON) per video file, URL or directory of videos; 1 when one
    could not be classified (in the JSON array as `{"file", "error"}`). With `save` (one input),
    also the video annotated with each clip's labels (beside its Retinex view with `enhanced`)."""
    failed = 0
    answers = []
    limit = Settings().upload_max_bytes
    try:
        async with _client(server, api_key, {"infer"}) as client:
            for item in expand_inputs(inputs):
                # The bar appears only for a video that takes a while, and only on a terminal.
                with tqdm(desc=Path(item).name, delay=2.0, leave=False, disable=None) as bar:

                    def progress(done: int, total: int | None, bar: tqdm = bar) -> None:
                        bar.total, bar.n = total, done
                        bar.refresh()

                    try:
                        async with _local_copy(item, limit) as path:
                            result = await client.classify(path, progress)
                            if save is not None:
                                await _annotate(path, save, result, top, enhanced)
                    except (ClientError, OSError) as exc:
                        print(f"lumos classify: {item}: {exc}", file=sys.stderr)
                        answers.append({"file": item, "error": str(exc)})
                        failed += 1
                        continue
                if json_out:
                    answers.append(as_json(item, result, top))
                else:
                    print(as_table(item, result, top), flush=True)
    except ClientError as exc:
        print(f"lumos classify: {exc}", file=sys.stderr)
        return 2
    if json_out:
        print(json.dumps(answers, indent=2))
    return 1 if failed else 0


async def _annotate(source: Path, out: Path, result: Classified, top: int, enhanced: bool) -> None:
    from service.annotate import annotate  # torch and the drawing code: only when asked

    clips = [(result.span(clip)[0], clip) for clip in result.clips]
    try:
        await asyncio.to_thread(annotate, source, out, clips, top, enhanced)
    except ValueError as exc:  # av.FFmpegError is an OSError, reported as the file's failure
        raise OSError(f"cannot write {out}: {exc}") from exc


def format_update(update: Update, top: int) -> str:
    if isinstance(update, StatusChange):
        error = f"; last error: {update.error}" if update.error else ""
        retry = ""
        if update.state == "failing" and update.next_retry_at:
            retry = f"; next retry {datetime.fromtimestamp(update.next_retry_at):%H:%M:%S}"
        return f"-- {update.state} ({update.reconnects} reconnects{error}{retry})"
    when = datetime.fromtimestamp(update.end).strftime("%H:%M:%S")
    labels = update.error or "  ".join(f"{k} {v:.3f}" for k, v in _top(update.scores, top))
    mark = "  (after a reconnect)" if update.integrity.reconnect else ""
    return f"{when}  {labels}  luma {update.illumination.luma_mean:.1f}{mark}"


async def watch(url: str, server: str | None, api_key: str | None, top: int, json_out: bool) -> int:
    """`lumos watch`: print the source's predictions as they come until Ctrl-C (or SIGTERM)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with _client(server, api_key, {"ingest", "infer"}) as client:
            async for update in client.watch(url, stop):
                if json_out:
                    line = json.dumps(
                        asdict(update)
                        if isinstance(update, StatusChange)
                        else update.model_dump(mode="json")
                    )
                else:
                    line = format_update(update, top)
                print(line, flush=True)
    except ClientError as exc:
        print(f"lumos watch: {exc}", file=sys.stderr)
        return 1
    print("lumos watch: stopped", file=sys.stderr)
    return 0
