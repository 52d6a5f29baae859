"""How the sidecar reaches the apiserver: in-cluster service account, or a kubeconfig file.

Deliberately small (no `kubernetes` package): server URL, TLS context (CA, client certificate) and an
Authorization header. Bound service-account tokens rotate, so a token file is re-read when it changes.
Exec credential plugins and auth-provider entries are not supported (a clear error says so).
"""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

SERVICE_ACCOUNT_DIR: Final = "/var/run/secrets/kubernetes.io/serviceaccount"


class KubeConfigError(Exception):
    """The sidecar cannot work out how to reach the apiserver; the message says what to fix."""


@dataclass
class TokenSource:
    """A bearer token, fixed or read from a file that may be rotated under us."""

    token: str | None = None
    path: str | None = None
    _mtime: float = field(default=0.0, repr=False)

    def get(self) -> str | None:
        if self.path is None:
            return self.token
        try:
            mtime = os.stat(self.path).st_mtime
            if mtime != self._mtime or self.token is None:
                self.token = Path(self.path).read_text(encoding="utf-8").strip()
                self._mtime = mtime
        except OSError:
            pass  # keep the last token; the apiserver answers 401 if it is really gone
        return self.token


@dataclass
class KubeConnection:
    server: str
    ssl_context: ssl.SSLContext | bool
    token: TokenSource = field(default_factory=TokenSource)
    basic_auth: tuple[str, str] | None = None
    namespace: str | None = None
    server_hostname: str | None = None  # kubeconfig tls-server-name: SNI + certificate name to expect
    source: str = ""

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "promptalias-sidecar"}
        token = self.token.get()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif self.basic_auth is not None:
            raw = f"{self.basic_auth[0]}:{self.basic_auth[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        return headers


def _tls_context(
    *,
    ca_file: str | None = None,
    ca_data: bytes | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    cert_data: bytes | None = None,
    key_data: bytes | None = None,
    insecure: bool = False,
) -> ssl.SSLContext:
    context = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_file or ca_data:
        context.load_verify_locations(cafile=ca_file, cadata=ca_data.decode() if ca_data else None)
    if cert_data is not None or key_data is not None:
        if cert_data is None or key_data is None:
            raise KubeConfigError("kubeconfig has only one of client-certificate-data and client-key-data")
        # ssl can only load a certificate chain from files: write them privately, load, remove.
        with tempfile.TemporaryDirectory(prefix="promptalias-tls-") as tmp:
            cert_path, key_path = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
            for path, data in ((cert_path, cert_data), (key_path, key_data)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
            context.load_cert_chain(cert_path, key_path)
    elif cert_file or key_file:
        if not (cert_file and key_file):
            raise KubeConfigError("kubeconfig has only one of client-certificate and client-key")
        context.load_cert_chain(cert_file, key_file)
    return context


def in_cluster(
    environ: Mapping[str, str] | None = None, sa_dir: str = SERVICE_ACCOUNT_DIR
) -> KubeConnection | None:
    """The pod's service account, or None when not running in a pod."""
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    token_path = os.path.join(sa_dir, "token")
    if not host or not port or not os.path.exists(token_path):
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6
    ca = os.path.join(sa_dir, "ca.crt")
    namespace = None
    with contextlib.suppress(OSError):
        namespace = Path(sa_dir, "namespace").read_text(encoding="utf-8").strip() or None
    return KubeConnection(
        server=f"https://{host}:{port}",
        ssl_context=_tls_context(ca_file=ca if os.path.exists(ca) else None),
        token=TokenSource(path=token_path),
        namespace=namespace,
        source="in-cluster service account",
    )


def _named(items: Any, name: str, what: str, path: str) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            value = item.get(what)
            return value if isinstance(value, dict) else {}
    raise KubeConfigError(f"{path}: no {what} named {name!r}")


def _b64(value: Any, what: str, path: str) -> bytes | None:
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, TypeError) as exc:
        raise KubeConfigError(f"{path}: {what} is not valid base64") from exc


def from_kubeconfig(path: str, context_name: str | None = None) -> KubeConnection:
    """Read one kubeconfig file: server, CA, client certificate / token / basic auth, namespace."""
    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise KubeConfigError(f"cannot read kubeconfig {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise KubeConfigError(f"{path} is not a kubeconfig")
    base = os.path.dirname(os.path.abspath(path))

    def resolve(file: Any) -> str | None:
        if not file:
            return None
        return file if os.path.isabs(file) else os.path.join(base, file)

    name = context_name or config.get("current-context")
    if not name:
        raise KubeConfigError(f"{path}: no current-context; pass a context")
    context = _named(config.get("contexts"), name, "context", path)
    cluster = _named(config.get("clusters"), context.get("cluster", ""), "cluster", path)
    user = _named(config.get("users"), context.get("user", ""), "user", path) if context.get("user") else {}
    if "exec" in user or "auth-provider" in user:
        raise KubeConfigError(
            f"{path}: user {context.get('user')!r} uses an exec/auth-provider plugin, which the sidecar does "
            "not run; give it a token, a tokenFile or a client certificate"
        )
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise KubeConfigError(f"{path}: cluster {context.get('cluster')!r} has no http(s) server")
    ssl_context: ssl.SSLContext | bool = False
    if server.startswith("https://"):
        ssl_context = _tls_context(
            ca_file=resolve(cluster.get("certificate-authority")),
            ca_data=_b64(cluster.get("certificate-authority-data"), "certificate-authority-data", path),
            cert_file=resolve(user.get("client-certificate")),
            key_file=resolve(user.get("client-key")),
            cert_data=_b64(user.get("client-certificate-data"), "client-certificate-data", path),
            key_data=_b64(user.get("client-key-data"), "client-key-data", path),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
        )
    token = TokenSource(token=user.get("token"), path=resolve(user.get("tokenFile")))
    basic = None
    if user.get("username") and user.get("password"):
        basic = (str(user["username"]), str(user["password"]))
    return KubeConnection(
        server=server.rstrip("/"),
        ssl_context=ssl_context,
        token=token,
        basic_auth=basic,
        namespace=context.get("namespace"),
        server_hostname=cluster.get("tls-server-name") or None,
        source=f"kubeconfig {path} (context {name})",
    )


def load_connection(
    kubeconfig: str | None = None,
    *,
    context: str | None = None,
    environ: Mapping[str, str] | None = None,
    sa_dir: str = SERVICE_ACCOUNT_DIR,
) -> KubeConnection:
    """`--kubeconfig`, else $KUBECONFIG (first existing file), else in-cluster, else ~/.kube/config."""
    env = os.environ if environ is None else environ
    if kubeconfig:
        return from_kubeconfig(kubeconfig, context)
    for candidate in (env.get("KUBECONFIG") or "").split(os.pathsep):
        if candidate and os.path.exists(candidate):
            return from_kubeconfig(candidate, context)
    pod = in_cluster(env, sa_dir)
    if pod is not None:
        return pod
    home = os.path.join(os.path.expanduser("~"), ".kube", "config")
    if os.path.exists(home):
        return from_kubeconfig(home, context)
    raise KubeConfigError(
        "no way to reach the apiserver: not in a pod (KUBERNETES_SERVICE_HOST unset), no KUBECONFIG, "
        "no ~/.kube/config; pass --kubeconfig"
    )
