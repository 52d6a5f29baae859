"""The operator's /metrics text carries the positive markers tests wait on (poll and sync counters)."""

from __future__ import annotations

from promptalias.api.promptalias import RegistryKind
from promptalias.handlers.metrics import Metrics, registry_label
from promptalias.reconcile.registry import RegistryKey


def test_registry_label_names_namespace_and_name() -> None:
    assert registry_label(RegistryKey(RegistryKind.PROMPT_REGISTRY, "team-a", "mlflow")) == "team-a/mlflow"
    assert registry_label(RegistryKey(RegistryKind.CLUSTER_PROMPT_REGISTRY, None, "shared")) == "shared"


def test_poll_and_sync_counters_are_rendered_per_registry() -> None:
    metrics = Metrics()
    metrics.registry_polls["team-a/mlflow"] += 2
    metrics.prompt_syncs["shared"] += 1
    text = metrics.render()
    assert 'promptalias_registry_polls_total{registry="team-a/mlflow"} 2' in text.splitlines()
    assert 'promptalias_prompt_syncs_total{registry="shared"} 1' in text.splitlines()
    assert "# TYPE promptalias_registry_polls_total counter" in text


def test_gc_pauses_are_rendered_by_generation() -> None:
    import gc

    from promptalias.handlers.gc_pauses import watch_pauses

    watch_pauses()
    gc.collect(2)
    lines = Metrics().render().splitlines()
    full = [line for line in lines if line.startswith('promptalias_gc_collections_total{generation="2"}')]
    assert full
    assert float(full[0].split()[-1]) >= 1
    assert any(line.startswith('promptalias_gc_pause_seconds_total{generation="2"}') for line in lines)
    assert any(line.startswith('promptalias_gc_pause_longest_seconds{generation="2"}') for line in lines)
