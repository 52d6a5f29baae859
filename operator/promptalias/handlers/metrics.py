"""Prometheus metrics of the operator, served on --metrics-listen (text exposition format)."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import kopf
from aiohttp import web

from promptalias.handlers.experiment_analysis import write_gauges
from promptalias.handlers.gc_pauses import PAUSES
from promptalias.handlers.listen import listen_address
from promptalias.prometheus import TextWriter, by_label
from promptalias.reconcile.registry import RegistryKey

log = logging.getLogger(__name__)

METRICS_LISTEN_ENV = "PROMPTALIAS_METRICS_LISTEN"


class Metrics:
    """Counters and a duration summary; label sets are small and bounded (results, reasons)."""

    def __init__(self) -> None:
        self.reconciles: Counter[tuple[str, str]] = Counter()  # (kind, result)
        self.alias_writes: Counter[str] = Counter()  # reason
        # Positive markers for tests and dashboards: "the operator looked" (bounded by registries).
        self.registry_polls: Counter[str] = Counter()  # registry ("<ns>/<name>" or "<name>")
        self.prompt_syncs: Counter[str] = Counter()  # registry; MLflow prompt reads for PromptAliases
        self.registry_searches: Counter[str] = Counter()  # registry; drift polls made by searching
        # Pending moves stored on a guess beside the MLflow read (handlers/alias_reconciler.py), by
        # what the fresh read made of them: adopted, replaced (a second status write) or withdrawn.
        self.intent_guesses: Counter[str] = Counter()
        # The PromptAlias work queue (handlers/alias_queue.py): start-up progress and backlog.
        self.queue_depth = 0
        self.aliases_reconciled = 0
        self.aliases_known = 0
        self.duration_sum = 0.0
        self.duration_count = 0
        self.up = 1

    def observe(self, kind: str, result: str, seconds: float) -> None:
        self.reconciles[(kind, result)] += 1
        self.duration_sum += seconds
        self.duration_count += 1

    def render(self) -> str:
        out = TextWriter()
        out.metric(
            "promptalias_reconciles_total",
            "counter",
            "Reconcile passes by kind and result.",
            [({"kind": kind, "result": result}, n) for (kind, result), n in sorted(self.reconciles.items())],
        )
        out.metric(
            "promptalias_alias_writes_total",
            "counter",
            "MLflow alias moves made by the operator, by reason.",
            by_label("reason", self.alias_writes),
        )
        per_registry = (
            (
                "promptalias_registry_polls_total",
                "Completed drift polls (every prompt in use read once) per registry.",
                self.registry_polls,
            ),
            (
                "promptalias_prompt_syncs_total",
                "MLflow prompt reads (registered-models/get) made to reconcile PromptAliases, per registry.",
                self.prompt_syncs,
            ),
            (
                "promptalias_registry_searches_total",
                "Drift polls that read the prompts in use by searching the registry (reconcile/poll.py).",
                self.registry_searches,
            ),
        )
        for name, help_text, counts in per_registry:
            out.metric(name, "counter", help_text, by_label("registry", counts))
        out.metric(
            "promptalias_intent_guesses_total",
            "counter",
            "Pending moves stored while MLflow was read, by outcome (adopted, replaced, withdrawn).",
            by_label("outcome", self.intent_guesses),
        )
        out.metric(
            "promptalias_gc_collections_total",
            "counter",
            "Garbage collections of the operator process, by generation (2: full).",
            by_label("generation", {str(gen): n for gen, n in PAUSES.collections.items()}),
        )
        out.metric(
            "promptalias_gc_pause_seconds_total",
            "counter",
            "Time the event loop stood still in garbage collections, by generation.",
            by_label("generation", {str(gen): secs for gen, secs in PAUSES.pause_s.items()}),
        )
        out.metric(
            "promptalias_gc_pause_longest_seconds",
            "gauge",
            "The longest single garbage-collection pause since the process started, by generation.",
            by_label("generation", {str(gen): secs for gen, secs in PAUSES.longest_s.items()}),
        )
        out.metric("promptalias_reconcile_duration_seconds", "summary", "Time spent in reconcile passes.", [])
        out.sample("promptalias_reconcile_duration_seconds_sum", {}, self.duration_sum)
        out.sample("promptalias_reconcile_duration_seconds_count", {}, self.duration_count)
        gauges = (
            (
                "promptalias_queue_depth",
                "PromptAliases due for a reconcile pass now (the work queue's backlog).",
                self.queue_depth,
            ),
            (
                "promptalias_aliases_reconciled",
                "PromptAliases this process has reconciled at least once, of promptalias_aliases_known.",
                self.aliases_reconciled,
            ),
            ("promptalias_aliases_known", "PromptAliases this process serves.", self.aliases_known),
            ("promptalias_up", "The operator process is running.", self.up),
        )
        for name, help_text, value in gauges:
            out.single(name, "gauge", help_text, value)
        write_gauges(out)  # spec.analysis (handlers/experiment_analysis.py)
        return out.render()


METRICS = Metrics()


def registry_label(key: RegistryKey) -> str:
    """The `registry` label: "<namespace>/<name>" for a PromptRegistry, "<name>" for a cluster one."""
    return f"{key.namespace}/{key.name}" if key.namespace else key.name


@kopf.on.startup()
async def serve_metrics(memo: kopf.Memo, **_: Any) -> None:
    address = listen_address(METRICS_LISTEN_ENV)
    if address is not None:
        memo.metrics_runner = await _serve_metrics(*address)


async def _serve_metrics(host: str, port: int) -> web.AppRunner:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=METRICS.render(), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host or "0.0.0.0", port).start()  # noqa: S104 - the operator's own port
    log.info("metrics on http://%s:%d/metrics", host, port)
    return runner


@kopf.on.cleanup()
async def stop_metrics(memo: kopf.Memo, **_: Any) -> None:
    runner = getattr(memo, "metrics_runner", None)
    if runner is not None:
        await runner.cleanup()
