#!/usr/bin/env python3
"""A test camera: an RTSP server streaming H.264 at real-time pace, forever.

Each path streams either a video file played in a loop or a generated dark scene (a dim ball
bouncing on black under sensor-like noise, the kind of picture the model is for). Run it with the
system Python that has GStreamer's bindings (Debian: python3-gi, gir1.2-gst-rtsp-server-1.0):

    /usr/bin/python3 docker/camera/rtsp_camera.py --port 8554 --path /cam1 --path /cam2
    /usr/bin/python3 docker/camera/rtsp_camera.py --port 8554 --path /lobby --file lobby.mp4

A looped file is decoded once per path by a player pipeline that seeks back to the start at the
end, and handed to the RTSP side through an inter-pipeline channel: clients that connect and
disconnect never restart the file, and the stream never ends.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

ENCODER = (
    "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bframes=0 "
    "! video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=1"
)
# Files that failed to play; the server stops at the first.
failed: list[str] = []


def raw_caps(args: argparse.Namespace) -> str:
    return f"video/x-raw,format=I420,width={args.width},height={args.height},framerate={args.fps}/1"


def dark_scene(args: argparse.Namespace, index: int) -> str:
    """Launch text for a generated dark, noisy scene (each path's ball starts elsewhere)."""
    return (
        f"videotestsrc is-live=true pattern=ball motion=sweep foreground-color=0xff3a3a3a "
        f"background-color=0xff060606 horizontal-speed={index + 1} ! {raw_caps(args)} ! mix. "
        f"videotestsrc is-live=true pattern=snow ! {raw_caps(args)} ! mix. "
        f"compositor name=mix sink_1::alpha=0.08 ! videoconvert"
    )


def start_player(path: str, channel: str, args: argparse.Namespace, loop: GLib.MainLoop):
    """Play `path` in real time, looping, into the inter-pipeline `channel`; an unplayable file
    ends the server (exit status 1)."""
    player = Gst.parse_launch(
        f"filesrc name=file ! decodebin ! videoconvert ! videoscale ! videorate "
        f"! {raw_caps(args)} ! intervideosink channel={channel} sync=true"
    )
    player.get_by_name("file").set_property("location", path)  # any path, no quoting rules

    def on_message(_bus: Gst.Bus, message: Gst.Message) -> None:
        if message.type == Gst.MessageType.EOS:
            player.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
        elif message.type == Gst.MessageType.ERROR:
            error, _ = message.parse_error()
            print(f"rtsp_camera: cannot play {path}: {error.message}", file=sys.stderr)
            failed.append(path)
            loop.quit()

    bus = player.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    player.set_state(Gst.State.PLAYING)
    return player


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--path", action="append", help="mount path, repeatable (default /cam)")
    parser.add_argument("--file", help="video file to loop; default: a generated dark scene")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--fps", type=int, default=15)
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    loop = GLib.MainLoop()
    players = []
    for index, path in enumerate(args.path or ["/cam"]):
        if args.file:
            channel = f"camera{index}"
            players.append(start_player(args.file, channel, args, loop))
            source = f"intervideosrc channel={channel} ! {raw_caps(args)}"
        else:
            source = dark_scene(args, index)
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(f"( {source} ! {ENCODER.format(gop=args.fps)} )")
        factory.set_shared(True)  # every client of a path watches the same encode
        mounts.add_factory(path, factory)
    if server.attach(None) == 0:
        sys.exit(f"rtsp_camera: cannot listen on {args.host}:{args.port}")
    for sig in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(
        f"rtsp_camera: serving rtsp://{args.host}:{args.port}{(args.path or ['/cam'])[0]}",
        flush=True,
    )
    loop.run()
    for player in players:
        player.set_state(Gst.State.NULL)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
