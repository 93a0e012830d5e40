"""Where camera and webhook URLs may point, and how a URL is shown.

A subscriber chooses the URL, and the service connects to it: from inside the deployment, next to
Redis, the API and the cluster's metadata endpoint. So a URL is never passed on as given. It is
parsed and rebuilt (no control character or whitespace anywhere, an allowed scheme, a host, a
port), its host resolved, and every address it resolves to checked against the networks the
operator allows for that kind of URL (`LUMOS_CAMERA_NETWORKS`, `LUMOS_WEBHOOK_NETWORKS`). The check
runs at subscription and again before every connection (a camera's reconnects, each webhook POST),
so a DNS name that later resolves elsewhere is caught where it is used.

Some destinations are refused whatever the lists say: link-local and cloud metadata addresses, and
the service's own dependencies (its Redis, its own API and metrics listeners, and any
`LUMOS_DENIED_ENDPOINTS`). Loopback passes only through a listed network inside loopback itself, so
`0.0.0.0/0` does not open it. Addresses are compared as FFmpeg's and the kernel's resolver would
read them: `http://2130706433/`, `127.1`, `0x7f.1`, `[::ffff:127.0.0.1]` are all 127.0.0.1.
"""

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from service.settings import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CAMERA_SCHEMES = ("rtsp", "rtsps", "http", "https")
WEBHOOK_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}

# Printable ASCII but the space: anything else (CR, LF, NUL, TAB, DEL, Unicode spaces) may be
# read by some client as a line or field break.
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_-]+)*\.?$")

_NEVER = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network": 0.0.0.0 reaches the local host
        "169.254.0.0/16",  # link-local: cloud metadata (169.254.169.254), ECS task metadata
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "192.0.0.192/32",  # Oracle Cloud metadata
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
        "::/128",
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "ff00::/8",  # IPv6 multicast
    )
)
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)


class RefusedURL(ValueError):
    """A URL the policy does not allow; `reason` is the API's problem reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _address(host: str) -> Address | None:
    """`host` as an IP address in any spelling the C resolver accepts (decimal, octal, hex,
    short forms), or None for a name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:  # inet_aton: "2130706433", "0177.0.0.1", "127.1", "0x7f.1"
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return _unmapped(address)


def _unmapped(address: Address) -> Address:
    """::ffff:127.0.0.1 is 127.0.0.1 on the wire (a dual-stack socket connects over IPv4)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class ParsedURL:
    """A URL taken apart and checked for shape; `url` is the rebuilt text used from then on."""

    scheme: str
    host: str
    """Lower-case name, or the canonical text of the address (without brackets)."""
    port: int
    parts: SplitResult

    @cached_property
    def url(self) -> str:
        return self.with_host(self.host)

    @property
    def authority(self) -> str:
        """host[:port] as a Host header names it."""
        address = _address(self.host)
        host = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else self.host
        return host + (f":{self.parts.port}" if self.parts.port is not None else "")

    def with_host(self, host: str) -> str:
        """The URL with `host` in place of its own (an address, to connect where checked)."""
        address = _address(host)
        shown = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else host
        userinfo = self.parts.netloc.rpartition("@")[0]
        netloc = (f"{userinfo}@" if userinfo else "") + shown
        if self.parts.port is not None:
            netloc += f":{self.port}"
        path = self.parts.path or "/"
        return urlunsplit((self.scheme, netloc, path, self.parts.query, ""))


def parse(url: str, schemes: Iterable[str]) -> ParsedURL:
    """Check `url`'s shape: printable, an allowed scheme, a host, a valid port. Raises
    `RefusedURL`."""
    schemes = tuple(schemes)
    if not _PRINTABLE.match(url):
        raise RefusedURL("url_control_characters", "the URL holds whitespace or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in schemes or not url[len(scheme) :].startswith("://"):
        raise RefusedURL("url_scheme", f"the URL must be a {'/'.join(schemes)} URL with a host")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
        raw_host = parts.hostname or ""
    except ValueError as exc:  # a port that is not a number, or out of range
        raise RefusedURL("url_invalid", f"the URL's host or port is invalid: {exc}") from exc
    if not raw_host or "%" in raw_host or "\\" in parts.netloc or parts.netloc.count("@") > 1:
        raise RefusedURL("url_invalid", "the URL names no valid host")
    address = _address(raw_host)
    if address is None and not _HOSTNAME.match(raw_host):
        raise RefusedURL("url_invalid", f"{raw_host!r} is not a host name or address")
    host = str(address) if address is not None else raw_host.rstrip(".")
    return ParsedURL(scheme, host, port, parts)


def network_list(spec: str) -> list[Network]:
    """ "private,public,127.0.0.1/32" -> networks; `public` is every address (less the ones
    refused anyway)."""
    networks: list[Network] = []
    for item in (part.strip() for part in spec.split(",")):
        if item == "private":
            networks += _PRIVATE
        elif item == "public":
            networks += (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
        elif item:
            networks.append(ipaddress.ip_network(item, strict=False))
    return networks


def _endpoint_addresses(host: str, port: int) -> set[tuple[Address, int]]:
    """Where a service of ours listens: an unspecified host (0.0.0.0) means every local
    address; a name that does not resolve here is nowhere to protect."""
    if host in ("", "0.0.0.0", "::"):
        names = ["127.0.0.1", "::1", socket.gethostname()]
    else:
        names = [host]
    found: set[tuple[Address, int]] = set()
    for name in names:
        found |= {(a, port) for a in resolve(name, port)}
    return found


def resolve(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to (none when it does not)."""
    address = _address(host)
    if address is not None:
        return [address]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(_unmapped(ipaddress.ip_address(info[4][0])) for info in infos))


class Destinations:
    """The addresses one kind of URL (cameras, webhooks) may connect to."""

    def __init__(
        self,
        networks: str,
        schemes: Iterable[str],
        denied_endpoints: Iterable[tuple[str, int]] = (),
    ) -> None:
        self.networks = network_list(networks)
        self.schemes = tuple(schemes)
        self._denied_spec = list(denied_endpoints)

    @cached_property
    def denied(self) -> set[tuple[Address, int]]:
        """Resolved on first use, not at start: names such as `redis` resolve inside the
        deployment only."""
        found: set[tuple[Address, int]] = set()
        for host, port in self._denied_spec:
            found |= _endpoint_addresses(host, port)
        return found

    def allows(self, address: Address, port: int) -> bool:
        if any(address in net for net in _NEVER) or (address, port) in self.denied:
            return False
        listed = [net for net in self.networks if address in net]
        if any(address in net for net in _LOOPBACK):  # only through a network inside loopback
            return any(
                net.subnet_of(lo) for net in listed for lo in _LOOPBACK if lo.version == net.version
            )
        return bool(listed)

    def check(self, url: str) -> tuple[ParsedURL, Address]:
        """Parse `url`, resolve its host and check every address; returns the parsed URL and
        the address to connect to. Raises `RefusedURL`. Blocking (DNS)."""
        parsed = parse(url, self.schemes)
        addresses = resolve(parsed.host, parsed.port)
        if not addresses:
            raise RefusedURL("url_unresolvable", f"the host {parsed.host!r} does not resolve")
        refused = [a for a in addresses if not self.allows(a, parsed.port)]
        if refused:
            raise RefusedURL(
                "url_destination_refused",
                f"the URL's host {parsed.host!r} resolves to {refused[0]}, port {parsed.port}, "
                "which this service may not connect to",
            )
        return parsed, addresses[0]

    def connect_url(self, url: str) -> str:
        """`url` checked now, for a connection now: an RTSP URL names the checked address, so
        that FFmpeg connects where the check looked; an HTTP URL keeps its name (virtual hosts
        and certificates need it) for `HttpSource`, which connects to the address it checks,
        redirect by redirect."""
        parsed, address = self.check(url)
        return parsed.with_host(str(address)) if parsed.scheme.startswith("rtsp") else parsed.url


def _dependencies(settings: "Settings") -> list[tuple[str, int]]:
    """The service's own endpoints: its Redis, its API listener, its metrics listener, and
    whatever the operator adds."""
    found = parse_endpoints(settings.denied_endpoints)
    if settings.redis_url:
        redis = urlsplit(settings.redis_url)
        if redis.hostname:
            found.append((redis.hostname, redis.port or 6379))
    found.append((settings.host, settings.port))
    if settings.metrics_port:
        found.append(("0.0.0.0", settings.metrics_port))
    return found


def camera_destinations(settings: "Settings") -> Destinations:
    return Destinations(settings.camera_networks, CAMERA_SCHEMES, _dependencies(settings))


def webhook_destinations(settings: "Settings") -> Destinations:
    return Destinations(settings.webhook_networks, WEBHOOK_SCHEMES, _dependencies(settings))


def parse_endpoints(spec: str) -> list[tuple[str, int]]:
    """ "prometheus:9090, [::1]:6379" -> [("prometheus", 9090), ("::1", 6379)]; blank items are
    skipped."""
    endpoints = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} is not HOST:PORT")
        endpoints.append((host.strip("[]"), int(port)))
    return endpoints


# Redaction: by structure, not by name. A name list always misses one (`X-Amz-Signature`,
# `code`, `hub.secret`), and webhook services put their secret in the path.
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_\-.~+=]+$")


def _looks_like_token(segment: str) -> bool:
    """Long and not a lower-case word (a base64url secret, 32 hex digits, a UUID), or mixing several
    letters and digits outside a file name (`xoxb7f3k2Q9`). Words, short ids and file names
    (`live`, `stream1`, `ch01`, `hls.m3u8`) stay readable."""
    text = unquote(segment)
    letters = sum(c.isalpha() for c in text)
    digits = sum(c.isdigit() for c in text)
    if len(text) >= 20:
        return digits > 0 or text != text.lower() or not _TOKEN_CHARS.match(text)
    return len(text) >= 10 and letters >= 3 and digits >= 3 and "." not in text


def redact_url(url: str) -> str:
    """`url` with its user info, every query value and every token-like path segment replaced
    by `***`. Use it for every URL that reaches a log line, a metric, an API answer or Redis."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    path = "/".join("***" if _looks_like_token(s) else s for s in parts.path.split("/"))
    query = urlencode(
        [(k, "***") for k, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*"
    )
    return urlunsplit((parts.scheme, netloc, path, query, ""))


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_text(text: str) -> str:
    """`text` (an error message, say FFmpeg's, which quotes the URL it opened: perhaps the
    checked address in place of the name) with every URL in it redacted."""
    return _URL_IN_TEXT.sub(lambda match: redact_url(match[0]), text)
