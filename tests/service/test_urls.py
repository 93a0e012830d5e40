"""The URL policy on its own: every spelling of an address is the address; shapes other clients
would read differently are refused; redaction by structure."""

import pytest

from service.settings import Settings
from service.urls import RefusedURL, camera_destinations, redact_text, redact_url

POLICY = camera_destinations(
    Settings(camera_networks="private,public,127.0.0.1/32", redis_url="redis://127.0.0.1:6390/0")
)


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://127.0.0.2/cam",
        "rtsp://2130706434/cam",
        "rtsp://127.2/cam",
        "rtsp://0x7f.0.0.2/cam",
        "rtsp://0177.0.0.02/cam",
        "http://[::ffff:127.0.0.2]/cam",
        "http://[::ffff:7f00:2]/cam",
        "http://[::1]/cam",
        "http://169.254.169.254/latest/",
        "http://[::ffff:a9fe:a9fe]/latest/",
        "http://[fe80::1]/",
        "http://0/",
        "rtsp://127.0.0.1:6390/cam",  # the service's Redis
        "rtsp://127.0.0.1:8000/cam",  # its own API
    ],
)
def test_denied_addresses_are_refused_in_every_spelling(url: str) -> None:
    with pytest.raises(RefusedURL) as refused:
        POLICY.check(url)
    assert refused.value.reason == "url_destination_refused"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("rtsp://127.0.0.1:8554/cam\r\nSET x 1", "url_control_characters"),
        ("rtsp://127.0.0.1:8554/c am", "url_control_characters"),
        ("rtsp://127.0.0.1:8554/cam\u2028", "url_control_characters"),
        ("file:///etc/passwd", "url_scheme"),
        ("rtsp:/127.0.0.1/cam", "url_scheme"),
        ("rtsp://a@b@127.0.0.1/cam", "url_invalid"),
        ("http://[fe80::1%25eth0]/", "url_invalid"),
        ("rtsp://127.0.0.1:99999/cam", "url_invalid"),
        ("rtsp://no-such-host.invalid/cam", "url_unresolvable"),
    ],
)
def test_malformed_urls_are_refused_with_their_reason(url: str, reason: str) -> None:
    with pytest.raises(RefusedURL) as refused:
        POLICY.check(url)
    assert refused.value.reason == reason


def test_an_allowed_url_is_rebuilt_and_pinned_to_its_checked_address() -> None:
    parsed, address = POLICY.check("RTSP://u:p@0x7f.1:8554/cam?x=1#frag")
    assert str(address) == "127.0.0.1"
    assert parsed.url == "rtsp://u:p@127.0.0.1:8554/cam?x=1"
    assert POLICY.connect_url("rtsp://localhost:8554/cam").startswith("rtsp://127.0.0.1:8554")


def test_redaction_is_by_structure() -> None:
    slack = "https://hooks.slack.com/services/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"
    assert redact_url(slack) == "https://hooks.slack.com/services/T0A1B2C3D/B0A1B2C3D/***"
    assert redact_url("rtsp://cam.local/stream1/hls.m3u8?channel=1&sgn=abc") == (
        "rtsp://cam.local/stream1/hls.m3u8?channel=***&sgn=***"
    )
    text = "Connection refused: 'rtsp://admin:pw@10.1.2.3:554/x?token=abc'"
    assert redact_text(text) == "Connection refused: 'rtsp://***@10.1.2.3:554/x?token=***'"
