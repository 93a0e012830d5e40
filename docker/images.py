"""`make images`: build lumos:cpu, lumos-camera:latest and the local stand-in images, here.

This machine reaches Debian's mirror and PyPI (through a TLS-intercepting proxy) but no image
registry, so the base image is made with debootstrap (its root filesystem cached as a tarball under
docker/.cache/), and the compose file's redis and prometheus images get stand-ins from Debian's
packages. pip's own configuration here points at local wheel folders (torch among them): they are
served on 127.0.0.1 for the build and passed as the first indexes, and the CA certificates pip
trusts beyond the base image's bundle are passed as EXTRA_CA_CERTS. The base image is reused when
present; the others go through Docker's layer cache, so a second run takes seconds.
"""

import contextlib
import functools
import http.server
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "docker" / ".cache"
PYTHON_BASE = "python:3.11-slim-bookworm"
STAND_INS = {
    "redis": "lumos-stand-in/redis:bookworm",
    "prometheus": "lumos-stand-in/prometheus:bookworm",
}
LUMOS_IMAGE = "lumos:cpu"
CAMERA_IMAGE = "lumos-camera:latest"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
PYPI = "https://pypi.org/simple"
INDEX_PORT = 38461


def docker(*args: str, capture: bool = False, stdin: bytes | None = None) -> str:
    result = subprocess.run(
        ["docker", *args], check=True, input=stdin, stdout=subprocess.PIPE if capture else None
    )
    return result.stdout.decode() if capture else ""


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def rootfs_tarball() -> Path:
    """A minimal Debian bookworm with Python 3.11, made once (about 40 s) and kept."""
    tarball = CACHE / "bookworm-python3.tar"
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        rootfs = Path(work) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates"]
            + ["bookworm", str(rootfs), DEBIAN_MIRROR],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # What the official slim images leave out too: package caches and lists.
        subprocess.run(
            ["sh", "-c", "rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/*"],
            cwd=rootfs,
            check=True,
        )
        partial = Path(work) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
        partial.rename(tarball)
    return tarball


def python_base() -> None:
    if image_exists(PYTHON_BASE):
        return
    changes = ["ENV LANG=C.UTF-8", 'CMD ["python3"]']
    docker(
        "import",
        *[arg for change in changes for arg in ("--change", change)],
        str(rootfs_tarball()),
        PYTHON_BASE,
    )


def stand_ins() -> None:
    """Built every time, through the layer cache: a change to their Dockerfile takes effect."""
    dockerfile = (ROOT / "docker" / "stand-ins" / "Dockerfile").read_bytes()
    for target, tag in STAND_INS.items():
        docker("build", "--network", "host", "--target", target, "-t", tag, "-", stdin=dockerfile)


def pip_config() -> dict[str, str]:
    """pip's effective configuration, e.g. {"extra-index-url": "...", "cert": "..."}."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], check=True, capture_output=True, text=True
    ).stdout
    config: dict[str, str] = {}
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        config[key.split(".", 1)[-1]] = value.strip("'")
    return config


@contextlib.contextmanager
def served(directory: Path, port: int) -> Iterator[int]:
    """Serve a folder on 127.0.0.1 for the length of the block; yields the port.

    The port is part of the build arguments and so of Docker's cache keys: a fixed one keeps the
    torch layer cached from one run to the next; a free one if it is taken (the build still works).
    """
    handler = functools.partial(QuietHandler, directory=str(directory))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def local_indexes(config: dict[str, str], stack: contextlib.ExitStack) -> dict[str, str]:
    """Build arguments that put pip's file:// indexes (served here) first, PyPI after them.

    pip takes the first of equal candidates, so torch comes from this disk, not PyPI's copy.
    """
    folders = [
        Path(urlparse(url).path)
        for url in config.get("extra-index-url", "").split()
        if url.startswith("file://")
    ]
    if not folders:
        return {}
    ports = [stack.enter_context(served(f.parent, INDEX_PORT + i)) for i, f in enumerate(folders)]
    urls = [f"http://127.0.0.1:{port}/{f.name}/" for port, f in zip(ports, folders, strict=True)]
    return {"PIP_INDEX_URL": urls[0], "PIP_EXTRA_INDEX_URL": " ".join([*urls[1:], PYPI])}


def certificates(bundle: str) -> set[str]:
    pems = bundle.split("-----END CERTIFICATE-----")
    return {pem.strip() + "\n-----END CERTIFICATE-----" for pem in pems if "BEGIN" in pem}


def extra_ca_certs(config: dict[str, str]) -> str:
    """The certificates pip trusts here that the base image does not (e.g. a proxy's CA)."""
    if "cert" not in config:
        return ""
    image_bundle = docker(
        "run",
        "--rm",
        "--network",
        "none",
        PYTHON_BASE,
        "cat",
        "/etc/ssl/certs/ca-certificates.crt",
        capture=True,
    )
    extra = certificates(Path(config["cert"]).read_text()) - certificates(image_bundle)
    return "\n".join(sorted(extra))


def build(tag: str, dockerfile: str, build_args: dict[str, str], target: str) -> subprocess.Popen:
    """Start `docker build` of the repository root; the caller waits (builds may overlap)."""
    args = [arg for name, value in build_args.items() for arg in ("--build-arg", f"{name}={value}")]
    command = ["docker", "build", "--network", "host", "-f", dockerfile, "--target", target]
    return subprocess.Popen([*command, "-t", tag, *args, str(ROOT)])


def wait(*builds: subprocess.Popen) -> None:
    for process in builds:
        if process.wait():
            raise SystemExit(f"{' '.join(process.args[:8])}... failed")


def main() -> None:
    started = time.monotonic()
    if not (ROOT / "artifacts" / "demo" / "manifest.json").exists():
        raise SystemExit("artifacts/demo is missing: the lumos image bakes in the demo model")
    python_base()
    # The camera needs nothing from pip: it builds while the lumos image installs torch.
    camera = build(CAMERA_IMAGE, "docker/camera/Dockerfile", {}, target="camera")
    stand_ins()
    config = pip_config()
    with contextlib.ExitStack() as stack:
        build_args = {"EXTRA_CA_CERTS": extra_ca_certs(config), **local_indexes(config, stack)}
        wait(build(LUMOS_IMAGE, "docker/Dockerfile", build_args, target="cpu"), camera)
    print(f"images built in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
