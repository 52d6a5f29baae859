"""The sidecar-injection admission webhook (kopf serves it; the chart or kopf registers it)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import kopf

from promptalias.handlers.listen import listen_address
from promptalias.reconcile.injection import (
    INJECTED_ANNOTATION,
    InjectionSettings,
    inject,
    injection_warnings,
)

log = logging.getLogger(__name__)

LISTEN_ENV = "PROMPTALIAS_ADMISSION_LISTEN"
CERT_DIR_ENV = "PROMPTALIAS_ADMISSION_CERT_DIR"
MANAGED_ENV = "PROMPTALIAS_ADMISSION_MANAGED"  # "true": kopf creates the MutatingWebhookConfiguration
IMAGE_ENV = "PROMPTALIAS_SIDECAR_IMAGE"


@kopf.on.startup()
async def configure_admission(settings: kopf.OperatorSettings, **_: Any) -> None:
    address = listen_address(LISTEN_ENV)
    if address is None:
        return
    host, port = address
    cert_dir = os.environ.get(CERT_DIR_ENV)
    if cert_dir:
        settings.admission.server = kopf.WebhookServer(
            addr=host or "0.0.0.0",  # noqa: S104 - the operator's own port inside its pod
            port=port,
            certfile=str(Path(cert_dir) / "tls.crt"),
            pkeyfile=str(Path(cert_dir) / "tls.key"),
        )
    else:  # a self-signed certificate, which is also the CA bundle kopf puts into a managed config
        certfile, keyfile = _self_signed(host or "127.0.0.1")
        settings.admission.server = kopf.WebhookServer(
            addr=host or "127.0.0.1", port=port, certfile=certfile, pkeyfile=keyfile, cafile=certfile
        )
    if os.environ.get(MANAGED_ENV) == "true":
        settings.admission.managed = "promptalias.io"


def _self_signed(host: str) -> tuple[str, str]:
    """Write a throwaway self-signed serving certificate for `host`; return (cert, key) paths."""
    import datetime as dt
    import ipaddress
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    from promptalias.certificates import certificate_builder, new_key, pem_key

    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    cert = (
        certificate_builder(name, name, key, dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = Path(tempfile.mkdtemp(prefix="promptalias-admission-"))
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(pem_key(key))
    return str(directory / "tls.crt"), str(directory / "tls.key")


def inject_sidecar(
    spec: kopf.Spec, meta: kopf.Meta, patch: kopf.Patch, warnings: list[str], **_: Any
) -> None:
    """Add the promptalias sidecar, the shared prompts volume and the client settings."""
    settings = InjectionSettings(image=os.environ.get(IMAGE_ENV, InjectionSettings.image))
    annotations = dict(meta.get("annotations") or {})
    changes = inject(dict(spec), annotations, settings)
    if changes is None:
        return
    for warning in injection_warnings(annotations):  # shown by kubectl; the pod is still admitted
        warnings.append(warning)
        log.warning(
            "pod %s/%s: %s", meta.get("namespace"), meta.get("name") or meta.get("generateName"), warning
        )
    for field, value in changes.items():
        patch.spec[field] = value
    patch.metadata.setdefault("annotations", {})[INJECTED_ANNOTATION] = "true"


# kopf refuses to start when admission handlers exist without an admission server, so the webhook
# is registered only when the operator serves one (`promptalias operator --webhook-listen`, which
# sets the variable before this module is imported).
if os.environ.get(LISTEN_ENV):
    # failurePolicy Ignore: an operator outage must never block pod creation in the cluster.
    kopf.on.mutate("", "v1", "pods", id="inject-sidecar", operations={"CREATE"}, ignore_failures=True)(
        inject_sidecar
    )
