"""Webhook routes (reconcile/webhook_route.py): the URL registered for a registry is one the receiver
routes back to that registry; the listen setting."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest

from promptalias.api.promptalias import RegistryKind
from promptalias.reconcile.registry import RegistryKey
from promptalias.reconcile.webhook_route import PATH_PREFIX, route_key, split_listen, webhook_url

OWN = RegistryKey(RegistryKind.PROMPT_REGISTRY, "billing", "mlflow")
SHARED = RegistryKey(RegistryKind.CLUSTER_PROMPT_REGISTRY, None, "shared")
BASE = "https://hooks.example/mlflow/webhook/"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (OWN, "https://hooks.example/mlflow/webhook/billing/mlflow"),
        (SHARED, "https://hooks.example/mlflow/webhook/_cluster/shared"),
        (
            RegistryKey(RegistryKind.PROMPT_REGISTRY, "billing", "a/b"),
            "https://hooks.example/mlflow/webhook/billing/a%2Fb",
        ),
    ],
    ids=str,
)
def test_webhook_urls(key: RegistryKey, expected: str) -> None:
    assert webhook_url(BASE, key) == expected


@pytest.mark.parametrize("key", [OWN, SHARED], ids=str)
def test_the_registered_url_routes_back_to_its_registry(key: RegistryKey) -> None:
    path = urlsplit(webhook_url(BASE, key)).path
    assert path.startswith(PATH_PREFIX + "/")
    scope, name = (unquote(part) for part in path.removeprefix(PATH_PREFIX + "/").split("/"))
    assert route_key(scope, name) == key


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1:8719", ("127.0.0.1", 8719)), ("[::1]:8719", ("::1", 8719)), ("0.0.0.0:0", ("0.0.0.0", 0))],
)
def test_split_listen(value: str, expected: tuple[str, int]) -> None:
    assert split_listen(value, "PROMPTALIAS_WEBHOOK_LISTEN") == expected


@pytest.mark.parametrize("value", ["8719", ":8719", "localhost:", "localhost:http"])
def test_split_listen_says_how_to_write_it(value: str) -> None:
    with pytest.raises(ValueError, match=r"PROMPTALIAS_WEBHOOK_LISTEN=.*write it as HOST:PORT"):
        split_listen(value, "PROMPTALIAS_WEBHOOK_LISTEN")
