"""Hosts for the multi-host tests: Linux network namespaces on one bridge, real TCP between them.

Each host is a namespace with its own network stack, one veth link to a bridge in the test's own
namespace, and an address on a private /24; the test process reaches every host through the
bridge, as a client on the same network would. `cut(host)` / `restore(host)` take the host's
link down and up (`ip link set`), and `command(host, argv)` runs a command inside it.

Names carry the test process's pid (and a count within it), so that runs never collide, and a
run that died without cleaning up (SIGKILL, a crashed machine) is cleaned up by the next: the
namespaces, bridges and links whose pid is gone are deleted at start. Needs root
(CAP_NET_ADMIN); `available()` says whether it is there.
"""

import itertools
import os
import re
import subprocess
from pathlib import Path

_PREFIX = "lmh"
_NAME = re.compile(rf"^{_PREFIX}(\d+)")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def available() -> bool:
    """Whether this process may create network namespaces (root with the `ip` tool)."""
    if os.geteuid() != 0:
        return False
    try:
        return _ip("netns", "list", check=False).returncode == 0
    except FileNotFoundError:
        return False


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def clean_leftovers() -> None:
    """Delete the namespaces, bridges and links of earlier runs whose process is gone."""
    for line in _ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if (match := _NAME.match(name)) and not _alive(int(match[1])):
            _ip("netns", "delete", name, check=False)
    for line in _ip("-o", "link", "show").stdout.splitlines():  # bridges, and veths left over
        name = line.split(":")[1].strip().split("@")[0]
        if (match := _NAME.match(name)) and not _alive(int(match[1])):
            _ip("link", "delete", name, check=False)


class Hosts:
    """Namespaces `names` as hosts on 10.77.N.0/24 (N from the pid); the bridge is .254."""

    _made = itertools.count()

    def __init__(self, names: list[str]) -> None:
        pid, made = os.getpid(), next(self._made)
        self.tag = f"{_PREFIX}{pid}n{made}"  # a later set in this process never meets these
        self.bridge = f"{self.tag}br"
        self.net = f"10.77.{(pid + 17 * made) % 250}"
        self.gateway = f"{self.net}.254"
        """The test's own address on the bridge (where a relay between hosts listens)."""
        self.names = names
        self.addresses = {name: f"{self.net}.{i + 1}" for i, name in enumerate(names)}
        self._links = {name: f"{self.tag}v{i}" for i, name in enumerate(names)}

    def namespace(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def __enter__(self) -> "Hosts":
        clean_leftovers()
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for host in self.names:
                namespace, link = self.namespace(host), self._links[host]
                _ip("netns", "add", namespace)
                _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", namespace)
                _ip("link", "set", link, "master", self.bridge, "up")
                inside = ("netns", "exec", namespace, "ip")
                _ip(*inside, "addr", "add", f"{self.addresses[host]}/24", "dev", "eth0")
                _ip(*inside, "link", "set", "eth0", "up")
                _ip(*inside, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Delete every namespace (their veth links go with them) and the bridge; the
        processes inside should be stopped first (`ip netns delete` does not kill them)."""
        for host in self.names:
            _ip("link", "delete", self._links[host], check=False)  # now, not when the
            _ip("netns", "delete", self.namespace(host), check=False)  # kernel gets to it
        _ip("link", "delete", self.bridge, check=False)

    def command(self, host: str, command: list[str]) -> list[str]:
        """`command` run inside `host` (`ip netns exec` execs it: the pid is the command's)."""
        return ["ip", "netns", "exec", self.namespace(host), *command]

    def cut(self, host: str) -> None:
        """Take `host`'s only link down: its packets go nowhere, its TCP connections stay open
        and retransmit, as when a cable or a switch port fails."""
        _ip("link", "set", self._links[host], "down")

    def restore(self, host: str) -> None:
        _ip("link", "set", self._links[host], "up")
