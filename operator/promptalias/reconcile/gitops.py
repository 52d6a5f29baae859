"""Who applies an object from Git (and would revert a live patch): one detection for operator and CLI.

The operator asks before it patches a baseline PromptAlias to promote an experiment; the CLI asks
before `rollback` patches spec.version. Both read the same marks, so they never disagree about an
object (pure, stdlib only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from promptalias.vocabulary import GITOPS_OVERRIDE_ANNOTATION

ARGOCD_TRACKING_ID: Final = "argocd.argoproj.io/tracking-id"
ARGOCD_PREFIX: Final = "argocd.argoproj.io/"
ARGOCD_INSTANCE_LABEL: Final = "argocd.argoproj.io/instance"
HELM_INSTANCE_LABEL: Final = "app.kubernetes.io/instance"
FLUX_CONTROLLERS: Final = (
    ("kustomize.toolkit.fluxcd.io", "Kustomization"),
    ("helm.toolkit.fluxcd.io", "HelmRelease"),
)


@dataclass(frozen=True)
class GitOpsOwner:
    """The GitOps object that applies a resource from Git.

    `kind` is empty when nothing but the `promptalias.io/gitops: "true"` annotation says so (a tool
    that leaves no marks, or one we do not know): then there is no object to name.
    """

    tool: str  # "Argo CD", "Flux", or "GitOps" (declared by the annotation alone)
    kind: str  # Application, Kustomization, HelmRelease, or "" (declared)
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        if not self.kind:
            return f"{self.tool} ({GITOPS_OVERRIDE_ANNOTATION}=true)"
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.tool} ({self.kind} {where})"

    @property
    def sync_hint(self) -> str:
        """The command that makes the tool apply Git now."""
        if not self.kind:
            return "sync it with the tool that applies it"
        if self.kind == "Application":
            app = f"{self.namespace}/{self.name}" if self.namespace else self.name
            return f"argocd app sync {app}  (or wait for auto-sync)"
        ns = f" -n {self.namespace}" if self.namespace else ""
        return f"flux reconcile {self.kind.lower()} {self.name}{ns} --with-source"


DECLARED: Final = GitOpsOwner("GitOps", "", "")
"""The owner when only `promptalias.io/gitops: "true"` marks the object."""


def detect_gitops(metadata: Mapping[str, Any] | None) -> GitOpsOwner | None:
    """Who applies this object from Git, judged from its metadata (labels and annotations).

    `promptalias.io/gitops: "false"` says no GitOps tool applies it, whatever the marks say;
    `"true"` says one does even when there are no marks. Otherwise, Argo CD: the annotation
    `argocd.argoproj.io/tracking-id` (<app>:<group>/<kind>:<ns>/<name>; apps outside Argo CD's own
    namespace are written <app-namespace>_<app>), the `argocd.argoproj.io/instance` label, or,
    with label tracking, `app.kubernetes.io/instance` together with any `argocd.argoproj.io/*`
    annotation (that label alone is set by every Helm chart, so it proves nothing). Flux: the
    `<controller>.toolkit.fluxcd.io/name` and `/namespace` labels its controllers set.
    """
    metadata = metadata or {}
    labels: Mapping[str, Any] = metadata.get("labels") or {}
    annotations: Mapping[str, Any] = metadata.get("annotations") or {}
    override = str(annotations.get(GITOPS_OVERRIDE_ANNOTATION, "")).strip().lower()
    if override == "false":
        return None
    tracking = annotations.get(ARGOCD_TRACKING_ID)
    if isinstance(tracking, str) and tracking:
        app = tracking.split(":", 1)[0]
        namespace, _, name = app.rpartition("_")
        return GitOpsOwner("Argo CD", "Application", name, namespace or None)
    for prefix, kind in FLUX_CONTROLLERS:
        flux_name = labels.get(f"{prefix}/name")
        if flux_name:
            flux_ns = str(labels.get(f"{prefix}/namespace") or "") or None
            return GitOpsOwner("Flux", kind, str(flux_name), flux_ns)
    if labels.get(ARGOCD_INSTANCE_LABEL):
        return GitOpsOwner("Argo CD", "Application", str(labels[ARGOCD_INSTANCE_LABEL]))
    argo_marks = any(str(key).startswith(ARGOCD_PREFIX) for key in annotations)
    if labels.get(HELM_INSTANCE_LABEL) and argo_marks:
        return GitOpsOwner("Argo CD", "Application", str(labels[HELM_INSTANCE_LABEL]))
    if override == "true":
        return DECLARED
    return None


def gitops_manager(metadata: Mapping[str, Any] | None) -> str | None:
    """`detect_gitops` as the text the operator's conditions and Events name it by, or None."""
    owner = detect_gitops(metadata)
    return None if owner is None else str(owner)
