"""How a drift resync reads the prompts in use: one GET each, or pages of a search (pure).

`registered-models/get` returns one prompt with all its aliases and tags; `registered-models/search`
returns up to 1,000 prompts per request with the same fields. A page is larger and slower than one
GET (measured on MLflow 3.17 / sqlite: a page of 1,000 prompts, 2.5 MB, costs MLflow about as much
as 100 GETs), and it returns every prompt of the registry, used or not. So: search when the prompts in
use outnumber the GETs a search of the whole registry is worth; at 2,000 prompts in use that is two
requests per resync instead of 2,000.
"""

from __future__ import annotations

import math
import os
from typing import Final

SEARCH_PAGE: Final = 1000  # prompts per registered-models/search request (the server's cap)
PAGE_COST_ENV: Final = "PROMPTALIAS_POLL_SEARCH_PAGE_COST"
DEFAULT_PAGE_COST: Final = 100  # GETs one search page costs MLflow (see the module docstring)


def page_cost() -> int:
    """The page cost in GETs (PROMPTALIAS_POLL_SEARCH_PAGE_COST overrides the measured default)."""
    try:
        return max(1, int(os.environ.get(PAGE_COST_ENV, DEFAULT_PAGE_COST)))
    except ValueError:
        return DEFAULT_PAGE_COST


def use_search(in_use: int, registry_prompts: int | None, cost: int = DEFAULT_PAGE_COST) -> bool:
    """Read the `in_use` prompts by searching the whole registry (`registry_prompts` prompts, as the
    last search counted; None: not known yet, taken as one page) rather than one GET each?"""
    pages = max(1, math.ceil((registry_prompts or 0) / SEARCH_PAGE))
    return in_use >= cost * pages


__all__ = ["DEFAULT_PAGE_COST", "PAGE_COST_ENV", "SEARCH_PAGE", "page_cost", "use_search"]
