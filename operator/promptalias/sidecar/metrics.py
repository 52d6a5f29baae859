"""The sidecar's Prometheus metrics (`promptalias_sidecar_*`), written with the shared text writer."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from promptalias.prometheus import TextWriter
from promptalias.sidecar.notify import Notifier
from promptalias.sidecar.watch import WatchStatus


@dataclass(frozen=True)
class SidecarFigures:
    """Everything the metrics report, gathered by the sidecar at scrape time."""

    statuses: Sequence[WatchStatus]
    writes: int
    write_errors: int
    invalid_documents: int
    untrusted_configmaps: int
    prompts: int
    ready: bool
    healthy: bool
    long_polls: int
    notifier: Notifier | None
    http_requests: dict[tuple[str, int], int]


def render(f: SidecarFigures) -> str:
    now = time.monotonic()
    out = TextWriter()
    out.metric(
        "promptalias_sidecar_watch_events_total",
        "counter",
        "Watch events received from the apiserver (or directory scans in file mode).",
        [({"source": s.name, "type": t}, n) for s in f.statuses for t, n in sorted(s.events.items())],
    )
    out.metric(
        "promptalias_sidecar_watch_restarts_total",
        "counter",
        "Watch restarts by reason: closed (server timeout, normal), gone (410, relist), error.",
        [({"source": s.name, "reason": r}, n) for s in f.statuses for r, n in sorted(s.restarts.items())],
    )
    out.metric(
        "promptalias_sidecar_relists_total",
        "counter",
        "Full listings (start, 410 Gone).",
        [({"source": s.name}, s.relists) for s in f.statuses],
    )
    out.metric(
        "promptalias_sidecar_last_sync_age_seconds",
        "gauge",
        "Seconds since the last contact with the apiserver (or the directory); -1 before the first.",
        [
            ({"source": s.name}, -1 if s.last_contact is None else round(now - s.last_contact, 3))
            for s in f.statuses
        ],
    )
    unlabelled = (
        ("promptalias_sidecar_writes_total", "counter", "Atomic updates of the directory.", f.writes),
        ("promptalias_sidecar_write_errors_total", "counter", "Failed directory updates.", f.write_errors),
        (
            "promptalias_sidecar_invalid_documents_total",
            "counter",
            "Projection documents refused as invalid (the previous good one is kept).",
            f.invalid_documents,
        ),
        (
            "promptalias_sidecar_untrusted_configmaps",
            "gauge",
            "Labelled ConfigMaps ignored because the operator did not write them (no PromptAlias owner).",
            f.untrusted_configmaps,
        ),
        ("promptalias_sidecar_prompts", "gauge", "Prompt files served.", f.prompts),
        ("promptalias_sidecar_ready", "gauge", "1 after the first full sync.", int(f.ready)),
        ("promptalias_sidecar_healthy", "gauge", "1 while /healthz passes.", int(f.healthy)),
        ("promptalias_sidecar_long_polls", "gauge", "Requests waiting for a change.", f.long_polls),
    )
    for name, kind, help_text, value in unlabelled:
        out.single(name, kind, help_text, value)
    if f.notifier is not None:
        out.metric(
            "promptalias_sidecar_notifications_total",
            "counter",
            "App notifications by result.",
            [({"result": "sent"}, f.notifier.sent), ({"result": "failed"}, f.notifier.failed)],
        )
    out.metric(
        "promptalias_sidecar_http_requests_total",
        "counter",
        "HTTP requests by endpoint and status.",
        [({"endpoint": e, "code": str(c)}, n) for (e, c), n in sorted(f.http_requests.items())],
    )
    return out.render()
