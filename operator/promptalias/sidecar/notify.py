"""Tell the app that prompts changed: an HTTP POST or a signal, debounced so a burst is one reload."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from dataclasses import dataclass

import aiohttp

logger = logging.getLogger("promptalias.sidecar")


@dataclass(frozen=True)
class SignalTarget:
    pid: int
    signum: int


def parse_signal_target(text: str) -> SignalTarget:
    """`PID:SIG`, SIG a number or a name with or without the SIG prefix (`1:HUP`, `42:SIGUSR1`, `7:10`)."""
    pid_text, sep, sig_text = text.partition(":")
    if not sep or not pid_text.strip().isdigit() or not sig_text.strip():
        raise ValueError(f"--notify-signal wants PID:SIGNAL (e.g. 1:HUP), not {text!r}")
    sig_text = sig_text.strip().upper()
    if sig_text.isdigit():
        signum = int(sig_text)
    else:
        name = sig_text if sig_text.startswith("SIG") else "SIG" + sig_text
        try:
            signum = int(signal.Signals[name])
        except KeyError:
            raise ValueError(f"unknown signal {sig_text!r} in --notify-signal") from None
    return SignalTarget(int(pid_text), signum)


class Notifier:
    """Collects changed keys; fires once the changes have been quiet for `debounce` seconds (but at
    most `max_delay` after the first one, so a steady stream of changes still notifies)."""

    def __init__(
        self,
        *,
        url: str | None = None,
        target: SignalTarget | None = None,
        debounce: float = 0.25,
        max_delay: float = 2.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = url
        self.target = target
        self.debounce = debounce
        self.max_delay = max(max_delay, debounce)
        self.session = session
        self.sent = 0
        self.failed = 0
        self._pending: set[str] = set()
        self._event = asyncio.Event()

    def changed(self, keys: set[str]) -> None:
        if keys:
            self._pending |= keys
            self._event.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._event.wait()
            first = loop.time()
            while True:
                self._event.clear()
                remaining = min(self.debounce, self.max_delay - (loop.time() - first))
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._event.wait(), timeout=remaining)
                except TimeoutError:
                    break
            self._event.clear()
            keys, self._pending = self._pending, set()
            if keys:
                await self.fire(sorted(keys))

    async def fire(self, keys: list[str]) -> None:
        try:
            if self.url is not None:
                assert self.session is not None
                body = json.dumps({"changed": keys}).encode()
                async with self.session.post(
                    self.url,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as resp:
                    if resp.status >= 400:
                        raise OSError(f"{self.url} answered HTTP {resp.status}")
            if self.target is not None:
                os.kill(self.target.pid, self.target.signum)
            self.sent += 1
            logger.info("notified the app of %d changed prompt file(s)", len(keys))
        except (OSError, aiohttp.ClientError, TimeoutError) as exc:
            self.failed += 1
            logger.warning("could not notify the app (%s): %s", self.url or self.target, exc)
