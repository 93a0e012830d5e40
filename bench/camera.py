"""A test camera without GStreamer: an RTSP server streaming a pre-encoded H.264 loop, forever.

It stands in for docker/camera/rtsp_camera.py on machines without GStreamer's Python bindings:

    python -m bench.camera --port 8554 --fps 25 --width 1280 --height 720

At start it renders `--seconds` of a generated dark scene (a dim ball on black under sensor-like
snow) and encodes it once with libx264 (ultrafast, zerolatency, constrained baseline, a key frame
every second). Serving is then only copying bytes: one shared clock builds each frame's RTP
packets once and writes them to every playing session, so many sessions cost almost nothing and
the machine's CPU goes to the system under test. Any path is served (query strings included);
RTP goes over the RTSP connection (TCP interleaved), as the bench's clients ask.
"""

import argparse
import asyncio
import base64
import secrets
import signal
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from itertools import accumulate

import av
import numpy as np

MAX_PAYLOAD = 1400
"""Largest RTP payload; a bigger NAL unit is split into FU-A fragments (RFC 6184)."""
MAX_BUFFERED = 4 << 20
"""A session with more unsent bytes than this misses frames instead of stalling the others."""
CLOCK = 90_000
PUBLIC = "OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN"
SSRC = 0x4C554D53
BITRATE = 2_000_000
"""x264enc's default in the GStreamer camera: noise at an unbounded rate would be far bigger."""


def render(width: int, height: int, frames: int) -> Iterator[np.ndarray]:
    """yuv420p frames of a ball (level 58) crossing black (6) under 8% snow, as the GStreamer
    scene looks; a few noise planes, shifted per frame, keep the rendering cheap."""
    rng = np.random.default_rng(0)
    snow = [rng.integers(0, 256, (height, width), dtype=np.uint16) for _ in range(4)]
    radius = max(4, height // 24)
    chroma = np.full((height // 2, width), 128, np.uint8)
    for i in range(frames):
        scene = np.full((height, width), 6, np.uint16)
        cx = int(-radius + (width + 2 * radius) * i / frames)  # one crossing per loop
        cy = int(height / 2 + height / 4 * np.sin(4 * np.pi * i / frames))
        y0, y1 = max(0, cy - radius), min(height, cy + radius + 1)
        x0, x1 = max(0, cx - radius), min(width, cx + radius + 1)
        ys, xs = np.ogrid[y0:y1, x0:x1]
        scene[y0:y1, x0:x1][(xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2] = 58
        noise = np.roll(snow[i % len(snow)], (i * 7919) % (height * width))
        level = (scene * 235 + noise * 20) >> 8  # 92% scene + 8% snow, 0..255
        luma = (16 + ((level * 219) >> 8)).astype(np.uint8)  # video range, as encoders expect
        yield np.vstack([luma, chroma])


def encode(images: Iterable[np.ndarray], width: int, height: int, fps: int) -> list[bytes]:
    """Annex B access units, one per image; every `fps`-th is an IDR led by SPS and PPS."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base, encoder.framerate = Fraction(1, fps), Fraction(fps)
    encoder.bit_rate = BITRATE
    encoder.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "profile": "baseline",
        "x264-params": f"keyint={fps}:min-keyint={fps}:scenecut=0:bframes=0:repeat-headers=1",
    }
    units = []
    for index, image in enumerate(images):
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = index
        units += [bytes(packet) for packet in encoder.encode(frame)]
    return units + [bytes(packet) for packet in encoder.encode(None)]


def nal_units(unit: bytes) -> list[bytes]:
    """The NAL units of an Annex B access unit (no start code can occur inside one)."""
    return [nal.rstrip(b"\0") for nal in unit.split(b"\0\0\1") if nal.rstrip(b"\0")]


def payloads(nals: list[bytes]) -> list[bytes]:
    """RTP payloads of one access unit: single NAL unit packets, or FU-A fragments."""
    out = []
    for nal in nals:
        if len(nal) <= MAX_PAYLOAD:
            out.append(nal)
            continue
        body, step = nal[1:], MAX_PAYLOAD - 2
        for offset in range(0, len(body), step):
            flags = (0x80 if offset == 0 else 0) | (0x40 if offset + step >= len(body) else 0)
            header = bytes([nal[0] & 0xE0 | 28, flags | nal[0] & 0x1F])
            out.append(header + body[offset : offset + step])
    return out


@dataclass(eq=False)
class Session:
    id: str
    writer: asyncio.StreamWriter
    url: str = ""
    start: int | None = None
    """First frame this session gets (an IDR); None until PLAY."""


class Camera:
    """The loop, its shared clock and the RTSP sessions playing it."""

    def __init__(self, width: int, height: int, fps: int, seconds: int) -> None:
        self.fps = fps
        images = render(width, height, fps * seconds)
        units = [nal_units(unit) for unit in encode(images, width, height, fps)]
        self.key = [any(n[0] & 0x1F == 5 for n in nals) for nals in units]
        self.payloads = [payloads(nals) for nals in units]
        # Sequence numbers are a function of the frame index, so PLAY can announce them.
        self.first_seq = list(accumulate((len(p) for p in self.payloads), initial=0))
        sps = next(n for nals in units for n in nals if n[0] & 0x1F == 7)
        pps = next(n for nals in units for n in nals if n[0] & 0x1F == 8)
        self.fmtp = (
            f"packetization-mode=1;profile-level-id={sps[1:4].hex()};sprop-parameter-sets="
            f"{base64.b64encode(sps).decode()},{base64.b64encode(pps).decode()}"
        )
        self.next_frame = 0
        self.playing: set[Session] = set()
        self.connections: dict[asyncio.StreamWriter, asyncio.Task] = {}

    def seq(self, k: int) -> int:
        loop, i = divmod(k, len(self.payloads))
        return (loop * self.first_seq[-1] + self.first_seq[i]) & 0xFFFF

    def timestamp(self, k: int) -> int:
        return k * CLOCK // self.fps & 0xFFFFFFFF

    def next_key(self, k: int) -> int:
        while not self.key[k % len(self.key)]:
            k += 1
        return k

    def packets(self, k: int) -> bytes:
        """Frame `k` of the endless sequence as interleaved RTP on channel 0."""
        chunks = self.payloads[k % len(self.payloads)]
        seq, ts, out = self.seq(k), self.timestamp(k), []
        for j, payload in enumerate(chunks):
            marker = 0x80 if j == len(chunks) - 1 else 0
            out.append(struct.pack("!cBH", b"$", 0, 12 + len(payload)))
            out.append(struct.pack("!BBHII", 0x80, marker | 96, (seq + j) & 0xFFFF, ts, SSRC))
            out.append(payload)
        return b"".join(out)

    async def stream(self) -> None:
        """Frame k is due at start + k / fps, whoever watches; late sessions skip, never wait."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            await asyncio.sleep(max(0.0, start + self.next_frame / self.fps - loop.time()))
            k, data = self.next_frame, b""
            for session in list(self.playing):
                if session.start is None or session.start > k:
                    continue
                if session.writer.transport.get_write_buffer_size() > MAX_BUFFERED:
                    session.start = self.next_key(k + 1)  # a gap breaks references until an IDR
                    continue
                data = data or self.packets(k)
                session.writer.write(data)
            self.next_frame += 1

    def sdp(self) -> str:
        return (
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=Lumos test camera\r\nc=IN IP4 0.0.0.0\r\n"
            "t=0 0\r\na=range:npt=0-\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
            f"a=fmtp:96 {self.fmtp}\r\na=framerate:{self.fps}\r\na=control:trackID=0\r\n"
        )

    def answer(self, method: str, url: str, headers: dict[str, str], session: Session):
        """(status, headers, body) for one request on the connection of `session`."""
        asked = headers.get("session", "").split(";")[0]
        if (asked and asked != session.id) or (method in ("PLAY", "TEARDOWN") and not session.url):
            return "454 Session Not Found", {}, ""
        if method == "OPTIONS":
            return "200 OK", {"Public": PUBLIC}, ""
        if method == "DESCRIBE":
            base = {"Content-Base": url.rstrip("/") + "/", "Content-Type": "application/sdp"}
            return "200 OK", base, self.sdp()
        if method == "SETUP":
            if "TCP" not in headers.get("transport", "").upper():
                return "461 Unsupported Transport", {}, ""
            session.url = url
            return "200 OK", {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}, ""
        if method == "PLAY":
            session.start = self.next_key(self.next_frame)
            self.playing.add(session)
            rtp_info = f"url={session.url};seq={self.seq(session.start)}"
            rtp_info += f";rtptime={self.timestamp(session.start)}"
            return "200 OK", {"Range": "npt=0.000-", "RTP-Info": rtp_info}, ""
        if method in ("GET_PARAMETER", "TEARDOWN"):  # a keepalive; or the end, see serve
            return "200 OK", {}, ""
        return "501 Not Implemented", {}, ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One RTSP connection: requests, interleaved RTCP from the client (skipped) and RTP."""
        session = Session(secrets.token_hex(8), writer)
        self.connections[writer] = asyncio.current_task()
        try:
            while True:
                first = await reader.readexactly(1)
                if first == b"$":  # the client's receiver reports
                    header = await reader.readexactly(3)
                    await reader.readexactly(int.from_bytes(header[1:], "big"))
                    continue
                head = first + await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, url, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                await reader.readexactly(int(headers.get("content-length", "0")))
                status, extra, body = self.answer(method, url, headers, session)
                if session.url:
                    extra["Session"] = f"{session.id};timeout=60"
                reply = f"RTSP/1.0 {status}\r\nCSeq: {headers.get('cseq', '0')}\r\n"
                reply += "".join(f"{name}: {value}\r\n" for name, value in extra.items())
                reply += f"Content-Length: {len(body)}\r\n\r\n{body}" if body else "\r\n"
                writer.write(reply.encode())
                if method == "TEARDOWN" and status == "200 OK":
                    self.playing.discard(session)
                    session = Session(secrets.token_hex(8), writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # the client went away
        except ValueError:
            pass  # not RTSP (no request line, a bad Content-Length): drop the connection
        finally:
            self.playing.discard(session)
            self.connections.pop(writer)
            writer.close()


async def main(args: argparse.Namespace) -> None:
    camera = Camera(args.width, args.height, args.fps, args.seconds)
    server = await asyncio.start_server(camera.serve, "127.0.0.1", args.port)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    clock = asyncio.create_task(camera.stream())
    print(f"camera: serving rtsp://127.0.0.1:{args.port}{(args.path or ['/cam'])[0]}", flush=True)
    await stop.wait()
    clock.cancel()
    server.close()
    # Closed connections end their handlers, which cancelling them would leave complaining.
    handlers = list(camera.connections.values())
    for writer in camera.connections:
        writer.close()
    await asyncio.gather(*handlers, return_exceptions=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--path", action="append", help="announced path (any path is served)")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--seconds", type=int, default=4, help="length of the encoded loop")
    options = parser.parse_args()
    if options.width % 2 or options.height % 2 or min(options.fps, options.seconds) < 1:
        parser.error("width and height must be even (4:2:0), fps and seconds positive")
    asyncio.run(main(options))
