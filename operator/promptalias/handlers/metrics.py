"""Prometheus metrics of the operator, served on --metrics-listen (text exposition format)."""

from __future__ import annotations

import logging
import os
from collections import Counter
from typing import Any

import kopf
from aiohttp import web

from promptalias.handlers.experiment_analysis import gauge_lines

log = logging.getLogger(__name__)

METRICS_LISTEN_ENV = "PROMPTALIAS_METRICS_LISTEN"


class Metrics:
    """Counters and a duration summary; label sets are small and bounded (results, reasons)."""

    def __init__(self) -> None:
        self.reconciles: Counter[tuple[str, str]] = Counter()  # (kind, result)
        self.alias_writes: Counter[str] = Counter()  # reason
        self.duration_sum = 0.0
        self.duration_count = 0
        self.up = 1

    def observe(self, kind: str, result: str, seconds: float) -> None:
        self.reconciles[(kind, result)] += 1
        self.duration_sum += seconds
        self.duration_count += 1

    def render(self) -> str:
        lines = [
            "# HELP promptalias_reconciles_total Reconcile passes by kind and result.",
            "# TYPE promptalias_reconciles_total counter",
        ]
        lines += [
            f'promptalias_reconciles_total{{kind="{kind}",result="{result}"}} {count}'
            for (kind, result), count in sorted(self.reconciles.items())
        ]
        lines += [
            "# HELP promptalias_alias_writes_total MLflow alias moves made by the operator, by reason.",
            "# TYPE promptalias_alias_writes_total counter",
        ]
        lines += [
            f'promptalias_alias_writes_total{{reason="{r}"}} {n}'
            for r, n in sorted(self.alias_writes.items())
        ]
        lines += [
            "# HELP promptalias_reconcile_duration_seconds Time spent in reconcile passes.",
            "# TYPE promptalias_reconcile_duration_seconds summary",
            f"promptalias_reconcile_duration_seconds_sum {self.duration_sum:.6f}",
            f"promptalias_reconcile_duration_seconds_count {self.duration_count}",
            "# HELP promptalias_up The operator process is running.",
            "# TYPE promptalias_up gauge",
            f"promptalias_up {self.up}",
        ]
        lines += gauge_lines()  # spec.analysis (handlers/experiment_analysis.py)
        return "\n".join(lines) + "\n"


METRICS = Metrics()


@kopf.on.startup()
async def serve_metrics(memo: kopf.Memo, **_: Any) -> None:
    listen = os.environ.get(METRICS_LISTEN_ENV)
    if not listen:
        return
    bind_host, _sep, port = listen.rpartition(":")

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=METRICS.render(), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, bind_host or "0.0.0.0", int(port)).start()  # noqa: S104 - the operator's own port
    memo.metrics_runner = runner
    log.info("metrics on http://%s/metrics", listen)


@kopf.on.cleanup()
async def stop_metrics(memo: kopf.Memo, **_: Any) -> None:
    runner = getattr(memo, "metrics_runner", None)
    if runner is not None:
        await runner.cleanup()
