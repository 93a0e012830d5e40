"""A corpus of hostile uploads, generated: every kind of bad input an upload endpoint meets.

Each case is a file sent as the multipart `file` field, or a whole raw request body with its own
content type (malformed multipart). Each names the reasons its answer may give: where an input
fails depends on the FFmpeg build (a file cut inside its header or inside its first frame), and any
of those reasons is a clear answer; a 5xx, a 2xx or a reason outside the set never is.
"""

import gzip
import io
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from tests.conftest import dark_frames

BOUNDARY = "lumos-hostile-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"

BROKEN = frozenset({"invalid_container", "no_video_stream", "undecodable", "too_few_frames"})
NOT_A_CONTAINER = frozenset({"invalid_container"})
NO_VIDEO = frozenset({"no_video_stream"})
TOO_FEW = frozenset({"too_few_frames"})
BAD_SIZE = frozenset({"bad_dimensions"})
MALFORMED = frozenset({"malformed_multipart"})
MISSING = frozenset({"missing_file"})


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    """The class of hostile input, as the issue lists them."""
    reasons: frozenset[str]
    file: bytes | None = None
    """Sent as a well-formed multipart upload's `file` field..."""
    body: bytes | None = None
    """...or sent as the whole request body, with `content_type` and `headers`."""
    content_type: str | None = MULTIPART
    headers: dict[str, str] = field(default_factory=dict)


def part(data: bytes, name: str = "file", headers: str | None = None) -> bytes:
    """One multipart part (no closing boundary), with its headers as given or the usual ones."""
    if headers is None:
        headers = f'Content-Disposition: form-data; name="{name}"; filename="video.mp4"\r\n'
        headers += "Content-Type: video/mp4\r\n"
    return f"--{BOUNDARY}\r\n{headers}\r\n".encode() + data + b"\r\n"


def multipart(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def encode(frames: np.ndarray, fps: Fraction | float, fmt: str = "mp4", codec: str = "libx264"):
    """Frames as a video file in memory: container `fmt`, codec `codec`."""
    out = io.BytesIO()
    with av.open(out, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1_000_000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for picture in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode())
    return out.getvalue()


def audio(fmt: str, codec: str, rate: int = 48000) -> bytes:
    """One second of a tone in a container without video."""
    out = io.BytesIO()
    with av.open(out, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        tone = (np.sin(np.arange(rate) * 2 * np.pi * 440 / rate) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(tone[None, :], format="s16", layout="mono")
        frame.sample_rate = rate
        context = stream.codec_context  # the encoder's own sample format, layout, frame size
        resampler = av.AudioResampler(
            context.format, context.layout, rate, frame_size=context.frame_size or None
        )
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            container.mux(stream.encode(chunk))
        container.mux(stream.encode())
    return out.getvalue()


def image(fmt: str, count: int = 1) -> bytes:
    """A still picture (or a short animation) in a format FFmpeg opens as a video stream."""
    frames = [Image.fromarray(picture) for picture in dark_frames(count)]
    out = io.BytesIO()
    frames[0].save(out, fmt, save_all=count > 1, append_images=frames[1:], duration=100)
    return out.getvalue()


def png_bomb(side: int) -> bytes:
    """A valid PNG header declaring `side x side` grey pixels over a few KB of zlib: gigabytes
    once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = zlib.compress(bytes(side + 1) * min(side, 256), 9)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def declare_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite every baseline JPEG frame header (SOF0) in `data` to declare another size."""
    out = bytearray(data)
    at = out.find(b"\xff\xc0")
    while at != -1:
        out[at + 5 : at + 9] = struct.pack(">HH", height, width)
        at = out.find(b"\xff\xc0", at + 2)
    return bytes(out)


def noise_from(data: bytes, offset: int, seed: int) -> bytes:
    """`data` with every byte from `offset` on replaced by noise (headers intact)."""
    return data[:offset] + np.random.default_rng(seed).bytes(len(data) - offset)


def mdat_offset(mp4: bytes) -> int:
    """Where an MP4's media data (the `mdat` box's payload) starts."""
    return mp4.find(b"mdat") + 4


def zip_bomb(megabytes: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("video.mp4", "w", force_zip64=True) as member:
            for _ in range(megabytes):
                member.write(bytes(1 << 20))
    return out.getvalue()


def gzip_bomb(megabytes: int) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as archive:
        for _ in range(megabytes):
            archive.write(bytes(1 << 20))
    return out.getvalue()


def archive(kind: str, name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zipped:
            zipped.writestr(name, data)
    else:
        with tarfile.open(fileobj=out, mode="w") as tarred:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tarred.addfile(info, io.BytesIO(data))
    return out.getvalue()


def good_video() -> bytes:
    """2 s of dark video, 24 frames: an upload every limit of the suite accepts."""
    return encode(dark_frames(24), 12)


def cases(max_bytes: int, max_seconds: float) -> list[Case]:
    """The corpus, for a service with these upload limits and 8 frames at least."""
    return [*_files(max_bytes, max_seconds), *_bombs(), *_malformed_multipart()]


def _files(max_bytes: int, max_seconds: float) -> Iterator[Case]:
    rng = np.random.default_rng(2024)
    good = good_video()
    mkv = encode(dark_frames(24), 12, "matroska")
    cluster = mkv.find(b"\x1f\x43\xb6\x75")  # Matroska's first cluster: the frames start here

    yield Case("zero-bytes", "zero bytes", frozenset({"empty_file"}), file=b"")
    for size in (1, 17, 4096, 65536):
        yield Case(f"random-{size}B", "random bytes", NOT_A_CONTAINER, file=rng.bytes(size))
    yield Case("zeros-64KiB", "random bytes", NOT_A_CONTAINER, file=bytes(65536))
    signature = b"\x00\x00\x00\x18ftypisom"
    yield Case("mp4-signature-then-noise", "random bytes", BROKEN, file=signature + rng.bytes(8000))

    # MP4 keeps its index at the end, so any cut loses it; Matroska streams, so a cut keeps the
    # frames before it: only cuts before the eighth frame are bad.
    for fraction in (0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.9):
        cut = max(1, int(len(good) * fraction))
        yield Case(f"mp4-cut-at-{cut}", "truncated", BROKEN, file=good[:cut])
    for cut in (16, 64, cluster, cluster + 200):
        yield Case(f"mkv-cut-at-{cut}", "truncated", BROKEN, file=mkv[:cut])

    payload = mdat_offset(good)
    yield Case("mp4-media-noise", "corrupt payload", BROKEN, file=noise_from(good, payload, 1))
    zeroed = good[:payload] + bytes(len(good) - payload)
    yield Case("mp4-media-zeroed", "corrupt payload", BROKEN, file=zeroed)
    yield Case("mkv-clusters-noise", "corrupt payload", BROKEN, file=noise_from(mkv, cluster, 2))

    wrong = "wrong container"
    yield Case("zip-archive", wrong, NOT_A_CONTAINER, file=archive("zip", "video.mp4", good))
    yield Case("tar-archive", wrong, NOT_A_CONTAINER, file=archive("tar", "video.mp4", good))
    pdf = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<<>>\n%%EOF\n"
    yield Case("pdf", wrong, NOT_A_CONTAINER, file=pdf)
    yield Case("html", wrong, NOT_A_CONTAINER, file=b"<!doctype html><title>x</title>" * 50)
    yield Case("json", wrong, NOT_A_CONTAINER, file=b'{"video": "' + b"A" * 3000 + b'"}')
    yield Case("elf-binary", wrong, NOT_A_CONTAINER, file=Path("/bin/true").read_bytes())
    subtitles = b"1\n00:00:01,000 --> 00:00:02,000\nhello\n\n2\n00:00:03,000 --> 00:00:04,000\nx\n"
    yield Case("subtitles-srt", wrong, NOT_A_CONTAINER | NO_VIDEO, file=subtitles)

    # Audio-only formats that are not video containers (wav, mp3, flac) are refused as
    # containers: only video container demuxers may open an upload.
    not_video = NOT_A_CONTAINER | NO_VIDEO
    yield Case("audio-wav", "audio only", not_video, file=audio("wav", "pcm_s16le"))
    yield Case("audio-mp3", "audio only", not_video, file=audio("mp3", "libmp3lame"))
    yield Case("audio-ogg-opus", "audio only", NO_VIDEO, file=audio("ogg", "libopus"))
    yield Case("audio-m4a-aac", "audio only", NO_VIDEO, file=audio("mp4", "aac"))
    yield Case("audio-flac", "audio only", not_video, file=audio("flac", "flac"))

    # Image demuxers are not on the upload's list either.
    for fmt in ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"):
        yield Case(f"image-{fmt.lower()}", "image", NOT_A_CONTAINER, file=image(fmt))
    yield Case("animated-gif-3-frames", "image", NOT_A_CONTAINER, file=image("GIF", count=3))
    yield Case("animated-png-3-frames", "image", NOT_A_CONTAINER, file=image("PNG", count=3))

    huge = "gigantic dimensions"
    mjpeg = encode(dark_frames(12), 12, "avi", "mjpeg")
    for side in (16000, 65500):
        forged = declare_jpeg_size(mjpeg, side, side)
        yield Case(f"mjpeg-declares-{side}x{side}", huge, BAD_SIZE | BROKEN, file=forged)
    yield Case("png-declares-15000x15000", huge, BAD_SIZE | BROKEN, file=png_bomb(15000))
    yield Case("png-declares-30000x30000", huge, BAD_SIZE | BROKEN, file=png_bomb(30000))
    y4m = b"YUV4MPEG2 W20000 H20000 F25:1 C420jpeg\nFRAME\n" + bytes(4096)
    yield Case("y4m-declares-20000x20000", huge, BAD_SIZE | BROKEN, file=y4m)

    rate = "absurd frame rate"
    fast = encode(dark_frames(16), 100_000)
    yield Case("fps-100000", rate, frozenset({"bad_frame_rate"}), file=fast)
    slow = encode(dark_frames(16), Fraction(1, 1000))
    yield Case("fps-one-per-1000s", rate, frozenset({"too_long"}), file=slow)

    yield Case("one-frame", "1 frame", TOO_FEW, file=encode(dark_frames(1), 12))
    yield Case("seven-frames", "1 frame", TOO_FEW, file=encode(dark_frames(7), 12))

    tiny = "thousands of tiny frames"
    yield Case("3000-frames-8x8", tiny, BAD_SIZE, file=encode(dark_frames(3000, (8, 8)), 150))
    specks = encode(dark_frames(3000, (2, 2)), 150, "matroska")
    yield Case("3000-frames-2x2-mkv", tiny, BAD_SIZE, file=specks)

    too_large = frozenset({"too_large"})
    yield Case("random-over-size", "over the size limit", too_large, file=rng.bytes(max_bytes + 1))
    padded = good + bytes(max_bytes)
    yield Case("video-padded-over-size", "over the size limit", too_large, file=padded)
    seconds = int(max_seconds) + 5
    long = encode(dark_frames(seconds * 2, (16, 16)), 2)
    yield Case(f"{seconds}s-video", "over the duration limit", frozenset({"too_long"}), file=long)


def _bombs() -> Iterator[Case]:
    yield Case("zip-bomb-100MiB", "zip bomb", NOT_A_CONTAINER, file=zip_bomb(100))
    bomb = gzip_bomb(100)
    yield Case("gzip-bomb-100MiB", "zip bomb", NOT_A_CONTAINER, file=bomb)
    # Sent as a gzip-encoded body: the server must not inflate it (it does not: no 200 MB).
    encoded = gzip.compress(multipart(part(bomb)))
    headers = {"Content-Encoding": "gzip"}
    yield Case("gzip-encoded-body", "zip bomb", MALFORMED, body=encoded, headers=headers)


def _malformed_multipart() -> Iterator[Case]:
    kind = "malformed multipart"
    good = good_video()
    body = multipart(part(good))
    not_multipart = frozenset({"not_multipart"})
    disposition = 'Content-Disposition: form-data; name="file"\r\n'

    yield Case("no-content-type", kind, not_multipart, body=body, content_type=None)
    yield Case("no-boundary", kind, not_multipart, body=body, content_type="multipart/form-data")
    form = "application/x-www-form-urlencoded"
    yield Case("urlencoded-form", kind, not_multipart, body=b"file=abc", content_type=form)
    yield Case("raw-video-body", kind, not_multipart, body=good, content_type="video/mp4")
    other = "multipart/form-data; boundary=something-else"
    yield Case("other-boundary", kind, MISSING | MALFORMED, body=body, content_type=other)
    yield Case("empty-body", kind, MISSING | MALFORMED, body=b"")
    yield Case("only-closing-boundary", kind, MISSING, body=multipart())
    half = body[: len(body) // 2]
    yield Case("unterminated", kind, MISSING | MALFORMED | BROKEN, body=half)
    no_blank_line = f"--{BOUNDARY}\r\n{disposition}".encode() + b"\x00\x01garbage" * 100
    yield Case("no-blank-line-after-headers", kind, MALFORMED, body=no_blank_line)
    after_boundary = f"--{BOUNDARY}\x00\x00junk\r\n".encode() + good
    yield Case("garbage-after-boundary", kind, MALFORMED, body=after_boundary)
    no_colon = multipart(part(good, headers="not a header line\r\n"))
    yield Case("header-without-colon", kind, MALFORMED, body=no_colon)
    no_disposition = multipart(part(good, headers="Content-Type: video/mp4\r\n"))
    yield Case("no-content-disposition", kind, MISSING, body=no_disposition)
    no_name = multipart(part(good, headers="Content-Disposition: form-data\r\n"))
    yield Case("disposition-without-name", kind, MISSING, body=no_name)
    yield Case("wrong-field-name", kind, MISSING, body=multipart(part(good, name="video")))
    long_header = f'{disposition[:-2]}; filename="{"x" * 200_000}"\r\n'
    yield Case("huge-part-header", kind, MALFORMED, body=multipart(part(good, headers=long_header)))
    many = disposition + "".join(f"X-H{i}: v\r\n" for i in range(20_000))
    yield Case("20000-part-headers", kind, MALFORMED, body=multipart(part(good, headers=many)))
    note = part(b"n" * 100_000, name="note")
    big_field = frozenset({"field_too_large"})
    yield Case("oversized-text-field", kind, big_field, body=multipart(note, part(good)))
