"""One GitOps detection for the operator (promotion) and the CLI (rollback): reconcile/gitops.py."""

from __future__ import annotations

import pytest

from promptalias.reconcile.gitops import DECLARED, GitOpsOwner, detect_gitops, gitops_manager

ARGO_INSTANCE = {"argocd.argoproj.io/instance": "app"}

CASES: list[tuple[str, dict[str, str], dict[str, str], GitOpsOwner | None, str | None]] = [
    ("no marks", {}, {}, None, None),
    (
        "argo tracking-id",
        {},
        {"argocd.argoproj.io/tracking-id": "billing:promptalias.io/PromptAlias:ns/x"},
        GitOpsOwner("Argo CD", "Application", "billing"),
        "Argo CD (Application billing)",
    ),
    (
        "argo tracking-id of an app in another namespace",
        {},
        {"argocd.argoproj.io/tracking-id": "apps_billing:promptalias.io/PromptAlias:ns/x"},
        GitOpsOwner("Argo CD", "Application", "billing", "apps"),
        "Argo CD (Application apps/billing)",
    ),
    (
        "argo instance label",
        ARGO_INSTANCE,
        {},
        GitOpsOwner("Argo CD", "Application", "app"),
        "Argo CD (Application app)",
    ),
    (
        "flux kustomization",
        {"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"},
        {},
        GitOpsOwner("Flux", "Kustomization", "apps", "flux-system"),
        "Flux (Kustomization flux-system/apps)",
    ),
    (
        "flux helmrelease without namespace",
        {"helm.toolkit.fluxcd.io/name": "rel"},
        {},
        GitOpsOwner("Flux", "HelmRelease", "rel"),
        "Flux (HelmRelease rel)",
    ),
    # Every Helm chart sets the instance label: alone it is no sign of Argo CD.
    ("helm instance label alone", {"app.kubernetes.io/instance": "release"}, {}, None, None),
    (
        "helm instance label with an argo annotation",
        {"app.kubernetes.io/instance": "app"},
        {"argocd.argoproj.io/sync-wave": "1"},
        GitOpsOwner("Argo CD", "Application", "app"),
        "Argo CD (Application app)",
    ),
    ("override false beats argo marks", ARGO_INSTANCE, {"promptalias.io/gitops": "false"}, None, None),
    (
        "override false in another case",
        {"kustomize.toolkit.fluxcd.io/name": "apps"},
        {"promptalias.io/gitops": " FALSE "},
        None,
        None,
    ),
    (
        "override true without marks",
        {},
        {"promptalias.io/gitops": "true"},
        DECLARED,
        "GitOps (promptalias.io/gitops=true)",
    ),
    (
        "override true keeps the detected tool",
        ARGO_INSTANCE,
        {"promptalias.io/gitops": "true"},
        GitOpsOwner("Argo CD", "Application", "app"),
        "Argo CD (Application app)",
    ),
    ("another override value is ignored", {}, {"promptalias.io/gitops": "maybe"}, None, None),
]


@pytest.mark.parametrize(
    ("labels", "annotations", "owner", "text"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_detect_gitops(
    labels: dict[str, str], annotations: dict[str, str], owner: GitOpsOwner | None, text: str | None
) -> None:
    metadata = {"labels": labels, "annotations": annotations}
    assert detect_gitops(metadata) == owner
    assert gitops_manager(metadata) == text


def test_missing_metadata_is_no_gitops() -> None:
    assert detect_gitops(None) is None
    assert detect_gitops({"labels": None, "annotations": None}) is None


def test_sync_hints() -> None:
    assert GitOpsOwner("Argo CD", "Application", "a", "argocd").sync_hint.startswith(
        "argocd app sync argocd/a"
    )
    flux = GitOpsOwner("Flux", "Kustomization", "apps", "flux-system")
    assert flux.sync_hint == "flux reconcile kustomization apps -n flux-system --with-source"
    assert DECLARED.sync_hint == "sync it with the tool that applies it"
