"""MLflow webhooks: the REST calls that register them, and the verification of their deliveries.

Registration (MLflow >= 3.5, SQL backend): `POST/GET /api/2.0/mlflow/webhooks`,
`PATCH/DELETE /api/2.0/mlflow/webhooks/{id}`, `POST .../{id}/test`. MLflow never returns a
webhook's secret, so a fingerprint (an HMAC of the URL and events keyed with the secret, which
reveals nothing about it) is kept in the description: a changed secret or URL shows as a changed
fingerprint, and only then is the webhook updated.

Deliveries (mlflow/webhooks/delivery.py, "Standard Webhooks"-like): a JSON body
`{"entity": "prompt_alias", "action": "created"|"deleted", "timestamp": ..., "data": {"name",
"alias", "version"?}}` with headers

    X-MLflow-Delivery-Id: <uuid4>
    X-MLflow-Timestamp:   <unix seconds>
    X-MLflow-Signature:   v1,<base64 HMAC-SHA256(secret, f"{delivery_id}.{timestamp}.{body}")>

`verify_delivery` accepts a delivery only with a valid signature (401 otherwise), a timestamp
within the tolerance, and a delivery id not seen before (400 otherwise).

Over 400 lines on purpose: registration and delivery verification share the fingerprint, the
event names and the payload schema, which must not drift apart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from promptalias.registry.client import API, MlflowRegistry
from promptalias.registry.errors import RegistryProtocolError, RegistryRejected

SIGNATURE_HEADER: Final = "X-MLflow-Signature"
TIMESTAMP_HEADER: Final = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER: Final = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION: Final = "v1"
DEFAULT_TOLERANCE_S: Final = 300  # as Standard Webhooks: older (or future) deliveries are replays
MAX_REMEMBERED_DELIVERIES: Final = 100_000
MAX_DELIVERY_ID_LENGTH: Final = 128

PROMPT_ALIAS_ENTITY: Final = "prompt_alias"
ALIAS_CREATED: Final = "created"
ALIAS_DELETED: Final = "deleted"
# The events the operator subscribes to, as MLflow's REST API spells them (enum names).
PROMPT_ALIAS_EVENTS: Final = (("PROMPT_ALIAS", "CREATED"), ("PROMPT_ALIAS", "DELETED"))
NAME_PREFIX: Final = "promptalias-"
FINGERPRINT_MARK: Final = "fingerprint="
_PAGE: Final = 100


# ---- signatures and deliveries ----------------------------------------------------------------------


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The signature header MLflow sends: `v1,<base64 HMAC-SHA256>` over `{id}.{timestamp}.{body}`."""
    signed = delivery_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


class DeliveryRejected(Exception):  # noqa: N818 - reads as what happened to the delivery
    """A delivery the receiver refuses; `status` is the HTTP answer (401 or 400)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class ReplayGuard:
    """Delivery ids seen within the tolerance window (bounded; oldest forgotten first)."""

    def __init__(
        self, tolerance_s: float = DEFAULT_TOLERANCE_S, limit: int = MAX_REMEMBERED_DELIVERIES
    ) -> None:
        self.tolerance_s = tolerance_s
        self.limit = limit
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, delivery_id: str, now: float) -> bool:
        self._prune(now)
        return delivery_id in self._seen

    def remember(self, delivery_id: str, now: float) -> None:
        # Kept twice the window: a delivery is only accepted within ±tolerance of its timestamp.
        self._seen[delivery_id] = now + 2 * self.tolerance_s
        self._seen.move_to_end(delivery_id)
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)

    def _prune(self, now: float) -> None:
        while self._seen:
            oldest, expires = next(iter(self._seen.items()))
            if expires > now:
                break
            del self._seen[oldest]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    if value is not None:
        try:
            value.encode("utf-8")  # HTTP servers decode raw header bytes with surrogateescape
        except UnicodeEncodeError:
            raise DeliveryRejected(400, "Malformed", f"the {name} header is not UTF-8") from None
    return value


def verify_delivery(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    guard: ReplayGuard | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> str:
    """Check a delivery exactly as MLflow signs it; the delivery id when it is genuine and new.

    Raises DeliveryRejected: 401 when unsigned or the signature does not match (forged, or signed
    with another secret); 400 when the id or timestamp is missing or malformed, the timestamp is
    outside ±`tolerance_s`, or the id was already accepted (a replay). The id is remembered only
    here, after every check passed, so MLflow's own retries of a failed delivery are not refused.
    """
    now = time.time() if now is None else now
    signature = _header(headers, SIGNATURE_HEADER)
    if not signature:
        raise DeliveryRejected(401, "Unsigned", f"no {SIGNATURE_HEADER} header: the delivery is not signed")
    delivery_id = _header(headers, DELIVERY_ID_HEADER)
    timestamp = _header(headers, TIMESTAMP_HEADER)
    if not delivery_id or not timestamp:
        raise DeliveryRejected(
            400, "Malformed", f"{DELIVERY_ID_HEADER} and {TIMESTAMP_HEADER} are required with a signature"
        )
    if len(delivery_id) > MAX_DELIVERY_ID_LENGTH:
        raise DeliveryRejected(400, "Malformed", f"{DELIVERY_ID_HEADER} is too long")
    expected = sign(secret, delivery_id, timestamp, body).split(",", 1)[1].encode()
    # Several space-separated signatures may be sent while a secret is rotated (Standard Webhooks).
    offered = [item.split(",", 1) for item in signature.split() if "," in item]
    if not any(
        version == SIGNATURE_VERSION and hmac.compare_digest(value.encode(), expected)
        for version, value in offered
    ):
        raise DeliveryRejected(
            401, "BadSignature", "the signature does not match: forged, or signed with another secret"
        )
    try:
        sent = int(timestamp)
    except ValueError:
        raise DeliveryRejected(
            400, "Malformed", f"{TIMESTAMP_HEADER} is not a unix time: {timestamp[:40]!r}"
        ) from None
    if abs(now - sent) > tolerance_s:
        raise DeliveryRejected(
            400,
            "StaleTimestamp",
            f"the delivery was signed {now - sent:.0f}s from now, outside ±{tolerance_s:.0f}s: a replay, "
            "or a clock far off (check NTP on the MLflow server)",
        )
    if guard is not None:
        if guard.seen(delivery_id, now):
            raise DeliveryRejected(400, "Replayed", f"delivery {delivery_id} was already received")
        guard.remember(delivery_id, now)
    return delivery_id


@dataclass(frozen=True)
class AliasEvent:
    """A verified prompt-alias delivery."""

    action: str  # "created" or "deleted"
    prompt: str
    alias: str
    version: int | None  # set for "created"
    workspace: str | None = None


def parse_delivery(body: bytes) -> AliasEvent | None:
    """The prompt-alias event of a (verified) body, or None for other entities (e.g. MLflow's test
    event for another entity). Raises DeliveryRejected(400) for a body that is not an MLflow
    webhook payload."""
    try:
        data = json.loads(body)
    except ValueError:
        raise DeliveryRejected(400, "Malformed", "the body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        raise DeliveryRejected(400, "Malformed", "the body has no 'data' object")
    if data.get("entity") != PROMPT_ALIAS_ENTITY or data.get("action") not in (ALIAS_CREATED, ALIAS_DELETED):
        return None
    payload = data["data"]
    name, alias = payload.get("name"), payload.get("alias")
    if not isinstance(name, str) or not name or not isinstance(alias, str) or not alias:
        raise DeliveryRejected(400, "Malformed", "a prompt_alias event needs data.name and data.alias")
    version: int | None = None
    if payload.get("version") is not None:
        try:
            version = int(payload["version"])
        except (TypeError, ValueError):
            raise DeliveryRejected(400, "Malformed", "data.version is not a version number") from None
    workspace = data.get("workspace")
    return AliasEvent(
        action=str(data["action"]),
        prompt=name,
        alias=alias,
        version=version,
        workspace=workspace if isinstance(workspace, str) else None,
    )


# ---- the webhook objects in MLflow ------------------------------------------------------------------


@dataclass(frozen=True)
class MlflowWebhook:
    """A webhook as `GET /mlflow/webhooks` lists it (never with its secret)."""

    webhook_id: str
    name: str
    url: str
    events: tuple[tuple[str, str], ...]
    status: str
    description: str = ""

    @property
    def fingerprint(self) -> str | None:
        for word in self.description.split():
            if word.startswith(FINGERPRINT_MARK):
                return word[len(FINGERPRINT_MARK) :]
        return None


@dataclass(frozen=True)
class DesiredWebhook:
    """The webhook the operator wants for one registry."""

    name: str
    url: str
    secret: str
    description: str  # ends with the fingerprint
    events: tuple[tuple[str, str], ...] = PROMPT_ALIAS_EVENTS

    @property
    def fingerprint(self) -> str:
        return webhook_fingerprint(self.secret, self.url, self.events)


def webhook_name(cluster: str, registry: str) -> str:
    """A stable MLflow webhook name for (cluster, registry): `promptalias-<hash>` (MLflow allows 63
    characters of [a-z0-9._-]; registry names alone could collide across clusters)."""
    digest = hashlib.sha256(f"{cluster}\x00{registry}".encode()).hexdigest()[:24]
    return f"{NAME_PREFIX}{digest}"


def webhook_fingerprint(secret: str, url: str, events: Sequence[tuple[str, str]]) -> str:
    """HMAC-SHA256(secret, url + events), 16 hex characters: equal iff secret, URL and events are."""
    text = url + "\n" + ",".join(f"{entity}.{action}" for entity, action in sorted(events))
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def desired_webhook(*, cluster: str, registry: str, url: str, secret: str) -> DesiredWebhook:
    fingerprint = webhook_fingerprint(secret, url, PROMPT_ALIAS_EVENTS)
    description = (
        f"Managed by the promptalias operator (cluster {cluster[:64]}) for {registry[:200]}: prompt alias "
        f"changes reach the operator at once. {FINGERPRINT_MARK}{fingerprint}"
    )
    return DesiredWebhook(
        name=webhook_name(cluster, registry), url=url, secret=secret, description=description
    )


@dataclass(frozen=True)
class WebhookPlan:
    create: bool = False
    update: str | None = None  # webhook id to update in place
    delete: tuple[str, ...] = ()  # duplicates (or all ours when no webhook is wanted)

    @property
    def noop(self) -> bool:
        return not self.create and self.update is None and not self.delete


def plan_webhook(existing: Sequence[MlflowWebhook], name: str, desired: DesiredWebhook | None) -> WebhookPlan:
    """What to do so that exactly `desired` (or, with None, nothing) exists under `name`."""
    ours = sorted((hook for hook in existing if hook.name == name), key=lambda hook: hook.webhook_id)
    if desired is None:
        return WebhookPlan(delete=tuple(hook.webhook_id for hook in ours))
    if not ours:
        return WebhookPlan(create=True)
    keep, extra = ours[0], tuple(hook.webhook_id for hook in ours[1:])
    same = (
        keep.url == desired.url
        and set(keep.events) == set(desired.events)
        and keep.status == "ACTIVE"
        and keep.fingerprint == desired.fingerprint
    )
    return WebhookPlan(update=None if same else keep.webhook_id, delete=extra)


def parse_webhook(value: Any) -> MlflowWebhook:
    if not isinstance(value, dict) or not isinstance(value.get("webhook_id"), str):
        raise RegistryProtocolError(f"MLflow sent a webhook without webhook_id: {str(value)[:200]!r}")
    events = tuple(
        (str(event.get("entity")), str(event.get("action")))
        for event in value.get("events") or []
        if isinstance(event, dict)
    )
    return MlflowWebhook(
        webhook_id=value["webhook_id"],
        name=str(value.get("name") or ""),
        url=str(value.get("url") or ""),
        events=events,
        status=str(value.get("status") or ""),
        description=str(value.get("description") or ""),
    )


# ---- REST ---------------------------------------------------------------------------------------------


def _body(desired: DesiredWebhook) -> dict[str, Any]:
    return {
        "name": desired.name,
        "url": desired.url,
        "events": [{"entity": entity, "action": action} for entity, action in desired.events],
        "description": desired.description,
        "secret": desired.secret,
        "status": "ACTIVE",
    }


def _explain(exc: RegistryRejected, url: str) -> RegistryRejected:
    text = exc.message
    hints = []
    if "scheme" in text:
        hints.append(
            f"MLflow only calls https:// webhook URLs by default: serve {url} behind TLS with a certificate "
            "MLflow trusts, or start MLflow with MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https"
        )
    if "private" in text.lower() or "resolve" in text.lower():
        hints.append(
            "MLflow refuses private and loopback addresses unless started with "
            "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true"
        )
    if not hints:
        return exc
    return RegistryRejected(f"{text}; {'; '.join(hints)}", status=exc.status, error_code=exc.error_code)


class WebhookAPI:
    """The webhook endpoints of one MLflow server, through an `MlflowRegistry`'s session."""

    def __init__(self, registry: MlflowRegistry) -> None:
        self.registry = registry

    async def _json(
        self, method: str, path: str, op: str, *, query: dict[str, str] | None = None, body: Any = None
    ) -> dict[str, Any]:
        # One registry module, one session: reuse the client's request path (auth, TLS, timeouts,
        # error mapping) rather than a second HTTP stack.
        call = self.registry._call(op)
        return await self.registry._json(method, path, call, query=query, body=body)

    async def list_all(self) -> list[MlflowWebhook]:
        hooks: list[MlflowWebhook] = []
        token: str | None = None
        while True:
            query = {"max_results": str(_PAGE)}
            if token:
                query["page_token"] = token
            data = await self._json("GET", f"{API}/webhooks", "list webhooks", query=query)
            hooks.extend(parse_webhook(item) for item in data.get("webhooks") or [])
            token = data.get("next_page_token") or None
            if token is None:
                return hooks

    async def create(self, desired: DesiredWebhook) -> MlflowWebhook:
        try:
            data = await self._json("POST", f"{API}/webhooks", "create webhook", body=_body(desired))
        except RegistryRejected as exc:
            raise _explain(exc, desired.url) from None
        return parse_webhook(data.get("webhook"))

    async def update(self, webhook_id: str, desired: DesiredWebhook) -> MlflowWebhook:
        try:
            data = await self._json(
                "PATCH", f"{API}/webhooks/{webhook_id}", "update webhook", body=_body(desired)
            )
        except RegistryRejected as exc:
            raise _explain(exc, desired.url) from None
        return parse_webhook(data.get("webhook"))

    async def delete(self, webhook_id: str) -> None:
        await self._json("DELETE", f"{API}/webhooks/{webhook_id}", "delete webhook")

    async def test(self, webhook_id: str) -> dict[str, Any]:
        """MLflow sends its example payload to the webhook now: {success, response_status, ...}."""
        data = await self._json("POST", f"{API}/webhooks/{webhook_id}/test", "test webhook", body={})
        result = data.get("result")
        return result if isinstance(result, dict) else {}


@dataclass(frozen=True)
class EnsureResult:
    action: str  # created | updated | unchanged | deleted | absent
    webhook_id: str | None = None
    removed: int = 0


async def ensure_webhook(api: WebhookAPI, name: str, desired: DesiredWebhook | None) -> EnsureResult:
    """Make MLflow hold exactly `desired` under `name` (or none): one GET when nothing changed."""
    existing = await api.list_all()
    plan = plan_webhook(existing, name, desired)
    for webhook_id in plan.delete:
        await api.delete(webhook_id)
    if desired is None:
        return EnsureResult("deleted" if plan.delete else "absent", removed=len(plan.delete))
    if plan.create:
        created = await api.create(desired)
        return EnsureResult("created", created.webhook_id, removed=len(plan.delete))
    ours = next(hook for hook in sorted(existing, key=lambda h: h.webhook_id) if hook.name == name)
    if plan.update is not None:
        updated = await api.update(plan.update, desired)
        return EnsureResult("updated", updated.webhook_id, removed=len(plan.delete))
    return EnsureResult("unchanged", ours.webhook_id, removed=len(plan.delete))
