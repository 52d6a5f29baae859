"""The client's fallbacks against a real MLflow server: REST reads, refresh, last-known-good in an outage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from promptalias.client import PromptNotFoundError, PromptStore
from promptalias.testbed import Testbed

pytestmark = pytest.mark.integration

CHAT = [
    {"role": "system", "content": "You extract {{fields}} from invoices."},
    {"role": "user", "content": "{{invoice}}"},
]


def _store(testbed: Testbed, tmp_path: Path, *, uri: str | None = None) -> PromptStore:
    return PromptStore(
        prompts_dir=str(tmp_path / "no-projection"),
        tracking_uri=uri or testbed.mlflow_uri,
        cache_dir=str(tmp_path / "cache"),
        watch=False,
        metrics=False,
        timeout=2.0,
    )


def test_mlflow_fallback_reads_like_mlflow(
    testbed: Testbed, mlflow_client: Any, prompt_name: str, tmp_path: Path
) -> None:
    import mlflow

    mlflow_client.register_prompt(name=prompt_name, template="Parse {{invoice}}", tags={"approved": "true"})
    mlflow_client.register_prompt(
        name=prompt_name,
        template=CHAT,
        response_format={"type": "object", "properties": {"total": {"type": "number"}}},
        model_config={"temperature": 0.2, "max_tokens": 300},
    )
    mlflow_client.set_prompt_alias(prompt_name, "production", 1)
    store = _store(testbed, tmp_path)

    prod = store.load(f"prompts:/{prompt_name}/production")
    assert prod is not None
    assert (prod.version, prod.source, prod.template) == (1, "mlflow", "Parse {{invoice}}")
    assert prod.tags == {"approved": "true"}

    v2 = store.load(f"prompts:/{prompt_name}/2")
    theirs = mlflow.genai.load_prompt(f"prompts:/{prompt_name}/2")
    assert v2 is not None
    assert v2.template == theirs.template
    assert v2.response_format == theirs.response_format
    assert v2.model_config == theirs.model_config
    values = {"fields": "totals", "invoice": "ACME, 3 EUR"}
    assert v2.format(**values) == theirs.format(**values)

    latest = store.load(f"prompts:/{prompt_name}@latest")
    assert latest is not None
    assert latest.version == 2

    # The alias moves in MLflow; the background refresh (run here by hand) follows.
    mlflow_client.set_prompt_alias(prompt_name, "production", 2)
    assert store.load(f"prompts:/{prompt_name}@production").version == 1
    store.refresh_fallbacks()
    assert store.load(f"prompts:/{prompt_name}@production").version == 2

    with pytest.raises(PromptNotFoundError) as info:
        store.load(f"prompts:/{prompt_name}@staging")
    reasons = dict(info.value.attempts)
    assert (
        "HTTP 400" in reasons[f"mlflow {testbed.mlflow_uri}"]
        or "HTTP 404" in reasons[f"mlflow {testbed.mlflow_uri}"]
    )
    print(json.dumps(info.value.attempts, indent=1))


def test_mlflow_outage_serves_last_known_good(
    testbed: Testbed, mlflow_client: Any, prompt_name: str, tmp_path: Path
) -> None:
    mlflow_client.register_prompt(name=prompt_name, template="v1 {{x}}")
    mlflow_client.set_prompt_alias(prompt_name, "production", 1)
    running = _store(testbed, tmp_path)
    assert running.load(f"prompts:/{prompt_name}@production").version == 1

    testbed.mlflow.stop()
    try:
        # The running app keeps serving from memory; a refresh failure changes nothing.
        running.refresh_fallbacks()
        assert running.load(f"prompts:/{prompt_name}@production").version == 1
        # A restarted app with MLflow down starts from the last-known-good copy on disk.
        restarted = _store(testbed, tmp_path)
        prompt = restarted.load(f"prompts:/{prompt_name}@production")
        assert prompt is not None
        assert (prompt.version, prompt.source) == (1, "cache")
        # Something never seen before cannot be served, and the error says which sources failed how.
        with pytest.raises(PromptNotFoundError, match="unreachable"):
            restarted.load(f"prompts:/{prompt_name}@staging")
    finally:
        testbed.mlflow.start()
    restarted.refresh_fallbacks()
    back = restarted.load(f"prompts:/{prompt_name}@production")
    assert back is not None
    assert back.source == "mlflow"
