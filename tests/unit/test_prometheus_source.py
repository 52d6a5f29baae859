"""The pure parts of the Prometheus client: template placeholders and reading one number."""

from __future__ import annotations

from typing import Any

import pytest

from promptalias.sources.prometheus import PrometheusQueryError, _one_number, render


def test_render_replaces_every_placeholder_and_escapes_quotes() -> None:
    template = (
        'sum(increase(x{arm="{{arm}}",version="{{ version }}",p="{{prompt}}",a="{{alias}}"}[{{window}}]))'
    )
    values = {"arm": "candidate", "version": "4", "prompt": 'we"ird', "alias": "exp", "window": "90s"}
    assert render(template, values) == (
        'sum(increase(x{arm="candidate",version="4",p="we\\"ird",a="exp"}[90s]))'
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"resultType": "vector", "result": []}, None),
        ({"resultType": "vector", "result": [{"metric": {}, "value": [1.0, "42"]}]}, 42.0),
        ({"resultType": "scalar", "result": [1.0, "0.25"]}, 0.25),
        ({"resultType": "vector", "result": [{"metric": {}, "value": [1.0, "NaN"]}]}, None),
    ],
)
def test_one_number(data: dict[str, Any], expected: float | None) -> None:
    assert _one_number(data, "q") == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"resultType": "vector", "result": [{"value": [1, "1"]}, {"value": [1, "2"]}]}, "returned 2 series"),
        ({"resultType": "matrix", "result": []}, "returned a matrix"),
        ({"resultType": "scalar", "result": [1.0, "abc"]}, "not a number"),
        (None, "no data object"),
    ],
)
def test_one_number_refuses_what_is_not_one_number(data: Any, message: str) -> None:
    with pytest.raises(PrometheusQueryError, match=message):
        _one_number(data, "q")
