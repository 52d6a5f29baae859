"""Sidecar injection: pure pod changes."""

from __future__ import annotations

from typing import Any

from promptalias.reconcile.injection import (
    PROMPTS_DIR,
    SIDECAR_NAME,
    VOLUME_NAME,
    InjectionSettings,
    inject,
    injection_warnings,
)

POD: dict[str, Any] = {
    "containers": [{"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]}],
    "volumes": [{"name": "data", "emptyDir": {}}],
}


def test_only_annotated_pods_are_touched() -> None:
    assert inject(POD, {}, InjectionSettings()) is None
    assert inject(POD, {"promptalias.io/inject": "false"}, InjectionSettings()) is None


def test_sidecar_volume_and_client_settings_are_added() -> None:
    changes = inject(
        POD,
        {"promptalias.io/inject": "true", "promptalias.io/prompts": "promptalias-a, promptalias-b"},
        InjectionSettings(image="registry.example/promptalias:1"),
    )
    assert changes is not None
    sidecar = changes["initContainers"][0]
    assert sidecar["name"] == SIDECAR_NAME
    assert sidecar["restartPolicy"] == "Always"  # native sidecar: ready before the app starts
    assert sidecar["image"] == "registry.example/promptalias:1"
    assert "--names=promptalias-a,promptalias-b" in sidecar["args"]
    assert sidecar["securityContext"]["runAsNonRoot"] is True
    assert sidecar["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    app = changes["containers"][0]
    assert {"name": VOLUME_NAME, "mountPath": PROMPTS_DIR, "readOnly": True} in app["volumeMounts"]
    env = {e["name"]: e.get("value") for e in app["env"]}
    assert env == {
        "A": "1",
        "PROMPTALIAS_PROMPTS_DIR": PROMPTS_DIR,
        "PROMPTALIAS_SIDECAR_URL": "http://127.0.0.1:8718",
    }
    assert [v["name"] for v in changes["volumes"]] == ["data", VOLUME_NAME]
    assert POD["containers"][0].get("volumeMounts") is None  # the input is not modified


def test_injection_is_idempotent() -> None:
    once = inject(POD, {"promptalias.io/inject": "true"}, InjectionSettings())
    assert once is not None
    assert inject({**POD, **once}, {"promptalias.io/inject": "true"}, InjectionSettings()) is None


def test_injection_without_the_prompts_annotation_is_warned_about() -> None:
    (warning,) = injection_warnings({"promptalias.io/inject": "true"})
    assert "promptalias.io/prompts" in warning
    assert "never becomes ready" in warning
    assert injection_warnings({"promptalias.io/inject": "true", "promptalias.io/prompts": " , "}) != []
    assert (
        injection_warnings({"promptalias.io/inject": "true", "promptalias.io/prompts": "promptalias-a"}) == []
    )
    assert injection_warnings({}) == []


def _mebibytes(quantity: str) -> int:
    assert quantity.endswith("Mi")
    return int(quantity.removesuffix("Mi"))


def test_sidecar_defaults_leave_room_for_a_swap_of_a_few_mib_of_prompts() -> None:
    """Old and new copies of 4 MiB of prompts live in the Memory volume and the sidecar's heap."""
    changes = inject(POD, {"promptalias.io/inject": "true"}, InjectionSettings())
    assert changes is not None
    volume = next(v for v in changes["volumes"] if v["name"] == VOLUME_NAME)
    assert _mebibytes(volume["emptyDir"]["sizeLimit"]) >= 2 * 4 * 2  # two copies, twice over
    limits = changes["initContainers"][0]["resources"]["limits"]
    baseline = 48  # Python + aiohttp + the watch, measured RSS of an idle sidecar, rounded up
    assert _mebibytes(limits["memory"]) >= baseline + _mebibytes(volume["emptyDir"]["sizeLimit"]) + 3 * 4 * 2


def test_operator_cli_sets_its_settings_before_the_handlers_are_registered() -> None:
    """Handlers read --webhook-listen/--namespace-selector at import: the CLI must not import them early."""
    import subprocess
    import sys

    probe = (
        "import sys, promptalias.cli.operator_cmd, promptalias.cli.main; "
        "print('promptalias.handlers' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
