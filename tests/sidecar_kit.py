"""Projection ConfigMaps for sidecar tests, owned by a real PromptAlias as the operator's are.

The sidecar trusts only ConfigMaps with a controller ownerReference to a PromptAlias whose
projection name they carry (sidecar/trust.py). Tests that write projections by hand therefore
create that PromptAlias first (pointing at a registry that does not exist, so no operator ever
writes to the ConfigMap) and set the ownerReference to its uid, which also keeps the garbage
collector from deleting the ConfigMap as an orphan.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from promptalias.api import GROUP, VERSION
from promptalias.projection.render import CONFIGMAP_NAME_PREFIX


def owner_uid(core: client.CoreV1Api, namespace: str, pa_name: str) -> str:
    """The uid of PromptAlias `pa_name` in `namespace`, created (unserved) when missing."""
    custom = client.CustomObjectsApi(core.api_client)
    try:
        found: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "promptaliases", pa_name
        )
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "PromptAlias",
            "metadata": {"name": pa_name, "namespace": namespace},
            "spec": {
                "registryRef": {"name": "no-such-registry"},
                "prompt": "sidecar-test",
                "alias": "unused",
            },
        }
        found = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "promptaliases", body)
    return str(found["metadata"]["uid"])


def owned(core: client.CoreV1Api, body: dict[str, Any]) -> dict[str, Any]:
    """`body` (from build_configmap) with its ownerReference pointing at a real PromptAlias."""
    meta = body["metadata"]
    pa_name = meta["name"].removeprefix(CONFIGMAP_NAME_PREFIX)
    uid = owner_uid(core, meta["namespace"], pa_name)
    refs = [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "PromptAlias",
            "name": pa_name,
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]
    return {**body, "metadata": {**meta, "ownerReferences": refs}}
