"""What every promptalias custom resource shares: type meta, metadata, status base, CRD facts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import Field, model_validator

from promptalias.api.base import KubeModel, map_list, plain
from promptalias.api.conditions import Condition, find_condition
from promptalias.api.types import API_VERSION


@dataclass(frozen=True)
class PrinterColumn:
    """An `additionalPrinterColumns` entry (what `kubectl get` shows)."""

    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str
    priority: int = 0
    """0: always shown; 1: only with `-o wide`."""

    def to_crd(self) -> dict[str, Any]:
        column: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            column["priority"] = self.priority
        return column


def _ready_column(name: str, field: str, priority: int = 0) -> PrinterColumn:
    """A column that shows one field (status, reason, message) of the Ready condition."""
    path = f'.status.conditions[?(@.type=="Ready")].{field}'
    return PrinterColumn(name, "string", path, f"{field.capitalize()} of the Ready condition", priority)


READY_COLUMN: Final = _ready_column("Ready", "status")
REASON_COLUMN: Final = _ready_column("Reason", "reason")
MESSAGE_COLUMN: Final = _ready_column("Message", "message", priority=1)
AGE_COLUMN: Final = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation")


def ready_columns(*own: PrinterColumn, detail: tuple[PrinterColumn, ...] = ()) -> tuple[PrinterColumn, ...]:
    """The kind's own columns, then the layout the kinds with a Ready reason share: Ready, Reason,
    `detail`, Message (`-o wide`), Age."""
    return (*own, READY_COLUMN, REASON_COLUMN, *detail, MESSAGE_COLUMN, AGE_COLUMN)


class ObjectMeta(KubeModel):
    """The parts of metav1.ObjectMeta the operator reads."""

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    finalizers: list[str] = Field(default_factory=list)
    owner_references: list[dict[str, Any]] = Field(default_factory=list)


class StatusBase(KubeModel):
    """Fields every status has: the generation it describes and the conditions."""

    observed_generation: Annotated[int, Field(strict=True, ge=0)] | None = None
    """The metadata.generation of the spec this status was computed for."""
    conditions: Annotated[list[Condition], Field(max_length=16, json_schema_extra=map_list("type"))] = Field(
        default_factory=list
    )
    """Current conditions (Ready, Reconciling, Stalled, Drifted), merged by type."""

    def condition(self, type_: str) -> Condition | None:
        """The condition of the given type, or None."""
        return find_condition(self.conditions, type_)


class Resource(KubeModel):
    """A promptalias custom resource as the apiserver returns it (spec and status are typed).

    Subclasses declare `spec` and `status` fields and the CRD facts below; the CRD generator reads
    both, so a new field or column is declared in exactly one place.
    """

    KIND: ClassVar[str]
    PLURAL: ClassVar[str]
    SINGULAR: ClassVar[str]
    SCOPE: ClassVar[Literal["Namespaced", "Cluster"]] = "Namespaced"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ()
    CATEGORIES: ClassVar[tuple[str, ...]] = ("prompts",)
    """`kubectl get prompts` lists every kind. Not "promptalias": kubectl resolves that to the
    PromptAlias singular name before it looks at categories."""
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = ()
    SELECTABLE_FIELDS: ClassVar[tuple[str, ...]] = ()
    """JSON paths usable in field selectors (`kubectl get pa --field-selector spec.prompt=x`)."""

    api_version: str = API_VERSION
    kind: str = ""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: KubeModel
    """Narrowed by each kind to its spec model."""
    status: StatusBase = Field(default_factory=StatusBase)
    """Narrowed by each kind to its status model."""

    @model_validator(mode="before")
    @classmethod
    def _type_meta(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        values = dict(data)
        kind = values.pop("kind", cls.KIND) or cls.KIND
        api_version = values.pop("apiVersion", values.pop("api_version", API_VERSION))
        if kind != cls.KIND or api_version != API_VERSION:
            raise ValueError(f"expected {API_VERSION} {cls.KIND}, got {api_version} {kind}")
        values["kind"] = cls.KIND
        values["apiVersion"] = API_VERSION
        return values

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        """Parse an object body (a dict, or kopf's read-only `Body`) into typed spec and status.

        Raises pydantic.ValidationError when the body does not fit the schema (an object stored
        before a schema change, or a body of another kind).
        """
        return cls.model_validate(plain(body))

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    @property
    def generation(self) -> int:
        return self.metadata.generation or 0
