"""HTTP(S) camera sources, fetched by the service rather than by FFmpeg.

FFmpeg's HTTP client follows every redirect, to any host: a camera URL that passed the URL policy
could hand the connection on to an address the policy refuses (the metadata service, Redis). So the
service makes the request itself: each hop is checked by the policy (http or https only, an allowed
destination), the connection goes to the address checked, and FFmpeg demuxes the body as a stream.
"""

import io
from urllib.parse import urljoin

import httpx

from service.urls import Destinations, RefusedURL

_MAX_REDIRECTS = 5
_SCHEMES = ("http", "https")


class HttpSource(io.RawIOBase):
    """A camera's HTTP response body as a file FFmpeg reads; closed (with its connection) when
    released, as every IOBase is."""

    def __init__(
        self, url: str, destinations: Destinations, open_timeout: float, read_timeout: float
    ) -> None:
        super().__init__()
        timeout = httpx.Timeout(read_timeout, connect=open_timeout)
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)
        try:
            self._response = self._get(url, destinations)
        except BaseException:
            self._client.close()
            raise
        self._chunks = self._response.iter_raw()
        self._pending = b""

    def _get(self, url: str, destinations: Destinations) -> httpx.Response:
        for _ in range(_MAX_REDIRECTS + 1):
            parsed, address = destinations.check(url)
            if parsed.scheme not in _SCHEMES:
                raise RefusedURL("url_scheme", "an HTTP camera may redirect to http(s) only")
            request = self._client.build_request(
                "GET",
                parsed.with_host(str(address)),
                headers={"host": parsed.authority},
                extensions={"sni_hostname": parsed.host},
            )
            response = self._client.send(request, stream=True)
            if not response.is_redirect:
                if not response.is_success:
                    response.close()
                    raise OSError(f"the camera answered HTTP {response.status_code}")
                return response
            response.close()
            url = urljoin(url, response.headers.get("location", ""))
        raise OSError(f"the camera redirected more than {_MAX_REDIRECTS} times")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # noqa: ANN001 (a writable buffer of any kind)
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def close(self) -> None:
        if not self.closed:
            if hasattr(self, "_response"):
                self._response.close()
            self._client.close()
        super().close()
