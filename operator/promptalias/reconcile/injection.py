"""Sidecar injection: the pod changes for `promptalias.io/inject: "true"` (pure, unit-tested).

The sidecar is a native sidecar (an init container with restartPolicy Always, Kubernetes >= 1.29):
it starts, syncs and becomes ready before the app containers start, and it does not keep a Job's
pod alive. It watches only the projection ConfigMaps the pod names (least privilege).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

INJECT_ANNOTATION: Final = "promptalias.io/inject"
PROMPTS_ANNOTATION: Final = "promptalias.io/prompts"  # comma-separated projection ConfigMap names
INJECTED_ANNOTATION: Final = "promptalias.io/injected"
SIDECAR_NAME: Final = "promptalias-sidecar"
VOLUME_NAME: Final = "promptalias-prompts"
PROMPTS_DIR: Final = "/var/run/promptalias/prompts"
SIDECAR_PORT: Final = 8718


@dataclass(frozen=True)
class InjectionSettings:
    image: str = "promptalias:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    cpu_request: str = "10m"
    # Python + aiohttp take ~40 MiB; a swap holds the old and the new copy of every prompt in memory
    # and in the Memory-backed volume (charged to the sidecar): room for a few MiB of prompts.
    memory_request: str = "64Mi"
    memory_limit: str = "160Mi"
    volume_size: str = "32Mi"


def wants_injection(annotations: Mapping[str, str] | None) -> bool:
    return (annotations or {}).get(INJECT_ANNOTATION) == "true"


def projection_names(annotations: Mapping[str, str] | None) -> list[str]:
    """The projection ConfigMaps named by `promptalias.io/prompts` (comma-separated)."""
    return [n.strip() for n in (annotations or {}).get(PROMPTS_ANNOTATION, "").split(",") if n.strip()]


def injection_warnings(annotations: Mapping[str, str] | None) -> list[str]:
    """Admission warnings for an injection that would start but probably never become ready."""
    if not wants_injection(annotations) or projection_names(annotations):
        return []
    return [
        f"{INJECT_ANNOTATION}=true without {PROMPTS_ANNOTATION}: the sidecar will list and watch every "
        "projection ConfigMap of the namespace, which needs list/watch on configmaps; with per-app RBAC "
        "(the chart's sidecarRbac grants only resourceNames) it never becomes ready and the pod never "
        f"starts. Name the projections: {PROMPTS_ANNOTATION}: promptalias-<PromptAlias name>[,...]"
    ]


def _sidecar(settings: InjectionSettings, names: list[str]) -> dict[str, Any]:
    args = [
        "sidecar",
        "--namespace=$(POD_NAMESPACE)",
        f"--dir={PROMPTS_DIR}",
        f"--listen=127.0.0.1:{SIDECAR_PORT}",
    ]
    if names:
        args.append(f"--names={','.join(names)}")

    def probe(path: str, **extra: Any) -> dict[str, Any]:
        # The sidecar listens on loopback only (apps share the pod's network namespace), and
        # PodSecurity "restricted" forbids httpGet probes with a host: probe from inside instead.
        check = (
            "import sys,urllib.request as u;"
            f"sys.exit(0 if u.urlopen('http://127.0.0.1:{SIDECAR_PORT}{path}',timeout=2).status==200 else 1)"
        )
        return {
            "exec": {"command": ["python", "-c", check]},
            "periodSeconds": 10,
            **extra,
        }

    return {
        "name": SIDECAR_NAME,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": args,
        "restartPolicy": "Always",  # native sidecar
        "env": [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        "volumeMounts": [{"name": VOLUME_NAME, "mountPath": PROMPTS_DIR}],
        "resources": {
            "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
            "limits": {"memory": settings.memory_limit},
        },
        "startupProbe": probe("/readyz", periodSeconds=1, failureThreshold=60),
        "readinessProbe": probe("/readyz"),
        "livenessProbe": probe("/healthz"),
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def inject(
    pod_spec: Mapping[str, Any], annotations: Mapping[str, str] | None, settings: InjectionSettings
) -> dict[str, Any] | None:
    """The new spec fields (initContainers, containers, volumes) or None when nothing to do."""
    if not wants_injection(annotations):
        return None
    init = [dict(c) for c in pod_spec.get("initContainers") or []]
    if any(c.get("name") == SIDECAR_NAME for c in init):
        return None  # already injected (idempotent on retries and re-admission)
    names = projection_names(annotations)
    containers = []
    for container in pod_spec.get("containers") or []:
        updated = copy.deepcopy(dict(container))
        mounts = list(updated.get("volumeMounts") or [])
        if not any(m.get("name") == VOLUME_NAME for m in mounts):
            mounts.append({"name": VOLUME_NAME, "mountPath": PROMPTS_DIR, "readOnly": True})
        env = [
            e
            for e in updated.get("env") or []
            if e.get("name") not in {"PROMPTALIAS_PROMPTS_DIR", "PROMPTALIAS_SIDECAR_URL"}
        ]
        env += [
            {"name": "PROMPTALIAS_PROMPTS_DIR", "value": PROMPTS_DIR},
            {"name": "PROMPTALIAS_SIDECAR_URL", "value": f"http://127.0.0.1:{SIDECAR_PORT}"},
        ]
        updated["volumeMounts"] = mounts
        updated["env"] = env
        containers.append(updated)
    volumes = [dict(v) for v in pod_spec.get("volumes") or []]
    if not any(v.get("name") == VOLUME_NAME for v in volumes):
        volumes.append(
            {"name": VOLUME_NAME, "emptyDir": {"medium": "Memory", "sizeLimit": settings.volume_size}}
        )
    return {
        "initContainers": [_sidecar(settings, names), *init],
        "containers": containers,
        "volumes": volumes,
    }
