"""kopf's peering CRDs (group kopf.dev), shipped with ours so that replicas can elect one active.

kopf defines them only in its documentation; they are schema-less on purpose (kopf writes each
peer's identity, priority and lease under `status`). Two replicas sharing a ClusterKopfPeering (or
a KopfPeering in the watched namespace) keep one active operator and pause the others.
"""

from __future__ import annotations

from typing import Any, Final

from promptalias.api.schema import crd_document

KOPF_GROUP: Final = "kopf.dev"
DEFAULT_PEERING_NAME: Final = "promptalias"


def _crd(kind: str, plural: str, scope: str) -> dict[str, Any]:
    return crd_document(
        KOPF_GROUP,
        plural,
        {
            "group": KOPF_GROUP,
            "scope": scope,
            "names": {"kind": kind, "plural": plural, "singular": plural[:-1]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                            },
                        }
                    },
                }
            ],
        },
    )


def peering_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD document, in crdgen's naming (<group>_<plural>.yaml)."""
    return {
        f"{KOPF_GROUP}_clusterkopfpeerings.yaml": _crd(
            "ClusterKopfPeering", "clusterkopfpeerings", "Cluster"
        ),
        f"{KOPF_GROUP}_kopfpeerings.yaml": _crd("KopfPeering", "kopfpeerings", "Namespaced"),
    }
