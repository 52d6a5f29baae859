"""Which prompt answered: a contextvar for logs, MLflow trace links, optional Prometheus counters.

Nothing here imports mlflow or prometheus_client at import time. MLflow tracing is touched only when
the application has already imported it; Prometheus only when `prometheus_client` is installed.
"""

from __future__ import annotations

import os
import sys
from contextvars import ContextVar

TYPE_CHECKING = False  # typing and logging are not imported at run time: the client must import fast
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable
    from typing import Any

    from promptalias.client._prompt import Prompt


def logger() -> logging.Logger:
    """The client's logger, imported on first use (warnings are rare; imports are not free)."""
    import logging

    return logging.getLogger("promptalias.client")


CURRENT_PROMPT: ContextVar[Prompt | None] = ContextVar("promptalias_current_prompt", default=None)

# Span attributes set on the active MLflow span (beside MLflow's own `mlflow.linkedPrompts`).
SPAN_NAME = "promptalias.name"
SPAN_ALIAS = "promptalias.alias"
SPAN_VERSION = "promptalias.version"
SPAN_ARM = "promptalias.arm"
SPAN_DIGEST = "promptalias.digest"


def current_prompt() -> Prompt | None:
    """The prompt most recently loaded in this context (thread / asyncio task)."""
    return CURRENT_PROMPT.get()


def annotate_record(record: logging.LogRecord) -> None:
    prompt = CURRENT_PROMPT.get()
    if prompt is None:
        record.prompt_name = record.prompt_alias = record.prompt_version = record.prompt_arm = None
    else:
        record.prompt_name = prompt.name
        record.prompt_alias = prompt.alias
        record.prompt_version = prompt.version
        record.prompt_arm = prompt.arm


def _make_log_filter() -> type[logging.Filter]:
    import logging

    class PromptLogFilter(logging.Filter):
        """Adds `prompt_name`, `prompt_alias`, `prompt_version`, `prompt_arm` to every record.

        The values come from the last `load_prompt` in the same thread or asyncio task (None before
        that). Attach it to a handler: `handler.addFilter(PromptLogFilter())`, then use
        `%(prompt_name)s` in a format string or let a JSON formatter pick the attributes up.
        """

        def filter(self, record: logging.LogRecord) -> bool:
            annotate_record(record)
            return True

    PromptLogFilter.__module__ = "promptalias.client"
    return PromptLogFilter


_LOG_FILTER: type[logging.Filter] | None = None


def log_filter_class() -> type[logging.Filter]:
    """`PromptLogFilter`, defined on first access so that importing the client skips `logging`."""
    global _LOG_FILTER  # noqa: PLW0603 -- a lazily created class, created once
    if _LOG_FILTER is None:
        _LOG_FILTER = _make_log_filter()
    return _LOG_FILTER


class _Tracer:
    """Links loaded prompts to the active MLflow trace, only when mlflow is already imported."""

    def __init__(self) -> None:
        self._versions: dict[tuple[str, int, str], Any] = {}
        self._failed = False
        # The (span, prompt) last recorded: repeated loads inside one span cost one check, not a relink.
        self._last: tuple[object, object] = (None, None)
        self._current_otel_span: Callable[[], Any] | None = None

    @staticmethod
    def _span_getter(provider: Any) -> Callable[[], Any]:
        # mlflow.tracing.provider.get_current_otel_span re-reads an environment variable on every
        # call (~2.5 µs); the setting is fixed for the process, so read it once.
        try:
            from mlflow.environment_variables import MLFLOW_USE_DEFAULT_TRACER_PROVIDER
            from opentelemetry import trace

            if MLFLOW_USE_DEFAULT_TRACER_PROVIDER.get():
                runtime = provider.mlflow_runtime_context
                get_span = trace.get_current_span
                return lambda: get_span(runtime.get_current())
            return trace.get_current_span
        except (ImportError, AttributeError):
            return provider.get_current_otel_span  # type: ignore[no-any-return]

    def __call__(self, prompt: Prompt) -> None:
        provider = sys.modules.get("mlflow.tracing.provider")
        if provider is None or self._failed:
            return
        try:
            # MLflow keeps its spans in its own OpenTelemetry context; this is the cheap question
            # (~0.3 µs) before mlflow.get_current_active_span (~1.5 µs) and the linking itself.
            current = self._current_otel_span
            if current is None:
                current = self._current_otel_span = self._span_getter(provider)
            otel_span = current()
            if otel_span is None or not otel_span.is_recording():
                return
            if self._last[0] is otel_span and self._last[1] is prompt:
                return
            fluent = sys.modules.get("mlflow.tracing.fluent")
            span = fluent.get_current_active_span() if fluent is not None else None
            if span is None:
                return
            from mlflow.tracing.constant import SpanAttributeKey
            from mlflow.tracing.trace_manager import InMemoryTraceManager
            from mlflow.tracing.utils.prompt import update_linked_prompts_tag

            version = self._mlflow_version(prompt)
            # The same two steps as mlflow.genai.load_prompt: link to the trace (prompt versions show
            # up in the trace's "linked prompts") and record on the span.
            InMemoryTraceManager.get_instance().register_prompt(trace_id=span.trace_id, prompt=version)
            linked = span.get_attribute(SpanAttributeKey.LINKED_PROMPTS)
            span.set_attribute(SpanAttributeKey.LINKED_PROMPTS, update_linked_prompts_tag(linked, [version]))
            span.set_attributes(
                {
                    SPAN_NAME: prompt.name,
                    SPAN_ALIAS: prompt.alias or "",
                    SPAN_VERSION: prompt.version,
                    SPAN_ARM: prompt.arm or "",
                    SPAN_DIGEST: prompt.digest,
                }
            )
            self._last = (otel_span, prompt)
        except Exception:  # noqa: BLE001 -- the app's request matters more than the trace
            self._failed = True
            logger().warning("promptalias: could not record the prompt in the MLflow trace", exc_info=True)

    def _mlflow_version(self, prompt: Prompt) -> Any:
        key = (prompt.name, prompt.version, prompt.digest)
        found = self._versions.get(key)
        if found is None:
            from mlflow.entities.model_registry import PromptVersion

            found = PromptVersion(
                name=prompt.name,
                version=prompt.version,
                template=prompt.template,
                response_format=prompt.response_format,
                model_config=prompt.model_config,
                aliases=[prompt.alias] if prompt.alias else [],
            )
            self._versions[key] = found
        return found


record_in_trace = _Tracer()


def prometheus_counter() -> Callable[[Prompt], None] | None:
    """`promptalias_client_prompt_loads_total{name,alias,version,arm}` when prometheus_client exists.

    Disabled with PROMPTALIAS_CLIENT_METRICS=0. Returns a cheap per-prompt incrementer or None.
    """
    if os.environ.get("PROMPTALIAS_CLIENT_METRICS", "1") == "0":
        return None
    counter = _prometheus_counter_object()
    if counter is None:
        return None
    children: dict[tuple[str, str | None, int, str | None], Any] = {}

    def count(prompt: Prompt) -> None:
        key = (prompt.name, prompt.alias, prompt.version, prompt.arm)
        child = children.get(key)
        if child is None:
            child = counter.labels(prompt.name, prompt.alias or "", str(prompt.version), prompt.arm or "")
            children[key] = child
        child.inc()

    return count


_COUNTER: Any = None


def _prometheus_counter_object() -> Any:
    global _COUNTER  # noqa: PLW0603 -- one registration per process (the default registry refuses twice)
    if _COUNTER is None:
        try:
            import prometheus_client  # type: ignore[import-not-found,unused-ignore]  # optional dependency
        except ImportError:
            return None
        _COUNTER = prometheus_client.Counter(
            "promptalias_client_prompt_loads",
            "Prompts served by promptalias.client.load_prompt, by resolved version and A/B arm.",
            ["name", "alias", "version", "arm"],
        )
    return _COUNTER


_REQUEST_METRICS: tuple[Any, Any] | None = None


def _request_metrics() -> tuple[Any, Any] | None:
    global _REQUEST_METRICS  # noqa: PLW0603 -- one registration per process
    if _REQUEST_METRICS is None:
        try:
            import prometheus_client  # type: ignore[import-not-found,unused-ignore]  # optional dependency
        except ImportError:
            return None
        labels = ["name", "alias", "version", "arm"]
        _REQUEST_METRICS = (
            prometheus_client.Histogram(
                "promptalias_client_request_duration_seconds",
                "Duration of the requests an app served with a prompt, by resolved version and A/B arm.",
                labels,
            ),
            prometheus_client.Counter(
                "promptalias_client_requests",
                "Requests an app served with a prompt, by resolved version, A/B arm and outcome.",
                [*labels, "outcome"],
            ),
        )
    return _REQUEST_METRICS


def observe(prompt: Prompt, seconds: float, outcome: str = "ok") -> None:
    """Record one request served with `prompt`, so experiment arms can be compared in Prometheus.

    `promptalias_client_request_duration_seconds{name,alias,version,arm}` (histogram) and
    `promptalias_client_requests_total{name,alias,version,arm,outcome}`. A no-op without
    prometheus_client or with PROMPTALIAS_CLIENT_METRICS=0.
    """
    if os.environ.get("PROMPTALIAS_CLIENT_METRICS", "1") == "0":
        return
    metrics = _request_metrics()
    if metrics is None:
        return
    histogram, counter = metrics
    values = (prompt.name, prompt.alias or "", str(prompt.version), prompt.arm or "")
    histogram.labels(*values).observe(seconds)
    counter.labels(*values, outcome).inc()
