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
