"""A throwaway PKI for the loopback control plane: CA, serving cert, client certs, SA keys.

EC P-256 keys: generated in milliseconds, accepted by every Kubernetes component.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from promptalias.certificates import certificate_builder, new_key, pem_key

_VALIDITY = dt.timedelta(days=30)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


@dataclass(frozen=True)
class Pki:
    """Paths of the files written by `write_pki`."""

    dir: Path

    ca_crt = property(lambda self: self.dir / "ca.crt")
    ca_key = property(lambda self: self.dir / "ca.key")
    serving_crt = property(lambda self: self.dir / "apiserver.crt")
    serving_key = property(lambda self: self.dir / "apiserver.key")
    admin_crt = property(lambda self: self.dir / "admin.crt")
    admin_key = property(lambda self: self.dir / "admin.key")
    kcm_crt = property(lambda self: self.dir / "kcm.crt")
    kcm_key = property(lambda self: self.dir / "kcm.key")
    sa_key = property(lambda self: self.dir / "sa.key")
    sa_pub = property(lambda self: self.dir / "sa.pub")


def _certificate(
    signer: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    """A certificate for `key` signed by `signer`: the CA (self-signed), or a server or client leaf."""
    builder = (
        certificate_builder(subject, issuer, key, _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer, hashes.SHA256())


def write_pki(directory: Path, extra_ips: list[str] | None = None) -> Pki:
    """Create a CA and every certificate and key the control plane needs, in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)
    ca_key = new_key()
    ca_name = _name("promptalias-testbed-ca")
    ca = _certificate(ca_key, ca_name, ca_name, ca_key, ca=True)
    pki.ca_key.write_bytes(pem_key(ca_key))
    pki.ca_crt.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
    ]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in extra_ips or [] if ip != "127.0.0.1"]
    for crt_path, key_path, subject, server, names in (
        (pki.serving_crt, pki.serving_key, _name("kube-apiserver"), True, sans),
        (pki.admin_crt, pki.admin_key, _name("promptalias-admin", "system:masters"), False, None),
        (pki.kcm_crt, pki.kcm_key, _name("system:kube-controller-manager"), False, None),
    ):
        key = new_key()
        cert = _certificate(ca_key, ca_name, subject, key, server=server, sans=names)
        key_path.write_bytes(pem_key(key))
        crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    sa_key = new_key()
    pki.sa_key.write_bytes(pem_key(sa_key))
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki
