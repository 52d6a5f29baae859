"""Registry errors, and the pure mapping from an MLflow HTTP answer to one of them.

Every message says what happened and what to do next, names the server by its URL (which
`RegistryConfig` guarantees holds no credentials) and never includes a credential.

Server text reaches status and Events only when it is MLflow's own error format
(`{"error_code": "...", "message": "..."}`), with control characters removed and at most 300
characters. Any other body is described (its size), never quoted: a PromptRegistry `trackingUri`
may point at an internal service, and its answers must not be readable back through status (SSRF).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

# Longest piece of a server's own error text quoted in our messages.
_QUOTE_LIMIT = 300


class RegistryError(Exception):
    """Base class. `retryable` says whether the same call may succeed later without any change."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, status: int | None = None, error_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_code = error_code


class RegistryUnavailable(RegistryError):  # noqa: N818 - names fixed by docs/contracts.md
    """Transient: connection refused, DNS failure, timeout, HTTP 5xx or 429.
    `retry_after` is the server's Retry-After in seconds, when it sent one (a hint for the
    caller's backoff, e.g. `kopf.TemporaryError(delay=...)`)."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, error_code=error_code)
        self.retry_after = retry_after


class RegistryTLSError(RegistryUnavailable):
    """The TLS handshake failed (unknown CA, wrong host name...): usually a configuration problem,
    but kept retryable because certificates get rotated."""


class RegistryAuthError(RegistryError):
    """HTTP 401 (credentials missing or wrong) or 403 (the user lacks permission)."""


class RegistryNotFound(RegistryError):  # noqa: N818 - names fixed by docs/contracts.md
    """Base of the not-found errors."""


class PromptNotFound(RegistryNotFound):
    """No registered model of that name."""


class NotAPrompt(PromptNotFound):
    """The name exists, but as a registered model, not a prompt."""


class VersionNotFound(RegistryNotFound):
    """No such version of the prompt (for writes, MLflow does not say whether the prompt exists)."""


class AliasNotFound(RegistryNotFound):
    """The prompt exists but has no such alias."""


class RegistryRejected(RegistryError):  # noqa: N818 - names fixed by docs/contracts.md
    """The server refused the request as invalid (HTTP 400 and the like): retrying will not help.
    Examples: a reserved alias name ('latest', 'v3'), a workspace on a server without workspaces."""


class RegistryProtocolError(RegistryError):
    """The answer was not what an MLflow server sends (HTML from a proxy, bad JSON, missing fields)."""


@dataclass(frozen=True)
class Call:
    """What a request was for, so an error can say so."""

    op: str
    uri: str
    prompt: str | None = None
    version: int | None = None
    alias: str | None = None
    credentials: bool = False
    workspace: str | None = None

    def subject(self) -> str:
        if self.prompt is None:
            return ""
        if self.version is not None:
            return f" for version {self.version} of prompt {self.prompt!r}"
        if self.alias is not None:
            return f" for alias {self.alias!r} of prompt {self.prompt!r}"
        return f" for prompt {self.prompt!r}"


def quote(text: str) -> str:
    """Server text fit for a status message: printable characters only, whitespace collapsed, cut."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text if len(text) <= _QUOTE_LIMIT else text[:_QUOTE_LIMIT] + "…"


def describe_body(body: bytes) -> str:
    """A body that is not MLflow's, described without quoting it (see the module docstring)."""
    return f"a {len(body)}-byte answer that is not MLflow's (not shown)" if body else "an empty answer"


def parse_error_body(body: bytes) -> tuple[str | None, str]:
    """(MLflow error_code, message) from an error body; (None, text) when it isn't MLflow JSON."""
    text = body.decode("utf-8", errors="replace")
    try:
        data: Any = json.loads(text)
    except ValueError:
        return None, describe_body(body)
    if isinstance(data, dict) and isinstance(data.get("error_code"), str):
        message = data.get("message")
        return data["error_code"], quote(str(message if message is not None else "")).rstrip(".")
    return None, describe_body(body)


def prompt_not_found(call: Call) -> PromptNotFound:
    return _missing(
        PromptNotFound,
        call,
        f"prompt {call.prompt!r} does not exist",
        "register it (mlflow.genai.register_prompt) or fix the prompt name",
    )


def not_a_prompt(call: Call) -> NotAPrompt:
    return NotAPrompt(
        f"{call.prompt!r} in MLflow at {call.uri} is a registered model, not a prompt "
        "(it lacks the tag mlflow.prompt.is_prompt=true): name a prompt instead",
        status=200,
    )


def version_not_found(call: Call, *, prompt_may_be_missing: bool = False) -> VersionNotFound:
    return _missing(
        VersionNotFound,
        call,
        f"version {call.version} of prompt {call.prompt!r} does not exist",
        "register that version or pick an existing one",
        aside=" (or the prompt itself does not exist)" if prompt_may_be_missing else "",
    )


def alias_not_found(call: Call) -> AliasNotFound:
    # MLflow answers a missing alias with 400 INVALID_PARAMETER_VALUE, not a 404.
    return _missing(
        AliasNotFound,
        call,
        f"prompt {call.prompt!r} has no alias {call.alias!r}",
        "set the alias first or fix the alias name",
        status=400,
        error_code="INVALID_PARAMETER_VALUE",
    )


_Missing = TypeVar("_Missing", bound=RegistryError)


def _missing(
    error: type[_Missing],
    call: Call,
    what: str,
    remedy: str,
    *,
    aside: str = "",
    status: int = 404,
    error_code: str = "RESOURCE_DOES_NOT_EXIST",
) -> _Missing:
    """`what` is missing in the MLflow (and workspace) the call went to; `remedy` says what to do."""
    workspace = f" (workspace {call.workspace!r})" if call.workspace else ""
    return error(
        f"{what} in MLflow at {call.uri}{workspace}{aside}: {remedy}", status=status, error_code=error_code
    )


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds; the HTTP-date form is rare for APIs and ignored."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86_400 else None


def error_from_response(
    call: Call, status: int, body: bytes, *, retry_after: str | None = None
) -> RegistryError:
    """Map a non-2xx answer of MLflow's REST API to the error a caller can act on.

    MLflow answers errors as JSON `{"error_code": ..., "message": ...}`; what "not found"
    means depends on the call (a missing alias is a 400 INVALID_PARAMETER_VALUE, a missing
    version on a write a 404 that does not say whether the prompt exists).
    """
    code, message = parse_error_body(body)
    head = f"MLflow at {call.uri} answered HTTP {status}" + (f" {code}" if code else "")

    if status == 401:
        hint = (
            "check the token or username/password in the registry's auth secret"
            if call.credentials
            else "the server requires authentication: configure a token or username/password"
        )
        return RegistryAuthError(
            f"{head} to {call.op}{call.subject()}: {hint}", status=status, error_code=code
        )
    if status == 403:
        return RegistryAuthError(
            f"{head} to {call.op}{call.subject()}: the configured user lacks permission; grant it "
            "EDIT on the prompt (MANAGE to delete aliases) in MLflow",
            status=status,
            error_code=code,
        )
    if code == "FEATURE_DISABLED":
        hint = (
            "unset the registry's workspace, or start MLflow with --enable-workspaces"
            if call.workspace
            else "enable the feature on the server"
        )
        return RegistryRejected(f"{head} to {call.op}: {message}; {hint}", status=status, error_code=code)
    if status == 429 or status >= 500:
        return RegistryUnavailable(
            f"{head} to {call.op}{call.subject()}: {message}; the server is overloaded or failing, "
            "the call will be retried (check the MLflow server's logs if this persists)",
            status=status,
            error_code=code,
            retry_after=parse_retry_after(retry_after),
        )
    if code is None:
        # Not MLflow's JSON error format: a proxy, a login page, or a wrong base path.
        return RegistryProtocolError(
            f"{call.uri} answered HTTP {status} to {call.op} with {message}: check that tracking_uri "
            "is the MLflow server's base URL, including any path prefix, and that no proxy in front of "
            "it intercepts API calls",
            status=status,
        )
    if code == "RESOURCE_DOES_NOT_EXIST" and call.workspace and message.startswith("Workspace"):
        return RegistryRejected(
            f"{head} to {call.op}: {message}; create workspace {call.workspace!r} in MLflow "
            "or fix the registry's workspace",
            status=status,
            error_code=code,
        )
    if code == "RESOURCE_DOES_NOT_EXIST":
        if message.startswith("Registered Model") and call.prompt is not None:
            return prompt_not_found(call)
        if message.startswith("Model Version") and call.prompt is not None:
            return version_not_found(call, prompt_may_be_missing=call.op == "set alias")
        return RegistryNotFound(
            f"{head} to {call.op}{call.subject()}: {message}", status=status, error_code=code
        )
    if (
        code == "INVALID_PARAMETER_VALUE"
        and call.alias is not None
        and call.op == "get version by alias"
        and "alias" in message
        and "not found" in message
    ):
        return alias_not_found(call)
    return RegistryRejected(
        f"{head} to {call.op}{call.subject()}: {message}; fix the request (names, alias, version) "
        "— retrying it unchanged will fail the same way",
        status=status,
        error_code=code,
    )
