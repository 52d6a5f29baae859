"""How to reach one MLflow tracking server: URL, credentials, TLS, timeout, workspace."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_TIMEOUT_S = 5.0


def secret_text(value: bytes, what: str) -> str:
    """A Secret value as text. Raises ValueError naming `what`, never quoting a byte of the value
    (a UnicodeDecodeError's message would show the offending byte and its position)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(
            f"{what} is not UTF-8 text ({len(value)} bytes): store the value itself, not a binary or "
            "base64-of-base64 form (kubectl create secret generic --from-literal=...)"
        ) from None


@dataclass(frozen=True, repr=False)
class RegistryConfig:
    """Connection settings for one MLflow server.

    `tracking_uri` is the server's base URL, including any path prefix the server is mounted
    under (`https://mlflow.example.com/mlflow`). Credentials: `token` (sent as Bearer) or
    `username` + `password` (Basic); when both are given, Basic wins, as in MLflow's own client.
    `ca_data` (PEM text) and/or `ca_file` replace the system trust store for https;
    `insecure_skip_verify` turns verification off. `workspace` selects an MLflow workspace
    (servers started with `--enable-workspaces`), sent as the `X-MLFLOW-WORKSPACE` header.

    The repr never shows the token or the password; `dataclasses.asdict()` does, so don't log that.
    """

    tracking_uri: str
    token: str | None = None
    username: str | None = None
    password: str | None = None
    ca_data: str | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    workspace: str | None = None

    def __post_init__(self) -> None:
        # Messages below never echo the URI: it is the one field that might carry a secret.
        parts = urlsplit(self.tracking_uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "tracking_uri must be an http:// or https:// URL of an MLflow server "
                "(file:, sqlite: and databricks URIs are not supported by the operator)"
            )
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "tracking_uri must not contain credentials: put them in username/password or token"
            )
        if parts.query or parts.fragment:
            raise ValueError("tracking_uri must not have a query string or fragment")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError("tracking_uri has an invalid port") from exc
        object.__setattr__(self, "tracking_uri", self.tracking_uri.rstrip("/"))
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password must be given together (Basic auth)")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.workspace is not None and not self.workspace.strip():
            raise ValueError("workspace must be a non-empty name, or None for the default")
        if parts.scheme == "https" and not self.insecure_skip_verify:
            # Load the CA once here so that a bad bundle fails when the config is built (a clear,
            # permanent error) rather than on every request.
            self.ssl_context()

    @property
    def auth_kind(self) -> str:
        """'basic', 'bearer' or 'none': which Authorization header requests carry."""
        if self.username is not None and self.password is not None:
            return "basic"
        if self.token:
            return "bearer"
        return "none"

    @property
    def is_https(self) -> bool:
        return self.tracking_uri.startswith("https://")

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What aiohttp's `ssl=` takes: False to skip verification, else a verifying context."""
        if self.insecure_skip_verify:
            return False
        try:
            return ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        except FileNotFoundError as exc:
            raise ValueError(f"ca_file {self.ca_file!r} does not exist") from exc
        except (ssl.SSLError, ValueError, OSError) as exc:
            what = "ca_data" if self.ca_data is not None else f"ca_file {self.ca_file!r}"
            raise ValueError(f"{what} is not a valid PEM certificate bundle: {type(exc).__name__}") from exc

    def __repr__(self) -> str:
        auth = {"basic": f"basic(username={self.username!r})", "bearer": "bearer(token=***)"}.get(
            self.auth_kind, "none"
        )
        tls = "insecure-skip-verify" if self.insecure_skip_verify else "verify"
        if self.ca_data is not None:
            tls += "+ca_data"
        if self.ca_file is not None:
            tls += f"+ca_file={self.ca_file!r}"
        ws = f", workspace={self.workspace!r}" if self.workspace is not None else ""
        return (
            f"RegistryConfig(tracking_uri={self.tracking_uri!r}, auth={auth}, tls={tls}, "
            f"timeout_s={self.timeout_s}{ws})"
        )

    __str__ = __repr__
