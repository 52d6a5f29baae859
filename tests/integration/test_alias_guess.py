"""The pending move stored on a guess while MLflow is read (`AliasPass._guess_intent`).

A spec change of a PromptAlias whose prompt the operator has read before stores the move that read
predicts (status.pendingMove) at the same time as MLflow is read again, so the alias write can follow
the fresh read at once. These tests make the operator's last read wrong on purpose (the registry polls
once an hour; MLflow is changed behind the operator's back) and check that status, history and MLflow
follow MLflow's fresh answer, never the guess; `promptalias_intent_guesses_total` shows which way each
guess went, so a test cannot pass without the guess having been made. (`mlflow_client` also points
`mlflow.genai.register_prompt` at the testbed's MLflow.)

Each test has an operator of its own that serves only its namespace: the session operator polls
every prompt in use on an MLflow endpoint whenever any registry on it is due, and other tests'
registries (every 2 s) on the same MLflow would show it the move made behind its back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.test_alias_operator import mlflow_aliases, pa_yaml, register, status, wait_ready, wait_reason
from kit import OperatorProcess, apply_yaml, metric_total, ready_registry
from promptalias.testbed import Testbed

pytestmark = [pytest.mark.integration, pytest.mark.without_operator]


@pytest.fixture
def own_operator(testbed: Testbed, crds: Path, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """An operator for the test's namespace alone (the session operator leaves it alone)."""
    operator = OperatorProcess(testbed, tmp_path / "operator.log", "--namespace", namespace, "--standalone")
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


def parser_ready_at_1(testbed: Testbed, namespace: str, prompt: str, versions: int) -> None:
    """`versions` versions of `prompt`, a registry whose drift poll comes once an hour (MLflow
    changes stay unseen meanwhile), and PromptAlias `parser` Ready at version 1: the operator's last
    read of the prompt says `production` is at 1."""
    ready_registry(testbed, namespace, refresh_interval="1h")
    register(prompt, versions)
    apply_yaml(testbed, pa_yaml(namespace, "parser", prompt, "production", 1))
    wait_ready(testbed, namespace, "parser", 1)


def guesses(operator: OperatorProcess, outcome: str) -> float:
    return metric_total(operator.metrics(), "promptalias_intent_guesses_total", outcome=outcome)


def set_version(testbed: Testbed, namespace: str, name: str, version: int) -> None:
    patch = f'{{"spec":{{"version":{version}}}}}'
    testbed.kubectl("patch", "promptalias", name, "-n", namespace, "--type=merge", "-p", patch)


def history(st: dict[str, Any]) -> list[tuple[str, int | None, int | None]]:
    return [(h["reason"], h.get("previousVersion"), h.get("version")) for h in st.get("history", [])]


def test_a_spec_change_adopts_the_guessed_move(
    testbed: Testbed, namespace: str, prompt_name: str, own_operator: OperatorProcess, mlflow_client: Any
) -> None:
    parser_ready_at_1(testbed, namespace, prompt_name, 2)
    adopted = guesses(own_operator, "adopted")

    set_version(testbed, namespace, "parser", 2)
    st = wait_ready(testbed, namespace, "parser", 2)

    assert mlflow_aliases(testbed.mlflow_uri, prompt_name)["production"] == 2
    assert history(st)[-1] == ("Applied", 1, 2)
    assert "pendingMove" not in st
    assert guesses(own_operator, "adopted") == adopted + 1


def test_a_guess_from_a_stale_read_is_replaced_by_what_mlflow_says(
    testbed: Testbed, namespace: str, prompt_name: str, own_operator: OperatorProcess, mlflow_client: Any
) -> None:
    """The operator last saw the alias at 1; someone moved it to 2 in MLflow; the spec asks for 3.
    The guess says "1 → 3"; MLflow's answer makes it "observed 1 → 2, then applied 2 → 3"."""
    parser_ready_at_1(testbed, namespace, prompt_name, 3)
    replaced = guesses(own_operator, "replaced")

    mlflow_client.set_prompt_alias(prompt_name, "production", 2)  # unseen: the next poll is an hour away
    set_version(testbed, namespace, "parser", 3)
    st = wait_ready(testbed, namespace, "parser", 3)

    assert mlflow_aliases(testbed.mlflow_uri, prompt_name)["production"] == 3
    assert history(st)[-2:] == [("Observed", 1, 2), ("Applied", 2, 3)]
    assert st["previousVersion"] == 2
    assert "pendingMove" not in st
    assert guesses(own_operator, "replaced") == replaced + 1


def test_a_guessed_move_that_is_never_written_is_withdrawn(
    testbed: Testbed, namespace: str, prompt_name: str, own_operator: OperatorProcess, mlflow_client: Any
) -> None:
    """spec.version names a version MLflow lacks: the pass stalls before writing, and the pending
    move stored on the guess must not stay in status (a later pass would take it for our move)."""
    parser_ready_at_1(testbed, namespace, prompt_name, 2)
    withdrawn = guesses(own_operator, "withdrawn")

    set_version(testbed, namespace, "parser", 99)
    st = wait_reason(testbed, namespace, "parser", "VersionNotFound")

    assert "pendingMove" not in st
    assert st["resolvedVersion"] == 1
    assert mlflow_aliases(testbed.mlflow_uri, prompt_name)["production"] == 1
    assert guesses(own_operator, "withdrawn") == withdrawn + 1
    assert "pendingMove" not in status(testbed, namespace, "parser")
