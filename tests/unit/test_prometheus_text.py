"""One Prometheus text writer for the operator and the sidecar."""

from __future__ import annotations

from promptalias.handlers.metrics import Metrics
from promptalias.prometheus import TextWriter, number


def test_families_samples_and_escaping() -> None:
    out = TextWriter()
    out.metric("x_total", "counter", "Things.", [({"b": "2", "a": 'q"uo\\te\nnl'}, 3)])
    assert out.render() == (
        '# HELP x_total Things.\n# TYPE x_total counter\nx_total{a="q\\"uo\\\\te\\nnl",b="2"} 3\n'
    )


def test_numbers() -> None:
    assert (number(3), number(3.0), number(0.25), number(-1), number(1234567.0)) == (
        "3",
        "3",
        "0.25",
        "-1",
        "1234567",
    )


def test_the_operator_metrics_use_it() -> None:
    metrics = Metrics()
    metrics.observe("PromptAlias", "done", 0.5)
    metrics.alias_writes["Applied"] += 2
    text = metrics.render()
    assert 'promptalias_reconciles_total{kind="PromptAlias",result="done"} 1' in text
    assert 'promptalias_alias_writes_total{reason="Applied"} 2' in text
    assert "promptalias_reconcile_duration_seconds_sum 0.5" in text
    assert "promptalias_reconcile_duration_seconds_count 1" in text
    assert "\npromptalias_up 1\n" in text
    assert text.endswith("\n")  # the experiment-analysis gauges may follow promptalias_up
