"""PromptRegistry and ClusterPromptRegistry: where MLflow is and how to reach it.

Both kinds share `RegistrySpec` (as External Secrets' SecretStore and ClusterSecretStore share one
spec). They differ only where scope matters: a PromptRegistry reads Secrets from its own namespace
(so secret references must not name one), a ClusterPromptRegistry must name the namespace of every
Secret it uses and lists which namespaces may use it (`conditions`: none means no namespace).

Write authority (docs/operator.md, Tenancy): reading or following an alias needs only the use of a
registry; pinning, rolling back, taking over or promoting needs a `writePrompts` pattern matching the
prompt, granted by a ClusterPromptRegistry condition or by the namespace's own PromptRegistry
(default: every prompt, since it serves only its own namespace with its own credentials).

Authentication: when `auth.secretRef` is set, the operator reads the Secret; if it has `tokenKey`
the token is sent as a bearer token (MLFLOW_TRACKING_TOKEN), otherwise `usernameKey` and
`passwordKey` are used for basic auth (MLFLOW_TRACKING_USERNAME/PASSWORD). Credentials never appear
in logs, events, status or ConfigMaps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, ClassVar, Final, Literal

from pydantic import Field, StrictBool

from promptalias.api.base import KubeModel, atomic_list, set_list
from promptalias.api.cel import Rule, Validations, cel_quote, regex_check
from promptalias.api.duration import Duration, duration_rule
from promptalias.api.resource import PrinterColumn, Resource, StatusBase, ready_columns
from promptalias.api.types import LabelSelector, NamespaceName, ObjectName, SecretKey, WorkspaceName

TRACKING_URI_MAX_LENGTH: Final = 2048
TIMEOUT_DEFAULT: Final = "5s"
TIMEOUT_MAX_SECONDS: Final = 300
REFRESH_INTERVAL_DEFAULT: Final = "60s"

# A host (userinfo is tolerated here: the credentials rule reports it), then optionally a path,
# query or fragment; no whitespace anywhere.
_URL_SHAPE: Final = r"^https?://([^/?#@\s]*@)?[^/?#@\s]+([/?#]\S*)?$"
_HAS_USERINFO: Final = "^[a-zA-Z]+://[^/?#]*@"
_url_shape_ok: Final = regex_check(_URL_SHAPE)
_has_userinfo: Final = regex_check(_HAS_USERINFO)

TrackingUri = Annotated[
    str,
    Field(min_length=1, max_length=TRACKING_URI_MAX_LENGTH),
    Validations(
        Rule(
            rule="self.startsWith('http://') || self.startsWith('https://')",
            message="trackingUri must be an http:// or https:// URL, for example http://mlflow.mlflow.svc:5000",
            check=lambda value: value.startswith(("http://", "https://")),
        ),
        Rule(
            rule=f"!self.matches({cel_quote(_HAS_USERINFO)})",
            message="trackingUri must not contain credentials (user:password@); put them in a Secret and "
            "reference it with auth.secretRef",
            check=lambda value: not _has_userinfo(value),
        ),
        Rule(
            rule=f"!self.matches('^https?://') || self.matches({cel_quote(_URL_SHAPE)})",
            message="trackingUri must name a host and contain no spaces, e.g. https://mlflow.example.com/",
            check=lambda value: not value.startswith(("http://", "https://")) or _url_shape_ok(value),
        ),
    ),
]
"""The MLflow tracking server URL (http or https), without credentials."""


class AuthSecretRef(KubeModel):
    """The Secret holding MLflow credentials: a token, or a username and password."""

    name: ObjectName
    """Name of the Secret."""
    namespace: NamespaceName | None = None
    """Namespace of the Secret: required in a ClusterPromptRegistry, not allowed in a PromptRegistry
    (which uses its own namespace)."""
    token_key: SecretKey = "token"  # noqa: S105 -- a key name, not a secret
    """Key of the bearer token (MLFLOW_TRACKING_TOKEN). Used when the Secret has it."""
    username_key: SecretKey = "username"
    """Key of the basic-auth username, used when the token key is absent."""
    password_key: SecretKey = "password"  # noqa: S105 -- a key name, not a secret
    """Key of the basic-auth password, used when the token key is absent."""


class RegistryAuth(KubeModel):
    """How the operator authenticates to MLflow."""

    secret_ref: AuthSecretRef
    """The Secret with the credentials."""


class CASecretRef(KubeModel):
    """A Secret key holding PEM CA certificates."""

    name: ObjectName
    """Name of the Secret."""
    namespace: NamespaceName | None = None
    """Namespace of the Secret: required in a ClusterPromptRegistry, not allowed in a PromptRegistry."""
    key: SecretKey = "ca.crt"
    """Key of the PEM bundle in the Secret."""


class RegistryTLS(KubeModel):
    """TLS settings for https:// tracking URIs."""

    __cel__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            rule="!(has(self.caSecretRef) && has(self.insecureSkipVerify) && self.insecureSkipVerify)",
            message="set either caSecretRef or insecureSkipVerify, not both: skipping verification ignores "
            "the CA",
            check=lambda tls: tls.ca_secret_ref is None or not tls.insecure_skip_verify,
        ),
    )

    ca_secret_ref: CASecretRef | None = None
    """CA bundle to verify the server with (default: the system trust store)."""
    insecure_skip_verify: StrictBool = False
    """Do not verify the server certificate. For tests only."""


class WebhookSecretRef(KubeModel):
    """A Secret key holding the HMAC secret MLflow signs webhook deliveries with."""

    name: ObjectName
    """Name of the Secret."""
    namespace: NamespaceName | None = None
    """Namespace of the Secret: required in a ClusterPromptRegistry, not allowed in a PromptRegistry."""
    key: SecretKey = "secret"
    """Key of the HMAC secret in the Secret."""


class RegistryWebhook(KubeModel):
    """MLflow prompt-alias webhooks: instant drift detection (the periodic check still runs, because
    MLflow does not replay deliveries missed while the operator was down)."""

    __cel__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            rule="!self.enabled || has(self.secretRef)",
            message="webhook.secretRef is required when the webhook is enabled: deliveries are verified "
            "with its HMAC secret",
            field_path=".secretRef",
            reason="FieldValueRequired",
            check=lambda webhook: not webhook.enabled or webhook.secret_ref is not None,
        ),
    )

    enabled: StrictBool = True
    """Receive prompt_alias.created/deleted webhooks from this registry."""
    secret_ref: WebhookSecretRef | None = None
    """The HMAC secret the webhook was registered with in MLflow."""


class RegistrySpec(KubeModel):
    """Where an MLflow tracking server is and how to reach it (shared by both registry kinds)."""

    __cel__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            rule="!has(self.tls) || self.trackingUri.startsWith('https://')",
            message="tls applies only to https:// tracking URIs; use https:// or remove tls",
            field_path=".tls",
            check=lambda spec: spec.tls is None or spec.tracking_uri.startswith("https://"),
        ),
    )

    tracking_uri: TrackingUri
    """The MLflow tracking server URL, e.g. http://mlflow.mlflow.svc:5000."""
    workspace: WorkspaceName | None = None
    """The MLflow workspace to use (servers with workspaces enabled); omitted: the server's default."""
    auth: RegistryAuth | None = None
    """Credentials; omitted: anonymous access."""
    tls: RegistryTLS | None = None
    """TLS settings for https:// tracking URIs."""
    timeout: Annotated[
        Duration,
        Validations(
            duration_rule(
                f"duration(self) > duration('0s') && duration(self) <= duration('{TIMEOUT_MAX_SECONDS}s')",
                lambda seconds: 0 < seconds <= TIMEOUT_MAX_SECONDS,
                "timeout must be more than 0s and at most 5m",
            )
        ),
    ] = TIMEOUT_DEFAULT
    """Timeout of each request to MLflow, e.g. 5s. Requests are not retried inside a reconcile."""
    refresh_interval: Annotated[
        Duration,
        Validations(
            duration_rule(
                "duration(self) == duration('0s') || duration(self) >= duration('1s')",
                lambda seconds: seconds == 0 or seconds >= 1,
                "refreshInterval must be 0s (no periodic check) or at least 1s",
            )
        ),
    ] = REFRESH_INTERVAL_DEFAULT
    """How often aliases are checked for drift, e.g. 60s or 1m30s; 0s disables the periodic check."""
    webhook: RegistryWebhook | None = None
    """Optional MLflow webhooks for instant drift detection."""

    def secret_namespaces(self) -> list[str | None]:
        """The namespace of each Secret reference in use (None where it is not set)."""
        namespaces: list[str | None] = []
        if self.auth is not None:
            namespaces.append(self.auth.secret_ref.namespace)
        if self.tls is not None and self.tls.ca_secret_ref is not None:
            namespaces.append(self.tls.ca_secret_ref.namespace)
        if self.webhook is not None and self.webhook.secret_ref is not None:
            namespaces.append(self.webhook.secret_ref.namespace)
        return namespaces


SecretRef = AuthSecretRef | CASecretRef | WebhookSecretRef
_SECRET_REFS: Final[tuple[tuple[str, Callable[[RegistrySpec], SecretRef | None]], ...]] = (
    ("auth.secretRef", lambda spec: spec.auth.secret_ref if spec.auth else None),
    ("tls.caSecretRef", lambda spec: spec.tls.ca_secret_ref if spec.tls else None),
    ("webhook.secretRef", lambda spec: spec.webhook.secret_ref if spec.webhook else None),
)


def _secret_namespace_rule(
    path: str, get: Callable[[RegistrySpec], SecretRef | None], *, required: bool
) -> Rule:
    parent = path.split(".", maxsplit=1)[0]
    present = f"has(self.{parent}) && has(self.{path})"
    if required:
        return Rule(
            rule=f"!({present}) || has(self.{path}.namespace)",
            message=f"{path}.namespace is required in a ClusterPromptRegistry: name the namespace of the "
            "Secret",
            field_path=f".{path}",
            reason="FieldValueRequired",
            check=lambda spec: (ref := get(spec)) is None or ref.namespace is not None,
        )
    return Rule(
        rule=f"!({present}) || !has(self.{path}.namespace)",
        message=f"{path}.namespace is only allowed in a ClusterPromptRegistry: a PromptRegistry reads "
        "Secrets from its own namespace",
        field_path=f".{path}",
        reason="FieldValueForbidden",
        check=lambda spec: (ref := get(spec)) is None or ref.namespace is None,
    )


def _secret_namespace_rules(*, required: bool) -> tuple[Rule, ...]:
    return tuple(_secret_namespace_rule(path, get, required=required) for path, get in _SECRET_REFS)


PROMPT_PATTERN_MAX_LENGTH: Final = 256
PROMPT_PATTERN_SHAPE: Final = r"^[A-Za-z0-9_.*?!\[\]-]+$"

PromptPattern = Annotated[
    str, Field(min_length=1, max_length=PROMPT_PATTERN_MAX_LENGTH, pattern=PROMPT_PATTERN_SHAPE)
]
"""A glob over prompt names (fnmatch, case-sensitive): `*` any run, `?` one character, `[a-z]` a set;
e.g. `invoice-*` or `*` (every prompt)."""

PromptPatterns = Annotated[list[PromptPattern], Field(max_length=64, json_schema_extra=set_list())]


class PromptRegistrySpec(RegistrySpec):
    """A registry usable by PromptAliases in its own namespace."""

    __cel__: ClassVar[tuple[Rule, ...]] = _secret_namespace_rules(required=False)

    write_prompts: PromptPatterns | None = None
    """Prompts (glob patterns) PromptAliases and experiments in this namespace may write through this
    registry: pin, roll back, take over, promote. Omitted: every prompt (the namespace's own registry
    and credentials); [] makes the registry read-only. A ClusterPromptRegistry grant outranks it when
    two namespaces claim the same alias (docs/operator.md, Tenancy)."""


class NamespaceCondition(KubeModel):
    """Namespaces allowed to use a ClusterPromptRegistry: those matching the selector or listed."""

    __cel__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            rule="has(self.namespaceSelector) || (has(self.namespaces) && size(self.namespaces) > 0)",
            message="each condition needs a namespaceSelector or a non-empty namespaces list",
            check=lambda condition: condition.namespace_selector is not None or bool(condition.namespaces),
        ),
    )

    namespace_selector: LabelSelector | None = None
    """Namespaces whose labels match this selector."""
    namespaces: Annotated[list[NamespaceName], Field(max_length=256, json_schema_extra=set_list())] | None = (
        None
    )
    """Namespaces by name."""
    write_prompts: PromptPatterns | None = None
    """Prompts (glob patterns) the namespaces of this condition may write: pin, roll back, take over,
    promote. Omitted or []: they may only read and follow aliases."""

    def allows(self, namespace: str, labels: Mapping[str, str]) -> bool:
        """Whether the namespace matches the selector or is listed."""
        if self.namespaces and namespace in self.namespaces:
            return True
        return self.namespace_selector is not None and self.namespace_selector.matches(labels)


class ClusterPromptRegistrySpec(RegistrySpec):
    """A registry usable from any namespace its conditions allow."""

    __cel__: ClassVar[tuple[Rule, ...]] = _secret_namespace_rules(required=True)

    conditions: (
        Annotated[list[NamespaceCondition], Field(max_length=32, json_schema_extra=atomic_list())] | None
    ) = None
    """Which namespaces may use this registry (and, with writePrompts, write which prompts); a
    namespace allowed by any condition may read. Omitted or empty: no namespace (deny by default; the
    registry's Ready condition says so)."""

    def allows_namespace(self, namespace: str, labels: Mapping[str, str]) -> bool:
        """Whether a PromptAlias in `namespace` (with these namespace labels) may use this registry.
        No conditions: no namespace may."""
        return any(condition.allows(namespace, labels) for condition in self.conditions or ())


class RegistryStatus(StatusBase):
    """The observed state of the registry, written by the operator."""

    server_version: Annotated[str, Field(max_length=128)] | None = None
    """The MLflow version the server reported at the last check."""
    last_check_time: datetime | None = None
    """When the operator last reached the server."""


_REGISTRY_COLUMNS: Final = ready_columns(
    PrinterColumn("URI", "string", ".spec.trackingUri", "MLflow tracking URI"),
    detail=(PrinterColumn("Server", "string", ".status.serverVersion", "MLflow server version"),),
)


class PromptRegistry(Resource):
    """PromptRegistry points at an MLflow tracking server for PromptAliases in its namespace."""

    KIND: ClassVar[str] = "PromptRegistry"
    PLURAL: ClassVar[str] = "promptregistries"
    SINGULAR: ClassVar[str] = "promptregistry"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("preg",)
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = _REGISTRY_COLUMNS

    spec: PromptRegistrySpec
    status: RegistryStatus = Field(default_factory=RegistryStatus)


class ClusterPromptRegistry(Resource):
    """ClusterPromptRegistry points at an MLflow tracking server for PromptAliases in the namespaces
    its conditions allow."""

    KIND: ClassVar[str] = "ClusterPromptRegistry"
    PLURAL: ClassVar[str] = "clusterpromptregistries"
    SINGULAR: ClassVar[str] = "clusterpromptregistry"
    SCOPE: ClassVar[Literal["Namespaced", "Cluster"]] = "Cluster"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("cpreg",)
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = _REGISTRY_COLUMNS

    spec: ClusterPromptRegistrySpec
    status: RegistryStatus = Field(default_factory=RegistryStatus)
