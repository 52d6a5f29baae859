"""The client's MLflow source never hands its token to another host on a redirect."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from promptalias.client._sources import MlflowSource, _keeps_credentials
from promptalias.client._uri import parse_uri

VERSION = {
    "name": "p",
    "version": "3",
    "aliases": ["production"],
    "tags": [
        {"key": "mlflow.prompt.is_prompt", "value": "true"},
        {"key": "mlflow.prompt.text", "value": "hello {{x}}"},
    ],
}


class Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []
    redirect_to: ClassVar[str | None] = None

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        target = type(self).redirect_to
        if target is not None:
            self.send_response(302)
            self.send_header("Location", target + self.path)
            self.end_headers()
            return
        body = json.dumps({"model_version": VERSION}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def server(redirect_to: str | None) -> tuple[http.server.ThreadingHTTPServer, type[Recorder]]:
    handler = type("Handler", (Recorder,), {"seen": [], "redirect_to": redirect_to})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, handler


@pytest.fixture
def other_host() -> Iterator[tuple[str, type[Recorder]]]:
    srv, handler = server(None)
    try:
        yield f"http://localhost:{srv.server_address[1]}", handler  # another host name, another port
    finally:
        srv.shutdown()


def test_a_redirect_to_another_host_drops_the_token(other_host: tuple[str, type[Recorder]]) -> None:
    target, target_handler = other_host
    srv, first = server(target)
    try:
        source = MlflowSource(
            f"http://127.0.0.1:{srv.server_address[1]}", 5, {"MLFLOW_TRACKING_TOKEN": "t0k3n"}
        )
        source.fetch(parse_uri("prompts:/p@production"))
    finally:
        srv.shutdown()
    assert first.seen == ["Bearer t0k3n"]
    assert target_handler.seen == [None]


def test_a_redirect_on_the_same_origin_keeps_it() -> None:
    srv, handler = server(None)
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    handler.redirect_to = None
    redirecting, first = server(base)
    try:
        # Same origin: redirect a path to itself on one server.
        source = MlflowSource(
            f"http://127.0.0.1:{redirecting.server_address[1]}", 5, {"MLFLOW_TRACKING_TOKEN": "t"}
        )
        first.redirect_to = f"http://127.0.0.1:{redirecting.server_address[1]}/again"
        with pytest.raises(Exception):  # noqa: B017 -- the loop ends in urllib's redirect limit
            source.get("/x", {})
    finally:
        srv.shutdown()
        redirecting.shutdown()
    assert set(first.seen) == {"Bearer t"}


@pytest.mark.parametrize(
    ("old", "new", "keeps"),
    [
        ("https://m.example/a", "https://m.example/b", True),
        ("https://m.example/a", "http://m.example/b", False),  # downgrade
        ("https://m.example/a", "https://evil.example/b", False),
        ("https://m.example/a", "https://m.example:8443/b", False),
        ("http://m.example/a", "https://m.example/b", True),  # upgrade on the same host
        ("http://m.example:5000/a", "http://m.example:5000/b", True),
        ("http://m.example:5000/a", "http://other:5000/b", False),
    ],
)
def test_which_redirects_keep_credentials(old: str, new: str, keeps: bool) -> None:
    assert _keeps_credentials(old, new) is keeps
