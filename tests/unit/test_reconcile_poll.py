"""When a drift resync searches the registry instead of reading each prompt (reconcile/poll.py)."""

from __future__ import annotations

import pytest

from promptalias.reconcile.poll import use_search


@pytest.mark.parametrize(
    ("in_use", "registry_prompts", "cost", "search"),
    [
        pytest.param(5, None, 100, False, id="a few prompts: one GET each"),
        pytest.param(99, 150, 100, False, id="just below one page's worth"),
        pytest.param(100, 150, 100, True, id="one page is worth it"),
        pytest.param(200, None, 100, True, id="registry size unknown: taken as one page"),
        pytest.param(2000, 2000, 100, True, id="the scale case: two pages instead of 2,000 GETs"),
        pytest.param(150, 5000, 100, False, id="a large registry, few in use: five pages cost more"),
        pytest.param(500, 5000, 100, True, id="a large registry, many in use"),
        pytest.param(1, 10, 1, True, id="cost 1: always search (tests)"),
    ],
)
def test_use_search(in_use: int, registry_prompts: int | None, cost: int, search: bool) -> None:
    assert use_search(in_use, registry_prompts, cost) is search
