#!/usr/bin/env python3
"""RTSP cameras that misbehave on purpose, for the system tests; run by the system python3 that
has GStreamer's bindings, like docker/camera/rtsp_camera.py, whose dark scene and encoder they use:

    /resize   the dark scene, its frame size flipping between two sizes every few seconds
    /corrupt  the dark scene with random bytes of its H.264 stream overwritten (breakmydata)
"""

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "docker" / "camera"))

# Its GStreamer modules too: it chose their versions before importing them.
from rtsp_camera import ENCODER, GLib, Gst, GstRtspServer, dark_scene  # noqa: E402

SIZES = ((160, 120), (96, 72))


def flip_sizes(media: GstRtspServer.RTSPMedia, every_s: int) -> None:
    """Every `every_s` seconds, ask for the other frame size: the encoder starts a new stream
    (new SPS) mid-session, as a camera does when its resolution is changed."""
    size = media.get_element().get_by_name("size")
    sizes = itertools.cycle(SIZES[1:] + SIZES[:1])

    def flip() -> bool:
        width, height = next(sizes)
        size.set_property(
            "caps", Gst.Caps.from_string(f"video/x-raw,width={width},height={height}")
        )
        return True

    GLib.timeout_add_seconds(every_s, flip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--resize-every", type=int, default=3, help="seconds between flips")
    parser.add_argument("--corruption", type=float, default=1e-3, help="per-byte probability")
    args = parser.parse_args()
    width, height = SIZES[0]
    scene = dark_scene(argparse.Namespace(width=width, height=height, fps=args.fps), 0)
    encoder = ENCODER.format(gop=args.fps)
    broken = encoder.replace(
        " ! rtph264pay",
        f" ! breakmydata probability={args.corruption} seed=7 skip=4096 ! rtph264pay",
    )
    launches = {
        "/resize": f"{scene} ! videoscale ! capsfilter name=size "
        f"caps=video/x-raw,width={width},height={height} ! {encoder}",
        "/corrupt": f"{scene} ! {broken}",
    }

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    for path, launch in launches.items():
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(f"( {launch} )")
        factory.set_shared(True)
        if path == "/resize":
            factory.connect(
                "media-configure", lambda _, media: flip_sizes(media, args.resize_every)
            )
        server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        sys.exit(f"faulty_camera: cannot listen on port {args.port}")
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
