"""MLflow webhook signatures, deliveries and registration plans (pure; no server)."""

from __future__ import annotations

import json
import uuid

import pytest

from promptalias.registry.webhooks import (
    DELIVERY_ID_HEADER,
    PROMPT_ALIAS_EVENTS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AliasEvent,
    DeliveryRejected,
    MlflowWebhook,
    ReplayGuard,
    desired_webhook,
    parse_delivery,
    parse_webhook,
    plan_webhook,
    sign,
    verify_delivery,
    webhook_fingerprint,
    webhook_name,
)

SECRET = "s3cret-with-ünïcode"
NOW = 1_800_000_000.0


def mlflow_signed(
    secret: str, payload: dict[str, object], *, timestamp: float = NOW
) -> tuple[dict[str, str], bytes]:
    """Headers and body exactly as mlflow/webhooks/delivery.py builds them (its own function)."""
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body = json.dumps(payload)
    delivery_id = str(uuid.uuid4())
    stamp = str(int(timestamp))
    headers = {
        "Content-Type": "application/json",
        DELIVERY_ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: _generate_hmac_signature(secret, delivery_id, stamp, body),
    }
    return headers, body.encode("utf-8")


def created(name: str = "invoice-parser", alias: str = "production", version: str = "3") -> dict[str, object]:
    return {
        "entity": "prompt_alias",
        "action": "created",
        "timestamp": "2027-01-15T08:00:00+00:00",
        "data": {"name": name, "alias": alias, "version": version},
    }


def test_our_signature_is_mlflows() -> None:
    headers, body = mlflow_signed(SECRET, created())
    ours = sign(SECRET, headers[DELIVERY_ID_HEADER], headers[TIMESTAMP_HEADER], body)
    assert ours == headers[SIGNATURE_HEADER]
    assert ours.startswith("v1,")


def test_a_genuine_delivery_is_accepted_once() -> None:
    guard = ReplayGuard()
    headers, body = mlflow_signed(SECRET, created())
    assert verify_delivery(SECRET, headers, body, now=NOW + 3, guard=guard) == headers[DELIVERY_ID_HEADER]
    with pytest.raises(DeliveryRejected) as replay:
        verify_delivery(SECRET, headers, body, now=NOW + 4, guard=guard)
    assert (replay.value.status, replay.value.reason) == (400, "Replayed")
    # Header names are case-insensitive on the wire.
    headers2, body2 = mlflow_signed(SECRET, created(version="4"))
    lower = {k.lower(): v for k, v in headers2.items()}
    assert verify_delivery(SECRET, lower, body2, now=NOW) == headers2[DELIVERY_ID_HEADER]


@pytest.mark.parametrize(
    ("mutate", "status", "reason"),
    [
        (lambda h, b: ({k: v for k, v in h.items() if k != SIGNATURE_HEADER}, b), 401, "Unsigned"),
        (lambda h, b: ({**h, SIGNATURE_HEADER: ""}, b), 401, "Unsigned"),
        (lambda h, b: (h, b.replace(b'"3"', b'"4"')), 401, "BadSignature"),
        (lambda h, b: ({**h, SIGNATURE_HEADER: "v1,AAAA"}, b), 401, "BadSignature"),
        (lambda h, b: ({**h, SIGNATURE_HEADER: "v2," + h[SIGNATURE_HEADER][3:]}, b), 401, "BadSignature"),
        (lambda h, b: ({**h, DELIVERY_ID_HEADER: "other"}, b), 401, "BadSignature"),
        (lambda h, b: ({**h, TIMESTAMP_HEADER: str(int(NOW) + 1)}, b), 401, "BadSignature"),
        (lambda h, b: ({k: v for k, v in h.items() if k != TIMESTAMP_HEADER}, b), 400, "Malformed"),
        (lambda h, b: ({k: v for k, v in h.items() if k != DELIVERY_ID_HEADER}, b), 400, "Malformed"),
    ],
)
def test_forged_and_malformed_deliveries_are_rejected(mutate: object, status: int, reason: str) -> None:
    headers, body = mlflow_signed(SECRET, created())
    headers, body = mutate(headers, body)  # type: ignore[operator]
    with pytest.raises(DeliveryRejected) as rejected:
        verify_delivery(SECRET, headers, body, now=NOW)
    assert (rejected.value.status, rejected.value.reason) == (status, reason)


def test_another_secret_is_a_forgery() -> None:
    headers, body = mlflow_signed("not-the-secret", created())
    with pytest.raises(DeliveryRejected) as rejected:
        verify_delivery(SECRET, headers, body, now=NOW)
    assert rejected.value.status == 401


def test_rotation_accepts_any_listed_signature() -> None:
    headers, body = mlflow_signed(SECRET, created())
    headers[SIGNATURE_HEADER] = "v1,bm9wZQ== " + headers[SIGNATURE_HEADER]
    verify_delivery(SECRET, headers, body, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301, 10_000])
def test_old_or_future_timestamps_are_replays(skew: int) -> None:
    headers, body = mlflow_signed(SECRET, created(), timestamp=NOW - skew)
    guard = ReplayGuard()
    with pytest.raises(DeliveryRejected) as rejected:
        verify_delivery(SECRET, headers, body, now=NOW, guard=guard)
    assert (rejected.value.status, rejected.value.reason) == (400, "StaleTimestamp")
    assert len(guard) == 0  # nothing remembered from a refused delivery
    verify_delivery(SECRET, *mlflow_signed(SECRET, created(), timestamp=NOW - 299), now=NOW)


def test_replay_guard_forgets_after_the_window_and_is_bounded() -> None:
    guard = ReplayGuard(tolerance_s=10, limit=3)
    guard.remember("a", 0)
    assert guard.seen("a", 19)
    assert not guard.seen("a", 21)
    for name in "bcde":
        guard.remember(name, 100)
    assert len(guard) == 3
    assert not guard.seen("b", 100)


def test_parse_delivery() -> None:
    body = json.dumps(created()).encode()
    assert parse_delivery(body) == AliasEvent("created", "invoice-parser", "production", 3)
    deleted = {
        "entity": "prompt_alias",
        "action": "deleted",
        "data": {"name": "p", "alias": "a"},
        "workspace": "w",
    }
    assert parse_delivery(json.dumps(deleted).encode()) == AliasEvent("deleted", "p", "a", None, "w")
    other = {"entity": "model_version", "action": "created", "data": {"name": "m", "version": "1"}}
    assert parse_delivery(json.dumps(other).encode()) is None
    for bad in (b"not json", b"[]", b'{"entity": "prompt_alias", "action": "created"}'):
        with pytest.raises(DeliveryRejected):
            parse_delivery(bad)
    with pytest.raises(DeliveryRejected):
        parse_delivery(
            json.dumps({**created(), "data": {"name": "p", "alias": "a", "version": "x"}}).encode()
        )


# ---- registration -----------------------------------------------------------------------------------


def hook(
    webhook_id: str, name: str, url: str, fingerprint: str | None, status: str = "ACTIVE"
) -> MlflowWebhook:
    description = f"managed fingerprint={fingerprint}" if fingerprint else "hand-made"
    return MlflowWebhook(webhook_id, name, url, PROMPT_ALIAS_EVENTS, status, description)


def test_names_and_fingerprints() -> None:
    name = webhook_name("cluster-uid", "PromptRegistry ns/mlflow")
    assert name.startswith("promptalias-")
    assert len(name) <= 63
    assert name == webhook_name("cluster-uid", "PromptRegistry ns/mlflow")
    assert name != webhook_name("other-cluster", "PromptRegistry ns/mlflow")
    fp = webhook_fingerprint("secret", "http://x/y", PROMPT_ALIAS_EVENTS)
    assert len(fp) == 16
    assert fp != webhook_fingerprint("secret2", "http://x/y", PROMPT_ALIAS_EVENTS)
    assert fp != webhook_fingerprint("secret", "http://x/z", PROMPT_ALIAS_EVENTS)
    assert "secret" not in fp
    desired = desired_webhook(
        cluster="c", registry="PromptRegistry ns/mlflow", url="http://x/y", secret="secret"
    )
    assert desired.description.endswith(f"fingerprint={fp}")
    assert hook("1", desired.name, desired.url, fp).fingerprint == fp


def test_plans() -> None:
    desired = desired_webhook(cluster="c", registry="r", url="http://x/y", secret="s")
    name, fp = desired.name, desired.fingerprint
    assert plan_webhook([], name, desired).create
    assert plan_webhook([hook("1", "someone-else", "http://x/y", None)], name, desired).create
    assert plan_webhook([hook("1", name, desired.url, fp)], name, desired).noop
    assert plan_webhook([hook("1", name, "http://old/y", fp)], name, desired).update == "1"
    assert plan_webhook([hook("1", name, desired.url, "0" * 16)], name, desired).update == "1"  # new secret
    assert plan_webhook([hook("1", name, desired.url, fp, "DISABLED")], name, desired).update == "1"
    dupes = plan_webhook([hook("2", name, desired.url, fp), hook("1", name, desired.url, fp)], name, desired)
    assert (dupes.update, dupes.delete) == (None, ("2",))
    gone = plan_webhook([hook("1", name, desired.url, fp), hook("9", "other", "u", None)], name, None)
    assert gone.delete == ("1",)
    assert plan_webhook([], name, None).noop


def test_parse_webhook() -> None:
    parsed = parse_webhook(
        {
            "webhook_id": "abc",
            "name": "promptalias-x",
            "url": "http://x",
            "events": [{"entity": "PROMPT_ALIAS", "action": "CREATED"}],
            "status": "ACTIVE",
            "creation_timestamp": 1,
        }
    )
    assert parsed == MlflowWebhook(
        "abc", "promptalias-x", "http://x", (("PROMPT_ALIAS", "CREATED"),), "ACTIVE"
    )
    from promptalias.registry import RegistryProtocolError

    with pytest.raises(RegistryProtocolError):
        parse_webhook({"name": "no id"})
