"""The HOST:PORT settings of the operator's own servers (metrics, the admission webhook)."""

from __future__ import annotations

import os


def listen_address(env: str) -> tuple[str, int] | None:
    """$`env` as (host, port), None when it is unset or empty.

    The host is "" for ":PORT": each server picks its own default bind address.
    """
    listen = os.environ.get(env)
    if not listen:
        return None
    host, _sep, port = listen.rpartition(":")
    return host, int(port)
