"""The `promptalias.io/` vocabulary the operator, the CLI and the projection share (stdlib only).

Every annotation a user (or the CLI) sets to ask the operator for something, every annotation the
operator reads to change its judgement, and every mark it leaves on MLflow objects is named here
once. The operator (handlers/, reconcile/, projection/, kube/) and the CLI import these names, so a
request the CLI writes is by construction the one the operator reads.

Why not under api/: importing anything in `promptalias.api` runs its `__init__`, which builds the
pydantic models of the CRDs. The CLI starts without pydantic and the projection renderer is
promised to be stdlib-only; this module keeps that true for both.

Requests are one-shot: the operator performs them and then removes the annotation.
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "promptalias.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

INTERNAL_TAG_PREFIX: Final = "promptalias.io/"
"""Every key below starts with this; MLflow tags with it are bookkeeping, not the user's (the
projection and `promptalias versions` leave them out)."""

# ---- requests on a PromptAlias ---------------------------------------------------------------------

ROLLBACK_ANNOTATION: Final = "promptalias.io/rollback-to"
"""Follow mode: move the MLflow alias back to version `<N>` (value), record a Rollback entry."""
TAKEOVER_ANNOTATION: Final = "promptalias.io/takeover"
"""Pinned: claim an alias whose MLflow owner tag names another PromptAlias or cluster ("true")."""
ABANDON_ANNOTATION: Final = "promptalias.io/abandon-alias"
"""On a PromptAlias or PromptExperiment being deleted: finish without touching MLflow ("true")."""
ALIAS_REQUEST_ANNOTATIONS: Final = (ROLLBACK_ANNOTATION, TAKEOVER_ANNOTATION)

# ---- requests on a PromptExperiment ----------------------------------------------------------------

PROMOTE_ANNOTATION: Final = "promptalias.io/promote"
"""Move the baseline to the candidate version (any value; the CLI writes a timestamp)."""
ABORT_ANNOTATION: Final = "promptalias.io/abort"
"""Give the candidate weight 0, for good (any value)."""
RESUME_ANNOTATION: Final = "promptalias.io/resume"
"""Leave a step without a pause duration; the value may be the step index to leave (idempotent)."""
EXPERIMENT_REQUEST_ANNOTATIONS: Final = (PROMOTE_ANNOTATION, ABORT_ANNOTATION, RESUME_ANNOTATION)

# ---- settings --------------------------------------------------------------------------------------

GITOPS_OVERRIDE_ANNOTATION: Final = "promptalias.io/gitops"
"""`"true"`/`"false"` on a PromptAlias: whether a GitOps tool applies it, overriding the detection
from Argo CD's and Flux's marks (reconcile/gitops.py)."""

# ---- marks the operator leaves ---------------------------------------------------------------------

OWNER_TAG_PREFIX: Final = "promptalias.io/owner."
"""MLflow prompt tag `<prefix><alias>`: JSON {cluster, namespace, name} of the PromptAlias that
manages the alias (reconcile/ownership.py)."""
MOVED_TAG_PREFIX: Final = "promptalias.io/moved."
"""MLflow version tag `<prefix><alias>`: JSON {by, at, replaced} of the last move (reconcile/audit.py)."""
CONTENT_HASH_ANNOTATION: Final = "promptalias.io/content-hash"
"""On a projection ConfigMap: sha256 of its document without `updated`; equal hash, no write."""

CLI_FIELD_MANAGER: Final = "kubectl-promptalias"
"""The field manager of the CLI's patches: the ACTOR of the history entries they cause."""
OPERATOR_FIELD_MANAGER: Final = "promptalias-operator"
"""The operator's field manager, and the ACTOR of the history entries of its own moves."""


def is_internal_tag(key: str) -> bool:
    """Whether an MLflow tag is promptalias' bookkeeping (owner and audit marks), not the user's."""
    return key.startswith(INTERNAL_TAG_PREFIX)
