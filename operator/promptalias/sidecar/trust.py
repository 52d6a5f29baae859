"""Which ConfigMaps the sidecar believes: only projections the operator wrote.

The label selector (`app.kubernetes.io/managed-by=promptalias`) only narrows the watch: anyone who
may create ConfigMaps in the namespace can set a label. A projection is trusted when it has a
controller ownerReference to a PromptAlias (`promptalias.io/*`) and carries the name the operator
gives that PromptAlias's projection (`configmap_name`), so a forged owner reference to an existing
PromptAlias still cannot add a second, different ConfigMap (the real name is taken by the real one).
Pure and stdlib-only, like the sidecar.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from promptalias.projection.render import ProjectionError, configmap_name

OWNER_GROUP: Final = "promptalias.io/"
OWNER_KIND: Final = "PromptAlias"


def untrusted_reason(obj: Mapping[str, Any]) -> str | None:
    """None when `obj` is a projection the operator wrote; else why the sidecar ignores it."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    owners = [
        ref
        for ref in meta.get("ownerReferences") or []
        if isinstance(ref, Mapping)
        and str(ref.get("apiVersion") or "").startswith(OWNER_GROUP)
        and ref.get("kind") == OWNER_KIND
        and ref.get("controller") is True
    ]
    if not owners:
        return (
            f"ConfigMap {name!r} carries the promptalias label but no controller ownerReference to a "
            "PromptAlias: not written by the operator, ignored"
        )
    try:
        expected = configmap_name(str(owners[0].get("name") or ""))
    except ProjectionError:
        expected = ""
    if expected != name:
        return (
            f"ConfigMap {name!r} names PromptAlias {owners[0].get('name')!r} as its owner, whose projection "
            f"is {expected!r}: not written by the operator, ignored"
        )
    return None
