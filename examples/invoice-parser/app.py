"""A tiny invoice-parsing service that reads its prompt by alias through promptalias.client.

GET /parse?text=...  ->  {"version": 3, "prompt": "...rendered..."}

It never restarts to pick up a new prompt version: every request calls load_prompt(), which is a
dictionary lookup kept current by the sidecar's files (PROMPTALIAS_PROMPTS_DIR).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from promptalias.client import PromptLogFilter, load_prompt

URI = os.environ.get("PROMPT_URI", "prompts:/invoice-parser/production")

logging.basicConfig(
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(message)s "
    "prompt=%(prompt_name)s@%(prompt_alias)s v%(prompt_version)s",
)
log = logging.getLogger("invoice-app")
log.addFilter(PromptLogFilter())


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._send(200, {"ok": True})
            return
        text = parse_qs(url.query).get("text", ["ACME Corp, invoice 42, total 99.50 EUR"])[0]
        prompt = load_prompt(URI)
        body = {
            "name": prompt.name,
            "alias": prompt.alias,
            "version": prompt.version,
            "prompt": prompt.format(text=text),
        }
        log.info("parsed an invoice")
        self._send(200, body)

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
